"""The ``assay`` command line. Each pipeline stage adds its commands in its own module."""

from __future__ import annotations

import importlib

from ._app import cli, emit

# Command modules, imported for their @cli.command registrations.
_MODULES = ("_metrics", "_train", "_data", "_serve", "_monitor", "_export", "_retrain", "_judge", "_discover")
for _name in _MODULES:
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as exc:  # a stage not built yet
        if exc.name != f"{__name__}.{_name}":
            raise


def main() -> None:
    cli(prog_name="assay")


__all__ = ["cli", "emit", "main"]

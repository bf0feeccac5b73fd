"""The ``assay`` command group and the shared error handling / JSON output helpers."""

from __future__ import annotations

import json
from typing import Any

import click

from ..errors import AssayError


# Commands that run models or read data: library progress bars, logs and Python warnings are captured
# while they run, so the user sees assay's own lines only (see _output.py). Long-running servers are not.
CAPTURED = {"train", "evaluate", "score", "validate", "generate", "label", "inspect"}


class AssayGroup(click.Group):
    """Prints an AssayError as one line (``error: ...``) and exits 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        argv = [*getattr(ctx, "_protected_args", []), *ctx.args]  # consumed by invoke
        try:
            if argv and argv[0] in CAPTURED:
                from ._output import captured

                with captured(quiet="--quiet" in argv or "-q" in argv):
                    return super().invoke(ctx)
            return super().invoke(ctx)
        except UnicodeDecodeError as exc:  # a reader without its own check: still one line, exit 2
            raise_as = AssayError(f"{exc.encoding} text", f"bytes that are not valid {exc.encoding} at byte offset "
                                  f"{exc.start} of an input ({exc.reason})",
                                  "re-save the file as UTF-8 (or pass --encoding where the command has it)",
                                  code="invalid_encoding")
            self._fail(ctx, raise_as, argv)
        except AssayError as exc:
            self._fail(ctx, exc, argv)

    @staticmethod
    def _fail(ctx: click.Context, exc: AssayError, argv: list[str]) -> None:
        if "--json" in argv:
            click.echo(json.dumps({"error": exc.to_dict()}), err=True)
        else:
            click.echo(f"error: {exc}", err=True)
        ctx.exit(2)


class _HiddenAliases(click.Option):
    """An option that also answers to names ``--help`` does not show (old spellings kept working)."""

    def __init__(self, *args: Any, hidden_aliases: tuple[str, ...] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.hidden_aliases = set(hidden_aliases)

    def get_help_record(self, ctx: click.Context) -> Any:
        shown = self.opts
        self.opts = [o for o in shown if o not in self.hidden_aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


def output_option(help: str, name: str = "output", **kwargs: Any) -> Any:
    """The one spelling of "where to write" on every command that writes a file or folder: ``--output``
    (``-o``); ``--out`` is kept as a hidden alias. ``name``: the command's parameter name."""
    return click.option("--output", "-o", "--out", name, cls=_HiddenAliases, hidden_aliases=("--out",),
                        type=click.Path(), help=help, **kwargs)


@click.group(cls=AssayGroup)
@click.version_option(package_name="assay")
def cli() -> None:
    """assay: distill an LLM-as-judge metric into a small, fast, calibrated evaluator."""


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    """Print ``data`` as JSON with --json, else ``text`` (or a readable dump)."""
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        click.echo(text if text is not None else _readable(data))


def _readable(data: Any, indent: int = 0) -> str:
    pad = "  " * indent
    if isinstance(data, dict):
        lines = []
        for k, v in data.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                lines.append(_readable(v, indent + 1))
            else:
                lines.append(f"{pad}{k}: {v}")
        return "\n".join(lines)
    if isinstance(data, list):
        return "\n".join(f"{pad}- {json.dumps(v, default=str) if isinstance(v, dict) else v}" for v in data)
    return f"{pad}{data}"

"""``assay presets`` and ``assay validate``: look at metrics and check data files."""

from __future__ import annotations

import click

from ..data import load_rows, split_rows
from ..metrics import get_preset, list_presets, load_metric
from ._app import cli, emit


@cli.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def presets(name: str | None, as_json: bool) -> None:
    """List the preset metrics, or print one as YAML."""
    if name:
        spec = get_preset(name)
        emit(spec.to_dict(), as_json, spec.to_yaml())
        return
    items = {n: get_preset(n).description for n in list_presets()}
    emit(items, as_json, "\n".join(f"{n:24s} {d}" for n, d in items.items()))


@cli.command()
@click.argument("data", type=click.Path())
@click.option("--metric", "-m", required=True, help="Preset name or metric YAML.")
@click.option("--column", "-c", multiple=True, help="canonical=column, e.g. input=text (repeatable).")
@click.option("--unlabeled", is_flag=True, help="Rows have no labels.")
@click.option("--seed-fraction", type=float, default=0.2, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def validate(data: str, metric: str, column: tuple[str, ...], unlabeled: bool, seed_fraction: float,
             as_json: bool) -> None:
    """Check a data file against a metric and show the seed / held-out split."""
    spec = load_metric(metric)
    columns = dict(c.split("=", 1) for c in column)
    v = load_rows(data, spec, columns=columns, labeled=not unlabeled)
    out = v.summary()
    if not unlabeled:
        s = split_rows(v.rows, seed_fraction)
        out["split"] = {"seeds": len(s.seeds), "held_out": len(s.held_out)}
    emit(out, as_json)

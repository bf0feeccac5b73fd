"""``assay presets`` and ``assay validate``: look at metrics and check data files."""

from __future__ import annotations

from pathlib import Path

import click

from ..data import SEED_FRACTION, load_rows, split_test_set
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
@click.option("--label-map", "-l", multiple=True, help="file_label=metric_label (repeatable).")
@click.option("--encoding", help="Text encoding of the data file (default UTF-8), e.g. latin-1 or cp1252.")
@click.option("--unlabeled", is_flag=True, help="Rows have no labels.")
@click.option("--seed-fraction", type=float, default=SEED_FRACTION, show_default=True)
@click.option("--min-rows-per-class", type=click.IntRange(min=0), default=2, show_default=True,
              help="Fewer labeled rows of a label is an error (fewer than 5x is a warning); 0: no check.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No warning lines (they stay in the summary).")
def validate(data: str, metric: str, column: tuple[str, ...], label_map: tuple[str, ...], encoding: str | None,
             unlabeled: bool, seed_fraction: float, min_rows_per_class: int, as_json: bool, quiet: bool) -> None:
    """Check a data file against a metric and show the seed / held-out split."""
    from .._preflight import check_class_counts
    from ._output import current
    from ._train import _pairs

    spec = load_metric(metric)
    v = load_rows(data, spec, columns=_pairs(column, "--column"), label_map=_pairs(label_map, "--label-map"),
                  labeled=not unlabeled, encoding=encoding)
    if not unlabeled:
        v.warnings += check_class_counts(v.label_counts, min_rows_per_class, Path(data).name)
    out = v.summary()
    if not unlabeled:
        s = split_test_set(v.rows, spec.shape, seed_fraction=seed_fraction)
        out["split"] = {"seeds": len(s.seeds), "held_out": len(s.held_out), "group_by": s.group_by}
    printer = current()
    if printer is not None and not as_json:  # with --json the warnings are in the output
        for w in v.warnings:
            printer.warning(w)
    emit(out, as_json)

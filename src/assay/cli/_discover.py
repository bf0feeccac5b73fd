"""``assay discover``: failure modes from reviewed rows, each turned into a binary check for ``assay train``."""

from __future__ import annotations

from typing import Any

import click

from ._app import cli, emit, output_option


@cli.command("discover", short_help="Failure modes from reviewer notes -> binary checks ready for `assay train`.")
@click.argument("traces", type=click.Path())
@click.option("--provider", "-p", "provider", required=True, metavar="NAME/MODEL",
              help="The LLM that names each failure mode, writes its check and judges rows (mock/... in tests).")
@output_option("Folder for the report and the checks.", name="out", required=True)
@click.option("--metric", "-m", help="The reviewed metric (preset, YAML, or a check name in a monitor database): "
                                     "its failing label and shape.")
@click.option("--note-field", help="Where the descriptions are when not in note/rationale/reason (a dotted path, "
                                   "e.g. meta.error).")
@click.option("--fail-label", help="The label of failing rows (e.g. false), when --metric does not say it.")
@click.option("--k", "k", type=click.IntRange(1, 50), help="Number of clusters (default: chosen by silhouette).")
@click.option("--max-k", "k_max", type=click.IntRange(2, 50), default=8, show_default=True)
@click.option("--min-size", type=click.IntRange(1), default=3, show_default=True,
              help="Smaller clusters are reported, not turned into checks.")
@click.option("--min-kappa", type=float, default=0.6, show_default=True,
              help="Keep a check when its kappa with the reviewed labels is at least this.")
@click.option("--max-negatives", type=click.IntRange(1), default=100, show_default=True,
              help="Passing rows each check is judged on.")
@click.option("--no-categorize", is_flag=True, help="Cluster the (masked) notes as written, without the provider's "
                                                     "categories.")
@click.option("--encoder", default="minilm", show_default=True, help="Base model that embeds the descriptions.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an earlier discovery in --output.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def discover_cmd(traces: str, provider: str, out: str, metric: str | None, note_field: str | None,
                 fail_label: str | None, k: int | None,
                 k_max: int, min_size: int, min_kappa: float, max_negatives: int, no_categorize: bool, encoder: str,
                 seed: int, overwrite: bool, quiet: bool, as_json: bool) -> None:
    """Cluster the failing rows' reviewer notes (or judge rationales) of TRACES, have the provider write a
    binary check per cluster, measure each against the reviewed labels, and write the kept ones to
    OUT/checks/NAME/ (metric.yaml, labeled.jsonl, config.yaml: `assay train OUT/checks/NAME/config.yaml`).

    TRACES: JSONL/CSV rows with a label and a note (or rationale) column, or a monitor database
    (.db) whose reviewed verdicts carry reviewer notes."""
    from ..judge import discover
    from ._output import captured

    with captured(quiet=quiet) as output:
        def say(message: str) -> None:
            if not quiet:
                output.line(message)

        d = discover(traces, provider, encoder=encoder, metric=metric, fail_label=fail_label, note_field=note_field,
                     k=k, k_max=k_max,
                     min_size=min_size, min_kappa=min_kappa, categorize_notes=not no_categorize,
                     max_negatives=max_negatives, seed=seed, out=out, overwrite=overwrite, progress=say)
    emit(d.to_dict(), as_json, _text(d))


def _text(d: Any) -> str:
    lines = [f"{d.counts.get('failing', 0)} failing rows ({d.counts.get('failing_with_note', 0)} with notes), "
             f"{d.counts.get('passing', 0)} passing; {d.k} clusters; {len(d.kept)} checks kept"]
    for c in d.checks:
        a = c.agreement
        kappa = "not judged" if not a else f"kappa {a.get('kappa')} {a.get('kappa_interval')}"
        lines.append(f"  {'kept ' if c.kept else 'drop '} {c.name:32s} {c.size:4d} rows  {kappa}  ({c.reason})")
    lines.append(f"report: {d.out_dir}/discovery.md")
    for c in d.kept:
        if "config" in c.files:
            lines.append(f"train: assay train {c.files['config']}")
    return "\n".join(lines)

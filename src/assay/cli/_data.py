"""``assay generate``, ``assay label`` and ``assay review-data`` (review of generated rows).

(``assay review`` is the review queue of production verdicts, see ``_monitor.py``.)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from ..errors import AssayError
from ._app import cli, emit, output_option
from ._train import _pairs, apply_overrides


def _config(config_path: str, overrides: tuple[str, ...] = ()) -> Any:
    from ..config import config_from_dict, load_config

    cfg = load_config(config_path)
    if overrides:
        cfg = config_from_dict(apply_overrides(cfg.to_dict(), overrides), base_dir=cfg.base_dir,
                               source=Path(config_path).name)
    return cfg


def _printer(quiet: bool):
    from ._output import current

    out = current()
    if out is not None and not quiet:
        return out.status_printer()
    tty = sys.stderr.isatty()
    state = {"open": False}

    def show(stage: str, fraction: float | None, message: str) -> None:
        if quiet:
            return
        pct = "" if fraction is None else f"{fraction * 100:3.0f}% "
        if tty:
            click.echo(f"\r\033[K[{stage}] {pct}{message}", err=True, nl=fraction is not None and fraction >= 1)
            state["open"] = not (fraction is not None and fraction >= 1)
        else:
            click.echo(f"[{stage}] {pct}{message}", err=True)

    return show


def generate_text(s: dict[str, Any]) -> str:
    """The human-readable summary of a generation run."""
    files, ja, dist, cost, calls = s["files"], s["judge_agreement"], s["distribution"], s["cost"], s["calls"]
    lines = [
        f"generated {s['rows']}/{s['target_size']} rows -> {files['train']}",
        "  labels: " + ", ".join(f"{k} {v}" for k, v in s["label_counts"].items())
        + ("  (short: " + ", ".join(f"{k} {v}" for k, v in s["short_by"].items()) + ")" if s["short_by"] else ""),
        "  dropped: " + (", ".join(f"{k} {v}" for k, v in s["dropped"].items()) or "none")
        + f"; relabelled {s['relabelled']}",
        f"  generator calls: {calls['planned']} ({calls['unparseable']} unparseable, {calls['failed']} failed, "
        f"{calls['cached']} cached)",
        f"  judge agreement: {ja['rate']} on {ja['judged']} rows ({ja['unparseable']} unparseable, "
        f"{ja['failed']} failed)",
        f"  distribution (synthetic/seed kNN similarity): {dist['ratio']} (warn below {dist['warning_below']})"
        + ("  WARNING" if dist["warning"] else ""),
        f"  cost: ${cost['total_usd']:.4f}, {cost['input_tokens']} input + {cost['output_tokens']} output tokens, "
        f"{cost['requests']} requests, {cost['cache_hits']} cache hits" + ("" if cost["priced"] else " (unpriced)"),
        f"  report: {files['report_md']}",
        f"  review sample: {files['review_sample']}",
    ]
    lines += [f"warning: {w}" for w in s.get("warnings") or []]
    return "\n".join(lines)


@cli.command("generate")
@click.argument("config_path", metavar="CONFIG.yaml", type=click.Path())
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a config value, e.g. --set generate.target_size=500 (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def generate_cmd(config_path: str, overrides: tuple[str, ...], as_json: bool, quiet: bool) -> None:
    """Generate a training set from the config's seed rows (generate: section) and write a data report."""
    from ..synth import generate_training_set

    cfg = _config(config_path, overrides)
    if cfg.generate is None:
        raise AssayError(f"a `generate:` section in {Path(config_path).name}", "none",
                         "add generate: {model: provider/model, target_size: 2000}", code="invalid_config")
    split = cfg.prepare_test_set().split  # the split assay train makes
    result = generate_training_set(cfg, split.seeds, split.held_out, on_status=_printer(quiet or as_json))
    summary = result.summary()
    summary.update(seeds=len(split.seeds), held_out=len(split.held_out))
    emit(summary, as_json, generate_text(summary))


@cli.command("label")
@click.argument("data", type=click.Path())
@click.option("--metric", "-m", "metric_ref", required=True, help="Preset name or metric YAML.")
@click.option("--judge", "-j", "judge", required=True, help="The judge model as provider/model.")
@click.option("--base-url", help="OpenAI-compatible endpoint (vLLM, llama.cpp, Ollama...).")
@output_option("Labeled rows (.jsonl or .csv).", required=True)
@click.option("--column", "-c", multiple=True, help="canonical=column, e.g. input=text (repeatable).")
@click.option("--concurrency", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="Provider option (repeatable).")
@click.option("--no-cache", is_flag=True, help="Do not read or write the request cache.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def label_cmd(data: str, metric_ref: str, judge: str, base_url: str | None, output: str, column: tuple[str, ...],
              concurrency: int, options: tuple[str, ...], no_cache: bool, as_json: bool, quiet: bool) -> None:
    """Label rows (CSV/JSONL/Parquet) with the metric's judge prompt; unparseable answers get label null."""
    import yaml

    from ..data import read_records, to_rows, validate_rows, write_rows
    from ..metrics import load_metric
    from ..providers import ProviderError, get_provider, label_rows
    from ..stats import agreement_kappa

    metric = load_metric(metric_ref)
    path = Path(data)
    rows = to_rows(read_records(path), _pairs(column, "--column"), source=path.stem)
    v = validate_rows(rows, metric, labeled=False, source=path.name)
    v.raise_for_errors(path.name)
    opts = {k: yaml.safe_load(val) for k, val in _pairs(options, "--option").items()}
    provider = get_provider(judge, base_url_=base_url, cache=not no_cache, concurrency=concurrency, options=opts)
    show, start, done = _printer(quiet or as_json), time.monotonic(), [0]

    def on_done(i: int, j: Any) -> None:
        done[0] += 1
        if done[0] == len(rows) or done[0] % max(1, len(rows) // 20) == 0:
            rate = done[0] / max(1e-9, time.monotonic() - start)
            show("labeling", done[0] / len(rows), f"{done[0]}/{len(rows)} rows, ${provider.stats.cost_usd:.4f}, "
                                                 f"ETA {(len(rows) - done[0]) / rate:.0f}s")

    try:
        result = label_rows(metric, rows, provider, on_done=on_done)
    except ProviderError as exc:
        raise AssayError(exc.expected, exc.found, f"{exc.fix} (--judge, --base-url)",
                         code="provider_error") from None
    out = write_rows(result.rows, output)
    summary = result.summary()
    summary["output"] = str(out)
    pairs = [(r["meta"]["human_label"], r["label"]) for r in result.rows
             if r["meta"].get("human_label") in metric.labels and r["label"] is not None]
    if pairs:
        summary["agreement_with_existing_labels"] = {
            "n": len(pairs), "accuracy": round(sum(a == b for a, b in pairs) / len(pairs), 4),
            "kappa": agreement_kappa([a for a, _ in pairs], [b for _, b in pairs])}
    p = summary["provider"]
    text = (f"labeled {summary['labeled']}/{summary['rows']} rows -> {out}  {summary['label_counts']}\n"
            f"  unparseable {summary['unparseable']}, failed {summary['failed']} (kept with label null)\n"
            f"  cost: ${p['cost_usd']:.4f}, {p['requests']} requests, {p['cache_hits']} cache hits")
    if pairs:
        a = summary["agreement_with_existing_labels"]
        text += f"\n  agreement with the file's labels: accuracy {a['accuracy']}, kappa {a['kappa']} on {a['n']} rows"
    emit(summary, as_json, text)


# --- review of generated rows -------------------------------------------------------------------
def _review_log(target: str) -> Any:
    from ..review import ReviewLog

    p = Path(target)
    folder = p if p.is_dir() else _config(target).data_dir()
    return ReviewLog(folder)


@cli.group("review-data")
def review_data() -> None:
    """Review the generated rows: show the sample, accept / reject (with a reason) / relabel."""


@review_data.command("sample")
@click.argument("target", metavar="CONFIG.yaml|DATA_DIR", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def review_sample_cmd(target: str, as_json: bool) -> None:
    """The review sample with the decision taken on each row so far."""
    from ..metrics import field_text

    log = _review_log(target)
    sample = log.sample()
    if not sample:
        raise AssayError("a review sample", f"none in {log.folder}", "run `assay generate CONFIG.yaml` first",
                         code="not_found")
    decisions = log.decisions()
    data = [{**r, "decision": decisions[r["id"]].to_dict() if r.get("id") in decisions else None} for r in sample]
    lines = []
    for r in data:
        lin = (r.get("meta") or {}).get("lineage") or {}
        text = " ".join(field_text(r.get("input") or r.get("output")).split())[:100]
        dec = r["decision"]["decision"] if r["decision"] else "pending"
        lines.append(f"{r['id']}  {r.get('label'):10s} {str(lin.get('strategy')):14s} {dec:10s} {text}")
    st = log.status()
    lines.append(f"{st['sample']} rows: {st['accept']} accepted, {st['reject']} rejected, "
                 f"{st['relabel']} relabelled, {st['pending']} pending")
    emit(data, as_json, "\n".join(lines))


@review_data.command("decide")
@click.argument("target", metavar="CONFIG.yaml|DATA_DIR", type=click.Path())
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@click.argument("decision", type=click.Choice(["accept", "reject", "relabel", "regenerate"]))
@click.option("--reason", "-r", default="", help="Why (e.g. 'too repetitive', 'labels look wrong', 'off-topic').")
@click.option("--label", "-l", help="relabel: the right label.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def review_decide_cmd(target: str, ids: tuple[str, ...], decision: str, reason: str, label: str | None,
                      as_json: bool) -> None:
    """Record a decision on sample rows: accept, reject (left out; the reason goes into the next
    generation's prompts) or relabel --label X. `regenerate` is the old name of reject with a reason."""
    log = _review_log(target)
    labels = _config(target, ()).metric_spec().labels if Path(target).suffix in (".yaml", ".yml") else None
    out = log.record(list(ids), decision, reason, label=label, labels=labels)
    st = log.status()
    text = f"{out[0].decision if out else decision}: {len(out)} row(s)" + (f" ({reason})" if reason else "")
    text += f"; {st['pending']} pending of {st['sample']}"
    if out and out[0].decision == "reject":
        text += ("\nrun `assay generate` (or `assay train`) again: these rows are left out and replaced, "
                 "the reason goes into the prompts, every other row is kept")
    emit({"recorded": [d.to_dict() for d in out], "status": st}, as_json, text)


@review_data.command("status")
@click.argument("target", metavar="CONFIG.yaml|DATA_DIR", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def review_status_cmd(target: str, as_json: bool) -> None:
    """Counts of decisions, and the feedback the next generation round will get."""
    st = _review_log(target).status()
    text = (f"{st['sample']} rows: {st['accept']} accepted, {st['reject']} rejected, {st['relabel']} relabelled, "
            f"{st['pending']} pending")
    if st["feedback"]:
        text += "\nfeedback for the next round:\n" + "\n".join(f"  - {f}" for f in st["feedback"])
    emit(st, as_json, text)

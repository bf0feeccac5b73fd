"""``assay train``, ``assay evaluate``, ``assay score`` and ``assay inspect``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..errors import AssayError
from ._app import cli, emit, output_option
from ._precision import precision_option


def _pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise AssayError(f"{option} as key=value", f"'{item}'", f"write e.g. {option} input=text",
                             code="invalid_input")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def apply_overrides(data: dict[str, Any], overrides: tuple[str, ...]) -> dict[str, Any]:
    """Set ``key.path=value`` pairs (values parsed as YAML) in a config mapping."""
    import yaml

    for item in overrides:
        if "=" not in item:
            raise AssayError("--set key.path=value", f"'{item}'", "write e.g. --set train.max_steps=100",
                             code="invalid_input")
        path, raw = item.split("=", 1)
        keys = [k for k in path.strip().split(".") if k]
        if not keys:
            raise AssayError("--set key.path=value", f"'{item}'", "name a config key, e.g. train.epochs",
                             code="invalid_input")
        node = data
        for k in keys[:-1]:
            if node.get(k) is None:
                node[k] = {}
            if not isinstance(node[k], dict):
                raise AssayError(f"a mapping at '{k}' to set {path}", f"a {type(node[k]).__name__}",
                                 f"set {k} as a whole (e.g. --set {k}=...)", code="invalid_config")
            node = node[k]
        try:
            node[keys[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError:
            node[keys[-1]] = raw
    return data


def _warn(message: str) -> None:
    """An assay warning on stderr (through the command's Output while library output is captured)."""
    from ._output import current

    out = current()
    if out is not None:
        out.warning(message)
    else:
        click.echo(f"warning: {message}", err=True)


def _status_printer(quiet: bool):
    """One assay line per stage on stderr (see _output.py); nothing with --quiet."""
    from ._output import current

    out = current()
    if out is not None:
        return out.status_printer()

    def show(stage: str, fraction: float | None, message: str) -> None:
        if not quiet:
            click.echo(f"[{stage}] {message}", err=True)

    return show


@cli.command("train")
@click.argument("config_path", metavar="CONFIG.yaml", type=click.Path())
@output_option("Artifact directory (overrides `output:`).")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a config value, e.g. --set train.max_steps=100 (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.option("--overwrite", is_flag=True, help="Replace an artifact already at the output folder.")
@click.option("--budget", metavar="fast|balanced|best|SECONDS",
              help="Wall-clock budget of the run (train.budget): fast 180 s, balanced 600 s (default), best: no "
                   "limit. The cheap candidates run first; the neural one trains in what is left, or is skipped.")
def train_cmd(config_path: str, output: str | None, overrides: tuple[str, ...], as_json: bool, quiet: bool,
              overwrite: bool, budget: str | None) -> None:
    """Train an evaluator from a run config and write the artifact with its report."""
    from ..config import config_from_dict, load_config
    from ..train import train

    cfg = load_config(config_path)
    if budget is not None:
        overrides = (*overrides, f"train.budget={budget}")
    if overrides or output:
        data = apply_overrides(cfg.to_dict(), overrides)
        if output:
            data["output"] = str(Path(output).resolve())
        cfg = config_from_dict(data, base_dir=cfg.base_dir, source=Path(config_path).name)
    from ..evaluator._artifact import INFO_FILE

    out_dir = cfg.output_dir()
    if (out_dir / INFO_FILE).exists() and not overwrite:
        raise AssayError("a new output folder for the artifact", f"an artifact already at {out_dir}",
                         "pass --overwrite to replace it, or choose another folder with --output",
                         code="output_exists")
    result = train(cfg, progress=False, on_status=_status_printer(quiet))
    summary = {
        "artifact": str(result.artifact_dir),
        "metric": result.evaluator.metric.name,
        "family": result.evaluator.family,
        "train_rows": result.data.get("counts", {}).get("train_rows"),
        "held_out": result.data.get("counts", {}).get("held_out"),
        "steps": result.training.get("steps"),
        "seconds": result.training.get("seconds"),
        "threshold": result.evaluator.threshold,
        "temperature": round(result.evaluator.temperature, 4),
        "report": result.evaluator.info.get("report_summary"),
    }
    from ..report import summary_line

    emit(summary, as_json, f"artifact: {result.artifact_dir}\n{summary_line(result.report)}")


def _artifact_metric(artifact: str) -> Any:
    """The metric of an artifact from its evaluator.json alone (no model loaded)."""
    from ..evaluator import read_info
    from ..metrics import load_metric

    info = read_info(artifact)  # EvaluatorInfo: validated, its metric a mapping
    return load_metric(info.metric), info


def trained_row_hashes(artifact: str | Path, info: Any = None) -> set[str]:
    """Content hashes of the rows an artifact trained on (``assay.monitor._eval.trained_row_hashes``:
    split.json's ``trained_on``, or for older artifacts its seeds when the run trained on them)."""
    from ..monitor._eval import trained_row_hashes as read

    return read(artifact, info)


class _WithProgress:
    """An evaluator whose predict_proba over many rows runs in chunks and reports progress."""

    def __init__(self, ev: Any, show: Any, stage: str, chunk: int = 64):
        self._ev, self._show, self._stage, self._chunk = ev, show, stage, chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ev, name)

    def predict_proba(self, rows: Any, batch_size: int | None = None) -> Any:
        import numpy as np

        rows = list(rows)
        if len(rows) <= self._chunk:
            return self._ev.predict_proba(rows, batch_size)
        parts, start = [], time.monotonic()
        for i in range(0, len(rows), self._chunk):
            parts.append(self._ev.predict_proba(rows[i:i + self._chunk], batch_size))
            done = min(len(rows), i + self._chunk)
            rate = done / max(1e-9, time.monotonic() - start)
            self._show(self._stage, done / len(rows),
                       f"{done}/{len(rows)} rows, ETA {(len(rows) - done) / rate:.0f}s")
        self._show("measuring", None, "agreement figures with bootstrap intervals, then latency and throughput")
        return np.concatenate(parts, axis=0)


def _load_input(data: str, metric: Any, column: tuple[str, ...], label_map: tuple[str, ...], encoding: str | None,
                labeled: bool) -> Any:
    from ..data import read_records, to_rows, validate_rows

    path = Path(data)
    rows = to_rows(read_records(path, encoding=encoding), _pairs(column, "--column"),
                   _pairs(label_map, "--label-map"), source=path.stem)
    v = validate_rows(rows, metric, labeled=labeled, source=path.name)
    v.raise_for_errors(path.name)
    return v


_ENCODING_HELP = "Text encoding of the data file (default UTF-8), e.g. latin-1 or cp1252."


@cli.command("evaluate", short_help="Agreement report of one artifact on labeled rows (kappa, F1, ECE).")
@click.argument("artifact")
@click.argument("data", type=click.Path())
@click.option("--column", "-c", multiple=True, help="canonical=column, e.g. input=text (repeatable).")
@click.option("--label-map", "-l", multiple=True, help="file_label=metric_label (repeatable).")
@click.option("--encoding", help=_ENCODING_HELP)
@click.option("--include-trained", is_flag=True,
              help="Keep rows the artifact trained on (by default they are left out and counted).")
@output_option("Write report.json/.md/.html into this folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def evaluate_cmd(artifact: str, data: str, column: tuple[str, ...], label_map: tuple[str, ...], encoding: str | None,
                 include_trained: bool, output: str | None, as_json: bool, quiet: bool) -> None:
    """Evaluate an artifact (a folder or a registered metric name) on labeled rows: agreement,
    calibration, speed.

    For pass rates of several evaluators and gates over traces (a CI gate), use `assay eval`.

    Rows the artifact trained on (its seeds, training and calibration rows, by content hash from
    split.json) are left out and counted: figures on them would not be held-out figures.
    """
    from ..data import row_hash
    from ..monitor._checks import open_evaluator, resolve_artifact
    from ..report import evaluate, summary_line, write_report

    show = _status_printer(quiet)
    folder, version = resolve_artifact(artifact)  # a folder or a registered name (its file hashes checked)
    metric, info = _artifact_metric(str(folder))
    rows = _load_input(data, metric, column, label_map, encoding, labeled=True).rows
    excluded = 0
    if not include_trained:
        trained = trained_row_hashes(folder, info)
        kept = [r for r in rows if row_hash(r) not in trained]
        excluded = len(rows) - len(kept)
        if not kept:
            raise AssayError("rows the artifact did not train on", f"all {len(rows)} rows of {Path(data).name} "
                             "were in its training data", "evaluate on held-out rows (or pass --include-trained)",
                             code="too_few_rows")
        rows = kept
        if excluded:
            show("reading", None, f"left out {excluded} rows the artifact trained on; evaluating {len(rows)}")
    show("loading", None, f"loading the evaluator from {artifact}")
    ev = open_evaluator(folder, version)  # a registered version decides with its threshold and operator
    show("evaluating", 0.0, f"scoring {len(rows)} rows")
    report = evaluate(_WithProgress(ev, show, "evaluating"), rows)
    report["excluded_trained_rows"] = excluded
    report["included_trained_rows"] = include_trained
    text = summary_line(report)
    if excluded:
        text += f"\n{excluded} rows the artifact trained on were left out ({len(rows)} evaluated)"
    if output:
        write_report(report, output)
        from ..evaluator._artifact import REPORT_MD

        text += f"\nreport: {Path(output) / REPORT_MD}"
    emit(report, as_json, text)


def _rows_to_score(data: str, metric: Any, column: tuple[str, ...], encoding: str | None) -> Any:
    """The rows of a data file for the metric (``assay.batch.read_rows``): canonical rows (after
    --column), else, for a JSON/JSONL file without the metric's columns, its traces' rows (what
    `assay traces` reads); lines that are not JSON are counted with their line numbers."""
    from ..batch import read_rows

    return read_rows(data, metric, columns=_pairs(column, "--column"), encoding=encoding)


def _bad_lines_text(read: Any, data: str) -> str:
    first = "; ".join(f"line {b['line']}: {b['error']}" for b in read.bad_lines)
    more = f" (first {len(read.bad_lines)})" if read.bad > len(read.bad_lines) else ""
    return f"{read.bad} lines of {Path(data).name} are not JSON objects and were not scored{more}: {first}"


BAD_LINES_EXIT = 1  # `assay score`: every good row scored, but some lines of the file were not JSON

_SCORE_OPTIONS = [
    click.argument("artifact"),
    click.argument("data", type=click.Path()),
    click.option("--column", "-c", multiple=True, help="canonical=column, e.g. input=text (repeatable)."),
    click.option("--encoding", help=_ENCODING_HELP),
    output_option("Write scores to .jsonl or .csv (default: JSONL on stdout)."),
    click.option("--batch-size", "-b", type=click.IntRange(min=1), default=None, help="Rows per forward pass."),
    click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                 help="local: in this process; ray: a local Ray Data actor pool (pip install 'assay[ray]')."),
    click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True, help="Ray actors."),
    click.option("--num-cpus", type=click.IntRange(min=1), default=2, show_default=True,
                 help="CPUs given to the local Ray."),
    click.option("--num-gpus", type=click.FloatRange(min=0), help="GPUs per Ray actor (default: a share of one "
                 "GPU when CUDA is seen)."),
    click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON."),
    click.option("--quiet", "-q", is_flag=True, help="No progress output."),
    precision_option,
]


def _score_options(fn: Any) -> Any:
    for option in reversed(_SCORE_OPTIONS):
        fn = option(fn)
    return fn


@cli.command("score")
@_score_options
def score_cmd(artifact: str, data: str, column: tuple[str, ...], encoding: str | None, output: str | None,
              batch_size: int | None, engine: str, concurrency: int, num_cpus: int, num_gpus: float | None,
              as_json: bool, quiet: bool, precision: str = "auto") -> None:
    """Score rows (labels optional) with an artifact or a registered metric name: one record per row
    (id, trace_id, label, score, confidence, probabilities, tokens, truncated), in process or on Ray.

    DATA is a CSV/JSONL/Parquet file of rows (map columns with --column) or a trace export (what
    `assay traces` reads: OTLP JSON, spans, runs, plain traces). Lines that are not JSON are counted
    (their line numbers in the warning and in --json's bad_lines), the rest scored, and the exit
    status is 1."""
    from ..batch import score_file
    from ..monitor._checks import load_evaluator, resolve_artifact
    from ._precision import check_artifact, check_machine, open_at

    show = _status_printer(quiet)
    folder, version = resolve_artifact(artifact)  # a registered name: its file hashes checked
    metric, _ = _artifact_metric(str(folder))
    check_machine(precision)  # the precision checked against this machine and the artifact before any loading
    check_artifact(precision, folder, artifact)
    if engine == "ray" and precision != "auto":
        raise AssayError("--precision auto with --engine ray (each Ray actor loads the evaluator at auto)",
                         f"--precision {precision}", "drop --precision, or score with --engine local",
                         code="invalid_input")
    read = _rows_to_score(data, metric, column, encoding)  # checked before the model loads
    rows, skipped, ingest = read.rows, read.skipped, read.ingest
    if read.bad:
        _warn(_bad_lines_text(read, data))
    if engine == "ray":  # each actor loads the evaluator (hashes checked, the version's threshold applied)
        show("scoring", None, f"{len(rows)} rows on Ray ({concurrency} actors, {num_cpus} CPUs)")
        start = time.monotonic()
        records = score_file(artifact, rows, engine="ray", batch_size=batch_size or 64, concurrency=concurrency,
                             num_cpus=num_cpus, num_gpus=num_gpus, load=load_evaluator).scores
    else:
        show("loading", None, f"loading the evaluator from {artifact}")
        ev = open_at(folder, version, precision)  # the registered version's threshold applies
        start = time.monotonic()
        chunk = max(64, batch_size or 0)
        records = []
        for i in range(0, len(rows), chunk):
            records += score_file(ev, rows[i:i + chunk], batch_size=batch_size or chunk).scores
            rate = len(records) / max(1e-9, time.monotonic() - start)
            show("scoring", len(records) / len(rows),
                 f"{len(records)}/{len(rows)} rows, ETA {(len(rows) - len(records)) / rate:.0f}s")
    seconds = time.monotonic() - start
    if output is None:
        for rec in records:
            sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
        if read.bad:
            raise SystemExit(BAD_LINES_EXIT)
        return
    out = Path(output)
    if out.suffix.lower() == ".csv":
        from ..data import write_rows

        flat = [{**{k: v for k, v in r.items() if k != "probabilities"},
                 **{f"p_{lab}": p for lab, p in r["probabilities"].items()}} for r in records]
        write_rows(flat, out)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    counts: dict[str, int] = {}
    for r in records:
        counts[r["label"]] = counts.get(r["label"], 0) + 1
    summary = {"rows": len(records), "output": str(out), "labels": counts,
               "truncated": sum(bool(r.get("truncated")) for r in records), "engine": engine,
               "seconds": round(seconds, 3), "rows_per_second": round(len(records) / seconds, 2) if seconds else None,
               "skipped": skipped, "ingest": ingest, "precision": precision, "bad_lines": read.bad_summary()}
    text = f"scored {len(records)} rows -> {out}  {counts}"
    emit(summary, as_json, text + (f"\n{read.bad} bad lines not scored (exit status {BAD_LINES_EXIT})"
                                   if read.bad else ""))
    if read.bad:
        raise SystemExit(BAD_LINES_EXIT)


@cli.command("batch-score", hidden=True)
@_score_options
@click.pass_context
def batch_score_cmd(ctx: click.Context, **kwargs: Any) -> None:
    """Old name of `assay score` (kept for one release)."""
    click.echo("note: `assay batch-score` is now `assay score` (same options, --engine local|ray)", err=True)
    ctx.invoke(score_cmd, **kwargs)


def _base_text(base: Any) -> str:
    """A base model as ``name (source: path)``; ``none`` when none is recorded."""
    if base is None or not getattr(base, "name", None):
        return "none"
    where = ": ".join(str(x) for x in (getattr(base, "source", None), getattr(base, "path", None)) if x)
    return f"{base.name} ({where})" if where else str(base.name)


def _blocks(info: Any) -> dict[str, str]:
    """Each feature block of a linear / hybrid artifact and the base model it runs: TF-IDF none, the
    embedding blocks the artifact's base (MiniLM by default), the ``lm`` block the one ``linear.lm`` names."""
    lin = info.linear
    out: dict[str, str] = {}
    for name in (lin.blocks if lin is not None else []):
        if name == "tfidf":
            out[name] = "no base model (word and character n-grams)"
        elif name in ("embed", "contrastive"):
            tuned = ", fine-tuned on contrastive pairs (weights in the artifact)" if name == "contrastive" else ""
            out[name] = f"base {_base_text(info.base)}{tuned}"
        elif name == "lm":
            rec = dict(getattr(lin, "lm", None) or {})
            extra = ", ".join(f"{k} {rec[k]}" for k in ("package", "layers") if rec.get(k))
            out[name] = f"base {rec.get('base') or 'not recorded'}" + (f" ({extra})" if extra else "")
        elif name == "encoder":
            rec = dict(getattr(lin, "neural", None) or {})
            lora = "LoRA" if (rec.get("model") or {}).get("lora") else "full"
            out[name] = (f"base {(rec.get('base') or {}).get('name', 'not recorded')}, fine-tuned as the "
                         f"{rec.get('family', 'encoder')} family ({lora}; weights in the artifact), "
                         "pooled at equal weight")
        else:
            out[name] = "unknown block"
    return out


def _inspect_base(info: Any, blocks: dict[str, str]) -> str:
    """The ``base`` line: the base model, or for a linear artifact which blocks run one."""
    if info.family not in ("linear", "hybrid") or not blocks:
        return _base_text(info.base)
    with_base = [n for n, text in blocks.items() if text.startswith("base ")]
    if not with_base:
        return "none (" + ", ".join(blocks) + " features: no base model)"
    return "; ".join(f"{n}: {blocks[n][len('base '):]}" for n in with_base)


@cli.command("inspect")
@click.argument("artifact")
@click.option("--json", "as_json", is_flag=True, help="Print evaluator.json.")
def inspect_cmd(artifact: str, as_json: bool) -> None:
    """Show what an artifact (a folder or a registered metric name) is: metric, feature blocks and base
    models, calibration, training data, results."""
    from ..evaluator import read_info
    from ..monitor._checks import resolve_artifact

    folder, version = resolve_artifact(artifact)
    info = read_info(folder)
    if as_json:
        emit(info.to_dict(), True)
        return
    metric, training = info.metric, info.training
    recorded = training.model_fields_set if training is not None else set()
    blocks = _blocks(info)
    summary: dict[str, Any] = {
        "metric": f"{metric.get('name')} ({metric.get('output')}, labels {metric.get('labels')})",
        "family": f"{info.family}" + (f" ({info.linear.kind})" if info.linear is not None and info.linear.kind else ""),
        "base": _inspect_base(info, blocks),
    }
    if blocks:
        summary["blocks"] = blocks
    if version is not None:
        summary["registered"] = (f"{version.full_name} at {folder}" + (
            f", threshold {version.operator or '>='} {version.threshold}" if version.threshold is not None else ""))
    summary.update({
        "max_length": info.max_length,
        "temperature": info.temperature,
        "threshold": info.threshold,
        "threshold_method": info.calibration.threshold_method if info.calibration is not None else None,
        "training": {k: getattr(training, k) for k in ("steps", "rows", "learning_rate", "seconds", "device",
                                                       "precision", "loss_first", "loss_last") if k in recorded},
        "data": info.data.counts if info.data is not None else {},
        "held_out": info.report_summary,
        "files": info.files,
        "created_at": info.created_at,
        "versions": info.versions,
    })
    emit(summary, False)

"""``Eval``: evaluators and gates over a dataset, one standard report.

    report = Eval(evaluators=["runs/pii", {"gate": {"type": "pii"}}], dataset="traces.jsonl").run(smoke=50)
    report["metrics"]["pii"]["pass_rate"]
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..batch import read_dataset
from ..data import row_hash
from ..errors import AssayError
from ..evaluator._artifact import INFO_FILE, SPLIT_FILE
from ..traces import Ingest, Problems, Trace
from ._checks import Verdict, make_checks, subject
from ..stats import agreement_kappa
from ._stats import histogram
from ._store import Store
from ._suites import Suite, make_suites, suite_verdicts

DATABASE_SUFFIXES = (".db", ".sqlite", ".sqlite3")  # a monitor database, read as the traffic it received


def load_dataset(dataset: Any) -> Ingest:
    """Traces from a trace/golden-set file, a monitor database (live traffic), an Ingest, or an
    iterable of rows/records/Traces (everything but the database is ``assay.batch.read_dataset``)."""
    if isinstance(dataset, Store):  # a live source: what the monitor has received
        traces = dataset.traces()
        return Ingest(traces, Problems(), Problems(), items=len(traces))
    if isinstance(dataset, (str, Path)) and Path(dataset).suffix.lower() in DATABASE_SUFFIXES:
        path = Path(dataset)
        if not path.exists():
            raise AssayError("a monitor database", f"no file at {path}", "check the path", code="not_found")
        store = Store(path)
        try:
            return load_dataset(store)
        finally:
            store.close()
    return read_dataset(dataset)


def trained_row_hashes(artifact: str | Path, info: Any = None) -> set[str]:
    """Content hashes of the rows an artifact trained on: split.json's ``trained_on`` (the training and
    calibration rows), or for older artifacts its seeds when the run trained on them (``info``: its
    ``EvaluatorInfo`` or an ``evaluator.json`` mapping; default: read from the folder)."""
    folder = Path(artifact)
    try:
        manifest = json.loads((folder / SPLIT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if isinstance(manifest.get("trained_on"), list):
        return set(manifest["trained_on"])
    if info is None:
        try:
            info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = {}
    config = info.config if hasattr(info, "config") else (info or {}).get("config")
    data_cfg = (config or {}).get("data") or {}
    return set(manifest.get("seeds") or []) if data_cfg.get("train_on_seeds", True) else set()


def _trace_hash(t: Trace) -> str:
    """The hash of a trace's whole content as a canonical row (a golden-set row read back as a trace)."""
    return row_hash({"input": t.input, "output": t.output, "context": t.context, "tools": t.tools or None})


def drop_trained(check: Any, rows: list[dict[str, Any]], traces: Sequence[Trace]) -> tuple[list[dict[str, Any]], int]:
    """``rows`` minus those the check's evaluator artifact trained on (by content hash, as ``assay evaluate``
    leaves them out), and how many were left out. A check without an artifact folder keeps every row."""
    trained = trained_row_hashes(check.source) if getattr(check, "source", None) else set()
    if not trained or not rows:
        return rows, 0
    whole = {t.trace_id: _trace_hash(t) for t in traces}
    kept = [r for r in rows if row_hash(r) not in trained and whole.get(subject(r)) not in trained]
    return kept, len(rows) - len(kept)


def smoke_subset(traces: list[Trace], n: int, seed: int = 0) -> list[Trace]:
    """The same ``n`` traces every run (ordered by a hash of seed and trace id)."""
    key = lambda t: hashlib.sha256(f"{seed}:{t.trace_id}".encode()).hexdigest()  # noqa: E731
    return sorted(traces, key=key)[:n]


class Eval:
    """One or more evaluators (trained metrics or gates) run over one dataset."""

    def __init__(self, evaluators: Iterable[Any], dataset: Any, *, name: str | None = None, batch_size: int = 32,
                 suites: Iterable[Any] = (), include_trained: bool = False):
        """``include_trained``: keep rows an evaluator's artifact trained on (by default they are left
        out of that evaluator's figures and counted in its block's ``excluded_trained_rows``)."""
        self.include_trained = include_trained
        self.checks = make_checks(evaluators)
        self.suites = make_suites(suites, self.checks)  # checks combined per trace (a metric block each)
        self.dataset = dataset
        self.name = name or (Path(dataset).stem if isinstance(dataset, (str, Path)) else "eval")
        self.batch_size = batch_size

    def run(self, parallel: int = 1, smoke: int | None = None, seed: int = 0, max_failures: int = 100) -> dict[str, Any]:
        """The report: pass rate per metric, failures with trace ids, confidence histograms."""
        t0 = time.perf_counter()
        ing = load_dataset(self.dataset)
        traces = ing.traces
        if smoke is not None:
            traces = smoke_subset(traces, smoke, seed)
        tasks = []
        per_check: dict[str, dict[str, Any]] = {}
        for c in self.checks:
            rows, skipped = c.rows(traces)
            excluded = None
            if c.kind == "evaluator" and not self.include_trained:
                rows, excluded = drop_trained(c, rows, traces)
            per_check[c.name] = {"check": c, "rows": rows, "skipped": skipped, "results": [], "excluded": excluded}
            for start in range(0, len(rows), self.batch_size):
                tasks.append((c.name, start, rows[start:start + self.batch_size]))
        workers = max(1, int(parallel))

        def work(task: tuple[str, int, list[dict[str, Any]]]) -> tuple[str, int, list[list[Verdict]]]:
            name, start, batch = task
            return name, start, per_check[name]["check"].run(batch, batch_size=self.batch_size)

        if workers == 1:
            results = [work(t) for t in tasks]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(work, tasks))
        for name, start, verdicts in sorted(results, key=lambda r: (r[0], r[1])):
            per_check[name]["results"].extend(verdicts)
        metrics: dict[str, Any] = {}
        for name, entry in per_check.items():
            flat: dict[str, list[Verdict]] = {}
            for vs in entry["results"]:
                for v in vs:
                    flat.setdefault(v.metric, []).append(v)
            for metric, vs in flat.items():
                metrics[metric] = summarize(vs, entry["check"], skipped=entry["skipped"] if metric == name else None,
                                            max_failures=max_failures)
            if name not in flat:
                metrics[name] = summarize([], entry["check"], skipped=entry["skipped"], max_failures=max_failures)
            if entry["excluded"] is not None:  # rows the evaluator trained on, left out of its figures
                metrics[name]["excluded_trained_rows"] = entry["excluded"]
        if self.suites:
            every = [v for entry in per_check.values() for vs in entry["results"] for v in vs]
            for s in self.suites:
                metrics[s.name] = summarize_suite(suite_verdicts([s], every), s, max_failures=max_failures)
        seconds = time.perf_counter() - t0
        return {
            "eval": self.name,
            "dataset": {"source": str(self.dataset) if isinstance(self.dataset, (str, Path)) else type(
                self.dataset).__name__, "traces": len(ing.traces), "evaluated": len(traces), "smoke": smoke,
                        "seed": seed, "ingest": ing.summary()},
            "checks": [c.describe() for c in self.checks] + [s.describe() for s in self.suites],
            "included_trained_rows": self.include_trained,
            "metrics": metrics,
            "seconds": round(seconds, 3),
            "traces_per_second": round(len(traces) / seconds, 2) if seconds > 0 else None,
        }


def summarize(verdicts: list[Verdict], check: Any, *, skipped: Mapping[str, int] | None = None,
              max_failures: int = 100) -> dict[str, Any]:
    """One metric's block of the standard report shape."""
    n = len(verdicts)
    failed = [v for v in verdicts if not v.passed]
    labels: dict[str, int] = {}
    for v in verdicts:
        labels[str(v.label)] = labels.get(str(v.label), 0) + 1
    kind = verdicts[0].kind if verdicts else check.kind
    out: dict[str, Any] = {
        "kind": kind,
        "severity": verdicts[0].severity if verdicts else check.severity,
        "scored": n,
        "skipped": dict(skipped or {}),
        "passed": n - len(failed),
        "failed": len(failed),
        "pass_rate": round((n - len(failed)) / n, 6) if n else None,
        "labels": labels,
        "failures": [{"trace_id": v.trace_id, **({"span_id": v.span_id} if v.span_id else {}), "label": v.label,
                      "score": v.score, "confidence": v.confidence, "reason": v.reason} for v in failed[:max_failures]],
        "failures_truncated": max(0, len(failed) - max_failures),
    }
    conf = [v.confidence for v in verdicts if v.confidence is not None]
    if conf:
        out["confidence_histogram"] = histogram(conf)
    scores = [v.score for v in verdicts if v.score is not None and v.binary and v.kind == "evaluator"]
    if scores:
        out["score_histogram"] = histogram(scores)
    truth = [(v.row or {}).get("label") for v in verdicts]
    if kind == "evaluator" and verdicts and all(t is not None for t in truth):
        labs = list(check.metric.labels) if getattr(check, "metric", None) is not None and verdicts[
            0].metric == check.name else sorted(set(truth) | set(labels))
        pred = [str(v.label) for v in verdicts]
        out["agreement"] = {"n": n, "accuracy": round(sum(p == t for p, t in zip(pred, truth)) / n, 6),
                            "kappa": agreement_kappa(truth, pred, labs)}
    return out


def summarize_suite(verdicts: Sequence[Verdict], suite: Suite, max_failures: int = 100) -> dict[str, Any]:
    """A suite's block of the eval report: the standard block, the mean score and how often each member failed."""
    block = summarize(list(verdicts), suite, max_failures=max_failures)
    failed_by: dict[str, int] = {m: 0 for m in suite.weights}
    for v in verdicts:
        for m in v.details.get("failed_checks", []):
            failed_by[m] = failed_by.get(m, 0) + 1
    scores = [v.score for v in verdicts if v.score is not None]
    block.update({"checks": dict(suite.weights), "rule": suite.config.rule(),
                  "mean_score": round(sum(scores) / len(scores), 6) if scores else None,
                  "check_failures": failed_by})
    for f, v in zip(block["failures"], [v for v in verdicts if not v.passed]):
        f["failed_checks"] = v.details.get("failed_checks", [])
    return block


def parse_bars(specs: Sequence[str]) -> dict[str, float]:
    """``["pass_rate=0.9,kappa=0.6", "toxicity.kappa=0.7"]`` → ``{"pass_rate": 0.9, ...}``: a figure of
    every metric's block (``pass_rate``, ``kappa``, ``accuracy``, ...), or ``METRIC.figure`` for one."""
    bars: dict[str, float] = {}
    for spec in specs:
        for part in filter(None, (p.strip() for p in str(spec).split(","))):
            name, sep, value = part.partition("=")
            try:
                number = float(value) if sep and name.strip() else None
            except ValueError:
                number = None
            if number is None:
                raise AssayError("a bar as FIGURE=NUMBER (e.g. pass_rate=0.9,kappa=0.6)", f"'{part}'",
                                 "write --fail-under pass_rate=0.9,kappa=0.6", code="invalid_input")
            bars[name.strip()] = number
    return bars


def _figure(block: Mapping[str, Any], name: str) -> Any:
    """A figure of one metric's block: its own numbers first, then its agreement with labels."""
    if isinstance(block.get(name), (int, float)) and not isinstance(block.get(name), bool):
        return block[name]
    agreement = block.get("agreement") or {}
    return agreement.get(name) if isinstance(agreement, Mapping) else None


def check_bars(report: Mapping[str, Any], bars: Mapping[str, float]) -> dict[str, Any]:
    """Each bar against every metric that has the figure: ``{"bars", "passed", "below": [...]}``.

    A figure no metric has (``kappa`` without labels in the data) is an error, not a pass: a gate
    that cannot measure must not let a release through. An undefined figure (None) counts as below."""
    metrics: Mapping[str, Any] = report.get("metrics") or {}
    below: list[dict[str, Any]] = []
    for key, bar in bars.items():
        metric, _, fig = key.rpartition(".") if "." in key else ("", "", key)
        blocks = {metric: metrics[metric]} if metric in metrics else ({} if metric else dict(metrics))
        if metric and not blocks:
            raise AssayError(f"a metric named '{metric}' in the eval", f"metrics {sorted(metrics)}",
                             f"use one of them, e.g. {next(iter(metrics), 'toxicity')}.{fig}={bar}",
                             code="invalid_input")
        measured = {n: b for n, b in blocks.items() if fig in b or fig in (b.get("agreement") or {})}
        if not measured:
            raise AssayError(f"the figure '{fig}' in the eval report", "no metric reports it"
                             + (" (kappa and accuracy need labeled rows)" if fig in ("kappa", "accuracy") else ""),
                             "gate on pass_rate, or evaluate labeled rows", code="invalid_input")
        for n, b in measured.items():
            value = _figure(b, fig)
            if value is None or value < bar:
                below.append({"metric": n, "figure": fig, "value": value, "bar": bar})
    return {"bars": dict(bars), "passed": not below, "below": below}

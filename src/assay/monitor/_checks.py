"""Checks: a trained evaluator (with its gates) or a standalone gate, producing Verdicts for rows.

An evaluator is anything with ``metric`` and ``score(rows, batch_size=None) -> list[Score]``
(``assay.evaluator.Evaluator``); an artifact directory or a registered metric name is opened with
:func:`open_evaluator` (a registered version's threshold and operator apply).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .._files import assay_home
from ..errors import AssayError
from ..evaluator import Evaluator
from ..evaluator._artifact import INFO_FILE, REPORT_JSON
from ..metrics import MetricSpec, judged_field
from ..report import Report
from ..report._schema import Bin
from ..traces import MessageFrom, Trace, rows_for
from ._gates import gate_from_dict, gates_from_list


@dataclass
class Verdict:
    """One check's judgement of one trace (or session, or span: ``span_id`` set)."""

    trace_id: str
    metric: str
    kind: str  # "evaluator" or "gate"
    label: str | None
    passed: bool
    score: float | None = None  # binary: P(positive label); categorical: P(label)
    confidence: float | None = None  # probability of the returned label
    probabilities: dict[str, float] | None = None
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    row: dict[str, Any] | None = None
    severity: str = "medium"
    binary: bool = True
    threshold: float | None = None  # binary evaluators: the decision threshold the label came from
    # the evaluator's certified review region (risk-controlled routing), when it has one
    review_band: tuple[float, float] | None = None  # binary: P(positive) in it goes to people
    review_min_confidence: float | None = None  # categorical: confidence below it goes to people
    span_id: str | None = None  # span-targeted metrics: the judged span of trace ``trace_id``

    def to_dict(self, with_row: bool = False) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("trace_id", "metric", "kind", "label", "passed", "score", "confidence",
                                            "probabilities", "reason", "details", "severity")}
        if self.span_id is not None:
            d["span_id"] = self.span_id
        if with_row:
            d["row"] = self.row
        return d


def subject(row: Mapping[str, Any]) -> str:
    """The trace id behind a row's verdict (for a session: its latest trace)."""
    meta = row.get("meta") if isinstance(row.get("meta"), Mapping) else {}
    return str(meta.get("trace_id") or row["id"])


def span_of(row: Mapping[str, Any]) -> str | None:
    """The span id behind a row of a span-targeted metric (None for trace and session rows)."""
    meta = row.get("meta") if isinstance(row.get("meta"), Mapping) else {}
    sid = meta.get("span_id")
    return None if sid in (None, "") else str(sid)


def subject_key(row: Mapping[str, Any]) -> str | tuple[str, str]:
    """What a verdict of this row is unique on besides the metric: the trace id, or (trace id, span id)."""
    sid = span_of(row)
    return subject(row) if sid is None else (subject(row), sid)


def resolve_artifact(ref: str | Path) -> tuple[Path, Any]:
    """(artifact directory, registered version or None) for an artifact path or a registered metric
    name (``toxicity`` = its latest version, ``toxicity-v1``), looked up in the default registry
    (``$ASSAY_DATABASE_URL``, else ``$ASSAY_HOME/assay.db``) with its file hashes checked."""
    p = Path(ref).expanduser()
    if (p / INFO_FILE).exists():
        return p, None
    name = str(ref)
    if not p.exists() and "/" not in name and "\\" not in name:
        import os


        if os.environ.get("ASSAY_DATABASE_URL") or (assay_home() / "assay.db").exists():
            from ..registry import Registry

            reg = Registry()
            try:
                version = reg.metrics.get(name)
            except AssayError:
                version = None
            if version is not None:
                reg.metrics.verify_artifact(version)  # an edited file is refused, naming it
                return Path(reg.storage.local_dir(version.artifact_location)), version
    raise AssayError(f"an evaluator artifact directory with {INFO_FILE}, or a registered metric name",
                     f"'{ref}': " + (f"a folder without {INFO_FILE}" if p.is_dir() else
                                     "no such folder and no registered metric of that name"),
                     "pass the output directory of `assay train`, or a registered name (GET /v1/metrics, the web UI)",
                     code="not_found")


def open_evaluator(name_or_path: str | Path, version: Any = None, precision: str = "auto") -> Any:
    """The evaluator of an artifact directory or a registered metric name (``toxicity``, ``toxicity-v1``:
    see :func:`resolve_artifact`) at the scoring ``precision``, deciding with the registered version's
    threshold and operator when there is one (``version``: an already resolved one, ``name_or_path``
    then its folder). The one opener of the monitor and the CLI; the registry's scoring shares its
    decision rule (``assay.registry._metrics.open_version``)."""
    path, version = (Path(name_or_path), version) if version is not None else resolve_artifact(name_or_path)
    if version is not None:  # a registered version: the registry is installed
        from ..registry._metrics import open_version

        return open_version(path, version, precision=precision)
    return Evaluator.from_pretrained(path, precision=precision)


def load_evaluator(ref: str | Path, precision: str = "auto") -> Any:
    """:func:`open_evaluator` of an artifact directory or a registered metric name."""
    return open_evaluator(ref, precision=precision)


def read_report(path: str | Path | None) -> Any:
    """The artifact's report.json as :class:`assay.report.Report` (a newer format_version or a mistyped
    section is an ``invalid_artifact`` error), or None when there is none or it is not a JSON object."""

    if path is None:
        return None
    f = Path(path) / REPORT_JSON
    try:
        data = json.loads(f.read_text()) if f.exists() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return Report.from_dict(data, f) if isinstance(data, dict) else None


def report_kappa(report: Any) -> float | None:
    """The evaluation-time kappa (``student.kappa``) of an artifact report (``Report.kappa``; a mapping
    is read as one)."""

    if report is None:
        return None
    try:
        return Report.from_dict(report).kappa
    except AssayError:
        return None


def report_baseline(report: Any) -> dict[str, Any] | None:
    """The held-out P(positive) distribution from a report (``assay.report.Report``): raw scores if
    recorded, else the P(positive) reliability bins."""

    if report is None:
        return None
    held = (report.model_extra or {}).get("held_out")
    for scores in ((report.student.model_extra or {}).get("scores"),
                   held.get("scores") if isinstance(held, Mapping) else None):
        if isinstance(scores, list) and scores and all(isinstance(x, (int, float)) for x in scores):
            return {"scores": [float(x) for x in scores]}
    bins = report.reliability.positive if report.reliability is not None else None
    legacy = (report.student.model_extra or {}).get("reliability_positive")  # reports before `reliability`
    if not bins and isinstance(legacy, list) and legacy and all(isinstance(b, Mapping) and "count" in b
                                                                for b in legacy):
        bins = [Bin.model_validate(b) for b in legacy]
    if bins:
        return {"bins": [{"lo": float(b.lo), "hi": float(b.hi), "count": int(b.count)} for b in bins]}
    return None


class ModelCheck:
    """A trained evaluator plus the gates configured for its metric."""

    kind = "evaluator"

    def __init__(self, evaluator: Any, *, gates: Iterable[Any] = (), message_from: MessageFrom = "input",
                 source: str | Path | None = None, severity: str | None = None,
                 fail_labels: Iterable[str] | None = None, precision: str = "auto"):
        if isinstance(evaluator, (str, Path)):  # loaded at ``precision``; an evaluator object keeps its own
            path, version = resolve_artifact(evaluator)
            source = source or path
            evaluator = open_evaluator(path, version, precision)
        if not hasattr(evaluator, "score") or not isinstance(getattr(evaluator, "metric", None), MetricSpec):
            raise AssayError("an evaluator with .metric and .score(rows)", f"a {type(evaluator).__name__}",
                             "pass an artifact directory or an assay.evaluator.Evaluator", code="invalid_input")
        self.evaluator = evaluator
        self.metric: MetricSpec = evaluator.metric
        self.name = self.metric.name
        self.gates = gates_from_list([g if not isinstance(g, Mapping) else dict(g) for g in gates], self.name)
        self.message_from = message_from
        self.source = str(source) if source else None
        self.severity = severity or self.metric.severity
        self.fail_labels = set(fail_labels or [self.metric.positive])
        unknown = self.fail_labels - set(self.metric.labels)
        if unknown:
            raise AssayError(f"fail_labels among {list(self.metric.labels)}", f"{sorted(unknown)}",
                             "list labels of the metric that count as failing", code="invalid_config")
        self.report = read_report(self.source)
        cal = getattr(self.evaluator, "calibration", None)
        self.review_region = cal.review_region() if cal is not None and hasattr(cal, "review_region") else None
        self.eval_kappa = report_kappa(self.report)
        self.baseline = report_baseline(self.report)

    def describe(self) -> dict[str, Any]:
        target = {"target": self.metric.target.span_kind} if self.metric.target is not None else {}
        return {"name": self.name, "kind": self.kind, "shape": self.metric.shape.value, "severity": self.severity,
                **target,
                "labels": list(self.metric.labels), "positive": self.metric.positive, "source": self.source,
                "gates": [g.label for g in self.gates], "eval_kappa": self.eval_kappa}

    def rows(self, traces: Iterable[Trace]) -> tuple[list[dict[str, Any]], Counter[str]]:
        return rows_for(traces, self.metric, message_from=self.message_from)

    def run(self, rows: list[dict[str, Any]], batch_size: int | None = None) -> list[list[Verdict]]:
        """Per row: the gate verdicts, then the metric's verdict (from a deciding gate or the model)."""
        out: list[list[Verdict]] = [[] for _ in rows]
        to_model: list[int] = []
        field_ = judged_field(self.metric)
        for i, row in enumerate(rows):
            decided = None
            for g in self.gates:
                r = g.check(row, field_)
                out[i].append(Verdict(subject(row), f"{self.name}/{g.label}", "gate", "pass" if r.passed else "fail",
                                      r.passed, reason=r.reason, details=r.details, row=row, severity=g.severity,
                                      span_id=span_of(row)))
                if not r.passed and g.decides and decided is None:
                    decided = r
            if decided is not None:
                out[i].append(self._decided(row, decided))
            else:
                to_model.append(i)
        if to_model:
            scores = self.evaluator.score([rows[i] for i in to_model], batch_size=batch_size)
            if len(scores) != len(to_model):
                raise AssayError(f"{len(to_model)} scores from the evaluator", f"{len(scores)}",
                                 "check the evaluator's score()", code="internal")
            for i, s in zip(to_model, scores):
                out[i].append(self.verdict(rows[i], s))
        return out

    def verdict(self, row: Mapping[str, Any], s: Any) -> Verdict:
        region = self.review_region
        probs = {k: float(v) for k, v in (getattr(s, "probabilities", None) or {}).items()}
        pos = self.metric.positive
        score = probs.get(pos, float(s.score)) if self.metric.is_binary else float(s.score)
        extra = {k: getattr(s, k) for k in ("tokens", "truncated") if hasattr(s, k)}
        return Verdict(subject(row), self.name, "evaluator", s.label, s.label not in self.fail_labels,
                       score=score, confidence=float(s.confidence), probabilities=probs or None,
                       details=extra, row=dict(row), severity=self.severity, binary=self.metric.is_binary,
                       threshold=getattr(self.evaluator, "threshold", None) if self.metric.is_binary else None,
                       review_band=tuple(region["band"]) if region and region.get("band") else None,
                       review_min_confidence=region.get("min_confidence") if region else None,
                       span_id=span_of(row))

    def _decided(self, row: Mapping[str, Any], r: Any) -> Verdict:
        label = sorted(self.fail_labels, key=list(self.metric.labels).index)[0]
        probs = {lab: (1.0 if lab == label else 0.0) for lab in self.metric.labels}
        return Verdict(subject(row), self.name, "evaluator", label, False,
                       score=probs.get(self.metric.positive, 1.0), confidence=1.0, probabilities=probs,
                       reason=f"gate {r.gate}: {r.reason}", details={"decided_by": r.gate}, row=dict(row),
                       severity=self.severity, binary=self.metric.is_binary, span_id=span_of(row))


def generic_row(t: Trace) -> dict[str, Any]:
    """Every field of a trace, for gates that are not tied to a metric."""
    row: dict[str, Any] = {"id": t.trace_id, "input": t.input, "output": t.output,
                           "context": t.context or t.system, "tools": t.tools or None,
                           "meta": {"trace_id": t.trace_id, "session_id": t.session_id, "source": t.source,
                                    **({"tool_calls": t.tool_calls} if t.tool_calls else {})}}
    if t.label is not None:
        row["label"] = t.label
    return {k: v for k, v in row.items() if v not in (None, "", [])}


class GateCheck:
    """A gate on its own (not tied to a metric), run on every trace."""

    kind = "gate"
    metric = None
    eval_kappa = None
    baseline = None

    def __init__(self, gate: Any):
        self.gate = gate_from_dict(gate)
        self.name = self.gate.name or f"gate:{self.gate.type}"
        self.severity = self.gate.severity
        self.source = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "severity": self.severity, "gate": self.gate.type}

    def rows(self, traces: Iterable[Trace]) -> tuple[list[dict[str, Any]], Counter[str]]:
        return [generic_row(t) for t in traces], Counter()

    def run(self, rows: list[dict[str, Any]], batch_size: int | None = None) -> list[list[Verdict]]:
        out = []
        for row in rows:
            r = self.gate.check(row, "output")
            out.append([Verdict(subject(row), self.name, "gate", "pass" if r.passed else "fail", r.passed,
                                reason=r.reason, details=r.details, row=row, severity=self.severity)])
        return out


def make_check(item: Any, precision: str = "auto") -> Any:
    """A check from an evaluator, an artifact path, a gate, or a config mapping:
    ``{artifact: DIR, gates: [...], message_from: output, severity: high}`` or ``{gate: {type: ...}}``.
    Artifacts are loaded at the scoring ``precision``."""
    if isinstance(item, (ModelCheck, GateCheck)):
        return item
    if isinstance(item, Mapping):
        if "gate" in item:
            return GateCheck(item["gate"])
        if "type" in item:
            return GateCheck(item)
        if "artifact" in item or "evaluator" in item:
            allowed = {"artifact", "evaluator", "gates", "message_from", "severity", "fail_labels"}
            extra = set(item) - allowed
            if extra:
                raise AssayError(f"evaluator keys among {sorted(allowed)}", f"{sorted(extra)}",
                                 "remove or rename those keys", code="invalid_config")
            return ModelCheck(item.get("evaluator") or item["artifact"], gates=item.get("gates") or [],
                              message_from=item.get("message_from", "input"), severity=item.get("severity"),
                              fail_labels=item.get("fail_labels"), precision=precision)
        raise AssayError("an evaluator entry {artifact: DIR, gates: [...]} or {gate: {...}}",
                         f"keys {sorted(item)}", "fix the evaluators list", code="invalid_config")
    if hasattr(item, "check") and hasattr(item, "type"):
        return GateCheck(item)
    return ModelCheck(item, precision=precision)


def make_checks(items: Iterable[Any], precision: str = "auto") -> list[Any]:
    checks = [make_check(x, precision) for x in items]
    names = [c.name for c in checks]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise AssayError("one check per metric name", f"{dup} more than once", "drop the repeated evaluators",
                         code="invalid_config")
    if not checks:
        raise AssayError("at least one evaluator or gate", "none", "pass --metric ARTIFACT_DIR or a config",
                         code="invalid_config")
    return checks

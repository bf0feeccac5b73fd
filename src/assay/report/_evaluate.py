"""Evaluate an evaluator on held-out rows: its figures, the baselines', other systems', speed."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

import numpy as np

from .._version import __version__
from ..config import ReportConfig
from ..errors import AssayError
from ..evaluator._risk import RiskControl, realised
from ._baselines import run_baselines
from ._metrics import classification_metrics, to_jsonable, verdict_metrics
from ._render import baseline_warnings
from ._speed import measure_speed

_INFO_KEYS = ("family", "base", "max_length", "temperature", "threshold", "threshold_method")


def evaluate(
    evaluator: Any,
    rows: Sequence[Mapping[str, Any]],
    *,
    train_rows: Sequence[Mapping[str, Any]] | None = None,
    config: ReportConfig | None = None,
    extra_systems: Mapping[str, Any] | None = None,
    speed: bool = True,
    speed_seconds: float | None = None,
) -> dict[str, Any]:
    """The report dict (JSON types only, no per-row predictions).

    ``extra_systems`` maps a name (e.g. "judge") to probabilities [n, n_labels] or to a list
    of predicted labels (``None`` for a row the system did not answer: it counts as a disagreement in
    that system's kappa and accuracy and is counted in its ``unanswered``, see :func:`verdict_metrics`,
    the rule ``measure_judge`` and ``tune_judge`` use too). ``speed_seconds``: the speed
    measurement moves on to no further batch size once it has taken this long (``train.budget``).
    """
    config = config or ReportConfig()
    rows = list(rows)
    metric = evaluator.metric
    labels = list(getattr(evaluator, "labels", None) or metric.labels)
    if not rows:
        raise AssayError("held-out rows to evaluate", "no rows", "keep some labeled rows out of training",
                         code="too_few_rows")
    y = [r.get("label") for r in rows]
    positive = metric.positive if len(labels) == 2 else None
    probs = np.asarray(evaluator.predict_proba(rows), dtype=float)
    student = classification_metrics(y, probs, labels, positive=positive, threshold=evaluator.threshold,
                                     bootstrap=config.bootstrap)
    reliability = {"confidence": student.pop("reliability"), "positive": student.pop("reliability_positive")}

    baselines: dict[str, Any] = {}
    if train_rows and config.baselines:
        baselines = run_baselines(metric, train_rows, rows, bootstrap=config.bootstrap)
    systems = {name: _system(value, y, labels, positive, config.bootstrap)
               for name, value in (extra_systems or {}).items()}
    for entry in list(baselines.values()) + list(systems.values()):
        entry.pop("reliability", None)
        entry.pop("reliability_positive", None)

    speed_report = None
    if speed:
        speed_report = measure_speed(lambda batch: evaluator.predict_proba(batch), rows,
                                     cost_per_hour=config.cost_per_hour,
                                     judge_cost_per_eval=config.judge_cost_per_eval,
                                     max_rows=config.latency_rows,
                                     device=_device(evaluator),
                                     floor=getattr(evaluator, "forward_runner", None),
                                     time_limit=speed_seconds)
    report = {
        "assay_version": _version(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "metric": {
            "name": metric.name,
            "description": metric.description,
            "output": metric.output,
            "shape": getattr(metric.shape, "value", metric.shape),
            "labels": labels,
            "positive": positive,
            "severity": metric.severity,
        },
        "evaluator": _evaluator_summary(evaluator),
        "n": len(rows),
        "n_train": len(train_rows) if train_rows is not None else None,
        "label_counts": student["label_counts"],
        "student": student,
        "baselines": baselines,
        "systems": systems,
        "speed": speed_report,
        "reliability": reliability,
        "routing": _routing(evaluator, probs, y, labels, positive),
        "settings": config.model_dump(mode="json"),
    }
    out = to_jsonable(report)
    out["warnings"] = baseline_warnings(out)  # the student below a baseline beyond its interval
    return out


def _routing(evaluator: Any, probs: np.ndarray, y: list[Any], labels: list[str], positive: str | None
             ) -> dict[str, Any] | None:
    """The evaluator's certified review region (risk-controlled routing) and what it does on these
    rows: the share routed to people and the disagreement among the verdicts accepted automatically."""
    cal = getattr(evaluator, "calibration", None)
    routing = getattr(cal, "routing", None)
    if not routing:
        return None
    control = RiskControl.from_dict(dict(routing))
    out = {"certified": dict(routing), "applies": cal.review_region() is not None}
    if control is not None and control.met and out["applies"]:
        idx = [labels.index(v) for v in y]
        out["held_out"] = realised(control, probs, idx, labels, positive, evaluator.threshold)
    return out


def _system(value: Any, y: list[Any], labels: list[str], positive: str | None, bootstrap: int) -> dict[str, Any]:
    if isinstance(value, Mapping):  # {"probs": ...} or {"labels": ...}
        value = value.get("probs", value.get("labels"))
    arr = value if isinstance(value, np.ndarray) else None
    if arr is None and isinstance(value, (list, tuple)) and value and all(
            v is None or isinstance(v, str) for v in value):
        if len(value) != len(y):
            raise AssayError(f"{len(y)} predicted labels (one per row)", f"{len(value)}",
                             "pass one prediction per evaluation row", code="invalid_input")
        unknown = sorted({v for v in value if v is not None and v not in labels})
        if unknown:
            raise AssayError(f"predicted labels among {labels}", f"{unknown[:5]}",
                             "map the system's answers to the metric's labels", code="invalid_input")
        m = verdict_metrics(y, value, labels, positive=positive, bootstrap=bootstrap)
        m["kind"] = "labels"
        return m
    probs = np.asarray(value, dtype=float)
    m = classification_metrics(y, probs, labels, positive=positive, threshold=0.5 if positive else None,
                               bootstrap=bootstrap)
    m["unanswered"] = 0
    m["kind"] = "probabilities"
    return m


def _evaluator_summary(evaluator: Any) -> dict[str, Any]:
    """family, base, max_length (the evaluator's ``info`` sections), temperature, threshold and how it was
    chosen (its calibration)."""
    info = getattr(evaluator, "info", None) or {}
    cal = getattr(evaluator, "calibration", None)
    decision = {"temperature": getattr(evaluator, "temperature", None),
                "threshold": getattr(evaluator, "threshold", None),
                "threshold_method": getattr(cal, "threshold_method", None)}
    out: dict[str, Any] = {}
    for key in _INFO_KEYS:
        if key in ("temperature", "threshold") and hasattr(evaluator, key):
            out[key] = decision[key]  # what the evaluator decides with, None included
            continue
        for scope in (info, info.get("model") or {}, decision):
            value = scope.get(key) if isinstance(scope, Mapping) else None
            if isinstance(value, Mapping) and key == "base":  # a BaseRef dict: keep its name
                value = value.get("name")
            if value is not None and not isinstance(value, (Mapping, list)):
                out[key] = value
                break
    return out


def _device(evaluator: Any) -> str | None:
    dev = getattr(evaluator, "device", None)
    return str(dev) if dev is not None else None


def _version() -> str:
    return __version__

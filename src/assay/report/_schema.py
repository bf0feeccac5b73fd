"""``report.json``'s typed, versioned model: :class:`Report`, and its one-line :meth:`Report.headline`.

:func:`assay.report.evaluate` builds the dict, :func:`assay.report.write_report` writes it with
``format_version``; everything that reads a report back (the CLI's summary line, ``evaluator.json``'s
``report_summary``, the monitor's evaluation-time kappa) reads it through this model. Sections are
typed loosely (every figure optional) and every other key is kept, so a report read and written back
loses nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import AssayError
from ..evaluator._artifact import REPORT_JSON, Candidate, Figures, Selection, _check_version, _invalid

REPORT_FORMAT_VERSION = 1  # report.json's layout; raised when a key changes meaning or moves

_FIX = "point at a report.json written by assay train / assay evaluate --output, or evaluate again"


def fmt(x: Any, digits: int = 3) -> str:
    """A figure for people: ``digits`` decimals, ``–`` when there is none."""
    return "–" if x is None else f"{x:.{digits}f}"


def _loose() -> ConfigDict:
    return ConfigDict(extra="allow", protected_namespaces=())


class SpeedBatch(BaseModel):
    """Throughput and latency at one batch size."""

    model_config = _loose()
    batch_size: int | None = None
    rows_per_s: float | None = None
    floor_rows_per_s: float | None = None  # the bare model forward's rows/s
    ratio_to_floor: float | None = None
    row_latency_ms: dict[str, float | None] = Field(default_factory=dict)  # p50, p95
    batch_latency_ms: dict[str, float | None] = Field(default_factory=dict)


class Speed(BaseModel):
    """Throughput and cost (``assay.report.measure_speed``)."""

    model_config = _loose()
    rows_timed: int | None = None
    best_batch_size: int | None = None
    best_rows_per_s: float | None = None
    cost_per_hour: float | None = None
    cost_per_1m: float | None = None
    judge_cost_per_eval: float | None = None
    judge_cost_per_1m: float | None = None
    cheaper_than_judge: float | None = None
    ratio_to_floor: float | None = None  # scoring rows/s over the bare model forward's, at the best batch size
    batches: list[SpeedBatch] = Field(default_factory=list)
    machine: dict[str, Any] | None = None  # cpu, cores, torch threads and version, device, platform ...


class Resources(BaseModel):
    """What training took: its wall time, its budget and the peak memory (RSS) of each stage."""

    model_config = _loose()
    seconds: float | None = None
    budget_seconds: float | None = None
    peak_rss_mib: dict[str, float] | None = None


class Bin(BaseModel):
    """One reliability-diagram bin: its edges, the mean confidence, the observed rate, the rows in it."""

    model_config = _loose()
    lo: float
    hi: float
    confidence: float | None = None
    accuracy: float | None = None
    count: int = 0


class Reliability(BaseModel):
    """Reliability diagrams of the student: the predicted label's confidence, and P(positive) (binary)."""

    model_config = _loose()
    confidence: list[Bin] | None = None
    positive: list[Bin] | None = None


class Certified(BaseModel):
    """The review region certified on the calibration rows (``assay.evaluator._risk.RiskControl``)."""

    model_config = _loose()
    target: float | None = None
    delta: float | None = None
    met: bool | None = None
    n_rows: int | None = None
    method: str | None = None
    band: list[float] | None = None  # binary: P(positive) in [lo, hi] goes to people
    min_confidence: float | None = None  # categorical: confidence below it goes to people
    routed_share: float | None = None
    accepted_disagreement: float | None = None


class Realised(BaseModel):
    """What the certified region does on the held-out rows."""

    model_config = _loose()
    rows: int | None = None
    routed_share: float | None = None
    accepted_disagreement: float | None = None
    within_target: bool | None = None


class Routing(BaseModel):
    """Risk-controlled routing: the certified region, whether it applies (the threshold did not move),
    and what it does on the held-out rows."""

    model_config = _loose()
    certified: Certified = Field(default_factory=Certified)
    applies: bool | None = None
    held_out: Realised | None = None


class VersionFigures(BaseModel):
    """The previous and the new evaluator on one row set, and the delta (new - previous)."""

    model_config = _loose()
    n: int | None = None
    rows_hash: str | None = None  # order-independent hash of the rows and labels both were scored on
    previous: Figures = Field(default_factory=Figures)
    new: Figures = Field(default_factory=Figures)
    delta: dict[str, float | None] = Field(default_factory=dict)  # kappa, f1_macro, auroc, accuracy


class Comparison(BaseModel):
    """A retrain's comparison with the version it started from (``assay.report.compare_versions``):
    ``sets["held_out"]`` is the previous version's held-out rows, both evaluators scored on them."""

    model_config = _loose()
    previous: str | None = None  # name-vN
    new: str | None = None
    figures: list[str] | None = None
    sets: dict[str, VersionFigures] = Field(default_factory=dict)
    notes: list[str] | None = None
    skipped: str | None = None  # why no figures (e.g. the previous artifact could not be loaded)


class ReportMetric(BaseModel):
    model_config = _loose()
    name: str | None = None
    description: str | None = None
    output: str | None = None
    shape: str | None = None
    labels: list[str] | None = None
    positive: str | None = None
    severity: str | None = None


class Report(BaseModel):
    """``report.json``. Build with :meth:`from_dict` / :meth:`from_file`; :meth:`to_dict` gives back
    exactly the keys read. ``format_version`` is absent only from a report not written yet (read as
    the current one)."""

    model_config = _loose()

    format_version: int = REPORT_FORMAT_VERSION
    assay_version: str | None = None
    created_at: str | None = None
    metric: ReportMetric | None = None
    evaluator: dict[str, Any] | None = None  # family, base, max_length, temperature, threshold(_method)
    # the data: held-out rows scored, training rows, held-out label counts
    n: int | None = None
    n_train: int | None = None
    label_counts: dict[str, int] | None = None
    # the figures
    student: Figures = Field(default_factory=Figures)
    baselines: dict[str, Figures] | None = None  # majority, tfidf_logreg
    systems: dict[str, Figures] | None = None  # e.g. the LLM judge ("judge")
    speed: Speed | None = None
    reliability: Reliability | None = None
    routing: Routing | None = None  # risk-controlled routing (assay.report.evaluate)
    excluded_trained_rows: int | None = None  # assay evaluate: rows the artifact trained on, left out
    settings: dict[str, Any] | None = None  # ReportConfig
    selection: Selection | None = None
    notes: list[str] | None = None
    comparison: Comparison | None = None  # a retrain from reviews: against the previous version
    resources: Resources | None = None  # train: seconds, budget_seconds, peak_rss_mib per stage

    # --- reading ----------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, source: str | Path = REPORT_JSON) -> "Report":
        """Validate a report dict; one ``invalid_artifact`` error naming ``source``."""
        if isinstance(data, Report):
            return data
        if not isinstance(data, Mapping):
            raise AssayError(f"a JSON object in {REPORT_JSON}", f"{type(data).__name__} in {source}", _FIX,
                             code="invalid_artifact")
        _check_version(data.get("format_version"), REPORT_FORMAT_VERSION, f"a {REPORT_JSON}", source)
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise _invalid(exc, REPORT_JSON, source, _FIX) from None

    @classmethod
    def from_file(cls, path: str | Path) -> "Report":
        """From an artifact / report directory (or the ``report.json`` itself)."""
        path = Path(path).expanduser()
        file = path if path.name == REPORT_JSON and not path.is_dir() else path / REPORT_JSON
        if not file.exists():
            raise AssayError(f"a {REPORT_JSON}", f"none in {file.parent}", _FIX, code="not_found")
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise AssayError(f"valid JSON in {REPORT_JSON}", f"a parse error in {file} ({exc})", _FIX,
                             code="invalid_artifact") from None
        return cls.from_dict(data, file)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, with exactly the keys that were read or set (defaults are not added)."""
        return self.model_dump(mode="json", exclude_unset=True)

    # --- typed shortcuts ------------------------------------------------------------------------
    @property
    def kappa(self) -> float | None:
        """The evaluator's held-out kappa (``student.kappa``)."""
        return self.student.kappa_value

    @property
    def judge(self) -> Figures | None:
        """The LLM judge's figures on the same rows, when it was measured."""
        return (self.systems or {}).get("judge")

    @property
    def candidates(self) -> list[Candidate]:
        return list(self.selection.candidates) if self.selection is not None else []

    def others(self) -> list[tuple[str, Figures]]:
        """Baselines, then other systems, in report order."""
        return list((self.baselines or {}).items()) + list((self.systems or {}).items())

    # --- summaries --------------------------------------------------------------------------------
    def headline(self) -> str:
        """One line for the CLI: the student's headline figures, then the baselines' kappa."""
        s = self.student
        ci = s.ci_of("kappa")
        parts = [f"held-out n={self.n}",
                 f"kappa {fmt(s.kappa_value, 2)}" + (f" [{fmt(ci[0], 2)}, {fmt(ci[1], 2)}]" if ci else ""),
                 f"F1 {fmt(s.f1_macro, 2)}", f"AUROC {fmt(s.auroc, 2)}", f"ECE {fmt(s.ece, 3)}"]
        line = "  ".join(parts)
        others = []
        for name, m in self.others():
            short = "tfidf" if name == "tfidf_logreg" else name
            others.append(f"{short} " + ("skipped" if m.is_skipped else f"kappa {fmt(m.kappa_value, 2)}"))
        if others:
            line += "  | " + "  ".join(others)
        if self.speed is not None and self.speed.best_rows_per_s:
            line += f"  | {self.speed.best_rows_per_s:.0f} rows/s"
        held = self.comparison.sets.get("held_out") if self.comparison is not None else None
        if held is not None and held.delta.get("kappa") is not None:
            line += f"  | vs {self.comparison.previous}: kappa {held.delta['kappa']:+.2f}"  # type: ignore[union-attr]
        return line

    def summary(self) -> dict[str, Any]:
        """The headline figures ``evaluator.json`` keeps as ``report_summary``."""
        s = self.student.model_dump(mode="json")
        out = {k: s.get(k) for k in ("n", "kappa", "f1_macro", "accuracy", "auroc", "ece", "brier")}
        out["baselines"] = {name: (None if m.is_skipped else m.kappa) for name, m in (self.baselines or {}).items()}
        return out

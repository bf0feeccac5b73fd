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
from ..evaluator._artifact import REPORT_JSON, _check_version, _invalid

REPORT_FORMAT_VERSION = 1  # report.json's layout; raised when a key changes meaning or moves

_FIX = "point at a report.json written by assay train / assay evaluate --output, or evaluate again"


def fmt(x: Any, digits: int = 3) -> str:
    """A figure for people: ``digits`` decimals, ``–`` when there is none."""
    return "–" if x is None else f"{x:.{digits}f}"


def _loose() -> ConfigDict:
    return ConfigDict(extra="allow", protected_namespaces=())


class Figures(BaseModel):
    """One system's figures on the held-out rows (``student``, each baseline, each other system)."""

    model_config = _loose()
    n: int | None = None
    kappa: float | dict[str, Any] | None = None
    f1_macro: float | None = None
    accuracy: float | None = None
    auroc: float | None = None
    auprc: float | None = None
    ece: float | None = None
    brier: float | None = None
    threshold: float | None = None
    ci: dict[str, Any] | None = None  # n_boot, seed, and [lo, hi] per figure
    skipped: str | None = None  # a baseline that did not run, and why
    kind: str | None = None  # other systems: "probabilities" or "labels"
    unanswered: int | None = None

    @property
    def is_skipped(self) -> bool:
        return "skipped" in self.model_fields_set

    @property
    def kappa_value(self) -> float | None:
        """``kappa`` as a number (also from a ``{"value"|"point"|"estimate": ...}`` entry)."""
        k = self.kappa
        if isinstance(k, Mapping):
            k = k.get("value", k.get("point", k.get("estimate")))
        return float(k) if isinstance(k, (int, float)) and not isinstance(k, bool) else None

    def ci_of(self, key: str) -> list[Any] | None:
        ci = (self.ci or {}).get(key)
        return ci if isinstance(ci, (list, tuple)) and len(ci) == 2 else None


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


class Candidate(BaseModel):
    """One model-selection candidate (``train/_select.py``)."""

    model_config = _loose()
    name: str | None = None
    cv_kappa: float | None = None
    ci: list[float | None] | None = None
    fold_kappas: list[float | None] | None = None
    validation_kappa: float | None = None
    seconds: float | None = None
    validated_on: str | None = None
    params: dict[str, Any] | None = None
    error: str | None = None


class Selection(BaseModel):
    """How the shipped candidate was chosen."""

    model_config = _loose()
    winner: str | None = None
    reason: str | None = None
    compared_on: str | None = None
    candidates: list[Candidate] = Field(default_factory=list)


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
    reliability: dict[str, Any] | None = None
    settings: dict[str, Any] | None = None  # ReportConfig
    selection: Selection | None = None
    notes: list[str] | None = None
    comparison: Comparison | None = None  # a retrain from reviews: against the previous version
    resources: dict[str, Any] | None = None  # train: seconds, budget_seconds, peak_rss_mib per stage

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

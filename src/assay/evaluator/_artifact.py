"""The artifact directory's contract: every file name in it, and ``evaluator.json``'s typed, versioned model.

An artifact (what ``assay train`` / :meth:`Evaluator.save_pretrained` write) is a folder of the files
named here; nothing else reads or writes an artifact file by a name spelled elsewhere.
:class:`EvaluatorInfo` is ``evaluator.json``: the essentials are checked (``metric``, ``family``, a
``format_version`` this code reads), the sections are typed, and every other key is kept as it is,
so reading and writing it back loses nothing. This module imports neither torch nor the report.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, ValidationError, field_validator

from .._version import __version__
from ..errors import AssayError, invalid
from ._contract import Calibration

FORMAT_VERSION = 1  # evaluator.json's layout; raised when a key changes meaning or moves (add a golden fixture)

# --- every file an artifact directory may hold ------------------------------------------------
INFO_FILE = "evaluator.json"  # EvaluatorInfo below
CARD_FILE = "README.md"  # the model card (evaluator/_card.py)
CONFIG_FILE = "config.yaml"  # the resolved run config (train/_pipeline.py)
SPLIT_FILE = "split.json"  # the seed / held-out split and the hashes of the rows trained on
REPORT_JSON = "report.json"  # assay.report.Report
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
REPORT_FILES = {"json": REPORT_JSON, "md": REPORT_MD, "html": REPORT_HTML}  # by kind (assay.report.FILES)
# weights: one set per family
ADAPTER_FILE = "adapter_model.safetensors"  # encoder / decoder, LoRA
ADAPTER_CONFIG_FILE = "adapter_config.json"  # written by peft next to the adapter
FULL_FILE = "model.safetensors"  # encoder / decoder, fully fine-tuned (no LoRA)
HEAD_FILE = "head.safetensors"  # encoder: the classification head
LINEAR_FILE = "linear.safetensors"  # linear / hybrid: logistic-regression heads (+ TF-IDF tensors)
VOCAB_FILE = "vocab.json"  # linear / hybrid with a tfidf block: its vocabulary
CONTRASTIVE_FILE = "contrastive.safetensors"  # linear with a contrastive block: the tuned embedder

WEIGHT_FILES = (ADAPTER_FILE, ADAPTER_CONFIG_FILE, FULL_FILE, HEAD_FILE, LINEAR_FILE, VOCAB_FILE, CONTRASTIVE_FILE)
ARTIFACT_FILES = (INFO_FILE, CARD_FILE, CONFIG_FILE, SPLIT_FILE, REPORT_JSON, REPORT_MD, REPORT_HTML) + WEIGHT_FILES

_FIX = "point at the directory `assay train` wrote, or re-run assay train"
# evaluator.json's top-level keys whose values live in the evaluator's one Calibration
CALIBRATION_KEYS = ("calibration", "temperature", "label_shift", "threshold", "operator")


def _loose() -> ConfigDict:
    return ConfigDict(extra="allow", protected_namespaces=())


class BaseInfo(BaseModel):
    """``base``: the base model the evaluator was built on (``BaseRef.to_dict()``)."""

    model_config = _loose()
    name: str | None = None
    path: str | None = None
    source: str | None = None
    package: str | None = None
    package_version: str | None = None
    files: dict[str, str] = Field(default_factory=dict)  # weight file name -> sha256


class DataInfo(BaseModel):
    """``data``: where the rows came from, how many, their hashes (``train/_pipeline.py``)."""

    model_config = _loose()
    test_set: str | None = None
    train_set: str | None = None
    counts: dict[str, Any] = Field(default_factory=dict)
    label_counts: dict[str, Any] = Field(default_factory=dict)
    hashes: dict[str, str] = Field(default_factory=dict)  # seeds, held_out, train_rows, calibration_rows
    seed_fraction: float | None = None
    split_seed: int | None = None
    group_by: str | None = None
    notes: list[str] = Field(default_factory=list)


class LinearInfo(BaseModel):
    """``linear``: a linear / hybrid evaluator's feature blocks (``train/_fit.py``)."""

    model_config = _loose()
    kind: str | None = None  # the candidate that shipped: tfidf, embed, contrastive, blend, hybrid
    blocks: list[str] = Field(default_factory=list)
    max_lengths: dict[str, int] = Field(default_factory=dict)  # an embedding block may read fewer tokens
    grounding: dict[str, Any] = Field(default_factory=dict)  # block -> the fields it grounds on
    keep_end: dict[str, bool] = Field(default_factory=dict)  # block -> truncated from the start (absent: older)
    neural: dict[str, Any] | None = None  # the fine-tuned network pooled in (block "encoder"): family, base, model


class TrainingInfo(BaseModel):
    """``training``: the resolved ``train:`` settings plus what the fit recorded (``train/_pipeline.py``)."""

    model_config = _loose()
    rows: int | None = None
    steps: int | None = None
    seconds: float | None = None
    device: str | None = None
    precision: str | None = None
    eval_batch_size: int | None = None
    learning_rate: float | None = None
    prior: Any = None  # train.prior: seeds, training, or a label mix
    resources: dict[str, Any] | None = None


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
    # the student's detail (assay.report.classification_metrics)
    labels: list[str] | None = None
    ece_positive: float | None = None
    confusion: list[list[int | float]] | None = None  # rows: true label; columns: predicted
    per_class: dict[str, dict[str, Any]] | None = None  # label -> precision, recall, f1, support

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


class Headline(BaseModel):
    """The figures of ``report.json`` the model card shows; :class:`assay.report.Report` is the whole file."""

    model_config = _loose()
    student: Figures = Field(default_factory=Figures)
    baselines: dict[str, Figures] | None = None  # majority, tfidf_logreg


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
    """How the shipped candidate was chosen (``evaluator.json`` and ``report.json`` ``selection``)."""

    model_config = _loose()
    winner: str | None = None
    reason: str | None = None
    compared_on: str | None = None
    candidates: list[Candidate] = Field(default_factory=list)
    group_by: str | None = None  # folds kept rows sharing it together (None: each distinct row)
    seed: int | None = None
    rule: str | None = None  # the selection rule, in words (absent from artifacts before it was recorded)
    tie_tolerance: float | None = None
    encoder_band: float | None = None  # standard errors within which encoder and winner pool (absent before it)
    encoder_margin: float | None = None  # standard errors the encoder alone must lead by (absent: TIE alone)
    cost_order: list[str] | None = None
    fitted_parameters: dict[str, int | None] | None = None  # candidate -> its fitted parameter count
    notes: list[str] | None = None


def _calibration_entry(value: Any) -> Calibration:
    if isinstance(value, Calibration):
        return value
    if not isinstance(value, Mapping):
        raise ValueError("a calibration object (Calibration.to_dict)")
    try:
        return Calibration.from_dict(value)
    except (TypeError, ValueError):
        raise ValueError("a calibration entry as Calibration.to_dict writes it") from None


CalibrationEntry = Annotated[Calibration, PlainValidator(_calibration_entry),
                             PlainSerializer(lambda c: c.to_dict(), return_type=dict)]


class EvaluatorInfo(BaseModel):
    """``evaluator.json``: typed access to what an artifact records; unknown keys are kept.

    Written by :meth:`Evaluator.describe` (format, versions, metric, network, calibration figures)
    plus what ``assay train`` adds (``training``, ``calibration``, ``data``, ``config``,
    ``selection``, ``judge``, ``report_summary``). Build it with :meth:`from_dict` /
    :meth:`from_file`; :meth:`to_dict` gives back exactly the keys that were read.
    """

    model_config = _loose()

    format_version: int = FORMAT_VERSION  # absent in files written before it was recorded: read as 1
    assay_version: str | None = None
    created_at: str | None = None
    # what it judges
    metric: dict[str, Any]  # MetricSpec.to_dict(); assay.metrics.metric_from_dict validates it in full
    labels: list[str] | None = None
    # what it is
    family: str  # encoder, decoder, linear, hybrid (assay.testing: mock)
    kind: str | None = None  # assay.testing.MockEvaluator artifacts
    base: BaseInfo | None = None
    model: dict[str, Any] | None = None  # ModelConfig, as trained
    linear: LinearInfo | None = None  # linear / hybrid: kind, blocks, max_lengths
    network: dict[str, Any] | None = None  # the model's own describe()
    max_length: int | None = None
    truncation_policy: str | None = None
    # the decision (what the evaluator applies) and how it was calibrated: see scoring_calibration()
    temperature: float = 1.0
    label_shift: dict[str, float] | None = None
    threshold: float | None = None
    operator: str | None = None  # absent: ">=" (written only for another operator)
    calibration: CalibrationEntry | None = None  # Calibration.to_dict()
    # how it was trained
    training: TrainingInfo | None = None
    data: DataInfo | None = None
    config: dict[str, Any] | None = None  # the resolved run config (also config.yaml)
    selection: Selection | None = None
    judge: dict[str, Any] | None = None
    report_summary: dict[str, Any] | None = None
    versions: dict[str, str | None] | None = None
    files: list[str] | None = None  # the weight files save_pretrained wrote

    @field_validator("metric")
    @classmethod
    def _metric_has_a_name(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not v.get("name"):
            raise ValueError("a metric with a name")
        return v

    @field_validator("format_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v < 1:
            raise ValueError("a format_version of 1 or more")
        return v

    # --- reading ----------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, source: str | Path = INFO_FILE) -> "EvaluatorInfo":
        """Validate a parsed ``evaluator.json``; one ``invalid_artifact`` error naming ``source``."""
        if not isinstance(data, Mapping):
            raise AssayError(f"a JSON object in {INFO_FILE}", f"{type(data).__name__} in {source}", _FIX,
                             code="invalid_artifact")
        _check_version(data.get("format_version"), FORMAT_VERSION, f"an artifact {INFO_FILE}", source)
        missing = [k for k in ("metric", "family") if data.get(k) is None]
        if missing:
            raise AssayError(f"{INFO_FILE} with {', '.join(missing)}", f"no {', '.join(missing)} in {source}",
                             _FIX, code="invalid_artifact")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise _invalid(exc, INFO_FILE, source, _FIX) from None

    @classmethod
    def from_file(cls, path: str | Path) -> "EvaluatorInfo":
        """From an artifact directory (or its ``evaluator.json``)."""
        return cls.from_dict(*_read_json(path))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, with exactly the keys that were read or set (defaults are not added)."""
        return self.model_dump(mode="json", exclude_unset=True)

    # --- typed shortcuts ------------------------------------------------------------------------
    @property
    def metric_name(self) -> str:
        return str(self.metric["name"])

    @property
    def base_name(self) -> str | None:
        return self.base.name if self.base is not None else None

    @property
    def data_hashes(self) -> dict[str, str]:
        """Content hashes of the seeds, held-out, training and calibration rows (empty if unrecorded)."""
        return dict(self.data.hashes) if self.data is not None else {}

    @property
    def label_list(self) -> list[str]:
        """The labels, from ``labels`` or else the metric's."""
        return list(self.labels or self.metric.get("labels") or [])

    @property
    def blocks(self) -> list[str]:
        """A linear / hybrid evaluator's feature blocks (empty for the other families)."""
        return list(self.linear.blocks) if self.linear is not None else []

    @property
    def eval_batch_size(self) -> int:
        """The scoring batch size training recorded (32 when unrecorded)."""
        size = self.training.eval_batch_size if self.training is not None else None
        return int(size) if size is not None else 32

    def scoring_calibration(self) -> Calibration:
        """The calibration this artifact scores with: the ``calibration`` record (defaults when absent)
        with the top-level temperature, label shift, threshold and operator, which the evaluator applies
        (a top-level threshold other than the record's is a moved one: see ``Calibration.with_decision``)."""
        cal = self.calibration if self.calibration is not None else Calibration()
        cal = replace(cal, temperature=float(self.temperature), label_shift=self.label_shift,
                      operator=self.operator or ">=")
        if self.calibration is None or self.threshold is None:
            return replace(cal, threshold=self.threshold)
        return cal.with_decision(self.threshold)


def _invalid(exc: ValidationError, name: str, source: str | Path, fix: str) -> AssayError:
    """A pydantic error on an artifact file as one ``invalid_artifact`` line: the key, what it should
    be, what it holds, the file."""
    return invalid(exc, f"{name} key '{{where}}': {{msg}}", fix, found=f"{{input}} in {source}",
                   code="invalid_artifact", top="(top level)")


def _check_version(version: Any, known: int, what: str, source: str | Path) -> None:
    """Refuse a ``format_version`` newer than ``known`` (a file a newer assay wrote), naming the file."""
    try:
        newer = version is not None and not isinstance(version, bool) and int(version) > known
    except (TypeError, ValueError):
        return  # not a number: the model's validation names it
    if newer:
        raise AssayError(f"{what} with format_version <= {known} (what assay {__version__} reads)",
                         f"format_version {version} in {source}",
                         "upgrade assay (pip install -U assay) to read files a newer assay wrote",
                         code="invalid_artifact")


def _read_json(path: str | Path) -> tuple[Any, Path]:
    """(parsed evaluator.json, its path) for an artifact directory or the file; clear errors."""
    path = Path(path).expanduser()
    file = path if path.name == INFO_FILE and not path.is_dir() else path / INFO_FILE
    if not file.exists():
        raise AssayError(f"an evaluator artifact directory with {INFO_FILE}", f"no {INFO_FILE} in {file.parent}",
                         "pass the directory `assay train` wrote (its output_dir)", code="not_found")
    try:
        return json.loads(file.read_text(encoding="utf-8")), file
    except (ValueError, UnicodeDecodeError) as exc:
        raise AssayError(f"valid JSON in {INFO_FILE}", f"a parse error in {file} ({exc})", "re-run assay train",
                         code="invalid_artifact") from None


def read_info(folder: str | Path) -> EvaluatorInfo:
    """The ``evaluator.json`` of an artifact directory (or the file) as :class:`EvaluatorInfo` (one clear
    error when missing, not JSON, missing its essentials or newer than this assay); ``.to_dict()`` gives
    the JSON object back, every key kept."""
    return EvaluatorInfo.from_file(folder)

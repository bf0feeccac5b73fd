"""The Evaluator: a trained, calibrated judge model that scores rows with one forward pass."""

from __future__ import annotations

import json
import platform
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .._cpu import apply_threads
from .._version import __version__
from ..config import ModelConfig
from ..errors import AssayError
from ..metrics import MetricSpec, metric_from_dict
from ._artifact import (CALIBRATION_KEYS, CARD_FILE, FORMAT_VERSION, INFO_FILE, REPORT_JSON, EvaluatorInfo, Headline,
                        read_info)
from ._base_models import BaseRef, resolve_base
from ._card import model_card
from ._chunks import length_batches, network_logits
from ._contract import Calibration, Score, calibrated_probs, decide, scores_from_probs
from ._device import autocast, quantize_int8, select_device, select_dtype

LINEAR_FAMILIES = ("linear", "hybrid")  # features -> logistic regression (see _linear.py)


def build_model(metric: MetricSpec, base: Any, model_cfg: ModelConfig, family: str):
    """The family's network on top of a resolved base (``BaseRef``)."""
    from ._common import quiet_loading
    from ._neural_block import build_network  # torch: loaded when a network is built (see the module's imports)

    if family not in ("encoder", "decoder"):
        raise AssayError("model.family encoder or decoder", f"'{family}'", "set model.family", code="invalid_config")
    with quiet_loading():
        return build_network(metric, base, model_cfg, family)


class Evaluator:
    """A metric's evaluator model. Load with :meth:`from_pretrained`, score with :meth:`score`.

    ``precision`` (scoring): ``auto`` (bf16 on a GPU that has it or a CPU with AMX / AVX512-BF16, else
    fp32), ``fp32``, ``bf16``, ``fp16`` (GPU), ``int8`` (CPU, encoder family: dynamic quantisation of the
    Linear layers). The linear families run their embedding forward at this precision too (pooling and
    heads in fp32). ``training=True`` (:meth:`create`): the training precision, the same choice under auto.

    ``calibration``: the one home of temperature, label shift, threshold and operator (default: none
    fitted, threshold 0.5 for binary metrics); ``ev.threshold`` / ``ev.temperature`` / ``ev.label_shift``
    read it, and a new one is set whole (``ev.calibration = calibrate(ev, rows)``). ``info``: the other
    ``evaluator.json`` sections to write back (its calibration keys are not kept: ``calibration`` is).
    ``record_calibration``: write the ``calibration`` entry on save (default: when one was given or set).
    """

    def __init__(self, metric: MetricSpec, model: Any, *, calibration: Calibration | None = None,
                 info: dict[str, Any] | None = None, device: str | None = "auto", precision: str = "auto",
                 training: bool = False, record_calibration: bool | None = None):

        self.metric = metric
        self.model = model
        self._calibration = (calibration or Calibration()).for_labels(metric.is_binary)
        self._record_calibration = calibration is not None if record_calibration is None else record_calibration
        self.info: dict[str, Any] = {k: v for k, v in (info or {}).items() if k not in CALIBRATION_KEYS}
        self.device = select_device(device)
        # scoring precision (auto: bf16 where the CPU or GPU does it natively); training: see select_dtype
        self.precision = precision
        self.dtype = select_dtype(precision, self.device, training=training)
        self.batch_size = int((self.info.get("training") or {}).get("eval_batch_size", 32))
        if self.device.type == "cpu":
            apply_threads()  # torch threads at most the cores this process may use (assay._cpu)
        self.model.to(self.device)
        self.model.eval()
        if not training and getattr(self.model, "family", None) == "encoder" and hasattr(self.model, "net"):
            from ._common import merge_lora

            merge_lora(self.model.net)  # one Linear per projection when scoring; train_loop unmerges
        if precision == "int8":
            # encoder family only: a linear family's int8 embeddings moved its probabilities by up to 0.45
            # (pii, 200 rows; bf16 0.009), so it is refused rather than offered
            if getattr(self.model, "family", None) != "encoder":
                raise AssayError("an encoder-family evaluator for precision int8",
                                 f"family {getattr(self.model, 'family', None)}",
                                 "score with precision auto, bf16 (on a CPU with AMX / AVX512-BF16) or fp32",
                                 code="invalid_config")
            self.model.net = quantize_int8(self.model.net)

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, metric: MetricSpec, model_cfg: ModelConfig | None = None, *, device: str | None = "auto",
               precision: str = "auto") -> "Evaluator":
        """A new, untrained evaluator for ``metric`` (training starts from this)."""

        model_cfg = model_cfg or ModelConfig()
        base = resolve_base(model_cfg.base_name)
        model = build_model(metric, base, model_cfg, model_cfg.family)
        info = {
            "family": model_cfg.family,
            "base": base.to_dict(),
            "model": model_cfg.model_dump(mode="json"),
        }
        return cls(metric, model, info=info, device=device, precision=precision, training=True)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str | None = "auto", precision: str = "auto") -> "Evaluator":
        """Load an artifact directory written by :meth:`save_pretrained` (or ``assay train``)."""
        from ._common import quiet_loading

        folder = Path(path).expanduser()
        info = read_info(folder)  # validated by EvaluatorInfo: essentials present, format_version known
        metric = metric_from_dict(info.metric, f"{INFO_FILE} metric")
        if info.family in LINEAR_FAMILIES:
            model = cls._load_linear(metric, folder, info)
        else:
            base = _locate_base(info)
            model = build_model(metric, base, ModelConfig.from_artifact(info.model or {}), info.family)
            with quiet_loading():
                model.load_weights(folder)
        return cls(metric, model, calibration=info.scoring_calibration(), info=info.to_dict(),
                   record_calibration=info.calibration is not None, device=device, precision=precision)

    @staticmethod
    def _load_linear(metric: MetricSpec, folder: Path, info: EvaluatorInfo) -> Any:
        """A linear / hybrid artifact's model: TF-IDF vocabulary + heads from the folder, the frozen base
        if it embeds."""
        from ._linear import EMBED_KINDS, LinearModel

        base = _locate_base(info) if set(EMBED_KINDS) & set(info.blocks) else None
        return LinearModel.load(metric, folder, info, base)

    # --- properties ---------------------------------------------------------------------------
    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.metric.labels)

    @property
    def family(self) -> str:
        return self.model.family

    @property
    def calibration(self) -> Calibration:
        """The one home of this evaluator's temperature, label shift, threshold and operator, and of how
        they were fitted (``evaluator.json`` ``calibration``); set a new one whole."""
        return self._calibration

    @calibration.setter
    def calibration(self, cal: Calibration) -> None:
        self._calibration = cal.for_labels(self.metric.is_binary)
        self._record_calibration = True

    @property
    def temperature(self) -> float:
        return float(self._calibration.temperature)

    @property
    def threshold(self) -> float | None:
        """Binary metrics: positive when P(positive) >= threshold (``calibration.operator``); else None."""
        return self._calibration.threshold

    @property
    def label_shift(self) -> np.ndarray | None:
        """log(target prior / calibration prior) per label, added after temperature scaling (None: no shift)."""
        shift = self._calibration.label_shift
        return np.array([float(shift[lab]) for lab in self.metric.labels]) if shift else None

    # --- scoring ------------------------------------------------------------------------------
    def encode(self, rows: Sequence[Mapping[str, Any]]):
        return self.model.encode(rows)

    def logits_of(self, encoded: Sequence[Any], batch_size: int | None = None) -> np.ndarray:
        """Raw label logits for encoded rows, batched by length; [n_rows, n_labels]."""
        import torch


        if hasattr(self.model, "logits_encoded"):  # linear / hybrid: features -> logistic regression
            # the embedding forward at the scoring precision (bf16 autocast under auto on a bf16 CPU);
            # pooling, normalisation and the heads stay fp32
            with torch.inference_mode(), autocast(self.device, self.dtype):
                return np.asarray(self.model.logits_encoded(encoded), dtype=np.float32)
        self.model.eval()
        with torch.inference_mode(), autocast(self.device, self.dtype):  # no rows: a [0, n_labels] array
            return network_logits(self.model, encoded, batch_size or self.batch_size, self.device, len(self.labels))

    def forward_runner(self, rows: Sequence[Mapping[str, Any]], batch_size: int) -> Any:
        """A runner of the bare model forward over ``rows``, tokenised and padded now (batched by
        length as in scoring): the floor the report's speed section compares scoring with."""
        import torch


        encoded = self.encode(list(rows))
        if hasattr(self.model, "logits_encoded"):  # linear / hybrid: features and heads, at the scoring precision
            def run_linear() -> None:
                with torch.inference_mode(), autocast(self.device, self.dtype):
                    self.model.logits_encoded(encoded)

            return run_linear
        batches = [self.model.collate([encoded[i] for i in idx], self.device)
                   for idx in length_batches(encoded, batch_size)]

        def run() -> None:
            with torch.inference_mode(), autocast(self.device, self.dtype):
                for batch in batches:
                    self.model(**batch)

        return run

    def predict_logits(self, rows: Sequence[Mapping[str, Any]], batch_size: int | None = None) -> np.ndarray:
        """Uncalibrated label logits [n_rows, n_labels] (columns ordered as metric.labels)."""
        return self.logits_of(self.encode(list(rows)), batch_size)

    def calibrate(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities: softmax(logits / temperature + label_shift)."""
        return calibrated_probs(logits, self.temperature, self.label_shift)

    def predict_proba(self, rows: Sequence[Mapping[str, Any]], batch_size: int | None = None) -> np.ndarray:
        """Calibrated probabilities [n_rows, n_labels], columns ordered as metric.labels."""
        return self.calibrate(self.predict_logits(rows, batch_size))

    def decide(self, probs: np.ndarray) -> list[int]:
        """The label index per row (:func:`assay.evaluator.decide`: the threshold on P(positive) for
        binary metrics, argmax otherwise)."""
        positive = self.metric.positive if self.metric.is_binary else None
        return [decide(p, self.labels, positive, self.threshold, self._calibration.operator) for p in probs]

    def score(self, rows: Sequence[Mapping[str, Any]], batch_size: int | None = None) -> list[Score]:
        """A :class:`Score` per row."""
        encoded = self.encode(list(rows))
        probs = self.calibrate(self.logits_of(encoded, batch_size))
        return scores_from_probs(probs, self.labels, self.metric.positive if self.metric.is_binary else None,
                                 self.threshold, [e.tokens for e in encoded], [e.truncated for e in encoded],
                                 self._calibration.operator)

    # --- saving -------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """The evaluator.json contents (format, versions, metric, model, calibration ...)."""
        from ._common import TRUNCATION_POLICY

        cal = self._calibration
        info = dict(self.info)
        info.update({
            "format_version": FORMAT_VERSION,
            "assay_version": __version__,
            "created_at": info.get("created_at") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "metric": self.metric.to_dict(),
            "family": self.family,
            "labels": list(self.labels),
            "max_length": self.model.max_length,
            "truncation_policy": TRUNCATION_POLICY,
            "temperature": self.temperature,
            "label_shift": (None if self.label_shift is None else
                            {lab: float(v) for lab, v in zip(self.labels, self.label_shift)}),
            "threshold": self.threshold,
            "network": self.model.describe(),
            "versions": _versions(),
        })
        if cal.operator != ">=":
            info["operator"] = cal.operator
        if self._record_calibration:
            info["calibration"] = cal.to_dict()
        return info

    def save_pretrained(self, path: str | Path, report: Any = None) -> Path:
        """Write the artifact: evaluator.json, adapter/head weights (safetensors) and README.md.

        ``report``: the held-out report the model card shows (an ``assay.report.Report``; default: the
        folder's ``report.json``, when there is one)."""

        if self.precision == "int8":
            raise AssayError("an fp32 evaluator to save", "one quantised to int8 for scoring",
                             "save the evaluator loaded with precision auto or fp32", code="invalid_input")
        folder = Path(path).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        info = self.describe()
        info["files"] = self.model.save_weights(folder)
        # never write an evaluator.json that from_pretrained would refuse
        checked = EvaluatorInfo.from_dict(json.loads(json.dumps(info, default=str)), folder / INFO_FILE)
        self.info = {k: v for k, v in info.items() if k not in CALIBRATION_KEYS}
        (folder / INFO_FILE).write_text(json.dumps(info, indent=2, ensure_ascii=False, default=str))
        if report is None and (folder / REPORT_JSON).exists():  # written by assay train / assay evaluate
            report = _headline(folder / REPORT_JSON)
        (folder / CARD_FILE).write_text(model_card(checked, report))
        return folder

    def __repr__(self) -> str:
        return f"Evaluator(metric={self.metric.name!r}, family={self.family!r}, labels={self.labels})"


def _headline(file: Path) -> Headline | None:
    """The figures of a report.json for the model card (None when it is not a JSON object of them)."""
    try:
        return Headline.model_validate(json.loads(file.read_text(encoding="utf-8")))
    except (ValueError, UnicodeDecodeError):  # pydantic's ValidationError is a ValueError
        return None


def _locate_base(info: EvaluatorInfo):
    """The base an artifact records (``base``): by preset/hub name, else by its recorded path; a warning
    when its weights differ from the ones the evaluator was trained on."""

    if info.base is None:
        raise AssayError(f"a base model in {INFO_FILE}", f"no base for family {info.family}", "re-run assay train",
                         code="invalid_artifact")
    saved = BaseRef(**info.base.model_dump(exclude_unset=True))
    if saved.source == "local" and not Path(saved.name).expanduser().is_dir() and Path(saved.path).is_dir():
        ref: BaseRef = resolve_base(saved.path)
    else:
        ref = resolve_base(saved.name)
        ref.name = saved.name
    if saved.files and ref.files and saved.files != ref.files:
        warnings.warn(f"the base model {saved.name} at {ref.path} differs from the one this evaluator "
                      "was trained on (weight hashes differ); scores may not match", stacklevel=3)
    return ref


def _versions() -> dict[str, str | None]:
    import importlib.metadata as md

    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("torch", "transformers", "peft", "safetensors", "numpy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out

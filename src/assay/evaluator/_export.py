"""Export an evaluator's scoring graph to ONNX, for runtimes without torch: every family assay ships.

The graph returns ``logits`` (float32, [sequences, n_labels]): the raw, uncalibrated label logits of each
input sequence, exactly the Evaluator's (:meth:`~assay.evaluator.Evaluator.logits_of`). Calibration and
the decision stay outside the graph, written in ``model.json`` beside ``model.onnx``:
``probs = softmax(logits / temperature + label_shift)``; binary metrics: the positive label when
P(positive) >= threshold, categorical: argmax. They stay outside because a row may be read as several
sequences (a pairwise row in both orders, a long context in windows) whose *logits* are pooled before
calibration (``model.json`` ``pooling``; :func:`pool_views` is the reference).

Graph inputs by family (``model.json`` ``inputs`` says how to prepare each; :func:`graph_inputs` prepares
them in Python exactly as assay does):

- ``encoder``: ``input_ids``, ``attention_mask`` (int64 [batch, tokens]): the row rendered by the
  encoder's template and fitted to ``max_length`` tokens by assay's truncation policy (head 2/3 + tail
  1/3 of the fields that are cut), tokenised by the tokenizer saved beside the graph. LoRA merged.
- ``linear`` / ``hybrid`` (kinds ``tfidf``, ``embed``, ``contrastive``, ``hybrid``, ``blend``): the inputs of
  each block the artifact has, and its heads (float64, as assay computes them) in the graph:

  * ``tfidf``: ``word_ngrams``, ``char_ngrams`` (string [batch, n], right-padded with ``""``): every n-gram
    occurrence that the block's sklearn analyzers produce from the row's text (the metric's fields as
    ``name: text`` lines). The graph counts them against the vocabulary (``TfIdfVectorizer``), applies
    sublinear tf, idf and each block's L2 norm. The text -> n-gram step is not in the graph because ONNX
    cannot express it exactly: its ``StringNormalizer`` lowercases by the runtime's locale (ONNX Runtime
    refuses to load it without ``en_US.UTF-8``) and its ``Tokenizer`` regexes are re2, whose ``\\w`` is
    ASCII where sklearn's ``(?u)\\b\\w\\w+\\b`` is Unicode; skl2onnx's converter refuses ``char_wb`` and its word
    analyzer differed from sklearn's on 125 of 200 Davidson tweets (TF-IDF values off by up to 0.63).
  * ``embed`` / ``contrastive``: ``input_ids``, ``attention_mask`` as the encoder's (the block's own template
    and ``max_length``); with grounding features (context shapes) also each field alone
    (``field_<name>_input_ids`` / ``field_<name>_attention_mask``) and ``lexical`` (float64, the raw
    lexical-overlap features of :func:`assay.evaluator._grounding.lexical`, standardised in the graph). A
    second embedding block's inputs carry its name as a prefix (``contrastive_input_ids``).
  * ``hybrid`` / ``blend``: both blocks' inputs; the stacking head over the blocks' log-probabilities.

- ``decoder``: ``input_ids``, ``attention_mask`` (int64 [batch, tokens], LEFT-padded): the judge prompt fitted
  to the token budget, in the tokenizer's chat template, then ``Answer:``; the logits are the label
  verbalizers' first tokens at the last position (the LM head's rows for them only).
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import AssayError, require
from ..metrics import swap_pair
from ..metrics._render import MARK, judged_fields
from ._common import TRUNCATION_POLICY
from ._decoder import _SLACK, ANSWER_PREFIX
from ._encoder import CHUNK_OVERLAP, MIN_CONTEXT_SHARE
from ._grounding import LEXICAL, lexical
from ._linear import EMBED_KINDS, LOG_FLOOR

OPSET = 17
FORMAT = "assay-onnx"
FORMAT_VERSION = 1
EXPORTABLE = ("encoder", "decoder", "linear", "hybrid")  # evaluator.json families with an ONNX export
PAD_NGRAM = ""  # the string that pads n-gram rows (in no vocabulary: every term has 2+ characters)
TFIDF_FEATURES = "tfidf_features"  # the torch graph's placeholder input that the TF-IDF nodes replace
CALIBRATION = "probs = softmax(logits / temperature + label_shift) per row, after pooling (label_shift 0 when null)"
DECISION = ("binary: the positive label when P(positive) >= threshold (`operator` '>': strictly above), else "
            "the other label; categorical: the most probable label")
HOW_TO_SCORE = ("1. prepare each row's sequences as `inputs` says (pairwise rows: (A, B) and (B, A)); "
                "2. run the graph: logits per sequence; 3. pool each row's sequence logits as `pooling` says; "
                "4. calibrate as `calibration` says; 5. decide as `decision` says")


@dataclass
class GraphInputs:
    """The graph's feeds for some rows, and which row each sequence belongs to.

    ``feeds``: input name -> array. ``owner[i]``: the row of sequence ``i``; ``swapped[i]``: sequence ``i``
    reads a pairwise row with A and B exchanged (its logits map back with ``swap_permutation``).
    """

    feeds: dict[str, np.ndarray]
    owner: np.ndarray
    swapped: np.ndarray


def refuse(family: str | None) -> None:
    """An AssayError for a family without an ONNX export (nothing for the others)."""
    if family not in EXPORTABLE:
        raise AssayError(f"an artifact of a family with an ONNX export ({', '.join(EXPORTABLE)})",
                         f"family {family}", "export an artifact that assay train wrote", code="invalid_input")


def _target(out: str | Path) -> Path:
    path = Path(out).expanduser()
    if path.suffix != ".onnx":
        path = path / "model.onnx" if path.is_dir() or not path.suffix else path.with_suffix(".onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def export_onnx(ev: Any, out: str | Path, opset: int = OPSET) -> dict[str, Any]:
    """Write ``ev``'s scoring graph to ``out`` (an ``.onnx`` path or a folder), ``model.json`` beside it
    (same stem, ``.json``) and the tokenizer (``.tokenizer/``) where the graph reads token ids; returns
    what was written."""
    require("onnx", "exporting an evaluator to ONNX", extra="onnx")
    refuse(ev.family)
    if getattr(ev, "precision", "auto") == "int8":
        raise AssayError("an fp32 evaluator to export", "one quantised to int8",
                         "load the artifact with precision fp32 to export it", code="invalid_input")
    if "encoder" in (getattr(ev.model, "blocks", None) or {}):
        raise AssayError("an evaluator of one network or of feature blocks to export",
                         "a pooled evaluator (a fine-tuned network averaged with feature blocks), which the ONNX "
                         "export does not cover yet",
                         "score it with assay score / serve / the Python API, or train an exportable one with "
                         "train.candidates [encoder] alone or without encoder", code="invalid_input")
    out = _target(out)
    if ev.family in ("encoder", "decoder"):
        meta = _export_sequence(ev, out, opset)
    else:
        meta = _export_linear(ev, out, opset)
    meta_path = out.with_suffix(".json")
    meta_path.write_text(json.dumps(meta, indent=2, ensure_ascii=False, default=str) + "\n")
    tok = meta.get("tokenizer")
    return {"onnx": str(out), "metadata": str(meta_path), "tokenizer": str(out.parent / tok) if tok else None,
            "family": ev.family, "kind": meta["kind"], "inputs": list(meta["graph"]["inputs"]),
            "labels": list(ev.labels)}


# --- model.json -------------------------------------------------------------------------------
def _common_meta(ev: Any, kind: str, graph_inputs: Mapping[str, Any], opset: int, out: Path) -> dict[str, Any]:
    """What every family's model.json holds: the graph, the metric, calibration, decision and pooling."""
    metric = ev.metric
    positive = metric.positive if metric.is_binary else None
    shift = None if ev.label_shift is None else {lab: float(v) for lab, v in zip(ev.labels, ev.label_shift)}
    perm = metric.swap_permutation()
    operator = getattr(getattr(ev, "calibration", None), "operator", None) or ">="  # ">": strictly above
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "family": ev.family, "kind": kind,
        "graph": {"file": out.name, "opset": opset, "inputs": dict(graph_inputs), "output": "logits",
                  "outputs": {"logits": {"dtype": "float32", "shape": ["sequences", len(ev.labels)],
                                         "what": "raw label logits per sequence, columns as `labels`; "
                                                 "uncalibrated (see `calibration`)"}}},
        "how_to_score": HOW_TO_SCORE,
        "metric": metric.name, "shape": str(getattr(metric.shape, "value", metric.shape)),
        "fields": list(metric.fields), "labels": list(ev.labels), "positive": positive,
        "calibration": {"in_graph": False, "temperature": ev.temperature, "label_shift": shift,
                        "formula": CALIBRATION},
        "decision": {"rule": DECISION, "positive": positive, "threshold": ev.threshold, "operator": operator},
        "pooling": {"pairwise": perm is not None, "swap_permutation": perm,
                    "rule": "a row read as one sequence: its logits as they are. Pairwise: the row is also read with "
                            "output and output_b exchanged (label a <-> b); that sequence's logits map back "
                            "(column i takes column swap_permutation[i]) and the row's logits are the mean of "
                            "its sequences'" + ("" if ev.family != "encoder" else
                                                "; context windows: pooled by `aggregation` (mean, or each label's "
                                                "max when not pairwise)"),
                    "aggregation": getattr(ev.model, "chunk_aggregation", "mean")},
        # flat copies of the first format's keys (encoder exports before every family had one)
        "temperature": ev.temperature, "label_shift": shift, "threshold": ev.threshold,
        "swap_permutation": perm,
        "scores": "softmax(logits / temperature + label_shift); binary: positive when P(positive) >= threshold, "
                  "else argmax",
    }


def _truncation(block: Any, budget: int, keep_end: bool = False, decoder: bool = False) -> dict[str, Any]:
    """How a row longer than ``max_length`` tokens is fitted (assay.metrics.render's policy)."""


    judged = list(judged_fields(block.metric))
    if decoder:
        last = "none: the fitted prompt is wrapped and tokenised as it is"
    elif keep_end:
        last = ("if the fitted text still tokenises to more than max_length tokens: its first token and last "
                "max_length - 1")
    else:
        last = "if the fitted text still tokenises to more than max_length tokens: its first max_length"
    return {
        "max_length": block.max_length,
        "text_budget": budget,
        "judged_fields": judged,
        "applies": f"when the rendered text is longer than text_budget tokens (max_length less "
                   f"{block.max_length - budget} tokens: " + ("the chat template, the answer prefix and a slack of "
                                                             "4" if decoder else "the tokenizer's special tokens") +
                   "), counted without special tokens",
        "room": "text_budget less the tokens of the template without its placeholders",
        "other_fields": "cut first: the room the judged field(s) leave is shared equally among the other fields; "
                        "fields no larger than their share keep everything and give back what they do not use; each "
                        "remaining field keeps `keep` = (room left) // (fields remaining) tokens as head_tokens + "
                        "`marker` + tail_tokens",
        "judged_field": "never cut unless the judged field(s) alone are longer than the room; then each keeps "
                        "`keep` = room // (judged fields) tokens: " +
                        ("its end, `marker` (left-stripped) + its last `keep` tokens" if keep_end else
                         "head_tokens + `marker` + tail_tokens"),
        "head_tokens": "max(1, keep * 2 // 3)", "tail_tokens": "keep - head_tokens",
        "marker": MARK,
        "pieces": "token ids of the field text without special tokens; the kept head and tail ids are decoded "
                  "back to text, joined by the marker and the row rendered again",
        "last_resort": last,
        "policy": TRUNCATION_POLICY,
    }


def _field_text_rule() -> str:
    return ("a field's text: a string as it is; a list of chat messages as 'role: content' lines (tool calls "
            "appended as '[tool_calls] <json>'); a list of strings joined by blank lines; anything else as JSON "
            "(indent 1, ensure_ascii false); missing: empty")


def _tokens_meta(block: Any, template: str, budget: int, keep_end: bool, tokenizer_dir: str,
                 decoder: bool = False) -> dict[str, Any]:
    tok = block.tokenizer
    side = "left" if decoder else "right"
    return {"tokenizer": tokenizer_dir, "render_template": template, "field_text": _field_text_rule(),
            "special_tokens": ("the chat template's (add_special_tokens false)" if getattr(block, "chat", False)
                               else "the tokenizer's own"), "max_length": block.max_length,
            "truncation": _truncation(block, budget, keep_end, decoder),
            "padding": f"{side}, with pad_token_id {tok.pad_token_id}; attention_mask 1 on real tokens, 0 on padding",
            "reference": "assay.evaluator._export.graph_inputs(evaluator, rows)"}


# --- encoder and decoder: token ids -> label logits ------------------------------------------
def _sequence_graph(model: Any) -> Any:
    """``model`` as a module of (input_ids, attention_mask) -> logits, the graph's signature."""
    import torch

    class Graph(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    return Graph(model).eval()


def _export_sequence(ev: Any, out: Path, opset: int) -> dict[str, Any]:
    """The encoder or decoder family: (input_ids, attention_mask) -> logits, LoRA merged."""
    import torch

    model = copy.deepcopy(ev.model).to("cpu").float().eval()
    ids = torch.full((2, 16), int(model.tokenizer.pad_token_id or 0), dtype=torch.long)
    ids[:, ::3] = 42  # a few other ids than padding
    mask = torch.ones_like(ids)
    # one padded row, on the family's side: the trace keeps the masking path that padding needs
    if model.pad_left:
        mask[1, :8] = 0
    else:
        mask[1, 8:] = 0
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # peft's "already merged", tracer notes on Python control flow
        if hasattr(model.net, "merge_and_unload"):  # peft adapters folded into plain Linear weights
            model.net = model.net.merge_and_unload()
        torch.onnx.export(_sequence_graph(model), (ids, mask), str(out), input_names=["input_ids", "attention_mask"],
                          output_names=["logits"], opset_version=opset, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                        "attention_mask": {0: "batch", 1: "tokens"}, "logits": {0: "batch"}})
    tok_dir = out.with_suffix(".tokenizer")
    model.tokenizer.save_pretrained(str(tok_dir))
    token_input = {"dtype": "int64", "shape": ["batch", "tokens"], "prepare": "inputs.tokens"}
    meta = _common_meta(ev, ev.family, {"input_ids": token_input, "attention_mask": token_input}, opset, out)
    desc = model.describe()
    if ev.family == "decoder":
        tokens = _decoder_tokens(model, tok_dir.name)
    else:
        tokens = _tokens_meta(model, model.view.prompt, model.budget, False, tok_dir.name)
        if model.context_field:
            tokens["pair_encoding"] = _pair_meta(model)
    tokens["input_format"] = desc.get("input_format")
    views = ("context windows, " if ev.family == "encoder" else "") + "a pairwise row in both orders"
    meta.update({"inputs": {"tokens": tokens}, "max_length": model.max_length,
                 "pad_token_id": model.tokenizer.pad_token_id, "tokenizer": tok_dir.name,
                 "input_format": desc.get("input_format"),
                 "views": (f"a row read as several sequences ({views}) gives one logit row per sequence: pool them by "
                           f"{model.chunk_aggregation} (pairwise: map the swapped order's labels back with "
                           "swap_permutation, then average)")})
    return meta


def _pair_meta(model: Any) -> dict[str, Any]:

    return {"replaces": "render_template: a row is these two segments, not the one-segment template",
            "first_segment": model.first_view.prompt, "second_segment": f"{model.context_field}: <text>",
            "sequence": "[CLS] first segment [SEP] a window of the second segment [SEP]",
            "context_windows": model.context_chunks,
            "window_overlap": f"1/{CHUNK_OVERLAP} of a window; at most context_windows windows spread evenly",
            "first_segment_room": f"max_length less the special tokens, less min(context tokens, 1/{MIN_CONTEXT_SHARE} "
                                  "of that); a longer first segment is fitted by the truncation policy",
            "single_window": "context_windows 1: a context longer than its room keeps head 2/3 + marker + tail 1/3"}


def _decoder_tokens(model: Any, tokenizer_dir: str) -> dict[str, Any]:

    budget = model.max_length - model.overhead - _SLACK
    tokens = _tokens_meta(model, model.metric.prompt, budget, False, tokenizer_dir, decoder=True)
    tokens["wrap"] = ("the fitted judge prompt as the user turn of the tokenizer's chat template "
                      f"(add_generation_prompt true), then {ANSWER_PREFIX!r}" if model.chat else
                      f"the fitted judge prompt + '\\n{ANSWER_PREFIX}', tokenised with the tokenizer's special tokens")
    tokens["label_token_ids"] = dict(zip(model.metric.labels, model.label_ids))
    return tokens


# --- linear / hybrid --------------------------------------------------------------------------
def _prefix(model: Any, name: str) -> str:
    """Input-name prefix of an embedding block: none for the block that encodes the rows."""
    return "" if model.blocks[name] is model.embedder else f"{name}_"


def _linear_inputs_meta(model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(graph inputs, how to prepare them) of a linear / hybrid model, in the graph's input order."""
    graph: dict[str, Any] = {}
    how: dict[str, Any] = {}
    for name, block in model.blocks.items():
        if name == "tfidf":
            for part in ("word", "char"):
                graph[f"{part}_ngrams"] = {"dtype": "string", "shape": ["batch", f"{part}_ngrams"],
                                           "prepare": "inputs.ngrams", "pad": PAD_NGRAM}
            how["ngrams"] = _ngrams_meta(block)
            continue
        p = _prefix(model, name)
        token_input = {"dtype": "int64", "shape": ["batch", f"{p}tokens"], "prepare": f"inputs.{p}tokens"}
        graph[f"{p}input_ids"] = graph[f"{p}attention_mask"] = token_input
        how[f"{p}tokens"] = _tokens_meta(block, block.view.prompt, block.budget, block.keep_end, "")
        how[f"{p}tokens"]["block"] = name
        if name == "lm":
            how[f"{p}tokens"].update(_lm_tokens_meta(block))
        for f in ([block.judged] + block.context) if block.context else []:
            field_input = {**token_input, "shape": ["batch", f"{p}field_{f}_tokens"],
                           "prepare": f"inputs.{p}grounding"}
            graph[f"{p}field_{f}_input_ids"] = graph[f"{p}field_{f}_attention_mask"] = field_input
        if block.context:

            graph[f"{p}lexical"] = {"dtype": "float64", "shape": ["batch", len(LEXICAL) * len(block.context)],
                                    "prepare": f"inputs.{p}grounding"}
            how[f"{p}grounding"] = {
                "fields": [block.judged] + block.context,
                "field_<name>_input_ids": "the field alone ('{name}' as the template), tokenised and fitted "
                                          "like the row's tokens (same tokenizer, max_length and policy)",
                "lexical": f"assay.evaluator._grounding.lexical(metric, rows): per context field {list(LEXICAL)}, "
                           "raw (the graph standardises them by the training rows' mean and std)",
                "context_fields": block.context, "judged": block.judged}
    return graph, how


def _ngrams_meta(block: Any) -> dict[str, Any]:
    template = "\n".join(f"{f}: {{{f}}}" for f in block.metric.fields)
    return {
        "text_template": template, "field_text": _field_text_rule(),
        "word": {**_vec_settings(block.word), "terms": len(block.word.vocabulary_)},
        "char": {**_vec_settings(block.char), "terms": len(block.char.vocabulary_)},
        "analyzer": "exactly sklearn's: sklearn.feature_extraction.text.TfidfVectorizer(**settings).build_analyzer()"
                    "(text). word: text.lower() (lowercase), tokens re.findall(token_pattern), n-grams of "
                    "consecutive tokens joined by ' ' (ngram_range, shortest first); char_wb: text.lower(), runs of "
                    "2+ whitespace characters made one space, each str.split() word padded with a space on both "
                    "sides, its character n-grams for each n of ngram_range (a padded word no longer than n: the "
                    "whole padded word once, and no larger n)",
        "feed": "every n-gram occurrence (repeats count), any order, each row right-padded with '' to the "
                "batch's longest (at least one column); n-grams outside the vocabulary count for nothing",
        "truncation": "none: TF-IDF reads the whole text",
        "vocabulary": "inside the graph (TfIdfVectorizer pool_strings), idf weights too",
        "reference": "assay.evaluator._export.graph_inputs(evaluator, rows)",
    }


def _vec_settings(vec: Any) -> dict[str, Any]:
    return {"analyzer": vec.analyzer, "ngram_range": list(vec.ngram_range), "lowercase": vec.lowercase,
            "token_pattern": vec.token_pattern if vec.analyzer == "word" else None,
            "strip_accents": vec.strip_accents, "sublinear_tf": vec.sublinear_tf, "use_idf": vec.use_idf,
            "norm": vec.norm}


def _linear_graph(model: Any, names: Sequence[str]) -> Any:
    """The linear / hybrid model as a torch module of its graph inputs (``tfidf_features``: the TF-IDF
    block's features, which :func:`_splice_tfidf` then computes from n-grams inside the graph)."""
    import torch


    def buf(x: Any) -> torch.Tensor:
        return torch.tensor(np.asarray(x, dtype=np.float64))

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.names = list(names)
            self.order = list(model.blocks)
            self.prefix = {n: _prefix(model, n) for n in self.order if n in EMBED_KINDS + ("lm",)}
            self.nets = torch.nn.ModuleDict({n: copy.deepcopy(model.blocks[n].net).to("cpu").float().eval()
                                             for n in self.prefix})
            self.context = {n: (model.blocks[n].judged, list(model.blocks[n].context)) for n in self.prefix
                            if model.blocks[n].context}
            for n in self.order:
                self.register_buffer(f"w_{n}", buf(model.heads[n].weight.T))
                self.register_buffer(f"b_{n}", buf(model.heads[n].bias))
            for n in self.context:
                self.register_buffer(f"mean_{n}", buf(model.blocks[n].lex_mean))
                self.register_buffer(f"std_{n}", buf(model.blocks[n].lex_std))
            if "lm" in self.prefix:  # the lm block's standardisation of its pooled hidden states
                self.register_buffer("lm_mean", buf(model.blocks["lm"].mean).float())
                self.register_buffer("lm_std", buf(model.blocks["lm"].std).float())
            self.stacked = model.stack is not None
            if self.stacked:
                self.register_buffer("w_stack", buf(model.stack.weight.T))
                self.register_buffer("b_stack", buf(model.stack.bias))
            self.floor = math.log(LOG_FLOOR)

        def embed(self, name: str, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            hidden = self.nets[name](input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
            return torch.nn.functional.normalize(pooled, dim=-1)

        def features(self, name: str, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
            p = self.prefix[name]
            parts = [self.embed(name, x[f"{p}input_ids"], x[f"{p}attention_mask"])]
            if name == "lm":
                return (parts[0] - self.lm_mean) / self.lm_std
            if name in self.context:
                judged, ctx = self.context[name]
                u = self.embed(name, x[f"{p}field_{judged}_input_ids"], x[f"{p}field_{judged}_attention_mask"])
                for f in ctx:
                    v = self.embed(name, x[f"{p}field_{f}_input_ids"], x[f"{p}field_{f}_attention_mask"])
                    parts += [u * v, (u - v).abs(), (u * v).sum(1, keepdim=True)]
                lex = (x[f"{p}lexical"] - getattr(self, f"mean_{name}")) / getattr(self, f"std_{name}")
                parts.append(lex.float())
            return torch.cat(parts, 1)

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            x = dict(zip(self.names, inputs))
            logits = []
            for n in self.order:
                feats = x[TFIDF_FEATURES] if n == "tfidf" else self.features(n, x).double()
                logits.append(feats @ getattr(self, f"w_{n}") + getattr(self, f"b_{n}"))
            if not self.stacked:
                return logits[0].float()
            logp = [torch.log_softmax(z, dim=1).clamp(min=self.floor) for z in logits]
            return (torch.cat(logp, 1) @ self.w_stack + self.b_stack).float()

    return Graph().eval()


def _dummy_inputs(model: Any, graph_inputs: Mapping[str, Any]) -> tuple[list[str], list[Any], dict[str, Any]]:
    """Trace inputs (two rows, one half padded) for the torch graph, their names and dynamic axes."""
    import torch

    names, values, axes = [], [], {}
    for name, spec in graph_inputs.items():
        if name.endswith("_ngrams"):
            continue
        if spec["dtype"] == "int64":
            value = torch.full((2, 16), 101, dtype=torch.long)
            if name.endswith("attention_mask"):
                value = torch.ones_like(value)
                value[1, 8:] = 0
            axes[name] = {0: "batch", 1: spec["shape"][1]}
        else:
            value = torch.zeros((2, int(spec["shape"][1])), dtype=torch.float64)
            axes[name] = {0: "batch"}
        names.append(name)
        values.append(value)
    if "tfidf" in model.blocks:
        names.append(TFIDF_FEATURES)
        values.append(torch.zeros((2, model.blocks["tfidf"].size), dtype=torch.float64))
        axes[TFIDF_FEATURES] = {0: "batch"}
    axes["logits"] = {0: "batch"}
    return names, values, axes


def _export_linear(ev: Any, out: Path, opset: int) -> dict[str, Any]:
    import onnx
    import torch

    model = ev.model
    for name, block in model.blocks.items():
        if getattr(block, "context", None) and (block.lex_mean is None or block.lex_std is None):
            raise AssayError("grounding statistics in the artifact", f"none for the {name} block",
                             "re-run assay train", code="invalid_artifact")
    graph_in, how = _linear_inputs_meta(model)
    names, values, axes = _dummy_inputs(model, graph_in)
    graph = _linear_graph(model, names)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), torch.inference_mode(False), \
            torch.no_grad():
        warnings.simplefilter("ignore")  # tracer notes on Python control flow
        raw = Path(tmp) / "graph.onnx"
        torch.onnx.export(graph, tuple(values), str(raw), input_names=names, output_names=["logits"],
                          opset_version=opset, dynamo=False, dynamic_axes=axes)
        proto = onnx.load(str(raw))
    if "tfidf" in model.blocks:
        _splice_tfidf(proto, model.blocks["tfidf"])
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    info = ev.info if isinstance(ev.info, dict) else ev.info.to_dict()
    kind = str((info.get("linear") or {}).get("kind") or model.kind)
    meta = _common_meta(ev, kind, graph_in, opset, out)
    meta["blocks"] = list(model.blocks)
    meta["head"] = model.describe().get("head")
    if model.embedder is not None:
        tok_dir = out.with_suffix(".tokenizer")
        model.embedder.tokenizer.save_pretrained(str(tok_dir))
        for spec in how.values():
            if "tokenizer" in spec:
                spec["tokenizer"] = tok_dir.name
        meta.update({"tokenizer": tok_dir.name, "max_length": model.embedder.max_length,
                     "pad_token_id": model.embedder.tokenizer.pad_token_id})
    if "lm" in model.blocks:  # its own tokenizer (SmolLM2's), beside the graph
        lm_dir = out.with_suffix(".lm_tokenizer")
        model.blocks["lm"].tokenizer.save_pretrained(str(lm_dir))
        how[f"{_prefix(model, 'lm')}tokens"]["tokenizer"] = lm_dir.name
    meta["inputs"] = how
    return meta


def _lm_tokens_meta(block: Any) -> dict[str, Any]:
    """How the ``lm`` block's tokens differ from an encoder block's: no special tokens around the row,
    a plain cut to max_length, and what its graph computes."""
    return {"special_tokens": "the tokenizer's own (SmolLM2's adds none)",
            "last_resort": ("if the fitted text still tokenises to more than max_length tokens: its last max_length"
                            if block.keep_end else
                            "if the fitted text still tokenises to more than max_length tokens: its first max_length"),
            "block_graph": f"the first {block.layers} decoder layers (no final norm), mean over the row's tokens, "
                           "L2 norm, then (x - mean) / std with the training rows' statistics (in the graph)"}


def _splice_tfidf(proto: Any, block: Any) -> None:
    """Replace the graph input ``tfidf_features`` by nodes that compute it from the n-gram inputs."""
    from onnx import TensorProto, helper

    nodes, inits, inputs = [], [], []
    parts = []
    for part, vec in (("word", block.word), ("char", block.char)):
        n, i, x, y = _tfidf_part(part, vec)
        nodes += n
        inits += i
        inputs.append(x)
        parts.append(y)
    nodes.append(helper.make_node("Concat", parts, [TFIDF_FEATURES], axis=1, name="assay_tfidf_concat"))
    graph = proto.graph
    kept = [v for v in graph.input if v.name != TFIDF_FEATURES]
    del graph.input[:]
    graph.input.extend(kept + inputs)
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old)
    graph.initializer.extend(inits)
    assert all(v.type.tensor_type.elem_type != TensorProto.UNDEFINED for v in graph.input)


def _tfidf_part(part: str, vec: Any) -> tuple[list[Any], list[Any], Any, str]:
    """Nodes from ``<part>_ngrams`` (strings) to the part's TF-IDF features (float64, [batch, terms]):
    counts against the vocabulary, sublinear tf, idf, norm, as sklearn's TfidfVectorizer.transform."""
    from onnx import TensorProto, helper, numpy_helper

    terms = [""] * len(vec.vocabulary_)
    for term, col in vec.vocabulary_.items():
        terms[col] = term
    p = f"assay_tfidf_{part}"
    x = helper.make_tensor_value_info(f"{part}_ngrams", TensorProto.STRING, ["batch", f"{part}_ngrams"])
    inits = [numpy_helper.from_array(np.array(0.0), f"{p}_zero"), numpy_helper.from_array(np.array(1.0), f"{p}_one"),
             numpy_helper.from_array(np.array([1], dtype=np.int64), f"{p}_axis")]
    nodes = [helper.make_node("TfIdfVectorizer", [x.name], [f"{p}_counts"], mode="TF", min_gram_length=1,
                              max_gram_length=1, max_skip_count=0, ngram_counts=[0],
                              ngram_indexes=list(range(len(terms))), pool_strings=terms, name=f"{p}_count"),
             helper.make_node("Cast", [f"{p}_counts"], [f"{p}_tf"], to=TensorProto.DOUBLE, name=f"{p}_cast")]
    cur = f"{p}_tf"
    if vec.sublinear_tf:  # 1 + log(tf) where tf > 0
        nodes += [helper.make_node("Greater", [cur, f"{p}_zero"], [f"{p}_present"], name=f"{p}_gt"),
                  helper.make_node("Log", [cur], [f"{p}_log"], name=f"{p}_logtf"),
                  helper.make_node("Add", [f"{p}_log", f"{p}_one"], [f"{p}_log1"], name=f"{p}_add1"),
                  helper.make_node("Where", [f"{p}_present", f"{p}_log1", cur], [f"{p}_sub"], name=f"{p}_where")]
        cur = f"{p}_sub"
    if vec.use_idf:
        inits.append(numpy_helper.from_array(np.asarray(vec.idf_, dtype=np.float64), f"{p}_idf"))
        nodes.append(helper.make_node("Mul", [cur, f"{p}_idf"], [f"{p}_tfidf"], name=f"{p}_mul_idf"))
        cur = f"{p}_tfidf"
    if vec.norm in ("l1", "l2"):
        first = ([helper.make_node("Mul", [cur, cur], [f"{p}_sq"], name=f"{p}_square")] if vec.norm == "l2" else
                 [helper.make_node("Abs", [cur], [f"{p}_sq"], name=f"{p}_abs")])
        nodes += first + [helper.make_node("ReduceSum", [f"{p}_sq", f"{p}_axis"], [f"{p}_sum"], keepdims=1,
                                           name=f"{p}_reduce")]
        total = f"{p}_sum"
        if vec.norm == "l2":
            nodes.append(helper.make_node("Sqrt", [total], [f"{p}_norm"], name=f"{p}_sqrt"))
            total = f"{p}_norm"
        nodes += [helper.make_node("Equal", [total, f"{p}_zero"], [f"{p}_empty"], name=f"{p}_eq"),
                  helper.make_node("Where", [f"{p}_empty", f"{p}_one", total], [f"{p}_safe"], name=f"{p}_guard"),
                  helper.make_node("Div", [cur, f"{p}_safe"], [f"{p}_normed"], name=f"{p}_div")]
        cur = f"{p}_normed"
    elif vec.norm is not None:
        raise AssayError("a TF-IDF norm of l1, l2 or none", f"{vec.norm!r}", "re-run assay train",
                         code="invalid_artifact")
    return nodes, inits, x, cur


# --- preparing rows, pooling, calibrating (the reference for model.json) ----------------------
def _pad_ids(seqs: Sequence[Sequence[int]], pad: int) -> tuple[np.ndarray, np.ndarray]:
    width = max([len(s) for s in seqs] + [1])
    ids = np.full((len(seqs), width), pad, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = s
        mask[i, :len(s)] = 1
    return ids, mask


def _pad_strings(rows: Sequence[Sequence[str]]) -> np.ndarray:
    out = np.full((len(rows), max([len(r) for r in rows] + [1])), PAD_NGRAM, dtype=object)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def _linear_feeds(model: Any, rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {}
    for name, block in model.blocks.items():
        if name == "tfidf":
            texts = block.texts(rows)
            for part, vec in (("word", block.word), ("char", block.char)):
                analyze = vec.build_analyzer()
                feeds[f"{part}_ngrams"] = _pad_strings([analyze(t) for t in texts])
            continue
        p = _prefix(model, name)
        pad = block.tokenizer.pad_token_id if block.tokenizer.pad_token_id is not None else 0
        feeds[f"{p}input_ids"], feeds[f"{p}attention_mask"] = _pad_ids([e.ids for e in block.encode(rows)], pad)
        if block.context:

            for f in [block.judged] + block.context:
                enc = block._encode_view(block.field_views[f], rows)
                feeds[f"{p}field_{f}_input_ids"], feeds[f"{p}field_{f}_attention_mask"] = \
                    _pad_ids([e.ids for e in enc], pad)
            feeds[f"{p}lexical"] = lexical(model.metric, rows).astype(np.float64)
    return feeds


def graph_inputs(ev: Any, rows: Sequence[Mapping[str, Any]]) -> GraphInputs:
    """The exported graph's feeds for ``rows``, prepared exactly as assay prepares them for scoring
    (rendering, truncation, tokenisation, n-grams), and the sequences' rows (:class:`GraphInputs`)."""
    import torch

    refuse(ev.family)
    rows = list(rows)
    if ev.family in ("encoder", "decoder"):
        batch = ev.model.collate(ev.encode(rows), torch.device("cpu"))
        n = batch["input_ids"].shape[0]
        owner = batch["owner"].numpy() if "owner" in batch else np.arange(n)
        swapped = batch["swapped"].numpy() if "swapped" in batch else np.zeros(n, dtype=bool)
        return GraphInputs({"input_ids": batch["input_ids"].numpy(), "attention_mask": batch["attention_mask"].numpy()},
                           owner.astype(np.int64), swapped.astype(bool))
    seqs, owner, swapped = list(rows), list(range(len(rows))), [False] * len(rows)
    if ev.metric.swap_permutation() is not None:  # pairwise: (A, B) and (B, A), as LinearModel scores them
        seqs += [swap_pair(r) for r in rows]
        owner += list(range(len(rows)))
        swapped += [True] * len(rows)
    return GraphInputs(_linear_feeds(ev.model, seqs), np.array(owner, dtype=np.int64), np.array(swapped, dtype=bool))


def pool_views(logits: np.ndarray, owner: np.ndarray, swapped: np.ndarray, meta: Mapping[str, Any]) -> np.ndarray:
    """Per-sequence logits -> per-row logits, by model.json's ``pooling`` rule."""
    logits = np.asarray(logits, dtype=np.float64)
    pooling = meta.get("pooling") or {}
    perm = pooling.get("swap_permutation")
    if perm is not None and swapped.any():
        logits = np.where(swapped[:, None], logits[:, perm], logits)
    n = int(owner.max()) + 1 if len(owner) else 0
    if pooling.get("aggregation") == "max" and perm is None:
        out = np.full((n, logits.shape[1]), -np.inf)
        np.maximum.at(out, owner, logits)
        return out
    out = np.zeros((n, logits.shape[1]))
    np.add.at(out, owner, logits)
    return out / np.maximum(np.bincount(owner, minlength=n), 1)[:, None]


def calibrated(logits: np.ndarray, meta: Mapping[str, Any]) -> np.ndarray:
    """Per-row logits -> the Evaluator's probabilities, by model.json's ``calibration``."""
    cal = meta["calibration"]
    z = np.asarray(logits, dtype=np.float64) / float(cal["temperature"])
    if cal.get("label_shift"):
        z = z + np.array([cal["label_shift"][lab] for lab in meta["labels"]])
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)

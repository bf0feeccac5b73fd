"""The decoder family: a small causal LM + LoRA that reads the judge prompt and answers in one token.

The prompt is the metric's judge prompt in the tokenizer's chat template (user turn), then the
assistant turn opened with ``Answer:``; the next token is a label's verbalizer (`` true`` /
`` false``). Scoring runs the transformer body once and multiplies the LAST hidden state by the
output-head rows of the label tokens only: no [batch, seq, vocab] logits, no decoding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..config import ModelConfig
from ..errors import AssayError
from ..metrics import MetricSpec, swap_pair
from ._base_models import BaseRef
from ._common import Encoded, LabelModel, load_adapter, load_full, render_fitted, save_adapter, save_full, wrap_lora

ANSWER_PREFIX = "Answer:"
DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
_SLACK = 4  # tokens kept free for merges at the seams between template and fields


def label_tokens(metric: MetricSpec, tokenizer: Any, prefix: str) -> tuple[list[int], list[str], bool]:
    """The token id each label's verbalizer starts with after ``prefix``.

    Returns (ids, verbalizers, single_token). Raises when two labels start with the same token.
    """
    base = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    ids, words, single = [], [], True
    for label in metric.labels:
        word = metric.verbalizer(label)
        full = tokenizer(prefix + word, add_special_tokens=False)["input_ids"]
        if full[: len(base)] == base and len(full) > len(base):
            rest = full[len(base):]
        else:  # the tokenizer merged across the seam: fall back to the word alone
            rest = tokenizer(word, add_special_tokens=False)["input_ids"]
        if not rest:
            raise AssayError(f"a verbalizer word for label '{label}'", f"'{word}' encodes to no tokens",
                             "set metric.verbalizers to a real word", code="invalid_metric")
        single &= len(rest) == 1
        ids.append(rest[0])
        words.append(word)
    for i in range(len(ids)):
        for j in range(i):
            if ids[i] == ids[j]:
                tok = tokenizer.convert_ids_to_tokens(ids[i])
                raise AssayError(
                    "distinct first tokens for the labels' verbalizers",
                    f"'{words[j].strip()}' and '{words[i].strip()}' both start with token {tok!r} (id {ids[i]})",
                    "set metric.verbalizers so each label's word starts with a different token",
                    code="invalid_metric",
                )
    return ids, words, single


class DecoderModel(LabelModel):
    family = "decoder"
    pad_left = True

    def __init__(self, metric: MetricSpec, base: BaseRef, model_cfg: ModelConfig):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(base.path)
        super().__init__(metric, tokenizer, model_cfg.max_length)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        self.chat = bool(getattr(tokenizer, "chat_template", None))
        self.prefix = self._wrap("")
        self.label_ids, self.verbalizers, self.single_token = label_tokens(metric, tokenizer, ANSWER_PREFIX)
        lm = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32)
        lm.config.use_cache = False
        self.lora = model_cfg.lora
        self.targets = (model_cfg.lora.target_modules or DEFAULT_TARGETS) if model_cfg.lora else None
        self.net = wrap_lora(lm, model_cfg.lora, self.targets, base.name) if model_cfg.lora else lm
        self.overhead = len(self._ids(self.prefix))
        self.register_buffer("_label_ids", torch.tensor(self.label_ids, dtype=torch.long), persistent=False)

    # --- text -> ids ------------------------------------------------------------------------
    def _wrap(self, prompt: str) -> str:
        if self.chat:
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                      add_generation_prompt=True)
            return text + ANSWER_PREFIX
        return prompt + "\n" + ANSWER_PREFIX

    def _ids(self, text: str) -> list[int]:
        # A chat template already writes its special tokens; a plain LM gets its BOS from the tokenizer.
        return self.tokenizer(text, add_special_tokens=not self.chat)["input_ids"]

    def encode(self, rows: Sequence[Mapping[str, Any]]) -> list[Encoded]:
        out = []
        budget = self.max_length - self.overhead - _SLACK
        for row in rows:
            text, cut = render_fitted(self.metric, row, budget, self.tokenizer)
            ids = self._ids(self._wrap(text))
            if self.swap_perm is None:
                out.append(Encoded(ids, len(ids), cut))
                continue
            # pairwise: also (B, A); the two answers are averaged with a <-> b mapped back (pool_views)
            text_b, cut_b = render_fitted(self.metric, swap_pair(row), budget, self.tokenizer)
            ids_b = self._ids(self._wrap(text_b))
            out.append(Encoded(ids, len(ids) + len(ids_b), cut or cut_b, [ids, ids_b], [False, True]))
        return out

    # --- forward ----------------------------------------------------------------------------
    @property
    def causal_lm(self) -> torch.nn.Module:
        """The transformers CausalLM (LoRA layers injected when training with LoRA)."""
        return self.net.get_base_model() if hasattr(self.net, "get_base_model") else self.net

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, owner: torch.Tensor | None = None,
                swapped: torch.Tensor | None = None) -> torch.Tensor:
        """Label logits [batch, n_labels] from the last position; only the label rows of the head."""
        lm = self.causal_lm
        body = lm.get_decoder()
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        hidden = body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                      use_cache=False).last_hidden_state[:, -1]
        head = lm.get_output_embeddings()
        weight = head.weight[self._label_ids]
        logits = hidden @ weight.to(hidden.dtype).T
        if getattr(head, "bias", None) is not None:
            logits = logits + head.bias[self._label_ids].to(hidden.dtype)
        cap = getattr(lm.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return self.pool_views(logits.float(), owner, swapped)

    def full_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Reference: the usual full-vocabulary next-token logits at the label ids (tests only)."""
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        out = self.causal_lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             use_cache=False)
        return out.logits[:, -1, :][:, self._label_ids].float()

    def describe(self) -> dict[str, Any]:
        return {
            "input_format": "chat template (user turn: judge prompt) + assistant turn + 'Answer:'"
            if self.chat else "judge prompt + '\\nAnswer:'",
            "answer_prefix": ANSWER_PREFIX,
            "chat_template": self.chat,
            "verbalizers": dict(zip(self.metric.labels, self.verbalizers)),
            "label_token_ids": dict(zip(self.metric.labels, self.label_ids)),
            "label_tokens": dict(zip(self.metric.labels, self.tokenizer.convert_ids_to_tokens(self.label_ids))),
            "single_token_verbalizers": self.single_token,
            "lora_target_modules": self.targets,
            "prompt_overhead_tokens": self.overhead,
        }

    def save_weights(self, folder: Path) -> list[str]:
        return save_adapter(self.net, folder) if self.lora else save_full(self.net, folder)

    def load_weights(self, folder: Path) -> None:
        load_adapter(self.net, folder) if self.lora else load_full(self.net, folder)

"""Many metrics on one frozen body for about the price of one: shared-body scoring.

Most shipped evaluators are a frozen base (MiniLM's mean-pooled embeddings: ``embed``; SmolLM2's first
layers: ``lm``) with a small head of their own (``linear``, and the ``hybrid`` / ``blend`` stacks that add
``tfidf``). Ten such metrics on a trace ran the same base ten times on the same text. Inside one
:class:`SharedScorer` scope, the evaluators whose feature blocks run the same body share its forward:

- **grouping key** (:func:`body_key`): the block's kind (``embed`` / ``lm``), its base weights (the
  resolved base path; ``lm``: and how many layers it keeps), the device its body runs on and its forward
  batch size. Blocks with equal keys get one memo for the scope.
- **reuse**, through the blocks' ``shared`` hook: ``encode`` renders and tokenises a row once per rendering
  setting (the view's template, fields and shape, ``max_length``, budget, ``keep_end``) and field values, as
  encoding depends on the row alone; a forward call (``EmbedFeatures.embed_encoded`` / ``LmFeatures.raw``)
  is answered from the memo when another block of its group already ran a call on the very same rows (token
  ids in the same order: what the rendered fields, ``max_length`` and the truncation policy made of them) at
  the same precision; else the body runs and the memo keeps the result. A whole call is the unit, not a row,
  on purpose: bf16 results depend on which rows share a padded batch (about 1e-3 on a MiniLM embedding), so
  reusing single rows from another batch would not give what scoring alone gives. Reused, a metric's
  features are the very numbers it would have computed alone; its own heads, stacking, calibration and
  decision (``Evaluator.score``) run as always, so the scores are identical.
- **exact fallback**: evaluators with nothing to share (``tfidf`` alone, a ``contrastive`` body tuned per
  metric, the ``encoder`` / ``decoder`` families, test doubles) and blocks alone in their group are
  scored alone, untouched. LoRA encoder evaluators score one by one: each adapter changes every layer's
  output, so a batch of several adapters (peft's ``adapter_names``) shares no computation, and unmerged
  adapters do not compute what the merged scoring weights do (see docs/monitoring.md).

The memo lives for the scope only (:meth:`SharedScorer.begin` starts a fresh one, :meth:`SharedScorer.end`
drops it). The monitor (one batch of traces), the batch engine (one chunk of rows) and the server's
batcher (one round of requests) open a scope; :func:`score_many` is the one-call form. This module imports
no torch: blocks are recognised by their ``kind`` and ``shared`` hook.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..metrics import field_text

SHARED_KINDS = {"embed": "_embed", "lm": "_raw"}  # frozen-body blocks -> the method that runs their forward


def body_key(block: Any) -> Hashable | None:
    """The body a feature block runs, as a hashable key; None for a block with nothing to share (TF-IDF,
    a tuned ``contrastive`` body, anything without the ``shared`` hook)."""
    kind = getattr(block, "kind", None)
    if kind not in SHARED_KINDS or not hasattr(type(block), "shared") or not hasattr(block, SHARED_KINDS[kind]):
        return None
    base = getattr(block, "base", None)
    path = str(getattr(base, "path", "") or "")
    if not path:
        return None
    net = getattr(block, "net", None)
    device = next(iter(net.parameters())).device.type if net is not None and hasattr(net, "parameters") else "cpu"
    layers = getattr(block, "layers", None) if kind == "lm" else None
    return (kind, path, layers, device, int(getattr(block, "batch_size", 0) or 0))


def shared_blocks(evaluator: Any) -> list[tuple[Hashable, Any]]:
    """(body key, block) for each frozen-body feature block of ``evaluator`` (none for other families)."""
    blocks = getattr(getattr(evaluator, "model", None), "blocks", None)
    if not isinstance(blocks, dict):
        return []
    out = []
    for block in blocks.values():
        key = body_key(block)
        if key is not None:
            out.append((key, block))
    return out


def body_keys(evaluator: Any) -> frozenset:
    """The bodies ``evaluator`` could share with another evaluator (empty: it scores alone)."""
    return frozenset(k for k, _ in shared_blocks(evaluator))


@dataclass
class BodyStats:
    """What one body did in a scope: rows rendered and tokenised (and reused), forward calls run and the rows
    they embedded, calls and rows answered from the memo."""

    encoded: int = 0
    reused_encoded: int = 0
    calls: int = 0
    rows: int = 0
    reused_calls: int = 0
    reused_rows: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Memo:
    """One body's work in one scope: each distinct row's encoding (by the block's rendering settings and the
    row's fields), each forward call's result (by precision and the call's token ids)."""

    kind: str
    stats: BodyStats
    encodings: dict[tuple, Any] = field(default_factory=dict)
    results: dict[tuple[str, tuple[tuple[int, ...], ...]], Any] = field(default_factory=dict)

    def encode(self, block: Any, rows: Sequence[Mapping[str, Any]], compute: Callable[[list], list]) -> list[Any]:
        """``compute(rows)`` (the block's own rendering and tokenising) for the rows not seen yet in this scope;
        a row's encoding depends on the row alone, so one made for another metric is the same."""
        rows = list(rows)
        view = block.view
        setting = (view.prompt, tuple(view.fields), str(view.shape), block.budget, block.max_length, block.keep_end)
        keys = [(setting, tuple(field_text(r.get(f)) for f in view.fields)) for r in rows]
        todo: dict[tuple, int] = {}
        for i, k in enumerate(keys):
            if k not in self.encodings:
                todo.setdefault(k, i)
        if todo:
            for k, e in zip(todo, compute([rows[i] for i in todo.values()])):
                self.encodings[k] = e
        self.stats.encoded += len(todo)
        self.stats.reused_encoded += len(rows) - len(todo)
        return [_with_row(self.encodings[k], r) for k, r in zip(keys, rows)]

    def embed(self, block: Any, encoded: Sequence[Any]) -> Any:
        """The block's forward on ``encoded`` (``_embed`` / ``_raw``), or the result of the same call made
        for another metric in this scope (a copy)."""
        precision = block._precision() if self.kind == "embed" else "fp32"  # lm: always fp32 (its own doc)
        key = (precision, tuple(tuple(e.ids) for e in encoded))
        hit = self.results.get(key)
        if hit is not None:
            self.stats.reused_calls += 1
            self.stats.reused_rows += len(encoded)
            return hit.copy()
        out = getattr(block, SHARED_KINDS[self.kind])(encoded)
        self.stats.calls += 1
        self.stats.rows += len(encoded)
        self.results[key] = out
        return out.copy()


def _with_row(encoded: Any, row: Mapping[str, Any]) -> Any:
    """An encoding handed to another metric carries that metric's own row (grounding and pairwise read it)."""
    return replace(encoded, row=row) if hasattr(encoded, "row") else encoded


class SharedScorer:
    """A scope in which ``evaluators`` on one frozen body run it once per distinct input (see the module
    doc). Use as a context manager around their ``score`` calls, or :meth:`begin` / :meth:`end`::

        with SharedScorer(evaluators) as shared:
            scores = shared.score([(ev, rows) for ev in evaluators])

    ``stats``: per body key, what the last scope ran and reused (:class:`BodyStats`)."""

    def __init__(self, evaluators: Iterable[Any]):
        self.evaluators = [ev for ev in evaluators if ev is not None]
        groups: dict[Hashable, list[Any]] = {}
        for ev in self.evaluators:
            for key, block in shared_blocks(ev):
                groups.setdefault(key, []).append(block)
        self.groups = {k: v for k, v in groups.items() if len(v) > 1}  # a body alone shares nothing
        self.stats: dict[Hashable, BodyStats] = {}
        self._installed: list[tuple[Any, Any]] = []

    @property
    def sharing(self) -> bool:
        """Whether any body is run by more than one of the evaluators."""
        return bool(self.groups)

    def begin(self) -> SharedScorer:
        """Start a scope: a fresh memo per shared body, set on its blocks (a scope already open ends first)."""
        self.end()
        self.stats = {}
        for key, blocks in self.groups.items():
            stats = self.stats[key] = BodyStats()
            memo = _Memo(str(key[0]), stats)
            for block in blocks:
                if any(b is block for b, _ in self._installed):
                    continue  # one evaluator listed twice: its block already has the memo
                self._installed.append((block, block.__dict__.get("shared")))
                block.shared = memo
        return self

    def end(self) -> None:
        """End the scope: the blocks get back what they had, the memos (and their arrays) are dropped."""
        while self._installed:
            block, previous = self._installed.pop()
            if previous is None:
                block.__dict__.pop("shared", None)
            else:
                block.shared = previous

    def __enter__(self) -> SharedScorer:
        return self.begin()

    def __exit__(self, *exc: object) -> None:
        self.end()

    def score(self, items: Sequence[tuple[Any, Sequence[Any]]], batch_size: int | None = None) -> list[list[Any]]:
        """``ev.score(rows)`` for each (evaluator, rows), in order, sharing bodies where this scope is open."""
        return [list(ev.score(list(rows), batch_size=batch_size)) for ev, rows in items]

    def totals(self) -> dict[str, int]:
        """The last scope's figures summed over its bodies."""
        out = dict(BodyStats().to_dict())
        for s in self.stats.values():
            for k, v in s.to_dict().items():
                out[k] += v
        return out


def score_many(evaluators: Sequence[Any], rows: Sequence[Any], batch_size: int | None = None) -> list[list[Any]]:
    """Each evaluator's scores of the same ``rows`` (``Score`` lists, in ``evaluators``' order), every frozen
    body they share run once per distinct input: the same scores as ``[ev.score(rows) for ev in evaluators]``."""
    with SharedScorer(evaluators) as shared:
        return shared.score([(ev, rows) for ev in evaluators], batch_size)

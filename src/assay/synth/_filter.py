"""Generated answers -> canonical rows with lineage, and the filters every row passes.

Each parsed item is either kept or dropped with a reason that is counted: nothing is lost
silently. Filters, in order: not a usable row, rejected in review, leakage of a held-out row,
(near-)duplicate of a seed, (near-)duplicate of another generated row. "Rejected in review"
covers rows equal or near to a row a reviewer rejected or sent back for regeneration.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Mapping, Sequence

from ..data import row_hash
from ..metrics import MetricSpec
from ._dedupe import NearDuplicateIndex, key_text
from ._plan import Call

ALIASES = {
    "input": ("text", "message", "prompt", "question", "query", "user", "request"),
    "output": ("response", "answer", "completion", "reply", "assistant", "call"),
    "context": ("documents", "knowledge", "passage", "passages", "retrieved"),
    "tools": ("functions", "tool_schemas"),
}
SHARED = ("context", "tools")  # copied from the seed when the generator leaves them out


def _empty(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, (list, dict)) and not v)


_PLACEHOLDER = re.compile(r"^<[^<>\n]{0,60}>?$")


def _placeholder(v: Any, field: str) -> bool:
    """The prompt's example placeholder (``<input>``) copied back instead of real text."""
    return isinstance(v, str) and (bool(_PLACEHOLDER.match(v.strip())) or f"<{field}>" in v)


def to_row(item: Any, call: Call, metric: MetricSpec, generator: str) -> tuple[dict[str, Any] | None, str]:
    """A canonical row from one generated item, or (None, why it is unusable)."""
    text_fields = [f for f in metric.fields if f not in SHARED]
    if isinstance(item, str) and len(text_fields) == 1 and item.strip():
        item = {text_fields[0]: item}
    if not isinstance(item, Mapping):
        return None, "not an object"
    by_id = {str(s.get("id")): s for s in call.seeds}
    seed_id = item.get("seed_id")
    seed = by_id.get(str(seed_id)) if seed_id is not None else None
    if seed is None and call.strategy != "create" and len(call.seeds) == 1:
        seed = call.seeds[0]
    source = seed or (call.seeds[0] if call.seeds else {})
    row: dict[str, Any] = {}
    for f in metric.fields:
        v = item.get(f)
        if _empty(v):
            v = next((item[a] for a in ALIASES.get(f, ()) if not _empty(item.get(a))), None)
        if _empty(v) and f in SHARED:
            v = source.get(f)
        if _empty(v):
            return None, f"no {f}"
        if f not in SHARED and _placeholder(v, f):
            return None, f"placeholder {f}"
        row[f] = v
    lineage = {
        "seed_id": str(seed.get("id")) if seed else None,
        "seed_ids": [str(s.get("id")) for s in call.seeds],
        "strategy": call.strategy,
        "generator": generator,
        "intended_label": call.label,
        "round": call.round,
        "request": call.request,
    }
    if item.get("label") not in (None, call.label):
        lineage["generator_label"] = str(item.get("label"))
    row["id"] = "syn-" + row_hash(row)[:16]
    row["label"] = call.label
    row["meta"] = {"lineage": lineage}
    return row, ""


class RowFilter:
    """Leakage, seed and within-set duplicate checks, with a count per drop reason."""

    def __init__(self, metric: MetricSpec, seeds: Sequence[Mapping[str, Any]], held_out: Sequence[Mapping[str, Any]],
                 *, near_threshold: float, leakage_threshold: float, excluded_hashes: set[str] = frozenset(),
                 excluded_rows: Sequence[Mapping[str, Any]] = ()):
        self.metric = metric
        self.near_threshold = near_threshold
        self.excluded = set(excluded_hashes)
        self.rejected = NearDuplicateIndex(near_threshold)
        for i, r in enumerate(excluded_rows):
            self.rejected.add(("rejected", i), key_text(r, metric))
        self.held = NearDuplicateIndex(leakage_threshold)
        for i, r in enumerate(held_out):
            self.held.add(("held_out", i), key_text(r, metric))
        self.seeds = NearDuplicateIndex(near_threshold)
        for i, r in enumerate(seeds):
            self.seeds.add(("seed", i), key_text(r, metric))
        self.kept = NearDuplicateIndex(near_threshold)
        self._round = NearDuplicateIndex(near_threshold)
        self.dropped: Counter[str] = Counter()
        self.examples: dict[str, list[dict[str, Any]]] = {}

    def start_round(self) -> None:
        self._round = NearDuplicateIndex(self.near_threshold)

    def drop(self, reason: str, row: Mapping[str, Any] | None, detail: Any = None) -> dict[str, Any]:
        self.dropped[reason] += 1
        rec = {"reason": reason, "detail": detail, "row": dict(row) if row is not None else None}
        ex = self.examples.setdefault(reason, [])
        if len(ex) < 3:
            ex.append(rec)
        return rec

    def check(self, row: dict[str, Any]) -> str | None:
        """None when the row may stay, else the drop reason (the row is then not indexed)."""
        text = key_text(row, self.metric)
        if row_hash(row) in self.excluded or self.rejected.match(text) is not None:
            return "rejected_in_review"
        hit = self.held.match(text)
        if hit is not None:
            return "leakage_held_out"
        hit = self.seeds.match(text)
        if hit is not None:
            return "duplicate_of_seed" if hit[1] >= 1.0 else "near_duplicate_of_seed"
        hit = self.kept.match(text) or self._round.match(text)
        if hit is not None:
            return "duplicate" if hit[1] >= 1.0 else "near_duplicate"
        self._round.add(row["id"], text)
        return None

    def keep(self, row: Mapping[str, Any]) -> None:
        self.kept.add(row["id"], key_text(row, self.metric))

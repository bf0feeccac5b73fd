"""Deterministic, stratified, grouped split of a labeled test set into seeds and held-out rows.

Each row's place is decided by the hash of its content (or of its group) and the split seed, so
the same rows always split the same way, whatever order they come in. Seeds may be shown to a
generator; held-out rows never are.

Grouping (``data.group_by``): rows that share a prompt, a source document or a conversation land
on one side together, so a held-out row never has a sibling among the seeds or the training rows.
``group_by`` is a canonical field (``input``, ``output``, ``context``, ``tools``), a column of the
file (kept in ``meta``), ``auto`` (the shape's default, :data:`DEFAULT_GROUP_BY`) or ``none``.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from ._io import row_hash

# The default grouping per input shape: what rows of that shape share when they come from one source.
SEED_FRACTION = 0.2  # the share of a labeled test set used as seeds (the rest is held out for evaluation)
DEFAULT_GROUP_BY = {
    "message": None,  # each message stands alone (exact repeats still stay together)
    "input_output": "input",  # responses to one prompt
    "rag": "context",  # answers grounded in one document
    "tools": "input",  # calls made for one request
    "pairwise": "input",  # comparisons on one prompt
    "trace": "conversation",  # one conversation / task: an id column if present, else the user goal (input)
    "session": "conversation",
}
# Columns taken as a conversation / trace id, first found wins (else the input).
CONVERSATION_COLUMNS = ("conversation_id", "session_id", "thread_id", "trace_id", "task_id")
CANONICAL_FIELDS = ("input", "output", "output_b", "context", "tools")


@dataclass
class Split:
    seeds: list[dict[str, Any]]
    held_out: list[dict[str, Any]]
    group_by: str | None = None  # the resolved grouping (None: each distinct row content alone)

    def manifest(self) -> dict[str, Any]:
        """Content hashes of each side, and the grouping; recorded in the artifact and the run."""
        out: dict[str, Any] = {
            "seeds": sorted(row_hash(r) for r in self.seeds),
            "held_out": sorted(row_hash(r) for r in self.held_out),
        }
        if self.group_by is not None:
            out["group_by"] = self.group_by
            out["groups"] = {"seeds": len({group_key(r, self.group_by) for r in self.seeds}),
                             "held_out": len({group_key(r, self.group_by) for r in self.held_out})}
            out["held_out_sharing_a_group"] = held_out_overlap(self.seeds, self.held_out, self.group_by)[
                "held_out_rows_sharing_a_group"]
        return out


# --- groups -------------------------------------------------------------------------------------
def resolve_group_by(group_by: str | None, shape: Any, rows: Sequence[Mapping[str, Any]] = ()) -> str | None:
    """The field or column rows are grouped by: ``auto`` becomes the shape's default; ``none``/None: rows alone."""
    if group_by is None or str(group_by).lower() in ("none", "row", ""):
        return None
    if group_by != "auto":
        return str(group_by)
    shape_name = getattr(shape, "value", shape)
    default = DEFAULT_GROUP_BY.get(str(shape_name))
    if default == "conversation":
        present: set[str] = set()
        for r in list(rows)[:200]:
            present |= set(r) | set(r.get("meta") or {})
        return next((c for c in CONVERSATION_COLUMNS if c in present), "input")
    return default


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def group_key(row: Mapping[str, Any], group_by: str | None) -> str:
    """The row's group: a hash of its ``group_by`` value (normalised), else of its whole content."""
    if group_by is None:
        return "row:" + row_hash(row)
    value = row.get(group_by) if group_by in CANONICAL_FIELDS or group_by in row else None
    if value in (None, "") and group_by not in CANONICAL_FIELDS:
        value = (row.get("meta") or {}).get(group_by)
    if value in (None, "", [], {}):  # no group value: the row is its own group
        return "row:" + row_hash(row)
    from ..metrics import field_text

    text = _norm(field_text(value)) if not isinstance(value, (int, float)) else str(value)
    return "group:" + hashlib.sha256(f"{group_by}={text}".encode()).hexdigest()


def held_out_overlap(train_rows: Iterable[Mapping[str, Any]], held_out_rows: Iterable[Mapping[str, Any]],
                     group_by: str | None) -> dict[str, Any]:
    """How many held-out rows share a group (or, ungrouped, their content) with a training row (want 0)."""
    train_groups = Counter(group_key(r, group_by) for r in train_rows)
    held = [group_key(r, group_by) for r in held_out_rows]
    shared = {g for g in held if g in train_groups}
    return {
        "group_by": group_by,
        "held_out_rows_sharing_a_group": sum(g in shared for g in held),
        "train_rows_sharing_a_group": sum(train_groups[g] for g in shared),
        "groups_shared": len(shared),
    }


def exclude_groups(train_rows: Sequence[Mapping[str, Any]], held_out_rows: Iterable[Mapping[str, Any]],
                   group_by: str | None) -> tuple[list[dict[str, Any]], int]:
    """Training rows whose group (ungrouped: content) has no held-out row, and how many were dropped.

    Exact repeats of a held-out row are always dropped, whatever the grouping.
    """
    held_groups = set()
    held_hashes = set()
    for r in held_out_rows:
        held_groups.add(group_key(r, group_by))
        held_hashes.add(row_hash(r))
    kept = [dict(r) for r in train_rows
            if group_key(r, group_by) not in held_groups and row_hash(r) not in held_hashes]
    return kept, len(train_rows) - len(kept)


# --- split --------------------------------------------------------------------------------------
def _key(row: Mapping[str, Any], seed: int) -> str:
    return hashlib.sha256(f"{seed}:{row_hash(row)}".encode()).hexdigest()


def split_rows(rows: Sequence[Mapping[str, Any]], fraction: float = 0.2, seed: int = 0,
               group_by: str | None = None) -> Split:
    """Stratified by label: about ``fraction`` of each label goes to the seeds.

    Rows whose content repeats stay on one side (the hash is the same), so a held-out row never
    has a twin among the seeds. With ``group_by`` (a resolved field/column, see
    :func:`resolve_group_by`) every group lands on one side.
    """
    if not 0 < fraction < 1:
        raise ValueError("fraction must be between 0 and 1")
    if group_by is not None:
        return _split_groups(rows, fraction, seed, group_by)
    groups: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[str(r.get("label"))][_key(r, seed)].append(dict(r))
    seeds: list[dict[str, Any]] = []
    held: list[dict[str, Any]] = []
    for label in sorted(groups):
        keys = sorted(groups[label])
        n_seed = max(1, round(fraction * len(keys))) if len(keys) > 1 else 0
        for i, k in enumerate(keys):
            (seeds if i < n_seed else held).extend(groups[label][k])
    return Split(seeds=seeds, held_out=held)


def _split_groups(rows: Sequence[Mapping[str, Any]], fraction: float, seed: int, group_by: str) -> Split:
    """Whole groups to one side, in the order of their hash; a group joins the seeds when that
    brings the seeds' label counts closer to ``fraction`` of each label's count (stratified greedy)."""
    members: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        members[group_key(r, group_by)].append(dict(r))
    for g in members:  # the order inside a group must not depend on the input order either
        members[g].sort(key=lambda r: (row_hash(r), str(r.get("label")), str(r.get("id"))))
    total = Counter(str(r.get("label")) for r in rows)
    target = {lab: fraction * n for lab, n in total.items()}
    have: Counter = Counter()
    order = sorted(members, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    seeds: list[dict[str, Any]] = []
    held: list[dict[str, Any]] = []
    n_seed_rows = 0
    for g in order:
        counts = Counter(str(r.get("label")) for r in members[g])
        before = sum(abs(have[lab] - target[lab]) for lab in counts)
        after = sum(abs(have[lab] + c - target[lab]) for lab, c in counts.items())
        # never take everything: the held-out side must keep rows
        if after < before and n_seed_rows + len(members[g]) < len(rows):
            seeds.extend(members[g])
            have.update(counts)
            n_seed_rows += len(members[g])
        else:
            held.extend(members[g])
    return Split(seeds=seeds, held_out=held, group_by=group_by)


def split_test_set(rows: Sequence[Mapping[str, Any]], shape: Any, *, seed_fraction: float = SEED_FRACTION,
                   split_seed: int = 0, group_by: str | None = "auto") -> Split:
    """The seed / held-out split of a labeled test set, exactly as ``assay train`` makes it.

    The one place the rule lives: ``train``, ``generate``, ``validate``, the server's upload preview
    and the test doubles all call this, so the counts a user is shown are the split that trains.
    ``group_by``: a column or field, ``auto`` (the shape's default) or None (each distinct row alone).
    """
    return split_rows(rows, seed_fraction, split_seed, group_by=resolve_group_by(group_by, shape, rows))

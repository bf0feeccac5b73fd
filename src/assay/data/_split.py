"""Deterministic, stratified split of a labeled test set into seeds and held-out rows.

Each row's place is decided by the hash of its content and the split seed, so the same
rows always split the same way, whatever order they come in. Seeds may be shown to a
generator; held-out rows never are.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ._io import row_hash


@dataclass
class Split:
    seeds: list[dict[str, Any]]
    held_out: list[dict[str, Any]]

    def manifest(self) -> dict[str, Any]:
        """Content hashes of each side, recorded in the artifact and the run."""
        return {
            "seeds": sorted(row_hash(r) for r in self.seeds),
            "held_out": sorted(row_hash(r) for r in self.held_out),
        }


def _key(row: Mapping[str, Any], seed: int) -> str:
    return hashlib.sha256(f"{seed}:{row_hash(row)}".encode()).hexdigest()


def split_rows(rows: Sequence[Mapping[str, Any]], fraction: float = 0.2, seed: int = 0) -> Split:
    """Stratified by label: about ``fraction`` of each label goes to the seeds.

    Rows whose content repeats stay on one side (the hash is the same), so a held-out row
    never has a twin among the seeds.
    """
    if not 0 < fraction < 1:
        raise ValueError("fraction must be between 0 and 1")
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

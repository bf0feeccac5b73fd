"""Exact and near-duplicate detection: normalised text, character 5-gram Jaccard, MinHash LSH.

Candidates come from MinHash banding and are confirmed with the exact Jaccard of the
shingle sets, so a reported duplicate always has Jaccard >= threshold. The banding is chosen
so that pairs at the threshold are found with probability > 0.98.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from collections import defaultdict
from typing import Any, Hashable, Mapping

import numpy as np

from ..metrics import MetricSpec, field_text

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)
SHINGLE = 5


def normalize(text: str) -> str:
    """Lowercase, NFKC, punctuation and runs of spaces folded to one space."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _NON_WORD.sub(" ", text).strip()


def key_text(row: Mapping[str, Any], metric: MetricSpec) -> str:
    """The text compared for duplicates: the fields the metric reads, except shared context/tools."""
    fields = [f for f in metric.fields if f not in ("context", "tools")] or list(metric.fields)
    return "\n".join(field_text(row.get(f)) for f in fields)


def text_hash(text: str) -> str:
    return hashlib.sha1(normalize(text).encode()).hexdigest()


def shingles(text: str, k: int = SHINGLE) -> frozenset[int]:
    t = normalize(text)
    if len(t) <= k:
        return frozenset([zlib.crc32(t.encode())])
    return frozenset(zlib.crc32(t[i:i + k].encode()) for i in range(len(t) - k + 1))


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


class NearDuplicateIndex:
    """Rows added by key; ``match(text)`` gives the most similar one at Jaccard >= threshold."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 96, seed: int = 1):
        self.threshold = threshold
        # bands x rows: high thresholds tolerate more rows per band (fewer false candidates).
        self.rows_per_band = 4 if threshold >= 0.75 else (3 if threshold >= 0.5 else 2)
        self.bands = num_perm // self.rows_per_band
        rng = np.random.default_rng(seed)
        n = self.bands * self.rows_per_band
        self._masks = rng.integers(0, np.iinfo(np.uint64).max, size=n, dtype=np.uint64, endpoint=True)
        self._buckets: list[dict[bytes, list[Hashable]]] = [defaultdict(list) for _ in range(self.bands)]
        self._sets: dict[Hashable, frozenset[int]] = {}
        self._exact: dict[str, Hashable] = {}

    def __len__(self) -> int:
        return len(self._sets)

    def _signature(self, sh: frozenset[int]) -> np.ndarray:
        """Per permutation i: min over shingles of splitmix64(x XOR mask_i)."""
        x = np.fromiter(sh, dtype=np.uint64, count=len(sh))
        z = self._masks[:, None] ^ x[None, :]
        with np.errstate(over="ignore"):
            z = (z ^ (z >> np.uint64(30))) * _M1
            z = (z ^ (z >> np.uint64(27))) * _M2
        z = z ^ (z >> np.uint64(31))
        return z.min(axis=1)

    def _band_keys(self, sig: np.ndarray) -> list[bytes]:
        r = self.rows_per_band
        return [sig[i * r:(i + 1) * r].tobytes() for i in range(self.bands)]

    def add(self, key: Hashable, text: str) -> None:
        sh = shingles(text)
        self._sets[key] = sh
        self._exact.setdefault(text_hash(text), key)
        for band, bkey in zip(self._buckets, self._band_keys(self._signature(sh))):
            band[bkey].append(key)

    def exact(self, text: str) -> Hashable | None:
        """The key of a row with the same normalised text."""
        return self._exact.get(text_hash(text))

    def match(self, text: str) -> tuple[Hashable, float] | None:
        """(key, Jaccard) of the most similar row at or above the threshold, else None."""
        hit = self.exact(text)
        if hit is not None:
            return hit, 1.0
        if not self._sets:
            return None
        sh = shingles(text)
        candidates: set[Hashable] = set()
        for band, bkey in zip(self._buckets, self._band_keys(self._signature(sh))):
            candidates.update(band.get(bkey, ()))
        best: tuple[Hashable, float] | None = None
        for c in candidates:
            j = jaccard(sh, self._sets[c])
            if j >= self.threshold and (best is None or j > best[1]):
                best = (c, j)
        return best

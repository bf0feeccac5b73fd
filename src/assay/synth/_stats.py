"""Length and diversity statistics, and how far synthetic rows sit from the seeds (TF-IDF kNN)."""

from __future__ import annotations

import re
import zlib
from collections import Counter
from typing import Any, Sequence

import numpy as np

_TOKEN = re.compile(r"\w+", re.UNICODE)
DIM = 1 << 14


def words(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def length_stats(texts: Sequence[str]) -> dict[str, Any]:
    if not texts:
        return {"n": 0}
    chars = np.array([len(t) for t in texts], dtype=float)
    toks = np.array([len(words(t)) for t in texts], dtype=float)

    def summary(a: np.ndarray) -> dict[str, float]:
        return {"mean": round(float(a.mean()), 1), "median": float(np.median(a)), "p5": float(np.percentile(a, 5)),
                "p95": float(np.percentile(a, 95)), "min": float(a.min()), "max": float(a.max())}

    return {"n": len(texts), "chars": summary(chars), "words": summary(toks)}


def diversity_stats(texts: Sequence[str], sample: int | None = None, seed: int = 0) -> dict[str, Any]:
    """distinct-1/2 (unique n-grams over all n-grams) on ``sample`` texts, for a fair comparison."""
    texts = list(texts)
    if sample is not None and len(texts) > sample:
        idx = np.random.default_rng(seed).choice(len(texts), size=sample, replace=False)
        texts = [texts[i] for i in sorted(idx)]
    uni: Counter[str] = Counter()
    bi: Counter[tuple[str, str]] = Counter()
    for t in texts:
        w = words(t)
        uni.update(w)
        bi.update(zip(w, w[1:]))
    n1, n2 = sum(uni.values()), sum(bi.values())
    return {
        "rows": len(texts),
        "distinct_1": round(len(uni) / n1, 4) if n1 else None,
        "distinct_2": round(len(bi) / n2, 4) if n2 else None,
        "vocabulary": len(uni),
    }


def _features(texts: Sequence[str]) -> list[Counter[int]]:
    out = []
    for t in texts:
        w = words(t)
        grams = w + [a + " " + b for a, b in zip(w, w[1:])]
        out.append(Counter(zlib.crc32(g.encode()) % DIM for g in grams))
    return out


def _idf(feats: Sequence[Counter[int]]) -> np.ndarray:
    df = np.zeros(DIM, dtype=np.float64)
    for f in feats:
        df[list(f)] += 1
    return np.log((1 + len(feats)) / (1 + df)) + 1


def _matrix(feats: Sequence[Counter[int]], idf: np.ndarray) -> np.ndarray:
    """Hashed word uni+bigram TF-IDF rows, L2-normalised, float32."""
    x = np.zeros((len(feats), DIM), dtype=np.float32)
    for i, f in enumerate(feats):
        if f:
            cols = np.fromiter(f.keys(), dtype=np.int64)
            x[i, cols] = np.log1p(np.fromiter(f.values(), dtype=np.float64)) * idf[cols]
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def distribution_check(seed_texts: Sequence[str], synth_texts: Sequence[str], warn_below: float = 0.5,
                       chunk: int = 256) -> dict[str, Any]:
    """How close synthetic rows stay to the seeds, as one number.

    For each synthetic row, the cosine similarity (hashed TF-IDF) to its nearest seed; for each
    seed, the similarity to its nearest other seed. ``ratio`` = mean synthetic->seed similarity /
    mean seed->seed similarity: about 1 means synthetic rows sit among the seeds like the seeds sit
    among themselves; below ``warn_below`` they drift away from the seeds' distribution (warning);
    far above 1 they hug the seeds (``too_close``: little new material).
    """
    if len(seed_texts) < 2 or not synth_texts:
        return {"method": "tfidf_knn_cosine", "ratio": None, "warning": False,
                "note": "needs at least 2 seeds and 1 synthetic row"}
    seed_f, syn_f = _features(seed_texts), _features(synth_texts)
    idf = _idf(seed_f + syn_f)
    seeds = _matrix(seed_f, idf)
    ss = seeds @ seeds.T
    np.fill_diagonal(ss, -np.inf)
    seed_sim = ss.max(axis=1)
    syn_sim = np.concatenate([(_matrix(syn_f[i:i + chunk], idf) @ seeds.T).max(axis=1)
                              for i in range(0, len(syn_f), chunk)])
    base = float(seed_sim.mean())
    mean = float(syn_sim.mean())
    ratio = mean / base if base > 0 else None
    return {
        "method": "tfidf_knn_cosine",
        "synthetic_to_seed_similarity": round(mean, 4),
        "seed_to_seed_similarity": round(base, 4),
        "ratio": round(ratio, 4) if ratio is not None else None,
        "warning_below": warn_below,
        "warning": bool(ratio is not None and ratio < warn_below),
        "too_close": bool(ratio is not None and ratio > 4),
        "synthetic_far_from_seeds": round(float((syn_sim < np.percentile(seed_sim, 10)).mean()), 4),
    }

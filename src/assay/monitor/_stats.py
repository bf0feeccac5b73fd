"""Small statistics for monitoring: histograms, PSI and the KS statistic (kappa: :mod:`assay.stats`)."""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Any, Sequence

EDGES = tuple(i / 10 for i in range(11))


def histogram(values: Sequence[float], edges: Sequence[float] = EDGES) -> dict[str, Any]:
    """Counts of ``values`` in [edges[i], edges[i+1]) (the last bin includes its right edge)."""
    counts = [0] * (len(edges) - 1)
    for v in values:
        i = min(max(bisect_right(edges, float(v)) - 1, 0), len(counts) - 1)
        counts[i] += 1
    return {"edges": [round(e, 6) for e in edges], "counts": counts}


def psi(expected: Sequence[float], actual: Sequence[float], eps: float = 1e-4) -> float | None:
    """Population stability index between two binned distributions (counts or fractions)."""
    se, sa = float(sum(expected)), float(sum(actual))
    if se <= 0 or sa <= 0 or len(expected) != len(actual):
        return None
    total = 0.0
    for e, a in zip(expected, actual):
        pe, pa = max(e / se, eps), max(a / sa, eps)
        total += (pa - pe) * math.log(pa / pe)
    return round(total, 6)


def ks_statistic(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Two-sample Kolmogorov-Smirnov statistic (max distance between empirical CDFs)."""
    if not x or not y:
        return None
    xs, ys = sorted(x), sorted(y)
    d = 0.0
    for v in sorted(set(xs) | set(ys)):
        d = max(d, abs(bisect_right(xs, v) / len(xs) - bisect_right(ys, v) / len(ys)))
    return round(d, 6)


def ks_pvalue(d: float, n: int, m: int) -> float:
    """Asymptotic p-value of the two-sample KS statistic."""
    en = math.sqrt(n * m / (n + m))
    lam = (en + 0.12 + 0.11 / en) * d
    if lam < 0.2:  # Q(lam) = 1 to 12 decimals there, where the alternating series below does not converge
        return 1.0
    s = sum(2 * (-1) ** (j - 1) * math.exp(-2 * j * j * lam * lam) for j in range(1, 101))
    return round(min(max(s, 0.0), 1.0), 6)


def rebin(bins: Sequence[dict[str, Any]], edges: Sequence[float] = EDGES) -> list[float]:
    """Counts of report histogram bins ({lo, hi, count}) spread over ``edges`` (uniform within a bin)."""
    out = [0.0] * (len(edges) - 1)
    for b in bins:
        lo, hi, c = float(b["lo"]), float(b["hi"]), float(b["count"])
        width = hi - lo
        for i in range(len(out)):
            overlap = max(0.0, min(hi, edges[i + 1]) - max(lo, edges[i]))
            if width > 0 and overlap > 0:
                out[i] += c * overlap / width
    return out

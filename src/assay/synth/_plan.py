"""Planning a generation round: rows per label, calls per strategy, a few seeds per call.

Everything is derived from the config's ``seed`` so the same config makes the same prompts
(and a re-run is answered from the request cache).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..errors import AssayError

SAME_LABEL = ("paraphrase", "swap", "typos", "tighten_loosen")  # need seeds of the target label
RARE_FLOOR = 0.5  # "seeds" distribution: every label gets at least this share of a balanced split


@dataclass
class Call:
    """One generator request: strategy, target label, the seeds shown, how many rows asked."""

    request: int
    round: int
    strategy: str
    label: str
    seeds: list[dict[str, Any]]
    n: int
    prompt: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def label_targets(target_size: int, labels: Sequence[str], distribution: Any,
                  seeds: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Rows wanted per label, summing to ``target_size``.

    ``balanced``: equal shares; ``seeds``: the seeds' proportions, but no label below half
    of a balanced share (rare classes get enough rows to learn from); a mapping: its weights.
    """
    labels = list(labels)
    if distribution == "balanced":
        weights = {lab: 1.0 for lab in labels}
    elif distribution == "seeds":
        counts = {lab: sum(1 for s in seeds if s.get("label") == lab) for lab in labels}
        total = sum(counts.values()) or 1
        weights = _with_floor({lab: counts[lab] / total for lab in labels}, RARE_FLOOR / len(labels))
    elif isinstance(distribution, Mapping):
        unknown = sorted(set(distribution) - set(labels))
        if unknown:
            raise AssayError(f"generate.label_distribution keys among {labels}", f"{unknown}",
                             "use the metric's labels as keys", code="invalid_config")
        weights = {lab: max(0.0, float(distribution.get(lab, 0.0))) for lab in labels}
        if sum(weights.values()) <= 0:
            raise AssayError("a positive weight for at least one label", f"{dict(distribution)}",
                             "give label weights > 0 in generate.label_distribution", code="invalid_config")
    else:
        raise AssayError("label_distribution balanced, seeds or {label: weight}", repr(distribution),
                         "fix generate.label_distribution", code="invalid_config")
    return apportion(target_size, weights)


def _with_floor(shares: dict[str, float], floor: float) -> dict[str, float]:
    """Shares summing to 1 where none is below ``floor``; the others keep their proportions."""
    low: set[str] = set()
    while True:
        rest = 1.0 - floor * len(low)
        free = {k: v for k, v in shares.items() if k not in low}
        total = sum(free.values()) or 1.0
        out = {k: (floor if k in low else rest * v / total) for k, v in shares.items()}
        new = {k for k, v in out.items() if v < floor and k not in low}
        if not new:
            return out
        low |= new


def apportion(total: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Largest-remainder split of ``total`` by ``weights`` (deterministic, sums exactly)."""
    keys = list(weights)
    s = sum(weights.values())
    if total <= 0 or s <= 0:
        return {k: 0 for k in keys}
    quota = {k: total * weights[k] / s for k in keys}
    out = {k: int(math.floor(quota[k])) for k in keys}
    for k in sorted(keys, key=lambda k: (-(quota[k] - out[k]), keys.index(k)))[: total - sum(out.values())]:
        out[k] += 1
    return out


def _rng(*parts: Any) -> random.Random:
    return random.Random(int(hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:16], 16))


class SeedPicker:
    """Seeds for each call, cycling through a shuffled pool per label so every seed gets used."""

    def __init__(self, seeds: Sequence[Mapping[str, Any]], seed: int):
        self.by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for s in seeds:
            self.by_label[str(s.get("label"))].append(dict(s))
        self.all = [dict(s) for s in seeds]
        self.seed = seed
        self._pos: dict[str, int] = defaultdict(int)
        self._order: dict[str, list[dict[str, Any]]] = {}

    def pool(self, strategy: str, label: str) -> tuple[str, list[dict[str, Any]]]:
        same = self.by_label.get(label) or []
        if strategy == "flip":
            other = [s for s in self.all if s.get("label") != label]
            return ("other:" + label, other) if other else (label, same)
        if same:
            return label, same
        return "*", self.all

    def pick(self, strategy: str, label: str, k: int) -> list[dict[str, Any]]:
        key, pool = self.pool(strategy, label)
        if not pool:
            return []
        if key not in self._order:
            order = list(pool)
            _rng(self.seed, key).shuffle(order)
            self._order[key] = order
        order = self._order[key]
        k = min(k, len(order))
        start = self._pos[key]
        self._pos[key] = (start + k) % len(order)
        return [order[(start + i) % len(order)] for i in range(k)]


def usable_strategies(weights: Mapping[str, float], label: str, picker: SeedPicker) -> dict[str, float]:
    """Strategy weights for one label; expansion without seeds of that label becomes creation."""
    out: dict[str, float] = defaultdict(float)
    has_same = bool(picker.by_label.get(label))
    has_other = any(s.get("label") != label for s in picker.all)
    for name, w in weights.items():
        if w <= 0:
            continue
        if name in SAME_LABEL and not has_same:
            name = "create"
        elif name == "flip" and not has_other:
            name = "paraphrase" if has_same else "create"
        out[name] += float(w)
    return dict(out) or {"create": 1.0}


def plan_calls(missing: Mapping[str, int], *, strategies: Mapping[str, float], picker: SeedPicker,
               rows_per_call: int, seeds_per_call: int, overgenerate: float | Mapping[str, float], round_: int,
               first_request: int) -> list[Call]:
    """Calls asking for ``missing`` rows per label times ``overgenerate`` (one factor, or one per
    label), spread over strategies."""
    calls: list[Call] = []
    request = first_request
    for label, need in missing.items():
        if need <= 0:
            continue
        factor = overgenerate.get(label, 1.0) if isinstance(overgenerate, Mapping) else overgenerate
        ask = max(int(math.ceil(need * factor)), rows_per_call)  # a call costs about the same for 1 or 5 rows
        n_calls = int(math.ceil(ask / rows_per_call))
        per_strategy = apportion(n_calls, usable_strategies(strategies, label, picker))
        sizes = [rows_per_call] * (n_calls - 1) + [ask - rows_per_call * (n_calls - 1)]
        names = [name for name, c in per_strategy.items() for _ in range(c)]
        _rng(picker.seed, round_, label).shuffle(names)  # interleave strategies
        for name, n in zip(names, sizes):
            calls.append(Call(request=request, round=round_, strategy=name, label=label,
                              seeds=picker.pick(name, label, seeds_per_call), n=n))
            request += 1
    return calls

"""Dollar accounting from a price table (dollars per million tokens) that users override.

The defaults are public list prices noted when this table was written; prices change, so
set yours in the config (``prices:``) or in ``$ASSAY_HOME/providers.yaml``. Local servers and
the mock cost nothing unless a price is given. A model with no price is reported as unpriced.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Mapping

from ._types import Usage

# provider/model glob -> (input $/1M tokens, output $/1M tokens)
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "openai/gpt-4o-mini*": (0.15, 0.60),
    "openai/gpt-4o*": (2.50, 10.00),
    "openai/gpt-4.1-nano*": (0.10, 0.40),
    "openai/gpt-4.1-mini*": (0.40, 1.60),
    "openai/gpt-4.1*": (2.00, 8.00),
    "anthropic/claude-3-5-haiku*": (0.80, 4.00),
    "anthropic/claude-3-haiku*": (0.25, 1.25),
    "anthropic/claude-3-5-sonnet*": (3.00, 15.00),
    "anthropic/claude-3-7-sonnet*": (3.00, 15.00),
    "anthropic/claude-sonnet-4*": (3.00, 15.00),
    "mock/*": (0.0, 0.0),
    "ollama/*": (0.0, 0.0),
    "lmstudio/*": (0.0, 0.0),
    "vllm/*": (0.0, 0.0),
    "llamacpp/*": (0.0, 0.0),
}


class PriceTable:
    """Looks up a model's price: user entries first (exact, then globs), then the defaults."""

    def __init__(self, overrides: Mapping[str, Any] | None = None):
        self.entries: list[tuple[str, tuple[float, float]]] = []
        for name, p in (overrides or {}).items():
            self.entries.append((name, _pair(p)))
        self.entries += list(DEFAULT_PRICES.items())

    def price(self, model: str) -> tuple[float, float] | None:
        for name, pair in self.entries:
            if name == model:
                return pair
        for name, pair in self.entries:
            if fnmatchcase(model, name):
                return pair
        return None

    def cost(self, model: str, usage: Usage) -> float | None:
        p = self.price(model)
        if p is None:
            return None
        return (usage.input_tokens * p[0] + usage.output_tokens * p[1]) / 1_000_000


def _pair(p: Any) -> tuple[float, float]:
    if isinstance(p, Mapping):
        return float(p.get("input", 0)), float(p.get("output", 0))
    if hasattr(p, "input") and hasattr(p, "output"):
        return float(p.input), float(p.output)
    a, b = p
    return float(a), float(b)

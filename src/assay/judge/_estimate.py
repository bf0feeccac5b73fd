"""What a tuning run will cost, before it runs: judge calls, tokens and dollars from the same split.

The formulas follow ``tune_judge`` exactly (every candidate valid, no early stop: the most it does):

- judge calls = (search-train + validation) x (1 + rounds x (candidates + few-shot candidate))
  + 2 x test rows (the start and the chosen prompt, once each);
- writer calls = rounds x candidates.

Input tokens are counted as characters / 4 on the rendered prompts (the judge's system line included);
a revised prompt is taken to be ``growth`` tokens longer than the start (definitions and a few
examples), the few-shot candidate as long as its inserted examples. Output tokens: ``judge_out`` per
verdict (a label word; at most 16) and ``writer_out`` per revision (at most ``writer_max_tokens``).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from ..metrics import MetricSpec, load_metric, render
from ..providers import JUDGE_SYSTEM, PriceTable
from ._candidates import WRITER_SYSTEM, fewshot_prompt, pick_disagreements, writer_prompt
from ._split import split_for_tuning


def _tok(text: str) -> int:
    return math.ceil(len(text) / 4)


def estimate_tuning(metric: MetricSpec | str, rows: Sequence[Mapping[str, Any]], *, judge: str, rounds: int = 3,
                    candidates: int = 2, fewshot: int = 4, max_examples: int = 12, growth: int = 300,
                    judge_out: int = 4, writer_out: int = 600, seed: int = 0,
                    prices: PriceTable | None = None, **split_kw: Any) -> dict[str, Any]:
    """Calls, tokens and dollars of ``tune_judge`` with these settings on ``rows`` (no provider call)."""
    spec = load_metric(metric)
    split = split_for_tuning(spec, rows, seed=seed, **split_kw)
    search = split.train + split.validation
    per_row = sum(_tok(JUDGE_SYSTEM) + _tok(render(spec, r)) for r in search) / max(1, len(search))
    per_test = sum(_tok(JUDGE_SYSTEM) + _tok(render(spec, r)) for r in split.test) / max(1, len(split.test))
    shown = pick_disagreements(split.train, [None] * len(split.train), max_examples, seed)
    fs_growth = (_tok(fewshot_prompt(spec, spec.prompt, [r for r, _ in shown[:fewshot]])) - _tok(spec.prompt)
                 if fewshot else 0)
    n = len(search)
    start_in = n * per_row
    round_in = n * (candidates * (per_row + growth) + (per_row + fs_growth if fewshot else 0))
    writer_in = _tok(WRITER_SYSTEM) + _tok(writer_prompt(spec, spec.prompt, shown, {"wrong": 0, "n": 0, "kappa": 0}))
    writer_in += growth  # the current prompt shown grows like the candidates
    final_in = len(split.test) * (2 * per_test + growth)
    judge_calls = n * (1 + rounds * (candidates + (1 if fewshot else 0))) + 2 * len(split.test)
    writer_calls = rounds * candidates
    tokens_in = start_in + rounds * round_in + writer_calls * writer_in + final_in
    tokens_out = judge_calls * judge_out + writer_calls * writer_out
    price = (prices or PriceTable()).price(judge)
    dollars = None if price is None else (tokens_in * price[0] + tokens_out * price[1]) / 1_000_000
    return {"judge": judge, "rows": {"train": len(split.train), "validation": len(split.validation),
                                     "test": len(split.test)},
            "settings": {"rounds": rounds, "candidates": candidates, "fewshot": fewshot, "growth_tokens": growth},
            "judge_calls": judge_calls, "judge_calls_per_round": n * (candidates + (1 if fewshot else 0)),
            "writer_calls": writer_calls, "tokens_per_judge_call": round(per_row),
            "input_tokens": round(tokens_in), "output_tokens": round(tokens_out),
            "price_per_million": list(price) if price else None,
            "usd": None if dollars is None else round(dollars, 4)}

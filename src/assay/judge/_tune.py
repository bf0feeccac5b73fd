"""``tune_judge``: revise a metric's judge prompt until it agrees with people, measured honestly.

1. Split the human-labeled rows (the seeds) into search-train, validation and test parts (``_split``).
2. Measure the starting prompt on search-train and validation.
3. Each round: show the provider the search-train rows where the current best prompt and people
   disagree, ask for ``candidates`` revised prompts (plus one provider-free candidate: the current prompt
   with a few of those rows as reviewer-labeled examples), check each (``_candidates``), judge the valid
   ones on search-train and validation, and keep the best by validation kappa (strictly better only).
4. Stop after ``rounds``, on the dollar budget, or when no search-train row is judged wrong.
5. Measure the starting and the chosen prompt ONCE on the test part, which nothing above has seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..data import row_hash
from ..metrics import MetricSpec, field_text, judged_fields, load_metric
from ..providers import Provider, ProviderError
from ._candidates import (WRITER_SYSTEM, check_candidate, extract_prompt, fewshot_prompt, pick_disagreements,
                          writer_prompt)
from ._measure import BOOTSTRAP, Agreement, measure_prompt
from ._report import TuneResult, prompt_sha256
from ._split import split_for_tuning


@dataclass
class Candidate:
    """One prompt tried: where it came from, why it was rejected or how it scored."""

    round: int
    source: str  # start | provider | fewshot
    prompt: str
    reason: str | None = None  # why it was rejected (None: scored)
    answer: str | None = None  # the provider's raw answer, kept when no prompt could be read from it
    train: Agreement | None = None
    validation: Agreement | None = None
    chosen: bool = False  # became the best prompt in its round
    metric: MetricSpec | None = field(default=None, repr=False)

    @property
    def scored(self) -> bool:
        return self.validation is not None

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.round, "source": self.source, "status": "scored" if self.scored else "rejected",
                "reason": self.reason, "answer": self.answer, "prompt_sha256": prompt_sha256(self.prompt),
                "prompt": self.prompt,
                "train": self.train.to_dict() if self.train else None,
                "validation": self.validation.to_dict() if self.validation else None, "chosen": self.chosen}


def _better(a: Agreement, b: Agreement) -> bool:
    return a.kappa is not None and (b.kappa is None or a.kappa > b.kappa)


def tune_judge(metric: MetricSpec | str, rows: Sequence[Mapping[str, Any]], provider: Provider, *,
               rounds: int = 3, budget_usd: float | None = None, seed: int = 0, candidates: int = 2,
               fewshot: int = 4, max_examples: int = 12, writer_temperature: float = 0.7,
               writer_max_tokens: int = 2048, validation_fraction: float = 0.3, test_fraction: float = 0.3,
               group_by: str | None = "auto", bootstrap: int = BOOTSTRAP,
               progress: Callable[[str], None] | None = None) -> TuneResult:
    """Tune ``metric``'s judge prompt on ``rows`` (human-labeled seeds, never held-out evaluation rows).

    ``candidates``: revised prompts asked of the provider per round; ``fewshot``: examples in the extra
    provider-free candidate (0: none). ``budget_usd``: a round is started only when the dollars spent so far,
    the round (estimated from the last one) and the final test measurement stay within it; the starting
    and the final measurements are always made.
    """
    spec = load_metric(metric)
    say = progress or (lambda _msg: None)
    split = split_for_tuning(spec, rows, seed=seed, validation_fraction=validation_fraction,
                             test_fraction=test_fraction, group_by=group_by)
    search = _Search(spec, split, provider, seed=seed, bootstrap=bootstrap)
    writer = _Writer(candidates, fewshot, max_examples, writer_temperature, writer_max_tokens)
    say(f"split {len(split.train)} search-train / {len(split.validation)} validation / {len(split.test)} test rows")
    best = Candidate(0, "start", spec.prompt, metric=spec, chosen=True)
    search.score(best)
    say(f"start: validation kappa {_fmt(best.validation.kappa)}")  # type: ignore[union-attr]
    tried = [best]
    history = [_round_entry(0, best, [best], search.spent())]
    judge_row_cost = search.spent() / max(1, len(split.train) + len(split.validation))
    reserve = judge_row_cost * 2 * len(split.test)  # the final measurement of two prompts
    round_floor = search.spent() * writer.per_round  # a round judges search-train + validation once per candidate
    last_round_cost = round_floor
    stop = f"rounds ({rounds})"
    for r in range(1, rounds + 1):
        if budget_usd is not None and search.spent() + last_round_cost + reserve > budget_usd:
            stop = (f"budget: ${search.spent():.4f} spent, the next round (about ${last_round_cost:.4f}) and the "
                    f"final test measurement (about ${reserve:.4f}) would pass ${budget_usd:.4f}")
            break
        start_cost = search.spent()
        fresh = search.revise(best, r, writer)
        if fresh is None:
            stop = "no disagreement left on the search-train part"
            break
        search.vet(fresh, tried)
        winner = max((c for c in fresh if c.scored), key=_validation_score, default=None)
        if winner is not None and _better(winner.validation, best.validation):  # type: ignore[arg-type]
            winner.chosen = True
            best = winner
        last_round_cost = max(search.spent() - start_cost, round_floor)  # a round of rejected candidates is no guide
        history.append(_round_entry(r, best, fresh, last_round_cost))
        say(f"round {r}: {sum(c.scored for c in fresh)} of {len(fresh)} candidates scored; best validation kappa "
            f"{_fmt(best.validation.kappa)}")  # type: ignore[union-attr]
    final = search.final_test(best)
    say(f"final test kappa: start {_fmt(final['start'].kappa)}, chosen {_fmt(final['chosen'].kappa)}")
    return TuneResult.build(start=spec, chosen=best, candidates=tried, history=history, split=split,
                            final=final, shown_hashes=search.shown_hashes, stop=stop, provider=provider,
                            cost_usd=search.spent(), budget_usd=budget_usd,
                            settings={"rounds": rounds, "candidates": candidates, "fewshot": fewshot,
                                      "max_examples": max_examples, "seed": seed,
                                      "writer_temperature": writer_temperature,
                                      "validation_fraction": validation_fraction, "test_fraction": test_fraction,
                                      "bootstrap": bootstrap})


@dataclass
class _Writer:
    """How each round asks for revised prompts: ``candidates`` from the provider, plus one few-shot
    candidate with ``fewshot`` of the shown rows (0: none), at most ``max_examples`` rows shown."""

    candidates: int
    fewshot: int
    max_examples: int
    temperature: float
    max_tokens: int

    @property
    def per_round(self) -> int:
        return self.candidates + (1 if self.fewshot else 0)


class _Search:
    """What a tuning run measures with: the split, the provider (and its spend since the start), and the
    rows the validation and test parts hold, which no candidate prompt may quote."""

    def __init__(self, spec: MetricSpec, split: Any, provider: Provider, *, seed: int, bootstrap: int):
        self.spec, self.split, self.provider, self.seed, self.bootstrap = spec, split, provider, seed, bootstrap
        self.base_cost = provider.stats.cost_usd
        self.forbidden = [field_text(r.get(f)) for r in split.validation + split.test for f in judged_fields(spec)]
        self.sample = split.train[0] if split.train else None
        self.shown_hashes: set[str] = set()

    def spent(self) -> float:
        return self.provider.stats.cost_usd - self.base_cost

    def measure(self, metric: MetricSpec, rows: list[dict[str, Any]]) -> Agreement:
        return measure_prompt(metric, rows, self.provider, bootstrap=self.bootstrap, seed=self.seed)

    def score(self, cand: Candidate) -> None:
        """Measure a candidate on the search-train and validation parts."""
        assert cand.metric is not None
        cand.train = self.measure(cand.metric, self.split.train)
        cand.validation = self.measure(cand.metric, self.split.validation)

    def revise(self, best: Candidate, r: int, writer: _Writer) -> list[Candidate] | None:
        """Round ``r``'s new candidates: revisions of ``best``'s prompt from the search-train rows it gets
        wrong (None: it gets none wrong)."""
        seed, train = self.seed, self.split.train
        verdicts = best.train.verdicts()  # type: ignore[union-attr]
        wrong = sum(v != row.get("label") for row, v in zip(train, verdicts))
        if wrong == 0:
            return None
        shown = pick_disagreements(train, verdicts, writer.max_examples, seed=seed * 1000 + r)
        self.shown_hashes |= {row_hash(row) for row, _ in shown}
        stats = {"wrong": wrong, "n": len(train), "kappa": _fmt(best.train.kappa)}  # type: ignore[union-attr]
        ask = writer_prompt(self.spec, best.prompt, shown, stats)
        fresh: list[Candidate] = []
        for c in range(writer.candidates):
            try:
                text = self.provider.generate(ask, system=WRITER_SYSTEM, max_tokens=writer.max_tokens,
                                              temperature=writer.temperature, seed=seed * 1000 + r * 10 + c).text
            except ProviderError as exc:
                if exc.fatal:
                    raise
                fresh.append(Candidate(r, "provider", "", reason=f"the provider failed: {exc.found}"))
                continue
            prompt = extract_prompt(text)
            fresh.append(Candidate(r, "provider", prompt or "", answer=None if prompt else text[:2000], reason=None
                                   if prompt else "the answer has no prompt between <prompt> and </prompt>"))
        if writer.fewshot:
            examples = [row for row, _ in shown[:writer.fewshot]]
            fresh.append(Candidate(r, "fewshot", fewshot_prompt(self.spec, best.prompt, examples)))
        return fresh

    def vet(self, fresh: list[Candidate], tried: list[Candidate]) -> None:
        """Check each new candidate (a valid prompt, not one tried before), score the valid ones, and add
        them all to ``tried``."""
        for cand in fresh:
            if cand.reason is None:
                cand.metric, cand.reason = check_candidate(self.spec, cand.prompt, forbidden=self.forbidden,
                                                           sample=self.sample)
            if cand.reason is None and any(cand.prompt == t.prompt for t in tried):
                cand.metric, cand.reason = None, "the same prompt as an earlier candidate"
            if cand.reason is None:
                self.score(cand)
            tried.append(cand)

    def final_test(self, best: Candidate) -> dict[str, Agreement]:
        """The starting and the chosen prompt, measured once on the test part."""
        final = {"start": self.measure(self.spec, self.split.test)}
        final["chosen"] = (final["start"] if best.source == "start" else
                           self.measure(best.metric, self.split.test))  # type: ignore[arg-type]
        return final


def _validation_score(c: Candidate) -> float:
    k = c.validation.kappa if c.validation else None
    return -2.0 if k is None else k


def _fmt(x: float | None) -> str:
    return "undefined" if x is None else f"{x:.3f}"


def _round_entry(r: int, best: Candidate, tried: Sequence[Candidate], cost: float) -> dict[str, Any]:
    return {"round": r, "candidates": len(tried), "scored": sum(c.scored for c in tried),
            "rejected": sum(not c.scored for c in tried),
            "best_train": best.train.to_dict() if best.train else None,
            "best_validation": best.validation.to_dict() if best.validation else None,
            "best_source": best.source, "best_prompt_sha256": prompt_sha256(best.prompt), "cost_usd": round(cost, 6),
            "candidate_validation": [c.validation.to_dict() if c.validation else None for c in tried]}

"""Judge consistency: judge each row several times; rows whose verdict flips are ambiguous.

Two ways to sample: ``samples`` answers at ``temperature`` > 0 (one seed each), or, with
``paraphrases`` (prompt templates with the metric's placeholders), the metric's prompt and each
paraphrase at temperature 0. A row whose answers disagree gets a short question for the expert
("is X a violation when Y?"): the provider writes it; when its answer is not one short question, a
deterministic one is used. ``write_jsonl`` exports the ambiguous rows as canonical rows for review.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..data import row_hash
from ..errors import AssayError
from ..metrics import MetricSpec, judged_field, load_metric
from ..providers import JUDGE_SYSTEM, Provider, ProviderError, parse_label
from ._candidates import check_candidate, clip, label_word, row_text

QUESTION_SYSTEM = "You help domain experts settle hard labeling cases. Answer with one short question only."
ROW_FIELDS = ("id", "input", "output", "output_b", "context", "tools")


@dataclass
class AmbiguousRow:
    id: str
    row_hash: str
    human_label: str | None
    verdicts: list[str | None]
    counts: dict[str, int]
    majority_share: float  # the share of answers that give the most frequent verdict
    question: str
    question_source: str  # provider | fallback
    row: dict[str, Any] = field(repr=False, default_factory=dict)

    def to_row(self, metric: str, judge: str) -> dict[str, Any]:
        """A canonical row (label: the human label, if any) with the judge's answers in meta."""
        out = {k: self.row[k] for k in ROW_FIELDS if self.row.get(k) not in (None, "")}
        out["label"] = self.human_label
        meta = dict(self.row.get("meta") or {})
        meta["consistency"] = {"metric": metric, "judge": judge, "verdicts": self.verdicts, "counts": self.counts,
                               "majority_share": self.majority_share, "question": self.question,
                               "question_source": self.question_source}
        out["meta"] = meta
        return out


@dataclass
class ConsistencyResult:
    metric: str
    judge: str
    mode: str  # "temperature 0.7 x 5" or "3 prompts at temperature 0"
    rows: int
    ambiguous: list[AmbiguousRow]
    stable: int
    unanswered: int  # answers that named no label (kept in the verdicts as None)
    cost_usd: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for a in d["ambiguous"]:
            a.pop("row", None)
        return d

    def summary(self) -> dict[str, Any]:
        return {"metric": self.metric, "judge": self.judge, "mode": self.mode, "rows": self.rows,
                "ambiguous": len(self.ambiguous), "stable": self.stable, "unanswered": self.unanswered,
                "cost_usd": round(self.cost_usd, 6),
                "questions": [{"id": a.id, "counts": a.counts, "question": a.question} for a in self.ambiguous[:10]]}

    def write_jsonl(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as fh:
            for a in self.ambiguous:
                fh.write(json.dumps(a.to_row(self.metric, self.judge), ensure_ascii=False, default=str) + "\n")
        return path


def _verdict(provider: Provider, metric: MetricSpec, row: Mapping[str, Any], temperature: float,
             seed: int) -> str | None:
    try:
        comp = provider.generate(provider.judge_prompt(metric, row), system=JUDGE_SYSTEM, max_tokens=16,
                                 temperature=temperature, seed=seed)
    except ProviderError as exc:
        if exc.fatal:
            raise
        return None
    return parse_label(comp.text, metric)


def fallback_question(metric: MetricSpec, row: Mapping[str, Any], counts: Mapping[str, int]) -> str:
    """A question built from the row and the labels the judge wavered between (no provider call)."""
    top = [lab for lab, _ in Counter(counts).most_common() if lab != "none"][:2] or list(metric.labels[:2])
    first = clip(metric.label_descriptions.get(top[0], label_word(metric, top[0])), 80)
    other = label_word(metric, top[1]) if len(top) > 1 else "not"
    what = "response" if judged_field(metric) == "output" else "text"
    snippet = clip(str(row.get(judged_field(metric)) or ""), 120)
    return f"Is a {what} like \"{snippet}\" '{label_word(metric, top[0])}' ({first}) rather than '{other}'?"


def _question(provider: Provider, metric: MetricSpec, row: Mapping[str, Any], counts: Mapping[str, int],
              seed: int) -> tuple[str, str]:
    answers = ", ".join(f"{label_word(metric, lab) if lab != 'none' else '(no answer)'} {n} times"
                        for lab, n in counts.items())
    ask = (f"A judge for the metric '{metric.name}' ({metric.description or metric.output}) wavers on this row, "
           f"answering {answers}.\n\n<row>\n{row_text(metric, row)}\n</row>\n\nWrite ONE short question (at most "
           "30 words) a domain expert can answer to settle the label, of the form \"Is X a violation when Y?\", "
           "naming the specific feature of the row that makes it hard. Answer with the question only.")
    try:
        text = provider.generate(ask, system=QUESTION_SYSTEM, max_tokens=80, temperature=0.0, seed=seed).text
    except ProviderError as exc:
        if exc.fatal:
            raise
        text = ""
    line = " ".join(text.strip().split())
    if line.endswith("?") and line.count("?") == 1 and 3 <= len(line.split()) <= 40 and "{" not in line:
        return line, "provider"
    return fallback_question(metric, row, counts), "fallback"


def judge_consistency(metric: MetricSpec | str, rows: Sequence[Mapping[str, Any]], provider: Provider, *,
                      samples: int = 5, temperature: float = 0.7, paraphrases: Sequence[str] | None = None,
                      seed: int = 0, ask: bool = True, max_questions: int = 100) -> ConsistencyResult:
    """Judge every row several times and report the rows whose verdict flips (see the module doc).

    The provider writes the questions of the ``max_questions`` most ambiguous rows (``ask``); the others
    get the deterministic question."""
    spec = load_metric(metric)
    if not rows:
        raise AssayError("rows to judge", "none", "pass the metric's seed rows (or any rows of its shape)")
    if paraphrases:
        prompts = [spec]
        for i, text in enumerate(paraphrases):
            cand, why = check_candidate(spec, text)
            if cand is None:
                raise AssayError(f"paraphrases that keep the placeholders of '{spec.name}'",
                                 f"paraphrase {i + 1}: {why}", "keep each placeholder of the metric's prompt once")
            prompts.append(cand)
        plan = [(p, 0.0, seed) for p in prompts]
        mode = f"{len(prompts)} prompts at temperature 0"
    else:
        if samples < 2 or temperature <= 0:
            raise AssayError("at least 2 samples at a temperature above 0 (or paraphrased prompts)",
                             f"samples {samples}, temperature {temperature}",
                             "use e.g. samples 5 and temperature 0.7, or pass paraphrases")
        plan = [(spec, float(temperature), seed + i) for i in range(samples)]
        mode = f"temperature {temperature} x {samples}"
    before = provider.stats.cost_usd
    jobs = [(i, p, t, s) for i in range(len(rows)) for (p, t, s) in plan]
    answers = provider.map(lambda job: _verdict(provider, job[1], rows[job[0]], job[2], job[3]), jobs)
    per_row: list[list[str | None]] = [[] for _ in rows]
    for (i, *_), a in zip(jobs, answers):
        per_row[i].append(a if isinstance(a, str) else None)
    ambiguous = []
    for i, (row, verdicts) in enumerate(zip(rows, per_row)):
        counts = dict(Counter(v if v is not None else "none" for v in verdicts).most_common())
        if len(counts) < 2:
            continue
        ambiguous.append(AmbiguousRow(
            id=str(row.get("id", i)), row_hash=row_hash(row),
            human_label=row.get("label") if row.get("label") in spec.labels else None, verdicts=verdicts,
            counts=counts, majority_share=round(max(counts.values()) / len(verdicts), 4),
            question=fallback_question(spec, row, counts), question_source="fallback", row=dict(row)))
    ambiguous.sort(key=lambda a: (a.majority_share, a.id))
    for a in ambiguous[:max_questions] if ask else []:
        a.question, a.question_source = _question(provider, spec, a.row, a.counts, seed)
    return ConsistencyResult(metric=spec.name, judge=provider.id, mode=mode, rows=len(rows), ambiguous=ambiguous,
                             stable=len(rows) - len(ambiguous), unanswered=sum(v is None for vs in per_row for v in vs),
                             cost_usd=provider.stats.cost_usd - before)

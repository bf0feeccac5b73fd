"""Candidate judge prompts: what the provider is asked, how its answer is read and checked.

A candidate must keep the metric valid: the same placeholders as the starting prompt, the same number
of times each (``assay.metrics.render`` fills them), a MetricSpec that validates, and no quotation of a
validation or test row (few-shot examples come from the search-train rows the provider was shown).
A rejected candidate is recorded with its reason and never judged.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from typing import Any, Mapping, Sequence

from ..errors import AssayError
from ..metrics import MetricSpec, field_text, metric_from_dict, render
from ..metrics._spec import PLACEHOLDERS

WRITER_SYSTEM = ("You improve the prompts of LLM-as-judge evaluators so that their verdicts agree with human "
                 "reviewers. You answer with the full revised prompt between <prompt> and </prompt>.")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
_BLOCK = re.compile(r"<prompt>\s*\n?(.*?)\n?\s*</prompt>", re.S)
MAX_PROMPT_CHARS = 12_000
EXAMPLE_CHARS = 400  # each field of a row shown to the writer or quoted as an example, at most
MIN_QUOTE_CHARS = 24  # a validation/test row text this long found in a candidate is a quotation


def placeholder_counts(prompt: str) -> Counter:
    return Counter(_PLACEHOLDER.findall(prompt))


def clip(text: str, n: int = EXAMPLE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def row_text(metric: MetricSpec, row: Mapping[str, Any], n: int = EXAMPLE_CHARS) -> str:
    """The fields the prompt reads, one ``field: text`` line each (placeholder braces defused)."""
    lines = [f"{f}: {clip(field_text(row.get(f)), n)}" for f in metric.fields]
    return _PLACEHOLDER.sub(lambda m: "{ " + m.group(1) + " }", "\n".join(lines))


def label_word(metric: MetricSpec, label: str | None) -> str:
    return "(no answer)" if label is None else metric.verbalizer(label).strip()


def pick_disagreements(rows: Sequence[Mapping[str, Any]], verdicts: Sequence[str | None], k: int,
                       seed: int) -> list[tuple[dict[str, Any], str | None]]:
    """At most ``k`` rows where the judge and people disagree, spread over (human, judge) label pairs."""
    wrong = [(dict(r), v) for r, v in zip(rows, verdicts) if v != r.get("label")]
    rng = random.Random(seed)
    rng.shuffle(wrong)
    by_pair: dict[tuple[str, str], list[tuple[dict[str, Any], str | None]]] = {}
    for r, v in wrong:
        by_pair.setdefault((str(r.get("label")), str(v)), []).append((r, v))
    out: list[tuple[dict[str, Any], str | None]] = []
    while len(out) < k and any(by_pair.values()):
        for key in sorted(by_pair):
            if by_pair[key] and len(out) < k:
                out.append(by_pair[key].pop())
    return out


def writer_prompt(metric: MetricSpec, prompt: str, shown: Sequence[tuple[Mapping[str, Any], str | None]],
                  stats: Mapping[str, Any]) -> str:
    """What the provider is asked in one round: the current prompt and the rows it gets wrong."""
    kinds = ", ".join("{" + f + "}" for f in metric.fields)
    labels = "\n".join(f"- {label_word(metric, lab)}" + (f": {metric.label_descriptions[lab]}"
                                                          if lab in metric.label_descriptions else "")
                       for lab in metric.labels)
    examples = "\n\n".join(f"<row>\n{row_text(metric, r)}\nreviewers: {label_word(metric, r.get('label'))}\n"
                           f"judge: {label_word(metric, v)}\n</row>" for r, v in shown)
    return (
        f"A judge prompt for the metric '{metric.name}' ({metric.description or metric.output}) disagrees with "
        f"human reviewers on {stats.get('wrong')} of {stats.get('n')} rows (Cohen's kappa "
        f"{stats.get('kappa')}).\n\nAnswer words (the judge must answer with one of them):\n{labels}\n\n"
        f"The current prompt:\n<current>\n{prompt}\n</current>\n\n"
        f"Rows where the judge and the reviewers disagree:\n{examples}\n\n"
        "Write a revised prompt that makes the judge agree with the reviewers on rows like these without "
        "breaking the rows it gets right: sharpen the instructions and the definition of each label, and add "
        "a few short examples taken from the rows above if they help. Keep each of the placeholders "
        f"{kinds} exactly once, where the judged row goes; write no other text in curly braces. "
        "The prompt must end by asking for one of the answer words. "
        "Answer with the whole revised prompt between <prompt> and </prompt>."
    )


def extract_prompt(text: str) -> str | None:
    blocks = _BLOCK.findall(text or "")
    return blocks[-1].strip("\n") if blocks else None


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def check_candidate(metric: MetricSpec, prompt: str | None, *, forbidden: Sequence[str] = (),
                    sample: Mapping[str, Any] | None = None) -> tuple[MetricSpec | None, str | None]:
    """(the candidate metric, None) or (None, why it is rejected)."""
    if prompt is None or not prompt.strip():
        return None, "the answer has no prompt between <prompt> and </prompt>"
    if len(prompt) > MAX_PROMPT_CHARS:
        return None, f"the prompt has {len(prompt)} characters, more than {MAX_PROMPT_CHARS}"
    want, got = placeholder_counts(metric.prompt), placeholder_counts(prompt)
    if want != got:
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        what = (f"drops {{{missing[0]}}}" if missing else f"adds {{{extra[0]}}}, which the metric does not read"
                if extra else f"uses {dict(got)} where the metric uses {dict(want)}")
        return None, f"breaks the placeholders: it {what}"
    try:
        spec = metric_from_dict({**metric.to_dict(), "prompt": prompt}, f"the candidate prompt for {metric.name}")
        render(spec, sample or {f: "x" for f in PLACEHOLDERS})
    except AssayError as exc:
        return None, f"not a valid metric: {exc.found}"
    text = _norm(prompt)
    for quote in forbidden:
        q = _norm(quote)
        if len(q) >= MIN_QUOTE_CHARS and q in text:
            return None, "quotes a validation or test row (examples may come from the search-train rows only)"
    return spec, None


def fewshot_prompt(metric: MetricSpec, prompt: str, examples: Sequence[Mapping[str, Any]]) -> str:
    """``prompt`` with reviewer-labeled examples inserted before the paragraph holding the first placeholder."""
    block = "Examples labeled by reviewers:\n" + "\n".join(
        f"- {row_text(metric, r, 300).replace(chr(10), ' | ')} -> {label_word(metric, r.get('label'))}"
        for r in examples) + "\n\n"
    m = _PLACEHOLDER.search(prompt)
    at = prompt.rfind("\n\n", 0, m.start()) + 2 if m and prompt.rfind("\n\n", 0, m.start()) >= 0 else 0
    return prompt[:at] + block + prompt[at:]

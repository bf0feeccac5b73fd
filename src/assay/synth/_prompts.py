"""Generation prompts (from seed rows only) and parsing of the generator's JSON answer."""

from __future__ import annotations

import json
import re
from typing import Any, Mapping, Sequence

from ..metrics import MetricSpec, field_text

STRATEGIES = ("paraphrase", "swap", "typos", "tighten_loosen", "flip", "create")
EXPANSION = ("paraphrase", "swap", "typos", "tighten_loosen", "flip")

INSTRUCTIONS = {
    "paraphrase": "Rewrite each seed example in different words (new phrasing, sentence structure, register) "
                  "while keeping what makes its label {label}.",
    "swap": "Rewrite each seed example with different entities: swap names, places, organisations, numbers and "
            "dates for other plausible ones. Keep the label {label}.",
    "typos": "Rewrite each seed example the way a hurried user would type it: a few typos, abbreviations, odd "
             "casing or missing punctuation. Keep the label {label}.",
    "tighten_loosen": "Rewrite each seed example so that the part that decides its label is more subtle or more "
                      "explicit than in the seed (tighten or loosen it), while the correct label stays {label}. "
                      "Cases near the decision boundary are the most useful.",
    "flip": "The seed examples have a different label. Change each one as little as possible so that its correct "
            "label becomes {label}: hard cases that look like the seed but deserve the label {label}.",
    "create": "Write new, original examples whose correct label is {label}, in the same style, domain, length and "
              "format as the seed examples but about different specifics. Do not copy the seeds.",
}
MAX_SEED_CHARS = 1500


def seed_line(row: Mapping[str, Any], metric: MetricSpec) -> str:
    d: dict[str, Any] = {"id": row.get("id")}
    for f in metric.fields:
        v = row.get(f)
        if isinstance(v, str) and len(v) > MAX_SEED_CHARS:
            v = v[: MAX_SEED_CHARS * 2 // 3] + " [...] " + v[-MAX_SEED_CHARS // 3:]
        elif not isinstance(v, str) and v is not None and len(field_text(v)) > MAX_SEED_CHARS:
            v = field_text(v)[:MAX_SEED_CHARS] + " [...]"
        d[f] = v
    d["label"] = row.get("label")
    return json.dumps(d, ensure_ascii=False)


def build_prompt(metric: MetricSpec, strategy: str, label: str, seeds: Sequence[Mapping[str, Any]], n: int,
                 feedback: Sequence[str] = (), request: int = 0) -> str:
    """The generator prompt for one call: metric, label meanings, task, seeds, output format."""
    labels = "\n".join(f"- {lab}: {metric.label_descriptions.get(lab, '')}".rstrip(": ") for lab in metric.labels)
    fields = list(metric.fields)
    example = {"seed_id": "<id of the seed it comes from>" if strategy != "create" else None}
    example.update({f: f"<{f}>" for f in fields})
    example["label"] = label
    if strategy == "create":
        example.pop("seed_id")
    lines = [
        "You write training data for a small classifier that imitates an LLM judge.",
        "",
        f"Metric: {metric.name}" + (f": {metric.description}" if metric.description else ""),
        "The judge's prompt (placeholders in braces):",
        "<judge_prompt>",
        metric.prompt.strip(),
        "</judge_prompt>",
        "Labels:",
        labels,
        "",
        f"Strategy: {strategy}",
        f"Target label: {label}",
        "Task: " + INSTRUCTIONS[strategy].format(label=label),
        f"Fields: {', '.join(fields)}",
        "",
        "Seed examples (real labeled rows, one JSON object per line):",
        "<seeds>",
        *[seed_line(s, metric) for s in seeds],
        "</seeds>",
    ]
    if feedback:
        lines += ["", "A reviewer flagged problems in earlier generated rows; avoid them:"]
        lines += [f"- {f}" for f in feedback]
    lines += [
        "",
        f"Write {n} rows. Each must be realistic, different from the seeds and from each other, and correctly "
        f"labeled {label} by the judge prompt above. Keep fields that are not text (tools, message lists) in the "
        "same JSON structure as the seeds.",
        "Answer with JSON only, no commentary, in this shape:",
        json.dumps({"rows": [example]}, ensure_ascii=False),
        f"(request {request})",
    ]
    return "\n".join(lines)


def parse_rows(text: str) -> list[Any] | None:
    """The list of row objects in the answer, or None when it holds no JSON rows."""
    if not text:
        return None
    t = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", t, re.S)
    if fence:
        t = fence.group(1).strip()
    for candidate in _candidates(t):
        try:
            obj = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            for k in ("rows", "examples", "data", "items"):
                if isinstance(obj.get(k), list):
                    return obj[k]
            return [obj]
        if isinstance(obj, list):
            return obj
    objs = []
    for line in t.splitlines():
        line = line.strip().rstrip(",")
        if line.startswith("{") and line.endswith("}"):
            try:
                objs.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return objs or None


def _candidates(t: str) -> list[str]:
    out = [t]
    for o, c in (("{", "}"), ("[", "]")):
        i, j = t.find(o), t.rfind(c)
        if 0 <= i < j:
            out.append(t[i:j + 1])
    return out

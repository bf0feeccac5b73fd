"""Read a label out of a judge's answer, and per-label probabilities out of logprobs.

Accepted: the label or its verbalizer as the first word (any case, punctuation or markdown
around it), yes/no for boolean metrics, ``{"label": ...}`` JSON, "answer: X" / "the answer is X",
or a short answer that names exactly one label. Anything else (a refusal, two labels in a long
rationale) is unparseable and returns None: the caller counts it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ..metrics import MetricSpec

_WORD = re.compile(r"[a-z0-9_]+(?:[ \-_][a-z0-9_]+)?")
_STRIP = " \t\r\n*_`'\"“”‘’.,:;!?()[]{}<>#-=|"
_ANSWER = re.compile(r"\b(?:answer|label|verdict|classification|category|output|result)\b\s*(?:is|:|=)?\s*"
                     r"[*_`'\"“”:]*\s*([a-z_]+(?:[ \-_][a-z_]+)?)")
_SHORT_WORDS = 40
_AMBIGUOUS = "\x00ambiguous"


def label_words(metric: MetricSpec) -> dict[str, str]:
    """Every accepted answer word (lowercase) -> label."""
    words: dict[str, str] = {}
    for label in metric.labels:
        for w in (label, metric.verbalizers.get(label, label)):
            w = w.strip().lower()
            words[w] = label
            words[w.replace("_", " ")] = label
            words[w.replace("_", "-")] = label
    if tuple(metric.labels) == ("true", "false"):
        for w, lab in (("yes", "true"), ("no", "false"), ("y", "true"), ("n", "false"), ("1", "true"),
                       ("0", "false"), ("t", "true"), ("f", "false")):
            words.setdefault(w, lab)
    return words


def parse_label(text: str, metric: MetricSpec) -> str | None:
    """The label the answer gives, or None when it gives none (or several)."""
    if not text or not text.strip():
        return None
    words = label_words(metric)
    low = text.strip().lower()
    # JSON answers: {"label": "true"} / {"answer": "no", "reason": ...}
    if low.startswith("{") or low.startswith("```"):
        obj = _json_object(low)
        if isinstance(obj, dict):
            for k in ("label", "answer", "verdict", "category", "result", "output"):
                v = obj.get(k)
                if isinstance(v, bool):
                    v = "true" if v else "false"
                if v is not None and str(v).strip(_STRIP).lower() in words:
                    return words[str(v).strip(_STRIP).lower()]
    first = _first_phrase(low, words)
    if first == _AMBIGUOUS:
        return None
    if first is not None:
        return first
    m = _ANSWER.search(low)
    if m:
        cand = m.group(1)
        for w in (cand, cand.split()[0] if cand.split() else cand):
            if w in words:
                return words[w]
    # A short answer that names exactly one label (not yes/no: too common in prose).
    if len(low.split()) <= _SHORT_WORDS:
        found = {lab for w, lab in words.items() if len(w) > 3 or w in metric.labels
                 if re.search(rf"(?<![a-z0-9_]){re.escape(w)}(?![a-z0-9_])", low)}
        if len(found) == 1:
            return found.pop()
    return None


def _first_phrase(low: str, words: dict[str, str]) -> str | None:
    head = low.lstrip(_STRIP)
    tokens = re.split(r"[\s.,:;!?()\[\]{}<>\"'`*]+", head)
    tokens = [t for t in tokens if t]
    if not tokens:
        return None
    two = " ".join(tokens[:2]).strip(_STRIP)
    one = tokens[0].strip(_STRIP)
    for phrase, n in ((two, 2), (one, 1)):
        if phrase in words:
            # "true or false", "hate/offensive": the answer repeats the options, it does not choose.
            rest = tokens[n:n + 3]
            if rest and rest[0] in ("or", "and", "/") and any(
                    w in words and words[w] != words[phrase]
                    for w in (rest[1:2] + [" ".join(rest[1:3])] if len(rest) > 1 else [])):
                return _AMBIGUOUS
            return words[phrase]
    return None


def _json_object(text: str) -> Any:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        return json.loads(text[start:end + 1])
    except json.JSONDecodeError:
        return None


def label_probabilities(top_logprobs: list[dict[str, float]] | None, metric: MetricSpec,
                        max_positions: int = 8) -> dict[str, float] | None:
    """P(label) at the first answer position whose most likely token is a label word.

    An alternative token (stripped, lowercased) counts for a label when it is one of the
    label's words or a prefix (2+ characters) of exactly one label's words. Mass is
    normalised over the labels. Formatting positions ("**", '{"label": "') are skipped.
    """
    if not top_logprobs:
        return None
    words = label_words(metric)

    def owner(token: str) -> str | None:
        t = token.strip(_STRIP).lower()
        if not t:
            return None
        lab = words.get(t)
        if lab is None and len(t) >= 2:
            owners = {la for w, la in words.items() if w.startswith(t)}
            lab = owners.pop() if len(owners) == 1 else None
        return lab

    for position in top_logprobs[:max_positions]:
        if not position:
            continue
        best = max(position, key=position.get)  # type: ignore[arg-type]
        if owner(best) is None:
            continue
        mass = {lab: 0.0 for lab in metric.labels}
        for token, lp in position.items():
            lab = owner(token)
            if lab is not None:
                mass[lab] += math.exp(lp)
        total = sum(mass.values())
        return {lab: m / total for lab, m in mass.items()} if total > 0 else None
    return None

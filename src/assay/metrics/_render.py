"""Render a row into the judge prompt, the same way for training, scoring and monitoring.

Truncation policy (when a token budget is given): the field being judged is never cut
unless it alone exceeds the budget. The judged field is ``output`` for every shape that
has one and ``input`` for ``message``. Other fields (context, tools, the request) are cut
first, largest first, keeping their head (2/3) and tail (1/3) around a ``[...]`` marker.
With ``keep_end`` (the linear family's embedding of ``trace`` / ``session`` rows, see
:func:`keeps_end`), a judged field that alone exceeds the budget keeps its end instead: the
latest turns of a conversation or trajectory, where its outcome is.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Mapping

from ._spec import MetricSpec, InputShape, PLACEHOLDERS

_PLACEHOLDER = re.compile(r"\{(input|output|output_b|context|tools)\}")
MARK = " [...] "


def field_text(value: Any) -> str:
    """A field's value as prompt text: strings as they are, messages as 'role: content'."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m for m in value):
        return "\n".join(_message_line(m) for m in value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n\n".join(value)
    return json.dumps(value, ensure_ascii=False, indent=1, sort_keys=False)


def _message_line(m: Mapping[str, Any]) -> str:
    content = m.get("content")
    text = field_text(content) if content is not None else ""
    calls = m.get("tool_calls")
    if calls:
        text = (text + " " if text else "") + "[tool_calls] " + json.dumps(calls, ensure_ascii=False)
    return f"{m.get('role', '?')}: {text}"


def judged_field(metric: MetricSpec) -> str:
    return "input" if metric.shape == InputShape.message else "output"


def judged_fields(metric: MetricSpec) -> tuple[str, ...]:
    """The fields being judged: both responses for pairwise metrics, else :func:`judged_field`."""
    return ("output", "output_b") if metric.shape == InputShape.pairwise else (judged_field(metric),)


def swap_pair(row: Mapping[str, Any]) -> dict[str, Any]:
    """A pairwise row with responses A and B swapped (and its label a <-> b; tie stays)."""
    out = dict(row)
    out["output"], out["output_b"] = row.get("output_b"), row.get("output")
    if out.get("label") in ("a", "b"):
        out["label"] = {"a": "b", "b": "a"}[out["label"]]
    return out


def cut(text: str, keep: int, count: Callable[[str], int], head: Callable[[str, int], str],
        tail: Callable[[str, int], str], keep_end: bool = False) -> str:
    """Keep ``keep`` tokens of ``text``: 2/3 from the head and 1/3 from the tail (``keep_end``: all
    from the tail, after the marker)."""
    if count(text) <= keep:
        return text
    if keep <= 0:
        return MARK.strip()
    if keep_end:
        return MARK.lstrip() + tail(text, keep)
    h = max(1, (keep * 2) // 3)
    t = max(0, keep - h)
    return head(text, h) + MARK + (tail(text, t) if t else "")


def keeps_end(metric: MetricSpec) -> bool:
    """Whether the judged field is a conversation or trajectory (``trace``, ``session``), whose end
    (the latest turns, the outcome) is the part to keep when it alone exceeds a budget."""
    return metric.shape in (InputShape.trace, InputShape.session)


def render(
    metric: MetricSpec,
    row: Mapping[str, Any],
    budget: int | None = None,
    tokenizer: Any = None,
    keep_end: bool = False,
) -> str:
    """The metric's prompt filled with ``row``'s fields, fitted to ``budget`` tokens.

    ``tokenizer`` is a Hugging Face tokenizer; without one a token is one
    whitespace-separated word (a close enough proxy for a budget in tests). ``keep_end``: a
    judged field too long for the budget keeps its end (policy above).
    """
    values = {f: field_text(row.get(f)) for f in PLACEHOLDERS}
    if budget is not None:
        values = fit(metric, values, budget, tokenizer, keep_end)
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], metric.prompt)


def token_ops(tokenizer: Any = None):
    """(count, head, tail) functions for a tokenizer, or word-based ones without one."""
    if tokenizer is None:
        return (
            lambda s: len(s.split()),
            lambda s, n: " ".join(s.split()[:n]),
            lambda s, n: " ".join(s.split()[-n:]),
        )

    def ids(s: str) -> list[int]:
        return tokenizer(s, add_special_tokens=False)["input_ids"]

    return (
        lambda s: len(ids(s)),
        lambda s, n: tokenizer.decode(ids(s)[:n]),
        lambda s, n: tokenizer.decode(ids(s)[-n:]),
    )


def fit(metric: MetricSpec, values: dict[str, str], budget: int, tokenizer: Any = None,
        keep_end: bool = False) -> dict[str, str]:
    """Cut field values so the whole prompt fits in ``budget`` tokens (policy above)."""
    count, head, tail = token_ops(tokenizer)
    used = [f for f in metric.fields if values.get(f)]
    template_cost = count(_PLACEHOLDER.sub("", metric.prompt))
    sizes = {f: count(values[f]) for f in used}
    room = budget - template_cost
    if sum(sizes.values()) <= room:
        return values
    judged_set = judged_fields(metric)
    out = dict(values)
    others = sorted((f for f in used if f not in judged_set), key=lambda f: sizes[f], reverse=True)
    judged_size = sum(sizes.get(f, 0) for f in judged_set)
    room_for_others = max(0, room - judged_size)
    # Share the room for the other fields: small fields keep everything, big ones are cut.
    remaining = list(others)
    while remaining:
        share = room_for_others // len(remaining)
        small = [f for f in remaining if sizes[f] <= share]
        if not small:
            break
        for f in small:
            room_for_others -= sizes[f]
            remaining.remove(f)
    for f in remaining:
        out[f] = cut(values[f], room_for_others // len(remaining), count, head, tail)
    if judged_size > room:  # the judged field(s) alone are too long: each gets an equal share
        present = [f for f in judged_set if f in sizes]
        for f in present:
            out[f] = cut(values[f], max(room // max(1, len(present)), 1), count, head, tail, keep_end)
    return out

"""What one llm, retriever, tool or agent span says, as a small JSON-safe record kept on its ``Trace``.

``Trace.span_items`` holds one record per span a metric may target (``assay.metrics.SPAN_KINDS``);
``assay.traces.span_rows`` turns them into one metric row per matching span. The records are
plain dicts so a trace stored by the monitor (``trace_json``) keeps them.
"""

from __future__ import annotations

import json
from typing import Any

from ._spans import Span, content_text

TARGET_KINDS = ("llm", "retriever", "tool", "agent")  # assay.metrics.SPAN_KINDS; traces must not need metrics here


def _text(v: Any) -> str | None:
    if v is None or v == "":
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, default=str)
    return content_text(v) or None


def _last(msgs: list[dict[str, Any]], role: str) -> dict[str, Any] | None:
    return next((m for m in reversed(msgs) if m.get("role") == role), None)


def span_item(s: Span) -> dict[str, Any] | None:
    """The record of an llm / retriever / tool / agent span (None for other kinds): ids, kind, name, and
    its ``input``, ``output``, ``context``, ``tools`` and ``tool_calls``."""
    if s.kind not in TARGET_KINDS:
        return None
    inp: str | None = None
    out: Any = None
    context: Any = s.documents or None
    calls: list[dict[str, Any]] = []
    if s.kind in ("llm", "agent"):  # an agent span: its task (or last user turn) in, its final answer out
        user = _last(s.input_messages, "user")
        inp = user["content"] if user and user.get("content") else _text(s.input_value)
        for m in s.output_messages:
            calls += [c for c in m.get("tool_calls", []) if c not in calls]
        bot = _last(s.output_messages, "assistant")
        out = bot["content"] if bot and bot.get("content") else (
            json.dumps(calls, ensure_ascii=False, default=str) if calls else _text(s.output_value))
        system = _last(s.input_messages, "system")
        context = context or (system["content"] if system and system.get("content") else None)
    elif s.kind == "tool":
        call = s.tool_call or {}
        args = call.get("arguments")
        inp = _text(args) if args not in (None, {}, "") else _text(s.input_value)
        out = _text(call.get("result")) if call.get("result") is not None else _text(s.output_value)
        if call.get("name"):
            calls = [{k: v for k, v in call.items() if k != "result"}]
    else:  # retriever: the query in, the documents out
        inp = _text(s.input_value)
        out = list(s.documents) or _text(s.output_value)
    return {"span_id": s.span_id, "parent_id": s.parent_id, "kind": s.kind, "name": s.name, "start": s.start,
            "input": inp, "output": out, "context": context, "tools": list(s.tool_defs), "tool_calls": calls,
            "error": s.error}

"""The slice of a trace (or session) a metric reads, as a canonical row for ``assay.metrics.render``.

A metric with a ``target`` (``{span_kind: tool}``) reads one row per matching span instead
(:func:`span_rows`), each with its span id and trace id in ``meta``."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Iterable, Literal

from ..metrics import REQUIRED_FIELDS, InputShape, MetricSpec, field_text
from ._traces import Session, Trace, group_sessions

MessageFrom = Literal["input", "output"]


def _calls_text(calls: list[dict[str, Any]]) -> str:
    return json.dumps([{c["name"]: c.get("arguments", {})} for c in calls], ensure_ascii=False, default=str)


def _meta(t: Trace, **extra: Any) -> dict[str, Any]:
    meta = {k: v for k, v in t.meta.items()}
    meta.update({"trace_id": t.trace_id, "session_id": t.session_id, "source": t.source})
    if t.tool_calls:
        meta["tool_calls"] = t.tool_calls
    meta.update(extra)
    return meta


def trace_row(trace: Trace, metric: MetricSpec, *, message_from: MessageFrom = "input") -> tuple[dict | None, str | None]:
    """(row, None) when the trace has every field the metric reads, else (None, "missing_<field>")."""
    shape = metric.shape
    t = trace
    row: dict[str, Any] = {"id": t.trace_id}
    if shape == InputShape.message:
        row["input"] = t.input if message_from == "input" else t.output
    elif shape in (InputShape.input_output, InputShape.rag):
        row.update(input=t.input, output=t.output, context=t.context)
    elif shape == InputShape.tools:
        out = _calls_text(t.tool_calls) if t.tool_calls and t.source != "plain" else (
            t.output if t.output not in (None, "") else (_calls_text(t.tool_calls) if t.tool_calls else None))
        row.update(input=t.input, output=out, tools=t.tools or None)
    elif shape == InputShape.trace:
        out = t.output if t.source == "plain" and t.output else (t.messages or t.output)
        row.update(input=t.input, output=out, context=t.context or t.system, tools=t.tools or None)
    else:  # a session of one trace
        return session_row(Session(t.session_id or t.trace_id, [t]), metric)
    if metric.shape != InputShape.message:
        row.setdefault("context", t.context or t.system)
        row.setdefault("tools", t.tools or None)
    row = {k: v for k, v in row.items() if v not in (None, "", [], {})}
    missing = _missing(row, metric)
    if missing:
        return None, f"missing_{missing}"
    row["meta"] = _meta(t)
    if t.label is not None:
        row["label"] = t.label
    return row, None


def span_rows(trace: Trace, metric: MetricSpec, *, message_from: MessageFrom = "input"
              ) -> tuple[list[dict[str, Any]], Counter[str]]:
    """One row per span of the metric's target kind: the span's fields in the metric's shape.

    Row ids are ``TRACE_ID/SPAN_ID``; ``meta`` has ``trace_id``, ``span_id``, ``span_kind`` and
    ``span_name``. A trace without such a span counts once under ``no_<kind>_span``; a span
    lacking a field the metric reads counts under ``missing_<field>``."""
    if metric.target is None:
        raise ValueError(f"metric {metric.name} has no span target; use trace_row")
    kind = metric.target.span_kind
    rows: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    if trace.source == "plain" and not trace.span_items and trace.meta.get("span_id"):
        return _sliced_row(trace, metric, message_from)
    items = [x for x in trace.span_items if x.get("kind") == kind]
    if not items:
        skipped[f"no_{kind}_span"] += 1
    for item in items:
        row, why = _span_row(trace, item, metric, message_from)
        if row is None:
            skipped[why or "unknown"] += 1
        else:
            rows.append(row)
    return rows, skipped


def _sliced_row(t: Trace, metric: MetricSpec, message_from: MessageFrom
                ) -> tuple[list[dict[str, Any]], Counter[str]]:
    """A plain row that is already one span's slice (``meta.span_id``: a golden set exported from
    span verdicts): read as it is, keeping its trace and span ids."""
    kind = metric.target.span_kind if metric.target is not None else None
    if t.meta.get("span_kind") not in (None, kind):
        return [], Counter({f"no_{kind}_span": 1})
    row, why = trace_row(t, metric, message_from=message_from)
    if row is None:
        return [], Counter({why or "unknown": 1})
    row["meta"].update({k: t.meta[k] for k in ("trace_id", "span_id") if t.meta.get(k)})
    return [row], Counter()


def _span_row(t: Trace, item: dict[str, Any], metric: MetricSpec, message_from: MessageFrom
              ) -> tuple[dict | None, str | None]:
    row: dict[str, Any] = {"id": f"{t.trace_id}/{item['span_id']}"}
    calls = item.get("tool_calls") or []
    if metric.shape == InputShape.message:
        row["input"] = item.get("input") if message_from == "input" else item.get("output")
    elif metric.shape == InputShape.tools:
        # the request, the tool schemas and the call(s) this span made
        inp = t.input if item["kind"] == "tool" else item.get("input")
        row.update(input=inp or item.get("input"), output=_calls_text(calls) if calls else item.get("output"),
                   tools=t.tools or item.get("tools") or None)
    else:  # input_output, rag
        row.update(input=item.get("input"), output=item.get("output"))
    if metric.shape != InputShape.message:
        row.setdefault("context", item.get("context") or t.context or t.system)
        row.setdefault("tools", item.get("tools") or t.tools or None)
    row = {k: v for k, v in row.items() if v not in (None, "", [], {})}
    missing = _missing(row, metric)
    if missing:
        return None, f"missing_{missing}"
    meta = _meta(t, span_id=item["span_id"], span_kind=item["kind"], span_name=item.get("name") or "")
    meta.pop("tool_calls", None)
    if calls:
        meta["tool_calls"] = calls
    if item.get("error"):
        meta["span_error"] = True
    row["meta"] = meta
    return row, None


def session_row(session: Session, metric: MetricSpec) -> tuple[dict | None, str | None]:
    """A whole conversation: the first request as input, every turn's messages as output."""
    traces = session.traces
    turns: list[dict[str, Any]] = []
    for t in traces:
        if t.messages:
            turns += t.messages
        else:
            turns += [m for m in ({"role": "user", "content": t.input}, {"role": "assistant", "content": t.output})
                      if m["content"]]
    first, last = traces[0], traces[-1]
    out: Any = turns
    if len(traces) == 1 and first.source == "plain" and first.output and not first.messages:
        out = first.output
    row = {"id": session.session_id, "input": first.input, "output": out,
           "context": first.context or first.system, "tools": first.tools or None}
    row = {k: v for k, v in row.items() if v not in (None, "", [], {})}
    missing = _missing(row, metric)
    if missing:
        return None, f"missing_{missing}"
    row["meta"] = _meta(last, trace_ids=[t.trace_id for t in traces], turns=len(traces))
    labels = {t.label for t in traces if t.label is not None}
    if len(labels) == 1:
        row["label"] = labels.pop()
    return row, None


def _missing(row: dict[str, Any], metric: MetricSpec) -> str | None:
    needed = set(REQUIRED_FIELDS[metric.shape]) | set(metric.fields)
    for f in ("input", "output", "context", "tools"):
        if f in needed and not field_text(row.get(f)).strip():
            return f
    return None


def rows_for(traces: Iterable[Trace], metric: MetricSpec, *, message_from: MessageFrom = "input"
             ) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Rows for every trace (or session, for session metrics; or span, for span-targeted metrics) the
    metric fits; skips counted by reason."""
    rows: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    if metric.target is not None:
        for t in traces:
            got, why = span_rows(t, metric, message_from=message_from)
            rows += got
            skipped.update(why)
        return rows, skipped
    if metric.shape == InputShape.session:
        for s in group_sessions(traces):
            row, why = session_row(s, metric)
            if row is None:
                skipped[why or "unknown"] += 1
            else:
                rows.append(row)
        return rows, skipped
    for t in traces:
        row, why = trace_row(t, metric, message_from=message_from)
        if row is None:
            skipped[why or "unknown"] += 1
        else:
            rows.append(row)
    return rows, skipped

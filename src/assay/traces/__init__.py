"""Trace ingestion: read production trace exports and turn them into the rows a metric reads.

The stage between an application's telemetry and anything that scores it (``assay.monitor``,
``assay eval``, ``assay batch-score``, ``assay traces``):

- ``read_traces`` / ``TraceAssembler``: OpenTelemetry GenAI / OpenInference spans (OTLP JSON or flat
  exports), LangSmith(-like) run exports and plain JSONL traces, assembled into ``Trace``s and
  ``Session``s. Every item that cannot be used is counted per reason in ``Problems``; nothing is
  dropped silently. ``TraceAssembler.add_body`` decodes one received payload (an HTTP request body);
  ``follow_lines`` tails a growing file.
- ``span_from_record`` / ``Span``: one exported span normalized; ``tool_call`` / ``tool_defs``
  normalize tool calls and tool definitions from the usual shapes.
- ``trace_row`` / ``session_row`` / ``rows_for``: the slice of a trace (or session) a metric's input
  shape reads, as a canonical row for ``assay.metrics.render``; ``span_rows``: one row per span of
  the kind a span-targeted metric names (``target: {span_kind: tool}``), from ``Trace.span_items``.

Layering: this package reads ``assay.data``, ``assay.metrics`` and ``assay.errors`` only; it never
imports ``monitor``, ``registry``, ``server`` or ``cli`` (they import it; the whole order is in
docs/architecture.md, checked by tests/core/test_layering.py).
"""

from ._runs import is_run, spans_from_run
from ._slice import MessageFrom, rows_for, session_row, span_rows, trace_row
from ._spans import Span, SpanError, span_from_record, tool_call, tool_defs
from ._traces import (Ingest, Problems, Session, Trace, TraceAssembler, assemble, follow_lines, group_sessions,
                      iter_lines, plain_trace, read_traces)

__all__ = [
    "Ingest", "MessageFrom", "Problems", "Session", "Span", "SpanError", "Trace", "TraceAssembler", "assemble",
    "follow_lines", "group_sessions", "is_run", "iter_lines", "plain_trace", "read_traces", "rows_for",
    "session_row", "span_from_record", "span_rows", "spans_from_run", "tool_call", "tool_defs", "trace_row",
]

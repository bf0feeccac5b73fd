"""Production monitoring: ingest traces, gate, score with trained evaluators, route doubt to people.

- ``read_traces`` / ``TraceAssembler``: OpenTelemetry GenAI / OpenInference spans, LangSmith runs
  and plain JSONL traces, assembled into ``Trace``s and ``Session``s; problems counted per reason.
- ``trace_row`` / ``rows_for``: the slice a metric reads, as a canonical row for ``assay.metrics.render``.
- gates (``gate_from_dict``): regex, keyword, pii, length, json, tool_schema, required_tool.
- ``Eval``: evaluators + a dataset -> one report (pass rates, failures with trace ids, histograms).
- ``Monitor`` + ``Store`` + ``RouteConfig``: verdicts stored in SQLite and routed to review.
- ``review_label`` / ``export_golden``: human labels, exported as a golden set.
- ``drift``: verdict rate, score shift (PSI/KS) and reviewer agreement (kappa) per window.
- ``score_file``: batch scoring on the local engine or Ray Data.
"""

from ._checks import GateCheck, ModelCheck, Verdict, load_evaluator, make_check, make_checks
from ._drift import drift, parse_window
from ._engine import BatchResult, score_file, score_rows
from ._eval import Eval, load_dataset, smoke_subset
from ._gates import (GATE_TYPES, GateResult, JsonGate, KeywordGate, LengthGate, PIIGate, RegexGate,
                     RequiredToolGate, ToolSchemaGate, extract_calls, find_pii, gate_from_dict, gates_from_list)
from ._http import IngestServer
from ._pipeline import Monitor
from ._review import export as export_golden
from ._review import find_verdict, golden_rows
from ._review import label as review_label
from ._route import Route, RouteConfig, Router, audit_draw
from ._slice import rows_for, session_row, trace_row
from ._store import MIGRATIONS, Store, default_db
from ._traces import Ingest, Problems, Session, Trace, TraceAssembler, group_sessions, plain_trace, read_traces

__all__ = [
    "GATE_TYPES", "MIGRATIONS", "BatchResult", "Eval", "GateCheck", "GateResult", "Ingest", "IngestServer",
    "JsonGate", "KeywordGate", "LengthGate", "ModelCheck", "Monitor", "PIIGate", "Problems", "RegexGate",
    "RequiredToolGate", "Route", "RouteConfig", "Router", "Session", "Store", "ToolSchemaGate", "Trace",
    "TraceAssembler", "Verdict", "audit_draw", "default_db", "drift", "export_golden", "extract_calls", "find_pii",
    "find_verdict", "gate_from_dict", "gates_from_list", "golden_rows", "group_sessions", "load_dataset",
    "load_evaluator", "make_check", "make_checks", "parse_window", "plain_trace", "read_traces", "review_label",
    "rows_for", "score_file", "score_rows", "session_row", "smoke_subset", "trace_row",
]

"""Production monitoring: gate and score ingested traces with trained evaluators, route doubt to people.

Reading traces (spans, runs, JSONL) and turning them into metric rows is ``assay.traces``.

- ``IngestServer``: a ``Monitor`` behind an HTTP endpoint (OTLP/HTTP JSON, JSONL) on 127.0.0.1.
- gates (``gate_from_dict``): regex, keyword, pii, length, json, tool_schema, required_tool.
- ``Eval``: evaluators + a dataset -> one report (pass rates, failures with trace ids, histograms).
- ``Monitor`` + ``Store`` + ``RouteConfig``: verdicts stored (SQLite, or PostgreSQL by URL) and routed to review.
- ``Worker`` + ``TraceQueue``: several workers on one store, each queued trace scored once
  (``Monitor(..., queue=True)`` is the ingest side that only enqueues).
- ``retrain``: reviewed verdicts folded into a new run of the same registered metric.
- ``drift``: verdict rate, score shift (PSI/KS) and reviewer agreement (kappa) per window.
- ``score_file``: ``assay.batch``'s engine (local or Ray Data), also for registered metric names and
  monitor databases.

Review (people's labels of routed verdicts, consensus, agreement) is ``assay.review``; its names are
re-exported here as they always were: ``review_label`` / ``export_golden`` (human labels, exported as
a golden set), ``agreement_report`` (human-vs-human, judge-vs-human and student-vs-human agreement;
``Store.disagreements`` is the queue of verdicts whose reviewers tie).
"""

from ..batch import BatchResult
from ..review import JUDGE_PREFIX, agreement_report, consensus, find_verdict, golden_rows, krippendorff_alpha
from ..review import export as export_golden
from ..review import label as review_label
from ..review import pairwise_agreement, record_judge_labels
from ._batch import score_file, score_rows
from ._checks import GateCheck, ModelCheck, Verdict, load_evaluator, make_check, make_checks
from ._drift import drift, parse_window
from ._eval import Eval, load_dataset, smoke_subset
from ._gates import (GATE_TYPES, GateResult, JsonGate, KeywordGate, LengthGate, PIIGate, RegexGate,
                     RequiredToolGate, ToolSchemaGate, extract_calls, find_pii, gate_from_dict, gates_from_list)
from ._http import IngestServer
from ._pipeline import Monitor
from ._queue import TraceQueue
from ._retrain import retrain, reviewed_rows
from ._route import Route, RouteConfig, Router, audit_draw
from ._store import MIGRATIONS, Store, default_db
from ._suites import Suite, SuiteConfig, make_suites, suite_verdicts
from ._worker import Worker

# Deprecated re-exports: these moved to ``assay.traces``; kept here for one release so that
# ``from assay.monitor import read_traces`` still works. Import them from ``assay.traces``.
from ..traces import (Ingest, Problems, Session, Trace, TraceAssembler, group_sessions, plain_trace,
                      read_traces, rows_for, session_row, trace_row)

__all__ = [
    "GATE_TYPES", "JUDGE_PREFIX", "MIGRATIONS", "BatchResult", "Eval", "GateCheck", "GateResult", "Ingest",
    "IngestServer", "JsonGate", "KeywordGate", "LengthGate", "ModelCheck", "Monitor", "PIIGate", "Problems",
    "RegexGate", "RequiredToolGate", "Route", "RouteConfig", "Router", "Session", "Store", "ToolSchemaGate", "Trace",
    "TraceAssembler", "Verdict", "agreement_report", "audit_draw", "consensus", "default_db", "drift",
    "export_golden", "extract_calls", "find_pii", "find_verdict", "gate_from_dict", "gates_from_list", "golden_rows",
    "group_sessions", "krippendorff_alpha", "load_dataset", "load_evaluator", "make_check", "make_checks",
    "pairwise_agreement", "parse_window", "plain_trace", "read_traces", "record_judge_labels", "retrain", "review_label",
    "reviewed_rows", "rows_for", "score_file", "score_rows", "session_row", "smoke_subset", "trace_row"
]
__all__ += ["Suite", "SuiteConfig", "make_suites", "suite_verdicts"]  # suites of checks (_suites.py)
__all__ += ["TraceQueue", "Worker"]  # several workers on one store (_queue.py, _worker.py)

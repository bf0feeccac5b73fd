"""Span-level metrics in the monitor: one verdict per matching span, deduplicated per (trace, span,
metric); trace-level verdicts unchanged; review, labels and golden export of span verdicts; the
store migration from the schema before span verdicts (issue #12)."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from assay.cli import cli
from assay.errors import AssayError
from assay.metrics import MetricSpec, get_preset
from assay.monitor import Monitor, RouteConfig, Store, Verdict, export_golden, review_label
from assay.monitor._store import MIGRATIONS
from assay.review import find_verdict
from assay.testing import MockEvaluator
from assay.traces import read_traces, rows_for

from _spans_util import agent_trace_otlp  # the OTel agent trace: 1 llm span, 2 tool spans

TOOL_METRIC = MetricSpec(name="tool_result_error", shape="input_output", target={"span_kind": "tool"},
                         prompt="Call arguments: {input}\nResult: {output}\nIs the result an error?")


def traces(*tids):
    return read_traces([agent_trace_otlp(t) for t in tids]).traces


def monitor(tmp_path, *checks, audit_rate=0.0):
    return Monitor(list(checks), Store(tmp_path / "m.db"), RouteConfig(band=(0.3, 0.7), audit_rate=audit_rate))


def tool_evaluator():
    # in trace ag01 the weather span (tool1) is uncertain; every other span is a confident pass
    return MockEvaluator(TOOL_METRIC, proba=lambda row: 0.5 if row["id"] == "ag01/tool1" else 0.05)


def test_tool_metric_gives_one_verdict_per_tool_span(tmp_path):
    mon = monitor(tmp_path, tool_evaluator())
    out = mon.process(traces("ag01"))
    assert [(v["trace_id"], v["span_id"]) for v in out] == [("ag01", "tool1"), ("ag01", "tool2")]
    stored = mon.store.verdicts("tool_result_error")
    assert len(stored) == 2 and {v["trace_id"] for v in stored} == {"ag01"}
    assert sorted(v["span_id"] for v in stored) == ["tool1", "tool2"]
    by_span = {v["span_id"]: v for v in stored}
    assert by_span["tool1"]["route"] == "review" and by_span["tool1"]["route_reason"] == "uncertain"
    assert by_span["tool2"]["route"] == "recorded"
    assert by_span["tool2"]["row"]["output"] == "14:05" and by_span["tool2"]["row"]["meta"]["span_kind"] == "tool"
    assert mon.summary()["metrics"]["tool_result_error"]["scored"] == 2


def test_rescoring_is_idempotent(tmp_path):
    ev = tool_evaluator()
    mon = monitor(tmp_path, ev)
    mon.process(traces("ag01"))
    calls = ev.calls
    again = Monitor([ev], mon.store, RouteConfig(band=(0.3, 0.7), audit_rate=0.0))
    assert again.process(traces("ag01")) == []
    assert ev.calls == calls  # nothing sent to the evaluator again
    assert again.summary()["metrics"]["tool_result_error"]["already_scored"] == 2
    assert len(mon.store.verdicts("tool_result_error")) == 2
    assert mon.store.has_verdict("ag01", "tool_result_error", "tool1")
    assert not mon.store.has_verdict("ag01", "tool_result_error")  # no trace-level verdict of that metric
    assert mon.store.scored("tool_result_error", [("ag01", "tool2"), ("ag01", "llm1"), "ag01"]) == {("ag01", "tool2")}


def test_trace_level_metrics_beside_span_metrics_are_unchanged(tmp_path):
    trace_ev = MockEvaluator(get_preset("tool_call_correctness"), proba=lambda row: 0.1)
    mon = monitor(tmp_path, tool_evaluator(), trace_ev)
    mon.process(traces("ag01"))
    mon.process(traces("ag01"))  # a second pass adds nothing for either metric
    tv = mon.store.verdicts("tool_call_correctness")
    assert [(v["trace_id"], v["span_id"]) for v in tv] == [("ag01", None)]
    assert tv[0]["row"]["id"] == "ag01" and "span_id" not in tv[0]["row"]["meta"]
    assert mon.store.has_verdict("ag01", "tool_call_correctness")
    assert len(mon.store.verdicts("tool_result_error")) == 2
    # the unique index still holds a trace-level verdict to one per (trace, metric)
    dup = Verdict("ag01", "tool_call_correctness", "evaluator", "false", True, score=0.2, confidence=0.8)
    assert mon.store.add_verdict(dup, "recorded", "pass") is None


def test_audit_draws_per_span(tmp_path):
    mon = monitor(tmp_path, MockEvaluator(TOOL_METRIC, proba=lambda row: 0.01), audit_rate=0.5)
    mon.process(traces(*[f"t{i}" for i in range(12)]))
    per_trace = {}
    for v in mon.store.verdicts("tool_result_error"):
        per_trace.setdefault(v["trace_id"], set()).add(v["route_reason"])
    # the two spans of a trace are drawn on their own: some traces have one audited span, one not
    assert any(reasons == {"audit", "pass"} for reasons in per_trace.values())


def test_review_list_label_by_verdict_id_and_export(tmp_path):
    mon = monitor(tmp_path, tool_evaluator(), audit_rate=0.0)
    mon.process(traces("ag01", "ag02"))
    store = mon.store
    queue = store.review_queue("tool_result_error")
    assert [(v["trace_id"], v["span_id"]) for v in queue] == [("ag01", "tool1")]
    db = str(store.path)
    listed = CliRunner().invoke(cli, ["review", "list", "--db", db])
    assert listed.exit_code == 0, listed.output
    assert f"#{queue[0]['id']}" in listed.output and "ag01 span tool1" in listed.output
    as_json = json.loads(CliRunner().invoke(cli, ["review", "list", "--db", db, "--json"]).output)
    assert as_json[0]["span_id"] == "tool1"
    # a trace id alone is ambiguous between its span verdicts: the error names their ids
    with pytest.raises(AssayError, match="pass the verdict id") as e:
        find_verdict(store, "ag02", "tool_result_error")
    assert "span tool1" in str(e.value) and "span tool2" in str(e.value)
    res = CliRunner().invoke(cli, ["review", "label", f"#{queue[0]['id']}", "true", "--db", db, "--reviewer", "ana"])
    assert res.exit_code == 0, res.output
    assert "ag01 span tool1" in res.output
    ag02 = {v["span_id"]: v for v in store.verdicts("tool_result_error", trace_id="ag02")}
    out = review_label(store, ag02["tool2"]["id"], "false", reviewer="bo")
    assert out["span_id"] == "tool2" and out["trace_id"] == "ag02"
    reviewed = {(v["trace_id"], v["span_id"]): v["review_label"] for v in store.reviewed("tool_result_error")}
    assert reviewed == {("ag01", "tool1"): "true", ("ag02", "tool2"): "false"}
    res = export_golden(store, "tool_result_error", out=tmp_path / "golden.jsonl")
    rows = [json.loads(x) for x in (tmp_path / "golden.jsonl").read_text().splitlines()]
    assert res["rows"] == 2 and {r["label"] for r in rows} == {"true", "false"}
    assert {(r["meta"]["review"]["trace_id"], r["meta"]["review"]["span_id"]) for r in rows} == {
        ("ag01", "tool1"), ("ag02", "tool2")}
    assert {r["output"] for r in rows} == {'{"sky": "sunny", "celsius": 21}', "14:05"}
    # the golden set reads back as span rows of the same metric (assay eval / assay train on it)
    again, skipped = rows_for(read_traces(tmp_path / "golden.jsonl").traces, TOOL_METRIC)
    assert skipped == {} and {(r["meta"]["trace_id"], r["meta"]["span_id"], r["label"]) for r in again} == {
        ("ag01", "tool1", "true"), ("ag02", "tool2", "false")}


def test_migrating_a_store_from_before_span_verdicts_keeps_verdicts_and_reviews(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(str(path))  # a store left at the previous schema version, with verdicts and a review
    db.execute("PRAGMA foreign_keys=ON")
    from assay import _migrate

    _migrate.migrate(db, MIGRATIONS, table="_migrations", upto=2)
    db.execute("INSERT INTO verdicts (trace_id, metric, kind, label, passed, score, route, created_at)"
               " VALUES ('t1', 'pii', 'evaluator', 'true', 0, 0.55, 'review', 1.0),"
               " ('t2', 'pii', 'evaluator', 'false', 1, 0.1, 'recorded', 2.0)")
    db.execute("INSERT INTO reviews (verdict_id, label, created_at) VALUES (1, 'false', 3.0)")
    db.commit()
    db.close()
    store = Store(path)
    assert store.version() == len(MIGRATIONS) >= 3  # step 3 and every later one applied
    rows = store.verdicts("pii")
    assert [(v["id"], v["trace_id"], v["span_id"], v["score"]) for v in rows] == [(1, "t1", None, 0.55),
                                                                                 (2, "t2", None, 0.1)]
    assert [(v["id"], v["review_label"]) for v in store.reviewed("pii")] == [(1, "false")]
    assert store.db.execute("PRAGMA foreign_key_check").fetchall() == []
    # old verdicts still dedup per (trace, metric); new span verdicts beside them; ids keep counting
    assert store.add_verdict(Verdict("t1", "pii", "evaluator", "true", False), "recorded") is None
    vid = store.add_verdict(Verdict("t1", "pii", "evaluator", "true", False, span_id="s1"), "recorded")
    assert vid is not None and vid > 2 and store.has_verdict("t1", "pii", "s1") and store.has_verdict("t1", "pii")
    store.close()

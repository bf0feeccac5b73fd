"""Monitor pipeline: scoring, routing (band, severity, audit), file follow, HTTP ingest, review CLI, export."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from assay.cli import cli
from assay.data import load_rows
from assay.metrics import MetricSpec, get_preset
from assay.monitor import (IngestServer, Monitor, RouteConfig, Router, Store, Verdict, audit_draw, export_golden,
                           review_label)
from assay.testing import MockEvaluator


def plain(n, start=0, **extra):
    return [{"id": f"t{i}", "input": f"message number {i} from user{i}@example.com" if i % 3 == 0
             else f"message number {i}", "output": f"reply {i}", **extra} for i in range(start, start + n)]


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_router_rules():
    r = Router(RouteConfig(band=(0.3, 0.7), audit_rate=0.0))
    v = lambda **k: Verdict(**{"trace_id": "t", "metric": "m", "kind": "evaluator", "label": "false",  # noqa: E731
                               "passed": True, "score": 0.1, "confidence": 0.9, "severity": "medium", **k})
    assert r.route(v(score=0.5)).reason == "uncertain"
    assert r.route(v(score=0.3)).reason == "uncertain" and r.route(v(score=0.7)).reason == "uncertain"
    assert r.route(v(score=0.9, label="true", passed=False)).route == "recorded"  # medium severity fail
    assert r.route(v(score=0.9, label="true", passed=False, severity="high")).reason == "high_severity_fail"
    assert r.route(v()).route == "recorded"
    assert r.route(v(binary=False, score=0.5, confidence=0.5)).reason == "uncertain"  # categorical
    assert r.route(v(kind="gate", label="fail", passed=False, score=None, confidence=None,
                     severity="high")).reason == "gate_fail"
    assert Router(RouteConfig(audit_rate=1.0)).route(v()).reason == "audit"
    with pytest.raises(Exception, match="band"):
        RouteConfig(band=(0.8, 0.2))


def test_uncertain_means_close_to_the_evaluators_own_threshold():
    """Without a fixed band, doubt is measured around the calibrated threshold (issue 12): at 0.5 the
    default margin gives 0.3-0.7; a threshold of 0.15 moves the band down, not a fixed 0.3-0.7."""
    from assay.monitor._route import uncertainty_band

    lo, hi = uncertainty_band(0.5, 0.2)
    assert lo == pytest.approx(0.3) and hi == pytest.approx(0.7)
    lo, hi = uncertainty_band(0.15, 0.2)
    assert 0.05 < lo < 0.15 < hi < 0.3
    r = Router(RouteConfig(audit_rate=0.0))
    v = lambda **k: Verdict(**{"trace_id": "t", "metric": "m", "kind": "evaluator", "label": "false",  # noqa: E731
                               "passed": True, "confidence": 0.9, "severity": "medium", **k})
    assert r.route(v(score=0.2, threshold=0.15, label="true")).reason == "uncertain"  # just over its threshold
    assert r.route(v(score=0.5, threshold=0.15, label="true")).reason != "uncertain"  # a confident positive
    assert r.route(v(score=0.05, threshold=0.15)).reason != "uncertain"
    assert r.route(v(score=0.5, threshold=None)).reason == "uncertain"  # no threshold: 0.5
    fixed = Router(RouteConfig(band=(0.3, 0.7), audit_rate=0.0))
    assert fixed.route(v(score=0.2, threshold=0.15)).reason != "uncertain"  # a fixed band ignores it


def test_the_monitor_passes_the_evaluators_threshold_to_the_router(tmp_path):
    from assay.monitor import ModelCheck

    check = ModelCheck(MockEvaluator("pii", threshold=0.15, scores={"a": 0.2}))
    ((verdict,),) = check.run([{"id": "a", "input": "x"}])
    assert verdict.threshold == 0.15 and verdict.label == "true"
    assert Router(RouteConfig(audit_rate=0.0)).route(verdict).reason == "uncertain"


def test_audit_draw_is_deterministic_and_uniform():
    draws = [audit_draw(f"trace-{i}", "pii", 7) for i in range(4000)]
    assert draws == [audit_draw(f"trace-{i}", "pii", 7) for i in range(4000)]
    assert abs(sum(d < 0.05 for d in draws) / 4000 - 0.05) < 0.015
    assert draws != [audit_draw(f"trace-{i}", "pii", 8) for i in range(4000)]


def test_routes_match_band_and_audit_rate(tmp_path):
    """Uniform fake scores: the band holds ~40% of traces, ~5% of confident passes are audited."""
    n = 1500
    path = write(tmp_path / "traces.jsonl", plain(n))
    store = Store(tmp_path / "m.db")
    ev = MockEvaluator(get_preset("pii").model_copy(update={"severity": "medium"}))
    mon = Monitor([ev], store, RouteConfig(band=(0.3, 0.7), audit_rate=0.05, seed=1), batch_size=64)
    s = mon.run_file(path)
    m = s["metrics"]["pii"]
    assert s["traces"] == n and m["scored"] == n
    verdicts = store.verdicts("pii")
    scores = [v["score"] for v in verdicts]
    in_band = sum(0.3 <= x <= 0.7 for x in scores)
    assert m["routes"]["review:uncertain"] == in_band
    assert abs(in_band / n - 0.4) < 0.05
    passes = [v for v in verdicts if v["passed"] and not 0.3 <= v["score"] <= 0.7]
    audited = sum(v["route_reason"] == "audit" for v in verdicts)
    assert audited == sum(audit_draw(v["trace_id"], "pii", 1) < 0.05 for v in passes)
    assert abs(audited / len(passes) - 0.05) < 0.03
    assert sum(m["routes"].values()) == n
    # a second run over the same file stores nothing twice
    s2 = Monitor([ev], store, RouteConfig(band=(0.3, 0.7), audit_rate=0.05, seed=1)).run_file(path)
    assert s2["metrics"]["pii"]["already_scored"] == n and s2["metrics"]["pii"]["scored"] == 0
    assert len(store.verdicts("pii")) == n
    store.close()


def test_high_severity_failures_go_to_review(tmp_path):
    ev = MockEvaluator("pii", scores={f"t{i}": (0.95 if i % 2 else 0.02) for i in range(20)})  # pii: severity high
    store = Store(tmp_path / "m.db")
    s = Monitor([ev], store, RouteConfig(audit_rate=0.0)).run_file(write(tmp_path / "t.jsonl", plain(20)))
    assert s["metrics"]["pii"]["routes"] == {"review:high_severity_fail": 10, "recorded": 10}
    store.close()


def test_gates_verdicts_and_ingest_problems_are_stored(tmp_path):
    path = tmp_path / "t.jsonl"
    write(path, plain(9))
    with path.open("a") as fh:
        fh.write("{oops\n" + json.dumps({"what": 1}) + "\n")
    store = Store(tmp_path / "m.db")
    ev = MockEvaluator("pii")
    mon = Monitor([ev, {"gate": {"type": "regex", "pattern": "number 4", "field": "input", "severity": "high"}}],
                  store, RouteConfig(audit_rate=0.0))
    s = mon.run_file(path)
    assert s["ingest"]["problems"] == {"invalid_json": 1, "unknown_shape": 1}
    assert store.problem_counts() == {"invalid_json": 1, "unknown_shape": 1}
    assert s["metrics"]["gate:regex"]["routes"] == {"review:gate_fail": 1, "recorded": 8}
    assert s["metrics"]["pii"]["scored"] == 9
    store.close()


def test_model_check_with_attached_gate(tmp_path):
    from assay.monitor import ModelCheck

    ev = MockEvaluator("pii", scores={f"t{i}": 0.01 for i in range(9)})
    store = Store(tmp_path / "m.db")
    check = ModelCheck(ev, gates=[{"type": "pii", "decides": True}])
    s = Monitor([check], store, RouteConfig(audit_rate=0.0)).run_file(write(tmp_path / "t.jsonl", plain(9)))
    # t0, t3, t6 carry an email: the gate decides "true" (PII) without the model
    assert s["metrics"]["pii"]["failed"] == 3 and s["metrics"]["pii/pii"]["failed"] == 3
    decided = [v for v in store.verdicts("pii") if (v["details"] or {}).get("decided_by")]
    assert sorted(v["trace_id"] for v in decided) == ["t0", "t3", "t6"]
    store.close()


def test_follow_mode_picks_up_appended_traces(tmp_path):
    path = write(tmp_path / "live.jsonl", plain(5))
    store = Store(tmp_path / "m.db")
    mon = Monitor([MockEvaluator("pii")], store, RouteConfig(audit_rate=0.0), batch_size=4)

    def writer():
        time.sleep(0.4)
        with path.open("a") as fh:
            for r in plain(7, start=5):
                fh.write(json.dumps(r) + "\n")
                fh.flush()
        with path.open("a") as fh:  # a trace split across two writes
            fh.write('{"id": "late", "input": "written ')
            fh.flush()
            time.sleep(0.2)
            fh.write('in two parts"}\n')

    t = threading.Thread(target=writer)
    t.start()
    s = mon.run_file(path, follow=True, poll=0.05, settle=0.0, idle_timeout=1.5)
    t.join()
    assert s["traces"] == 13 and s["ingest"]["problems"] == {}
    assert {v["trace_id"] for v in store.verdicts("pii")} >= {"t11", "late"}
    store.close()


def test_http_ingest_stops_after_max_traces(tmp_path):
    """`assay monitor --http --max-traces 5` scores 5 traces and returns (issue 12: it kept running)."""
    import threading

    store = Store(tmp_path / "m.db")
    mon = Monitor([MockEvaluator("pii")], store, RouteConfig(audit_rate=0.0))
    srv = IngestServer(mon, port=0, settle=0.0, max_traces=5)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (srv.serve_forever(), done.set()), daemon=True)
    thread.start()
    req = urllib.request.Request(srv.url + "/v1/traces", data=json.dumps(plain(3)).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert not json.loads(resp.read())["stopping"]
    req = urllib.request.Request(srv.url + "/v1/traces", data=json.dumps(plain(4, start=3)).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        out = json.loads(resp.read())
    assert out["stopping"] and len(out["verdicts"]) == 2
    assert done.wait(10), "the ingest server kept running after --max-traces"
    assert mon.summary()["traces"] == 5
    store.close()


def test_http_ingest_endpoint(tmp_path):
    store = Store(tmp_path / "m.db")
    mon = Monitor([MockEvaluator("pii")], store, RouteConfig(audit_rate=0.0))
    srv = IngestServer(mon, port=0, settle=0.0).start()
    assert srv.url.startswith("http://127.0.0.1:")

    def post(body, ctype="application/json"):
        req = urllib.request.Request(srv.url + "/v1/traces", data=body.encode(), headers={"Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    try:
        code, out = post(json.dumps(plain(3)))
        assert code == 200 and len(out["verdicts"]) == 3 and out["verdicts"][0]["trace_id"] == "t0"
        code, out = post("\n".join(json.dumps(r) for r in plain(2, start=3)) + "\n{bad", "application/x-ndjson")
        assert code == 200 and len(out["verdicts"]) == 2 and out["problems"] == {"invalid_json": 1}
        otlp = {"resourceSpans": [{"scopeSpans": [{"spans": [
            {"traceId": "otel-1", "spanId": "s1", "attributes": [
                {"key": "input.value", "value": {"stringValue": "my ip is 10.1.2.3"}},
                {"key": "output.value", "value": {"stringValue": "noted"}}]}]}]}]}
        code, out = post(json.dumps(otlp))
        assert code == 200 and [v["trace_id"] for v in out["verdicts"]] == ["otel-1"]
        code, out = post("x", "application/x-protobuf")  # protobuf is decoded now (issue 25): this one is bad
        assert code == 400 and out["error"]["code"] == "invalid_input" and "protobuf" in out["error"]["expected"]
        with urllib.request.urlopen(srv.url + "/health", timeout=10) as resp:
            assert json.loads(resp.read())["ok"] is True
    finally:
        summary = srv.stop()
    assert summary["traces"] == 6 and summary["metrics"]["pii"]["scored"] == 6
    assert len(store.verdicts("pii")) == 6
    store.close()


def test_session_metric_rescored_as_the_session_grows(tmp_path):
    metric = MetricSpec(name="chat_pii", shape="session", severity="low", prompt="Conversation:\n{output}\nPII?")
    store = Store(tmp_path / "m.db")
    mon = Monitor([MockEvaluator(metric)], store, RouteConfig(audit_rate=0.0))
    from assay.traces import read_traces

    mon.process(read_traces([{"id": "a1", "session_id": "S", "timestamp": 1, "input": "hi", "output": "hello"}]).traces)
    mon.process(read_traces([{"id": "a2", "session_id": "S", "timestamp": 2, "input": "mail?",
                              "output": "x@y.io"}]).traces)
    vs = store.verdicts("chat_pii")
    assert [v["trace_id"] for v in vs] == ["a1", "a2"]
    assert vs[1]["row"]["meta"]["trace_ids"] == ["a1", "a2"] and vs[1]["row"]["id"] == "S"
    assert "hello" in json.dumps(vs[1]["row"]["output"]) and "x@y.io" in json.dumps(vs[1]["row"]["output"])
    store.close()


def _reviewable_db(tmp_path):
    store = Store(tmp_path / "m.db")
    ev = MockEvaluator("pii")
    Monitor([ev], store, RouteConfig(band=(0.3, 0.7), audit_rate=0.2)).run_file(write(tmp_path / "t.jsonl", plain(60)))
    return store


def test_review_cli_label_and_export(tmp_path):
    store = _reviewable_db(tmp_path)
    db = str(store.path)
    pending = store.review_queue(limit=None)
    store.close()
    run = CliRunner().invoke
    r = run(cli, ["review", "list", "--db", db, "--json", "--limit", "500"])
    assert r.exit_code == 0
    items = json.loads(r.output)
    assert len(items) == len(pending) > 5 and {i["why"] for i in items} <= {"uncertain", "audit",
                                                                               "high_severity_fail"}
    for i, item in enumerate(items):
        truth = "true" if "@" in item["row"]["input"] else "false"
        ref = str(item["id"]) if i % 2 else item["trace_id"]
        r = run(cli, ["review", "label", ref, "yes" if truth == "true" else "no", "--db", db, "--reviewer", "qa"])
        assert r.exit_code == 0, r.output
    r = run(cli, ["review", "list", "--db", db])
    assert r.exit_code == 0 and "empty" in r.output
    r = run(cli, ["review", "label", str(items[0]["id"]), "maybe", "--db", db])
    assert r.exit_code == 2 and "among ['true', 'false']" in r.output
    out = tmp_path / "golden.jsonl"
    r = run(cli, ["review", "export", "--db", db, "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["rows"] == len(items)
    v = load_rows(out, get_preset("pii"))  # what `assay train` reads for data.test_set / train_set
    assert len(v.rows) == len(items) and set(v.label_counts) == {"true", "false"}
    assert all(row["meta"]["review"]["reviewer"] == "qa" for row in v.rows)
    # appending to a training file skips rows already there
    train = write(tmp_path / "train.jsonl", [{"id": "x", "input": "an old row", "label": "false"}])
    r = run(cli, ["review", "export", "--db", db, "--append", str(train), "--json"])
    assert json.loads(r.output)["append"]["added"] == len(items)
    r = run(cli, ["review", "export", "--db", db, "--append", str(train), "--json"])
    assert json.loads(r.output)["append"] == {"path": str(train), "added": 0, "already_present": len(items),
                                             "conflicting_labels_skipped": 0}
    assert len(load_rows(train, get_preset("pii")).rows) == len(items) + 1


def test_review_errors(tmp_path):
    store = _reviewable_db(tmp_path)
    with pytest.raises(Exception, match="verdict id or trace id"):
        review_label(store, "nope", "true")
    with pytest.raises(Exception, match="no reviewed metrics|--out FILE"):
        export_golden(store, out=None)
    store.close()
    r = CliRunner().invoke(cli, ["review", "list", "--db", str(tmp_path / "missing.db")])
    assert r.exit_code == 2 and "assay monitor" in r.output


def test_an_all_digit_trace_id_never_labels_another_trace(tmp_path):
    """Trace ids "1".."6" scored in reverse: bare "2" is both trace 2 and verdict #2 of another trace, so it
    is refused; #2 and trace:2 say which one is meant (issue 12: a label landed on the wrong trace)."""
    store = Store(tmp_path / "m.db")
    rows = [{"id": str(i), "input": f"message {i}", "output": "ok"} for i in range(6, 0, -1)]
    Monitor([MockEvaluator("pii")], store, RouteConfig(audit_rate=1.0)).run_file(write(tmp_path / "t.jsonl", rows))
    v2 = store.verdict(2)
    assert v2["trace_id"] != "2"
    with pytest.raises(Exception, match="both trace 2 and verdict #2") as exc:
        review_label(store, "2", "true")
    assert exc.value.code == "ambiguous"
    assert store.review_queue(pending=False, limit=None) and not any(
        v["review_label"] for v in store.review_queue(pending=False, limit=None))  # nothing was written
    assert review_label(store, "#2", "true")["trace_id"] == v2["trace_id"]
    assert review_label(store, "trace:2", "false")["trace_id"] == "2"
    with pytest.raises(Exception, match="no verdict #99"):
        review_label(store, "#99", "true")
    store.close()
    r = CliRunner().invoke(cli, ["review", "label", "3", "true", "--db", str(tmp_path / "m.db")])
    assert r.exit_code == 2 and "#3" in r.output and "trace:3" in r.output


def test_cli_monitor_with_gate_only(tmp_path):
    path = write(tmp_path / "t.jsonl", plain(6))
    db = tmp_path / "m.db"
    r = CliRunner().invoke(cli, ["monitor", "--gate", "{type: pii, field: input, severity: high}", "--source",
                                 str(path), "--db", str(db), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["traces"] == 6 and s["metrics"]["gate:pii"]["routes"] == {"review:gate_fail": 2, "recorded": 4}
    r = CliRunner().invoke(cli, ["monitor", "--gate", "{type: pii}", "--db", str(db)])
    assert r.exit_code == 2 and "--source FILE" in r.output
    r = CliRunner().invoke(cli, ["monitor", "--gate", "{type: pii}", "--source", str(path), "--band", "0.9,0.1"])
    assert r.exit_code == 2 and "band" in r.output

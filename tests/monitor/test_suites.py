"""Suites of checks: n-of-m and weighted per-trace scores listing the failed checks, stored by the monitor,
reported and gated by ``Eval`` / ``assay eval``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from assay.cli import cli
from assay.errors import AssayError
from assay.monitor import Eval, Monitor, RouteConfig, Store
from assay.monitor._suites import Suite, SuiteConfig, make_suites, suite_verdicts
from assay.testing import MockEvaluator

# P(positive) per trace for three boolean presets whose "true" is the failing label (threshold 0.5).
TOX = {"t1": 0.1, "t2": 0.1, "t3": 0.9, "t4": 0.2}
PII = {"t1": 0.1, "t2": 0.8, "t3": 0.2, "t4": 0.9}
INJ = {"t1": 0.1, "t2": 0.3, "t3": 0.1, "t4": 0.7}
ROWS = [{"id": t, "input": f"message {t}", "output": f"reply {t}"} for t in ("t1", "t2", "t3", "t4")]
N_OF_M = {"name": "n_of_m", "checks": ["toxicity", "pii", "prompt_injection"], "min_passed": 2}
WEIGHTED = {"name": "weighted", "checks": [{"check": "toxicity", "weight": 3}, "pii", "prompt_injection"],
            "min_score": 0.7}
ALL = {"name": "all_pass", "checks": ["toxicity", "pii"]}


def _evaluators():
    return [MockEvaluator("toxicity", scores=TOX), MockEvaluator("pii", scores=PII),
            MockEvaluator("prompt_injection", scores=INJ)]


def test_n_of_m_and_weighted_scores_list_the_failed_checks():
    rep = Eval(_evaluators(), ROWS, suites=[N_OF_M, WEIGHTED, ALL]).run()
    m = rep["metrics"]
    # t1 passes all; t2 fails pii; t3 fails toxicity; t4 fails pii and prompt_injection
    n = m["n_of_m"]
    assert n["kind"] == "suite" and n["scored"] == 4 and n["failed"] == 1 and n["pass_rate"] == 0.75
    assert n["failures"] == [{"trace_id": "t4", "label": "fail", "score": pytest.approx(1 / 3, abs=1e-6),
                              "confidence": None, "reason": "1 of 3 checks passed; failed: pii, prompt_injection",
                              "failed_checks": ["pii", "prompt_injection"]}]
    assert n["check_failures"] == {"toxicity": 1, "pii": 2, "prompt_injection": 1}
    w = m["weighted"]  # weights 3/1/1: t2 scores 4/5 (pass), t3 2/5 and t4 3/5 (fail at min_score 0.7)
    assert w["failed"] == 2 and {f["trace_id"]: f["score"] for f in w["failures"]} == {"t3": 0.4, "t4": 0.6}
    assert {f["trace_id"]: f["failed_checks"] for f in w["failures"]} == {"t3": ["toxicity"],
                                                                         "t4": ["pii", "prompt_injection"]}
    assert w["mean_score"] == pytest.approx((1 + 0.8 + 0.4 + 0.6) / 4)
    a = m["all_pass"]  # no rule: every check must pass
    assert a["failed"] == 3 and sorted(f["trace_id"] for f in a["failures"]) == ["t2", "t3", "t4"]
    assert {c["name"]: c["kind"] for c in rep["checks"]}["n_of_m"] == "suite"
    assert m["toxicity"]["failed"] == 1  # the members' own blocks are unchanged


def test_missing_members_are_left_out_and_span_verdicts_all_count():
    s = Suite(SuiteConfig(**N_OF_M))
    v = s.combine("t9", {"toxicity": True})  # pii and prompt_injection did not judge this trace
    assert v.passed and v.details["checks"] == 1 and v.details["missing"] == ["pii", "prompt_injection"]
    v = s.combine("t9", {"toxicity": True, "pii": False})  # min_passed 2 capped at the 2 members that judged
    assert not v.passed and v.details["failed_checks"] == ["pii"] and v.score == 0.5
    assert s.combine("t9", {"other": False}) is None
    from assay.monitor import Verdict

    spans = [Verdict("t1", "toxicity", "evaluator", "false", True, span_id="s1"),
             Verdict("t1", "toxicity", "evaluator", "true", False, span_id="s2"),  # one failing span fails the check
             Verdict("t1", "pii", "evaluator", "false", True), Verdict("t1", "prompt_injection", "gate", "fail", False)]
    (v,) = suite_verdicts([s], spans)
    assert v.trace_id == "t1" and v.details["failed_checks"] == ["toxicity", "prompt_injection"] and not v.passed


def test_bad_suites_are_one_clear_error():
    checks = [MockEvaluator("toxicity"), MockEvaluator("pii")]
    from assay.monitor import make_checks

    checks = make_checks(checks)
    with pytest.raises(AssayError, match="among the run's checks"):
        make_suites([{"name": "s", "checks": ["toxicity", "nope"]}], checks)
    with pytest.raises(AssayError, match="at least two checks"):
        make_suites([{"name": "s", "checks": ["toxicity"]}], checks)
    with pytest.raises(AssayError, match="min_passed 3 is more than the 2 checks"):
        make_suites([{"name": "s", "checks": ["toxicity", "pii"], "min_passed": 3}], checks)
    with pytest.raises(AssayError, match="unknown key"):
        make_suites([{"name": "s", "checks": ["toxicity", "pii"], "min_pass": 1}], checks)
    with pytest.raises(AssayError, match="used twice"):
        make_suites([{"name": "pii", "checks": ["toxicity", "pii"]}], checks)


def test_monitor_stores_suite_verdicts_and_reads_members_scored_earlier(tmp_path):
    src = tmp_path / "traces.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    store = Store(tmp_path / "monitor.db")
    route = RouteConfig(band=(0.45, 0.55), audit_rate=0.0)
    # first run: toxicity and pii only (no suite)
    Monitor([MockEvaluator("toxicity", scores=TOX), MockEvaluator("pii", scores=PII)], store, route).run_file(src)
    # second run adds prompt_injection and the suite: toxicity and pii are not rescored, their stored verdicts count
    mon = Monitor(_evaluators(), store, route, suites=[N_OF_M])
    summary = mon.run_file(src)
    assert summary["metrics"]["toxicity"]["already_scored"] == 4
    assert summary["metrics"]["n_of_m"]["scored"] == 4 and summary["metrics"]["n_of_m"]["failed"] == 1
    stored = {v["trace_id"]: v for v in store.verdicts("n_of_m")}
    assert set(stored) == {"t1", "t2", "t3", "t4"} and {v["kind"] for v in stored.values()} == {"suite"}
    assert stored["t4"]["label"] == "fail" and not stored["t4"]["passed"]
    assert stored["t4"]["details"]["failed_checks"] == ["pii", "prompt_injection"]
    assert stored["t2"]["passed"] and stored["t2"]["details"]["failed_checks"] == ["pii"]
    assert stored["t1"]["score"] == 1.0 and stored["t1"]["route"] == "recorded"
    assert store.checks()["n_of_m"]["kind"] == "suite"
    # a third run scores nothing new and stores no second suite verdict
    Monitor(_evaluators(), store, route, suites=[N_OF_M]).run_file(src)
    assert len(store.verdicts("n_of_m")) == 4
    store.close()


def test_cli_eval_gates_on_a_suite_pass_rate(tmp_path):
    rows = [{"id": "a", "input": "hi", "output": "short answer"},
            {"id": "b", "input": "hi", "output": "mail me at a@b.co"},  # pii
            {"id": "c", "input": "hi", "output": "a rather long answer that goes on and on"},  # too long
            {"id": "d", "input": "hi", "output": "a@b.co and then a very long tail of words here"}]  # both
    (tmp_path / "golden.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("dataset: golden.jsonl\nevaluators:\n"
                   "  - gate: {type: pii, field: output, name: no_pii}\n"
                   "  - gate: {type: length, field: output, max_chars: 30, name: short}\n"
                   "  - gate: {type: keyword, field: output, keywords: [forbidden], name: clean}\n"
                   "suites:\n  - {name: reply_ok, checks: [no_pii, short, clean], min_passed: 3}\n")
    r = CliRunner().invoke(cli, ["eval", str(cfg), "--json", "--fail-under", "reply_ok.pass_rate=0.5"])
    assert r.exit_code == 1, r.output  # only a passes all three: 0.25 < 0.5
    rep = json.loads(r.output)
    assert rep["metrics"]["reply_ok"]["pass_rate"] == 0.25
    assert rep["gate"]["below"] == [{"metric": "reply_ok", "figure": "pass_rate", "value": 0.25, "bar": 0.5}]
    assert {f["trace_id"]: f["failed_checks"] for f in rep["metrics"]["reply_ok"]["failures"]} == {
        "b": ["no_pii"], "c": ["short"], "d": ["no_pii", "short"]}
    r = CliRunner().invoke(cli, ["eval", str(cfg), "--fail-under", "reply_ok.pass_rate=0.25"])
    assert r.exit_code == 0 and "gate passed" in r.output and "reply_ok" in r.output
    cfg.write_text(cfg.read_text().replace("min_passed: 3", "min_passed: 2"))  # 2 of 3: only d fails
    r = CliRunner().invoke(cli, ["eval", str(cfg), "--json", "--fail-under", "reply_ok.pass_rate=0.7"])
    assert r.exit_code == 0 and json.loads(r.output)["metrics"]["reply_ok"]["pass_rate"] == 0.75
    cfg.write_text(cfg.read_text().replace("checks: [no_pii", "checks: [nope"))
    r = CliRunner().invoke(cli, ["eval", str(cfg)])
    assert r.exit_code == 2 and r.output.startswith("error: expected suite reply_ok's checks")

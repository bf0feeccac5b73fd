"""Eval: evaluators and gates over a dataset -> one standard report; ``assay eval`` on the CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from assay.cli import cli
from assay.errors import AssayError
from assay.monitor import Eval, ModelCheck, smoke_subset
from assay.monitor._stats import histogram, ks_statistic, psi, rebin
from assay.stats import agreement_kappa as cohen_kappa
from assay.testing import MockEvaluator

ROWS = [
    {"id": "a", "input": "email me at a@b.co", "label": "true"},
    {"id": "b", "input": "nothing personal here", "label": "false"},
    {"id": "c", "input": "card 4111 1111 1111 1111", "label": "true"},
    {"id": "d", "input": "what time is it", "label": "false"},
    {"id": "e", "output": "a reply, no request", "label": "false"},  # no input: skipped by pii, counted
]


def test_report_shape_and_failures_with_trace_ids():
    ev = MockEvaluator("pii", scores={"a": 0.9, "b": 0.1, "c": 0.2, "d": 0.6})
    rep = Eval([ev, {"gate": {"type": "pii", "field": "input"}}], ROWS, name="unit").run()
    assert rep["eval"] == "unit" and rep["dataset"]["evaluated"] == 5
    m = rep["metrics"]["pii"]
    assert m["kind"] == "evaluator" and m["scored"] == 4 and m["skipped"] == {"missing_input": 1}
    # label "true" (PII present) is the failing verdict of the pii metric
    assert m["failed"] == 2 and m["pass_rate"] == 0.5
    assert sorted(f["trace_id"] for f in m["failures"]) == ["a", "d"]
    assert sum(m["confidence_histogram"]["counts"]) == 4 and sum(m["score_histogram"]["counts"]) == 4
    assert m["agreement"]["n"] == 4 and m["agreement"]["accuracy"] == 0.5  # c and d are wrong
    g = rep["metrics"]["gate:pii"]
    assert g["kind"] == "gate" and g["failed"] == 2 and {f["trace_id"] for f in g["failures"]} == {"a", "c"}
    assert "found 1 email" in [f["reason"] for f in g["failures"] if f["trace_id"] == "a"][0]


def test_attached_deciding_gate_skips_the_model():
    ev = MockEvaluator("pii", scores={"a": 0.05, "b": 0.1, "c": 0.2, "d": 0.3})
    check = ModelCheck(ev, gates=[{"type": "pii", "decides": True}])
    rep = Eval([check], ROWS[:4]).run()
    m = rep["metrics"]["pii"]
    assert sorted(f["trace_id"] for f in m["failures"]) == ["a", "c"]
    assert all(f["reason"].startswith("gate pii") for f in m["failures"])
    assert rep["metrics"]["pii/pii"]["failed"] == 2
    assert ev.calls == 1 and len(ev.prompts) == 0  # b and d had fixed scores; a and c never reached the model


def test_smoke_subset_is_fixed_and_parallel_matches_serial(shared_data):
    data = shared_data / "pii_presidio_synth.jsonl"
    serial = Eval([MockEvaluator("pii")], data, batch_size=16).run(smoke=60, seed=3)
    par = Eval([MockEvaluator("pii")], data, batch_size=16).run(smoke=60, seed=3, parallel=2)
    strip = lambda r: {k: v for k, v in r["metrics"]["pii"].items()}  # noqa: E731
    assert strip(serial) == strip(par)
    assert serial["dataset"]["evaluated"] == 60 and serial["dataset"]["traces"] == 1500
    other = Eval([MockEvaluator("pii")], data).run(smoke=60, seed=4)
    assert strip(other) != strip(serial)  # another seed, another subset


def test_smoke_subset_independent_of_order():
    from assay.traces import read_traces

    traces = read_traces([{"id": str(i), "input": f"row {i}"} for i in range(50)]).traces
    a = [t.trace_id for t in smoke_subset(traces, 10)]
    b = [t.trace_id for t in smoke_subset(list(reversed(traces)), 10)]
    assert a == b and len(set(a)) == 10


def test_eval_errors():
    with pytest.raises(AssayError, match="at least one evaluator"):
        Eval([], ROWS)
    with pytest.raises(AssayError, match="evaluator keys"):
        Eval([{"artifact": "x", "bogus": 1}], ROWS)
    with pytest.raises(AssayError, match="evaluator.json"):
        Eval([{"artifact": "/nonexistent/art"}], ROWS)
    with pytest.raises(AssayError, match="one check per metric"):
        Eval([MockEvaluator("pii"), MockEvaluator("pii")], ROWS)


def test_cli_eval_with_gates_config_and_smoke(tmp_path):
    data = tmp_path / "golden.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n{broken\n")
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("name: gates\ndataset: golden.jsonl\nevaluators:\n"
                   "  - gate: {type: pii, field: input, name: pii_regex}\n"
                   "  - gate: {type: length, field: input, max_chars: 22}\n")
    r = CliRunner().invoke(cli, ["eval", str(cfg), "--json", "--out", str(tmp_path / "rep.json")])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["dataset"]["ingest"]["problems"] == {"invalid_json": 1}
    assert rep["metrics"]["pii_regex"]["failed"] == 2 and rep["metrics"]["gate:length"]["failed"] == 1
    assert json.loads((tmp_path / "rep.json").read_text())["eval"] == "gates"
    r = CliRunner().invoke(cli, ["eval", "--gate", "{type: pii, field: input}", "--data", str(data), "--smoke", "2"])
    assert r.exit_code == 0 and "2 of 5 traces" in r.output
    r = CliRunner().invoke(cli, ["eval", "--data", str(data)])
    assert r.exit_code == 2 and "at least one evaluator" in r.output
    r = CliRunner().invoke(cli, ["eval", "--gate", "[1]", "--data", str(data)])
    assert r.exit_code == 2 and "inline mapping" in r.output


def test_cli_eval_gates_a_release_with_min_pass_rate(tmp_path):
    """`assay eval --min-pass-rate` exits 1 when a metric passes too few traces (issue 12: it exited 0 at 20%)."""
    data = tmp_path / "golden.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    gate = ["eval", "--gate", "{type: pii, field: input, name: pii_regex}", "--data", str(data)]
    r = CliRunner().invoke(cli, gate + ["--json"])
    rate = json.loads(r.output)["metrics"]["pii_regex"]["pass_rate"]
    assert r.exit_code == 0 and 0 < rate < 1
    r = CliRunner().invoke(cli, gate + ["--min-pass-rate", str(round(rate + 0.01, 3))])
    assert r.exit_code == 1 and "GATE FAILED" in r.output and "pii_regex" in r.output
    r = CliRunner().invoke(cli, gate + ["--min-pass-rate", str(round(rate - 0.01, 3)), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["gate"] == {"bars": {"pass_rate": round(rate - 0.01, 3)},
                                                                 "passed": True, "below": []}


def test_cli_eval_fail_under_any_figure(tmp_path):
    """`assay eval --fail-under pass_rate=0.9,kappa=0.6` gates on any figure of a metric's block: exit 1
    below a bar, 0 at or above; a figure nothing measures (kappa on unlabeled rows) is exit 2, not a pass."""
    from pathlib import Path

    golden = Path(__file__).parents[1] / "fixtures" / "artifacts" / "toxicity-tfidf-v1"
    texts = ["you idiot", "what a stupid moron", "lovely day", "thanks for the help", "hello there", "you are dumb"]
    labels = ["true", "true", "false", "false", "false", "true"]
    data = tmp_path / "golden.jsonl"
    data.write_text("".join(json.dumps({"id": f"r{i}", "input": t, "label": y}) + "\n"
                            for i, (t, y) in enumerate(zip(texts, labels))))
    base = ["eval", "-m", str(golden), "--data", str(data)]
    r = CliRunner().invoke(cli, base + ["--json"])
    assert r.exit_code == 0, r.output
    block = json.loads(r.output)["metrics"]["toxicity"]
    kappa, rate = block["agreement"]["kappa"], block["pass_rate"]
    assert kappa is not None
    r = CliRunner().invoke(cli, base + ["--fail-under", f"pass_rate={rate},kappa={kappa - 0.01}", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["gate"]["passed"] is True
    r = CliRunner().invoke(cli, base + ["--fail-under", f"pass_rate={rate}", "--fail-under", f"toxicity.kappa={kappa + 0.01}"])
    assert r.exit_code == 1 and "GATE FAILED: toxicity kappa" in r.output
    unlabeled = tmp_path / "unlabeled.jsonl"
    unlabeled.write_text("".join(json.dumps({"id": f"u{i}", "input": t}) + "\n" for i, t in enumerate(texts)))
    r = CliRunner().invoke(cli, ["eval", "-m", str(golden), "--data", str(unlabeled), "--fail-under", "kappa=0.5"])
    assert r.exit_code == 2 and "kappa" in r.output and "labeled rows" in r.output
    r = CliRunner().invoke(cli, base + ["--fail-under", "kappa"])
    assert r.exit_code == 2 and "FIGURE=NUMBER" in r.output


def test_stats_helpers():
    assert histogram([0.0, 0.05, 0.5, 1.0])["counts"] == [2, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    assert cohen_kappa(["a", "b", "a", "b"], ["a", "b", "a", "b"]) == 1.0
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None
    assert cohen_kappa(["a", "b", "a", "b"], ["a", "a", "b", "b"]) == 0.0
    # weights count items more than once
    assert cohen_kappa(["a", "b", "b"], ["a", "b", "a"], weights=[1, 1, 0]) == 1.0
    assert psi([10, 10], [10, 10]) == 0.0 and psi([10, 10], [19, 1]) > 0.2
    assert ks_statistic([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]) == 0.0 and ks_statistic([0.1], [0.9]) == 1.0
    assert rebin([{"lo": 0.0, "hi": 0.2, "count": 10}], [0, 0.1, 0.2]) == [5.0, 5.0]


def test_eval_over_a_monitor_database(tmp_path):
    from assay.monitor import Monitor, RouteConfig, Store
    from assay.traces import read_traces

    store = Store(tmp_path / "m.db")
    Monitor([MockEvaluator("pii")], store, RouteConfig()).process(read_traces(ROWS).traces)
    store.close()
    rep = Eval([{"gate": {"type": "pii", "field": "input"}}], tmp_path / "m.db").run()
    assert rep["dataset"]["traces"] == 5 and rep["metrics"]["gate:pii"]["failed"] == 2

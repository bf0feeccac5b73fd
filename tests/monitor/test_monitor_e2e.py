"""End to end on real data with a really trained evaluator (slow): ingest -> gate -> score -> route ->
review on the CLI -> golden set that a new ``assay train`` config accepts; drift; local vs Ray scoring."""

from __future__ import annotations

import json
import random

import pytest
import yaml
from click.testing import CliRunner

from assay.cli import cli
from assay.config import load_config
from assay.data import load_rows
from assay.monitor import Eval, Monitor, RouteConfig, Store, audit_draw, drift, score_file
from assay.stats import agreement_kappa as cohen_kappa

pytestmark = pytest.mark.slow

BAND = (0.3, 0.7)
AUDIT = 0.1


def _trace_records(rows):
    """The same texts as production traffic in the three formats, plus malformed items."""
    out = []
    for i, r in enumerate(rows):
        if i % 5 == 0:  # OpenInference spans in OTLP/JSON: root chain + LLM child
            out.append({"resourceSpans": [{"scopeSpans": [{"spans": [
                {"traceId": r["id"], "spanId": "llm", "parentSpanId": "root", "attributes": [
                    {"key": "openinference.span.kind", "value": {"stringValue": "LLM"}},
                    {"key": "llm.input_messages.0.message.role", "value": {"stringValue": "user"}},
                    {"key": "llm.input_messages.0.message.content", "value": {"stringValue": r["input"]}},
                    {"key": "llm.output_messages.0.message.role", "value": {"stringValue": "assistant"}},
                    {"key": "llm.output_messages.0.message.content", "value": {"stringValue": "Noted."}}]},
                {"traceId": r["id"], "spanId": "root", "attributes": [
                    {"key": "openinference.span.kind", "value": {"stringValue": "CHAIN"}},
                    {"key": "input.value", "value": {"stringValue": r["input"]}},
                    {"key": "output.value", "value": {"stringValue": "Noted."}}]}]}]}]})
        elif i % 5 == 1:  # a LangSmith run
            out.append({"id": r["id"], "run_type": "chain", "inputs": {"input": r["input"]},
                        "outputs": {"output": "Noted."}})
        else:
            out.append({"id": r["id"], "input": r["input"], "output": "Noted.", "session_id": f"s{i // 3}"})
    return out


from conftest import SHARED_DATA as SHARED  # noqa: E402  tests/fixtures/data unless ASSAY_SHARED_DATA is set


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from assay.train import train

    rows = [json.loads(line) for line in open(SHARED / "pii_presidio_synth.jsonl")]
    random.Random(0).shuffle(rows)
    root = tmp_path_factory.mktemp("e2e")
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:320]))
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[320:440]))
    cfg = {"metric": "pii", "data": {"test_set": "test.jsonl", "train_set": "train.jsonl"},
           "model": {"family": "encoder", "max_length": 64},
           "train": {"max_steps": 60, "batch_size": 16, "calibration_fraction": 0.15},
           "report": {"bootstrap": 0, "latency_rows": 8, "baselines": False}, "output": "artifact"}
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASSAY_HOME", str(root / "home"))
        result = train(root / "config.yaml", progress=False)
    rest = rows[440:]  # production traffic: more clean messages than the dataset's 28%
    traffic = [r for r in rest if r["label"] == "false"][:250] + [r for r in rest if r["label"] == "true"][:150]
    random.Random(1).shuffle(traffic)
    return {"root": root, "artifact": result.artifact_dir, "report": result.report, "traffic": traffic}


def test_monitor_end_to_end(trained):
    root, artifact, traffic = trained["root"], trained["artifact"], trained["traffic"]
    truth = {r["id"]: r["label"] for r in traffic}
    trace_file = root / "traces.jsonl"
    lines = [json.dumps(x) for x in _trace_records(traffic)]
    lines += ["{truncated", json.dumps({"no": "shape"}), json.dumps({"traceId": "x", "name": "span without id",
                                                                       "attributes": {}})]
    trace_file.write_text("\n".join(lines) + "\n")
    db = root / "monitor.db"

    # --- ingest, gate, score, route (Python API; the CLI path is the same Monitor) -----------
    store = Store(db)
    checks = [{"artifact": str(artifact), "gates": [{"type": "pii", "kinds": ["email", "card", "iban", "ssn", "ipv4"],
                                                     "name": "pii_regex"}]},
              {"gate": {"type": "length", "field": "output", "max_chars": 2000}}]
    mon = Monitor(checks, store, RouteConfig(band=BAND, audit_rate=AUDIT, seed=0), batch_size=32)
    summary = mon.run_file(trace_file)
    assert summary["traces"] == len(traffic)
    assert summary["ingest"]["problems"] == {"invalid_json": 1, "unknown_shape": 1, "span_missing_span_id": 1}
    m = summary["metrics"]["pii"]
    assert m["scored"] == len(traffic) and m["skipped"] == {}
    assert summary["metrics"]["pii/pii_regex"]["scored"] == len(traffic)
    assert summary["metrics"]["gate:length"]["failed"] == 0

    verdicts = store.verdicts("pii")
    uncertain = [v for v in verdicts if BAND[0] <= v["score"] <= BAND[1]]
    fails = [v for v in verdicts if v["label"] == "true" and v not in uncertain]
    passes = [v for v in verdicts if v["label"] == "false" and v not in uncertain]
    assert m["routes"].get("review:uncertain", 0) == len(uncertain)
    assert m["routes"].get("review:high_severity_fail", 0) == len(fails)  # pii has severity high
    audited = [v for v in passes if v["route_reason"] == "audit"]
    assert len(audited) == sum(audit_draw(v["trace_id"], "pii", 0) < AUDIT for v in passes)
    assert len(passes) >= 60 and abs(len(audited) / len(passes) - AUDIT) <= 0.08
    assert m["routes"].get("recorded", 0) == len(passes) - len(audited)
    # the evaluator learned something real: its verdicts agree with the dataset's labels well beyond chance
    # (a 60-step MiniLM is no accuracy claim; the report has the real figures)
    kappa = cohen_kappa([truth[v["trace_id"]] for v in verdicts], [v["label"] for v in verdicts])
    assert kappa is not None and kappa >= 0.3
    store.close()

    # --- review on the CLI ----------------------------------------------------------------------
    run = CliRunner().invoke
    r = run(cli, ["review", "list", "--db", str(db), "--metric", "pii", "--limit", "1000", "--json"])
    assert r.exit_code == 0, r.output
    queue = json.loads(r.output)
    assert len(queue) == len(uncertain) + len(fails) + len(audited)
    for item in queue:
        r = run(cli, ["review", "label", str(item["id"]), truth[item["trace_id"]], "--db", str(db),
                      "--reviewer", "e2e"])
        assert r.exit_code == 0, r.output
    r = run(cli, ["review", "list", "--db", str(db), "--metric", "pii"])
    assert "empty" in r.output
    golden = root / "golden.jsonl"
    r = run(cli, ["review", "export", "--db", str(db), "--metric", "pii", "--out", str(golden), "--json"])
    assert r.exit_code == 0, r.output
    exported = json.loads(r.output)
    # traces with the same text (the dataset repeats some templates) become one golden row
    assert exported["rows"] + exported["duplicates_merged"] == len(queue) and exported["conflicting_labels"] == 0

    # --- a new `assay train` config accepts the golden set ---------------------------------
    new_cfg = root / "next" / "config.yaml"
    new_cfg.parent.mkdir()
    new_cfg.write_text(yaml.safe_dump({"metric": "pii", "data": {"test_set": str(golden),
                                                                 "train_set": str(root / "train.jsonl")},
                                       "model": {"family": "encoder"}}))
    cfg = load_config(new_cfg)
    v = load_rows(cfg.path(cfg.data.test_set), cfg.metric_spec(), columns=cfg.data.columns)
    assert len(v.rows) == exported["rows"] and v.label_counts["true"] > 0 and v.label_counts["false"] > 0
    r = run(cli, ["validate", str(golden), "--metric", "pii", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["errors"] == 0

    # --- drift and agreement against the artifact's report ---------------------------------
    store = Store(db)
    d = drift(store, "pii", window="1d", min_reviews=10)
    assert d["eval_kappa"] == trained["report"]["student"]["kappa"]
    assert d["baseline"]["source"] == "report" and d["windows"][0]["psi"] is not None
    assert d["overall"]["reviews"] == len(queue) and d["overall"]["kappa"] is not None
    store.close()

    # --- the golden set as an Eval dataset ---------------------------------------------------
    rep = Eval([str(artifact)], golden).run(parallel=2)
    m = rep["metrics"]["pii"]
    # rows the evaluator trained on are left out (and counted), as `assay evaluate` leaves them out
    assert m["scored"] + m.get("excluded_trained_rows", 0) == exported["rows"] and m["scored"] == m["agreement"]["n"]


def test_batch_engines_identical_with_real_evaluator(trained):
    pytest.importorskip("ray.data")
    torch = pytest.importorskip("torch")
    rows = [{"id": r["id"], "input": r["input"]} for r in trained["traffic"][:96]]
    # each of the 2 Ray actors scores on num_cpus // concurrency = 1 thread; in bf16 (auto on a CPU with
    # AMX / AVX512-BF16) oneDNN's sums depend on the thread count (up to ~0.003 in a probability), so the
    # local engine scores on as many threads as an actor for the two to be compared exactly
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = score_file(trained["artifact"], rows, engine="local", batch_size=32)
    finally:
        torch.set_num_threads(threads)
    ray = score_file(str(trained["artifact"]), rows, engine="ray", batch_size=32, concurrency=2)
    assert len(local.scores) == 96 and ray.scores == local.scores


def test_cli_monitor_and_eval_with_artifact(trained, tmp_path):
    trace_file = tmp_path / "t.jsonl"
    trace_file.write_text("".join(json.dumps({"id": r["id"], "input": r["input"]}) + "\n"
                                  for r in trained["traffic"][:40]))
    db = tmp_path / "m.db"
    r = CliRunner().invoke(cli, ["monitor", "--metric", str(trained["artifact"]), "--source", str(trace_file),
                                 "--db", str(db), "--band", "0.2,0.8", "--audit-rate", "0.5", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output[r.output.index("{"):])
    assert s["metrics"]["pii"]["scored"] == 40 and s["route"]["band"] == [0.2, 0.8]
    r = CliRunner().invoke(cli, ["eval", "--metric", str(trained["artifact"]), "--data", str(trace_file),
                                 "--smoke", "10", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{"):])["metrics"]["pii"]["scored"] == 10

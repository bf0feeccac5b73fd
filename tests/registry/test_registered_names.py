"""Issue 12: a registered metric name works wherever an artifact directory does (monitor, eval,
score, and its old name batch-score), with its file hashes checked and the registered version's threshold applied."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

from click.testing import CliRunner

from _registry_util import add_binary_datasets, run_config

GOLDEN = Path(__file__).parents[1] / "fixtures" / "artifacts" / "toxicity-tfidf-v1"


def _register_golden(home: Path, threshold: float | None = None) -> str:
    """Register the golden v1 artifact as metric `tox` in $ASSAY_HOME's default registry."""
    from assay.registry import LocalExecutor, Registry, Worker

    def copy_train(cfg, **kw):
        out = Path(cfg.output_dir())
        shutil.copytree(GOLDEN, out, dirs_exist_ok=True)
        return SimpleNamespace(artifact_dir=out, report=json.loads((out / "report.json").read_text()))

    reg = Registry()  # $ASSAY_HOME/assay.db: what the CLI finds without options
    reg.projects.create("demo")
    t, tr = add_binary_datasets(reg, "demo")
    run = reg.runs.create("demo", run_config(t, tr))
    w = Worker(reg, LocalExecutor(copy_train), heartbeat_interval=0.2, stale_after=30)
    assert w.execute(reg.runs.claim(w.worker_id, run_id=run.id)).status.value == "fine_tuned"
    return reg.metrics.register(run.id, "tox", threshold=threshold).full_name


def test_a_registered_name_scores_in_eval_score_and_monitor(tmp_path, _assay_home):
    from assay.cli import cli
    from assay.evaluator import Evaluator

    full = _register_golden(_assay_home, threshold=0.9)
    assert full == "tox-v1"
    rows = [{"id": f"r{i}", "input": text} for i, text in enumerate(["you idiot", "lovely day", "hello there"])]
    data = tmp_path / "traces.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = CliRunner().invoke
    for name in ("tox", "tox-v1"):
        r = run(cli, ["eval", "-m", name, "--data", str(data), "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)["metrics"]["toxicity"]["scored"] == 3
    out = tmp_path / "scores.jsonl"
    r = run(cli, ["score", "tox", str(data), "--out", str(out), "--json", "-q"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["engine"] == "local" and json.loads(r.output)["rows"] == 3
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    old = tmp_path / "old.jsonl"  # the old command name gives the same records
    r = run(cli, ["batch-score", "tox", str(data), "--out", str(old), "-q"])
    assert r.exit_code == 0 and "now `assay score`" in r.output
    assert old.read_text() == out.read_text()
    direct = Evaluator.from_pretrained(GOLDEN).predict_proba(rows)[:, 0]
    assert [round(s["score"], 6) for s in scored] == [round(float(p), 6) for p in direct]
    assert all(s["label"] == ("true" if s["score"] >= 0.9 else "false") for s in scored)  # the version's threshold
    r = run(cli, ["monitor", "-m", "tox", "--source", str(data), "--db", str(tmp_path / "m.db"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["traces"] == 3
    r = run(cli, ["eval", "-m", "nosuchmetric", "--data", str(data)])
    assert r.exit_code == 2 and "no registered metric" in r.output


def test_open_evaluator_by_registered_name_applies_the_threshold_and_operator(_assay_home):
    """One opener (monitor._checks.open_evaluator) for a folder or a registered name: a name decides with
    its version's threshold and operator, set on the evaluator's one Calibration (the fitted threshold kept
    for routing); the registry's own scoring, the monitor's check and a plain folder agree with it."""
    from assay.evaluator import Evaluator
    from assay.monitor._checks import ModelCheck, load_evaluator, open_evaluator
    from assay.registry import LocalExecutor, Registry, Worker

    rows = [{"id": f"r{i}", "input": text} for i, text in enumerate(["you idiot", "lovely day", "hello there"])]
    plain = Evaluator.from_pretrained(GOLDEN)
    tie = float(plain.predict_proba(rows)[0, 0])  # a threshold exactly at row 0's P(true)

    def copy_train(cfg, **kw):
        out = Path(cfg.output_dir())
        shutil.copytree(GOLDEN, out, dirs_exist_ok=True)
        return SimpleNamespace(artifact_dir=out, report=json.loads((out / "report.json").read_text()))

    reg = Registry()
    reg.projects.create("demo")
    t, tr = add_binary_datasets(reg, "demo")
    w = Worker(reg, LocalExecutor(copy_train), heartbeat_interval=0.2, stale_after=30)
    for op in (">=", ">"):
        run = reg.runs.create("demo", run_config(t, tr))
        w.execute(reg.runs.claim(w.worker_id, run_id=run.id))
        reg.metrics.register(run.id, "tox", threshold=tie, operator=op)
    at, above = open_evaluator("tox-v1"), open_evaluator("tox")  # tox: the latest, v2 (">")
    for ev, op in ((at, ">="), (above, ">")):
        assert ev.threshold == tie and ev.calibration.operator == op
        assert ev.calibration.calibrated_threshold == plain.threshold  # the fitted one, for routing
    assert [s.label for s in at.score(rows)][0] == "true" and [s.label for s in above.score(rows)][0] == "false"
    for name, ev in (("tox-v1", at), ("tox-v2", above)):  # the registry scores as the opener decides
        assert [r.label for r in reg.metrics.score(name, rows)] == [s.label for s in ev.score(rows)]
    assert load_evaluator("tox").calibration.operator == ">"
    check = ModelCheck("tox")
    assert check.evaluator.threshold == tie and check.evaluator.calibration.operator == ">"
    assert check.verdict(rows[0], check.evaluator.score(rows[:1])[0]).label == "false"
    folder = open_evaluator(GOLDEN)  # a folder: its own calibrated decision
    assert folder.threshold == plain.threshold and folder.calibration.calibrated_threshold is None
    reg.close()


def test_an_edited_registered_artifact_is_refused(tmp_path, _assay_home):
    from assay.cli import cli
    from assay.registry import Registry

    _register_golden(_assay_home)
    version = Registry().metrics.get("tox")
    folder = Path(Registry().storage.local_dir(version.artifact_location))
    (folder / "vocab.json").write_text("{}")
    data = tmp_path / "traces.jsonl"
    data.write_text(json.dumps({"id": "a", "input": "hi"}) + "\n")
    r = CliRunner().invoke(cli, ["eval", "-m", "tox", "--data", str(data)])
    assert r.exit_code == 2 and "vocab.json" in r.output


def test_score_reads_a_trace_export_and_clear_errors_for_neither(tmp_path):
    """`assay score` takes canonical rows or, when no row has the metric's fields, a trace export;
    a file that is neither gets the rows' problems, not a traceback."""
    from assay.cli import cli
    from assay.evaluator import Evaluator

    spans = [{"name": "llm", "context": {"trace_id": f"0xcc0{i}", "span_id": "0x01"}, "parent_id": None,
              "span_kind": "LLM", "attributes": {
                  "openinference": {"span": {"kind": "LLM"}},
                  "llm": {"input_messages": [{"message": {"role": "user", "content": text}}],
                          "output_messages": [{"message": {"role": "assistant", "content": "ok"}}]}}}
             for i, text in enumerate(["you idiot", "lovely day"])]
    data = tmp_path / "spans.jsonl"
    data.write_text("".join(json.dumps(s) + "\n" for s in spans))
    out = tmp_path / "scores.jsonl"
    r = CliRunner().invoke(cli, ["score", str(GOLDEN), str(data), "-o", str(out), "--json", "-q"])
    assert r.exit_code == 0, r.output
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert [s["trace_id"] for s in scored] == ["cc00", "cc01"]
    ev = Evaluator.from_pretrained(GOLDEN)
    expect = ev.predict_proba([{"id": "a", "input": "you idiot"}, {"id": "b", "input": "lovely day"}])
    assert [round(s["probabilities"][ev.labels[0]], 6) for s in scored] == [round(float(p), 6) for p in expect[:, 0]]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "text": "no input field"}) + "\n")
    r = CliRunner().invoke(cli, ["score", str(GOLDEN), str(bad)])
    assert r.exit_code == 2 and "input" in r.output and "Traceback" not in r.output

"""Issue 26 (items 4 and 5): `assay eval` leaves out and counts the rows an evaluator trained on, as
`assay evaluate` does (the same kappa on the same file), and a registered metric name works as
`artifact:` in an eval/monitor YAML as it does with --metric."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import yaml
from _train_util import make_data
from click.testing import CliRunner

from assay.cli import cli
from assay.data import row_hash
from assay.monitor import Eval
from assay.monitor._config import load_run_config

GOLDEN = Path(__file__).parents[1] / "fixtures" / "artifacts" / "toxicity-tfidf-v1"


def _artifact_trained_on(tmp_path: Path, rows: list[dict]) -> Path:
    """The golden artifact, its split.json saying it trained on ``rows``."""
    art = tmp_path / "art"
    shutil.copytree(GOLDEN, art)
    split = json.loads((art / "split.json").read_text())
    split["trained_on"] = sorted({row_hash(r) for r in rows})
    (art / "split.json").write_text(json.dumps(split))
    return art


def test_eval_leaves_out_rows_the_evaluator_trained_on_like_evaluate(tmp_path):
    _, test = make_data(tmp_path, n_test=80)
    art = _artifact_trained_on(tmp_path, test[:30])
    data = tmp_path / "test.jsonl"
    r = CliRunner().invoke(cli, ["eval", "-m", str(art), "--data", str(data), "--json"])
    assert r.exit_code == 0, r.output
    block = json.loads(r.output)["metrics"]["toxicity"]
    assert block["excluded_trained_rows"] == 30 and block["scored"] == 50 and block["agreement"]["n"] == 50
    ev = CliRunner().invoke(cli, ["evaluate", str(art), str(data), "--json", "-q"])
    assert ev.exit_code == 0, ev.output
    report = json.loads(ev.output[ev.output.index("{"):])
    assert report["excluded_trained_rows"] == 30 and report["n"] == 50
    assert abs(block["agreement"]["kappa"] - report["student"]["kappa"]) < 1e-6  # the same rows, the same kappa
    text = CliRunner().invoke(cli, ["eval", "-m", str(art), "--data", str(data)]).output
    assert "left out 30 rows it trained on" in text
    kept = CliRunner().invoke(cli, ["eval", "-m", str(art), "--data", str(data), "--include-trained", "--json"])
    assert json.loads(kept.output)["metrics"]["toxicity"]["scored"] == 80


def test_eval_api_counts_nothing_for_an_artifact_without_trained_rows(tmp_path):
    make_data(tmp_path, n_test=20)
    art = _artifact_trained_on(tmp_path, [])
    rep = Eval([str(art)], tmp_path / "test.jsonl").run()
    assert rep["metrics"]["toxicity"]["excluded_trained_rows"] == 0 and rep["metrics"]["toxicity"]["scored"] == 20


def test_a_registered_name_as_artifact_in_the_yaml(tmp_path, _assay_home):
    sys.path.insert(0, str(Path(__file__).parents[1] / "registry"))
    from test_registered_names import _register_golden

    assert _register_golden(_assay_home, threshold=0.9) == "tox-v1"
    rows = [{"id": f"r{i}", "input": t} for i, t in enumerate(["you idiot", "lovely day", "hello there"])]
    (tmp_path / "traces.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "local").mkdir()
    cfg_file = tmp_path / "eval.yaml"
    cfg_file.write_text(yaml.safe_dump({"dataset": "traces.jsonl", "evaluators": [{"artifact": "tox"},
                                                                                 {"artifact": "tox-v1"}]}))
    cfg = load_run_config(cfg_file)
    assert [e["artifact"] for e in cfg.evaluators] == ["tox", "tox-v1"]  # names, not paths beside the file
    for name in ("tox", "tox-v1"):
        cfg_file.write_text(yaml.safe_dump({"dataset": "traces.jsonl", "evaluators": [{"artifact": name}]}))
        r = CliRunner().invoke(cli, ["eval", str(cfg_file), "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)["metrics"]["toxicity"]["scored"] == 3
    # a folder beside the file is still a folder
    shutil.copytree(GOLDEN, tmp_path / "tox")
    assert load_run_config(cfg_file.with_name("eval.yaml")).evaluators[0]["artifact"] == "tox-v1"
    cfg_file.write_text(yaml.safe_dump({"evaluators": [{"artifact": "tox"}]}))
    assert load_run_config(cfg_file).evaluators[0]["artifact"] == str(tmp_path / "tox")

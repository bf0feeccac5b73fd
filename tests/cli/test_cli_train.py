"""`assay train / inspect / score / evaluate` on the shipped example data, and the bad inputs of issue 2."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from assay.cli import cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "toxicity"


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(root: Path, **over) -> Path:
    cfg = {"metric": "toxicity_3class",
           "data": {"test_set": "test.jsonl", "train_set": "train.jsonl"},
           "model": {"family": "encoder", "max_length": 32},
           "train": {"max_steps": 4, "batch_size": 8, "calibration_fraction": 0.15},
           "report": {"bootstrap": 0, "latency_rows": 4, "baselines": False},
           "output": "artifact"}
    from assay.config import TrainingConfig

    if "candidates" in TrainingConfig.model_fields:  # model selection: these tests train the neural family
        cfg["train"]["candidates"] = ["encoder"]
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith("error: expected")
    return lines[0]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small slice of the example: 90 test rows, 48 training rows."""
    root = tmp_path_factory.mktemp("cli")
    test = _lines(EXAMPLE / "test_set.jsonl")
    train = _lines(EXAMPLE / "train_set.jsonl")
    by: dict[str, list] = {}
    for r in test:
        by.setdefault(r["label"], []).append(r)
    _write_jsonl(root / "test.jsonl", [r for lab in sorted(by) for r in by[lab][:30]])
    _write_jsonl(root / "train.jsonl", train[:48])
    return root


@pytest.mark.slow
def test_train_inspect_score_evaluate_round_trip(small):
    runner = CliRunner()
    cfg = _config(small)
    out = runner.invoke(cli, ["train", str(cfg), "--json", "--quiet"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)
    art = Path(summary["artifact"])
    assert art == small / "artifact" and summary["held_out"] == 72 and summary["steps"] == 4
    for name in ("evaluator.json", "README.md", "report.json", "report.md", "report.html", "split.json"):
        assert (art / name).is_file(), name
    assert list(art.glob("*.safetensors")) and not list(art.glob("*.bin")) and not list(art.glob("*.pkl"))

    info = json.loads(runner.invoke(cli, ["inspect", str(art), "--json"]).output)
    assert info["metric"]["name"] == "toxicity_3class" and info["family"] == "encoder"
    assert info["metric"]["labels"] == ["hate_speech", "offensive_language", "neither"]

    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(["have a lovely day", "you are all idiots"] * 3)]
    src = small / "new.csv"
    with src.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "text"])
        w.writeheader()
        w.writerows(rows)
    scored = small / "scores.jsonl"
    out = runner.invoke(cli, ["score", str(art), str(src), "-c", "input=text", "-o", str(scored), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["rows"] == 6  # progress lines go to stderr
    assert "[scoring] 6/6 rows" in out.stderr
    recs = _lines(scored)
    assert [r["id"] for r in recs] == [r["id"] for r in rows]
    for r in recs:
        assert set(r["probabilities"]) == set(info["metric"]["labels"])
        assert abs(sum(r["probabilities"].values()) - 1) < 1e-4
        assert r["label"] == max(r["probabilities"], key=r["probabilities"].get) or info["threshold"] is not None
        assert r["confidence"] == pytest.approx(r["probabilities"][r["label"]], abs=1e-6)
    # identical inputs get identical scores (one forward pass, no sampling)
    assert recs[0]["probabilities"] == pytest.approx(recs[2]["probabilities"], abs=1e-6)

    # the 18 seed rows of test.jsonl were trained on: evaluate leaves them out, counts them and says so
    out = runner.invoke(cli, ["evaluate", str(art), str(small / "test.jsonl"), "--json", "-o", str(small / "ev")])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["n"] == 72 and report["excluded_trained_rows"] == 18 and -1 <= report["student"]["kappa"] <= 1
    assert sum(map(sum, report["student"]["confusion"])) == 72
    md = (small / "ev" / "report.md").read_text()
    assert "18 rows the artifact trained on were left out" in md
    assert "Baselines are fitted" not in md and not report["baselines"]  # no baselines: the text says none
    text = runner.invoke(cli, ["evaluate", str(art), str(small / "test.jsonl"), "--quiet"])
    assert "18 rows the artifact trained on were left out (72 evaluated)" in text.output
    out = runner.invoke(cli, ["evaluate", str(art), str(small / "test.jsonl"), "--json", "--include-trained",
                              "--quiet"])
    assert json.loads(out.stdout)["n"] == 90 and json.loads(out.stdout)["excluded_trained_rows"] == 0
    # a second train into the same folder is refused without --overwrite
    out = runner.invoke(cli, ["train", str(cfg), "--quiet"])
    assert out.exit_code == 2 and "--overwrite" in out.output


def test_unknown_label_is_one_error_line(small, tmp_path):
    rows = _lines(small / "test.jsonl")
    rows[5]["label"] = "spam"
    _write_jsonl(tmp_path / "test.jsonl", rows)
    _write_jsonl(tmp_path / "train.jsonl", _lines(small / "train.jsonl"))
    line = _one_error_line(CliRunner().invoke(cli, ["train", str(_config(tmp_path)), "--quiet"]))
    assert "spam" in line and "label" in line


def test_missing_column_is_one_error_line(small, tmp_path):
    rows = [{"id": r["id"], "text": r["input"], "label": r["label"]} for r in _lines(small / "test.jsonl")]
    _write_jsonl(tmp_path / "test.jsonl", rows)
    _write_jsonl(tmp_path / "train.jsonl", _lines(small / "train.jsonl"))
    line = _one_error_line(CliRunner().invoke(cli, ["train", str(_config(tmp_path)), "--quiet"]))
    assert "input" in line


def test_empty_file_is_one_error_line(small, tmp_path):
    (tmp_path / "test.jsonl").write_text("")
    _write_jsonl(tmp_path / "train.jsonl", _lines(small / "train.jsonl"))
    line = _one_error_line(CliRunner().invoke(cli, ["train", str(_config(tmp_path)), "--quiet"]))
    assert "test.jsonl" in line and "empty" in line.lower()


def test_missing_base_model_is_one_error_line(small, tmp_path):
    for name in ("test.jsonl", "train.jsonl"):
        (tmp_path / name).write_text((small / name).read_text())
    cfg = _config(tmp_path, model={"base": str(tmp_path / "no-such-model")})
    line = _one_error_line(CliRunner().invoke(cli, ["train", str(cfg), "--quiet"]))
    assert "no-such-model" in line


def test_colliding_label_tokens_are_one_error_line(small, tmp_path):
    pytest.importorskip("gguf")
    rows = [{"id": f"q{i}", "input": f"answer number {i}", "label": ["very_good", "very_bad", "ok"][i % 3]}
            for i in range(60)]
    _write_jsonl(tmp_path / "test.jsonl", rows)
    metric = {"name": "quality", "output": "categorical", "labels": ["very_good", "very_bad", "ok"],
              "prompt": "Rate this answer: {input}", "verbalizers": {"very_good": "very good", "very_bad": "very bad"}}
    cfg = _config(tmp_path, metric=metric, data={"train_set": None, "train_on_seeds": True},
                  model={"family": "decoder", "base": "smollm2", "max_length": 64})
    line = _one_error_line(CliRunner().invoke(cli, ["train", str(cfg), "--quiet"]))
    assert "'very good' and 'very bad' both start with token" in line


def test_inspect_of_a_folder_without_artifact_is_one_error_line(tmp_path):
    line = _one_error_line(CliRunner().invoke(cli, ["inspect", str(tmp_path)]))
    assert "evaluator.json" in line

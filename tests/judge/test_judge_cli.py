"""`assay tune-judge` and `assay judge-consistency` end to end with the mock provider (--json parsed)."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from assay.cli import cli
from assay.data import read_records
from assay.metrics import load_metric
from conftest import SHARED_DATA  # tests/fixtures/data unless ASSAY_SHARED_DATA is set


@pytest.fixture
def config(tmp_path):
    rows = [dict(r) for r in read_records(SHARED_DATA / "pii_presidio_synth.jsonl")][:300]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {"metric": "pii", "data": {"test_set": "rows.jsonl"}, "output": "runs/pii",
           "judge": {"model": "mock/judge", "options": {"agree_with": "label", "accuracy": 0.75}, "cache": False}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _json(out):
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_tune_judge_cli_writes_the_metric_and_reports(config, tmp_path):
    out_dir = tmp_path / "tuned"
    res = _json(CliRunner().invoke(cli, ["tune-judge", str(config), "--rounds", "2", "--out", str(out_dir), "--json"]))
    assert res["metric"] == "pii" and res["judge"] == "mock/judge"
    assert len(res["validation_kappa"]) == 3 and res["cost_usd"] == 0
    # the mock writer answers no <prompt> block: those candidates are rejected, the few-shot one is scored
    report = json.loads((out_dir / "tune_report.json").read_text())
    reasons = {c["reason"] for c in report["candidates"] if c["status"] == "rejected"}
    assert "the answer has no prompt between <prompt> and </prompt>" in reasons
    assert any(c["source"] == "fewshot" and c["status"] == "scored" for c in report["candidates"])
    assert report["rows"]["test_rows_shown_or_selected_on"] == 0
    assert set(res["files"]) == {"metric", "report", "markdown"}
    assert load_metric(res["files"]["metric"]).name == "pii"
    assert "Final figures" in (out_dir / "tune_report.md").read_text()
    # a second run refuses to replace the report
    again = CliRunner().invoke(cli, ["tune-judge", str(config), "--out", str(out_dir), "--json"])
    assert again.exit_code == 2 and json.loads(again.stderr)["error"]["code"] == "output_exists"
    # the tuned metric trains: the config with `metric:` pointing at it validates
    from assay.config import load_config

    cfg = yaml.safe_load(config.read_text())
    cfg["metric"] = res["files"]["metric"]
    config.write_text(yaml.safe_dump(cfg))
    assert load_config(config).metric_spec().prompt == load_metric(res["files"]["metric"]).prompt


def test_judge_consistency_cli_exports_flipping_rows(config, tmp_path):
    res = _json(CliRunner().invoke(cli, ["judge-consistency", str(config), "--samples", "3", "--limit", "20",
                                         "--out", str(tmp_path / "c"), "--json"]))
    assert res["rows"] == 20 and res["ambiguous"] + res["stable"] == 20
    assert res["ambiguous"] > 0  # the mock samples labels at random when temperature > 0
    lines = (tmp_path / "c" / "ambiguous.jsonl").read_text().splitlines()
    assert len(lines) == res["ambiguous"]
    assert all(json.loads(x)["meta"]["consistency"]["question"].endswith("?") for x in lines)


@pytest.mark.parametrize("args, code, words", [
    (["tune-judge", "missing.yaml"], "not_found", "a run config YAML file"),
    (["tune-judge", "{cfg}", "--rounds", "0"], None, "--rounds"),
    (["judge-consistency", "{cfg}", "--paraphrase", "nope.txt"], "not_found", "paraphrased prompt"),
])
def test_bad_input_is_one_clear_line(config, args, code, words):
    args = [a.replace("{cfg}", str(config)) for a in args]
    out = CliRunner().invoke(cli, [*args, "--json"])
    assert out.exit_code == 2 and "Traceback" not in out.output
    if code:
        err = json.loads(out.stderr)["error"]
        assert err["code"] == code and words in err["expected"] and err["fix"]
    else:
        assert words in out.output


def test_a_config_without_a_judge_names_the_fix(config):
    cfg = yaml.safe_load(config.read_text())
    cfg.pop("judge")
    config.write_text(yaml.safe_dump(cfg))
    out = CliRunner().invoke(cli, ["tune-judge", str(config)])
    assert out.exit_code == 2
    assert out.stderr.startswith("error: expected a judge provider") and "--judge" in out.stderr
    # --judge fills it in
    ok = CliRunner().invoke(cli, ["tune-judge", str(config), "--judge", "mock/j", "--rounds", "1", "--quiet",
                                  "--out", str(config.parent / "t")])
    assert ok.exit_code == 0, ok.output
    assert "test kappa: start" in ok.stdout and "next: set `metric:" in ok.stdout


def test_estimate_calls_nothing_and_prices_the_judge(config, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # no key needed: nothing is sent
    est = _json(CliRunner().invoke(cli, ["tune-judge", str(config), "--estimate", "--json", "--judge",
                                         "openai/gpt-4o-mini"]))
    assert est["price_per_million"] == [0.15, 0.6] and est["usd"] > 0
    n = est["rows"]["train"] + est["rows"]["validation"]
    assert est["judge_calls"] == n * (1 + 3 * 3) + 2 * est["rows"]["test"]
    assert not (config.parent / "runs").exists()  # nothing written

"""The README's main job: the shipped example trains on the CPU default and beats TF-IDF on held-out rows."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from assay.cli import cli

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "toxicity" / "config.yaml"


@pytest.mark.slow
def test_shipped_example_beats_the_tfidf_baseline(tmp_path):
    out = CliRunner().invoke(cli, ["train", str(CONFIG), "--output", str(tmp_path / "toxicity"), "--json", "--quiet"])
    assert out.exit_code == 0, out.output
    art = Path(json.loads(out.output)["artifact"])
    report = json.loads((art / "report.json").read_text())
    split = json.loads((art / "split.json").read_text())
    assert report["n"] == len(split["held_out"]) == 400  # 80% of the 500 labeled rows, never trained on
    student, tfidf = report["student"], report["baselines"]["tfidf_logreg"]
    assert student["kappa"] > tfidf["kappa"], (student["kappa"], tfidf["kappa"])
    assert student["kappa"] > report["baselines"]["majority"]["kappa"]
    # the report shows the model selection: every configured candidate with its kappa, and why the winner won
    sel = report["selection"]
    names = {c["name"] for c in sel["candidates"]}
    allowed = {"encoder", "tfidf", "embed", "hybrid", "blend", "pooled"}
    assert {"encoder", "tfidf", "embed", "hybrid"} <= names <= allowed
    assert sel["winner"] in names and sel["reason"]
    assert all(c["cv_kappa"] is not None for c in sel["candidates"] if not c.get("skipped"))
    # the run's time against its budget, and the peak memory of each stage, measured
    res = report["resources"]
    assert res["budget_seconds"] == 600 and 0 < res["seconds"]
    assert {"selecting", "evaluating"} <= set(res["peak_rss_mib"]) and max(res["peak_rss_mib"].values()) < 4096
    md = (art / "report.md").read_text()
    assert "## Candidates (model selection on the training rows)" in md and f"Winner: **{sel['winner']}**" in md


@pytest.mark.slow
def test_a_budget_bounds_the_example_and_the_report_names_what_it_cut(tmp_path):
    """train.budget N: the cheap candidates first, the encoder only in what is left (cut or skipped), the
    report's speed measurement shortened: the whole `assay train` takes about N seconds at most, and the
    report says what the budget cut."""
    budget = 150
    t0 = time.perf_counter()
    out = CliRunner().invoke(cli, ["train", str(CONFIG), "--output", str(tmp_path / "toxicity"), "--json", "--quiet",
                                   "--budget", str(budget)])
    seconds = time.perf_counter() - t0
    assert out.exit_code == 0, out.output
    assert seconds <= 1.2 * budget, seconds
    art = Path(json.loads(out.output)["artifact"])
    report = json.loads((art / "report.json").read_text())
    enc = next(c for c in report["selection"]["candidates"] if c["name"] == "encoder")
    said = enc.get("skipped") or (enc.get("params") or {}).get("budget")
    assert said and "budget" in (enc.get("error") or "") + str((enc.get("params") or {}).get("budget")), enc
    assert report["resources"]["budget_seconds"] == budget
    md = (art / "report.md").read_text()
    assert "train.budget" in md and "budget" in md.split("## Candidates")[1]

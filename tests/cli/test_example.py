"""The README's main job: the shipped example trains on the CPU default and beats TF-IDF on held-out rows."""

from __future__ import annotations

import json
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
    assert names == {"encoder", "tfidf", "embed", "hybrid"} and sel["winner"] in names and sel["reason"]
    assert all(c["cv_kappa"] is not None for c in sel["candidates"])
    md = (art / "report.md").read_text()
    assert "## Candidates (model selection on the training rows)" in md and f"Winner: **{sel['winner']}**" in md

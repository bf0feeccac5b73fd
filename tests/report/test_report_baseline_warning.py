"""Issue 26 (item 8): the report warns when the shipped evaluator is below a baseline beyond its interval
(report.json ``warnings``, report.md / .html, the CLI summary line); a student within or above: no warning."""

from __future__ import annotations

import json

import pytest

from assay.config import ReportConfig
from assay.data import read_records, split_rows, to_rows
from assay.report import baseline_warnings, evaluate, render_html, render_markdown, summary_line, write_report
from assay.testing import MockEvaluator

pytest.importorskip("sklearn")


def _report(student: float, ci: list[float] | None, tfidf: float) -> dict:
    s = {"n": 100, "kappa": student, **({"ci": {"kappa": ci, "n_boot": 100, "seed": 0}} if ci else {})}
    return {"metric": {"name": "toxicity", "labels": ["true", "false"], "positive": "true"}, "n": 100,
            "student": s, "baselines": {"majority": {"kappa": 0.0}, "tfidf_logreg": {"kappa": tfidf}}}


def test_below_a_baseline_beyond_the_interval_is_a_warning_everywhere(tmp_path):
    rep = _report(0.30, [0.22, 0.38], 0.45)
    warned = baseline_warnings(rep)
    assert len(warned) == 1 and "below the TF-IDF baseline: kappa 0.300 vs 0.450" in warned[0]
    assert "95% CI [0.220, 0.380]" in warned[0]
    line = summary_line(rep)
    assert line.splitlines()[0].startswith("held-out n=100") and line.splitlines()[1] == f"warning: {warned[0]}"
    md, html = render_markdown(rep), render_html(rep)
    assert "## Warnings and notes" in md and f"- **Warning:** {warned[0]}" in md
    assert "<strong>Warning:</strong> the evaluator is below the TF-IDF baseline" in html
    paths = write_report(rep, tmp_path)
    assert "below the TF-IDF baseline" in paths["md"].read_text()


def test_within_the_interval_or_above_no_warning():
    assert baseline_warnings(_report(0.30, [0.20, 0.50], 0.45)) == []  # inside the interval: noise
    assert baseline_warnings(_report(0.60, [0.50, 0.70], 0.45)) == []
    assert summary_line(_report(0.60, [0.50, 0.70], 0.45)).count("\n") == 0
    no_ci = baseline_warnings(_report(0.30, None, 0.45))
    assert len(no_ci) == 1 and "no interval" in no_ci[0]


def test_evaluate_writes_the_warning_into_report_json(shared_data):
    rows = to_rows(read_records(shared_data / "pii_presidio_synth.jsonl")[:300])
    split = split_rows(rows, fraction=0.5, seed=0)
    weak = MockEvaluator("pii", scores={r["id"]: 0.5 for r in split.held_out})  # no signal: kappa about 0
    rep = evaluate(weak, split.held_out, train_rows=split.seeds, config=ReportConfig(bootstrap=100), speed=False)
    assert rep["baselines"]["tfidf_logreg"]["kappa"] > rep["student"]["ci"]["kappa"][1]
    assert any("below the TF-IDF baseline" in w for w in rep["warnings"])
    json.dumps(rep, allow_nan=False)

"""evaluate() with assay.testing.MockEvaluator, and write_report's three files."""

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import replace

import numpy as np
import pytest

from assay.config import ReportConfig
from assay.errors import AssayError
from assay.metrics import get_preset
from assay.report import evaluate, summary_line, write_report
from assay.testing import MockEvaluator


def _mock(metric, threshold=None):
    """Scores 'bad' words as toxic; deterministic, no model."""
    if metric.is_binary:
        rules = {"keywords": {"idiot": 0.9}, "default": 0.2}
    else:
        rules = {"keywords": {"hate": [0.7, 0.2, 0.1], "idiot": [0.1, 0.8, 0.1]}, "default": [0.1, 0.1, 0.8]}
    ev = MockEvaluator(metric, threshold=threshold, info={"family": "encoder", "base": "fake"}, **rules)
    ev.calibration = replace(ev.calibration, temperature=1.3)  # applied, as the real Evaluator's
    return ev


def _rows(n=60, seed=0, binary=True):
    rng = np.random.default_rng(seed)
    words = ["idiot", "hate", "lovely", "hello"]
    rows = []
    for i in range(n):
        w = words[rng.integers(0, 4)]
        if binary:
            label = "true" if (w == "idiot") ^ (rng.random() < 0.1) else "false"
        else:
            label = {"hate": "hate_speech", "idiot": "offensive_language"}.get(w, "neither")
        rows.append({"id": str(i), "input": f"you {w} number {i}", "label": label})
    return rows


def test_evaluate_binary_report(tmp_path):
    metric = get_preset("toxicity")
    ev = _mock(metric, threshold=0.5)
    rows, train = _rows(60, 0), _rows(120, 1)
    judge = [r["label"] for r in rows]
    judge[0] = None  # one unanswered row
    cfg = ReportConfig(bootstrap=100, latency_rows=16)
    rep = evaluate(ev, rows, train_rows=train, config=cfg, extra_systems={"judge": judge})
    json.dumps(rep, allow_nan=False)
    assert rep["n"] == 60 and rep["n_train"] == 120
    assert rep["metric"]["name"] == "toxicity" and rep["metric"]["positive"] == "true"
    assert rep["evaluator"] == {"family": "encoder", "base": "fake", "temperature": 1.3, "threshold": 0.5}
    s = rep["student"]
    assert s["n"] == 60 and s["threshold"] == 0.5 and s["kappa"] > 0.5
    assert sum(map(sum, s["confusion"])) == 60
    assert set(rep["baselines"]) == {"majority", "tfidf_logreg"}
    j = rep["systems"]["judge"]  # the unanswered row counts as a disagreement (stats.judge_agreement)
    assert j["unanswered"] == 1 and j["answered"] == 59 and j["n"] == 60 and sum(map(sum, j["confusion"])) == 59
    assert 0.9 < j["kappa"] < 1.0 and j["accuracy"] == pytest.approx(59 / 60) and j["f1_macro"] == 1.0
    assert rep["reliability"]["confidence"] and rep["reliability"]["positive"]
    assert "reliability" not in s and "reliability" not in rep["baselines"]["majority"]
    assert rep["speed"]["rows_timed"] == 16 and rep["speed"]["best_rows_per_s"] > 0
    assert rep["settings"]["bootstrap"] == 100
    assert "predictions" not in json.dumps(rep)  # no per-row output
    line = summary_line(rep)
    assert line.startswith("held-out n=60  kappa ") and "tfidf kappa" in line and "majority kappa" in line


def test_write_report_three_files_with_svg(tmp_path):
    metric = get_preset("toxicity_3class")
    ev = _mock(metric)
    rows = _rows(45, 2, binary=False)
    probs = ev.predict_proba(rows)
    rep = evaluate(ev, rows, config=ReportConfig(bootstrap=50, latency_rows=8), extra_systems={"judge": probs})
    assert rep["baselines"] == {} and rep["systems"]["judge"]["kind"] == "probabilities"
    assert rep["reliability"]["positive"] is None
    paths = write_report(rep, tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == ["report.html", "report.json", "report.md"]
    assert json.loads(paths["json"].read_text())["n"] == 45
    md = paths["md"].read_text()
    assert "| student (encoder fake) |" in md and "Confusion matrix" in md and "per 1M" in md
    assert "$50,000.00 per 1M" in md
    html = paths["html"].read_text()
    assert html.count("<svg") >= 2 and 'aria-label="confusion matrix"' in html
    assert 'aria-label="reliability diagram"' in html
    # the confusion counts are drawn as SVG text; the matrix sums to n
    svg = html[html.index('aria-label="confusion matrix"'):]
    svg = svg[: svg.index("</svg>")]
    counts = [int(x) for x in re.findall(r'fill="#[0-9a-f]{6}">(\d+)</text>', svg)]
    assert len(counts) == 9 and sum(counts) == 45
    for block in re.findall(r"<svg.*?</svg>", html, flags=re.S):
        ET.fromstring(block)  # well-formed XML
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # self-contained
    assert "<script" not in html


def test_evaluate_bad_inputs():
    metric = get_preset("toxicity")
    ev = _mock(metric)
    with pytest.raises(AssayError):
        evaluate(ev, [], speed=False)
    rows = _rows(10)
    with pytest.raises(AssayError, match="predicted labels"):
        evaluate(ev, rows, speed=False, extra_systems={"judge": ["true"] * 9})
    with pytest.raises(AssayError, match="unknown|among"):
        evaluate(ev, rows, speed=False, extra_systems={"judge": ["maybe"] * 10})
    rows[3]["label"] = None
    with pytest.raises(AssayError, match="without a label"):
        evaluate(ev, rows, speed=False)

"""Drift and agreement per window: verdict rate, score shift (PSI/KS), weighted kappa vs reviewers, warnings."""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from assay.cli import cli
from assay.errors import AssayError
from assay.monitor import Monitor, RouteConfig, Store, drift, parse_window, review_label
from assay.monitor._drift import agreement
from assay.testing import MockEvaluator
from assay.traces import read_traces

HOUR = 3600.0


class Clock:
    def __init__(self, t=0.0):
        self.t = t

    def __call__(self):
        return self.t


def _run(store, scores_by_window, *, report=None, audit_rate=0.2):
    """One Monitor batch per window; trace i of window w gets the fixed score scores_by_window[w][i]."""
    fixed = {f"w{w}-{i}": s for w, scores in enumerate(scores_by_window) for i, s in enumerate(scores)}
    ev = MockEvaluator("pii", scores=fixed)
    clock = Clock()
    mon = Monitor([ev], store, RouteConfig(band=(0.3, 0.7), audit_rate=audit_rate), clock=clock)
    if report is not None:
        store.register_check("pii", "evaluator", spec=ev.metric.to_dict(), **report)
    for w, scores in enumerate(scores_by_window):
        clock.t = w * HOUR + 10
        mon.process(read_traces([{"id": f"w{w}-{i}", "input": f"text {w} {i}"} for i in range(len(scores))]).traces)
    return mon


def test_parse_window():
    assert parse_window("15m") == 900 and parse_window("1h") == 3600 and parse_window(30) == 30
    with pytest.raises(AssayError):
        parse_window("soon")


def test_score_shift_against_first_window_baseline(tmp_path):
    rng = random.Random(0)
    same = [[rng.betavariate(2, 5) for _ in range(400)] for _ in range(2)]
    shifted = [rng.betavariate(5, 2) for _ in range(400)]
    store = Store(tmp_path / "m.db")
    _run(store, same + [shifted])
    d = drift(store, "pii", window="1h")
    assert d["baseline"]["source"] == "first_window" and d["baseline"]["n"] == 400
    w0, w1, w2 = d["windows"]
    assert w0["psi"] == 0.0 and w1["psi"] < 0.1 and w2["psi"] > 0.5
    assert w1["ks_p"] > 0.01 and w2["ks_p"] < 1e-6
    assert w2["fail_rate"] > w0["fail_rate"]
    assert any("score distribution shifted" in x for x in d["warnings"])
    assert store.checks()["pii"]["baseline"]["source"] == "first_window"  # recorded once, reused
    store.close()


def test_baseline_from_artifact_report_bins(tmp_path):
    store = Store(tmp_path / "m.db")
    bins = [{"lo": i / 15, "hi": (i + 1) / 15, "count": 30 if i < 5 else 2} for i in range(15)]
    rng = random.Random(1)
    like_report = [rng.random() / 3 if rng.random() < 150 / 170 else 1 / 3 + rng.random() * 2 / 3 for _ in range(300)]
    _run(store, [like_report, [rng.random() for _ in range(300)]],
         report={"baseline": {"bins": bins}, "eval_kappa": 0.8})
    d = drift(store, "pii")
    assert d["baseline"]["source"] == "report" and d["eval_kappa"] == 0.8
    assert d["windows"][0]["psi"] < 0.25 < d["windows"][1]["psi"]
    store.close()


def test_agreement_weights_reviews_by_stratum():
    vs = ([{"route": "review", "route_reason": "uncertain", "label": "true", "review_label": "true"}] * 10
          + [{"route": "review", "route_reason": "audit", "label": "false", "review_label": "false"}] * 5
          + [{"route": "recorded", "route_reason": "pass", "label": "false", "review_label": None}] * 95)
    a = agreement(vs, ["true", "false"])
    assert a["reviews"] == 15 and a["audited"] == 5 and a["coverage"] == 1.0
    assert a["kappa"] == 1.0 and a["audit_agreement"] == 1.0
    # one audited pass that reviewers call PII counts for 20 passes of the population
    vs2 = vs[:10] + [dict(vs[10], review_label="true")] + vs[11:]
    a2 = agreement(vs2, ["true", "false"])
    assert a2["kappa"] < a2["kappa_reviewed"] < 1.0


def test_kappa_warning_when_agreement_drops(tmp_path):
    rng = random.Random(2)
    store = Store(tmp_path / "m.db")
    _run(store, [[rng.random() for _ in range(300)]], report={"eval_kappa": 0.9}, audit_rate=0.3)
    queue = store.review_queue(limit=None)
    assert len(queue) > 60
    for i, v in enumerate(queue):  # reviewers disagree with the evaluator on half the items
        review_label(store, v["id"], v["label"] if i % 2 else ("false" if v["label"] == "true" else "true"))
    d = drift(store, "pii", min_reviews=20, kappa_margin=0.1)
    w = d["windows"][0]
    assert w["reviews"] == len(queue) and w["kappa"] < 0.8
    assert any("agreement with reviewers fell" in x for x in d["warnings"])
    store.close()


def test_no_warning_when_reviewers_agree(tmp_path):
    rng = random.Random(3)
    store = Store(tmp_path / "m.db")
    _run(store, [[rng.random() for _ in range(300)]], report={"eval_kappa": 0.9}, audit_rate=0.3)
    for v in store.review_queue(limit=None):
        review_label(store, v["id"], v["label"])
    d = drift(store, "pii")
    assert d["overall"]["kappa"] == 1.0 and not [x for x in d["warnings"] if "agreement" in x]
    store.close()


def test_drift_cli(tmp_path):
    store = Store(tmp_path / "m.db")
    _run(store, [[0.1, 0.2, 0.9, 0.5]] * 2)
    store.close()
    r = CliRunner().invoke(cli, ["drift", "--db", str(tmp_path / "m.db"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert len(out["pii"]["windows"]) == 2 and out["pii"]["windows"][0]["n"] == 4
    r = CliRunner().invoke(cli, ["drift", "--db", str(tmp_path / "m.db"), "--metric", "nope"])
    assert r.exit_code == 2 and "has scored" in r.output


def test_audited_disagreement_is_compared_with_the_certified_routing_target(tmp_path):
    """An evaluator with a certified review region: the monitor routes by it, and drift warns when the
    audited automatic verdicts disagree with reviewers more often than the routing target."""
    from assay.evaluator import Calibration

    rng = random.Random(4)
    scores = {f"t{i}": rng.random() for i in range(400)}
    routing = {"target": 0.05, "delta": 0.1, "met": True, "n_rows": 500, "band": [0.2, 0.6], "margin": 1.0}
    ev = MockEvaluator("pii", scores=scores, threshold=0.4,
                       calibration=Calibration(threshold=0.4, n_rows=500, method="out-of-fold", routing=routing))
    store = Store(tmp_path / "m.db")
    mon = Monitor([ev], store, RouteConfig(audit_rate=0.3))
    mon.process(read_traces([{"id": t, "input": f"text {t}"} for t in scores]).traces)
    verdicts = {v["trace_id"]: v for v in store.verdicts("pii")}
    uncertain = {t for t, v in verdicts.items() if v["route_reason"] == "uncertain"}
    assert uncertain == {t for t, s in scores.items() if 0.2 <= s <= 0.6}  # the certified band, not 0.3-0.7
    audited = [v for v in store.review_queue(limit=None) if v["route_reason"] == "audit"]
    assert len(audited) >= 20
    for i, v in enumerate(audited):  # reviewers overturn one audited verdict in five: 20% > 5%
        review_label(store, v["id"], v["label"] if i % 5 else ("false" if v["label"] == "true" else "true"))
    d = drift(store, "pii", min_reviews=20)
    assert d["audit"]["target"] == 0.05 and d["audit"]["disagreement"] > 0.05
    assert any("above the routing target" in w for w in d["warnings"])
    store.close()


def test_ks_pvalue_is_one_for_identical_distributions_and_small_for_distant_ones():
    from assay.monitor._stats import ks_pvalue

    assert ks_pvalue(0.0, 200, 200) == 1.0  # the alternating series alone gives 0 here
    assert ks_pvalue(0.01, 200, 200) == 1.0
    assert 0.0 < ks_pvalue(0.1, 200, 200) < 1.0  # ~0.27: a small shift is not significant
    assert ks_pvalue(0.5, 200, 200) < 1e-6

"""One judge measurement (issue 24): the report, `tune-judge` and `measure_judge` give the judge the same
kappa on the same rows, with the one rule for rows it did not answer (a disagreement, counted)."""

from __future__ import annotations

import pytest

from assay.config import ReportConfig
from assay.judge import split_for_tuning, tune_judge
from assay.metrics import get_preset
from assay.providers import get_provider, measure_judge
from assay.report import evaluate
from assay.stats import judge_agreement
from assay.testing import MockEvaluator

METRIC = get_preset("toxicity")


def _rows(n: int) -> list[dict]:
    return [{"id": f"r{i}", "input": f"message number {i} about topic {i % 7}", "label": ("true", "false")[i % 2]}
            for i in range(n)]


def _judge():
    return get_provider("mock/judge", cache=False, options={"agree_with": "label", "accuracy": 0.85,
                                                             "refuse_rate": 0.2})


def test_report_and_tune_judge_give_the_judge_the_same_kappa_with_unanswered_rows():
    rows = _rows(160)
    # tune-judge: no revision round, so its final test measurement is the metric's own prompt on the test part
    tuned = tune_judge(METRIC, rows, _judge(), rounds=0, seed=0, bootstrap=200, group_by=None)
    test = split_for_tuning(METRIC, rows, seed=0, group_by=None).test
    start = tuned.report["final_test"]["start"]
    verdicts = [j.label for j in _judge().judge_many(METRIC, test)]
    unanswered = sum(v is None for v in verdicts)
    assert 0 < unanswered < len(test) and start["n"] == len(test) and start["answered"] == len(test) - unanswered

    # the report of an evaluator on the same rows, the judge's labels as another system
    ev = MockEvaluator(METRIC, keywords={"topic 3": 0.9}, default=0.2)
    report = evaluate(ev, test, config=ReportConfig(bootstrap=200, baselines=False), extra_systems={"judge": verdicts},
                      speed=False)
    judge = report["systems"]["judge"]
    assert judge["unanswered"] == unanswered and judge["answered"] == start["answered"] and judge["n"] == len(test)
    assert judge["kappa"] == pytest.approx(start["kappa"], abs=1e-4)
    assert judge["accuracy"] == pytest.approx(start["accuracy"], abs=1e-4)
    assert judge["ci"]["kappa"] == pytest.approx(start["interval"], abs=1e-4)

    # measure_judge (the teacher against people), and the one rule itself
    measured = measure_judge(METRIC, test, _judge(), bootstrap=200)
    assert measured["kappa"] == pytest.approx(start["kappa"], abs=1e-4) == measured["report"]["kappa"]
    assert measured["answered"] == start["answered"] and measured["unparseable"] + measured["failed"] == unanswered
    one = judge_agreement([r["label"] for r in test], verdicts, METRIC.labels)
    assert one["kappa"] == pytest.approx(judge["kappa"], abs=1e-6) and one["unanswered"] == unanswered

    # leaving the unanswered rows out would have read higher: the rule does not inflate kappa
    answered = [(r["label"], v) for r, v in zip(test, verdicts) if v is not None]
    left_out = judge_agreement([t for t, _ in answered], [v for _, v in answered], METRIC.labels)
    assert left_out["kappa"] > one["kappa"]


def test_a_judge_that_answers_nothing_agrees_no_better_than_chance():
    truth = ["true", "false", "true", "false"]
    a = judge_agreement(truth, [None] * 4, ["true", "false"], bootstrap=50)
    assert a["answered"] == 0 and a["unanswered"] == 4 and a["kappa"] == 0.0 and a["accuracy"] == 0.0
    assert judge_agreement([], [], ["true", "false"])["kappa"] is None
    with pytest.raises(ValueError):
        judge_agreement(truth, [None], ["true", "false"])

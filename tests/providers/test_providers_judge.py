"""The judge as teacher (label_rows, measure_judge) and the deterministic mock provider."""

from __future__ import annotations

import pytest

from assay.metrics import get_preset
from assay.providers import get_provider, label_rows, measure_judge
from assay.stats import agreement_kappa as cohen_kappa

BINARY = get_preset("toxicity")
THREE = get_preset("toxicity_3class")


def _rows(n: int = 40, labels=("true", "false")) -> list[dict]:
    return [{"id": f"r{i}", "input": f"message number {i} about topic {i % 7}", "label": labels[i % len(labels)]}
            for i in range(n)]


def mock(**options):
    return get_provider("mock/judge", cache=False, options=options)


def test_cohen_kappa_known_values():
    assert cohen_kappa(["a", "b", "a", "b"], ["a", "b", "a", "b"], ["a", "b"]) == pytest.approx(1.0)
    assert cohen_kappa(["a", "a", "b", "b"], ["a", "b", "a", "b"], ["a", "b"]) == pytest.approx(0.0)
    assert cohen_kappa(["a", "a"], ["a", "a"], ["a", "b"]) is None  # chance agreement is 1
    assert cohen_kappa([], [], ["a"]) is None
    sk = pytest.importorskip("sklearn.metrics")
    y, p = list("aabbbcca"), list("abbbccca")
    assert cohen_kappa(y, p, ["a", "b", "c"]) == pytest.approx(sk.cohen_kappa_score(y, p))


def test_label_rows_counts_every_row():
    rows = _rows(40)
    res = label_rows(BINARY, rows, mock(refuse_rate=0.25))
    s = res.summary()
    assert s["rows"] == 40 and len(res.rows) == 40 and len(res.judgments) == 40
    assert s["labeled"] + s["unparseable"] + s["failed"] == 40
    assert s["unparseable"] > 0 and s["labeled"] > 0 and s["failed"] == 0
    assert sum(s["label_counts"].values()) == s["labeled"] == len(res.labeled)
    assert [r["id"] for r in res.rows] == [r["id"] for r in rows]  # order kept
    for r, j in zip(res.rows, res.judgments):
        assert r["label"] == j.label and r["meta"]["judge"]["model"] == "mock/judge"
        assert r["meta"]["human_label"] in ("true", "false")
    assert rows[0]["label"] in ("true", "false") and "meta" not in rows[0]  # inputs untouched
    assert s["provider"]["requests"] == 40


def test_label_rows_on_unlabeled_rows_has_no_human_label():
    rows = [{"id": str(i), "input": f"text {i}"} for i in range(5)]
    res = label_rows(THREE, rows, mock())
    assert all("human_label" not in r["meta"] for r in res.rows)
    assert {r["label"] for r in res.rows} <= set(THREE.labels)
    assert res.summary()["with_probabilities"] == 5  # the mock gives logprobs


def test_measure_judge_kappa_against_people():
    rows = _rows(60)
    out = measure_judge(BINARY, rows, mock(agree_with="label", accuracy=0.8), bootstrap=50)
    assert out["n"] == 60 and out["answered"] == 60 and out["coverage"] == 1.0
    # recompute from a second, identical judge: same figures (the mock is deterministic)
    again = label_rows(BINARY, rows, mock(agree_with="label", accuracy=0.8))
    y_true = [r["label"] for r in rows]
    y_pred = [j.label for j in again.judgments]
    assert out["kappa"] == pytest.approx(cohen_kappa(y_true, y_pred, BINARY.labels))
    assert out["accuracy"] == pytest.approx(sum(a == b for a, b in zip(y_true, y_pred)) / 60)
    assert 0.3 < out["kappa"] < 1.0  # a decent, imperfect judge
    assert sum(sum(v.values()) for v in out["confusion"].values()) == 60
    assert out["label_source"] == "logprobs"
    assert "report" in out  # assay.report adds intervals and calibration

    perfect = measure_judge(BINARY, rows, mock(agree_with="label", accuracy=1.0), bootstrap=0)
    assert perfect["kappa"] == pytest.approx(1.0)
    blind = measure_judge(BINARY, rows, mock(), bootstrap=0)  # hash-based labels: agreement by chance
    assert abs(blind["kappa"]) < 0.4


def test_measure_judge_counts_rows_it_cannot_use():
    rows = _rows(30) + [{"id": "nolabel", "input": "no human label here"}]
    out = measure_judge(BINARY, rows, mock(agree_with="label", refuse_rate=0.3), bootstrap=0)
    assert out["rows_without_human_label"] == 1 and out["n"] == 30
    assert out["unparseable"] > 0 and out["answered"] + out["unparseable"] + out["failed"] == 30
    assert out["coverage"] == pytest.approx(out["answered"] / 30)


def test_mock_is_deterministic():
    a, b = mock(), mock()
    for seed in (0, 1):
        assert a.generate("write a row", seed=seed).text == b.generate("write a row", seed=seed).text
    assert a.generate("write a row", seed=0).text != a.generate("write a row", seed=1).text
    rows = _rows(12, THREE.labels)
    ja = [j.to_dict() for j in a.judge_many(THREE, rows)]
    jb = [j.to_dict() for j in b.judge_many(THREE, rows)]
    assert ja == jb
    other = get_provider("mock/another-judge", cache=False)
    assert [j.to_dict() for j in other.judge_many(THREE, rows)] != ja  # the model name is part of the seed
    assert a.stats.cost_usd == 0 and a.stats.input_tokens > 0

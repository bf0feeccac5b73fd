"""Issue 26 (item 3): a retrain from reviews counts what it used. Reviewed rows that repeat the version's
held-out rows are left out (they would leak), those it already trained on add nothing; the counts are in
the run (API / CLI) and in the new report, and with nothing new no run is queued."""

from __future__ import annotations

from pathlib import Path

import pytest
from _registry_util import add_reviews, fake_worker, finished_run

from assay import retrain
from assay.errors import AssayError
from assay.monitor import Store
from assay.report import Report


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "monitor.db")
    yield s
    s.close()


def _rows(reg, version, tmp: Path):
    run = reg.runs.get(version.run_id)
    cfg = reg.runs.resolve_config(run, tmp / "prev", tmp / "prev" / "out")
    held = list(cfg.prepare_test_set().split.held_out)
    train = reg.datasets.rows(run.config["data"]["train_set"].split(":", 1)[1])
    return held, train


def test_reviews_already_trained_on_or_held_out_are_counted_never_claimed(reg, store, tmp_path):
    v1 = reg.metrics.register(finished_run(reg), "toxicity")
    held, train = _rows(reg, v1, tmp_path)
    stale = [(held[0]["input"], held[0]["label"]), (train[0]["input"], train[0]["label"])]
    add_reviews(store, rows=stale)
    runs = len(reg.runs.list())
    with pytest.raises(AssayError) as err:  # nothing new: no run, and the reason in numbers
        retrain("toxicity", store=store, registry=reg)
    e = err.value
    assert e.code == "no_new_reviews" and "0 new of 2 reviewed verdicts" in e.found
    assert "1 already training rows of toxicity-v1" in e.found and "1 left out" in e.found
    assert len(reg.runs.list()) == runs

    add_reviews(store, rows=[("zqxbrand new review one", "true"), ("zqxbrand new review two", "false")])
    run = retrain("toxicity", store=store, registry=reg)
    assert run.retrain_of["reviews"] == {"reviewed": 4, "new": 2, "already_trained": 1, "held_out": 1,
                                         "checked": True}
    ds = reg.datasets.get(run.retrain_of["reviewed_dataset"])
    assert ds.rows == 3 and held[0]["input"] not in {r["input"] for r in reg.datasets.rows(ds.id)}

    w = fake_worker(reg)
    assert w.execute(reg.runs.claim(w.worker_id, run_id=run.id)).status.value == "fine_tuned"
    new = Report.from_dict(reg.runs.report(run.id))
    said = "retrain from reviews: 2 new of 4 reviewed verdicts (1 already training rows of toxicity-v1"
    assert new.notes[0].startswith(said) and new.comparison.notes[0].startswith(said)
    assert (new.comparison.model_extra or {})["reviews"]["new"] == 2
    assert said in reg.runs.report(run.id, "md") and "4 reviewed verdicts are not among" not in reg.runs.report(
        run.id, "md")

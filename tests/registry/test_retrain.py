"""Retrain from reviews (issue #12): reviewed verdicts folded into a new run of the same registered metric,
the new report compared with the previous version on identical rows, and one-step registration as -v2."""

from __future__ import annotations

from pathlib import Path

import pytest
from _registry_util import REVIEWED, add_reviews, fake_worker, finished_run

from assay import retrain
from assay.data import row_hash, rows_hash
from assay.errors import AssayError
from assay.monitor import Store
from assay.report import Report


@pytest.fixture
def v1(reg):
    """toxicity-v1 registered from a mock-trained run in project demo."""
    m = reg.metrics.register(finished_run(reg), "toxicity")
    assert m.full_name == "toxicity-v1"
    return m


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "monitor.db")
    yield s
    s.close()


def _held_out(reg, run_id: str, tmp: Path) -> list[dict]:
    cfg = reg.runs.resolve_config(reg.runs.get(run_id), tmp / run_id, tmp / run_id / "out")
    return list(cfg.prepare_test_set().split.held_out)


def test_retrain_folds_reviews_compares_on_identical_rows_and_registers_v2(reg, v1, store, tmp_path):
    add_reviews(store)
    run = retrain("toxicity", store=store, registry=reg)

    # a new run of the same metric in the same project, with what it came from
    assert run.status.value == "queued" and run.project_id == v1.project_id and run.metric_name == "toxicity"
    assert run.retrain_of["version"] == "toxicity-v1" and run.retrain_of["run_id"] == v1.run_id
    assert run.retrain_of["reviewed_rows"] == len(REVIEWED)
    prev_cfg = reg.runs.get(v1.run_id).config
    assert run.config["data"]["test_set"] == prev_cfg["data"]["test_set"]  # same test set -> same split
    assert run.config["data"]["train_set"] == prev_cfg["data"]["train_set"]
    assert run.config["data"]["extra_train_sets"] == [f"dataset:{run.retrain_of['reviewed_dataset']}"]

    # the reviewed verdicts are a train dataset with the people's labels
    ds = reg.datasets.get(run.retrain_of["reviewed_dataset"])
    assert ds.kind == "train" and ds.project_id == v1.project_id and ds.rows == len(REVIEWED)
    stored = {r["input"]: r["label"] for r in reg.datasets.rows(ds.id)}
    assert stored == dict(REVIEWED)

    w = fake_worker(reg)
    done = w.execute(reg.runs.claim(w.worker_id, run_id=run.id))
    assert done.status.value == "fine_tuned", done.failure_reason

    # held-out rows unchanged, and no reviewed row among them
    before, after = _held_out(reg, v1.run_id, tmp_path), _held_out(reg, run.id, tmp_path)
    assert rows_hash(before) == rows_hash(after) and len(before) > 20
    assert not {row_hash({"input": t}) for t, _ in REVIEWED} & {row_hash(r) for r in after}

    old, new = Report.from_dict(reg.runs.report(v1.run_id)), Report.from_dict(reg.runs.report(run.id))
    assert new.n_train == old.n_train + len(REVIEWED)  # the reviewed rows were trained on
    comp = new.comparison
    assert comp is not None and comp.previous == "toxicity-v1" and comp.skipped is None
    held = comp.sets["held_out"]
    assert held.n == len(before) == new.n and held.rows_hash == rows_hash(before)
    # both versions' figures on those identical rows: each equals that version's own held-out report
    assert held.previous.kappa == pytest.approx(old.kappa) and held.new.kappa == pytest.approx(new.kappa)
    assert held.previous.f1_macro == pytest.approx(old.student.f1_macro)
    assert held.new.auroc == pytest.approx(new.student.auroc)
    assert held.delta["kappa"] == pytest.approx(new.kappa - old.kappa)
    assert held.delta["f1_macro"] == pytest.approx(new.student.f1_macro - old.student.f1_macro)
    md, html = reg.runs.report(run.id, "md"), reg.runs.report(run.id, "html")
    assert "## Compared with the previous version" in md and "toxicity-v1 (previous)" in md
    assert f"{held.delta['kappa']:+.3f}" in md and "Compared with the previous version" in html
    assert "vs toxicity-v1: kappa" in new.headline()

    # one step: no name needed, the next version of the same metric
    m = reg.metrics.register(run.id)
    assert m.full_name == "toxicity-v2" and m.run_id == run.id
    assert [v.full_name for v in reg.metrics.get("toxicity").versions] == ["toxicity-v1", "toxicity-v2"]

    # a second retrain replaces the first one's reviews dataset (reviews are cumulative), never stacks it
    add_reviews(store, rows=[("zqxreviewed one more", "true")])
    again = retrain("toxicity", store=store, registry=reg)
    assert again.retrain_of["version"] == "toxicity-v2" and again.retrain_of["reviewed_rows"] == len(REVIEWED) + 1
    assert again.config["data"]["extra_train_sets"] == [f"dataset:{again.retrain_of['reviewed_dataset']}"]


def test_no_reviews_is_a_clear_error_and_queues_nothing(reg, v1, store, tmp_path):
    runs, datasets = len(reg.runs.list()), len(reg.datasets.list("demo"))
    with pytest.raises(AssayError) as err:
        retrain("toxicity", store=store, registry=reg)
    e = err.value
    assert e.code == "no_reviews" and "0 reviewed verdicts" in e.found and "assay review label" in e.fix
    assert "reviewed verdicts of 'toxicity'" in e.expected
    with pytest.raises(AssayError) as missing:  # no monitor database at all: the same error, naming the path
        retrain("toxicity", monitor_db=tmp_path / "nowhere.db", registry=reg)
    assert missing.value.code == "no_reviews" and "nowhere.db (no such file)" in missing.value.found
    assert len(reg.runs.list()) == runs and len(reg.datasets.list("demo")) == datasets


def test_reviews_of_another_projects_metric_are_not_read(reg, v1, store):
    """Two projects with the same preset: the monitor's 'toxicity' verdicts belong to demo's metric."""
    add_reviews(store)
    reg.projects.create("alpha")
    other = reg.metrics.register(finished_run(reg, "alpha"), "tox-alpha")
    with pytest.raises(AssayError) as err:
        retrain("tox-alpha", store=store, registry=reg)
    assert err.value.code == "no_reviews"
    assert not [r for r in reg.runs.list("alpha") if r.retrain_of]
    assert other.project_id != v1.project_id


def test_register_without_a_name_needs_a_retrain(reg):
    run_id = finished_run(reg)
    with pytest.raises(AssayError) as err:
        reg.metrics.register(run_id)
    assert err.value.code == "invalid_input" and "not a retrain" in err.value.found

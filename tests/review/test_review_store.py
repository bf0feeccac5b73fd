"""The one review store: every backend (monitor verdicts, a registry dataset's review sample, a generated
set's review.jsonl) records and reads decisions through the same ``ReviewStore`` API, and the old entry points
(``Store.add_review``, ``reg.datasets.decide``, ``ReviewLog.record``) write through it."""

from __future__ import annotations

import json

import pytest
from _registry_util import add_binary_datasets

from assay.errors import AssayError
from assay.monitor import Store, Verdict
from assay.review import (DatasetReviews, Decision, ReviewLog, ReviewStore, VerdictReviews, check_decision,
                          pick_for_review)


def _verdict_store(tmp_path):
    s = Store(tmp_path / "m.db")
    s.register_check("tox", "evaluator", spec={"name": "tox", "labels": ["true", "false"]})
    vid = s.add_verdict(Verdict("t1", "tox", "evaluator", "true", False, score=0.9, confidence=0.9,
                                row={"id": "t1", "input": "x"}), "review", "uncertain")
    return s, vid


def test_verdict_reviews_are_the_monitor_store_s_reviews(tmp_path):
    s, vid = _verdict_store(tmp_path)
    reviews = s.review_store
    assert isinstance(reviews, VerdictReviews) and isinstance(reviews, ReviewStore)
    rid = s.add_review(vid, "false", " ana ", "looks fine")  # the old entry point writes through the store
    [d] = reviews.record([vid], label="true", reviewer="judge:mock")
    assert (d.id, d.decision, d.label, d.reviewer, d.review_id) == (vid, "label", "true", "judge:mock", rid + 1)
    hist = reviews.history([vid])
    assert [(h.reviewer, h.label, h.reason) for h in hist] == [("ana", "false", "looks fine"),
                                                               ("judge:mock", "true", None)]
    assert reviews.history() == hist and reviews.latest()[vid] == hist[-1]
    assert [r["id"] for r in s.reviews(vid)] == [h.review_id for h in hist]
    got = s.verdict(vid)  # the judge's label is not a person's: the consensus is ana's
    assert (got["review_label"], got["judges"]) == ("false", {"judge:mock": "true"})
    with pytest.raises(AssayError):
        reviews.record([vid], "accept")
    s.close()


def test_dataset_reviews_are_the_registry_s_review_items(reg):
    _, tr = add_binary_datasets(reg, "demo", 20, 30)
    items = reg.datasets.start_review(tr, n=5)
    reviews = reg.datasets.review_store
    assert isinstance(reviews, DatasetReviews) and isinstance(reviews, ReviewStore)
    assert [i.position for i in items] == pick_for_review(tr, 30, 5)
    reg.datasets.decide(items[0].id, "reject", reviewer="ann", note="off-topic")
    [d] = reviews.record([items[1].id], "relabel", label="false", reviewer="bo")
    assert (d.id, d.decision, d.label, d.reviewer) == (items[1].id, "relabel", "false", "bo")
    reviews.record([items[0].id], "accept")  # the latest decision counts
    assert [(h.id, h.decision) for h in reviews.history()] == [(items[0].id, "reject"), (items[1].id, "relabel"),
                                                                (items[0].id, "accept")]
    got = {i.id: i for i in reg.datasets.review_items(tr)}
    assert (got[items[0].id].decision, got[items[1].id].label) == ("accept", "false")
    assert reviews.dataset_of(items[0].id) == tr and reviews.dataset_of("nope") is None
    with pytest.raises(AssayError, match="a decision among"):
        reviews.record([items[0].id], "maybe")


def test_the_review_log_is_a_review_store(tmp_path):
    log = ReviewLog(tmp_path)
    assert isinstance(log, ReviewStore)
    log.write_sample([{"id": "r1", "input": "a", "label": "true"}, {"id": "r2", "input": "b", "label": "false"}])
    log.record(["r1"], "regenerate", "too repetitive")  # the old spelling of a reject with a reason
    [d] = log.record(["r2"], "relabel", label="true", reviewer="ann")
    assert (d.id, d.decision, d.label, d.reviewer, d.review_id) == ("r2", "relabel", "true", "ann", None)
    lines = [json.loads(x) for x in (tmp_path / "review.jsonl").read_text().splitlines()]
    assert lines[0]["decision"] == "reject" and "reviewer" not in lines[0] and lines[1]["reviewer"] == "ann"
    assert {k: v.decision for k, v in log.latest().items()} == {"r1": "reject", "r2": "relabel"}
    assert [h.id for h in log.history(["r2"])] == ["r2"] and log.feedback() == ["too repetitive (1 row)"]
    assert isinstance(log.history()[0], Decision) and log.history()[0].to_dict()["row"] == {"input": "a"}


def test_one_decision_vocabulary():
    assert check_decision("relabel") == "relabel"
    with pytest.raises(AssayError, match="accept the label, reject the row, or relabel it"):
        check_decision("regenerate")  # an alias only the review log reads
    assert pick_for_review("ds", 10, 3) == pick_for_review("ds", 10, 3) and len(pick_for_review("ds", 10, 0)) == 1
    assert pick_for_review("ds", 0, 3) == []

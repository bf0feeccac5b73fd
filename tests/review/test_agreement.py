"""Several reviewers per verdict: every label kept, one current label per reviewer, the people's label
(majority; ties to the disagreement queue), human-vs-human / judge-vs-human / student-vs-human agreement."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from assay.cli import cli
from assay.monitor import Store, Verdict
from assay.monitor._store import MIGRATIONS
from assay.review import agreement_report, consensus, golden_rows, krippendorff_alpha, pairwise_agreement
from assay.review import export as export_golden
from assay.review import label as review_label

LABELS = ["true", "false"]


def _store(tmp_path, n=6, evaluator=("true", "true", "false", "false", "true", "false")):
    s = Store(tmp_path / "m.db")
    s.register_check("tox", "evaluator", spec={"name": "tox", "labels": LABELS})
    ids = [s.add_verdict(Verdict(f"t{i}", "tox", "evaluator", evaluator[i], evaluator[i] == "false", score=0.5,
                                 confidence=0.5, row={"id": f"t{i}", "input": f"text {i}"}), "review", "uncertain")
           for i in range(n)]
    return s, ids


def test_every_label_is_kept_and_a_reviewer_replaces_only_their_own(tmp_path):
    s, ids = _store(tmp_path)
    v = ids[0]
    out = review_label(s, f"#{v}", "true", reviewer="ana")
    assert (out["consensus"], out["review_status"], out["replaced"]) == ("true", "single", None)
    out = review_label(s, f"#{v}", "false", reviewer="bo")
    assert (out["consensus"], out["review_status"], out["reviewers"]) == (None, "tie", 2)
    out = review_label(s, f"#{v}", "false", reviewer=" ana ")  # ana changes her mind: replaces her label
    assert (out["replaced"], out["consensus"], out["review_status"]) == ("true", "false", "unanimous")
    assert [(r["reviewer"], r["label"]) for r in s.reviews(v)] == [("ana", "true"), ("bo", "false"), ("ana", "false")]
    got = s.verdict(v)
    assert {r["reviewer"]: r["label"] for r in got["reviews"]} == {"ana": "false", "bo": "false"}
    # reviews without a name are one reviewer, "anonymous": the latest wins, as before several reviewers
    review_label(s, f"#{ids[1]}", "true")
    review_label(s, f"#{ids[1]}", "false")
    got = s.verdict(ids[1])
    assert (got["review_label"], got["review_status"], len(got["reviews"])) == ("false", "single", 1)
    assert len(s.reviews(ids[1])) == 2
    s.close()


def test_consensus_rule():
    assert consensus([]) == (None, "unreviewed")
    assert consensus(["a"]) == ("a", "single")
    assert consensus(["a", "a"]) == ("a", "unanimous")
    assert consensus(["a", "b", "a"]) == ("a", "majority")
    assert consensus(["a", "b"]) == (None, "tie")
    assert consensus(["a", "b", "c"]) == (None, "tie")
    assert consensus(["a", "a", "b", "b", "c"]) == (None, "tie")


def test_pairwise_kappa_and_alpha_on_a_hand_checked_example():
    # ana: a a b b; bo: a b b b. po = 3/4; pe = (2/4)(1/4) + (2/4)(3/4) = 1/2; kappa = (3/4 - 1/2) / (1/2) = 0.5
    units = [{"ana": "a", "bo": "a"}, {"ana": "a", "bo": "b"}, {"ana": "b", "bo": "b"}, {"ana": "b", "bo": "b"},
             {"ana": "a", "cy": "a"}]  # cy shares one verdict with ana only, none with bo
    pairs = {tuple(p["reviewers"]): p for p in pairwise_agreement(units, ["a", "b"], n_boot=200)}
    assert set(pairs) == {("ana", "bo"), ("ana", "cy")}
    ab = pairs[("ana", "bo")]
    assert ab["n"] == 4 and ab["kappa"] == pytest.approx(0.5) and ab["accuracy"] == pytest.approx(0.75)
    lo, hi = ab["kappa_interval"]
    assert lo <= 0.5 <= hi
    assert pairs[("ana", "cy")]["kappa"] is None  # one shared verdict, one label: chance agreement is total
    # Krippendorff's alpha (nominal) of the first four: coincidences o = [[2, 1], [1, 4]], n_a = 3, n_b = 5, n = 8:
    # alpha = 1 - (n - 1) * (o_ab + o_ba) / (n^2 - n_a^2 - n_b^2) = 1 - 7 * 2 / 30 = 0.5333...
    a = krippendorff_alpha([list(u.values()) for u in units[:4]], ["a", "b"], n_boot=300)
    assert a["units"] == 4 and a["alpha"] == pytest.approx(1 - 14 / 30, abs=1e-6)
    assert a["alpha_interval"][0] <= a["alpha"] <= a["alpha_interval"][1]
    # three reviewers on one verdict count too; a unit with one label does not
    assert krippendorff_alpha([["a", "a", "b"], ["b"], ["b", "b"]], ["a", "b"])["units"] == 2
    assert krippendorff_alpha([["a", "a"]], ["a", "b"])["alpha"] is None  # undefined: no expected disagreement


def test_disagreements_land_in_the_queue_and_leave_once_decided(tmp_path):
    s, ids = _store(tmp_path)
    review_label(s, f"#{ids[0]}", "true", reviewer="ana")
    review_label(s, f"#{ids[0]}", "false", reviewer="bo")
    review_label(s, f"#{ids[1]}", "true", reviewer="ana")
    review_label(s, f"#{ids[1]}", "true", reviewer="bo")
    review_label(s, f"#{ids[2]}", "true", reviewer="ana")
    review_label(s, f"#{ids[2]}", "false", reviewer="judge:mock/judge")  # a judge never makes a disagreement
    assert [v["id"] for v in s.disagreements("tox")] == [ids[0]]
    item = s.disagreements()[0]
    assert {r["reviewer"]: r["label"] for r in item["reviews"]} == {"ana": "true", "bo": "false"}
    assert item["review_label"] is None and item["review_status"] == "tie"
    assert ids[0] not in {v["id"] for v in s.review_queue("tox")}  # labeled: not pending in the review queue
    assert ids[0] not in {v["id"] for v in s.reviewed("tox")}  # no people's label yet
    review_label(s, f"#{ids[0]}", "false", reviewer="cy")  # the deciding review
    assert s.disagreements("tox") == []
    settled = s.disagreements("tox", pending=False)  # still listed among the disagreements a majority settled
    assert [(v["id"], v["review_label"], v["review_status"]) for v in settled] == [(ids[0], "false", "majority")]
    s.close()


def test_golden_set_uses_the_majority_and_leaves_ties_out(tmp_path):
    s, ids = _store(tmp_path)
    for vid, labels in ((ids[0], {"ana": "true", "bo": "false"}),            # tie: out
                        (ids[1], {"ana": "true", "bo": "false", "cy": "false"}),  # majority false
                        (ids[2], {"ana": "true"}),                               # single
                        (ids[3], {"judge:x": "true"})):                          # a judge only: out
        for who, lab in labels.items():
            review_label(s, f"#{vid}", lab, reviewer=who)
    counts: dict[str, int] = {}
    rows = {r["id"]: r for r in golden_rows(s, "tox", counts)}
    assert set(rows) == {"t1", "t2"} and counts["no_consensus"] == 1
    assert rows["t1"]["label"] == "false" and rows["t1"]["meta"]["review"]["agreement"] == "majority"
    assert rows["t1"]["meta"]["review"]["reviewers"] == {"ana": "true", "bo": "false", "cy": "false"}
    assert rows["t2"]["label"] == "true" and "reviewers" not in rows["t2"]["meta"]["review"]
    res = export_golden(s, "tox", out=tmp_path / "golden.jsonl")
    assert res["rows"] == 2 and res["no_consensus"] == 1 and res["labels"] == {"false": 1, "true": 1}
    assert ids[3] in {v["id"] for v in s.review_queue("tox")}  # a judge's label leaves it pending for people
    s.close()


def test_agreement_report_human_judge_student(tmp_path):
    # evaluator: T T F F T F
    s, ids = _store(tmp_path)
    people = {"ana": ["true", "true", "false", "false", "true", "true"],
              "bo": ["true", "false", "false", "false", "true", "true"]}
    for who, labs in people.items():
        for vid, lab in zip(ids, labs):
            review_label(s, f"#{vid}", lab, reviewer=who)
    review_label(s, f"#{ids[1]}", "true", reviewer="cy")  # breaks the tie on t1: majority true
    for vid, lab in zip(ids, ["true", "true", "false", "true", "true", "true"]):
        review_label(s, f"#{vid}", lab, reviewer="judge:mock/j")
    rep = agreement_report(s, "tox", n_boot=200)
    h = rep["human_vs_human"]
    assert h["verdicts"] == 6 and h["reviewers"] == ["ana", "bo", "cy"]
    assert (h["unanimous"], h["majority"], h["ties"]) == (5, 1, 0)
    ab = next(p for p in h["pairs"] if p["reviewers"] == ["ana", "bo"])
    # ana T T F F T T vs bo T F F F T T: po = 5/6; ana true 4/6, bo true 3/6: pe = 4/6*3/6 + 2/6*3/6 = 1/2
    assert ab["n"] == 6 and ab["kappa"] == pytest.approx((5 / 6 - 0.5) / 0.5, abs=1e-6)
    assert h["alpha"] is not None and h["alpha_interval"] is not None
    # people's label: T T F F T T; student T T F F T F -> po 5/6, pe = 4/6*3/6 + 2/6*3/6 = 1/2
    st = rep["student_vs_human"]
    assert st["n"] == 6 and st["kappa"] == pytest.approx((5 / 6 - 0.5) / 0.5, abs=1e-6)
    assert st["accuracy"] == pytest.approx(5 / 6, abs=1e-6) and st["kappa_vs_reviewers"] is not None
    [j] = rep["judge_vs_human"]
    # judge T T F T T T vs people T T F F T T: po 5/6, pe = 5/6*4/6 + 1/6*2/6 = 22/36
    assert j["judge"] == "judge:mock/j" and j["n"] == 6 and j["judged"] == 6
    assert j["kappa"] == pytest.approx((5 / 6 - 22 / 36) / (1 - 22 / 36), abs=1e-6)
    assert rep["reviewed"] == 6 and "tie" in rep["rule"]
    s.close()


def test_an_old_store_keeps_working(tmp_path):
    """A store written before several reviewers (anonymous and named single reviews) reads as before."""
    path = tmp_path / "old.db"
    s = Store(path)
    assert s.version() == MIGRATIONS[-1].version  # no schema change was needed for several reviewers
    s.close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO checks (name, kind, spec_json, updated_at) VALUES ('tox', 'evaluator', ?, 0)",
               (json.dumps({"labels": LABELS}),))
    db.execute("INSERT INTO verdicts (trace_id, metric, kind, label, passed, route, route_reason, created_at)"
               " VALUES ('t0', 'tox', 'evaluator', 'true', 0, 'review', 'uncertain', 1)")
    db.execute("INSERT INTO reviews (verdict_id, label, reviewer, note, created_at) VALUES (1, 'true', NULL, NULL, 2)")
    db.execute("INSERT INTO reviews (verdict_id, label, reviewer, note, created_at) VALUES (1, 'false', '', NULL, 3)")
    db.commit()
    db.close()
    s = Store(path)
    [v] = s.reviewed("tox")
    assert (v["review_label"], v["review_status"]) == ("false", "single") and s.disagreements() == []
    s.close()


def test_cli_disagreements_and_agreement(tmp_path):
    s, ids = _store(tmp_path)
    review_label(s, f"#{ids[0]}", "true", reviewer="ana")
    review_label(s, f"#{ids[0]}", "false", reviewer="bo")
    s.close()
    db = str(tmp_path / "m.db")
    r = CliRunner().invoke(cli, ["review", "disagreements", "--db", db, "--json"])
    assert r.exit_code == 0, r.output
    [item] = json.loads(r.output)
    assert item["id"] == ids[0] and item["reviews"] == {"ana": "true", "bo": "false"} and item["status"] == "tie"
    r = CliRunner().invoke(cli, ["review", "disagreements", "--db", db])
    assert "ana=true" in r.output and "bo=false" in r.output
    r = CliRunner().invoke(cli, ["review", "label", f"#{ids[0]}", "true", "--db", db, "--reviewer", "cy", "--json"])
    assert json.loads(r.output)["consensus"] == "true"
    r = CliRunner().invoke(cli, ["review", "disagreements", "--db", db, "--json"])
    assert json.loads(r.output) == []
    r = CliRunner().invoke(cli, ["review", "agreement", "--db", db, "--metric", "tox", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["human_vs_human"]["verdicts"] == 1 and rep["student_vs_human"]["n"] == 1
    r = CliRunner().invoke(cli, ["review", "agreement", "--db", db, "--metric", "nope"])
    assert r.exit_code == 2 and "error: expected" in r.output


def test_record_judge_labels_stores_judge_reviews(tmp_path):
    """The monitor calls no judge itself; record_judge_labels asks one (here the deterministic mock provider)
    about the verdicts people reviewed and stores its labels as reviews by judge:<provider id>."""
    from assay.metrics import load_metric
    from assay.review import record_judge_labels
    from assay.providers import get_provider

    spec = load_metric("toxicity").to_dict()
    s = Store(tmp_path / "m.db")
    s.register_check(spec["name"], "evaluator", spec={**spec, "routing": {"target": 0.1}})
    ids = [s.add_verdict(Verdict(f"t{i}", spec["name"], "evaluator", "true", False, score=0.6, confidence=0.6,
                                 row={"id": f"t{i}", "input": f"message number {i}"}), "review", "uncertain")
           for i in range(5)]
    for vid in ids[:3]:
        review_label(s, f"#{vid}", "true", reviewer="ana")
    provider = get_provider("mock/judge-a", cache=False)
    out = record_judge_labels(s, spec["name"], provider)
    assert out["judge"] == "judge:mock/judge-a" and out["asked"] == 3 and out["stored"] == 3
    assert record_judge_labels(s, spec["name"], provider)["asked"] == 0  # judged once
    judged = [s.verdict(v)["judges"] for v in ids]
    assert all(set(j) == {"judge:mock/judge-a"} for j in judged[:3]) and judged[3:] == [{}, {}]
    assert all(s.verdict(v)["review_status"] == "single" for v in ids[:3])  # a judge is not a person
    [j] = agreement_report(s, spec["name"], n_boot=0)["judge_vs_human"]
    assert j["judge"] == "judge:mock/judge-a" and j["n"] == 3
    s.close()

"""tune_judge on real rows (the PII file) with a scripted provider whose judge follows the rules in its prompt."""

from __future__ import annotations

import json

import pytest
from _judge_util import ScriptedProvider, pii_metric, pii_prompt

from assay.data import read_records, row_hash, split_test_set
from assay.errors import AssayError
from assay.judge import split_for_tuning, tune_judge
from assay.metrics import load_metric
from conftest import SHARED_DATA  # tests/fixtures/data unless ASSAY_SHARED_DATA is set

WEAK = ["email"]
BETTER = ["email", "phone", "card", "ssn", "iban", "ip"]
BEST = BETTER + ["address", "name"]


def _wrap(prompt: str) -> str:
    return f"Here is the revised prompt.\n<prompt>\n{prompt}\n</prompt>\nIt adds the missing identifier kinds."


@pytest.fixture(scope="module")
def pii_rows():
    rows = [dict(r) for r in read_records(SHARED_DATA / "pii_presidio_synth.jsonl")][:1500]
    split = split_test_set(rows, "message")  # the seeds as `assay train` makes them; held out never used here
    return split.seeds, split.held_out


@pytest.fixture(scope="module")
def tuned(pii_rows):
    seeds, _ = pii_rows
    broken = pii_prompt(BETTER).replace("{input}", "the text")
    provider = ScriptedProvider(revisions=[_wrap(broken), _wrap(pii_prompt(BETTER)), _wrap(pii_prompt(BEST)),
                                           _wrap(pii_prompt(BETTER))])
    # template-generated rows: siblings of one template share long prefixes, so they stay in one part
    result = tune_judge(pii_metric(WEAK), seeds, provider, rounds=3, candidates=2, seed=0, bootstrap=300,
                        group_by="template_id")
    return result, provider


def test_weak_prompt_improves_on_validation_and_on_unseen_test_rows(tuned):
    result, _ = tuned
    rep = result.report
    val = [r["best_validation"]["kappa"] for r in rep["rounds"]]
    assert val[0] < 0.15  # the weak start: flags emails only
    assert val[-1] > val[0] + 0.2 and val == sorted(val)  # the kept prompt never gets worse on validation
    assert result.improved and "address, name" in result.metric.prompt and result.metric.name == "pii"
    start, chosen = rep["final_test"]["start"], rep["final_test"]["chosen"]
    assert chosen["kappa"] > start["kappa"] + 0.2
    assert chosen["n"] == rep["rows"]["test"]["n"] > 50
    assert len(start["interval"]) == 2 and start["interval"][0] <= start["kappa"] <= start["interval"][1]
    json.dumps(rep)  # serialisable as it is


def test_final_rows_were_never_shown_judged_or_selected_on_before_the_end(tuned, pii_rows):
    result, provider = tuned
    rows = result.report["rows"]
    test = set(rows["test"]["hashes"])
    shown, val, train = set(rows["shown_to_provider"]["hashes"]), set(rows["validation"]["hashes"]), set(rows["train"]["hashes"])
    assert shown and shown <= train
    assert not test & (shown | val | train) and not val & train and rows["test_rows_shown_or_selected_on"] == 0
    held_out = {row_hash(r) for r in pii_rows[1]}
    assert not held_out & (test | val | train)  # only seeds are used
    # what the provider saw as a writer: no validation or test row text
    writes = [e for e in provider.log if e["kind"] == "write"]
    texts = {e["row_hash"]: e["text"] for e in provider.log if e["kind"] == "judge"}
    seen = " ".join(" ".join(w["prompt"].split()) for w in writes)
    checked = 0
    for h in test | val:
        t = " ".join(texts[h].split())[:300]  # rows are shown clipped to 400 characters
        if len(t) >= 24:  # short texts ("What are my options?") may repeat inside longer rows
            assert f"input: {t}" not in seen, t
            checked += 1
    assert checked > 50
    # the test rows are judged exactly twice each (start and chosen prompt), after the last revision
    on_test = [e for e in provider.log if e["kind"] == "judge" and e["row_hash"] in test]
    assert len(on_test) == 2 * rows["test"]["n"]  # (repeated texts share a hash)
    assert min(e["step"] for e in on_test) > max(e["step"] for e in writes)
    assert len({e["template_sha"] for e in on_test}) == 2


def test_every_candidate_is_recorded_and_broken_placeholders_are_rejected(tuned):
    result, _ = tuned
    cands = result.report["candidates"]
    assert cands[0]["source"] == "start" and all(c["prompt"] for c in cands)
    broken = [c for c in cands if c["status"] == "rejected" and "drops {input}" in (c["reason"] or "")]
    assert len(broken) == 1 and broken[0]["round"] == 1 and broken[0]["validation"] is None
    assert any(c["reason"] == "the same prompt as an earlier candidate" for c in cands)
    assert any(c["source"] == "fewshot" and c["status"] == "scored" for c in cands)
    assert sum(c["chosen"] for c in cands) >= 2  # the start, then each improvement
    assert result.report["rounds"][1]["rejected"] >= 1


def test_write_gives_a_loadable_metric_and_reports(tuned, tmp_path):
    result, _ = tuned
    files = result.write(tmp_path)
    spec = load_metric(files["metric"])
    assert spec == result.metric and spec.prompt != result.start.prompt
    assert json.loads(open(files["report"]).read())["chosen_prompt_sha256"] == result.report["chosen_prompt_sha256"]
    md = open(files["markdown"]).read()
    assert "Final figures" in md and "| chosen |" in md and "rejected: breaks the placeholders" in md


def test_budget_stops_the_search_and_counts_the_cost(pii_rows):
    seeds, _ = pii_rows
    provider = ScriptedProvider(revisions=[_wrap(pii_prompt(BEST))], prices={"scripted/*": (1.0, 2.0)})
    result = tune_judge(pii_metric(WEAK), seeds, provider, rounds=5, budget_usd=0.05, seed=0, bootstrap=100)
    rep = result.report
    assert rep["stopped"].startswith("budget")
    assert 0 < rep["cost"]["usd"] <= 0.05 and len(rep["rounds"]) < 6
    assert rep["cost"]["usd"] == pytest.approx(provider.stats.cost_usd, abs=1e-6)


def test_split_is_stratified_disjoint_and_order_independent(pii_rows):
    seeds, _ = pii_rows
    metric = pii_metric(WEAK)
    a = split_for_tuning(metric, seeds, seed=3)
    b = split_for_tuning(metric, list(reversed(seeds)), seed=3)
    assert a.manifest() == b.manifest()
    m = a.manifest()
    assert m["train"]["n"] + m["validation"]["n"] + m["test"]["n"] == len(seeds)
    for part in ("train", "validation", "test"):
        assert set(m[part]["labels"]) == {"true", "false"}
    assert 0.25 < m["test"]["n"] / len(seeds) < 0.35


def test_too_few_labeled_rows_is_a_clear_error():
    rows = [{"id": str(i), "input": f"row {i}", "label": "true" if i else "false"} for i in range(10)]
    with pytest.raises(AssayError) as err:
        tune_judge(pii_metric(WEAK), rows, ScriptedProvider(), rounds=1)
    assert "at least 3 human-labeled rows of each label" in str(err.value) and "'false': 1" in str(err.value)


def test_the_cost_estimate_counts_the_judge_calls_a_run_makes(pii_rows):
    from assay.judge._estimate import estimate_tuning

    seeds, _ = pii_rows
    seeds = seeds[:150]
    count = iter(range(100))
    provider = ScriptedProvider(revisions=lambda _ask: _wrap(pii_prompt(BEST, intro=f"Revision {next(count)}.")))
    result = tune_judge(pii_metric(WEAK), seeds, provider, rounds=2, candidates=2, bootstrap=50)
    assert result.improved and all(c["status"] == "scored" for c in result.report["candidates"])
    est = estimate_tuning(pii_metric(WEAK), seeds, judge="anthropic/claude-sonnet-4", rounds=2, candidates=2)
    made = [e for e in provider.log if e["kind"] == "judge"]
    assert est["judge_calls"] == len(made) and est["writer_calls"] == 4
    n = est["rows"]["train"] + est["rows"]["validation"]
    assert est["judge_calls_per_round"] == 3 * n and est["judge_calls"] == n * 7 + 2 * est["rows"]["test"]
    assert est["usd"] > 0 and est["price_per_million"] == [3.0, 15.0]

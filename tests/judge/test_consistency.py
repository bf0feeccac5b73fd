"""judge_consistency: rows whose verdict flips are found, asked about and exported; stable rows are not."""

from __future__ import annotations

import json

import pytest
from _judge_util import DETECTORS, ScriptedProvider, fires, pii_metric, pii_prompt

from assay.data import read_records
from assay.errors import AssayError
from assay.judge import judge_consistency
from conftest import SHARED_DATA  # tests/fixtures/data unless ASSAY_SHARED_DATA is set

ALL = list(DETECTORS)
QUESTION = "Is a first name alone a direct identifier when no surname or contact detail is given?"


@pytest.fixture(scope="module")
def rows():
    return [dict(r) for r in read_records(SHARED_DATA / "pii_presidio_synth.jsonl")][:160]


def test_flipping_rows_are_found_asked_about_and_exported(rows, tmp_path):
    provider = ScriptedProvider(flaky=["name"], question=QUESTION)
    result = judge_consistency(pii_metric(ALL), rows, provider, samples=6, temperature=0.7)
    unsure = {r["id"] for r in rows if fires(r["input"], ALL) and set(fires(r["input"], ALL)) <= {"name"}}
    found = {a.id for a in result.ambiguous}
    assert len(unsure) >= 10
    assert found <= unsure  # a stable row is never reported
    assert len(found) >= 0.8 * len(unsure)  # all 6 answers agree by chance with probability 1/32
    assert result.stable == len(rows) - len(found) and result.rows == len(rows)
    for a in result.ambiguous:
        assert len(a.verdicts) == 6 and len(a.counts) == 2 and a.majority_share < 1
        assert a.question == QUESTION and a.question_source == "provider"
    path = result.write_jsonl(tmp_path / "ambiguous.jsonl")
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["id"] for x in lines] == [a.id for a in result.ambiguous]
    by_id = {r["id"]: r for r in rows}
    for x in lines:
        assert x["input"] == by_id[x["id"]]["input"] and x["label"] == by_id[x["id"]]["label"]
        assert x["meta"]["consistency"]["question"] == QUESTION and sum(x["meta"]["consistency"]["counts"].values()) == 6
        assert x["meta"]["template_id"] == by_id[x["id"]]["meta"]["template_id"]  # the row's own meta kept
    json.dumps(result.to_dict())


def test_paraphrases_at_temperature_zero_flag_rows_the_prompts_disagree_on(rows):
    provider = ScriptedProvider()
    kinds = ["email", "phone", "card", "ssn", "iban", "ip"]
    narrow = pii_prompt(kinds, intro="You check privacy.")
    result = judge_consistency(pii_metric(ALL), rows, provider, paraphrases=[narrow], ask=False)
    expected = {r["id"] for r in rows if bool(fires(r["input"], ALL)) != bool(fires(r["input"], kinds))}
    assert expected and {a.id for a in result.ambiguous} == expected
    assert result.mode == "2 prompts at temperature 0"
    for a in result.ambiguous:  # deterministic questions: no provider call
        assert a.question_source == "fallback" and a.question.endswith("?") and a.question.startswith("Is a text like")
    assert not [e for e in provider.log if e["kind"] == "question"]


def test_an_unusable_question_falls_back_to_a_deterministic_one(rows):
    provider = ScriptedProvider(flaky=["name"], question=None)  # answers "I cannot tell."
    result = judge_consistency(pii_metric(ALL), rows[:60], provider, samples=5)
    assert result.ambiguous
    for a in result.ambiguous:
        assert a.question_source == "fallback" and a.question.endswith("?")
        assert a.row["input"].split()[0] in a.question


def test_bad_settings_are_clear_errors(rows):
    with pytest.raises(AssayError, match="at least 2 samples"):
        judge_consistency(pii_metric(ALL), rows, ScriptedProvider(), samples=1)
    with pytest.raises(AssayError, match="paraphrase 1: breaks the placeholders"):
        judge_consistency(pii_metric(ALL), rows, ScriptedProvider(), paraphrases=["Is it PII? Answer true or false."])


def test_only_the_most_ambiguous_rows_cost_a_question_call(rows):
    provider = ScriptedProvider(flaky=["name"], question=QUESTION)
    result = judge_consistency(pii_metric(ALL), rows, provider, samples=4, max_questions=3)
    assert len(result.ambiguous) > 3
    assert [a.question_source for a in result.ambiguous].count("provider") == 3
    assert all(a.question_source == "provider" for a in result.ambiguous[:3])
    assert len([e for e in provider.log if e["kind"] == "question"]) == 3
    shares = [a.majority_share for a in result.ambiguous]
    assert shares == sorted(shares)  # the most ambiguous first

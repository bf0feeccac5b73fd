"""Deterministic gates: regex/keyword, PII (Luhn, IBAN), length, JSON, tool-call schema, required tool."""

from __future__ import annotations

import json

import pytest

from assay.errors import AssayError
from assay.monitor import extract_calls, find_pii, gate_from_dict, gates_from_list
from assay.monitor._gates import iban_ok, luhn_ok
from assay.monitor._schema import validate, validate_subset


def check(spec, row, default="output"):
    return gate_from_dict(spec).check(row, default)


def test_regex_and_keyword():
    row = {"id": "1", "input": "hi", "output": "Your key is sk-ABCDEFGHIJKLMNOPQRSTUV, keep it."}
    r = check({"type": "regex", "pattern": r"sk-[A-Za-z0-9]{20,}"}, row)
    assert not r.passed and "matched" in r.reason
    assert check({"type": "regex", "pattern": r"sk-", "field": "input"}, row).passed
    assert not check({"type": "regex", "pattern": "^Sorry", "fail_on": "no_match", "ignore_case": False},
                     {"id": "2", "output": "sorry, no"}).passed
    r = check({"type": "keyword", "keywords": ["KEEP", "password"]}, row)
    assert not r.passed and r.details["matched"] == ["KEEP"]
    assert check({"type": "keyword", "keywords": ["kee"]}, row).passed  # whole words only
    assert not check({"type": "keyword", "keywords": ["kee"], "whole_word": False}, row).passed


@pytest.mark.parametrize("text,kinds", [
    ("write to jane.doe@example.org today", {"email": 1}),
    ("card 4111 1111 1111 1111 please", {"card": 1}),
    ("card 4111 1111 1111 1112 please", {}),  # fails Luhn
    ("IBAN GB82 WEST 1234 5698 7654 32", {"iban": 1}),
    ("IBAN GB82 WEST 1234 5698 7654 33", {}),  # fails mod-97
    ("my SSN is 536-22-1234", {"ssn": 1}),
    ("SSN 000-12-3456 is not valid", {}),
    ("server at 10.0.12.254 is down", {"ipv4": 1}),
    ("version 1.2.3.4.5 and 300.1.1.1", {}),
    ("call +1 (415) 555-0132 now", {"phone": 1}),
    ("on 2024-05-15 at 15:00, 3 bags", {}),
])
def test_pii_patterns(text, kinds):
    assert find_pii(text) == kinds


def test_luhn_and_iban_helpers():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE89 3704 0044 0532 0130 00") and not iban_ok("DE00 3704 0044 0532 0130 00")


def test_pii_gate_kinds_and_field():
    row = {"id": "1", "input": "mail a@b.co", "output": "ok"}
    assert check({"type": "pii"}, row, "input").passed is False
    assert check({"type": "pii"}, row, "output").passed
    assert check({"type": "pii", "kinds": ["card"]}, row, "input").passed
    r = check({"type": "pii", "field": "any"}, row)
    assert not r.passed and r.details["found"] == {"email": 1} and "a@b.co" not in json.dumps(r.to_dict())


def test_pii_gate_on_real_data_is_precise(shared_data):
    rows = [json.loads(line) for line in open(shared_data / "pii_presidio_synth.jsonl")]
    gate = gate_from_dict({"type": "pii", "kinds": ["email", "card", "iban", "ssn", "ipv4"]})
    flagged = [r for r in rows if not gate.check(r, "input").passed]
    assert len(flagged) >= 50
    precision = sum(r["label"] == "true" for r in flagged) / len(flagged)
    assert precision >= 0.95  # a regex hit is nearly always a true PII row


def test_length_and_json():
    row = {"id": "1", "output": "one two three"}
    assert check({"type": "length", "max_words": 3}, row).passed
    r = check({"type": "length", "max_chars": 5}, row)
    assert not r.passed and r.details == {"chars": 13, "words": 3}
    assert not check({"type": "length", "min_words": 4}, row).passed
    assert not check({"type": "json"}, row).passed
    ok = {"id": "2", "output": '{"a": 1}'}
    assert check({"type": "json", "schema": {"type": "object", "required": ["a"]}}, ok).passed
    assert not check({"type": "json", "schema": {"type": "object", "required": ["b"]}}, ok).passed


WEATHER = [{"name": "get_weather", "parameters": {"type": "dict", "required": ["city"], "properties": {
    "city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}, "unit": {"type": "string",
                                                                                     "enum": ["c", "f"]}}}}]


@pytest.mark.parametrize("output,ok,why", [
    ('[{"get_weather": {"city": "Paris"}}]', True, ""),
    ('[{"get_weather": "{\\"city\\": \\"Paris\\", \\"days\\": 3}"}]', True, ""),
    ('[{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\", \\"unit\\": \\"k\\"}"}]', False, "unit"),
    ('[{"get_weather": {"days": 2}}]', False, "city"),
    ('[{"get_weather": {"city": 5}}]', False, "string"),
    ('[{"get_forecast": {"city": "Paris"}}]', False, "unknown tool"),
    ('[{"name": "get_weather", "arguments": "{city: Paris}"}]', False, "not valid JSON"),
    ('[{"get_weather": {"city"', False, "not valid JSON"),
    ("I can't call a tool for that.", True, ""),
])
def test_tool_schema_gate(output, ok, why):
    r = check({"type": "tool_schema"}, {"id": "1", "input": "weather?", "tools": WEATHER, "output": output})
    assert r.passed is ok and why in r.reason


def test_tool_schema_require_call_and_meta_calls():
    row = {"id": "1", "tools": WEATHER, "output": "no call"}
    assert not check({"type": "tool_schema", "require_call": True}, row).passed
    row = {"id": "2", "tools": WEATHER, "output": "done",
           "meta": {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Rome"}}]}}
    assert check({"type": "tool_schema", "require_call": True}, row).passed


def test_required_tool():
    row = {"id": "1", "output": json.dumps([{"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "search", "arguments": "{}"}}]}])}
    assert extract_calls(row)[0][0]["name"] == "search"
    assert check({"type": "required_tool", "tools": ["search"]}, row).passed
    r = check({"type": "required_tool", "tools": ["search", "book"]}, row)
    assert not r.passed and "book" in r.reason
    assert check({"type": "required_tool", "tools": ["search", "book"], "mode": "any"}, row).passed


def test_tool_schema_gate_on_real_bfcl_rows(shared_data):
    rows = [json.loads(line) for line in open(shared_data / "toolcall_bfcl_gptoss.jsonl")]
    gate = gate_from_dict({"type": "tool_schema"})
    results = [gate.check(r) for r in rows]  # never raises, whatever the schema dialect (dict, HashMap...)
    failed = [(r, x) for r, x in zip(rows, results) if not x.passed]
    assert 50 < len(failed) < len(rows) / 4
    # rows the gate rejects are mostly rows BFCL's checker also marks wrong
    assert sum(r["label"] == "false" for r, _ in failed) / len(failed) >= 0.6


@pytest.mark.parametrize("instance,schema", [
    ({"a": 1}, {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}),
    ({"a": "x"}, {"type": "object", "properties": {"a": {"type": "integer"}}}),
    ({}, {"type": "object", "required": ["a"]}),
    ({"a": [1, "b"]}, {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer"}}}}),
    ({"a": 3}, {"type": "object", "properties": {"a": {"enum": [1, 2]}}}),
    ({"a": 1, "b": 2}, {"type": "object", "properties": {"a": {}}, "additionalProperties": False}),
    ({"a": 1.5}, {"type": "dict", "properties": {"a": {"type": "float"}}}),
    ({"a": True}, {"type": "object", "properties": {"a": {"type": "integer"}}}),
])
def test_subset_validator_agrees_with_jsonschema(instance, schema):
    pytest.importorskip("jsonschema")
    assert bool(validate(instance, schema)) == bool(validate_subset(instance, schema))


def test_gate_config_errors():
    with pytest.raises(AssayError, match="type one of"):
        gate_from_dict({"type": "magic"})
    with pytest.raises(AssayError, match="pattern"):
        gate_from_dict({"type": "regex"})
    with pytest.raises(AssayError, match="field"):
        gate_from_dict({"type": "pii", "field": "everything"})
    with pytest.raises(AssayError, match="distinct gate names"):
        gates_from_list([{"type": "pii"}, {"type": "pii"}])
    assert [g.label for g in gates_from_list([{"type": "pii"}, {"type": "pii", "name": "pii_out"}])] == ["pii", "pii_out"]

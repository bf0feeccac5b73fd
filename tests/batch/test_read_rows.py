"""Issue 26 (item 6): `assay score` reads what `assay traces` reads (a single-object OTLP JSON file
included), counts lines that are not JSON with their line numbers, scores the rest, and says how many
were bad (exit status 1, --json's bad_lines)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from assay.batch import read_rows
from assay.cli import cli
from assay.metrics import load_metric

GOLDEN = Path(__file__).parents[1] / "fixtures" / "artifacts" / "toxicity-tfidf-v1"


def _kv(key, value):
    return {"key": key, "value": {"stringValue": value}}


def _otlp_object(texts, prefix="t"):
    spans = [{"traceId": f"{prefix}{i}", "spanId": f"s{i}", "name": "chat", "startTimeUnixNano": "1700000000000000000",
              "attributes": [_kv("gen_ai.operation.name", "chat"), _kv("input.value", text),
                             _kv("output.value", "ok")]} for i, text in enumerate(texts)]
    return {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"scope": {"name": "x"}, "spans": spans}]}]}


def test_a_single_object_otlp_json_file_scores_like_assay_traces_reads_it(tmp_path):
    f = tmp_path / "export.json"
    f.write_text(json.dumps(_otlp_object(["you idiot", "lovely day"]), indent=1))
    traces = json.loads(CliRunner().invoke(cli, ["traces", str(f), "--json"]).output)
    assert traces["traces"] == 2
    got = read_rows(f, load_metric("toxicity"))
    assert [r["input"] for r in got.rows] == ["you idiot", "lovely day"] and got.bad == 0
    out = tmp_path / "scores.jsonl"
    r = CliRunner().invoke(cli, ["score", str(GOLDEN), str(f), "--output", str(out), "--json", "-q"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["rows"] == 2 and json.loads(r.output)["bad_lines"]["count"] == 0
    assert [json.loads(x)["trace_id"] for x in out.read_text().splitlines()] == ["t0", "t1"]


def test_bad_lines_are_counted_with_line_numbers_and_the_rest_scored(tmp_path):
    f = tmp_path / "rows.jsonl"
    lines = [json.dumps({"id": "a", "input": "you idiot"}), '{"id": "b", "input": "cut off', "",
             json.dumps({"id": "c", "input": "lovely day"}), "42", json.dumps({"id": "d", "input": "hello"})]
    f.write_text("\n".join(lines) + "\n")
    got = read_rows(f, load_metric("toxicity"))
    assert [r["id"] for r in got.rows] == ["a", "c", "d"]
    assert got.bad == 2 and [b["line"] for b in got.bad_lines] == [2, 5]
    out = tmp_path / "scores.jsonl"
    r = CliRunner().invoke(cli, ["score", str(GOLDEN), str(f), "-o", str(out), "--json", "-q"])
    assert r.exit_code == 1, r.output  # scored, but not every line could be
    summary = json.loads(r.output[r.output.index("{"):])
    assert summary["rows"] == 3 and summary["bad_lines"]["count"] == 2
    assert [b["line"] for b in summary["bad_lines"]["first"]] == [2, 5]
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["a", "c", "d"]
    text = CliRunner().invoke(cli, ["score", str(GOLDEN), str(f), "-o", str(out)])
    assert text.exit_code == 1 and "2 lines of rows.jsonl" in text.output and "line 2:" in text.output


def test_bad_lines_in_a_span_export_are_counted_too(tmp_path):
    f = tmp_path / "spans.jsonl"
    f.write_text(json.dumps(_otlp_object(["you idiot"])) + "\nnot json\n" + json.dumps(_otlp_object(["nice"], "u")) + "\n")
    got = read_rows(f, load_metric("toxicity"))
    assert len(got.rows) == 2 and got.bad == 1 and got.bad_lines[0]["line"] == 2
    assert got.ingest["problems"] == {"invalid_json": 1} and got.ingest["traces"] == 2

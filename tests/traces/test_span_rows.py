"""Span-targeted metrics: one row per llm / retriever / tool span, linked to its trace (issue #12)."""

from __future__ import annotations

import json

import pytest

from assay.errors import AssayError
from assay.metrics import MetricSpec, get_preset, load_metric, render
from assay.traces import Trace, read_traces, rows_for, span_rows, trace_row

from _spans_util import agent_trace_otlp


def span_metric(kind="tool", shape="input_output", name="tool_result_ok"):
    prompts = {"input_output": "Call arguments: {input}\nResult: {output}\nIs the result an error?",
               "tools": "Request: {input}\nTools: {tools}\nCall: {output}\nIs the call wrong?",
               "message": "Text: {input}\nIs it unsafe?"}
    return MetricSpec(name=name, shape=shape, prompt=prompts[shape], target={"span_kind": kind})


@pytest.fixture
def trace():
    ing = read_traces([agent_trace_otlp()])
    assert ing.summary()["problems"] == {} and len(ing.traces) == 1
    return ing.traces[0]


def test_trace_keeps_one_item_per_targetable_span(trace):
    assert [(x["span_id"], x["kind"]) for x in trace.span_items] == [("root", "agent"), ("llm1", "llm"),
                                                                    ("tool1", "tool"), ("tool2", "tool")]
    weather = trace.span_items[2]
    assert json.loads(weather["input"]) == {"city": "Paris"}
    assert json.loads(weather["output"]) == {"sky": "sunny", "celsius": 21}
    assert weather["tool_calls"] == [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "c1"}]
    # the records survive the JSON round trip the monitor store makes
    again = Trace.from_dict(json.loads(json.dumps(trace.to_dict())))
    assert again.span_items == trace.span_items


def test_tool_target_gives_one_row_per_tool_span_linked_to_the_trace(trace):
    rows, skipped = span_rows(trace, span_metric("tool"))
    assert skipped == {}
    assert [r["id"] for r in rows] == ["ag01/tool1", "ag01/tool2"]
    assert [r["meta"]["span_id"] for r in rows] == ["tool1", "tool2"]
    assert {r["meta"]["trace_id"] for r in rows} == {"ag01"}
    assert rows[1]["input"] == '{"city": "Paris"}' and rows[1]["output"] == "14:05"
    assert rows[0]["meta"]["tool_calls"][0]["name"] == "get_weather"
    assert "14:05" in render(span_metric("tool"), rows[1])  # renders like any canonical row
    assert rows_for([trace], span_metric("tool")) == (rows, skipped)  # rows_for dispatches on the target


def test_tools_shape_on_tool_spans_reads_request_schemas_and_the_call(trace):
    rows, _ = span_rows(trace, span_metric("tool", "tools", "tool_call_ok"))
    assert [r["input"] for r in rows] == ["Weather and time in Paris?"] * 2
    assert json.loads(rows[0]["output"]) == [{"get_weather": {"city": "Paris"}}]
    assert {t["name"] for t in rows[0]["tools"]} == {"get_weather", "get_time"}


def test_llm_target_reads_the_llm_span(trace):
    rows, skipped = span_rows(trace, span_metric("llm", "message", "prompt_safety"))
    assert not skipped and len(rows) == 1
    assert rows[0]["input"] == "Weather and time in Paris?" and rows[0]["meta"]["span_kind"] == "llm"


def test_a_trace_without_the_kind_is_counted_not_dropped(trace):
    rows, skipped = rows_for([trace], span_metric("retriever"))
    assert rows == [] and skipped == {"no_retriever_span": 1}
    plain = read_traces([{"id": "p1", "input": "hi", "output": "hello"}]).traces
    assert rows_for(plain, span_metric("tool")) == ([], {"no_tool_span": 1})


def test_trace_level_metrics_are_unchanged(trace):
    metric = get_preset("tool_call_correctness")
    assert metric.target is None and "target" not in metric.to_dict()
    rows, skipped = rows_for([trace], metric)
    assert skipped == {} and [r["id"] for r in rows] == ["ag01"]
    assert rows[0] == trace_row(trace, metric)[0] and "span_id" not in rows[0]["meta"]


def test_target_validation_names_the_allowed_kinds():
    base = {"name": "m", "shape": "input_output", "prompt": "{input} {output}"}
    with pytest.raises(AssayError, match=r"span_kind 'chain' is not one of \['llm', 'retriever', 'tool', 'agent'\]") as e:
        load_metric({**base, "target": {"span_kind": "chain"}})
    assert e.value.code == "invalid_metric" and "llm, retriever, tool, agent" in str(e.value)
    with pytest.raises(AssayError, match="not one of"):
        load_metric({**base, "target": "agents"})
    with pytest.raises(AssayError, match="reads one span"):
        load_metric({"name": "m", "shape": "session", "prompt": "{output}", "target": {"span_kind": "llm"}})
    m = load_metric({**base, "target": "tool"})  # shorthand for {span_kind: tool}
    assert m.target.span_kind == "tool" and m.to_dict()["target"] == {"span_kind": "tool"}
    assert load_metric(m.to_dict()) == m


def test_an_agent_span_is_a_target_its_task_in_its_final_answer_out(trace):
    """Agent spans exist in real traces (OTel GenAI ``invoke_agent``): a metric may judge each one."""
    rows, skipped = span_rows(trace, span_metric(kind="agent", shape="input_output", name="agent_answer_ok"))
    assert not skipped and len(rows) == 1
    assert rows[0]["input"] == "Weather and time in Paris?" and rows[0]["output"] == "Sunny, 21C; it is 14:05."
    assert rows[0]["meta"]["span_id"] == "root"

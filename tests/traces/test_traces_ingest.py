"""Trace ingestion: OTel GenAI / OpenInference spans, LangSmith runs, plain JSONL; problems counted per reason."""

from __future__ import annotations

import json

import pytest

from assay.metrics import MetricSpec, get_preset, render
from assay.traces import Session, TraceAssembler, follow_lines, read_traces, rows_for, session_row, trace_row


def kv(key, value):
    if isinstance(value, bool):
        v = {"boolValue": value}
    elif isinstance(value, int):
        v = {"intValue": str(value)}
    else:
        v = {"stringValue": value}
    return {"key": key, "value": v}


def otlp(spans, resource=None):
    return {"resourceSpans": [{"resource": {"attributes": resource or [kv("service.name", "shop")]},
                               "scopeSpans": [{"scope": {"name": "openinference"}, "spans": spans}]}]}


def rag_trace_otlp(tid="aa01", session="s-1"):
    """An OpenInference RAG trace in OTLP/JSON: chain root, retriever, LLM with indexed messages."""
    return otlp([
        {"traceId": tid, "spanId": "r1", "parentSpanId": "c1", "name": "retrieve", "startTimeUnixNano": "1700000000100000000",
         "attributes": [kv("openinference.span.kind", "RETRIEVER"), kv("input.value", "refund window"),
                        kv("retrieval.documents.0.document.content", "Refunds are accepted within 30 days."),
                        kv("retrieval.documents.1.document.content", "Shipping is free over $50.")]},
        {"traceId": tid, "spanId": "l1", "parentSpanId": "c1", "name": "ChatOpenAI", "startTimeUnixNano": "1700000000200000000",
         "attributes": [kv("openinference.span.kind", "LLM"), kv("llm.model_name", "gpt-4o-mini"),
                        kv("llm.input_messages.0.message.role", "system"),
                        kv("llm.input_messages.0.message.content", "Answer from the context."),
                        kv("llm.input_messages.1.message.role", "user"),
                        kv("llm.input_messages.1.message.content", "How long do I have to return an item?"),
                        kv("llm.output_messages.0.message.role", "assistant"),
                        kv("llm.output_messages.0.message.content", "You have 30 days.")]},
        {"traceId": tid, "spanId": "c1", "name": "rag", "startTimeUnixNano": "1700000000000000000",
         "attributes": [kv("openinference.span.kind", "CHAIN"),
                        kv("input.value", "How long do I have to return an item?"),
                        kv("output.value", "You have 30 days."), kv("session.id", session)]},
    ])


def test_otlp_openinference_rag_trace_renders_like_training():
    ing = read_traces([rag_trace_otlp()])
    assert ing.summary()["problems"] == {} and len(ing.traces) == 1
    t = ing.traces[0]
    assert t.trace_id == "aa01" and t.session_id == "s-1" and t.source == "otel" and t.spans == 3
    assert t.input == "How long do I have to return an item?"
    assert t.output == "You have 30 days."
    assert t.context == ["Refunds are accepted within 30 days.", "Shipping is free over $50."]
    assert t.system == "Answer from the context."
    assert t.meta["model"] == "gpt-4o-mini"
    metric = get_preset("context_adherence")
    row, why = trace_row(t, metric)
    assert why is None and row["meta"]["trace_id"] == "aa01"
    # the prompt is exactly what training renders for the same canonical row
    same = {"id": "x", "input": t.input, "output": t.output, "context": t.context}
    assert render(metric, row) == render(metric, same)
    assert "Refunds are accepted within 30 days." in render(metric, row)


def test_genai_semconv_indexed_prompt_and_tool_spans():
    tid = "bb02"
    spans = [
        {"trace_id": tid, "span_id": "root", "name": "invoke_agent", "start_time": "2024-05-01T10:00:00Z",
         "attributes": {"gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": "conv-9"}},
        {"trace_id": tid, "span_id": "chat1", "parent_span_id": "root", "name": "chat gpt-4o",
         "start_time": "2024-05-01T10:00:01Z",
         "attributes": {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                        "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "Weather in Paris?",
                        "gen_ai.completion.0.role": "assistant",
                        "gen_ai.tool.definitions": json.dumps([{"type": "function", "function": {
                            "name": "get_weather", "parameters": {"type": "object", "required": ["city"],
                                                                  "properties": {"city": {"type": "string"}}}}}])}},
        {"trace_id": tid, "span_id": "tool1", "parent_span_id": "root", "name": "execute_tool get_weather",
         "start_time": "2024-05-01T10:00:02Z",
         "attributes": {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather",
                        "gen_ai.tool.call.id": "call_1", "gen_ai.tool.call.arguments": '{"city": "Paris"}',
                        "gen_ai.tool.call.result": '{"temp_c": 18}'}},
        {"trace_id": tid, "span_id": "chat2", "parent_span_id": "root", "name": "chat gpt-4o",
         "start_time": "2024-05-01T10:00:03Z",
         "attributes": {"gen_ai.operation.name": "chat",
                        "gen_ai.input.messages": json.dumps([
                            {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
                            {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_1", "name": "get_weather",
                                                             "arguments": {"city": "Paris"}}]},
                            {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1",
                                                        "response": "18C"}]}]),
                        "gen_ai.output.messages": json.dumps([
                            {"role": "assistant", "parts": [{"type": "text", "content": "It is 18C in Paris."}]}])}},
    ]
    ing = read_traces(spans)
    assert ing.summary()["problems"] == {}
    t = ing.traces[0]
    assert t.session_id == "conv-9"
    assert t.input == "Weather in Paris?" and t.output == "It is 18C in Paris."
    assert [c["name"] for c in t.tool_calls] == ["get_weather"]
    assert t.tool_calls[0]["arguments"] == {"city": "Paris"}
    assert t.tools[0]["name"] == "get_weather" and t.tools[0]["parameters"]["required"] == ["city"]
    roles = [m["role"] for m in t.messages]
    assert roles[0] == "user" and "tool" in roles and roles[-1] == "assistant"
    # tool-call shape: the calls made, with the tool schemas
    row, why = trace_row(t, get_preset("tool_call_correctness"))
    assert why is None and json.loads(row["output"]) == [{"get_weather": {"city": "Paris"}}]
    # trace shape needs {context}: no policy/system here -> counted as missing, not dropped
    row, why = trace_row(t, get_preset("agent_task_success"))
    assert row is None and why == "missing_context"


def test_phoenix_nested_attributes_and_flat_context():
    rec = {"name": "llm", "context": {"trace_id": "0xcc03", "span_id": "0x01"}, "parent_id": None,
           "span_kind": "LLM", "attributes": {
               "openinference": {"span": {"kind": "LLM"}},
               "llm": {"input_messages": [{"message": {"role": "user", "content": "hi there"}}],
                       "output_messages": [{"message": {"role": "assistant", "content": "hello!"}}]},
               "session": {"id": "sess-7"}}}
    ing = read_traces([rec])
    t = ing.traces[0]
    assert (t.trace_id, t.input, t.output, t.session_id) == ("cc03", "hi there", "hello!", "sess-7")


def test_langsmith_runs_nested_and_flat():
    tree = {"id": "run-1", "name": "AgentExecutor", "run_type": "chain", "trace_id": "run-1",
            "inputs": {"input": "Book a table for two"}, "outputs": {"output": "Booked for 7pm."},
            "extra": {"metadata": {"thread_id": "th-1"}}, "start_time": "2024-05-01T10:00:00",
            "child_runs": [
                {"id": "run-2", "name": "ChatOpenAI", "run_type": "llm", "start_time": "2024-05-01T10:00:01",
                 "inputs": {"messages": [[{"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages",
                                                                                    "HumanMessage"],
                                           "kwargs": {"content": "Book a table for two"}}]]},
                 "outputs": {"generations": [[{"text": "", "message": {
                     "lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "AIMessage"],
                     "kwargs": {"content": "", "tool_calls": [{"name": "book", "args": {"people": 2}, "id": "t1"}]}}}]]}},
                {"id": "run-3", "name": "book", "run_type": "tool", "start_time": "2024-05-01T10:00:02",
                 "inputs": {"input": '{"people": 2}'}, "outputs": {"output": "ok 7pm"}},
            ]}
    flat = [{"id": "f-1", "run_type": "chain", "inputs": {"question": "q?"}, "outputs": {"answer": "a."}},
            {"id": "f-2", "parent_run_id": "f-1", "trace_id": "f-1", "run_type": "retriever",
             "inputs": {"query": "q?"}, "outputs": {"documents": [{"page_content": "doc A", "metadata": {}}]}}]
    ing = read_traces([{"runs": [tree]}, *flat])
    assert ing.summary()["problems"] == {} and ing.spans == 5
    by_id = {t.trace_id: t for t in ing.traces}
    t = by_id["run-1"]
    assert t.source == "langsmith" and t.session_id == "th-1"
    assert t.input == "Book a table for two" and t.output == "Booked for 7pm."
    assert t.tool_calls[0]["name"] == "book" and t.tool_calls[0]["arguments"] == {"people": 2}
    f = by_id["f-1"]
    assert (f.input, f.output, f.context) == ("q?", "a.", ["doc A"])


def test_plain_jsonl_and_sessions(tmp_path):
    p = tmp_path / "t.jsonl"
    lines = [
        {"id": "p1", "session_id": "S", "timestamp": 2, "input": "second question", "output": "second answer"},
        {"id": "p0", "session_id": "S", "timestamp": 1, "input": "first question", "output": "first answer"},
        {"messages": [{"role": "user", "content": "only messages"}, {"role": "assistant", "content": "fine"}]},
    ]
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    ing = read_traces(p)
    assert len(ing.traces) == 3 and ing.summary()["sessions"] == 2
    anon = [t for t in ing.traces if t.trace_id not in ("p0", "p1")][0]
    assert anon.trace_id.startswith("trace-") and anon.input == "only messages" and anon.output == "fine"
    assert read_traces(p).traces[2].trace_id == anon.trace_id  # the generated id is stable
    session = [s for s in ing.sessions() if s.session_id == "S"][0]
    assert [t.trace_id for t in session.traces] == ["p0", "p1"]  # turns in time order
    metric = MetricSpec(name="chat_toxicity", shape="session", prompt="Chat:\n{output}\nToxic?")
    row, why = session_row(session, metric)
    assert why is None and row["id"] == "S" and row["meta"]["trace_id"] == "p1"
    text = render(metric, row)
    assert text.index("first answer") < text.index("second question")
    rows, skipped = rows_for(ing.traces, metric)
    assert len(rows) == 2 and not skipped


def test_malformed_items_counted_per_reason_none_dropped(tmp_path):
    good = rag_trace_otlp("dd04")
    p = tmp_path / "mixed.jsonl"
    items = [
        json.dumps(good),
        "{not json",
        json.dumps([1, 2]),  # two non-objects
        json.dumps({"hello": "world"}),  # unknown shape
        json.dumps({"spanId": "zz", "name": "no trace id", "attributes": {}}),
        json.dumps({"traceId": "ee05", "name": "no span id", "attributes": {"input.value": "x"}}),
        json.dumps({"traceId": "dd04", "spanId": "c1", "name": "duplicate root", "attributes": {}}),
        json.dumps({"traceId": "ff06", "spanId": "k", "parentSpanId": "missing", "name": "orphan",
                    "attributes": {"input.value": "orphaned q", "output.value": "orphaned a"}}),
        json.dumps({"id": "empty-1", "meta": {"x": 1}, "input": ""}),
        json.dumps({"run_type": "chain", "inputs": {}, "outputs": {}}),  # run without id
        "",
    ]
    p.write_text("\n".join(items) + "\n")
    ing = read_traces(p)
    s = ing.summary()
    assert s["problems"] == {"invalid_json": 1, "not_an_object": 2, "unknown_shape": 1, "span_missing_trace_id": 1,
                             "span_missing_span_id": 1, "duplicate_span": 1, "missing_fields": 1,
                             "run_missing_id": 1}
    assert s["warnings"] == {"orphan_span": 1, "no_root_span": 1}
    assert sorted(t.trace_id for t in ing.traces) == ["dd04", "ff06"]
    # every item is accounted for: kept in a trace or rejected with a reason
    assert s["items"] == ing.spans + sum(t.spans == 0 for t in ing.traces) + s["rejected"]
    assert any("mixed.jsonl:2" in e for e in s["examples"]["invalid_json"])
    orphan = [t for t in ing.traces if t.trace_id == "ff06"][0]
    assert orphan.input == "orphaned q"  # kept despite the missing parent


def test_missing_fields_per_metric_are_counted():
    ing = read_traces([{"id": "a", "input": "question only"}, {"id": "b", "input": "q", "output": "a"},
                       {"id": "c", "output": "answer only"}])
    rows, skipped = rows_for(ing.traces, get_preset("context_adherence"))
    assert rows == [] and skipped == {"missing_output": 1, "missing_context": 1, "missing_input": 1}
    rows, skipped = rows_for(ing.traces, get_preset("pii"))
    assert [r["id"] for r in rows] == ["a", "b"] and skipped == {"missing_input": 1}
    rows, _ = rows_for(ing.traces, get_preset("pii"), message_from="output")
    assert [r["input"] for r in rows] == ["a", "answer only"]


def test_real_datasets_ingest_without_loss(shared_data):
    for name, preset in (("agent_taubench_airline.jsonl", "agent_task_success"),
                         ("toolcall_bfcl_gptoss.jsonl", "tool_call_correctness"),
                         ("faithfulness_begin.jsonl", "context_adherence")):
        ing = read_traces(shared_data / name)
        n = sum(1 for line in open(shared_data / name) if line.strip())
        assert len(ing.traces) == n and not ing.problems.counts, name
        rows, skipped = rows_for(ing.traces[:200], get_preset(preset))
        assert len(rows) + sum(skipped.values()) == min(200, n)
        assert len(rows) >= 0.95 * min(200, n), (name, skipped)
        src = [json.loads(line) for line in open(shared_data / name)][:5]
        for r, s in zip(rows, src):
            assert render(get_preset(preset), r) == render(get_preset(preset), s)  # same prompt as training rows


def test_follow_lines_waits_for_complete_lines(tmp_path):
    p = tmp_path / "live.jsonl"
    p.write_text('{"id": "1", "input": "a"}\n{"id": "2", "inp')
    got = [line for line, _ in follow_lines(p, follow=True, poll=0.01, idle_timeout=0.05) if line]
    assert got == ['{"id": "1", "input": "a"}\n']
    got = [line for line, _ in follow_lines(p, follow=False) if line]
    assert len(got) == 2  # without follow the partial last line is read (and will be counted as invalid)


def test_assembler_settles_span_traces_and_counts_late_spans():
    asm = TraceAssembler(settle=0.0)
    asm.add_record({"traceId": "t9", "spanId": "child", "parentSpanId": "root", "attributes": {"input.value": "x"}},
                   "req1")
    assert asm.pop_ready() == []  # no root yet
    asm.add_record({"traceId": "t9", "spanId": "root", "attributes": {"input.value": "q", "output.value": "a"}}, "req2")
    ready = asm.pop_ready()
    assert [t.trace_id for t in ready] == ["t9"] and ready[0].spans == 2
    asm.add_record({"traceId": "t9", "spanId": "late", "parentSpanId": "root", "attributes": {}}, "req3")
    assert asm.problems.counts == {"late_span": 1}


@pytest.mark.parametrize("bad", ["[1, 2", '"just a string"'])
def test_json_file_errors_are_counted(tmp_path, bad):
    p = tmp_path / "x.json"
    p.write_text(bad)
    ing = read_traces(p)
    assert ing.traces == [] and ing.problems.total() == 1


def test_session_row_of_single_trace():
    ing = read_traces([{"id": "one", "input": "hi", "output": "hello"}])
    metric = MetricSpec(name="chat_toxicity", shape="session", prompt="{output}")
    row, _ = session_row(Session("one", ing.traces), metric)
    assert row["output"] == "hello"


def test_cli_traces_reports_counts(tmp_path):
    from click.testing import CliRunner

    from assay.cli import cli

    p = tmp_path / "t.jsonl"
    p.write_text(json.dumps(rag_trace_otlp("gg07")) + "\n" + json.dumps({"id": "q", "input": "only a question"})
                 + "\n[oops\n")
    r = CliRunner().invoke(cli, ["traces", str(p), "--metric", "context_adherence", "--metric", "pii", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["traces"] == 2 and out["problems"] == {"invalid_json": 1}
    assert out["metrics"]["context_adherence"] == {"shape": "rag", "rows": 1, "skipped": {"missing_output": 1}}
    assert out["metrics"]["pii"]["rows"] == 2
    r = CliRunner().invoke(cli, ["traces", str(tmp_path / "missing.jsonl")])
    assert r.exit_code == 2 and "no file at" in r.output


@pytest.mark.parametrize("body,ctype,n", [
    ('{"id": "a", "input": "hi"}\n{"id": "b", "input": "yo"}', "application/json", 2),  # JSONL sniffed
    ('{"id": "a", "input": "hi"}', "application/x-ndjson", 1),
    ('[{"id": "a", "input": "hi"},\n {"id": "b", "input": "yo"}]', "application/json", 2),  # a JSON list
    ("", "application/json", 0),
])
def test_add_body_decodes_a_received_payload(body, ctype, n):
    asm = TraceAssembler()
    asm.add_body(body, "request 1", ctype)
    assert len(asm.pop_ready(final=True)) == n and asm.problems.total() == 0


def test_monitor_still_reexports_the_moved_names():
    import assay.monitor
    import assay.traces

    for name in ("Ingest", "Problems", "Session", "Trace", "TraceAssembler", "group_sessions", "plain_trace",
                 "read_traces", "rows_for", "session_row", "trace_row"):
        assert getattr(assay.monitor, name) is getattr(assay.traces, name)

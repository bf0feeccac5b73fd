"""An OTel GenAI agent trace for the span-level metric tests (tests/traces, tests/monitor)."""

from __future__ import annotations

import json


def kv(key, value):
    return {"key": key, "value": {"stringValue": value}}


def agent_trace_otlp(tid="ag01"):
    """An OTel GenAI agent trace: a root, one LLM span that asks for two tools, two tool spans."""
    tools = json.dumps([{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                                            "parameters": {"type": "object",
                                                                           "properties": {"city": {"type": "string"}},
                                                                           "required": ["city"]}}},
                        {"type": "function", "function": {"name": "get_time", "description": "Local time",
                                                            "parameters": {"type": "object",
                                                                           "properties": {"city": {"type": "string"}}}}}])
    out = json.dumps([{"role": "assistant", "parts": [
        {"type": "tool_call", "id": "c1", "name": "get_weather", "arguments": {"city": "Paris"}},
        {"type": "tool_call", "id": "c2", "name": "get_time", "arguments": {"city": "Paris"}}]}])
    spans = [
        {"traceId": tid, "spanId": "root", "name": "invoke_agent trip", "startTimeUnixNano": "1700000000000000000",
         "attributes": [kv("gen_ai.operation.name", "invoke_agent"), kv("input.value", "Weather and time in Paris?"),
                        kv("output.value", "Sunny, 21C; it is 14:05.")]},
        {"traceId": tid, "spanId": "llm1", "parentSpanId": "root", "name": "chat gpt-4o",
         "startTimeUnixNano": "1700000000100000000",
         "attributes": [kv("gen_ai.operation.name", "chat"), kv("gen_ai.request.model", "gpt-4o"),
                        kv("gen_ai.input.messages", json.dumps([{"role": "user", "parts": [
                            {"type": "text", "content": "Weather and time in Paris?"}]}])),
                        kv("gen_ai.output.messages", out), kv("gen_ai.tool.definitions", tools)]},
        {"traceId": tid, "spanId": "tool1", "parentSpanId": "root", "name": "execute_tool get_weather",
         "startTimeUnixNano": "1700000000200000000",
         "attributes": [kv("gen_ai.operation.name", "execute_tool"), kv("gen_ai.tool.name", "get_weather"),
                        kv("gen_ai.tool.call.id", "c1"), kv("gen_ai.tool.call.arguments", '{"city": "Paris"}'),
                        kv("gen_ai.tool.call.result", '{"sky": "sunny", "celsius": 21}')]},
        {"traceId": tid, "spanId": "tool2", "parentSpanId": "root", "name": "execute_tool get_time",
         "startTimeUnixNano": "1700000000300000000",
         "attributes": [kv("gen_ai.operation.name", "execute_tool"), kv("gen_ai.tool.name", "get_time"),
                        kv("gen_ai.tool.call.id", "c2"), kv("gen_ai.tool.call.arguments", '{"city": "Paris"}'),
                        kv("gen_ai.tool.call.result", "14:05")]},
    ]
    return {"resourceSpans": [{"resource": {"attributes": [kv("service.name", "trip")]},
                               "scopeSpans": [{"scope": {"name": "genai"}, "spans": spans}]}]}

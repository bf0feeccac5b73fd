"""OTLP/HTTP protobuf bodies decode into the OTLP JSON record the JSON path reads: hex ids (never base64),
integer enums, the same Trace as the same spans sent as JSON."""

from __future__ import annotations

import base64
import json

import pytest
from _spans_util import agent_trace_otlp
from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from assay.errors import AssayError
from assay.traces import TraceAssembler
from assay.traces._otlp_proto import decode_trace_request, is_protobuf, parse_trace_request, trace_response

TID = "5b8efff798038103d269b633813fc60c"


def _hex_ids(otlp: dict) -> dict:
    """The agent trace with real OTLP ids: 32 / 16 hex digits (the fixture's short names are not bytes)."""
    ids = {"root": "eee19b7ec3c1b174", "llm1": "eee19b7ec3c1b173", "tool1": "eee19b7ec3c1b172",
           "tool2": "eee19b7ec3c1b171"}
    for rs in otlp["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                sp["traceId"] = TID
                sp["spanId"] = ids[sp["spanId"]]
                if "parentSpanId" in sp:
                    sp["parentSpanId"] = ids[sp["parentSpanId"]]
                sp["kind"] = 2
    return otlp


def _to_proto(otlp: dict) -> bytes:
    """OTLP JSON -> protobuf bytes (ids as bytes: what an exporter sends)."""
    raw = json.loads(json.dumps(otlp))
    for rs in raw["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                for k in ("traceId", "spanId", "parentSpanId"):
                    if k in sp:  # protobuf's JSON mapping reads bytes as base64
                        sp[k] = base64.b64encode(bytes.fromhex(sp[k])).decode()
    return ParseDict(raw, ExportTraceServiceRequest()).SerializeToString()


def test_ids_come_out_as_hex_like_otlp_json():
    otlp = _hex_ids(agent_trace_otlp())
    rec = decode_trace_request(_to_proto(otlp))
    spans = rec["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert [s["traceId"] for s in spans] == [TID] * 4
    assert [s["spanId"] for s in spans] == [s["spanId"] for s in otlp["resourceSpans"][0]["scopeSpans"][0]["spans"]]
    assert "parentSpanId" not in spans[0] and spans[1]["parentSpanId"] == "eee19b7ec3c1b174"
    assert spans[0]["kind"] == 2 and spans[0]["startTimeUnixNano"] == "1700000000000000000"  # int enum, int64 text
    assert rec["resourceSpans"][0]["resource"]["attributes"][0]["value"] == {"stringValue": "trip"}


def test_protobuf_and_json_make_the_same_trace():
    otlp = _hex_ids(agent_trace_otlp())
    by_json, by_proto = TraceAssembler(), TraceAssembler()
    by_json.add_body(json.dumps(otlp), "json")
    by_proto.add_record(decode_trace_request(_to_proto(otlp)), "proto")
    (a,), (b,) = by_json.pop_ready(final=True), by_proto.pop_ready(final=True)
    assert a.trace_id == b.trace_id == TID
    assert a.to_dict() == b.to_dict() and b.meta["root_span_id"] == "eee19b7ec3c1b174"
    assert b.input == "Weather and time in Paris?" and len(b.tool_calls) == 2
    assert by_proto.problems.total() == 0


def test_a_span_without_ids_is_a_counted_problem_and_bad_bytes_an_error():
    req = ExportTraceServiceRequest()
    req.resource_spans.add().scope_spans.add().spans.add(name="no ids")
    asm = TraceAssembler()
    asm.add_record(decode_trace_request(req.SerializeToString()), "r")
    assert asm.problems.total() == 1
    assert decode_trace_request(b"") == {"resourceSpans": []}  # an empty request is valid OTLP
    for bad in (b"x", b"\xff" * 8, b'{"resourceSpans": []}'):
        with pytest.raises(AssayError) as e:
            parse_trace_request(bad)
        assert e.value.code == "invalid_input" and "ExportTraceServiceRequest" in e.value.expected
    assert is_protobuf("application/x-protobuf") and is_protobuf("application/protobuf; charset=x")
    assert not is_protobuf("application/json") and not is_protobuf(None)
    assert trace_response() == b""  # nothing rejected: an empty ExportTraceServiceResponse

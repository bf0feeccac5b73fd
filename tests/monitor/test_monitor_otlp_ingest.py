"""OTLP/HTTP protobuf in: the OpenTelemetry SDK's own OTLP/HTTP exporter (protobuf, plain and gzip) posts
spans to the ingest server on 127.0.0.1 and they become verdicts; a bad body is a 400 with the JSON error
shape; the body limit holds after decompression (a gzip bomb stops there)."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                      ExportTraceServiceResponse)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from assay.monitor import IngestServer, Monitor, RouteConfig, Store
from assay.monitor import _http
from assay.testing import MockEvaluator


def traced(n: int, offset: int = 0) -> tuple[list, list[str]]:
    """``n`` finished traces from the real SDK (a root with input/output, one child LLM span each)."""
    mem = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(mem))
    tracer = provider.get_tracer("test")
    ids = []
    for i in range(offset, offset + n):
        with tracer.start_as_current_span("invoke_agent shop", attributes={
                "input.value": f"question {i} from me@example.com" if i % 2 else f"question {i}",
                "output.value": f"answer {i}"}) as root:
            with tracer.start_as_current_span("chat gpt-4o", attributes={"gen_ai.operation.name": "chat"}):
                pass
        ids.append(format(root.get_span_context().trace_id, "032x"))
    provider.shutdown()
    return list(mem.get_finished_spans()), ids


def post(url: str, body: bytes, headers: dict) -> tuple[int, bytes, str]:
    req = urllib.request.Request(url + "/v1/traces", data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), resp.headers["Content-Type"]
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers["Content-Type"]


@pytest.fixture
def served(tmp_path):
    store = Store(tmp_path / "m.db")
    mon = Monitor([MockEvaluator("pii", keywords={"@": 0.9}, default=0.1)], store, RouteConfig(audit_rate=0.0))
    srv = IngestServer(mon, settle=0.0).start()
    yield srv, store
    srv.stop()
    store.close()


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_the_sdk_otlp_http_protobuf_exporter_delivers_spans_that_become_verdicts(served, compression):
    srv, store = served
    spans, ids = traced(3)
    exporter = OTLPSpanExporter(endpoint=srv.url + "/v1/traces", compression=compression, timeout=10)
    assert exporter.export(spans) == SpanExportResult.SUCCESS  # a 200 with an ExportTraceServiceResponse
    exporter.shutdown()
    srv.flush()
    verdicts = {v["trace_id"]: v for v in store.verdicts("pii")}
    assert set(verdicts) == set(ids)  # the trace ids as hex, like OTLP JSON
    assert [verdicts[t]["label"] for t in ids] == ["false", "true", "false"]  # trace 1 has an e-mail address
    assert srv.monitor.ingest["problems"] == {} and srv.requests == 1


def test_protobuf_is_answered_in_protobuf_with_partial_success(served):
    srv, store = served
    spans, ids = traced(1)
    req = encode_spans(spans)
    req.resource_spans[0].scope_spans[0].spans.add(name="no ids")  # one span the monitor cannot use
    code, body, ctype = post(srv.url, gzip.compress(req.SerializeToString()),
                             {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
    assert code == 200 and ctype == "application/x-protobuf"
    resp = ExportTraceServiceResponse.FromString(body)
    assert resp.partial_success.rejected_spans == 1 and "span_missing" in resp.partial_success.error_message
    srv.flush()
    assert [v["trace_id"] for v in store.verdicts("pii")] == ids
    # asked for JSON, a protobuf request gets the JSON summary
    code, body, ctype = post(srv.url, ExportTraceServiceRequest().SerializeToString(),
                             {"Content-Type": "application/x-protobuf", "Accept": "application/json"})
    assert code == 200 and json.loads(body)["items"] == 0


def test_bad_bodies_are_400_json_errors_and_the_limit_holds_after_gzip(served, monkeypatch):
    srv, store = served

    def error(code, body, headers):
        status, raw, ctype = post(srv.url, body, headers)
        assert status == code and ctype == "application/json", (status, raw)
        err = json.loads(raw)["error"]
        assert set(err) == {"code", "message", "expected", "found", "fix"}
        return err

    pb = {"Content-Type": "application/x-protobuf"}
    err = error(400, b"\x0a\xff\xff\xff\xff\x0f", pb)  # a length past the end of the body
    assert err["code"] == "invalid_input" and "ExportTraceServiceRequest" in err["expected"]
    assert error(400, b"not gzip", {**pb, "Content-Encoding": "gzip"})["code"] == "invalid_input"
    assert error(415, b"x", {**pb, "Content-Encoding": "br"})["code"] == "unsupported_media_type"
    monkeypatch.setattr(_http, "MAX_BODY", 4096)
    bomb = gzip.compress(b"\0" * 1_000_000)  # ~1 KB that inflates to 1 MB
    assert len(bomb) < 4096
    err = error(413, bomb, {**pb, "Content-Encoding": "gzip"})
    assert err["code"] == "too_large" and "decompressed" in err["expected"]
    assert error(413, b"x" * 5000, pb)["code"] == "too_large"
    assert store.verdicts("pii") == [] and srv.monitor.summary()["traces"] == 0

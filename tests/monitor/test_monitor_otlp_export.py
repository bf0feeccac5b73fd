"""Verdicts out: each verdict reaches an OTLP receiver (a tiny 127.0.0.1 server in this test that decodes
ExportTraceServiceRequest) as a span in the judged trace, with the GenAI evaluation attributes; an endpoint
that is down costs dropped, counted spans, never scoring."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                      ExportTraceServiceResponse)
from prometheus_client.parser import text_string_to_metric_families

from assay.cli import cli
from assay.monitor import IngestServer, Monitor, RouteConfig, Store
from assay.monitor._config import RunConfig
from assay.monitor._otlp_export import EVALUATION_EVENT, OtlpVerdictExporter, otel_trace_id
from assay.testing import MockEvaluator

TID = "0af7651916cd43dd8448eb211c80319c"
ROOT = "b7ad6b7169203331"


class Receiver:
    """An OTLP/HTTP traces endpoint on 127.0.0.1 that keeps every span it is sent (protobuf, gzip or not)."""

    def __init__(self):
        self.spans: list = []
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                req = ExportTraceServiceRequest.FromString(body)
                outer.requests.append({"path": self.path, "type": self.headers["Content-Type"]})
                for rs in req.resource_spans:
                    for ss in rs.scope_spans:
                        outer.spans += [(rs.resource, ss.scope, sp) for sp in ss.spans]
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def attrs(kvs) -> dict:
    out = {}
    for kv in kvs:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value"))
    return out


def otlp_trace():
    kv = lambda k, v: {"key": k, "value": {"stringValue": v}}  # noqa: E731
    return {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": TID, "spanId": ROOT, "name": "invoke_agent",
         "attributes": [kv("input.value", "my mail is a@b.example"), kv("output.value", "noted, thanks!")]},
        {"traceId": TID, "spanId": "00f067aa0ba902b7", "parentSpanId": ROOT, "name": "chat"}]}]}]}


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_verdicts_reach_the_receiver_as_spans_of_the_judged_trace(tmp_path, receiver):
    store = Store(tmp_path / "m.db")
    checks = [MockEvaluator("pii", scores={TID: 0.8, "t1": 0.1}),
              {"gate": {"type": "length", "field": "output", "max_chars": 5}}]
    mon = Monitor(checks, store, RouteConfig(audit_rate=0.0))
    cfg = RunConfig(export={"otlp": {"endpoint": receiver.url, "service_name": "assay-test"}})
    exporter = OtlpVerdictExporter.from_config(cfg.export.otlp).attach(mon)
    srv = IngestServer(mon, settle=0.0).start()
    try:
        for body in (otlp_trace(), [{"id": "t1", "input": "hello", "output": "hi"}]):
            req = urllib.request.Request(srv.url + "/v1/traces", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=10).read()
        assert exporter.flush(timeout=20)
        with urllib.request.urlopen(srv.url + "/metrics", timeout=10) as resp:
            families = {f.name: f for f in text_string_to_metric_families(resp.read().decode())}
    finally:
        srv.stop()
        counts = exporter.close()
    assert counts == {"exported": 4, "dropped": 0} and len(receiver.spans) == 4
    assert {r["path"] for r in receiver.requests} == {"/v1/traces"}
    assert {r["type"] for r in receiver.requests} == {"application/x-protobuf"}
    spans = {(attrs(sp.attributes)["gen_ai.evaluation.name"], sp.trace_id.hex()): (res, scope, sp)
             for res, scope, sp in receiver.spans}
    res, scope, pii = spans[("pii", TID)]
    a = attrs(pii.attributes)
    assert pii.parent_span_id.hex() == ROOT and pii.name == "evaluation pii"  # the judged trace's root
    assert a["gen_ai.evaluation.score.value"] == pytest.approx(0.8) and a["gen_ai.evaluation.score.label"] == "true"
    assert a["assay.verdict.passed"] is False and a["assay.verdict.route"] == "review"
    assert a["assay.verdict.id"] == store.verdicts("pii", trace_id=TID)[0]["id"]
    (event,) = pii.events
    assert event.name == EVALUATION_EVENT == "gen_ai.evaluation.result"
    assert attrs(event.attributes) == {k: v for k, v in a.items() if k.startswith("gen_ai.")}
    assert attrs(res.attributes)["service.name"] == "assay-test" and scope.name == "assay.monitor"
    _, _, gate = spans[("gate:length", TID)]
    g = attrs(gate.attributes)
    assert g["gen_ai.evaluation.score.label"] == "fail" and g["gen_ai.evaluation.explanation"]
    assert "gen_ai.evaluation.score.value" not in g  # a gate has no score
    # a plain trace's id is not an OTel id: a stable hashed one, the original kept
    hashed = format(otel_trace_id("t1")[0], "032x")
    _, _, plain = spans[("pii", hashed)]
    assert attrs(plain.attributes)["assay.trace_id"] == "t1" and not plain.parent_span_id
    exported = {tuple(s.labels.values()): s.value for s in families["assay_monitor_otlp_spans"].samples}
    assert exported == {("exported",): 4, ("dropped",): 0}
    store.close()


def test_an_endpoint_that_is_down_drops_counted_spans_without_slowing_scoring(tmp_path, caplog):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = Store(tmp_path / "m.db")
    mon = Monitor([MockEvaluator("pii")], store, RouteConfig(audit_rate=0.0))
    exporter = OtlpVerdictExporter(f"http://127.0.0.1:{port}", timeout=0.5, max_queue=3).attach(mon)
    began = time.monotonic()
    src = tmp_path / "t.jsonl"
    src.write_text("".join(json.dumps({"id": f"t{i}", "input": "x", "output": "y"}) + "\n" for i in range(5)))
    mon.run_file(src)
    assert time.monotonic() - began < 2.0  # scoring never waits for the endpoint
    assert len(store.verdicts("pii")) == 5
    assert exporter.flush(timeout=20)
    counts = exporter.close()
    assert counts == {"exported": 0, "dropped": 5}  # past the queue's 3 places, or refused by the endpoint
    assert any("dropped" in r.getMessage() for r in caplog.records if r.name.endswith("_otlp_export"))
    store.close()


def test_cli_exports_verdicts_from_the_config_or_the_flag(tmp_path, receiver):
    src = tmp_path / "t.jsonl"
    src.write_text("".join(json.dumps({"id": f"t{i}", "input": "mail me@x.example" if i else "hi", "output": "ok"})
                           + "\n" for i in range(3)))
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text("evaluators: [{gate: {type: pii, field: input}}]\n"
                   f"export: {{otlp: {{endpoint: {receiver.url}}}}}\n")
    r = CliRunner().invoke(cli, ["monitor", "-c", str(cfg), "--source", str(src), "--db", str(tmp_path / "m.db"),
                                 "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["export"] == {"exported": 3, "dropped": 0} and len(receiver.spans) == 3
    r = CliRunner().invoke(cli, ["monitor", "--gate", "{type: pii}", "--source", str(src), "--db",
                                 str(tmp_path / "n.db"), "--otlp-endpoint", receiver.url + "/v1/traces", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["export"]["exported"] == 3 and len(receiver.spans) == 6
    r = CliRunner().invoke(cli, ["monitor", "--gate", "{type: pii}", "--source", str(src), "--db",
                                 str(tmp_path / "o.db"), "--otlp-endpoint", "x:1"])
    assert r.exit_code == 2 and "otlp" in r.output.lower()

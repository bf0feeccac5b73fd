"""OTLP/HTTP protobuf trace bodies (``ExportTraceServiceRequest``) as the OTLP/HTTP JSON mapping.

A body is decoded with ``opentelemetry-proto`` and turned into the dict the JSON path reads
(``TraceAssembler.add_record``), following the OTLP JSON rules rather than protobuf's default JSON
mapping: keys in lowerCamelCase, enums as integers, 64-bit integers as decimal strings, and trace and
span ids as **lowercase hex** strings (protobuf's mapping writes ``bytes`` as base64; OTLP JSON writes
``traceId`` / ``spanId`` / ``parentSpanId`` and links' ids as hex). A ``bytesValue`` attribute stays
base64, as in OTLP JSON.

    record = decode_trace_request(body)        # AssayError (code invalid_input) when it does not decode
    assembler.add_record(record, "request 1")
"""

from __future__ import annotations

from typing import Any

from ..errors import AssayError, require

PROTOBUF_TYPES = ("application/x-protobuf", "application/protobuf")


def is_protobuf(content_type: str | None) -> bool:
    """Whether a Content-Type names protobuf (OTLP/HTTP's binary encoding)."""
    return (content_type or "").split(";", 1)[0].strip().lower() in PROTOBUF_TYPES


def _service() -> Any:
    return require("opentelemetry.proto.collector.trace.v1.trace_service_pb2", "OTLP/HTTP protobuf trace ingest",
                   extra="monitor", package="opentelemetry-proto")


def parse_trace_request(body: bytes) -> Any:
    """The ``ExportTraceServiceRequest`` in ``body``; an AssayError (400-worthy) when it does not decode."""
    service = _service()
    from google.protobuf.message import DecodeError  # protobuf comes with opentelemetry-proto

    req = service.ExportTraceServiceRequest()
    try:
        req.ParseFromString(body)
    except (DecodeError, ValueError, RuntimeError) as exc:
        why = str(exc).rsplit("': ", 1)[-1][:160] or type(exc).__name__  # the parser's reason, not the type name
        raise AssayError("an OTLP/HTTP protobuf body (an ExportTraceServiceRequest)",
                         f"{len(body)} bytes that do not decode ({why})",
                         "send spans with an OTLP exporter (protocol http/protobuf), or JSON with "
                         "Content-Type: application/json", code="invalid_input") from None
    return req


def _hex_ids(d: dict[str, Any], pb: Any, fields: tuple[tuple[str, str], ...]) -> None:
    for key, attr in fields:
        raw = getattr(pb, attr)
        if raw:
            d[key] = raw.hex()
        else:
            d.pop(key, None)


_SPAN_IDS = (("traceId", "trace_id"), ("spanId", "span_id"), ("parentSpanId", "parent_span_id"))
_LINK_IDS = (("traceId", "trace_id"), ("spanId", "span_id"))


def request_to_json(req: Any) -> dict[str, Any]:
    """An ``ExportTraceServiceRequest`` as OTLP/HTTP JSON (``{"resourceSpans": [...]}``, hex ids)."""
    from google.protobuf.json_format import MessageToDict

    d = MessageToDict(req, use_integers_for_enums=True)
    # repeated elements are never left out one by one, so the dict's lists line up with the message's
    for rs_pb, rs in zip(req.resource_spans, d.get("resourceSpans", [])):
        for ss_pb, ss in zip(rs_pb.scope_spans, rs.get("scopeSpans", [])):
            for sp_pb, sp in zip(ss_pb.spans, ss.get("spans", [])):
                _hex_ids(sp, sp_pb, _SPAN_IDS)
                for ln_pb, ln in zip(sp_pb.links, sp.get("links", [])):
                    _hex_ids(ln, ln_pb, _LINK_IDS)
    d.setdefault("resourceSpans", [])
    return d


def decode_trace_request(body: bytes) -> dict[str, Any]:
    """An OTLP/HTTP protobuf body as the OTLP/HTTP JSON record ``TraceAssembler.add_record`` reads."""
    return request_to_json(parse_trace_request(body))


def span_count(req: Any) -> int:
    return sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)


def trace_response(rejected: int = 0, message: str = "") -> bytes:
    """An ``ExportTraceServiceResponse`` (protobuf), with ``partial_success`` when spans were rejected."""
    resp = _service().ExportTraceServiceResponse()
    if rejected:
        resp.partial_success.rejected_spans = rejected
        resp.partial_success.error_message = message
    return resp.SerializeToString()

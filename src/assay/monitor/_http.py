"""HTTP ingest endpoint for the monitor (stdlib only; binds 127.0.0.1 unless told otherwise).

The server runs a ``Monitor``; decoding what arrives is ``assay.traces.TraceAssembler.add_body`` (JSON)
and ``assay.traces._otlp_proto`` (protobuf, into the same OTLP JSON record).

    POST /v1/traces   body: OTLP/HTTP JSON or protobuf (Content-Type: application/x-protobuf), a
                      span/run/trace object, a JSON list, or JSONL; Content-Encoding: gzip allowed.
                      A protobuf request is answered with an ExportTraceServiceResponse (protobuf),
                      as an OTLP exporter expects, unless it asks for JSON (Accept: application/json).
    GET  /health      {"ok": true}
    GET  /v1/summary  the monitor's running summary
    GET  /metrics     Prometheus series of this monitor (assay.monitor._prometheus; assay[monitor])

A body is at most ``MAX_BODY`` bytes as sent and again once decompressed (a gzip bomb stops there).
A body that does not decode is a 400 with the JSON error shape, never a traceback.
"""

from __future__ import annotations

import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..errors import AssayError, MissingDependency
from ..traces import TraceAssembler
from ..traces._otlp_proto import decode_trace_request, is_protobuf, trace_response
from ._pipeline import Monitor

MAX_BODY = 32 * 1024 * 1024


class Refused(Exception):
    """A request the endpoint answers with an error: HTTP status and the error shape's fields."""

    def __init__(self, status: int, expected: str, found: str, fix: str, code: str):
        super().__init__(found)
        self.status, self.expected, self.found, self.fix, self.code = status, expected, found, fix, code


def decode_content(body: bytes, encoding: str | None, limit: int | None = None) -> bytes:
    """The body behind ``Content-Encoding`` (none or gzip), never more than ``limit`` (``MAX_BODY``) bytes
    decompressed."""
    limit = MAX_BODY if limit is None else limit
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc not in ("gzip", "x-gzip"):
        raise Refused(415, "Content-Encoding gzip (or none)", f"Content-Encoding: {encoding}",
                      "send the body uncompressed or gzip-compressed", "unsupported_media_type")
    out = bytearray()
    data = body
    try:
        while data:  # a gzip stream may hold several members
            d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            out += d.decompress(data, limit + 1 - len(out))
            if len(out) > limit or d.unconsumed_tail:
                raise Refused(413, f"a body of at most {limit} bytes once decompressed",
                              f"more than {limit} bytes after gzip", "send smaller batches", "too_large")
            if not d.eof:
                raise zlib.error("the gzip stream ends early")
            data = d.unused_data
    except zlib.error as exc:
        raise Refused(400, "a gzip-compressed body (Content-Encoding: gzip)", f"bytes that do not inflate ({exc})",
                      "compress the whole body with gzip, or drop the Content-Encoding header",
                      "invalid_input") from None
    return bytes(out)


def _live_metrics(monitor: Monitor) -> Any:
    """A ``MonitorMetrics`` of the monitor, or None without prometheus-client (GET /metrics says how to add it)."""
    try:
        from ._prometheus import MonitorMetrics
    except MissingDependency:
        return None
    return MonitorMetrics(monitor)


class IngestServer:
    """Runs a Monitor behind an HTTP endpoint; spans wait ``settle`` seconds for their trace to finish.
    ``metrics``: the monitor's ``MonitorMetrics`` (default: a new one, when prometheus-client is installed)."""

    def __init__(self, monitor: Monitor, host: str = "127.0.0.1", port: int = 0, settle: float = 2.0,
                 max_traces: int | None = None, metrics: Any = None):
        self.monitor = monitor
        self.max_traces = max_traces  # stop serving once this many traces were scored
        self.asm = TraceAssembler(settle=settle)
        self.lock = threading.Lock()
        self.requests = 0
        self._scoring = 0  # traces handed to the monitor and not scored yet
        self._stop = threading.Event()
        self._finished = False
        self.metrics = metrics if metrics is not None else _live_metrics(monitor)
        if self.metrics is not None:
            self.metrics.queue_sources.append(self.waiting)
        self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        self.httpd.daemon_threads = True
        self.run_id = monitor.store.start_run({"source": f"http://{host}:{self.port}",
                                               "route": monitor.router.config.model_dump(mode="json")})
        monitor.run_id = self.run_id
        self._flusher = threading.Thread(target=self._flush_loop, args=(max(0.2, settle / 2),), daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.httpd.server_address[0]}:{self.port}"

    def waiting(self) -> int:
        """Traces received and not scored yet: spans waiting for their trace to settle, the batch being
        scored, and (a monitor that queues for workers) the store's queue."""
        n = self.asm.pending() + self._scoring
        queue = getattr(self.monitor, "queue", None)
        if queue is not None:
            stats = queue.stats()
            n += int(stats.get("ready", 0)) + int(stats.get("leased", 0))
        return n

    def ingest(self, body: bytes, content_type: str) -> dict[str, Any]:
        """One request body (decompressed): JSON forms, or OTLP protobuf by ``content_type``; an
        AssayError (code invalid_input) when a protobuf body does not decode."""
        record = decode_trace_request(body) if is_protobuf(content_type) else None  # before the lock: may fail
        with self.lock:
            self.requests += 1
            before, problems = self.asm.items, self.asm.problems.total()
            where = f"request {self.requests}"
            if record is not None:
                self.asm.add_record(record, where)
            else:
                self.asm.add_body(body.decode("utf-8", errors="replace"), where, content_type)
            verdicts = self._process(self.asm.pop_ready())
            return {"items": self.asm.items - before, "pending_traces": self.asm.pending(),
                    "verdicts": verdicts, "problems": dict(self.asm.problems.counts),
                    "rejected": self.asm.problems.total() - problems, "stopping": self._stop.is_set()}

    def flush(self, final: bool = False) -> list[dict[str, Any]]:
        with self.lock:
            return self._process(self.asm.pop_ready(final=final))

    def _process(self, ready: list[Any]) -> list[dict[str, Any]]:
        """Score ready traces (no more than ``max_traces`` in all); reaching it stops the server."""
        if self.max_traces is not None:
            ready = ready[:max(0, self.max_traces - self.monitor.traces)]
        self._scoring = len(ready)
        try:
            verdicts = self.monitor.process(ready)
        finally:
            self._scoring = 0
        self.monitor._absorb(self.asm, "http")
        if self.max_traces is not None and self.monitor.traces >= self.max_traces and not self._stop.is_set():
            self._stop.set()  # serve_forever returns; shutdown() from another thread, never a handler's own
            threading.Thread(target=self.httpd.shutdown, daemon=True).start()
        return verdicts

    def _flush_loop(self, every: float) -> None:
        while not self._stop.wait(every):
            self.flush()

    def start(self) -> "IngestServer":
        self._flusher.start()
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def serve_forever(self) -> None:
        self._flusher.start()
        try:
            self.httpd.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> dict[str, Any]:
        if not self._finished:
            self._finished = True
            if not self._stop.is_set():
                self._stop.set()
                self.httpd.shutdown()
            self.httpd.server_close()
            self.flush(final=True)
            self.monitor.store.finish_run(self.run_id, self.monitor.summary())
        return self.monitor.summary()


def _read_body(headers: Any, rfile: Any) -> bytes:
    """The request body as sent (``Content-Length`` bytes, at most ``MAX_BODY``)."""
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        raise Refused(411, "a Content-Length header", "Transfer-Encoding: chunked",
                      "send the body with its length (OTLP exporters do)", "length_required")
    try:
        n = int(headers.get("Content-Length") or 0)
    except ValueError:
        raise Refused(400, "a numeric Content-Length", repr(headers.get("Content-Length")), "send a valid length",
                      "invalid_input") from None
    if n < 0 or n > MAX_BODY:
        raise Refused(413, f"a body of at most {MAX_BODY} bytes", f"{n} bytes", "send smaller batches", "too_large")
    return rfile.read(n)


def _handler(server: IngestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _raw(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _send(self, code: int, data: Any) -> None:
            self._raw(code, json.dumps(data, default=str).encode(), "application/json")

        def _error(self, code: int, expected: str, found: str, fix: str, kind: str) -> None:
            self._send(code, {"error": {"code": kind, "message": f"expected {expected}; found {found}. Fix: {fix}",
                                        "expected": expected, "found": found, "fix": fix}})

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/health":
                self._send(200, {"ok": True, "db": str(server.monitor.store.path)})
            elif self.path == "/v1/summary":
                self._send(200, server.monitor.summary())
            elif self.path.split("?", 1)[0] == "/metrics":
                if server.metrics is None:
                    err = MissingDependency("prometheus-client", "the monitor's Prometheus metrics", "monitor")
                    self._error(501, err.expected, err.found, err.fix, err.code)
                    return
                self._raw(200, *server.metrics.scrape(self.headers.get("Accept")))
            else:
                self._error(404, "GET /health, /v1/summary or /metrics", self.path, "use one of those paths",
                            "not_found")

        def do_POST(self) -> None:  # noqa: N802
            if self.path not in ("/v1/traces", "/ingest"):
                self._error(404, "POST /v1/traces", self.path, "post traces to /v1/traces", "not_found")
                return
            ctype = self.headers.get("Content-Type", "application/json")
            try:
                body = decode_content(_read_body(self.headers, self.rfile), self.headers.get("Content-Encoding"))
                result = server.ingest(body, ctype)
            except Refused as r:
                self._error(r.status, r.expected, r.found, r.fix, r.code)
                return
            except AssayError as exc:  # a body that does not decode
                self._error(400, exc.expected, exc.found, exc.fix, exc.code)
                return
            except Exception as exc:  # noqa: BLE001 - reported to the client, not swallowed
                self._error(500, "a trace batch the monitor can score", type(exc).__name__ + ": " + str(exc)[:200],
                            "see the monitor's log", "internal")
                return
            if is_protobuf(ctype) and "json" not in (self.headers.get("Accept") or ""):
                n = result["rejected"]
                why = "; ".join(f"{k} {v}" for k, v in result["problems"].items()) if n else ""
                self._raw(200, trace_response(n, why), "application/x-protobuf")
                return
            self._send(200, result)

    return Handler

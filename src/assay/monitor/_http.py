"""HTTP ingest endpoint for the monitor (stdlib only; binds 127.0.0.1 unless told otherwise).

The server runs a ``Monitor``; decoding what arrives is ``assay.traces.TraceAssembler.add_body``.

    POST /v1/traces   body: OTLP/HTTP JSON, a span/run/trace object, a JSON list, or JSONL
    GET  /health      {"ok": true}
    GET  /v1/summary  the monitor's running summary
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..traces import TraceAssembler
from ._pipeline import Monitor

MAX_BODY = 32 * 1024 * 1024


class IngestServer:
    """Runs a Monitor behind an HTTP endpoint; spans wait ``settle`` seconds for their trace to finish."""

    def __init__(self, monitor: Monitor, host: str = "127.0.0.1", port: int = 0, settle: float = 2.0,
                 max_traces: int | None = None):
        self.monitor = monitor
        self.max_traces = max_traces  # stop serving once this many traces were scored
        self.asm = TraceAssembler(settle=settle)
        self.lock = threading.Lock()
        self.requests = 0
        self._stop = threading.Event()
        self._finished = False
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

    def ingest(self, body: bytes, content_type: str) -> dict[str, Any]:
        text = body.decode("utf-8", errors="replace")
        with self.lock:
            self.requests += 1
            before = self.asm.items
            self.asm.add_body(text, f"request {self.requests}", content_type)
            verdicts = self._process(self.asm.pop_ready())
            return {"items": self.asm.items - before, "pending_traces": self.asm.pending(),
                    "verdicts": verdicts, "problems": dict(self.asm.problems.counts),
                    "stopping": self._stop.is_set()}

    def flush(self, final: bool = False) -> list[dict[str, Any]]:
        with self.lock:
            return self._process(self.asm.pop_ready(final=final))

    def _process(self, ready: list[Any]) -> list[dict[str, Any]]:
        """Score ready traces (no more than ``max_traces`` in all); reaching it stops the server."""
        if self.max_traces is not None:
            ready = ready[:max(0, self.max_traces - self.monitor.traces)]
        verdicts = self.monitor.process(ready)
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


def _handler(server: IngestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, code: int, data: Any) -> None:
            body = json.dumps(data, default=str).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, code: int, expected: str, found: str, fix: str, kind: str) -> None:
            self._send(code, {"error": {"code": kind, "message": f"expected {expected}; found {found}. Fix: {fix}",
                                        "expected": expected, "found": found, "fix": fix}})

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/health":
                self._send(200, {"ok": True, "db": str(server.monitor.store.path)})
            elif self.path == "/v1/summary":
                self._send(200, server.monitor.summary())
            else:
                self._error(404, "GET /health or /v1/summary", self.path, "use one of those paths", "not_found")

        def do_POST(self) -> None:  # noqa: N802
            if self.path not in ("/v1/traces", "/ingest"):
                self._error(404, "POST /v1/traces", self.path, "post traces to /v1/traces", "not_found")
                return
            ctype = self.headers.get("Content-Type", "application/json")
            if "protobuf" in ctype:
                self._error(415, "OTLP/HTTP JSON (Content-Type: application/json)", ctype,
                            "set the exporter's encoding to JSON (OTEL_EXPORTER_OTLP_PROTOCOL=http/json)",
                            "unsupported_media_type")
                return
            n = int(self.headers.get("Content-Length") or 0)
            if n > MAX_BODY:
                self._error(413, f"a body of at most {MAX_BODY} bytes", f"{n} bytes", "send smaller batches",
                            "too_large")
                return
            try:
                result = server.ingest(self.rfile.read(n), ctype)
            except Exception as exc:  # noqa: BLE001 - reported to the client, not swallowed
                self._error(500, "a trace batch the monitor can score", type(exc).__name__ + ": " + str(exc)[:200],
                            "see the monitor's log", "internal")
                return
            self._send(200, result)

    return Handler

"""Verdicts out as OpenTelemetry spans (OTLP/HTTP protobuf), so a Collector can forward them anywhere.

Each stored verdict becomes one span in the trace it judged: the same trace id, the judged span (a
span-targeted metric's ``span_id``) or the trace's root span as parent. Span and event carry the
OpenTelemetry GenAI evaluation attributes (semantic conventions, development status: the
``gen_ai.evaluation.result`` event):

    gen_ai.evaluation.name          the check's name (the metric, a gate ``metric/gate``, a suite)
    gen_ai.evaluation.score.value   Verdict.score: binary, P(positive label); categorical, P(label) (absent for gates)
    gen_ai.evaluation.score.label   Verdict.label: the label the evaluator decided
    gen_ai.evaluation.explanation   Verdict.reason, when there is one (gates and suites say why)

and ``assay.verdict.*`` (id, passed, kind, route, route_reason, confidence, severity). A trace id that is
not 32 hex digits (a plain JSONL trace's ``"t1"``) is hashed into one, and the original is kept in
``assay.trace_id``.

Scoring never waits for the endpoint: ``observe`` (a ``Monitor`` observer) only puts a record on a
bounded queue; one background thread batches and exports. A full queue or a failed export (endpoint
down after the exporter's retries, within ``timeout``) drops those spans, counts them and logs a
warning (the first, then at most one a minute).

    exporter = OtlpVerdictExporter("http://127.0.0.1:4318").attach(monitor)
    ...
    exporter.close()                               # flushes what is queued (bounded by a timeout)
"""

from __future__ import annotations

import hashlib
import logging
import queue
import random
import re
import threading
import time
from typing import Any

from .._version import __version__
from ..errors import require

require("opentelemetry.sdk.trace", "exporting verdicts as OpenTelemetry spans", extra="otel",
        package="opentelemetry-sdk")
require("opentelemetry.exporter.otlp.proto.http.trace_exporter", "exporting verdicts over OTLP/HTTP", extra="otel",
        package="opentelemetry-exporter-otlp-proto-http")

from opentelemetry.exporter.otlp.proto.http import Compression  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import Event, ReadableSpan  # noqa: E402
from opentelemetry.sdk.trace.export import SpanExportResult  # noqa: E402
from opentelemetry.sdk.util.instrumentation import InstrumentationScope  # noqa: E402
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags  # noqa: E402

_log = logging.getLogger(__name__)

EVALUATION_EVENT = "gen_ai.evaluation.result"
NAME, SCORE, LABEL, EXPLANATION = ("gen_ai.evaluation.name", "gen_ai.evaluation.score.value",
                                   "gen_ai.evaluation.score.label", "gen_ai.evaluation.explanation")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
WARN_EVERY = 60.0  # seconds between two drop warnings


def traces_endpoint(url: str) -> str:
    """The OTLP/HTTP traces URL of a base endpoint (``http://host:4318`` -> ``.../v1/traces``), as
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` is read; a URL that already ends with ``/v1/traces`` is kept."""
    url = url.rstrip("/")
    return url if url.endswith("/v1/traces") else url + "/v1/traces"


def otel_trace_id(trace_id: str) -> tuple[int, bool]:
    """(OTel trace id, whether it is the original): 32 hex digits are used as they are, anything
    else is hashed (SHA-256, first 16 bytes) into a stable id."""
    t = str(trace_id).lower()
    if _HEX32.fullmatch(t) and int(t, 16):
        return int(t, 16), True
    return int(hashlib.sha256(str(trace_id).encode()).hexdigest()[:32], 16) or 1, False


def otel_span_id(span_id: Any) -> int | None:
    s = str(span_id or "").lower()
    return int(s, 16) if _HEX16.fullmatch(s) and int(s, 16) else None


def _parent(v: Any) -> Any:
    """The judged span: a span-targeted verdict's span, else the trace's root span (``Trace.meta``)."""
    if getattr(v, "span_id", None):
        return v.span_id
    row = getattr(v, "row", None)
    meta = row.get("meta") if isinstance(row, dict) else None
    return meta.get("root_span_id") if isinstance(meta, dict) else None


def evaluation_attributes(v: Any) -> dict[str, Any]:
    """The GenAI evaluation attributes of one verdict (those that apply)."""
    attrs: dict[str, Any] = {NAME: str(v.metric)}
    if v.score is not None:
        attrs[SCORE] = float(v.score)
    if v.label is not None:
        attrs[LABEL] = str(v.label)
    if v.reason:
        attrs[EXPLANATION] = str(v.reason)
    return attrs


def verdict_record(v: Any, route: Any, verdict_id: int | None, end_ns: int, seconds: float | None
                   ) -> dict[str, Any]:
    """What the export thread needs to build one verdict's span (built here, on the scoring thread: small)."""
    trace_id, original = otel_trace_id(v.trace_id)
    gen_ai = evaluation_attributes(v)
    attrs: dict[str, Any] = {**gen_ai, "assay.verdict.passed": bool(v.passed), "assay.verdict.kind": str(v.kind),
                             "assay.verdict.route": str(route.route), "assay.verdict.severity": str(v.severity)}
    if verdict_id is not None:
        attrs["assay.verdict.id"] = int(verdict_id)
    if route.reason:
        attrs["assay.verdict.route_reason"] = str(route.reason)
    if v.confidence is not None:
        attrs["assay.verdict.confidence"] = float(v.confidence)
    parent = _parent(v)
    if not original:
        attrs["assay.trace_id"] = str(v.trace_id)
    if parent is not None and otel_span_id(parent) is None:
        attrs["assay.span_id"] = str(parent)
    start_ns = end_ns - int((seconds or 0.0) * 1e9)
    return {"trace_id": trace_id, "parent": otel_span_id(parent) if original else None,
            "name": f"evaluation {v.metric}", "attrs": attrs, "gen_ai": gen_ai, "start": start_ns, "end": end_ns}


class OtlpVerdictExporter:
    """Sends each verdict of the monitors it is attached to as a span, in the background."""

    def __init__(self, endpoint: str, *, headers: dict[str, str] | None = None, timeout: float = 5.0,
                 service_name: str = "assay-monitor", max_queue: int = 2048, max_batch: int = 256,
                 interval: float = 1.0, compression: bool = True, exporter: Any = None):
        self.endpoint = traces_endpoint(endpoint)
        self.exporter = exporter or OTLPSpanExporter(
            endpoint=self.endpoint, headers=headers, timeout=timeout,
            compression=Compression.Gzip if compression else Compression.NoCompression)
        self.resource = Resource.create({"service.name": service_name})
        self.scope = InstrumentationScope("assay.monitor", __version__)
        self.max_batch = max_batch
        self.interval = interval
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=max_queue)
        self.counts = {"exported": 0, "dropped": 0}
        self._lock = threading.Lock()
        self._warned_at: float | None = None
        self._busy = 0  # records taken off the queue and not exported (or dropped) yet
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="assay-otlp-export", daemon=True)
        self._thread.start()

    @classmethod
    def from_config(cls, c: Any) -> "OtlpVerdictExporter":
        """From the monitor YAML's ``export.otlp`` (``_config.OtlpExportConfig``)."""
        return cls(c.endpoint, headers=dict(c.headers), timeout=c.timeout, service_name=c.service_name,
                   max_queue=c.max_queue, compression=c.compression)

    def attach(self, monitor: Any) -> "OtlpVerdictExporter":
        """Export ``monitor``'s verdicts from now on (its ``MonitorMetrics`` count them: ``export_counts``)."""
        monitor.observers.append(self.observe)
        return self

    def observe(self, verdicts: list[Any], routes: list[Any], ids: list[Any], seconds: float | None) -> None:
        """A ``Monitor`` observer: queue one span per stored verdict; never blocks, never raises."""
        now = time.time_ns()
        for v, r, vid in zip(verdicts, routes, ids):
            if vid is None:  # stored by another worker first: that worker exports it
                continue
            try:
                self.queue.put_nowait(verdict_record(v, r, vid, now, seconds))
            except queue.Full:
                self._drop(1, "the export queue is full")
        if self.queue.qsize() >= self.max_batch:
            self._wake.set()

    def export_counts(self) -> dict[str, int]:
        """Spans ``exported`` and ``dropped`` so far."""
        with self._lock:
            return dict(self.counts)

    # --- the background thread --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            while self._send_batch():
                pass
            if self._stop.is_set() and self.queue.empty():
                return

    def _send_batch(self) -> bool:
        """Export up to ``max_batch`` queued records; False when the queue was empty."""
        batch: list[dict[str, Any]] = []
        with self._lock:
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            self._busy += len(batch)
        if not batch:
            return False
        try:
            result = self.exporter.export([self._span(rec) for rec in batch])
        except Exception as exc:  # noqa: BLE001 - an exporter bug drops the batch, never the monitor
            _log.debug("OTLP export raised", exc_info=True)
            result, why = SpanExportResult.FAILURE, f"{type(exc).__name__}: {exc}"
        else:
            why = f"the endpoint {self.endpoint} did not take them"
        with self._lock:
            self._busy -= len(batch)
            if result == SpanExportResult.SUCCESS:
                self.counts["exported"] += len(batch)
        if result != SpanExportResult.SUCCESS:
            self._drop(len(batch), why)
        return True

    def _span(self, rec: dict[str, Any]) -> ReadableSpan:
        flags = TraceFlags(TraceFlags.SAMPLED)
        parent = (SpanContext(rec["trace_id"], rec["parent"], is_remote=True, trace_flags=flags)
                  if rec["parent"] else None)
        context = SpanContext(rec["trace_id"], random.getrandbits(64) or 1, is_remote=False, trace_flags=flags)
        return ReadableSpan(rec["name"], context=context, parent=parent, resource=self.resource,
                            attributes=rec["attrs"], events=[Event(EVALUATION_EVENT, rec["gen_ai"], rec["end"])],
                            kind=SpanKind.INTERNAL, start_time=rec["start"], end_time=rec["end"],
                            instrumentation_scope=self.scope)

    def _drop(self, n: int, why: str) -> None:
        with self._lock:
            self.counts["dropped"] += n
            total = self.counts["dropped"]
            now = time.monotonic()
            warn = self._warned_at is None or now - self._warned_at >= WARN_EVERY
            if warn:
                self._warned_at = now
        if warn:
            _log.warning("assay monitor: dropped %d verdict span(s) (%d in all): %s", n, total, why)

    # --- the end ------------------------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued span was exported or dropped (True), or ``timeout`` seconds (False)."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while time.monotonic() < deadline:
            with self._lock:
                if self.queue.empty() and not self._busy:
                    return True
            self._wake.set()
            time.sleep(0.02)
        return False

    def close(self, timeout: float = 10.0) -> dict[str, int]:
        """Flush (bounded by ``timeout``), stop the thread and shut the exporter down; returns the counts."""
        if not self._stop.is_set():
            self.flush(timeout)
            self._stop.set()
            self._wake.set()
            self._thread.join(timeout=max(0.1, timeout))
            try:
                self.exporter.shutdown()
            except Exception:  # noqa: BLE001
                _log.debug("OTLP exporter shutdown failed", exc_info=True)
        return self.export_counts()

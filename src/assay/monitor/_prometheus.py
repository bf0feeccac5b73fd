"""Prometheus series of the monitor, in a registry of its own (never the process-wide default).

Two sources give the same verdict series:

- ``MonitorMetrics(monitor)``: a live monitor (``IngestServer`` serves it at ``GET /metrics``). It
  observes each stored verdict (``Monitor.observers``), so its counters count what this process
  scored since it started (sum them over the monitor processes); it alone has the scoring latency,
  the queue depth and the ingest counts.
- ``store_exposition(store, metrics)``: the verdicts in a monitor store, all time (the assay server's
  ``GET /v1/monitor/metrics``), counted at scrape time.

Series (``metric`` is the check's name: an evaluator, a gate, ``metric/gate`` or a suite):

    assay_monitor_verdicts_total{metric,kind,label,passed}   verdicts stored, by label and outcome
    assay_monitor_pass_rate{metric}                          passed / verdicts
    assay_monitor_routed_to_review_total{metric,reason}      sent to people: uncertain, high_severity_fail, gate_fail
    assay_monitor_audited_total{metric}                      confident passes sampled for audit (route review/audit)
    assay_monitor_scoring_seconds{metric}                    histogram: one check scoring one batch (live only)
    assay_monitor_queue_depth                                traces received and not scored yet (live only)
    assay_monitor_traces_total                               traces scored, or queued for workers (live only)
    assay_monitor_ingest_problems_total{reason}              items that could not be used (live only)
    assay_monitor_otlp_spans_total{outcome}                  verdict spans exported / dropped (live, with export on)
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from typing import Any, Callable, Iterable

from ..errors import require

require("prometheus_client", "the monitor's Prometheus metrics", extra="monitor", package="prometheus-client")

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram  # noqa: E402
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: E402
from prometheus_client.exposition import choose_encoder  # noqa: E402

PREFIX = "assay_monitor"
# seconds per scoring batch: gates take microseconds, an encoder on a CPU a few seconds for 32 rows
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
HELP = {
    "verdicts": "Verdicts stored, by the check's label and whether it passed.",
    "pass_rate": "Share of a check's verdicts that passed.",
    "review": "Verdicts routed to a person (reason: uncertain, high_severity_fail, gate_fail); audits not included.",
    "audit": "Confident passes sampled for a person's audit (route review, reason audit).",
}


def label_value(v: Any) -> str:
    return "none" if v is None or v == "" else str(v)


def exposition(registry: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    """(body, content type) of a scrape: Prometheus text, or OpenMetrics when the scraper asks for it."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


class MonitorMetrics:
    """The live series of one ``Monitor``: attaches itself to ``monitor.observers``."""

    def __init__(self, monitor: Any, registry: CollectorRegistry | None = None):
        self.monitor = monitor
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.verdicts = Counter(f"{PREFIX}_verdicts", HELP["verdicts"], ["metric", "kind", "label", "passed"],
                                registry=r)
        self.pass_rate = Gauge(f"{PREFIX}_pass_rate", HELP["pass_rate"], ["metric"], registry=r)
        self.review = Counter(f"{PREFIX}_routed_to_review", HELP["review"], ["metric", "reason"], registry=r)
        self.audit = Counter(f"{PREFIX}_audited", HELP["audit"], ["metric"], registry=r)
        self.latency = Histogram(f"{PREFIX}_scoring_seconds", "Seconds one check took to score one batch of rows.",
                                 ["metric"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue = Gauge(f"{PREFIX}_queue_depth", "Traces received and not scored yet.", registry=r)
        self.queue.set_function(self.queue_depth)
        self.queue_sources: list[Callable[[], int]] = []  # e.g. the ingest server's traces waiting to settle
        self._tally: dict[str, list[int]] = {}  # metric -> [passed, verdicts]
        self._lock = threading.Lock()
        for c in getattr(monitor, "checks", []):  # every check's series exist before its first verdict
            self.audit.labels(c.name)
            self.latency.labels(c.name)
        r.register(_LiveCollector(self))
        monitor.observers.append(self.observe)

    def observe(self, verdicts: list[Any], routes: list[Any], ids: list[Any], seconds: float | None) -> None:
        """One stored batch (``Monitor.observers``); a verdict another worker stored first (id None) is skipped."""
        stored = [(v, r) for v, r, i in zip(verdicts, routes, ids) if i is not None]
        if seconds is not None and verdicts:  # one check's batch: its verdicts and its gates' ("name/gate")
            self.latency.labels(min((v.metric for v in verdicts), key=len)).observe(seconds)
        with self._lock:
            for v, r in stored:
                self.verdicts.labels(v.metric, v.kind, label_value(v.label), str(bool(v.passed)).lower()).inc()
                t = self._tally.setdefault(v.metric, [0, 0])
                t[0] += int(bool(v.passed))
                t[1] += 1
                self.pass_rate.labels(v.metric).set(t[0] / t[1])
                if r.route == "review":
                    if r.reason == "audit":
                        self.audit.labels(v.metric).inc()
                    else:
                        self.review.labels(v.metric, r.reason or "none").inc()

    def queue_depth(self) -> int:
        total = 0
        for source in list(self.queue_sources):
            try:
                total += int(source())
            except Exception:  # noqa: BLE001 - a scrape never fails for one source
                continue
        return total

    def scrape(self, accept: str | None = None) -> tuple[bytes, str]:
        return exposition(self.registry, accept)


class _LiveCollector:
    """Series read from the monitor at scrape time: traces scored, ingest problems, exported spans."""

    def __init__(self, metrics: MonitorMetrics):
        self.m = metrics

    def describe(self) -> list[Any]:
        return []  # collected at scrape time only (no names to reserve)

    def collect(self) -> Iterable[Any]:
        mon = self.m.monitor
        yield CounterMetricFamily(f"{PREFIX}_traces", "Traces this monitor scored (with queue: true, queued for "
                                  "workers).", value=mon.traces)
        problems = CounterMetricFamily(f"{PREFIX}_ingest_problems", "Received items that could not be used.",
                                       labels=["reason"])
        for reason, n in sorted(dict(mon.ingest.get("problems") or {}).items()):
            problems.add_metric([str(reason)], n)
        yield problems
        # the OTLP exporters attached to the monitor (``OtlpVerdictExporter.observe`` among its observers)
        exporters = [getattr(o, "__self__", None) for o in list(mon.observers)]
        counts = [e.export_counts() for e in exporters if hasattr(e, "export_counts")]
        if counts:
            spans = CounterMetricFamily(f"{PREFIX}_otlp_spans", "Verdict spans sent to the OTLP endpoint, or "
                                        "dropped (endpoint down, queue full).", labels=["outcome"])
            for outcome in ("exported", "dropped"):
                spans.add_metric([outcome], sum(c.get(outcome, 0) for c in counts))
            yield spans


# --- the same verdict series from a store --------------------------------------------------------
_COUNT_SQL = ("SELECT metric, kind, label, passed, route, route_reason, COUNT(*) AS n FROM verdicts"
              " GROUP BY metric, kind, label, passed, route, route_reason")


class StoreCollector:
    """The verdict series of a monitor store (all time), counted when scraped; ``metrics``: only these."""

    def __init__(self, store: Any, metrics: Iterable[str] | None = None):
        self.store = store
        self.only = None if metrics is None else set(metrics)

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        verdicts = CounterMetricFamily(f"{PREFIX}_verdicts", HELP["verdicts"],
                                       labels=["metric", "kind", "label", "passed"])
        review = CounterMetricFamily(f"{PREFIX}_routed_to_review", HELP["review"], labels=["metric", "reason"])
        audit = CounterMetricFamily(f"{PREFIX}_audited", HELP["audit"], labels=["metric"])
        rate = GaugeMetricFamily(f"{PREFIX}_pass_rate", HELP["pass_rate"], labels=["metric"])
        by_label: Tally = Tally()
        routed: Tally = Tally()
        audits: Tally = Tally()
        tally: dict[str, list[int]] = {}
        for row in self.store._all(_COUNT_SQL):  # one GROUP BY over the verdicts table
            m, n = row["metric"], int(row["n"])
            if self.only is not None and m not in self.only:
                continue
            passed = bool(row["passed"])
            by_label[(m, row["kind"], label_value(row["label"]), str(passed).lower())] += n
            t = tally.setdefault(m, [0, 0])
            t[0] += n * passed
            t[1] += n
            if row["route"] == "review":
                if row["route_reason"] == "audit":
                    audits[m] += n
                else:
                    routed[(m, row["route_reason"] or "none")] += n
        for key, n in sorted(by_label.items()):
            verdicts.add_metric(list(key), n)
        for key, n in sorted(routed.items()):
            review.add_metric(list(key), n)
        for m, (p, n) in sorted(tally.items()):
            audit.add_metric([m], audits[m])
            rate.add_metric([m], p / n)
        yield from (verdicts, rate, review, audit)


def store_exposition(store: Any, metrics: Iterable[str] | None = None, accept: str | None = None
                     ) -> tuple[bytes, str]:
    """(body, content type) of a scrape of a monitor store's verdict series (``metrics``: only these)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, metrics))
    return exposition(registry, accept)

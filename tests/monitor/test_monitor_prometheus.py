"""Prometheus series of a live monitor (the ingest server's GET /metrics): verdicts by label, pass rate,
routed to review, audited, scoring latency, queue depth; each monitor in a registry of its own."""

from __future__ import annotations

import json
import re
import urllib.request
from collections import Counter
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from assay.monitor import IngestServer, Monitor, RouteConfig, Store
from assay.monitor._prometheus import MonitorMetrics
from assay.testing import MockEvaluator

# P(positive) per trace: 0.3-0.7 -> review:uncertain; >= 0.7 a high-severity fail -> review; the rest pass,
# half of them audited (audit_rate 0.5)
DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "assay-monitor.json"
SCORES = [0.05, 0.95, 0.5, 0.45, 0.6, 0.1, 0.02, 0.9, 0.55, 0.35, 0.2, 0.65]


def plain(n: int) -> list[dict]:
    return [{"id": f"t{i}", "input": f"user message {i}", "output": f"reply {i}"} for i in range(n)]


def scrape(url: str) -> dict[str, dict[tuple, float]]:
    """name -> {sorted label items: value} of every sample, from the Prometheus text format."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    out: dict[str, dict[tuple, float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def post(url: str, records: list[dict]) -> dict:
    req = urllib.request.Request(url + "/v1/traces", data=json.dumps(records).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_scrape_has_the_verdict_series_with_the_stored_values(tmp_path):
    store = Store(tmp_path / "m.db")
    scores = {f"t{i}": SCORES[i] for i in range(12)}
    checks = [MockEvaluator("toxicity", scores=scores), {"gate": {"type": "length", "field": "output", "max_chars": 7}}]
    mon = Monitor(checks, store, RouteConfig(band=(0.3, 0.7), audit_rate=0.5, seed=0))
    srv = IngestServer(mon, settle=0.0).start()
    try:
        before = scrape(srv.url)
        assert before["assay_monitor_audited_total"][(("metric", "toxicity"),)] == 0  # series exist before traffic
        post(srv.url, plain(7))
        post(srv.url, plain(12)[7:])
        m = scrape(srv.url)
    finally:
        srv.stop()
    stored = store.verdicts()
    assert len(stored) == 24  # 12 traces x (toxicity + the length gate)
    by_label = Counter((v["metric"], v["kind"], str(v["label"]), str(bool(v["passed"])).lower()) for v in stored)
    got = {(d["metric"], d["kind"], d["label"], d["passed"]): n
           for d, n in ((dict(k), n) for k, n in m["assay_monitor_verdicts_total"].items())}
    assert got == dict(by_label)
    for metric in ("toxicity", "gate:length"):
        mine = [v for v in stored if v["metric"] == metric]
        assert m["assay_monitor_pass_rate"][(("metric", metric),)] == sum(v["passed"] for v in mine) / len(mine)
    routes = store.route_counts()["toxicity"]
    review = {dict(k)["reason"]: n for k, n in m["assay_monitor_routed_to_review_total"].items()
              if dict(k)["metric"] == "toxicity"}
    assert review == {r.split(":", 1)[1]: n for r, n in routes.items()
                      if r.startswith("review:") and r != "review:audit"}
    assert review["uncertain"] > 0 and review["high_severity_fail"] > 0
    assert m["assay_monitor_audited_total"][(("metric", "toxicity"),)] == routes["review:audit"] > 0
    # one scoring batch per check per request, each timed
    assert m["assay_monitor_scoring_seconds_count"][(("metric", "toxicity"),)] == 2
    assert m["assay_monitor_scoring_seconds_sum"][(("metric", "toxicity"),)] > 0
    assert m["assay_monitor_traces_total"][()] == 12 and m["assay_monitor_queue_depth"][()] == 0
    store.close()


def test_queue_depth_counts_traces_waiting_to_settle_and_registries_stay_apart(tmp_path):
    store = Store(tmp_path / "m.db")
    mon = Monitor([MockEvaluator("pii")], store, RouteConfig(audit_rate=0.0))
    srv = IngestServer(mon, settle=60.0).start()  # spans wait for their trace to settle
    spans = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": f"{i:032x}", "spanId": f"{i:016x}", "attributes": [
            {"key": "input.value", "value": {"stringValue": "hi"}},
            {"key": "output.value", "value": {"stringValue": "hello"}}]} for i in (1, 2)]}]}]}
    try:
        req = urllib.request.Request(srv.url + "/v1/traces", data=json.dumps(spans).encode(),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()
        assert scrape(srv.url)["assay_monitor_queue_depth"][()] == 2
    finally:
        srv.stop()  # scores what waits
    assert len(store.verdicts("pii")) == 2 and srv.metrics.queue_depth() == 0
    # a second monitor has its own series; nothing lands in the process-wide registry
    other = MonitorMetrics(Monitor([MockEvaluator("pii")], Store(tmp_path / "o.db"), RouteConfig(audit_rate=0.0)))
    assert other.registry is not srv.metrics.registry
    text = other.scrape()[0].decode()
    assert "assay_monitor_verdicts_total{" not in text
    assert REGISTRY.get_sample_value("assay_monitor_traces_total") is None
    store.close()


class _Exporter:
    """Stands in for an OtlpVerdictExporter among a monitor's observers (its counts become a series)."""

    def observe(self, *args):
        pass

    def export_counts(self):
        return {"exported": 3, "dropped": 1}


def test_the_grafana_dashboard_queries_only_series_the_monitor_exposes(tmp_path):
    mon = Monitor([MockEvaluator("pii")], Store(tmp_path / "m.db"), RouteConfig(audit_rate=0.0))
    mon.observers.append(_Exporter().observe)
    metrics = MonitorMetrics(mon)
    exposed = set()
    for fam in text_string_to_metric_families(metrics.scrape()[0].decode()):
        # a family without samples yet (no verdicts) still names its series
        exposed |= {s.name for s in fam.samples} | {fam.name + ("_total" if fam.type == "counter" else "")}
    assert {"assay_monitor_otlp_spans_total", "assay_monitor_scoring_seconds_bucket"} <= exposed
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {n for e in exprs for n in re.findall(r"assay_monitor_[a-z_]+", e)}
    assert len(used) >= 8 and used <= exposed, used - exposed
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "job", "metric"}

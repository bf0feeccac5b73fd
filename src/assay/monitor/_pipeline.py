"""The monitor: every trace through gates and evaluators, verdicts stored and routed.

    mon = Monitor(["runs/pii"], Store("monitor.db"), RouteConfig(margin=0.2, audit_rate=0.05))
    mon.run_file("traces.jsonl")            # or follow=True, like tail -f
    mon.summary()

With ``queue=True`` the monitor is the ingest side of workers: ``process`` puts the traces in the store's
queue (``_queue.TraceQueue``) and scores nothing; ``assay monitor worker`` (``_worker.Worker``) scores them.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import AssayError
from ..evaluator._shared import SharedScorer
from ..metrics import InputShape
from ..traces import Problems, Trace, TraceAssembler, follow_lines
from ._checks import make_checks, subject_key
from ._queue import TraceQueue
from ._route import RouteConfig, Router
from ._suites import make_suites, suite_verdicts
from ._store import Store

_log = logging.getLogger(__name__)


class Monitor:
    """Score every finished trace with the evaluators and gates, route each verdict (pass, fail,
    human review for doubt near the threshold, audit samples) and store it for review and drift."""

    def __init__(self, checks: Iterable[Any], store: Store, route: RouteConfig | None = None, *,
                 batch_size: int = 32, clock: Callable[[], float] = time.time, suites: Iterable[Any] = (),
                 queue: bool = False):
        self.checks = [] if queue else make_checks(checks)  # queue: the workers load and register them
        self.suites = [] if queue else make_suites(suites, self.checks)  # checks per trace: kind "suite" verdicts
        # checks whose evaluators run one frozen body (MiniLM, SmolLM2) run it once per distinct text of a batch
        self.shared = SharedScorer(getattr(c, "evaluator", None) for c in self.checks)
        self.store = store
        self.router = Router(route or RouteConfig())
        self.batch_size = batch_size
        self.clock = clock
        self.queue = TraceQueue(store, clock=clock) if queue else None  # enqueue for workers, score nothing
        self.traces = 0
        self.metrics: dict[str, dict[str, Any]] = {}
        self.ingest: dict[str, Any] = {"items": 0, "spans": 0, "problems": Counter(), "warnings": Counter()}
        # called as observer(verdicts, routes, verdict_ids, seconds) after each stored batch (seconds: the
        # check's scoring time, None for suites): Prometheus series (_prometheus.py), OTLP export (_otlp_export.py)
        self.observers: list[Callable[[list[Any], list[Any], list[int], float | None], None]] = []
        for c in self.checks:
            spec = c.metric.to_dict() if c.metric is not None else c.gate.model_dump(mode="json", by_alias=True)
            region = getattr(c, "review_region", None)
            if region:  # the certified routing target: drift compares the audited disagreement with it
                spec["routing"] = {k: region.get(k) for k in ("target", "delta", "band", "min_confidence")}
            store.register_check(c.name, c.kind, spec=spec, source=c.source, severity=c.severity,
                                 eval_kappa=c.eval_kappa, baseline=c.baseline)
            for g in getattr(c, "gates", []):
                store.register_check(f"{c.name}/{g.label}", "gate", spec=g.model_dump(mode="json", by_alias=True),
                                     severity=g.severity)
        for s in self.suites:
            store.register_check(s.name, s.kind, spec=s.spec(), severity=s.severity)

    # --- scoring --------------------------------------------------------------------------------
    def _entry(self, name: str) -> dict[str, Any]:
        return self.metrics.setdefault(name, {"scored": 0, "skipped": Counter(), "already_scored": 0,
                                              "routes": Counter(), "failed": 0})

    def process(self, traces: list[Trace]) -> list[dict[str, Any]]:
        """Score, route and store a batch of finished traces; returns the stored verdicts (brief).
        With ``queue``: enqueue them for the workers instead; returns no verdicts."""
        if self.queue is not None:
            self.traces += self.queue.enqueue(traces)
            return []
        now = self.clock()
        self.store.add_traces(traces, received_at=now)
        self.traces += len(traces)
        out: list[dict[str, Any]] = []
        produced: list[Any] = []  # this batch's verdicts, for the suites
        self.shared.begin()  # a fresh memo per batch (evaluator._shared); a failed batch's goes at the next begin
        for c in self.checks:
            entry = self._entry(c.name)
            subjects = traces
            if c.metric is not None and c.metric.shape == InputShape.session:
                subjects = self._session_traces(traces)
            rows, skipped = c.rows(subjects)
            entry["skipped"].update(skipped)
            if c.metric is not None and c.metric.shape == InputShape.session:
                new_ids = {t.trace_id for t in traces}
                rows = [r for r in rows if r["meta"]["trace_id"] in new_ids]
            done = self.store.scored(c.name, [subject_key(r) for r in rows])  # (trace, span) for span rows
            fresh = [r for r in rows if subject_key(r) not in done]
            entry["already_scored"] += len(rows) - len(fresh)
            for start in range(0, len(fresh), self.batch_size):
                began = time.perf_counter()
                verdicts = [v for vs in c.run(fresh[start:start + self.batch_size], batch_size=self.batch_size)
                            for v in vs]
                produced += verdicts
                out += self._record(verdicts, now, time.perf_counter() - began)
        self.shared.end()
        if self.suites:
            lookup = lambda tid, m: self.store.verdicts(m, trace_id=tid)  # noqa: E731  members scored before
            out += self._record(suite_verdicts(self.suites, produced, lookup), now)
        return out

    def _record(self, verdicts: list[Any], now: float, seconds: float | None = None) -> list[dict[str, Any]]:
        routes = [self.router.route(v) for v in verdicts]
        ids = self.store.add_verdicts([(v, r.route, r.reason) for v, r in zip(verdicts, routes)], created_at=now,
                                      run_id=getattr(self, "run_id", None))
        self._notify(verdicts, routes, ids, seconds)
        out = []
        for v, r, vid in zip(verdicts, routes, ids):
            e = self._entry(v.metric)
            e["scored"] += 1
            e["failed"] += int(not v.passed)
            e["routes"][r.route if r.route != "review" else f"review:{r.reason}"] += 1
            out.append({"id": vid, "trace_id": v.trace_id, "span_id": v.span_id, "metric": v.metric, "label": v.label,
                        "passed": v.passed, "score": v.score, "route": r.route, "route_reason": r.reason})
        return out

    def _notify(self, verdicts: list[Any], routes: list[Any], ids: list[int], seconds: float | None) -> None:
        """Tell each observer about stored verdicts; an observer's failure is logged, never raised into scoring."""
        for observe in list(self.observers):
            try:
                observe(verdicts, routes, ids, seconds)
            except Exception:  # noqa: BLE001 - metrics and export must never stop scoring
                _log.warning("monitor observer %r failed", observe, exc_info=True)

    def _session_traces(self, traces: list[Trace]) -> list[Trace]:
        sids = {t.session_id for t in traces if t.session_id}
        known = {t.trace_id for t in traces}
        extra: list[Trace] = []
        for sid in sids:
            for t in self.store.session_traces(sid):
                if t.trace_id not in known:
                    extra.append(t)
                    known.add(t.trace_id)
        return extra + list(traces)

    # --- sources --------------------------------------------------------------------------------
    def _absorb(self, asm: TraceAssembler, source: str) -> None:
        """Move the assembler's new problem counts into the summary and the store."""
        seen = self.ingest.setdefault("_stored", Counter())
        delta = asm.problems.counts - seen
        if delta:
            p = Problems()
            for reason, n in delta.items():
                p.counts[reason] = n
                p.examples[reason] = asm.problems.examples.get(reason, [])
            self.store.add_problems(source, p)
            seen.update(delta)
        self.ingest["items"] = asm.items
        self.ingest["spans"] = asm.spans_kept
        self.ingest["problems"] = Counter(asm.problems.counts)
        self.ingest["warnings"] = Counter(asm.warnings.counts)
        self.ingest["examples"] = {**asm.problems.examples}

    def run_file(self, path: str | Path, *, follow: bool = False, poll: float = 0.5, settle: float = 2.0,
                 max_traces: int | None = None, idle_timeout: float | None = None,
                 should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Read a trace file (JSONL; ``follow``: keep reading appended lines) and process every trace."""
        path = Path(path)
        if not path.exists():
            raise AssayError("a trace file", f"no file at {path}", "check --source", code="not_found")
        self.run_id = self.store.start_run({"source": str(path), "follow": follow,
                                            "route": self.router.config.model_dump(mode="json")})
        asm = TraceAssembler(settle=settle if follow else 0.0)
        pending: list[Trace] = []
        stop = False
        try:
            lines = follow_lines(path, follow=follow, poll=poll, should_stop=should_stop, idle_timeout=idle_timeout)
            if path.suffix.lower() == ".json":
                lines = iter([(path.read_text(encoding="utf-8"), path.name)])
            for line, where in lines:
                if line is not None:
                    asm.add_line(line, where)
                pending += asm.pop_ready(spans=follow)
                if max_traces is not None and self.traces + len(pending) >= max_traces:
                    pending = pending[:max_traces - self.traces]
                    stop = True
                if pending and (len(pending) >= self.batch_size or line is None or stop):
                    self.process(pending)
                    pending = []
                    self._absorb(asm, str(path))
                if stop:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            if not stop:
                pending += asm.pop_ready(final=True)
            if pending:
                self.process(pending)
            self._absorb(asm, str(path))
            self.store.finish_run(self.run_id, self.summary())
        return self.summary()

    def summary(self) -> dict[str, Any]:
        """What this monitor did (``queued``: with ``queue``, the traces it put in the queue)."""
        return {
            "traces": self.traces,
            **({"queued": self.traces} if self.queue is not None else {}),
            "db": str(self.store.path),
            "route": self.router.config.model_dump(mode="json"),
            "ingest": {"items": self.ingest["items"], "spans": self.ingest["spans"],
                       "problems": dict(self.ingest["problems"]), "warnings": dict(self.ingest["warnings"]),
                       "examples": self.ingest.get("examples", {})},
            "metrics": {name: {"scored": e["scored"], "failed": e["failed"], "skipped": dict(e["skipped"]),
                               "already_scored": e["already_scored"], "routes": dict(e["routes"])}
                        for name, e in self.metrics.items()},
        }

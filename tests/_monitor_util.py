"""A monitor store seeded by a real ``assay.monitor.Monitor`` with ``MockEvaluator``s: two days of
traces scored by the boolean 'toxicity' and 'pii' presets, some routed to review (doubt, high-severity
fails, audits). Used by the server's monitoring API and UI tests."""

from __future__ import annotations

import json
import time
from pathlib import Path

from assay.monitor import Monitor, RouteConfig, Store
from assay.testing import MockEvaluator

# P(positive) per trace: inside the band 0.3-0.7 -> review:uncertain; >= 0.7 -> a high-severity fail
# (both presets are severity high) -> review; the rest pass, half of them sampled for audit.
SCORES = [0.05, 0.95, 0.5, 0.45, 0.6, 0.1, 0.02, 0.9, 0.55, 0.35, 0.2, 0.65]


def traces(start: int, n: int) -> list[dict]:
    return [{"id": f"t{i}", "input": f"user message {i}: " + ("you are an idiot" if SCORES[i % 12] > 0.5 else "thanks!"),
             "output": f"assistant reply {i}"} for i in range(start, start + n)]


def seed_monitor(path: Path, metrics: tuple[str, ...] = ("toxicity", "pii")) -> Store:
    """Two batches of 12 traces, a day apart (yesterday and now), through a real Monitor."""
    store = Store(path)
    scores = {f"t{i}": SCORES[i % 12] for i in range(24)}
    now = time.time()
    for day, clock in enumerate((now - 86400, now)):
        evs = [MockEvaluator(m, scores=scores) for m in metrics]
        mon = Monitor(evs, store, RouteConfig(band=(0.3, 0.7), audit_rate=0.5, seed=0), clock=lambda c=clock: c)
        src = path.parent / f"traces_{day}.jsonl"
        src.write_text("".join(json.dumps(r) + "\n" for r in traces(day * 12, 12)))
        mon.run_file(src)
    return store

"""The monitor scores a batch of traces with every check in one shared-body scope (evaluator._shared):
three MiniLM metrics on the same field run MiniLM once per trace, with the verdicts each gives alone."""

from __future__ import annotations

import pytest
from _shared_util import linear_evaluator, real_rows

pytest.importorskip("sklearn")


def test_three_minilm_metrics_run_the_body_once_per_trace_with_their_own_verdicts(tmp_path, monkeypatch):
    from assay.evaluator._linear import EmbedFeatures
    from assay.monitor import Monitor, RouteConfig, Store
    from assay.traces import read_traces

    rows = real_rows(n=10)
    evs = [linear_evaluator(m, rows, "embed", salt=i, threshold=0.4 + 0.1 * i)
           for i, m in enumerate(("toxicity", "prompt_injection", "pii"))]
    records = [{"id": f"t{i}", "input": r["input"], "output": r["output"]} for i, r in enumerate(rows)]
    seen: list[int] = []
    pooled = EmbedFeatures.pooled
    monkeypatch.setattr(EmbedFeatures, "pooled", lambda self, b: seen.append(len(b)) or pooled(self, b))

    def verdicts(checks, db):
        mon = Monitor(checks, Store(tmp_path / db), RouteConfig(audit_rate=0.0), batch_size=4)
        return {(v["metric"], v["trace_id"]): v for v in mon.process(read_traces(records).traces)}

    alone = {}
    for i, ev in enumerate(evs):
        alone.update(verdicts([ev], f"alone{i}.db"))
    assert sum(seen) == 3 * len(records)
    seen.clear()
    shared = verdicts(evs, "shared.db")
    assert sum(seen) == len(records)  # one MiniLM forward per trace for the three metrics
    assert set(shared) == set(alone) and len(shared) == 3 * len(records)
    for key, v in shared.items():
        assert v["label"] == alone[key]["label"] and v["route"] == alone[key]["route"]
        assert v["score"] == pytest.approx(alone[key]["score"], abs=1e-6)
    assert all(b.shared is None for ev in evs for b in ev.model.blocks.values())  # the scope ended

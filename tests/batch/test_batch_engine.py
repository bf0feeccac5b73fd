"""Batch scoring engines: local (in-process) and Ray Data on a local 127.0.0.1 Ray give identical results."""

from __future__ import annotations

import json

import pytest

from assay.batch import score_file, score_rows
from assay.errors import AssayError
from assay.testing import MockEvaluator
from assay.traces import read_traces

ROWS = [{"id": f"r{i}", "input": f"row {i} " + ("call 555-123-4567" if i % 4 == 0 else "no pii"),
         "meta": {"nested": {"k": [i]}}} for i in range(37)]


def test_local_engine_batches_and_order():
    ev = MockEvaluator("pii")
    res = score_file(ev, ROWS, batch_size=8)
    assert [s["id"] for s in res.scores] == [r["id"] for r in ROWS]
    assert ev.calls == 5  # ceil(37 / 8) batches
    assert res.summary()["rows"] == 37 and res.engine == "local"
    one = score_rows(MockEvaluator("pii"), ROWS, batch_size=37)
    assert [s["score"] for s in one] == [s["score"] for s in res.scores]


def test_local_engine_from_trace_file_counts_skips(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n" + json.dumps({"id": "o", "output": "only"}) + "\n{x\n")
    res = score_file(MockEvaluator("pii"), p, batch_size=16)
    assert len(res.scores) == 37 and res.skipped == {"missing_input": 1}
    assert res.ingest["problems"] == {"invalid_json": 1}
    traces = read_traces(p).traces
    assert len(score_file(MockEvaluator("pii"), traces).scores) == 37


def test_engine_errors():
    with pytest.raises(AssayError, match="engine"):
        score_file(MockEvaluator("pii"), ROWS, engine="spark")
    with pytest.raises(AssayError, match="batch size"):
        score_file(MockEvaluator("pii"), ROWS, batch_size=0)
    with pytest.raises(AssayError, match="with an id"):
        score_file(MockEvaluator("pii"), [{"input": "x"}])
    with pytest.raises(AssayError, match="evaluator.json"):
        score_file("/nonexistent/artifact", ROWS)


def test_the_monitor_scores_with_its_sources(tmp_path, monkeypatch):
    """``assay.monitor.score_file`` is the engine with the monitor's loader (registered names) and sources
    (a monitor database); the engine itself opens artifact folders only."""
    from assay import monitor
    from assay.traces import read_traces as read

    store = monitor.Store(tmp_path / "m.db")
    store.add_traces(read(ROWS).traces)
    store.close()
    res = monitor.score_file(MockEvaluator("pii"), tmp_path / "m.db", batch_size=8)
    assert sorted(s["id"] for s in res.scores) == sorted(r["id"] for r in ROWS)
    opened = []
    monkeypatch.setattr(monitor._checks, "load_evaluator", lambda ref: opened.append(ref) or MockEvaluator("pii"))
    assert len(score_file("toxicity-v1", ROWS, load=monitor._checks.load_evaluator).scores) == 37
    assert opened == ["toxicity-v1"]
    with pytest.raises(AssayError, match="registered metric name") as exc:
        score_file("toxicity-v1", ROWS)
    assert exc.value.code == "not_found"


@pytest.mark.slow
def test_ray_engine_matches_local():
    pytest.importorskip("ray.data")
    local = score_file(MockEvaluator("pii"), ROWS, engine="local", batch_size=8)
    ray = score_file(MockEvaluator("pii"), ROWS, engine="ray", batch_size=8, concurrency=2, num_cpus=2)
    assert ray.engine == "ray" and ray.scores == local.scores


@pytest.mark.slow
def test_local_ray_binds_loopback_only():
    pytest.importorskip("ray.data")
    import ray

    from assay.batch import init_local_ray

    assert init_local_ray(num_cpus=1) is True
    try:
        assert init_local_ray() is False  # an initialized Ray is reused, not restarted
        assert ray.nodes()[0]["NodeManagerAddress"] == "127.0.0.1"
        assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    finally:
        ray.shutdown()

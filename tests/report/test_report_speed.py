"""measure_speed with a fake scorer: consistent figures and the cost formula (no timing asserts)."""

import pytest

from assay.errors import AssayError
from assay.report import machine_info, measure_speed


def test_measure_speed_figures_are_consistent():
    calls = []

    def score(batch):
        calls.append(len(batch))
        return [0.5] * len(batch)

    rows = [{"input": str(i)} for i in range(40)]
    out = measure_speed(score, rows, batch_sizes=(1, 8, 32, 64), cost_per_hour=0.2, judge_cost_per_eval=0.05,
                        max_rows=20)
    assert out["rows_timed"] == 20
    assert [b["batch_size"] for b in out["batches"]] == [1, 8]
    assert out["skipped_batch_sizes"] == [32, 64]
    # at each batch size an untimed pass (lazy init, kernel selection per shape), then the timed one
    assert calls == [1] * 20 + [1] * 20 + [8, 8, 4] + [8, 8, 4]
    by_size = {b["batch_size"]: b for b in out["batches"]}
    assert by_size[1]["calls"] == 20 and by_size[8]["calls"] == 3
    best = max(out["batches"], key=lambda b: b["rows_per_s"])
    assert out["best_batch_size"] == best["batch_size"]
    assert out["best_rows_per_s"] == best["rows_per_s"] > 0
    assert out["cost_per_1m"] == pytest.approx(1e6 / out["best_rows_per_s"] / 3600 * 0.2)
    assert out["judge_cost_per_1m"] == pytest.approx(50_000.0)
    assert out["cheaper_than_judge"] == pytest.approx(out["judge_cost_per_1m"] / out["cost_per_1m"])
    assert out["latency_ms"] == by_size[1]["row_latency_ms"]
    for b in out["batches"]:
        assert b["row_latency_ms"]["p50"] <= b["row_latency_ms"]["p95"]
        assert b["rows_per_s"] == pytest.approx(b["rows"] / b["seconds"])
    assert out["machine"]["cores"] >= 1


def test_few_rows_and_no_rows():
    out = measure_speed(lambda b: b, [1, 2, 3], batch_sizes=(8, 32))
    assert [b["batch_size"] for b in out["batches"]] == [3]  # all rows in one call
    with pytest.raises(AssayError):
        measure_speed(lambda b: b, [])


def test_machine_info_fields():
    info = machine_info("cuda:0")
    assert info["device"] == "cuda:0"
    assert set(info) >= {"cpu", "cores", "torch_threads", "device", "platform"}
    assert isinstance(info["cpu"], str) and info["cpu"]


def test_the_floor_is_timed_per_batch_size_and_the_machine_load_is_recorded():
    calls = []

    def floor(rows, batch_size):
        calls.append((len(rows), batch_size))
        return lambda: sum(len(str(r)) for r in rows)

    out = measure_speed(lambda b: [str(r) * 50 for r in b], list(range(40)), batch_sizes=(1, 8), floor=floor)
    assert calls == [(40, 1), (40, 8)]  # one prepared runner per batch size, over the same rows
    for b in out["batches"]:
        assert b["floor_rows_per_s"] > 0
        assert b["ratio_to_floor"] == pytest.approx(b["rows_per_s"] / b["floor_rows_per_s"])
    best = next(b for b in out["batches"] if b["batch_size"] == out["best_batch_size"])
    assert out["ratio_to_floor"] == best["ratio_to_floor"] and out["floor"]
    machine = out["machine"]
    assert len(machine["load_average_start"]) == 3 and len(machine["load_average_end"]) == 3
    assert "cpu_flags" in machine
    without = measure_speed(lambda b: b, [1, 2, 3], batch_sizes=(1,))
    assert without["ratio_to_floor"] is None and "floor_rows_per_s" not in without["batches"][0]

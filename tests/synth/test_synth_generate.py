"""generate_training_set with the mock provider: targets, lineage, supervision, filters, cache."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

from _synth_util import make_config, make_rows
from assay.data import row_hash
from assay.errors import AssayError
from assay.metrics import get_preset
from assay.providers import JUDGE_SYSTEM
from assay.providers._mock import MockProvider
from assay.synth import (NearDuplicateIndex, generate_training_set, key_text, label_targets, parse_rows,
                         plan_calls, to_row)
from assay.synth._plan import Call, SeedPicker

LINEAGE = {"seed_id", "seed_ids", "strategy", "generator", "intended_label", "round", "request"}


@pytest.fixture
def prompts(monkeypatch):
    """Every user prompt the mock provider receives (generator and judge)."""
    seen: list[str] = []
    lock = threading.Lock()
    original = MockProvider._send

    def recording(self, payload):
        with lock:
            seen.extend(m["content"] for m in payload["messages"])
        return original(self, payload)

    monkeypatch.setattr(MockProvider, "_send", recording)
    return seen


def test_target_size_balance_and_lineage(tmp_path):
    cfg, seeds, held = make_config(tmp_path, generate={"target_size": 80})
    res = generate_training_set(cfg, seeds, held)
    assert len(res.rows) == 80
    assert Counter(r["label"] for r in res.rows) == {"true": 40, "false": 40}
    seed_ids = {s["id"] for s in seeds}
    for r in res.rows:
        lin = r["meta"]["lineage"]
        assert LINEAGE <= set(lin)
        assert lin["generator"] == "mock/generator" and lin["round"] >= 1
        assert set(lin["seed_ids"]) <= seed_ids and lin["seed_ids"]
        if lin["strategy"] != "create":
            assert lin["seed_id"] in seed_ids
        assert r["meta"]["judge"]["model"] == "mock/teacher"
        assert r["id"] == "syn-" + row_hash(r)[:16]
    rep = res.report
    assert rep["accounted"] is True  # every parsed row is kept or dropped with a reason
    assert rep["calls"]["rows_parsed"] == len(res.rows) + sum(rep["dropped"].values())
    assert set(rep["strategy_counts"]) <= {"paraphrase", "swap", "typos", "tighten_loosen", "flip", "create"}
    assert len(rep["strategy_counts"]) >= 4
    for name in ("train", "report", "report_md", "review_sample", "dropped"):
        assert (res.data_dir / res.files[name].split("/")[-1]).exists()
    on_disk = [json.loads(x) for x in (res.data_dir / "train.jsonl").read_text().splitlines()]
    assert [r["id"] for r in on_disk] == [r["id"] for r in res.rows]
    assert json.loads((res.data_dir / "data_report.json").read_text())["rows"] == 80
    assert "Judge agreement" in (res.data_dir / "data_report.md").read_text()
    s = res.summary()
    assert s["rows"] == 80 and s["cost"]["requests"] > 0 and s["distribution"]["ratio"] is not None


def test_held_out_rows_never_reach_a_prompt(tmp_path, prompts):
    cfg, seeds, held = make_config(tmp_path, generate={"target_size": 60, "label_distribution": "seeds"})
    res = generate_training_set(cfg, seeds, held)
    gen_prompts = [p for p in prompts if "<seeds>" in p]
    assert len(gen_prompts) == res.report["calls"]["planned"] > 0
    everything = "\n".join(prompts)
    for r in held:
        assert r["input"] not in everything
    assert any(s["input"] in everything for s in seeds)  # the check can see seed text, so it is meaningful


def test_label_targets():
    seeds = [{"label": "true"}] * 95 + [{"label": "false"}] * 5
    assert label_targets(1000, ("true", "false"), "balanced", seeds) == {"true": 500, "false": 500}
    t = label_targets(1000, ("true", "false"), "seeds", seeds)
    assert sum(t.values()) == 1000 and t["false"] >= 250  # the rare class gets at least half a balanced share
    assert label_targets(10, ("a", "b", "c"), {"a": 2, "b": 1}, []) == {"a": 7, "b": 3, "c": 0}
    with pytest.raises(AssayError):
        label_targets(10, ("a", "b"), {"zzz": 1}, [])


def test_plan_calls_spread_strategies_and_seeds():
    seeds = [dict(r) for r in make_rows(40)]
    picker = SeedPicker(seeds, 0)
    calls = plan_calls({"true": 50, "false": 50}, strategies={"paraphrase": 1, "flip": 1, "create": 2},
                       picker=picker, rows_per_call=5, seeds_per_call=3, overgenerate=1.2, round_=1, first_request=7)
    assert sum(c.n for c in calls) == 120
    assert [c.request for c in calls] == list(range(7, 7 + len(calls)))
    by = Counter((c.label, c.strategy) for c in calls)
    assert by[("true", "create")] == 6 and by[("true", "paraphrase")] == 3 and by[("true", "flip")] == 3
    for c in calls:
        assert len(c.seeds) == 3
        if c.strategy == "flip":
            assert all(s["label"] != c.label for s in c.seeds)
        else:
            assert all(s["label"] == c.label for s in c.seeds)


def test_disagreement_drop_vs_relabel(tmp_path):
    judge = {"model": "mock/teacher", "options": {"agree_with": "meta.lineage.intended_label", "accuracy": 0.7}}
    cfg, seeds, held = make_config(tmp_path / "drop", judge=judge, generate={"on_disagreement": "drop"})
    drop = generate_training_set(cfg, seeds, held).report
    ja = drop["judge_agreement"]
    assert ja["judged"] - ja["agreed"] == drop["dropped"]["judge_disagreed"] > 0
    assert drop["relabelled"] == 0

    cfg, seeds, held = make_config(tmp_path / "relabel", judge=judge, generate={"on_disagreement": "relabel"})
    res = generate_training_set(cfg, seeds, held)
    rel = res.report
    ja = rel["judge_agreement"]
    assert rel["relabelled"] == ja["judged"] - ja["agreed"] > 0
    assert "judge_disagreed" not in rel["dropped"]
    changed = [r for r in res.rows if r["label"] != r["meta"]["lineage"]["intended_label"]]
    assert 0 < len(changed) <= rel["relabelled"]
    assert all(r["label"] == r["meta"]["judge"]["label"] for r in res.rows)


def test_unsupervised_keeps_intended_labels(tmp_path, prompts):
    cfg, seeds, held = make_config(tmp_path, judge=None, generate={"supervise": False})
    res = generate_training_set(cfg, seeds, held)
    assert all(r["label"] == r["meta"]["lineage"]["intended_label"] for r in res.rows)
    assert res.report["judge_agreement"]["judged"] == 0
    assert prompts and JUDGE_SYSTEM not in prompts  # the judge was never asked


def test_duplicates_near_duplicates_and_leakage_removed_and_counted(tmp_path):
    rows = make_rows()
    _, seeds, held = make_config(tmp_path / "a", rows=rows)
    fresh = ["A brand new sentence about zebras crossing the quiet avenue at dawn with lanterns.",
             "Completely unrelated note: the violin recital moved to the old observatory hall."]
    echo = [r["input"] for r in held[:30]] + [s["input"] for s in seeds[:10]] + fresh * 5
    gen = {"target_size": 80, "options": {"echo_texts": echo, "echo_rate": 0.3}}
    cfg, seeds, held = make_config(tmp_path / "b", rows=rows, generate=gen)
    res = generate_training_set(cfg, seeds, held)
    d = res.report["dropped"]
    assert d.get("leakage_held_out", 0) > 0
    assert d.get("duplicate_of_seed", 0) + d.get("near_duplicate_of_seed", 0) > 0
    assert d.get("duplicate", 0) + d.get("near_duplicate", 0) > 0
    assert res.report["accounted"]
    leak = NearDuplicateIndex(cfg.generate.leakage_threshold)
    for i, r in enumerate(held):
        leak.add(i, key_text(r, cfg.metric_spec()))
    assert all(leak.match(key_text(r, cfg.metric_spec())) is None for r in res.rows)
    held_hashes = {row_hash(r) for r in held}
    assert not any(row_hash(r) in held_hashes for r in res.rows)
    within = NearDuplicateIndex(cfg.generate.near_duplicate_threshold)
    for r in res.rows:
        text = key_text(r, cfg.metric_spec())
        assert within.match(text) is None
        within.add(r["id"], text)
    reasons = Counter(json.loads(x)["reason"] for x in (res.data_dir / "dropped.jsonl").read_text().splitlines())
    assert reasons == Counter(d)


def test_unparseable_answers_are_counted(tmp_path):
    judge = {"model": "mock/teacher",
             "options": {"agree_with": "meta.lineage.intended_label", "accuracy": 0.9, "refuse_rate": 0.2}}
    cfg, seeds, held = make_config(tmp_path, judge=judge, generate={"options": {"malformed_rate": 0.3}})
    res = generate_training_set(cfg, seeds, held)
    rep = res.report
    assert rep["calls"]["unparseable"] > 0
    assert rep["calls"]["answered"] + rep["calls"]["unparseable"] == rep["calls"]["planned"]
    assert rep["dropped"]["judge_unparseable"] > 0 == rep["judge_agreement"]["failed"]
    assert rep["judge_agreement"]["unparseable"] == rep["dropped"]["judge_unparseable"]
    assert rep["accounted"] and any("unparseable" in w for w in rep["warnings"])
    lines = [json.loads(x) for x in (res.data_dir / "dropped.jsonl").read_text().splitlines()]
    assert sum(x["reason"] == "generator_unparseable" for x in lines) == rep["calls"]["unparseable"]


def test_top_up_rounds_and_short_warning(tmp_path):
    judge = {"model": "mock/teacher", "options": {"agree_with": "meta.lineage.intended_label", "accuracy": 0.5}}
    cfg, seeds, held = make_config(tmp_path / "a", judge=judge, generate={"overgenerate": 1.0, "max_rounds": 4})
    rep = generate_training_set(cfg, seeds, held).report
    assert len(rep["rounds"]) > 1 and rep["rows"] == 60 and not rep["short_by"]
    assert rep["rounds"][0]["overgenerate"] == {"true": 1.0, "false": 1.0}
    assert all(1.0 < f <= 4.0 for f in rep["rounds"][1]["overgenerate"].values())  # adapts to the yield
    cfg, seeds, held = make_config(tmp_path / "b", judge=judge, generate={"overgenerate": 1.0, "max_rounds": 1})
    rep = generate_training_set(cfg, seeds, held).report
    assert rep["rows"] < 60 and sum(rep["short_by"].values()) == 60 - rep["rows"]
    assert any("short of the target" in w for w in rep["warnings"])


def test_second_run_keeps_the_set_and_without_it_is_served_from_the_cache(tmp_path):
    import shutil

    cfg, seeds, held = make_config(tmp_path)
    first = generate_training_set(cfg, seeds, held)
    assert first.report["cost"]["requests"] > 0
    again = generate_training_set(cfg, seeds, held)  # the same settings: the set is kept, nothing is asked
    assert again.report["calls"]["planned"] == 0 and again.report["cost"]["requests"] == 0
    assert again.report["reused"] == {"kept": len(first.rows), "rejected": 0, "relabelled": 0,
                                      "last_set": len(first.rows)}
    assert [r["id"] for r in again.rows] == [r["id"] for r in first.rows]
    shutil.rmtree(cfg.data_dir())  # without the set: the same requests, answered by the cache
    second = generate_training_set(cfg, seeds, held)
    assert second.report["cost"]["requests"] == 0
    assert second.report["cost"]["cache_hits"] == first.report["cost"]["requests"]
    assert second.report["calls"]["cached"] == second.report["calls"]["planned"]
    assert [r["id"] for r in second.rows] == [r["id"] for r in first.rows]


def test_progress_reports_rows_cost_and_eta(tmp_path):
    cfg, seeds, held = make_config(tmp_path)
    seen = []
    generate_training_set(cfg, seeds, held, on_status=lambda *a: seen.append(a))
    assert seen and all(stage == "generating" for stage, _, _ in seen)
    fractions = [f for _, f, _ in seen]
    assert all(0 <= f <= 1 for f in fractions) and fractions[-1] == 1.0
    assert any("rows kept" in m and "$" in m for _, _, m in seen)
    assert any("ETA" in m for _, _, m in seen)


def test_parse_rows_is_tolerant():
    assert parse_rows('{"rows": [{"input": "a"}, {"input": "b"}]}') == [{"input": "a"}, {"input": "b"}]
    assert parse_rows('Sure! Here they are:\n```json\n[{"input": "a"}]\n```\nEnjoy.') == [{"input": "a"}]
    assert parse_rows('{"input": "a", "label": "true"},\n{"input": "b", "label": "true"}') == [
        {"input": "a", "label": "true"}, {"input": "b", "label": "true"}]
    assert parse_rows('Here: [{"input": "x"}] done') == [{"input": "x"}]
    assert parse_rows("I cannot help with that.") is None
    assert parse_rows('{"rows": [{"input": "unterminated') is None


def test_to_row_accepts_aliases_and_strings_and_rejects_empties():
    metric = get_preset("pii")
    seeds = [{"id": "s1", "input": "seed text", "label": "true"}]
    call = Call(request=3, round=2, strategy="paraphrase", label="true", seeds=seeds, n=2)
    row, _ = to_row({"text": "an alias", "seed_id": "s1"}, call, metric, "mock/g")
    assert row["input"] == "an alias" and row["meta"]["lineage"]["seed_id"] == "s1"
    row, _ = to_row("a bare string", call, metric, "mock/g")
    assert row["input"] == "a bare string" and row["meta"]["lineage"]["round"] == 2
    row, _ = to_row({"input": "x", "label": "false"}, call, metric, "mock/g")
    assert row["label"] == "true" and row["meta"]["lineage"]["generator_label"] == "false"
    assert to_row({"input": "  "}, call, metric, "mock/g") == (None, "no input")
    assert to_row(42, call, metric, "mock/g")[0] is None
    # a small model copying the prompt's example placeholders back is not a training row
    assert to_row({"input": "<input>"}, call, metric, "mock/g") == (None, "placeholder input")
    assert to_row({"input": '<text_data.json_field: '}, call, metric, "mock/g") == (None, "placeholder input")
    assert to_row({"input": "call me <maybe> at <input> later"}, call, metric, "mock/g")[0] is None
    assert to_row({"input": "a < b and c > d"}, call, metric, "mock/g")[0] is not None


def test_rag_rows_copy_context_from_their_seed(tmp_path):
    rows = []
    for i, r in enumerate(make_rows(80)):
        rows.append({"id": r["id"], "input": "What does the note say?", "output": r["input"],
                     "context": f"note {i}: " + r["input"][::-1], "label": r["label"]})
    cfg, seeds, held = make_config(tmp_path, rows=rows, metric="context_adherence",
                                   generate={"target_size": 30, "strategies": {"paraphrase": 1.0}})
    res = generate_training_set(cfg, seeds, held)
    by_id = {s["id"]: s for s in seeds}
    assert res.rows
    for r in res.rows:
        assert r["context"] == by_id[r["meta"]["lineage"]["seed_id"]]["context"]


def test_no_seeds_is_a_clear_error(tmp_path):
    cfg, _, held = make_config(tmp_path)
    with pytest.raises(AssayError, match="seed rows"):
        generate_training_set(cfg, [], held)


def test_real_data_400_rows_to_2000(tmp_path, shared_data):
    """The issue's scenario: 400 labeled rows, 20% seeds, 2,000 generated rows (mock provider)."""
    from assay.config import config_from_dict
    from assay.data import load_rows, split_rows

    judge = {"model": "mock/teacher", "options": {"agree_with": "meta.lineage.intended_label", "accuracy": 0.9}}
    cfg = config_from_dict({
        "metric": "toxicity_3class", "output": str(tmp_path / "run"),
        "data": {"test_set": str(shared_data / "toxicity_davidson.jsonl"), "limit": 400},
        "generate": {"model": "mock/generator", "target_size": 2000,
                     "options": {"echo_rate": 0.05, "echo_texts": []}},
        "judge": judge,
    })
    metric = cfg.metric_spec()
    rows = load_rows(cfg.path(cfg.data.test_set), metric, limit=400).rows
    split = split_rows(rows, 0.2, 0)
    cfg.generate.options["echo_texts"] = [r["input"] for r in split.held_out]  # a leaky generator
    res = generate_training_set(cfg, split.seeds, split.held_out)
    rep = res.report
    assert rep["rows"] == 2000 and not rep["short_by"]
    assert set(rep["label_counts"].values()) <= {666, 667}  # balanced, the rare class included
    assert min(rep["seed_label_counts"].values()) < 20  # ... although it has few seeds
    assert rep["dropped"]["leakage_held_out"] > 0 and rep["accounted"]
    assert all(r["meta"]["lineage"]["seed_ids"] for r in res.rows)
    assert rep["review_sample"] == 50 and rep["cost"]["input_tokens"] > 0
    leak = NearDuplicateIndex(cfg.generate.leakage_threshold)
    for i, r in enumerate(split.held_out):
        leak.add(i, key_text(r, metric))
    assert all(leak.match(key_text(r, metric)) is None for r in res.rows)

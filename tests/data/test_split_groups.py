"""Grouped splits (issue 14 item 4): rows sharing a prompt / document / conversation stay on one side."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from assay.data import (DEFAULT_GROUP_BY, exclude_groups, group_key, held_out_overlap, load_rows, resolve_group_by,
                        row_hash, split_rows)
from assay.metrics import get_preset


def _grouped_rows(n_groups: int = 60, seed: int = 0) -> list[dict]:
    """Several answers per prompt, labels mixed inside groups, group sizes 1-6."""
    rng = random.Random(seed)
    rows = []
    for g in range(n_groups):
        for k in range(rng.randint(1, 6)):
            label = "true" if rng.random() < 0.3 else "false"
            rows.append({"id": f"{g}-{k}", "input": f"prompt number {g}", "output": f"answer {k} to {g}",
                         "label": label, "meta": {"conversation_id": f"c{g % 25}"}})
    return rows


def _sides(split, group_by):
    return ({group_key(r, group_by) for r in split.seeds}, {group_key(r, group_by) for r in split.held_out})


def test_grouped_split_puts_every_group_on_one_side():
    rows = _grouped_rows()
    for group_by in ("input", "conversation_id"):
        s = split_rows(rows, 0.2, seed=0, group_by=group_by)
        seeds, held = _sides(s, group_by)
        assert seeds and held and not seeds & held
        assert len(s.seeds) + len(s.held_out) == len(rows)
        assert held_out_overlap(s.seeds, s.held_out, group_by)["held_out_rows_sharing_a_group"] == 0
        m = s.manifest()
        assert m["group_by"] == group_by and m["held_out_sharing_a_group"] == 0
        assert m["groups"]["seeds"] == len(seeds) and m["groups"]["held_out"] == len(held)
    # without grouping, the same prompt does land on both sides (what grouping prevents)
    plain = split_rows(rows, 0.2, seed=0)
    seeds, held = _sides(plain, "input")
    assert seeds & held


def test_grouped_split_is_stratified_deterministic_and_order_free():
    rows = _grouped_rows(200, seed=3)
    s1 = split_rows(rows, 0.2, seed=0, group_by="input")
    s2 = split_rows(list(reversed(rows)), 0.2, seed=0, group_by="input")
    assert s1.manifest() == s2.manifest()
    assert [r["id"] for r in s1.seeds] == [r["id"] for r in s2.seeds]
    total = Counter(r["label"] for r in rows)
    seeds = Counter(r["label"] for r in s1.seeds)
    for label, n in total.items():  # whole groups move, so the share is close, not exact
        assert abs(seeds[label] - 0.2 * n) <= 6, (label, seeds[label], n)
    assert split_rows(rows, 0.2, seed=1, group_by="input").manifest() != s1.manifest()


def test_default_grouping_per_shape_and_explicit_values():
    assert resolve_group_by("auto", "rag") == "context"
    assert resolve_group_by("auto", "tools") == "input"
    assert resolve_group_by("auto", "pairwise") == "input"
    assert resolve_group_by("auto", get_preset("toxicity").shape) is None
    assert resolve_group_by("auto", "trace", [{"meta": {"task_id": 3}}]) == "task_id"
    assert resolve_group_by("auto", "session", [{"input": "x"}]) == "input"
    assert resolve_group_by("none", "rag") is None and resolve_group_by(None, "rag") is None
    assert resolve_group_by("doc_id", "message") == "doc_id"
    assert set(DEFAULT_GROUP_BY) >= {"message", "input_output", "rag", "tools", "trace", "session", "pairwise"}
    # group values are normalised (case, whitespace); a missing value makes the row its own group
    a = {"input": "Hello  World", "output": "1"}
    b = {"input": "hello world ", "output": "2"}
    assert group_key(a, "input") == group_key(b, "input")
    assert group_key({"output": "x"}, "context") != group_key({"output": "y"}, "context")
    assert group_key({"input": "q", "meta": {"doc": 7}}, "doc") == group_key({"input": "r", "meta": {"doc": 7}}, "doc")


def test_training_rows_sharing_a_held_out_group_are_counted_and_excluded():
    rows = _grouped_rows()
    s = split_rows(rows, 0.2, seed=0, group_by="input")
    uploaded = [dict(r, id="u" + r["id"], output=r["output"] + " (paraphrased)") for r in rows]
    before = held_out_overlap(uploaded, s.held_out, "input")
    assert before["held_out_rows_sharing_a_group"] == len(s.held_out)
    assert before["train_rows_sharing_a_group"] == len(s.held_out)
    kept, dropped = exclude_groups(uploaded, s.held_out, "input")
    assert dropped == len(s.held_out) and len(kept) == len(s.seeds)
    assert held_out_overlap(kept, s.held_out, "input")["held_out_rows_sharing_a_group"] == 0
    # ungrouped, only exact repeats of held-out rows go
    kept2, dropped2 = exclude_groups(s.held_out[:3] + uploaded[:5], s.held_out, None)
    assert dropped2 == 3 and {row_hash(r) for r in kept2} == {row_hash(r) for r in uploaded[:5]}


@pytest.mark.parametrize("name, preset", [("toolcall_bfcl_gptoss.jsonl", "tool_call_correctness"),
                                          ("faithfulness_begin.jsonl", "context_adherence")])
def test_real_data_default_grouping_keeps_held_out_rows_unseen(shared_data, name, preset):
    metric = get_preset(preset)
    rows = load_rows(shared_data / name, metric).rows
    group_by = resolve_group_by("auto", metric.shape, rows)
    s = split_rows(rows, 0.2, seed=0, group_by=group_by)
    assert s.held_out and s.seeds
    assert held_out_overlap(s.seeds, s.held_out, group_by)["held_out_rows_sharing_a_group"] == 0
    json.dumps(s.manifest())  # the manifest is plain JSON


def test_the_upload_preview_shows_the_split_that_trains(tmp_path):
    """The server's upload preview, `assay validate` and `assay train` share one split rule
    (data.split_test_set): same counts, same grouping (tools shape: by input)."""
    from _registry_util import make_registry

    from assay.data import split_test_set
    from assay.metrics import load_metric

    rows = [{**r, "tools": json.dumps([{"name": "search", "parameters": {}}])} for r in _grouped_rows()]
    reg = make_registry(f"sqlite:///{tmp_path / 'reg.db'}", tmp_path)
    reg.projects.create("demo")
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    preview = reg.datasets.add("demo", body, "test.jsonl", metric="tool_call_correctness", validate_only=True)
    spec = load_metric("tool_call_correctness")
    loaded = load_rows(_write(tmp_path / "test.jsonl", rows), spec).rows
    want = split_test_set(loaded, spec.shape)
    assert want.group_by == "input" and preview.split["group_by"] == "input"
    assert (preview.split["seeds"], preview.split["held_out"]) == (len(want.seeds), len(want.held_out))
    seeds, held = _sides(want, "input")
    assert not seeds & held


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prepare_is_load_validate_group_split_with_the_configs_encoding(tmp_path):
    """`data.prepare` (and `Config.prepare_test_set`, used by train and generate) reads the file in the
    config's encoding and gives the same split as loading and splitting by hand."""
    from assay.config import Config
    from assay.data import prepare, split_test_set

    rows = _grouped_rows(30)
    path = tmp_path / "test.csv"
    lines = ["id,input,output,label"] + [f"{r['id']},{r['input']} caf\u00e9,{r['output']},{r['label']}" for r in rows]
    path.write_bytes("\n".join(lines).encode("latin-1"))
    cfg = Config.model_validate({"metric": "prompt_injection", "base_dir": str(tmp_path),
                                 "data": {"test_set": "test.csv", "encoding": "latin-1", "group_by": "input"}})
    metric = cfg.metric_spec()
    got = cfg.prepare_test_set()
    by_hand = load_rows(path, metric, encoding="latin-1")
    assert got.test.rows == by_hand.rows and all("caf\u00e9" in r["input"] for r in got.test.rows)
    same = split_test_set(by_hand.rows, metric.shape, group_by="input")
    assert (got.seeds, got.held_out) == (same.seeds, same.held_out)
    seeds, held = _sides(got.split, "input")
    assert got.seeds and got.held_out and not seeds & held
    assert prepare(path, metric, encoding="latin-1", group_by="input").split == got.split

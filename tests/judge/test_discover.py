"""``discover``: planted failure modes in reviewer notes come back as one kept, trainable check each."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _discover_data import MODES, ScriptedProvider, make_rows  # noqa: E402

from assay.cli import cli  # noqa: E402
from assay.config import load_config  # noqa: E402
from assay.errors import AssayError  # noqa: E402
from assay.judge import discover, read_reviewed  # noqa: E402
from assay.judge._normalize import mask_entities  # noqa: E402
from assay.metrics import InputShape, MetricSpec, load_metric  # noqa: E402


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    """One discovery over 3 x 30 planted failures (varied notes) and 60 passing rows, scripted provider."""
    rows, truth = make_rows(n_per_mode=30, n_pass=60, seed=0)
    out = tmp_path_factory.mktemp("discover") / "out"
    d = discover(rows, ScriptedProvider(rows, truth), fail_label="false", out=out)
    return d, truth, out


def test_discover_recovers_the_planted_failure_modes(found):
    d, truth, out = found
    assert d.counts == {"rows": 150, "failing": 90, "passing": 60, "failing_with_note": 90,
                        "failing_without_note": 0, "unlabeled": 0}
    assert d.shape == "tools" and d.settings["uncategorized_notes"] == 0
    assert sorted(c.name for c in d.kept) == sorted(MODES)  # one kept check per planted mode, nothing else kept
    for c in d.kept:
        modes = Counter(truth[m] for m in c.members)
        planted = [rid for rid, mode in truth.items() if mode == c.name]
        assert modes[c.name] / c.size >= 0.9, (c.name, modes)  # purity
        assert sum(1 for rid in planted if rid in set(c.members)) / len(planted) >= 0.9, (c.name, modes)  # recall
        a = c.agreement
        assert a["positives"] == c.size and a["negatives"] == 60 and a["unjudged"] == 0
        assert a["kappa"] >= 0.6 and a["kappa_interval"][0] <= a["kappa"] <= a["kappa_interval"][1]
        assert a["tp"] + a["fn"] == c.size and a["fp"] + a["tn"] == 60
        assert c.examples and all(e["id"] in c.members and e["note"] for e in c.examples)
        assert c.named_by == "provider" and "{tools}" in c.prompt and "[mode:" + c.name + "]" in c.prompt
    assert sum(c.size for c in d.checks) == 90  # every described failure is in one cluster


def test_each_kept_check_is_a_valid_metric_spec_and_config(found):
    d, truth, out = found
    report = json.loads((out / "discovery.json").read_text())
    assert report["kept"] == [c.name for c in d.kept] and len(report["checks"]) == len(d.checks)
    md = (out / "discovery.md").read_text()
    for c in d.checks:
        assert f"`{c.name}`" in md
    assert "kappa (95% interval)" in md and "Check prompt:" in md
    assert sorted(p.name for p in (out / "checks").iterdir()) == sorted(MODES)
    for c in d.kept:
        folder = out / "checks" / c.name
        spec = load_metric(str(folder / "metric.yaml"))
        assert isinstance(spec, MetricSpec) and spec.name == c.name and spec.shape == InputShape.tools
        assert spec.output == "boolean" and spec.positive == "true" and spec.prompt == c.prompt
        cfg = load_config(folder / "config.yaml")
        assert cfg.metric_spec() == spec and cfg.output_dir() == folder / "artifact"
        labeled = [json.loads(x) for x in (folder / "labeled.jsonl").read_text().splitlines()]
        assert Counter(r["label"] for r in labeled) == {"true": c.size, "false": 60}
        assert {r["id"] for r in labeled if r["label"] == "true"} == set(c.members)
        assert all(truth[r["id"]] == "pass" for r in labeled if r["label"] == "false")


def test_assay_train_accepts_a_discovered_check(found):
    """`assay train` on a written check config, with the fast TF-IDF candidate."""
    d, truth, out = found
    folder = out / "checks" / "missing_argument"
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    cfg["train"] = {"candidates": ["tfidf"], "cv_folds": 3, "seed": 0}
    cfg["report"] = {"bootstrap": 0, "latency_rows": 4, "baselines": False}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(cli, ["train", str(folder / "config.yaml"), "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["metric"] == "missing_argument" and summary["family"] == "linear"
    assert summary["train_rows"] + summary["held_out"] == 90  # the labeled rows: split into seeds and held out
    info = json.loads((folder / "artifact" / "evaluator.json").read_text())
    assert info["metric"]["name"] == "missing_argument" and info["metric"]["positive_label"] == "true"
    assert (folder / "artifact" / "report.json").exists()


def test_cli_discover_with_the_mock_provider(tmp_path):
    """The mock provider answers no JSON: notes stay masked, names fall back to each cluster's words, and
    its coin-flip judge keeps no check; the report still lists every cluster with its agreement."""
    rows, truth = make_rows(n_per_mode=10, n_pass=20, seed=1)
    data = tmp_path / "reviewed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "found"
    args = ["discover", str(data), "--provider", "mock/judge", "--out", str(out), "--fail-label", "false",
            "--max-k", "4", "--json"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)  # progress lines go to stderr
    assert rep["counts"]["failing"] == 30 and rep["settings"]["uncategorized_notes"] == 30
    assert 2 <= rep["k"] <= 4 and sum(c["size"] for c in rep["checks"]) == 30
    proposed = [c for c in rep["checks"] if c["prompt"]]
    assert proposed and all(c["named_by"] == "fallback" and c["agreement"]["n"] > 0 for c in proposed)
    assert all(c["kept"] == (c["agreement"]["kappa"] is not None and c["agreement"]["kappa"] >= 0.6) for c in proposed)
    assert (out / "discovery.md").exists() and rep["provider"]["id"] == "mock/judge"
    r = CliRunner().invoke(cli, args)  # an earlier discovery is not replaced without --overwrite
    assert r.exit_code == 2 and "earlier discovery" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["discover", str(data), "--provider", "mock/judge", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and r.output.startswith("error: expected a way to tell failing rows")
    assert "--fail-label" in r.output


def test_notes_lose_the_rows_own_names_and_values():
    rows, _ = make_rows(n_per_mode=10, n_pass=0, seed=2)
    named = [r for r in rows if json.loads(r["output"])["name"] in r["note"]]  # notes naming the tool called
    assert named
    for row in named:
        masked = mask_entities(row["note"], row)
        assert json.loads(row["output"])["name"] not in masked and "X" in masked
    assert mask_entities("Left out city, which get_weather requires.", {"tools": [
        {"name": "get_weather", "parameters": {"properties": {"city": {}}}}]}) == "Left out X, which X requires."


def test_read_reviewed_from_a_monitor_store(tmp_path):
    """Reviewed verdicts of a monitor database: the review label decides (the metric's failing label), the
    reviewer's note describes."""
    from assay.monitor import Monitor, RouteConfig, Store
    from assay.testing import MockEvaluator

    src = tmp_path / "traces.jsonl"
    src.write_text("".join(json.dumps({"id": f"t{i}", "input": f"message {i}"}) + "\n" for i in range(6)))
    store = Store(tmp_path / "monitor.db")
    Monitor([MockEvaluator("toxicity", default=0.5)], store, RouteConfig(band=(0.4, 0.6))).run_file(src)
    for v in store.verdicts("toxicity"):
        toxic = v["trace_id"] in ("t0", "t1", "t2")
        note = f"insult aimed at {v['trace_id']}" if toxic else None
        store.add_review(v["id"], "true" if toxic else "false", "ana", note)
    store.close()
    rev = read_reviewed(tmp_path / "monitor.db")
    assert rev.fail_label == "true" and rev.shape == InputShape.message and rev.metric == "toxicity"
    assert rev.counts["failing"] == 3 and rev.counts["passing"] == 3
    assert sorted(rev.notes.values()) == ["insult aimed at t0", "insult aimed at t1", "insult aimed at t2"]
    assert {rev.rows[i]["input"] for i in rev.failing} == {"message 0", "message 1", "message 2"}
    with pytest.raises(AssayError, match="fail label 'bad'"):
        read_reviewed(tmp_path / "monitor.db", fail_label="bad")
    d = discover(tmp_path / "monitor.db", "mock/judge", categorize_notes=False, min_kappa=-1.0, out=tmp_path / "o")
    (c,) = d.checks  # three notes: one cluster, judged against the three passing rows
    assert c.size == 3 and c.agreement["positives"] == 3 and c.agreement["negatives"] == 3 and c.kept
    assert load_metric(c.files["metric"]).shape == InputShape.message  # the reviewed metric's shape


@pytest.mark.slow
def test_discover_on_real_checker_rationales(tmp_path):
    """Real BFCL tool calls (tests/fixtures/data, or ASSAY_SHARED_DATA's full file): the checker's error
    messages as rationales, no provider understanding (mock: masked notes, fallback names). The two
    failure kinds the checker words one way each come back as pure clusters of their own."""
    from conftest import SHARED_DATA  # tests/fixtures/data unless ASSAY_SHARED_DATA is set

    rows = [json.loads(x) for x in (SHARED_DATA / "toolcall_bfcl_gptoss.jsonl").read_text().splitlines() if x.strip()]
    failing = [r for r in rows if r["label"] == "false"][:120]
    rows = failing + [r for r in rows if r["label"] == "true"][:60]
    kind = {r["id"]: r["meta"]["error_type"] for r in failing}
    d = discover(rows, "mock/judge", fail_label="false", note_field="meta.error", categorize_notes=False,
                 max_negatives=40, other_sample=0, n_boot=200, out=tmp_path / "out")
    assert d.counts["failing_with_note"] == len(failing) and d.shape == "tools" and 2 <= d.k <= 8
    assert sum(c.size for c in d.checks) == len(failing)
    for marker in ("wrong_count", "irrelevance_error"):
        planted = {rid for rid, k in kind.items() if marker in k}
        home = max(d.checks, key=lambda c: len(planted & set(c.members)))
        assert set(home.members) == planted, (marker, Counter(kind[m] for m in home.members))
    for c in d.checks:
        if c.size >= 3:
            assert c.spec is not None and c.spec.shape == InputShape.tools and c.named_by == "fallback"
            assert c.agreement["positives"] == c.size and c.agreement["negatives"] == 40
    assert json.loads((tmp_path / "out" / "discovery.json").read_text())["k"] == d.k


def test_clusters_are_chosen_by_silhouette_deterministically():
    import numpy as np

    import assay
    from assay.judge._cluster import cluster_embeddings, embed_texts

    rng = np.random.default_rng(0)
    centres = np.eye(8)[:3] * 5
    sizes = (12, 20, 8)  # cluster ids come back largest first: 20 -> 0, 12 -> 1, 8 -> 2
    x = np.vstack([c + rng.normal(0, 0.3, (n, 8)) for c, n in zip(centres, sizes)])
    truth = [1] * 12 + [0] * 20 + [2] * 8
    encode = lambda texts: x[[int(t) for t in texts]]  # noqa: E731  a custom encoder: text i -> row i
    xs = embed_texts([str(i) for i in range(len(x))], encode)
    assert np.allclose(np.linalg.norm(xs, axis=1), 1.0)
    a, b = cluster_embeddings(xs, seed=0), cluster_embeddings(xs, seed=0)
    assert a.k == 3 and a.labels == b.labels == truth
    assert max(a.silhouettes, key=lambda k: a.silhouettes[k] or -1) == 3
    assert cluster_embeddings(xs[:3]).k == 1  # too few descriptions to split
    assert assay.discover is discover  # the top-level lazy export

"""The Registry service: projects, dataset validation, run lifecycle rules, registration
naming and versions, scoring, reviews, API keys, fsspec storage."""

from __future__ import annotations

import pytest
from _registry_util import (
    BINARY_MAP,
    add_binary_datasets,
    dumps,
    fake_worker,
    finished_run,
    make_registry,
    run_config,
    sample_test_set,
)

from assay.errors import AssayError
from assay.registry import InvalidRows, Status, Storage, Validated
from assay.registry._models import TRANSITIONS, check_transition


def test_transitions_follow_the_lifecycle():
    chain = [Status.queued, Status.generating_data, Status.data_ready, Status.training, Status.fine_tuned,
             Status.registered]
    for a, b in zip(chain, chain[1:]):
        check_transition(a, b)
    check_transition(Status.queued, Status.data_ready)  # uploaded training data: no generation
    for s in (Status.registered, Status.failed, Status.cancelled):
        assert TRANSITIONS[s] == set() and s.final
    with pytest.raises(AssayError) as e:
        check_transition(Status.training, Status.registered)
    assert e.value.code == "invalid_status" and "Training -> Registered" in str(e.value)
    with pytest.raises(AssayError):
        check_transition(Status.fine_tuned, Status.failed)
    with pytest.raises(AssayError):
        check_transition(Status.failed, Status.queued)


def test_project_names_are_unique(reg):
    with pytest.raises(AssayError) as e:
        reg.projects.create("demo")
    assert e.value.code == "conflict"
    assert reg.projects.get("demo").id == reg.projects.list()[0].id


def test_dataset_stores_hashes_counts_and_split(reg):
    ds = reg.datasets.add("demo", sample_test_set(120), "test.jsonl", metric="toxicity", label_map=BINARY_MAP)
    assert ds.rows == 120 and sum(ds.label_counts.values()) == 120
    assert set(ds.label_counts) == {"true", "false"}
    assert len(ds.content_hash) == 64 and len(ds.file_sha256) == 64
    assert ds.split and ds.split["seeds"] + ds.split["held_out"] == 120
    assert reg.storage.exists(ds.location) and reg.storage.exists(ds.original_location)
    rows = reg.datasets.rows(ds.id)
    assert len(rows) == 120 and {r["label"] for r in rows} == {"true", "false"}
    # the same rows in another order hash the same
    lines = sample_test_set(120).decode().splitlines()
    again = reg.datasets.add("demo", ("\n".join(reversed(lines)) + "\n").encode(), "again.jsonl", metric="toxicity",
                             label_map=BINARY_MAP)
    assert again.content_hash == ds.content_hash and again.file_sha256 != ds.file_sha256


def test_bad_rows_are_listed_one_by_one_and_nothing_is_stored(reg):
    rows = [{"input": "fine text", "label": "true"}, {"input": "", "label": "false"},
            {"input": "x", "label": "maybe"}, {"input": "y"}]
    with pytest.raises(InvalidRows) as e:
        reg.datasets.add("demo", dumps(rows), "bad.jsonl", metric="toxicity")
    err = e.value.to_dict()
    assert err["code"] == "invalid_rows" and err["rows_total"] == 3
    assert [(r["row"], r["field"]) for r in err["rows"]] == [(1, "input"), (2, "label"), (3, "label")]
    assert reg.datasets.list("demo") == []
    v = reg.datasets.add("demo", dumps(rows), "bad.jsonl", metric="toxicity", validate_only=True)
    assert isinstance(v, Validated) and not v.ok and len(v.errors) == 3 and v.rows == 1


def test_columns_and_formats(reg):
    csv = b"text,klass\nyou are lovely,neither\nyou are awful,offensive_language\nok then,neither\n"
    ds = reg.datasets.add("demo", csv, "rows.csv", metric="toxicity", columns={"input": "text", "label": "klass"},
                          label_map=BINARY_MAP)
    assert ds.rows == 3 and ds.format == "csv" and ds.label_counts == {"true": 1, "false": 2}
    with pytest.raises(AssayError) as e:
        reg.datasets.add("demo", csv, "rows.xlsx", metric="toxicity")
    assert e.value.code == "invalid_format"
    with pytest.raises(AssayError) as e:
        reg.datasets.add("demo", csv, "rows.csv", metric="toxicity", columns={"input": "nope"})
    assert e.value.code == "missing_column"
    with pytest.raises(AssayError) as e:
        reg.datasets.add("demo", b"", "rows.csv", metric="toxicity")
    assert e.value.code == "empty_file"
    with pytest.raises(AssayError) as e:
        reg.datasets.add("demo", csv, "rows.csv", metric="no_such_preset")
    assert e.value.code == "invalid_metric"


def test_run_config_rules(reg):
    t, tr = add_binary_datasets(reg, "demo", 60, 60)
    with pytest.raises(AssayError) as e:  # a server-side path is refused by default
        reg.runs.create("demo", {"metric": "toxicity", "data": {"test_set": "/etc/passwd"}})
    assert e.value.code == "invalid_config" and "dataset:<id>" in str(e.value)
    with pytest.raises(AssayError) as e:
        reg.runs.create("demo", {"metric": "toxicity", "data": {"test_set": "dataset:ds_nope"}})
    assert e.value.code == "not_found"
    with pytest.raises(AssayError) as e:
        reg.runs.create("demo", {"metric": "toxicity", "data": {"test_set": f"dataset:{t}", "columns": {"input": "x"}}})
    assert "at upload" in str(e.value)
    with pytest.raises(AssayError) as e:
        reg.runs.create("demo", {"metric": "toxicity", "data": {"test_set": f"dataset:{t}"}, "bogus": 1})
    assert e.value.code == "invalid_config"
    with pytest.raises(InvalidRows):  # rows labeled true/false do not fit a 3-class metric
        reg.runs.create("demo", run_config(t, tr, metric="toxicity_3class"))
    run = reg.runs.create("demo", "metric: toxicity\ndata:\n  test_set: dataset:" + t + "\n")  # YAML text
    assert run.status == Status.queued and run.config["metric"] == "toxicity"
    assert [h.status for h in run.history] == ["queued"]


def test_cancel_queued_run_and_invalid_transitions(reg):
    t, tr = add_binary_datasets(reg, "demo", 60, 60)
    run = reg.runs.create("demo", run_config(t, tr))
    out = reg.runs.cancel(run.id)
    assert out.status == Status.cancelled and out.failure_reason is None
    assert reg.runs.claim("w") is None  # nothing left to claim
    with pytest.raises(AssayError) as e:
        reg.metrics.register(run.id, "tox")
    assert e.value.code == "invalid_status"


def test_claim_is_atomic(reg):
    t, tr = add_binary_datasets(reg, "demo", 60, 60)
    run = reg.runs.create("demo", run_config(t, tr))
    first = reg.runs.claim("w1", run_id=run.id)
    assert first is not None and first.worker_id == "w1"
    assert reg.runs.claim("w2", run_id=run.id) is None


def test_register_versions_and_name_rules(reg):
    r1 = finished_run(reg)
    m1 = reg.metrics.register(r1, "tox", description="first")
    assert (m1.full_name, m1.version, m1.immutable) == ("tox-v1", 1, True)
    assert m1.threshold == 0.5 and m1.labels == ["true", "false"]
    assert reg.runs.get(r1).status == Status.registered and reg.runs.get(r1).registered_as == "tox-v1"
    with pytest.raises(AssayError) as e:
        reg.metrics.register(r1, "tox")
    assert e.value.code == "already_registered"
    r2 = finished_run(reg)
    m2 = reg.metrics.register(r2, "tox", threshold=0.7)
    assert m2.full_name == "tox-v2" and [v.full_name for v in m2.versions] == ["tox-v1", "tox-v2"]
    assert reg.metrics.get("tox").full_name == "tox-v2" and reg.metrics.get("tox-v1").threshold == 0.5
    # the artifact is a frozen copy: changing the run's folder does not touch the metric
    assert m1.artifact_location != reg.runs.get(r1).artifact_location
    assert reg.storage.dir_sha256(m1.artifact_location) == m1.artifact_sha256
    for bad in ("Tox", "tox-v3", "", "a b"):
        with pytest.raises(AssayError) as e:
            reg.metrics.register(finished_run(reg), bad)
        assert e.value.code == "invalid_input"
    reg.projects.create("other")
    with pytest.raises(AssayError) as e:
        reg.metrics.register(finished_run(reg, "other"), "tox")
    assert e.value.code == "name_taken"
    with pytest.raises(AssayError) as e:
        reg.metrics.get("nope")
    assert e.value.code == "not_found"


def test_score_applies_registered_threshold(reg):
    m = reg.metrics.register(finished_run(reg), "tox", threshold=0.999)
    res = reg.metrics.score("tox", ["you are a stupid idiot", {"input": "have a lovely day"}])
    assert len(res) == 2
    for r in res:
        assert abs(sum(r.probabilities.values()) - 1) < 1e-6
        assert r.label == ("true" if r.probabilities["true"] >= m.threshold else "false")
        assert r.confidence == pytest.approx(r.probabilities[r.label])
        assert r.score == pytest.approx(r.probabilities["true"])
    with pytest.raises(InvalidRows):
        reg.metrics.score("tox", [{"input": ""}])
    with pytest.raises(AssayError):
        reg.metrics.score("tox", [])
    assert reg.metrics.evaluator(reg.metrics.get("tox")) is reg.metrics.evaluator(reg.metrics.get("tox"))  # loaded once


def test_review_decisions_apply_to_training_rows(reg):
    t, tr = add_binary_datasets(reg, "demo", 60, 80)
    items = reg.datasets.start_review(tr, n=50)
    assert len(items) == 50 and items == reg.datasets.start_review(tr, n=50)  # the same rows each time
    a, b = items[0], items[1]
    reg.datasets.decide(a.id, "reject", reviewer="ann")
    new = "false" if b.proposed_label == "true" else "true"
    got = reg.datasets.decide(b.id, "relabel", label=new, note="wrong")
    assert (got.decision, got.label) == ("relabel", new)
    with pytest.raises(AssayError):
        reg.datasets.decide(b.id, "relabel", label="maybe")
    rows = reg.datasets.rows(tr, apply_review=True)
    assert len(rows) == 79 and rows[b.position - 1 if a.position < b.position else b.position]["label"] == new


def test_api_keys_are_hashed(reg):
    k = reg.keys.create("ci")
    assert k.key and k.key.startswith("assay_") and reg.keys.check(k.key)
    assert not reg.keys.check(k.key + "x") and not reg.keys.check(None)
    with reg.tx() as conn:
        stored = conn.exec_driver_sql("SELECT key_hash FROM api_keys").scalars().all()
    assert k.key not in stored and len(stored[0]) == 64
    reg.keys.revoke("ci")
    assert not reg.keys.check(k.key) and not reg.keys.has_any()


def test_fsspec_storage_roundtrip():
    s = Storage("memory://assay-test")
    assert not s.local
    url = s.write_bytes(s.url("datasets", "d1", "rows.jsonl"), b"{}\n")
    assert s.exists(url) and s.read_bytes(url) == b"{}\n"
    assert s.local_file(url).read_bytes() == b"{}\n"


def test_remote_artifact_root_end_to_end(tmp_path):
    reg = make_registry(f"sqlite:///{tmp_path / 'r.db'}", tmp_path)
    reg.storage = Storage("memory://assay-e2e", cache=tmp_path / "cache")
    reg.projects.create("demo")
    t, tr = add_binary_datasets(reg, "demo", 60, 60)
    run = reg.runs.create("demo", run_config(t, tr))
    out = fake_worker(reg).run_once()
    assert out.status == Status.fine_tuned and out.artifact_location.startswith("memory://")
    m = reg.metrics.register(run.id, "tox")
    assert m.artifact_location.startswith("memory://assay-e2e/metrics/")
    assert reg.metrics.score("tox", ["hello"])[0].label in ("true", "false")
    assert reg.runs.report(run.id)["n"] > 0


def test_register_below_a_baseline_needs_confirming(reg, tmp_path):
    """A run whose report shows the evaluator's kappa below a baseline's (the student lost to TF-IDF) is not
    registered without confirming: the registry, the API (409 needs_confirmation) and the CLI (--yes) agree."""
    import json
    from pathlib import Path

    from click.testing import CliRunner
    from fastapi.testclient import TestClient

    from _registry_util import error_of
    from assay.cli import cli
    from assay.server import create_app

    run_id = finished_run(reg)
    folder = Path(reg.core.storage.local_dir(reg.runs.get(run_id).artifact_location))
    report = json.loads((folder / "report.json").read_text())
    report["student"]["kappa"] = 0.22
    report["baselines"] = {"tfidf_logreg": {"kappa": 0.60}}
    (folder / "report.json").write_text(json.dumps(report))
    assert reg.metrics.below_baseline(run_id) == {"student_kappa": 0.22, "baseline": "tfidf_logreg",
                                                  "baseline_kappa": 0.60}
    with pytest.raises(AssayError) as exc:
        reg.metrics.register(run_id, "tox")
    assert exc.value.code == "needs_confirmation" and "0.220" in exc.value.found and "0.600" in exc.value.found
    with TestClient(create_app(reg), raise_server_exceptions=False) as c:
        e = error_of(c.post(f"/v1/runs/{run_id}/register", json={"name": "tox"}), 409, "needs_confirmation")
        assert "tfidf_logreg" in e["found"]
        r = c.post(f"/v1/runs/{run_id}/register", json={"name": "tox", "confirm": True})
        assert r.status_code == 201 and r.json()["full_name"] == "tox-v1"
    other = finished_run(reg)
    folder = Path(reg.core.storage.local_dir(reg.runs.get(other).artifact_location))
    (folder / "report.json").write_text(json.dumps(report))
    db = reg.core.url
    out = CliRunner().invoke(cli, ["register", other, "tox", "--db", db, "--artifacts", str(tmp_path / "a")])
    assert out.exit_code == 2 and "below the tfidf_logreg baseline" in out.output
    out = CliRunner().invoke(cli, ["register", other, "tox", "--yes", "--db", db, "--artifacts", str(tmp_path / "a"),
                                   "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["full_name"] == "tox-v2"

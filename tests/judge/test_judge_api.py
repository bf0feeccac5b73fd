"""`POST /v1/metrics/{name}/tune-judge` and the job endpoint: background run, project scoping, server providers."""

from __future__ import annotations

import time

import pytest
from _registry_util import error_of, finished_run, make_registry, sample_test_set
from fastapi.testclient import TestClient

from assay.data import row_hash, split_test_set
from assay.server import create_app


@pytest.fixture
def reg(tmp_path):
    r = make_registry(f"sqlite:///{tmp_path / 'assay.db'}", tmp_path)
    yield r
    r.close()


def _wait(c, job_id, headers, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = c.get(f"/v1/judge-tunings/{job_id}", headers=headers).json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def test_tune_judge_endpoint_scoping_and_result(reg):
    run_id = finished_run(reg)
    reg.metrics.register(run_id, "toxicity")
    reg.projects.create("alpha")
    run = reg.runs.get(run_id)
    test_id = run.config["data"]["test_set"].removeprefix("dataset:")
    other = reg.datasets.add("alpha", sample_test_set(60), "t.jsonl", metric="toxicity",
                             label_map={"hate_speech": "true", "offensive_language": "true", "neither": "false"})
    keys = {"editor": reg.keys.create("e", project="demo", role="editor").key,
            "viewer": reg.keys.create("v", project="demo", role="viewer").key,
            "stranger": reg.keys.create("a", project="alpha", role="admin").key}
    h = {who: {"Authorization": f"Bearer {k}"} for who, k in keys.items()}
    body = {"provider": "mock/judge", "dataset_id": test_id, "rounds": 1}
    url = "/v1/metrics/toxicity/tune-judge"
    with TestClient(create_app(reg, auth=True), raise_server_exceptions=False) as c:
        assert error_of(c.post(url, json=body, headers=h["stranger"]), 404, "not_found")
        assert error_of(c.post(url, json=body, headers=h["viewer"]), 403, "forbidden")
        assert error_of(c.post(url, json=body), 401)
        # the caller names a provider; it never sets where requests go
        assert error_of(c.post(url, json={**body, "provider": "openai/gpt-4o"}, headers=h["editor"]), 400,
                        "provider_not_allowed")
        assert error_of(c.post(url, json={**body, "base_url": "http://evil"}, headers=h["editor"]), 422)
        # another project's dataset is not visible from this metric
        assert error_of(c.post(url, json={**body, "dataset_id": other.id}, headers=h["editor"]), 404, "not_found")

        r = c.post(url, json=body, headers=h["editor"])
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["status"] in ("queued", "running", "done") and job["metric"] == "toxicity-v1"
        assert error_of(c.get(f"/v1/judge-tunings/{job['id']}", headers=h["stranger"]), 404, "not_found")
        done = _wait(c, job["id"], h["viewer"])  # a viewer may read it
        assert done["status"] == "done", done["error"]
        assert done["metric_spec"]["name"] == "toxicity" and "{input}" in done["metric_spec"]["prompt"]
        rows = done["report"]["rows"]
        # only the test set's seed rows, split as the metric's run split them: never its held-out rows
        split = split_test_set(reg.datasets.rows(test_id), "message")
        used = set(rows["train"]["hashes"]) | set(rows["validation"]["hashes"]) | set(rows["test"]["hashes"])
        assert used <= {row_hash(x) for x in split.seeds}
        assert not used & {row_hash(x) for x in split.held_out}
        assert done["rows"] == len(split.seeds) and rows["test_rows_shown_or_selected_on"] == 0
        listed = c.get(url, headers=h["viewer"]).json()
        assert [j["id"] for j in listed] == [job["id"]] and listed[0]["report"] is None
        assert error_of(c.get(url, headers=h["stranger"]), 404)

        # rows the judge labeled are no yardstick for the judge
        unlabeled = reg.datasets.add("demo", b'{"input": "you are awful"}\n{"input": "nice day"}\n', "u.jsonl",
                                     metric="toxicity", kind="unlabeled")
        judged = reg.datasets.label(unlabeled.id, "mock/judge")
        e = error_of(c.post(url, json={**body, "dataset_id": judged.id}, headers=h["editor"]), 422, "invalid_input")
        assert "labeled by a judge" in e["found"]

        # the page
        c.cookies.set("assay_key", keys["editor"])
        page = c.get("/metrics/toxicity/tune-judge")
        assert page.status_code == 200 and "tune-start" in page.text and test_id in page.text
        c.cookies.set("assay_key", keys["stranger"])
        assert c.get("/metrics/toxicity/tune-judge").status_code == 404


def test_the_request_returns_while_tuning_runs_and_running_jobs_are_capped(reg, monkeypatch):
    import threading

    import assay.judge

    run_id = finished_run(reg)
    reg.metrics.register(run_id, "toxicity")
    test_id = reg.runs.get(run_id).config["data"]["test_set"].removeprefix("dataset:")
    release = threading.Event()
    real = assay.judge.tune_judge

    def slow(*a, **kw):
        assert release.wait(30)
        return real(*a, **kw)

    monkeypatch.setattr(assay.judge, "tune_judge", slow)
    body = {"provider": "mock/judge", "dataset_id": test_id, "rounds": 1}
    with TestClient(create_app(reg), raise_server_exceptions=False) as c:
        jobs = [c.post("/v1/metrics/toxicity/tune-judge", json=body).json() for _ in range(2)]
        assert all(j["status"] in ("queued", "running") for j in jobs)
        assert c.get("/v1/health").status_code == 200  # the server answers while both run
        for _ in range(100):  # the thread marks it running as it starts
            if c.get(f"/v1/judge-tunings/{jobs[0]['id']}").json()["status"] == "running":
                break
            time.sleep(0.05)
        assert c.get(f"/v1/judge-tunings/{jobs[0]['id']}").json()["status"] == "running"
        assert error_of(c.post("/v1/metrics/toxicity/tune-judge", json=body), 409, "conflict")
        release.set()
        assert all(_wait(c, j["id"], {})["status"] == "done" for j in jobs)
        assert error_of(c.get("/v1/judge-tunings/tune-nope"), 404, "not_found")


def test_only_the_servers_named_providers_are_usable(reg):
    from assay.providers import ServerProviders

    run_id = finished_run(reg)
    reg.metrics.register(run_id, "toxicity")
    test_id = reg.runs.get(run_id).config["data"]["test_set"].removeprefix("dataset:")
    sp = ServerProviders({"teacher": {"model": "mock/teacher", "options": {"agree_with": "label"}}}, allow_mock=False)
    body = {"dataset_id": test_id, "rounds": 1}
    with TestClient(create_app(reg, providers=sp), raise_server_exceptions=False) as c:
        e = error_of(c.post("/v1/metrics/toxicity/tune-judge", json={**body, "provider": "mock/judge"}), 400,
                     "provider_not_allowed")
        assert "teacher" in e["expected"]
        r = c.post("/v1/metrics/toxicity/tune-judge", json={**body, "provider": "teacher"})
        assert r.status_code == 202, r.text
        done = _wait(c, r.json()["id"], {})
        assert done["status"] == "done" and done["report"]["judge"] == "mock/teacher"
        # the operator's options reached the provider: the mock judge reveals the human label 90% of the time
        assert done["report"]["rounds"][0]["best_validation"]["accuracy"] > 0.7
        page = c.get("/metrics/toxicity/tune-judge")
        assert "<option>teacher</option>" in page.text and "mock/judge" not in page.text


def test_jobs_outlive_a_restart_and_a_cut_off_job_reads_as_interrupted(reg, monkeypatch):
    import threading

    import assay.judge

    run_id = finished_run(reg)
    reg.metrics.register(run_id, "toxicity")
    test_id = reg.runs.get(run_id).config["data"]["test_set"].removeprefix("dataset:")
    body = {"provider": "mock/judge", "dataset_id": test_id, "rounds": 1}
    url = "/v1/metrics/toxicity/tune-judge"
    with TestClient(create_app(reg), raise_server_exceptions=False) as c:
        done = _wait(c, c.post(url, json=body).json()["id"], {})
        assert done["status"] == "done"

    release, started = threading.Event(), threading.Event()
    real = assay.judge.tune_judge

    def stuck(*a, progress=None, **kw):
        progress("round 1: asking the judge")
        started.set()
        assert release.wait(30)
        return real(*a, progress=progress, **kw)

    monkeypatch.setattr(assay.judge, "tune_judge", stuck)
    with TestClient(create_app(reg), raise_server_exceptions=False) as c:
        cut = c.post(url, json=body).json()
        assert started.wait(30)
        assert c.get(f"/v1/judge-tunings/{cut['id']}").json()["status"] == "running"
        # a new server process on the same registry: the first one's thread is gone for it
        with TestClient(create_app(reg), raise_server_exceptions=False) as c2:
            again = c2.get(f"/v1/judge-tunings/{done['id']}").json()
            assert again == done  # a finished job, whole, after the restart
            lost = c2.get(f"/v1/judge-tunings/{cut['id']}").json()
            assert lost["status"] == "failed" and lost["error"]["code"] == "interrupted"
            assert lost["progress"] == ["round 1: asking the judge"] and lost["finished_at"] is not None
            listed = c2.get(url).json()
            assert [j["id"] for j in listed] == [cut["id"], done["id"]]
            assert [j["status"] for j in listed] == ["failed", "done"]
        release.set()

"""The UI's server-rendered pages (without a browser): every page renders from registry data,
unknown ids give a 404 page, and with auth on the pages need a signed-in key."""

from __future__ import annotations

import pytest
from _registry_util import finished_run, make_registry
from fastapi.testclient import TestClient

from assay.server import create_app


@pytest.fixture
def reg(tmp_path):
    r = make_registry(f"sqlite:///{tmp_path / 'assay.db'}", tmp_path)
    yield r
    r.close()


def test_pages_render_registry_data(reg):
    run_id = finished_run(reg)
    reg.metrics.register(run_id, "tox")
    pid = reg.projects.get("demo").id
    with TestClient(create_app(reg)) as c:
        assert c.get("/", follow_redirects=False).headers["location"] == "/projects"
        assert f'href="/projects/{pid}"' in c.get("/projects").text
        page = c.get(f"/projects/{pid}").text
        assert f'href="/runs/{run_id}"' in page and "Registered" in page and "tox-v1" in page
        new = c.get(f"/projects/{pid}/new").text
        assert 'id="step-1"' in new and 'id="step-4"' in new and 'value="toxicity"' in new
        run = c.get(f"/runs/{run_id}").text
        assert f"/v1/runs/{run_id}/report?format=html" in run and "Registered" in run
        assert "tox-v1" in c.get("/metrics").text
        metric = c.get("/metrics/tox").text
        assert 'data-metric="tox-v1"' in metric and 'data-field="input"' in metric
        for url in ("/projects/nope", "/runs/nope", "/metrics/nope", "/projects/nope/new"):
            r = c.get(url)
            assert r.status_code == 404 and "not_found" in r.text
        assert c.get("/static/app.js").status_code == 200 and c.get("/static/app.css").status_code == 200


def test_create_project_form(reg):
    with TestClient(create_app(reg)) as c:
        r = c.post("/projects", data={"name": "web", "description": "from the form"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/projects/prj_")
        again = c.post("/projects", data={"name": "web"})
        assert "already exists" in again.text


def test_custom_metric_check(reg):
    with TestClient(create_app(reg)) as c:
        ok = c.post("/ui/metric-check", json={"name": "rude", "prompt": "Is this rude? {input}"})
        assert ok.status_code == 200 and ok.json()["labels"] == ["true", "false"]
        bad = c.post("/ui/metric-check", json={"name": "rude", "prompt": "no placeholder", "shape": "rag"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_metric"


def test_pages_need_login_when_auth_is_on(reg):
    key = reg.keys.create("web").key
    with TestClient(create_app(reg, auth=True)) as c:
        r = c.get("/projects", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/projects"
        assert c.get("/static/app.css").status_code == 200
        assert c.post("/login", data={"key": "wrong", "next": "/projects"}).status_code == 401
        r = c.post("/login", data={"key": key, "next": "/metrics"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/metrics" and "assay_key" in r.cookies
        c.cookies.set("assay_key", key)
        assert c.get("/projects").status_code == 200
        assert c.get("/v1/projects").status_code == 200  # the UI's API calls use the cookie
        r = c.post("/login", data={"key": key, "next": "//evil.example"}, follow_redirects=False)
        assert r.headers["location"] == "/projects"


def test_run_page_shows_queue_position_and_stale_worker_warning(reg):
    import time

    from _registry_util import add_binary_datasets, run_config

    reg.projects.create("demo")
    t, tr = add_binary_datasets(reg, "demo", 60, 60)
    first = reg.runs.create("demo", run_config(t, tr))
    second = reg.runs.create("demo", run_config(t, tr))
    with TestClient(create_app(reg, stale_after=4)) as c:
        page = c.get(f"/runs/{second.id}").text
        assert 'id="run-queue"' in page and "Position in the queue" in page
        assert 'id="run-queue-position">2<' in page
        assert "No live worker" in page  # nobody is there to run it
        assert c.get(f"/v1/runs/{second.id}/queue").json() == {"position": 2, "queue_depth": 2, "workers_alive": 0}
        reg.runs.claim("w-quiet", pid=1, host="elsewhere", run_id=first.id)
        time.sleep(2.2)  # more than half of stale_after without a heartbeat
        page = c.get(f"/runs/{first.id}").text
        assert "has not reported for" in page and '<p id="run-queue" class="muted" hidden>' in page
        assert c.get(f"/v1/runs/{first.id}/queue").json()["position"] is None

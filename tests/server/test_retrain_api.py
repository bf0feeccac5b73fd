"""Retrain from reviews over HTTP: ``POST /v1/metrics/{name}/retrain`` (the server's own monitor store,
project access control), one-step registration of the result, and the UI's "Retrain from reviews" button."""

from __future__ import annotations

import pytest
from _registry_util import (
    add_reviews,
    error_of,
    fake_worker,
    finished_run,
    make_registry,
)
from fastapi.testclient import TestClient

from assay.monitor import Store
from assay.server import create_app


@pytest.fixture
def reg(tmp_path):
    r = make_registry(f"sqlite:///{tmp_path / 'assay.db'}", tmp_path)
    yield r
    r.close()


@pytest.fixture
def monitor_db(tmp_path):
    """A monitor store with 12 reviewed 'toxicity' verdicts."""
    path = tmp_path / "monitor.db"
    s = Store(path)
    add_reviews(s)
    s.close()
    return path


def _app(reg, monitor_db, **kw):
    app = create_app(reg, **kw)
    app.state.monitor = None
    app.state.monitor_db = monitor_db  # the operator's setting (assay serve --monitor-db), never a caller's
    return app


def test_retrain_endpoint_access_register_and_report(reg, monitor_db, tmp_path):
    v1 = reg.metrics.register(finished_run(reg), "toxicity")
    reg.projects.create("alpha")
    keys = {"editor": reg.keys.create("e", project="demo", role="editor").key,
            "viewer": reg.keys.create("v", project="demo", role="viewer").key,
            "stranger": reg.keys.create("a", project="alpha", role="admin").key}
    h = {who: {"Authorization": f"Bearer {k}"} for who, k in keys.items()}
    runs_before = len(reg.runs.list())
    app = _app(reg, monitor_db, auth=True)
    with TestClient(app, raise_server_exceptions=False) as c:
        # another project's key: the metric does not exist for it; a viewer may not train
        assert error_of(c.post("/v1/metrics/toxicity/retrain", headers=h["stranger"]), 404, "not_found")
        assert error_of(c.post("/v1/metrics/toxicity/retrain", headers=h["viewer"]), 403, "forbidden")
        assert error_of(c.post("/v1/metrics/toxicity/retrain"), 401)
        assert len(reg.runs.list()) == runs_before

        r = c.post("/v1/metrics/toxicity/retrain", headers=h["editor"])
        assert r.status_code == 201, r.text
        run = r.json()
        assert run["status"] == "queued" and run["project_id"] == v1.project_id
        assert run["retrain_of"]["version"] == "toxicity-v1" and run["retrain_of"]["reviewed_rows"] == 12
        assert str(monitor_db) not in r.text  # the server's paths stay on the server

        w = fake_worker(reg)
        assert w.execute(reg.runs.claim(w.worker_id, run_id=run["id"])).status.value == "fine_tuned"
        report = c.get(f"/v1/runs/{run['id']}/report", headers=h["editor"]).json()
        held = report["comparison"]["sets"]["held_out"]
        assert report["comparison"]["previous"] == "toxicity-v1" and held["n"] == report["n"]
        assert set(held["previous"]) >= {"kappa", "f1_macro", "auroc"} and "kappa" in held["delta"]

        assert error_of(c.post(f"/v1/runs/{run['id']}/register", json={}, headers=h["stranger"]), 404)
        m = c.post(f"/v1/runs/{run['id']}/register", json={}, headers=h["editor"])  # no name: one step
        assert m.status_code == 201, m.text
        assert m.json()["full_name"] == "toxicity-v2" and m.json()["run_id"] == run["id"]

        # the caller cannot point the server at a store: the operation takes no body and no parameter but the name
        op = c.get("/openapi.json").json()["paths"]["/v1/metrics/{name}/retrain"]["post"]
        assert "requestBody" not in op and [p["name"] for p in op["parameters"]] == ["name"]


def test_retrain_endpoint_without_reviews(reg, tmp_path):
    reg.metrics.register(finished_run(reg), "toxicity")
    runs_before = len(reg.runs.list())
    with TestClient(_app(reg, tmp_path / "empty-monitor.db"), raise_server_exceptions=False) as c:
        err = error_of(c.post("/v1/metrics/toxicity/retrain"), 400, "no_reviews")
        assert "0 reviewed verdicts in the server's monitor database" in err["found"]
        assert "empty-monitor.db" not in err["found"] and "assay review label" in err["fix"]
        assert error_of(c.post("/v1/metrics/nope/retrain"), 404, "not_found")
    assert len(reg.runs.list()) == runs_before


def test_ui_retrain_button(reg, monitor_db, tmp_path):
    run_id = finished_run(reg)
    reg.metrics.register(run_id, "toxicity")
    with TestClient(_app(reg, monitor_db)) as c:
        page = c.get("/metrics/toxicity").text
        assert 'id="retrain-button"' in page and 'action="/metrics/toxicity-v1/retrain"' in page
        assert "12 reviewed verdicts to add" in page
        r = c.post("/metrics/toxicity-v1/retrain", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/runs/run_")
        new_id = r.headers["location"].rsplit("/", 1)[1]
        assert reg.runs.get(new_id).retrain_of["version"] == "toxicity-v1"
        w = fake_worker(reg)
        w.execute(reg.runs.claim(w.worker_id, run_id=new_id))
        run_page = c.get(f"/runs/{new_id}").text  # the register form is prefilled: one click gives -v2
        assert 'id="register-name" value="toxicity"' in run_page and "next version of toxicity" in run_page
    with TestClient(_app(reg, tmp_path / "none.db")) as c:
        r = c.post("/metrics/toxicity/retrain", follow_redirects=False)
        assert r.status_code == 400 and 'id="retrain-error"' in r.text and "no_reviews" in r.text
        assert "No monitor store yet." in r.text

"""Every /v1 endpoint, on SQLite and on a real PostgreSQL: good requests, bad uploads, duplicate
metric names, unknown metrics, auth on/off, one error shape for 401/404/405/409/422/500, and
20 parallel score requests micro-batched into fewer evaluator calls."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from _registry_util import (
    BINARY_MAP,
    dumps,
    fake_worker,
    make_registry,
    sample_test_set,
    sample_train_set,
)
from _registry_util import error_of as _err
from fastapi.testclient import TestClient

from assay.server import create_app


@pytest.fixture
def reg(registry_db, tmp_path):
    r = make_registry(registry_db, tmp_path)
    yield r
    r.close()


@pytest.fixture
def api(reg):
    with TestClient(create_app(reg, batch_wait_ms=50), raise_server_exceptions=False) as c:
        yield c


def _upload(api, project: str, content: bytes, filename: str, metric: str = "toxicity", **fields):
    data = {"metric": metric, **{k: json.dumps(v) if isinstance(v, dict) else str(v) for k, v in fields.items()}}
    return api.post(f"/v1/projects/{project}/datasets", data=data, files={"file": (filename, content)})


def _datasets(api, project: str = "demo") -> tuple[str, str]:
    t = _upload(api, project, sample_test_set(120), "test.jsonl", label_map=BINARY_MAP)
    tr = _upload(api, project, sample_train_set(200), "train.jsonl", kind="train", label_map=BINARY_MAP)
    assert t.status_code == 201 and tr.status_code == 201, (t.text, tr.text)
    return t.json()["id"], tr.json()["id"]


def _config(t: str, tr: str) -> dict:
    return {"metric": "toxicity", "data": {"test_set": f"dataset:{t}", "train_set": f"dataset:{tr}"},
            "report": {"bootstrap": 0, "baselines": False}}


def _trained_run(api, reg, project: str = "demo") -> str:
    if api.get(f"/v1/projects/{project}").status_code == 404:
        api.post("/v1/projects", json={"name": project})
    t, tr = _datasets(api, project)
    run = api.post("/v1/runs", json={"project": project, "config": _config(t, tr)}).json()
    assert fake_worker(reg).run_once().status.value == "fine_tuned"
    return run["id"]


def test_health_openapi_docs(api, reg):
    h = api.get("/v1/health").json()
    assert h["status"] == "ok" and h["database"] == reg.dialect and h["auth"] is False
    spec = api.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {"/v1/projects", "/v1/projects/{project}/datasets", "/v1/runs", "/v1/runs/{run_id}/logs",
            "/v1/runs/{run_id}/report", "/v1/runs/{run_id}/cancel", "/v1/runs/{run_id}/register", "/v1/metrics",
            "/v1/metrics/{name}", "/v1/metrics/{name}/score"} <= paths
    assert "micro-batched" in spec["info"]["description"]
    assert api.get("/docs").status_code == 200


def test_projects(api):
    r = api.post("/v1/projects", json={"name": "demo", "description": "d"})
    assert r.status_code == 201 and r.json()["name"] == "demo"
    _err(api.post("/v1/projects", json={"name": "demo"}), 409, "conflict")
    _err(api.post("/v1/projects", json={}), 422, "invalid_request")
    _err(api.post("/v1/projects", content=b"{not json", headers={"content-type": "application/json"}), 422)
    assert api.get("/v1/projects/demo").json()["id"] == r.json()["id"]
    assert [p["name"] for p in api.get("/v1/projects").json()] == ["demo"]
    _err(api.get("/v1/projects/nope"), 404, "not_found")


def test_dataset_uploads_good_and_bad(api):
    api.post("/v1/projects", json={"name": "demo"})
    ok = _upload(api, "demo", sample_test_set(100), "test.jsonl", label_map=BINARY_MAP)
    assert ok.status_code == 201
    ds = ok.json()
    assert ds["rows"] == 100 and ds["kind"] == "test" and sum(ds["label_counts"].values()) == 100
    assert ds["split"]["seeds"] + ds["split"]["held_out"] == 100 and len(ds["content_hash"]) == 64
    csv = b"text,klass\nyou are lovely,neither\nyou are awful,offensive_language\n"
    c = _upload(api, "demo", csv, "rows.csv", columns={"input": "text", "label": "klass"}, label_map=BINARY_MAP)
    assert c.status_code == 201 and c.json()["label_counts"] == {"true": 1, "false": 1}
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"input": ["hi there", "you fool"], "label": ["false", "true"]}), buf)
    p = _upload(api, "demo", buf.getvalue(), "rows.parquet")
    assert p.status_code == 201 and p.json()["format"] == "parquet" and p.json()["rows"] == 2

    bad_rows = [{"input": "fine", "label": "true"}, {"input": "", "label": "true"}, {"input": "x", "label": "meh"}]
    e = _err(_upload(api, "demo", dumps(bad_rows), "bad.jsonl"), 422, "invalid_rows")
    assert e["rows_total"] == 2 and [(r["row"], r["field"]) for r in e["rows"]] == [(1, "input"), (2, "label")]
    assert all({"row", "id", "field", "problem"} <= set(r) for r in e["rows"])
    v = _upload(api, "demo", dumps(bad_rows), "bad.jsonl", validate_only="true")
    assert v.json()["ok"] is False and len(v.json()["errors"]) == 2
    _err(_upload(api, "demo", b"{broken\n", "bad.jsonl"), 422, "invalid_format")
    _err(_upload(api, "demo", csv, "rows.xlsx"), 422, "invalid_format")
    _err(_upload(api, "demo", b"", "empty.csv"), 422, "empty_file")
    _err(_upload(api, "demo", csv, "rows.csv", columns="{nope"), 422, "invalid_input")
    _err(_upload(api, "demo", csv, "rows.csv", columns={"input": "missing"}), 422, "missing_column")
    _err(_upload(api, "demo", csv, "rows.csv", metric="no_such_metric"), 422, "invalid_metric")
    _err(_upload(api, "demo", csv, "rows.csv", kind="weird"), 422, "invalid_request")
    _err(api.post("/v1/projects/demo/datasets", files={"file": ("a.csv", csv)}), 422, "invalid_request")
    _err(_upload(api, "nope", csv, "rows.csv"), 404, "not_found")

    listed = api.get("/v1/projects/demo/datasets").json()
    assert len(listed) == 3  # nothing stored for the bad uploads
    assert api.get(f"/v1/datasets/{ds['id']}").json()["rows"] == 100
    assert len(api.get(f"/v1/datasets/{ds['id']}/rows", params={"limit": 5}).json()) == 5
    _err(api.get("/v1/datasets/ds_nope"), 404, "not_found")


def test_review_endpoints(api):
    api.post("/v1/projects", json={"name": "demo"})
    _, tr = _datasets(api)
    items = api.post(f"/v1/datasets/{tr}/review", json={"n": 50}).json()
    assert len(items) == 50 and all(i["decision"] is None for i in items)
    got = api.post(f"/v1/review/{items[0]['id']}", json={"decision": "relabel", "label": "true", "reviewer": "ann"})
    assert got.status_code == 200 and got.json()["label"] == "true"
    _err(api.post(f"/v1/review/{items[0]['id']}", json={"decision": "relabel", "label": "maybe"}), 422)
    _err(api.post(f"/v1/review/{items[0]['id']}", json={"decision": "shrug"}), 422, "invalid_request")
    _err(api.post("/v1/review/rev_nope", json={"decision": "accept"}), 404, "not_found")
    assert api.get(f"/v1/datasets/{tr}/review").json()[0]["decision"] == "relabel"


def test_runs_lifecycle_over_http(api, reg):
    api.post("/v1/projects", json={"name": "demo"})
    t, tr = _datasets(api)
    r = api.post("/v1/runs", json={"project": "demo", "config": _config(t, tr), "name": "first"})
    assert r.status_code == 201
    run = r.json()
    assert run["status"] == "queued" and run["status_title"] == "Queued" and run["name"] == "first"
    yaml_cfg = f"metric: toxicity\ndata:\n  test_set: dataset:{t}\nreport: {{bootstrap: 0, baselines: false}}\n"
    second = api.post("/v1/runs", json={"project": "demo", "config": yaml_cfg}).json()
    assert second["config"]["data"]["test_set"] == f"dataset:{t}"
    _err(api.post("/v1/runs", json={"project": "demo", "config": {"metric": "toxicity"}}), 422, "invalid_config")
    _err(api.post("/v1/runs", json={"project": "demo", "config": {"metric": "toxicity", "data": {
        "test_set": "/etc/passwd"}}}), 422, "invalid_config")
    _err(api.post("/v1/runs", json={"project": "demo", "config": {"metric": "toxicity", "data": {
        "test_set": "dataset:ds_nope"}}}), 404, "not_found")
    _err(api.post("/v1/runs", json={"project": "demo", "config": "data: [1"}), 422, "invalid_config")
    _err(api.post("/v1/runs", json={"project": "nope", "config": _config(t, tr)}), 404, "not_found")

    assert {x["id"] for x in api.get("/v1/runs", params={"project": "demo"}).json()} == {run["id"], second["id"]}
    assert api.get("/v1/runs", params={"status": "fine_tuned"}).json() == []
    _err(api.get("/v1/runs", params={"status": "bogus"}), 422, "invalid_input")
    _err(api.get("/v1/runs/run_nope"), 404, "not_found")
    _err(api.get(f"/v1/runs/{run['id']}/report"), 404, "not_found")  # not trained yet

    cancelled = api.post(f"/v1/runs/{second['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert api.post(f"/v1/runs/{second['id']}/cancel").status_code == 200  # idempotent

    assert fake_worker(reg).run_once().id == run["id"]
    done = api.get(f"/v1/runs/{run['id']}").json()
    assert done["status"] == "fine_tuned" and done["progress"] == 1.0 and done["metrics_summary"]["kappa"] is not None
    assert [h["status"] for h in done["history"]] == ["queued", "data_ready", "training", "fine_tuned"]
    _err(api.post(f"/v1/runs/{run['id']}/cancel"), 409, "invalid_status")
    logs = api.get(f"/v1/runs/{run['id']}/logs").json()
    assert {"status", "stage"} <= {e["kind"] for e in logs}
    later = api.get(f"/v1/runs/{run['id']}/logs", params={"after": logs[2]["id"]}).json()
    assert [e["id"] for e in later] == [e["id"] for e in logs[3:]]
    report = api.get(f"/v1/runs/{run['id']}/report").json()
    assert report["student"]["kappa"] == done["metrics_summary"]["kappa"]
    html = api.get(f"/v1/runs/{run['id']}/report", params={"format": "html"})
    assert html.headers["content-type"].startswith("text/html") and "<svg" in html.text
    assert api.get(f"/v1/runs/{run['id']}/report", params={"format": "md"}).text.startswith("#")


def test_register_and_duplicate_names(api, reg):
    r1 = _trained_run(api, reg)
    m = api.post(f"/v1/runs/{r1}/register", json={"name": "tox"})
    assert m.status_code == 201 and m.json()["full_name"] == "tox-v1" and m.json()["immutable"] is True
    _err(api.post(f"/v1/runs/{r1}/register", json={"name": "tox"}), 409, "already_registered")
    _err(api.post(f"/v1/runs/{r1}/register", json={"name": "other"}), 409, "already_registered")
    r2 = _trained_run(api, reg)
    m2 = api.post(f"/v1/runs/{r2}/register", json={"name": "tox", "threshold": 0.6}).json()
    assert m2["full_name"] == "tox-v2" and [v["full_name"] for v in m2["versions"]] == ["tox-v1", "tox-v2"]
    r3 = _trained_run(api, reg, "other-project")
    _err(api.post(f"/v1/runs/{r3}/register", json={"name": "tox"}), 409, "name_taken")
    _err(api.post(f"/v1/runs/{r3}/register", json={"name": "Tox!"}), 422, "invalid_input")
    _err(api.post(f"/v1/runs/{r3}/register", json={"name": "tox-v9"}), 422, "invalid_input")
    _err(api.post(f"/v1/runs/{r3}/register", json={"name": "x", "threshold": 2}), 422)
    # no name: only a retrain from reviews has one to fall back on (the next version of its metric)
    assert "not a retrain" in _err(api.post(f"/v1/runs/{r3}/register", json={}), 422, "invalid_input")["found"]
    _err(api.post("/v1/runs/run_nope/register", json={"name": "x"}), 404, "not_found")
    q = api.post("/v1/runs", json={"project": "demo", "config": _config(*_datasets(api))}).json()
    _err(api.post(f"/v1/runs/{q['id']}/register", json={"name": "queued"}), 409, "invalid_status")

    assert [x["name"] for x in api.get("/v1/metrics").json()] == ["tox"]
    assert api.get("/v1/metrics/tox").json()["full_name"] == "tox-v2"
    assert api.get("/v1/metrics/tox-v1").json()["threshold"] == 0.5
    assert api.get("/v1/metrics", params={"project": "other-project"}).json() == []
    _err(api.get("/v1/metrics/nope"), 404, "not_found")


def test_score(api, reg):
    api.post(f"/v1/runs/{_trained_run(api, reg)}/register", json={"name": "tox"})
    r = api.post("/v1/metrics/tox/score", json={"rows": [{"input": "you are an idiot"}, "have a nice day"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["metric"] == "tox-v1" and len(body["results"]) == 2
    for res in body["results"]:
        assert res["label"] in ("true", "false") and set(res["probabilities"]) == {"true", "false"}
        assert 0 <= res["score"] <= 1 and res["confidence"] == pytest.approx(res["probabilities"][res["label"]])
    assert api.post("/v1/metrics/tox-v1/score", json={"rows": ["x"]}).json()["metric"] == "tox-v1"
    _err(api.post("/v1/metrics/unknown/score", json={"rows": ["x"]}), 404, "not_found")
    e = _err(api.post("/v1/metrics/tox/score", json={"rows": [{"input": "ok"}, {"input": ""}]}), 422, "invalid_rows")
    assert e["rows"][0]["row"] == 1
    _err(api.post("/v1/metrics/tox/score", json={"rows": []}), 422, "invalid_input")
    _err(api.post("/v1/metrics/tox/score", json={"rows": [1]}), 422, "invalid_request")
    _err(api.post("/v1/metrics/tox/score", json={}), 422, "invalid_request")


def test_twenty_parallel_scores_are_batched(api, reg):
    api.post(f"/v1/runs/{_trained_run(api, reg)}/register", json={"name": "tox"})
    app = api.app
    ev = reg.metrics.evaluator(reg.metrics.get("tox"))  # the MockEvaluator the server scores with
    before = ev.calls

    async def fire():
        import httpx

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(*[client.post("/v1/metrics/tox/score", json={"rows": [f"text number {i}"]})
                                          for i in range(20)])

    responses = asyncio.run(fire())
    assert [r.status_code for r in responses] == [200] * 20
    assert all(len(r.json()["results"]) == 1 for r in responses)
    batches = {json.dumps(r.json()["batch"]) for r in responses}
    assert max(r.json()["batch"]["requests"] for r in responses) > 1
    assert ev.calls - before < 20 and len(batches) >= 1
    stats = api.get("/v1/health").json()["batching"]["tox-v1"]
    assert stats["requests"] >= 20 and stats["batches"] < stats["requests"]


def test_auth_on(reg):
    key = reg.keys.create("ci").key
    with TestClient(create_app(reg, auth=True), raise_server_exceptions=False) as c:
        assert c.get("/v1/health").status_code == 200 and c.get("/openapi.json").status_code == 200
        e = _err(c.get("/v1/projects"), 401, "unauthorized")
        assert e["found"] == "no key"
        assert _err(c.get("/v1/projects", headers={"Authorization": "Bearer wrong"}), 401)["found"].startswith(
            "an unknown")
        _err(c.post("/v1/metrics/x/score", json={"rows": ["a"]}), 401, "unauthorized")
        ok = c.get("/v1/projects", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200 and ok.json() == []
        assert c.get("/v1/projects", headers={"X-API-Key": key}).status_code == 200
        assert c.get("/v1/health").json()["auth"] is True


def test_auth_off_by_default(reg):
    reg.keys.create("ci")
    with TestClient(create_app(reg)) as c:
        assert c.get("/v1/projects").status_code == 200


def test_error_shape_for_405_and_500(api, reg, monkeypatch):
    _err(api.delete("/v1/projects"), 405, "method_not_allowed")
    _err(api.get("/v2/nothing"), 404, "not_found")

    def boom(*a, **k):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(reg.projects, "list", boom)
    e = _err(api.get("/v1/projects"), 500, "internal_error")
    assert "secret detail" not in e["message"]


def test_label_unlabeled_rows_with_the_judge(api):
    api.post("/v1/projects", json={"name": "demo"})
    rows = [{"input": "you are a complete idiot"}, {"input": "thanks, see you tomorrow"}, {"input": "shut up"}]
    u = _upload(api, "demo", dumps(rows), "logs.jsonl", kind="unlabeled")
    assert u.status_code == 201 and u.json()["kind"] == "unlabeled"
    r = api.post(f"/v1/datasets/{u.json()['id']}/label", json={"judge": "mock/teacher"})
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["kind"] == "train" and d["rows"] == 3 and sum(d["label_counts"].values()) == 3
    labeled = api.get(f"/v1/datasets/{d['id']}/rows").json()
    assert all(x["label"] in ("true", "false") and "judge" in x["meta"] for x in labeled)
    _err(api.post(f"/v1/datasets/{u.json()['id']}/label", json={"judge": "no-provider"}), 400,
         "provider_not_allowed")  # not one of the server's provider names
    _err(api.post("/v1/datasets/ds_nope/label", json={"judge": "mock/teacher"}), 404, "not_found")

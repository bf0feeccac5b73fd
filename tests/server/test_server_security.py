"""Issue 8: the server under attack and faults. Each test first reproduces the attack or fault of a
numbered finding, then checks the server refuses it: secrets stay home (1), an empty host is public
(2), keys are scoped to projects with roles (3), a registered artifact is verified (5), scoring runs
on one thread (6), hostile input gets a 4xx in the standard error shape (7), a generation that
yields nothing fails with counts (8), and the audit's follow-ups (9): UI error pages, chunked
bodies over the limit, taken metric names, provider settings in run configs, server file paths."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from _registry_util import BINARY_MAP, finished_run, make_registry, sample_test_set
from _registry_util import error_of as _err
from click.testing import CliRunner
from fastapi.testclient import TestClient

from assay.cli import cli
from assay.cli._serve import is_loopback
from assay.providers import ServerProviders
from assay.server import create_app


def _send_chat(handler: BaseHTTPRequestHandler, content: str, completion_tokens: int) -> None:
    """Answer an OpenAI-compatible chat request with ``content``."""
    body = json.dumps({"choices": [{"message": {"content": content}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 5, "completion_tokens": completion_tokens}}).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class Recorder:
    """A fake OpenAI-compatible endpoint that records every Authorization header it receives."""

    def __init__(self):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                seen.append(self.headers.get("Authorization"))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                _send_chat(self, "true", completion_tokens=1)

            def log_message(self, *a):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def recorder():
    r = Recorder()
    yield r
    r.close()


def _unlabeled(c, project="demo") -> str:
    rows = b'{"input": "you are an idiot"}\n{"input": "have a nice day"}\n'
    r = c.post(f"/v1/projects/{project}/datasets", data={"metric": "toxicity", "kind": "unlabeled"},
               files={"file": ("logs.jsonl", rows)})
    assert r.status_code == 201, r.text
    return r.json()["id"]


# --- 1. secret exfiltration ---------------------------------------------------------------------
def test_caller_cannot_point_a_provider_at_a_server_secret(reg, recorder, monkeypatch, tmp_path):
    monkeypatch.setenv("DUMMY_SECRET", "s3cr3t-value")
    monkeypatch.setenv("ASSAY_DATABASE_URL", "postgresql://assay:db-password@db/assay")
    with TestClient(create_app(reg), raise_server_exceptions=False) as c:
        ds = _unlabeled(c)
        for env in ("DUMMY_SECRET", "ASSAY_DATABASE_URL"):
            attack = {"model": "openai/gpt-4o-mini", "base_url": recorder.url, "api_key_env": env}
            e = _err(c.post(f"/v1/datasets/{ds}/label", json={"judge": attack}), 400, "provider_not_allowed")
            assert "base_url" in e["found"]
        _err(c.post(f"/v1/datasets/{ds}/label", json={"judge": {"model": "openai/x", "api_key_env": "DUMMY_SECRET"}}),
             400, "provider_not_allowed")
        # the same through a run's judge and generate configs, and the cache path (a file anywhere)
        test_ds = c.post("/v1/projects/demo/datasets", data={"metric": "toxicity", "label_map": json.dumps(BINARY_MAP)},
                         files={"file": ("t.jsonl", sample_test_set(60))}).json()["id"]
        base = {"metric": "toxicity", "data": {"test_set": f"dataset:{test_ds}"}}
        planted = tmp_path / "planted.db"
        for extra in ({"judge": {"model": "openai/x", "base_url": recorder.url, "api_key_env": "DUMMY_SECRET"}},
                      {"generate": {"model": "openai/x", "base_url": recorder.url}},
                      {"judge": {"model": "mock/teacher", "cache": str(planted)}},
                      {"generate": {"model": "mock/teacher", "output": str(tmp_path / "out")}},
                      {"model": {"base": str(tmp_path)}},
                      {"judge": "openai/gpt-4o-mini"}):  # not one of the server's provider names
            _err(c.post("/v1/runs", json={"project": "demo", "config": {**base, **extra}}), 400, "provider_not_allowed")
        assert not planted.exists()
    assert recorder.seen == []  # the endpoint received nothing at all, let alone a secret


def test_named_server_provider_carries_the_operators_key(reg, recorder, monkeypatch):
    monkeypatch.setenv("OPERATOR_KEY", "operator-key")
    sp = ServerProviders({"teacher": {"model": "corp/judge-1", "base_url": recorder.url, "api_key_env": "OPERATOR_KEY"}})
    with TestClient(create_app(reg, providers=sp), raise_server_exceptions=False) as c:
        assert c.get("/v1/providers").json()["providers"] == [{"name": "teacher", "model": "corp/judge-1"}]
        ds = _unlabeled(c)
        r = c.post(f"/v1/datasets/{ds}/label", json={"judge": {"model": "teacher", "cache": False}})
        assert r.status_code == 201, r.text
        assert r.json()["rows"] == 2
    assert recorder.seen and set(recorder.seen) == {"Bearer operator-key"}


def test_server_provider_file(tmp_path):
    f = tmp_path / "providers.yaml"
    f.write_text("providers:\n  teacher: {model: openai/gpt-4o-mini, api_key_env: OPENAI_API_KEY}\nallow_mock: false\n")
    sp = ServerProviders.from_file(f)
    assert sp.resolve("teacher", "judge")["api_key_env"] == "OPENAI_API_KEY"
    with pytest.raises(Exception) as e:
        sp.resolve("mock/teacher", "judge")
    assert getattr(e.value, "code", "") == "provider_not_allowed"


# --- 2. the host rule ---------------------------------------------------------------------------
def test_empty_and_wildcard_hosts_are_public(tmp_path):
    assert [is_loopback(h) for h in ("127.0.0.1", "127.3.2.1", "::1", "localhost")] == [True] * 4
    assert [is_loopback(h) for h in ("", "0.0.0.0", "::", "10.0.0.5", "example.com")] == [False] * 5
    db = f"sqlite:///{tmp_path / 'assay.db'}"
    r = CliRunner().invoke(cli, ["serve", "--host", "", "--db", db, "--workers", "0"])
    assert r.exit_code == 2 and "no API keys" in r.output  # auth is forced on, so it needs a key
    r = CliRunner().invoke(cli, ["serve", "--host", "", "--no-auth", "--db", db, "--workers", "0"])
    assert r.exit_code == 2 and "--no-auth" in r.output


# --- 3. projects and roles ----------------------------------------------------------------------
def test_keys_are_scoped_to_projects_with_roles(reg):
    run_a = finished_run(reg, "alpha")
    reg.metrics.register(run_a, "tox")
    run_b = finished_run(reg, "beta")
    reg.metrics.register(run_b, "beta-metric")
    op = reg.keys.create("ops").key
    keys = {role: reg.keys.create(role, project="alpha", role=role).key for role in
            ("admin", "editor", "scorer", "viewer")}
    h = {role: {"Authorization": f"Bearer {k}"} for role, k in {**keys, "op": op}.items()}
    beta = reg.projects.get("beta").id
    ds_b = reg.datasets.list("beta")[0].id
    with TestClient(create_app(reg, auth=True), raise_server_exceptions=False) as c:
        # a foreign project and everything in it is 404, exactly like one that does not exist
        for role in keys:
            assert [p["name"] for p in c.get("/v1/projects", headers=h[role]).json()] == ["alpha"]
            for url in ("/v1/projects/beta", f"/v1/projects/{beta}", "/v1/projects/beta/datasets",
                        f"/v1/datasets/{ds_b}", f"/v1/runs/{run_b}", f"/v1/runs/{run_b}/logs",
                        "/v1/metrics/beta-metric"):
                e = _err(c.get(url, headers=h[role]), 404, "not_found")
                assert "beta" not in e["expected"]
            nope = _err(c.get("/v1/projects/no-such", headers=h[role]), 404)
            assert set(nope) == set(_err(c.get("/v1/projects/beta", headers=h[role]), 404))
            _err(c.post("/v1/metrics/beta-metric/score", json={"rows": ["x"]}, headers=h[role]), 404, "not_found")
            assert c.get("/v1/runs", headers=h[role]).json() == [] or role == "scorer" or all(
                r["project_id"] != beta for r in c.get("/v1/runs", headers=h[role]).json())
            assert all(m["name"] != "beta-metric" for m in c.get("/v1/metrics", headers=h[role]).json())
        # roles inside the project
        upload = {"data": {"metric": "toxicity", "label_map": json.dumps(BINARY_MAP)},
                  "files": {"file": ("t.jsonl", sample_test_set(40))}}
        assert c.post("/v1/projects/alpha/datasets", headers=h["editor"], **upload).status_code == 201
        assert c.post("/v1/projects/alpha/datasets", headers=h["admin"], **upload).status_code == 201
        _err(c.post("/v1/projects/alpha/datasets", headers=h["viewer"], **upload), 403, "forbidden")
        _err(c.post("/v1/projects/alpha/datasets", headers=h["scorer"], **upload), 403, "forbidden")
        assert c.post("/v1/metrics/tox/score", json={"rows": ["x"]}, headers=h["scorer"]).status_code == 200
        _err(c.post("/v1/metrics/tox/score", json={"rows": ["x"]}, headers=h["viewer"]), 403, "forbidden")
        _err(c.get(f"/v1/runs/{run_a}", headers=h["scorer"]), 403, "forbidden")
        assert c.get(f"/v1/runs/{run_a}", headers=h["viewer"]).status_code == 200
        _err(c.post(f"/v1/runs/{run_a}/cancel", headers=h["viewer"]), 403, "forbidden")
        _err(c.post("/v1/projects", json={"name": "new"}, headers=h["admin"]), 403, "forbidden")
        assert c.post("/v1/projects", json={"name": "new"}, headers=h["op"]).status_code == 201
        assert c.get("/v1/projects/beta", headers=h["op"]).status_code == 200
        # /v1/health names no metric or project without a key
        c.post("/v1/metrics/tox/score", json={"rows": ["x"]}, headers=h["op"])
        anon = c.get("/v1/health")
        assert anon.status_code == 200 and "batching" not in anon.json()
        assert "tox" not in anon.text and "alpha" not in anon.text and "beta" not in anon.text
        assert "tox-v1" in c.get("/v1/health", headers=h["op"]).json()["batching"]
        assert "beta-metric-v1" not in c.get("/v1/health", headers=h["viewer"]).json()["batching"]
    # the CLI grants and removes roles
    r = CliRunner().invoke(cli, ["keys", "grant", "viewer", "beta", "editor", "--db", reg.url, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["projects"] == {reg.projects.get("alpha").id: "viewer", beta: "editor"}


# --- 5. artifact hash ---------------------------------------------------------------------------
def test_edited_artifact_refuses_to_score(tmp_path):
    db = f"sqlite:///{tmp_path / 'assay.db'}"
    reg = make_registry(db, tmp_path)
    m = reg.metrics.register(finished_run(reg), "tox")
    info_path = Path(m.artifact_location) / "evaluator.json"
    info = json.loads(info_path.read_text())
    model = info["word_counts"]  # the mock evaluator's word-count model
    model["log_prior"] = {k: (0.0 if k == "true" else -50.0) for k in model["log_prior"]}  # flips every verdict
    info_path.write_text(json.dumps(info))
    reg.close()
    fresh = make_registry(db, tmp_path)  # a restarted server loads the version again
    with TestClient(create_app(fresh), raise_server_exceptions=False) as c:
        e = _err(c.post("/v1/metrics/tox/score", json={"rows": ["have a nice day"]}), 409, "artifact_modified")
        assert "evaluator.json" in e["found"] and "tox-v1" in e["expected"]
    info_path.unlink()
    with pytest.raises(Exception) as exc:
        fresh.metrics.verify_artifact(fresh.metrics.get("tox"))
    assert "evaluator.json missing" in str(exc.value)
    fresh.close()


# --- 6. scoring runs on one thread --------------------------------------------------------------
def test_batched_scoring_uses_one_thread(reg):
    import asyncio

    import httpx

    reg.metrics.register(finished_run(reg), "tox")
    threads = set()
    original = reg.metrics.score_rows

    def spy(version, rows):
        threads.add(threading.current_thread().name)
        return original(version, rows)

    reg.metrics.score_rows = spy
    app = create_app(reg, batch_wait_ms=5)

    async def fire():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            for _ in range(5):
                out = await asyncio.gather(*[client.post("/v1/metrics/tox/score", json={"rows": [f"m {i}"]})
                                             for i in range(16)])
                assert {r.status_code for r in out} == {200}

    asyncio.run(fire())
    assert len(threads) == 1 and next(iter(threads)).startswith("assay-score")


# --- 7. hostile input ---------------------------------------------------------------------------
@pytest.fixture
def db_reg(registry_db, tmp_path):
    r = make_registry(registry_db, tmp_path)
    r.projects.create("demo")
    yield r
    r.close()


def test_hostile_input_gets_4xx(db_reg, tmp_path):
    import os

    garbage = os.urandom(4096) + b"\x00\xff\xfe" * 100
    with TestClient(create_app(db_reg), raise_server_exceptions=False) as c:
        for name in ("g.csv", "g.tsv", "g.jsonl", "g.json", "g.parquet"):
            r = c.post("/v1/projects/demo/datasets", data={"metric": "toxicity"}, files={"file": (name, garbage)})
            assert 400 <= r.status_code < 500, (name, r.text)
            _err(r, r.status_code)
        run_id = finished_run(db_reg)
        _err(c.get(f"/v1/runs/{run_id}/logs", params={"after": 10**30}), 422, "invalid_request")
        _err(c.get(f"/v1/runs/{run_id}/logs", params={"after": 2**63}), 422, "invalid_request")
        assert c.get(f"/v1/runs/{run_id}/logs", params={"after": 2**63 - 1}).json() == []
        for bad in ({"name": "a\x00b"}, {"name": "ok", "description": "d\x00"}):
            e = _err(c.post("/v1/projects", json=bad), 422, "invalid_input")
            assert "NUL" in e["found"]
        for url in ("/v1/projects/a%00b", "/v1/metrics/x%00/score", "/v1/runs/r%00"):
            r = c.get(url) if "score" not in url else c.post(url, json={"rows": ["x"]})
            _err(r, 400, "invalid_input")
        r = c.post("/v1/projects/demo/datasets", data={"metric": "toxicity", "name": "n\x00"},
                   files={"file": ("t.jsonl", b'{"input": "a", "label": "true"}\n')})
        _err(r, 422, "invalid_input")
        assert [p["name"] for p in c.get("/v1/projects").json()] == ["demo"]


def test_upload_size_limit_is_enforced_while_reading(reg, monkeypatch):
    from assay.server import _api

    monkeypatch.setattr(_api, "MAX_UPLOAD_BYTES", 64 * 1024)
    with TestClient(create_app(reg), raise_server_exceptions=False) as c:
        big = b'{"input": "hello there", "label": "true"}\n' * 4000  # ~170 KB
        _err(c.post("/v1/projects/demo/datasets", data={"metric": "toxicity"}, files={"file": ("b.jsonl", big)}),
             413, "too_large")
        assert c.get("/v1/projects/demo/datasets").json() == []
    with TestClient(create_app(reg, ), raise_server_exceptions=False) as c:  # the body limit (Content-Length)
        from assay.server._uploads import MULTIPART_SLACK, BodyLimit

        app = BodyLimit(c.app, max_bytes=1024)
        assert app.max_bytes == 1024 + MULTIPART_SLACK


@pytest.mark.slow
def test_24mb_csv_upload_memory(reg, tmp_path):
    """Peak Python memory while storing a 24 MB CSV upload stays under 5x the file size."""
    import tracemalloc

    path, n_rows = _big_csv(tmp_path / "upload")
    size = path.stat().st_size
    tracemalloc.start()
    ds = reg.datasets.add("demo", path, "big.csv", metric="toxicity", columns={"input": "text"})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert ds.rows == n_rows and ds.size_bytes == size
    print(f"24 MB CSV: {size / 2**20:.1f} MiB file, peak traced memory {peak / 2**20:.1f} MiB "
          f"({peak / size:.1f}x)")
    assert peak < 5 * size


# --- 8. a generation step that yields 0 usable rows ---------------------------------------------
def test_zero_row_generation_fails_with_counts(tmp_path):
    from assay.config import config_from_dict
    from assay.errors import AssayError
    from assay.synth import generate_training_set

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(self.path)
            if len(seen) <= 2:  # two transient failures first: retried
                self.send_response(500)
                self.end_headers()
                return
            _send_chat(self, "Sorry, I cannot help with that.", completion_tokens=5)

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = config_from_dict({
            "metric": "toxicity", "data": {"test_set": str(tmp_path / "t.jsonl")}, "output": str(tmp_path / "out"),
            "generate": {"model": "fake/gen", "base_url": f"http://127.0.0.1:{server.server_port}/v1",
                         "cache": False, "max_retries": 3, "backoff": 0, "target_size": 20, "max_rounds": 2,
                         "concurrency": 1}}, source="test")
        seeds = [{"id": f"s{i}", "input": f"seed text number {i}", "label": "true" if i % 2 else "false"}
                 for i in range(6)]
        with pytest.raises(AssayError) as e:
            generate_training_set(cfg, seeds, [{"id": "h", "input": "held out", "label": "true"}])
    finally:
        server.shutdown()
    assert e.value.code == "generation_failed" and "0 usable rows" in str(e.value)
    report = json.loads((cfg.data_dir() / "data_report.json").read_text())
    assert report["cost"]["requests"] == len(seen)  # every HTTP request the endpoint received
    assert report["cost"]["retries"] == 2 and f"{len(seen)} HTTP requests incl. 2 retries" in str(e.value)


# --- 9. audit follow-ups: each test makes the attack or fault first -----------------------------
def test_ui_project_form_errors_list_only_visible_projects(reg):
    """A project-scoped key posting the UI's new-project form got the page back listing every
    project's name and description."""
    reg.projects.create("secret-beta", "hidden plans for the beta launch")
    scoped = {"Authorization": f"Bearer {reg.keys.create('demo-admin', project='demo', role='admin').key}"}
    op = {"Authorization": f"Bearer {reg.keys.create('ops').key}"}
    with TestClient(create_app(reg, auth=True), raise_server_exceptions=False) as c:
        for name in ("demo", "secret-beta", "fresh", "bad name!", "x" * 300):  # duplicate, foreign, new, invalid
            r = c.post("/projects", data={"name": name, "description": "d"}, headers=scoped)
            assert "hidden plans" not in r.text
            assert "secret-beta" not in r.text or name == "secret-beta"  # only what the caller typed
            assert r.status_code == 403 and "forbidden" in r.text, (name, r.status_code)
            assert "demo" in r.text  # its own project is listed
        assert "fresh" not in [p.name for p in reg.projects.list()]
        r = c.post("/projects", data={"name": "demo"}, headers=op)  # the operator sees everything
        assert r.status_code == 409 and "already exists" in r.text and "hidden plans" in r.text


def _chunks(head: bytes, total: int):
    """A request body as a generator: httpx sends it chunked, without Content-Length."""
    yield head
    sent = len(head)
    while sent <= total:
        yield b"x" * 65536
        sent += 65536


def test_chunked_body_over_the_limit_is_413(reg, monkeypatch):
    """A body over the limit sent chunked (no Content-Length) was cut off and answered 400
    http_400 ("error parsing the body") instead of 413 too_large."""
    from assay.server import _api
    from assay.server._uploads import MULTIPART_SLACK

    monkeypatch.setattr(_api, "MAX_UPLOAD_BYTES", 64 * 1024)
    limit = 64 * 1024 + MULTIPART_SLACK
    b = "bnd"
    head = (f'--{b}\r\nContent-Disposition: form-data; name="metric"\r\n\r\ntoxicity\r\n--{b}\r\n'
            f'Content-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n').encode()
    with TestClient(create_app(reg), raise_server_exceptions=False) as c:
        for url, body, ctype in (("/v1/projects/demo/datasets", head, f"multipart/form-data; boundary={b}"),
                                 ("/v1/runs", b'{"project": "demo", "config": "', "application/json"),
                                 ("/v1/projects", b'{"name": "', "application/json")):
            req = c.build_request("POST", url, content=_chunks(body, limit), headers={"content-type": ctype})
            assert "content-length" not in req.headers and req.headers["transfer-encoding"] == "chunked"
            e = _err(c.send(req), 413, "too_large")
            assert "MiB" in e["expected"]
        # a UI form post gets a page, not JSON
        req = c.build_request("POST", "/projects", content=_chunks(b"name=", limit),
                              headers={"content-type": "application/x-www-form-urlencoded", "accept": "text/html"})
        r = c.send(req)
        assert r.status_code == 413 and r.headers["content-type"].startswith("text/html") and "too large" in r.text
        # under the limit, chunked still works
        small = sample_test_set(40)
        body = head.replace(b'toxicity\r\n', b'toxicity\r\n--bnd\r\nContent-Disposition: form-data; '
                                              b'name="label_map"\r\n\r\n' + json.dumps(BINARY_MAP).encode() + b'\r\n')
        req = c.build_request("POST", "/v1/projects/demo/datasets", content=iter([body, small, b"\r\n--bnd--\r\n"]),
                              headers={"content-type": f"multipart/form-data; boundary={b}"})
        assert "content-length" not in req.headers
        r = c.send(req)
        assert r.status_code == 201, r.text
        assert [d["rows"] for d in c.get("/v1/projects/demo/datasets").json()] == [40]


def test_taken_metric_name_does_not_reveal_its_project(reg):
    """Registering a name another project holds answered 409 naming that project's id."""
    reg.metrics.register(finished_run(reg, "beta"), "tox-one")
    reg.metrics.register(finished_run(reg, "gamma"), "tox-two")
    beta, gamma = reg.projects.get("beta").id, reg.projects.get("gamma").id
    run_a = finished_run(reg, "alpha")
    h = {"Authorization": f"Bearer {reg.keys.create('a', project='alpha', role='editor').key}"}
    with TestClient(create_app(reg, auth=True), raise_server_exceptions=False) as c:
        errors = []
        for name in ("tox-one", "tox-two"):
            r = c.post(f"/v1/runs/{run_a}/register", json={"name": name}, headers=h)
            e = _err(r, 409, "name_taken")
            assert beta not in r.text and gamma not in r.text and "beta" not in r.text and "gamma" not in r.text
            assert e["fix"] == "the name is not available; pick another"
            errors.append(json.dumps(e).replace(name, "NAME"))
        assert errors[0] == errors[1]  # the same answer whichever project holds the name
        assert c.post(f"/v1/runs/{run_a}/register", json={"name": "mine"}, headers=h).status_code == 201


def test_run_config_shows_server_providers_by_name_only(reg, monkeypatch, tmp_path):
    """A run's config, as returned to every viewer, showed the operator's provider base_url and
    key variable after the server resolved the name."""
    from _registry_util import fake_worker

    url, env = "http://10.1.2.3:8080/v1", "OPERATOR_SECRET_KEY"
    sp = ServerProviders({"teacher": {"model": "corp/judge-1", "base_url": url, "api_key_env": env},
                          "writer": {"model": "corp/gen-1", "base_url": url, "api_key_env": env}})
    viewer = {"Authorization": f"Bearer {reg.keys.create('v', project='demo', role='viewer').key}"}
    editor = {"Authorization": f"Bearer {reg.keys.create('e', project='demo', role='editor').key}"}
    with TestClient(create_app(reg, auth=True, providers=sp), raise_server_exceptions=False) as c:
        test_ds = c.post("/v1/projects/demo/datasets", data={"metric": "toxicity", "label_map": json.dumps(BINARY_MAP)},
                         files={"file": ("t.jsonl", sample_test_set(60))}, headers=editor).json()["id"]
        cfg = {"metric": "toxicity", "data": {"test_set": f"dataset:{test_ds}"}, "report": {"bootstrap": 0},
               "judge": {"model": "teacher", "temperature": 0}, "generate": "writer"}
        r = c.post("/v1/runs", json={"project": "demo", "config": cfg}, headers=editor)
        assert r.status_code == 201, r.text
        run_id = r.json()["id"]
        pages = [r, c.get(f"/v1/runs/{run_id}", headers=viewer), c.get("/v1/runs", headers=viewer),
                 c.get(f"/runs/{run_id}", headers=viewer)]
        for page in pages:
            assert page.status_code in (200, 201), page.text
            assert url not in page.text and "10.1.2.3" not in page.text and env not in page.text
            assert "base_url" not in page.text and "api_key_env" not in page.text
        shown = pages[1].json()["config"]
        assert shown["judge"]["model"] == "teacher" and shown["judge"]["temperature"] == 0
        assert shown["generate"]["model"] == "writer" and "server_providers" not in shown
        assert "teacher" in pages[3].text
        # resubmitting what a viewer sees works (names resolve again)
        assert c.post("/v1/runs", json={"project": "demo", "config": shown}, headers=editor).status_code == 201
    # the worker still runs the operator's resolved settings
    seen = []

    def capture(config, **kw):
        seen.append((config.judge.model, config.judge.base_url, config.judge.api_key_env, config.generate.base_url))
        from assay.testing import mock_train

        return mock_train(config, **kw)

    w = fake_worker(reg)
    w.executor.train_fn = capture
    out = w.execute(reg.runs.claim(w.worker_id, run_id=run_id))
    assert out.status.value == "fine_tuned", out.failure_reason
    assert seen == [("corp/judge-1", url, env, url)]


def test_api_callers_never_name_server_files(tmp_path, monkeypatch):
    """On a loopback bind without --auth, `assay serve` let API callers give absolute server
    paths for data.test_set / train_set and the metric file (and a preset name was a path)."""
    import yaml

    secret = tmp_path / "secret.jsonl"
    secret.write_bytes(sample_test_set(60))
    metric_file = tmp_path / "m.yaml"
    metric_file.write_text(yaml.safe_dump({"name": "m", "prompt": "Is it rude? {input}"}))
    evil = tmp_path / "evil.yaml"
    evil.write_text(yaml.safe_dump({"name": "evil", "prompt": "leaked {input}"}))
    apps = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: apps.append(app))
    db = f"sqlite:///{tmp_path / 'assay.db'}"
    r = CliRunner().invoke(cli, ["serve", "--host", "127.0.0.1", "--db", db, "--workers", "0",
                                 "--artifacts", str(tmp_path / "art")])
    assert r.exit_code == 0, r.output
    app = apps[0]
    assert app.state.auth is False  # loopback without --auth: the local-user setting
    reg = app.state.registry
    reg.projects.create("demo")
    reg.allow_local_paths = True  # even a registry opened for a local user refuses them behind a server
    with TestClient(app, raise_server_exceptions=False) as c:
        ds = c.post("/v1/projects/demo/datasets", data={"metric": "toxicity", "label_map": json.dumps(BINARY_MAP)},
                    files={"file": ("t.jsonl", sample_test_set(60))}).json()["id"]
        ok = {"metric": "toxicity", "data": {"test_set": f"dataset:{ds}"}}
        attacks = [{"data": {"test_set": "/etc/passwd"}}, {"data": {"test_set": str(secret)}},
                   {"data": {"test_set": f"dataset:{ds}", "train_set": str(secret)}},
                   {"metric": str(metric_file)}, {"metric": "/etc/passwd"},
                   {"metric": {"preset": str(evil.with_suffix(""))}},
                   {"metric": {"preset": "../" * 12 + str(evil.with_suffix(""))[1:]}},
                   {"metric": {"preset": ["toxicity"]}}]
        for attack in attacks:
            r = c.post("/v1/runs", json={"project": "demo", "config": {**ok, **attack}})
            assert 400 <= r.status_code < 500, (attack, r.text)
            _err(r, r.status_code)
            assert "leaked" not in r.text
        assert c.get("/v1/runs").json() == []
        assert c.post("/v1/runs", json={"project": "demo", "config": ok}).status_code == 201
        r = c.post("/v1/projects/demo/datasets", data={"metric": json.dumps({"preset": str(evil.with_suffix(""))})},
                   files={"file": ("t.jsonl", b'{"input": "a", "label": "true"}\n')})
        assert 400 <= r.status_code < 500 and "leaked" not in r.text
    reg.close()


# --- 6. generation that yields nothing, end to end; upload memory through HTTP -----------------
def test_zero_usable_generated_rows_fail_the_run_with_counts(reg):
    """A worker run whose generator answers but whose rows are all unusable (the judge refuses
    every one) ends Failed with the reason and the counts, visible through the API."""
    from assay.registry import LocalExecutor, Status, Worker

    with TestClient(create_app(reg), raise_server_exceptions=False) as c:
        ds = c.post("/v1/projects/demo/datasets", data={"metric": "toxicity", "label_map": json.dumps(BINARY_MAP)},
                    files={"file": ("t.jsonl", sample_test_set(60))}).json()["id"]
        cfg = {"metric": "toxicity", "data": {"test_set": f"dataset:{ds}"},
               "generate": {"model": "mock/gen", "target_size": 10, "max_rounds": 1, "cache": False},
               "judge": {"model": "mock/judge", "options": {"refuse_rate": 1.0}, "cache": False}}
        run_id = c.post("/v1/runs", json={"project": "demo", "config": cfg}).json()["id"]
        out = Worker(reg, LocalExecutor(), heartbeat_interval=0.2, stale_after=30).run_once()  # the real train()
        assert out.id == run_id and out.status == Status.failed
        got = c.get(f"/v1/runs/{run_id}").json()
    assert [h["status"] for h in got["history"]] == ["queued", "generating_data", "failed"]
    reason = got["failure_reason"]
    assert "0 usable rows of" in reason and "generator calls" in reason and "rows parsed" in reason
    assert "judge_unparseable" in reason  # why the parsed rows were dropped, with their count
    report = json.loads((Path(reg.storage.root) / "runs" / run_id / "data" / "data_report.json").read_text())
    assert report["cost"]["requests"] > 0


@pytest.mark.slow
def test_24mb_csv_upload_memory_through_http(reg, tmp_path):
    """Peak Python memory of a 24 MB CSV upload through POST /v1/projects/{p}/datasets (the body
    streamed in 64 KiB chunks, as a network client sends it) stays under 5x the file size."""
    import asyncio
    import tracemalloc

    import httpx

    path, n_rows = _big_csv(tmp_path / "big.csv")
    size = path.stat().st_size
    app = create_app(reg)

    async def upload():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            with path.open("rb") as fh:
                return await client.post("/v1/projects/demo/datasets", files={"file": ("big.csv", fh)},
                                         data={"metric": "toxicity", "columns": json.dumps({"input": "text"})})

    tracemalloc.start()
    r = asyncio.run(upload())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert r.status_code == 201, r.text
    assert r.json()["rows"] == n_rows and r.json()["size_bytes"] == size
    print(f"24 MB CSV over HTTP: {size / 2**20:.1f} MiB file, peak traced memory {peak / 2**20:.1f} MiB "
          f"({peak / size:.1f}x)")
    assert peak < 5 * size


def _big_csv(path, mb: int = 24):
    """A CSV of logged chat messages of about ``mb`` MB (text, label); (path, data rows)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["text", "label"])
    i = 0
    while buf.tell() < mb * 2**20:
        w.writerow([f"message number {i}: " + "some words of a logged chat message " * 5, "true" if i % 3 else "false"])
        i += 1
    path.write_text(buf.getvalue())
    return path, i

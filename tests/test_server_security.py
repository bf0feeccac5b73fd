"""Issue 8: the server under attack and faults. Each test first reproduces the attack or fault of a
numbered finding, then checks the server refuses it: secrets stay home (1), an empty host is public
(2), keys are scoped to projects with roles (3), a registered artifact is verified (5), scoring runs
on one thread (6), hostile input gets a 4xx in the standard error shape (7)."""

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
    reg.register(run_a, "tox")
    run_b = finished_run(reg, "beta")
    reg.register(run_b, "beta-metric")
    op = reg.create_api_key("ops").key
    keys = {role: reg.create_api_key(role, project="alpha", role=role).key for role in
            ("admin", "editor", "scorer", "viewer")}
    h = {role: {"Authorization": f"Bearer {k}"} for role, k in {**keys, "op": op}.items()}
    beta = reg.get_project("beta").id
    ds_b = reg.list_datasets("beta")[0].id
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
    assert json.loads(r.output)["projects"] == {reg.get_project("alpha").id: "viewer", beta: "editor"}


# --- 5. artifact hash ---------------------------------------------------------------------------
def test_edited_artifact_refuses_to_score(tmp_path):
    db = f"sqlite:///{tmp_path / 'assay.db'}"
    reg = make_registry(db, tmp_path)
    m = reg.register(finished_run(reg), "tox")
    info_path = Path(m.artifact_location) / "evaluator.json"
    info = json.loads(info_path.read_text())
    info["log_prior"] = {k: (0.0 if k == "true" else -50.0) for k in info["log_prior"]}  # flips every verdict
    info_path.write_text(json.dumps(info))
    reg.close()
    fresh = make_registry(db, tmp_path)  # a restarted server loads the version again
    with TestClient(create_app(fresh), raise_server_exceptions=False) as c:
        e = _err(c.post("/v1/metrics/tox/score", json={"rows": ["have a nice day"]}), 409, "artifact_modified")
        assert "evaluator.json" in e["found"] and "tox-v1" in e["expected"]
    info_path.unlink()
    with pytest.raises(Exception) as exc:
        fresh.verify_artifact(fresh.get_metric("tox"))
    assert "evaluator.json missing" in str(exc.value)
    fresh.close()


# --- 6. scoring runs on one thread --------------------------------------------------------------
def test_batched_scoring_uses_one_thread(reg):
    import asyncio

    import httpx

    reg.register(finished_run(reg), "tox")
    threads = set()
    original = reg.score_rows

    def spy(version, rows):
        threads.add(threading.current_thread().name)
        return original(version, rows)

    reg.score_rows = spy
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
    r.create_project("demo")
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
    import csv
    import io
    import tracemalloc

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["text", "label"])
    i = 0
    while buf.tell() < 24 * 2**20:
        w.writerow([f"message number {i}: " + "some words of a logged chat message " * 5, "true" if i % 3 else "false"])
        i += 1
    path = tmp_path / "upload"
    path.write_text(buf.getvalue())
    del buf
    size = path.stat().st_size
    tracemalloc.start()
    ds = reg.add_dataset("demo", path, "big.csv", metric="toxicity", columns={"input": "text"})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert ds.rows == i and ds.size_bytes == size
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

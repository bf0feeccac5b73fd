"""Issue 23: no request takes the server down, no 500. Each test first makes the request that took the
server down or answered 500 (probed against a real `assay serve`), then checks the answer is a 4xx or
503 in the one error shape: bounded text and bodies (a 16 MiB row, memory measured), lone surrogates
in every kind of string field, unknown config keys, bad YAML, deep JSON, huge ids, the database
down, 100,000-column files, and errors and health that show callers nothing of the server's
settings or of other projects."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import tracemalloc

import httpx
import psycopg
import pytest
from _registry_util import BINARY_MAP, finished_run, make_registry, run_config, sample_test_set
from _registry_util import error_of as _err
from fastapi.testclient import TestClient

from assay.errors import AssayError
from assay.providers import ServerProviders
from assay.server import create_app
from assay.server._limits import Limits, check_json

SURROGATE = '"\\ud800"'  # a lone surrogate, as the JSON escape a client sends


def _post_raw(c, url: str, body: str, headers: dict | None = None):
    return c.post(url, content=body.encode(), headers={"content-type": "application/json", **(headers or {})})


def _upload(c, content: bytes = b'{"input": "a", "label": "true"}\n', name: str = "t.jsonl", **fields):
    return c.post("/v1/projects/demo/datasets", data={"metric": "toxicity", **fields}, files={"file": (name, content)})


@pytest.fixture
def scored(reg):
    """The registry with a registered metric 'tox' (mock evaluator) and a test set of 'demo'."""
    reg.metrics.register(finished_run(reg), "tox")
    return reg


# --- lone surrogates ------------------------------------------------------------------------------
def test_lone_surrogate_in_each_string_field_is_422_naming_it(scored):
    """Each of these answered 500 (UnicodeEncodeError at the database or the response) and dropped
    the connection."""
    ds = scored.datasets.list("demo")[0].id
    run_cfg = f'{{"metric": "toxicity", "data": {{"test_set": "dataset:{ds}"}}}}'
    cases = [("/v1/projects", f'{{"name": {SURROGATE}}}', "name"),
             ("/v1/projects", f'{{"name": "ok", "description": "a\\udfffb"}}', "description"),
             ("/v1/runs", f'{{"project": "demo", "name": {SURROGATE}, "config": {run_cfg}}}', "name"),
             ("/v1/metrics/tox/score", f'{{"rows": ["fine", {SURROGATE}]}}', "rows[1]"),
             ("/v1/metrics/tox/score", f'{{"rows": [{{"input": "x", "output": {SURROGATE}}}]}}', "rows[0].output"),
             ("/v1/guard", f'{{"metrics": ["tox"], "input": {SURROGATE}}}', "input"),
             ("/v1/guard", f'{{"metrics": ["tox"], "row": {{{SURROGATE}: "x"}}}}', "row.")]
    with TestClient(create_app(scored)) as c:  # raise_server_exceptions on: nothing reaches Starlette's last handler
        runs_before = len(scored.runs.list())
        for url, body, field in cases:
            e = _err(_post_raw(c, url, body), 422, "invalid_unicode")
            assert e["expected"].startswith(f"valid Unicode text in {field}"), (url, e)
        e = _err(_upload(c, columns='{"input": "\\ud800"}'), 422, "invalid_unicode")
        assert "columns.input" in e["expected"]
        _err(_upload(c, label_map='{"\\ud800": "true"}'), 422, "invalid_unicode")
        e = _err(_upload(c, b'{"input": "ok", "label": "true"}\n{"input": "a\\ud800", "label": "true"}\n'),
                 422, "invalid_encoding")
        assert "line 2" in e["found"]
        assert [p.name for p in scored.projects.list()] == ["demo"] and len(scored.runs.list()) == runs_before
        # a surrogate pair (an emoji) and an escaped backslash before "ud800" are fine
        r = _post_raw(c, "/v1/projects", '{"name": "emoji", "description": "\\ud83d\\ude00 and \\\\ud800"}')
        assert r.status_code == 201 and r.json()["description"] == "\U0001F600 and \\ud800"


# --- config keys, YAML, depth, huge ids ------------------------------------------------------------
def test_run_config_base_dir_and_non_string_keys_are_unknown_keys(scored):
    """A top-level base_dir (Config's internal field) was a TypeError (500), so was YAML's `1: x`."""
    ds = scored.datasets.list("demo")[0].id
    base = {"metric": "toxicity", "data": {"test_set": f"dataset:{ds}"}}
    with TestClient(create_app(scored)) as c:
        yaml_text = f"metric: toxicity\ndata: {{test_set: 'dataset:{ds}'}}\n1: x\n"
        for config, key in (({**base, "base_dir": "/etc"}, "base_dir"), (yaml_text, "1")):
            e = _err(c.post("/v1/runs", json={"project": "demo", "config": config}), 422, "invalid_config")
            assert e["found"] == f"an unknown key '{key}'"
        assert c.post("/v1/runs", json={"project": "demo", "config": base}).status_code == 201


def test_bad_yaml_in_an_uploads_metric_field(reg):
    """YAML that does not parse in the metric form field was a ParserError (500); deep YAML a RecursionError."""
    with TestClient(create_app(reg)) as c:
        e = _err(_upload(c, metric="name: x\nprompt: [unclosed\n"), 422, "invalid_metric")
        assert e["found"].startswith("text that does not parse at line ") and "ParserError" in e["found"]
        _err(_upload(c, metric="[" * 5000 + "\n"), 422, "invalid_metric")
        assert c.get("/v1/projects/demo/datasets").json() == []


def test_50000_deep_json_is_refused_in_bodies_and_form_fields(scored):
    deep = "[" * 50_000 + "]" * 50_000
    with TestClient(create_app(scored)) as c:
        for url, body in (("/v1/runs", f'{{"project": "demo", "config": {deep}}}'),
                          ("/v1/metrics/tox/score", f'{{"rows": [{{"input": {deep}}}]}}'),
                          ("/v1/projects", deep)):
            e = _err(_post_raw(c, url, body), 422, "invalid_json")
            assert "64 levels" in e["expected"]
        for field in ("columns", "label_map"):  # RecursionError (500) before
            e = _err(_upload(c, **{field: deep}), 422, "invalid_json")
            assert e["expected"].startswith(field)
            _err(_upload(c, **{field: '{"a": ' + "[" * 70 + "]" * 70 + "}"}), 422, "invalid_json")
    limits = Limits()
    check_json(("[" * 64 + "]" * 64).encode(), limits)  # the limit itself passes
    with pytest.raises(AssayError):
        check_json(("[" * 65 + "]" * 65).encode(), limits)
    check_json(b'{"brackets in text": "' + b"[" * 500 + b'"}', limits)  # inside a string: not nesting


def test_huge_integer_ids_are_404_or_422(reg):
    """The UI's review form took any integer as a verdict id: SQLite's OverflowError answered 500."""
    huge = "9" * 40
    with TestClient(create_app(reg)) as c:
        r = c.post(f"/monitor/review/{huge}", data={"label": "true"})
        assert r.status_code == 404 and "no verdict" in r.text
        assert c.post("/monitor/review/0", data={"label": "true"}).status_code == 404
        _err(c.post(f"/v1/verdicts/{huge}/review", json={"label": "true"}), 422, "invalid_request")
        _err(c.get("/v1/runs/r/logs", params={"after": huge}), 422, "invalid_request")


# --- the database down -----------------------------------------------------------------------------
def _take_database_away(reg, url: str, tmp_path):
    """Make the registry's database (at ``url``) unreachable: the SQLite file replaced by a folder, or the
    PostgreSQL database dropped (its connections cut). Returns how to bring it back (None: not possible)."""
    reg.core.engine.dispose()
    if reg.dialect == "sqlite":
        db = tmp_path / "assay.db"
        away = tmp_path / "away"
        away.mkdir()
        for f in tmp_path.glob("assay.db*"):
            f.rename(away / f.name)
        db.mkdir()

        def back():
            db.rmdir()
            for f in away.iterdir():
                f.rename(tmp_path / f.name)
        return back
    server, name = url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
    return None


def test_database_down_is_503_with_retry_after(registry_db, tmp_path):
    """Every endpoint answered 500 (and dropped the connection) while the database was down, health too."""
    db_reg = make_registry(registry_db, tmp_path)
    db_reg.projects.create("demo")
    try:
        _check_database_down(db_reg, registry_db, tmp_path)
    finally:
        db_reg.close()


def _check_database_down(db_reg, url: str, tmp_path) -> None:
    op = {"Authorization": f"Bearer {db_reg.keys.create('ops').key}"}
    app_open, app_auth = create_app(db_reg), create_app(db_reg, auth=True)
    with TestClient(app_open) as c, TestClient(app_auth) as ca:  # Starlette would raise what reaches its last handler
        assert c.get("/v1/health").status_code == 200 and ca.get("/v1/projects", headers=op).status_code == 200
        bring_back = _take_database_away(db_reg, url, tmp_path)
        ca.app.state.keys._ok.clear()  # the key is looked up again: the lookup itself meets the database
        for r in (c.get("/v1/health"), c.get("/v1/projects"), c.post("/v1/projects", json={"name": "x"}),
                  c.get("/v1/runs"), ca.get("/v1/health"), ca.get("/v1/projects", headers=op)):
            e = _err(r, 503, "database_unavailable")
            assert r.headers["retry-after"].isdigit()
            assert e["found"].startswith("database unavailable") and db_reg.url not in r.text
        if bring_back is not None:
            bring_back()
            assert c.get("/v1/health").json()["status"] == "ok"
            assert [p["name"] for p in c.get("/v1/projects").json()] == ["demo"]


def test_a_database_error_class_from_any_layer_is_503(reg, monkeypatch):
    """The raw drivers' errors (sqlite3, psycopg) answer 503 like SQLAlchemy's; anything else stays 500."""
    with TestClient(create_app(reg)) as c:
        for exc in (sqlite3.OperationalError("database is locked"), psycopg.OperationalError("server closed")):
            def fail(*a, _exc=exc, **k):
                raise _exc

            monkeypatch.setattr(reg.projects, "list", fail)
            _err(c.get("/v1/projects"), 503, "database_unavailable")

        def boom(*a, **k):
            raise RuntimeError("a bug")

        monkeypatch.setattr(reg.projects, "list", boom)
        e = _err(c.get("/v1/projects"), 500, "internal_error")  # returned, not raised into the client
        assert "a bug" not in e["message"]


# --- bounded text and bodies -------------------------------------------------------------------------
def _status_kib(key: str) -> int:
    """A line of /proc/self/status in KiB (VmRSS: now; VmHWM: the peak since the last reset)."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key + ":"))


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # Linux: VmHWM starts again from VmRSS
        return True
    except OSError:
        return False


def test_a_16mib_row_is_413_before_scoring_with_bounded_memory(scored):
    """Two requests with a ~450 MiB row each OOM-killed the server; a 16 MiB row cost +4.7 GB on a TF-IDF
    evaluator. Now the row is refused with 413 before anything scores it; the request's peak Python
    memory (tracemalloc, the whole app in process) stays within a few times the body, and so does the
    process's peak RSS (where Linux lets the test reset it)."""
    calls = []
    original = scored.metrics.score_rows
    scored.metrics.score_rows = lambda version, rows: calls.append(len(rows)) or original(version, rows)
    app = create_app(scored)
    row = "word " * (16 * 2**20 // 5)
    body = json.dumps({"rows": [{"input": row}]}).encode()

    async def send():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
            ok = await client.post("/v1/metrics/tox/score", json={"rows": ["warm up: load the evaluator"]})
            assert ok.status_code == 200 and calls == [1]
            rss = _status_kib("VmRSS") if _reset_peak_rss() else None
            tracemalloc.start()
            start = time.perf_counter()
            r = await client.post("/v1/metrics/tox/score", content=body, headers={"content-type": "application/json"})
            took = time.perf_counter() - start
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            return r, peak, took, (_status_kib("VmHWM") - rss) * 1024 if rss is not None else None

    r, peak, took, rss_growth = asyncio.run(send())
    e = _err(r, 413, "too_large")
    assert e["found"].startswith("rows[0].input: 16,777,21") and "1,000,000 characters" in e["expected"]
    assert calls == [1]  # the big row never reached the evaluator
    grew = "not measurable here" if rss_growth is None else f"+{rss_growth / 2**20:.0f} MiB"
    print(f"16 MiB row: 413 in {took:.2f} s, peak traced memory {peak / 2**20:.0f} MiB, peak RSS {grew} for a "
          f"{len(body) / 2**20:.0f} MiB body (a TF-IDF evaluator scoring it took +4.7 GB)")
    assert peak < 4 * len(body)
    assert rss_growth is None or rss_growth < 8 * len(body)


def test_text_and_body_limits_are_configurable(scored, monkeypatch):
    monkeypatch.setenv("ASSAY_MAX_TEXT_CHARS", "100")
    monkeypatch.setenv("ASSAY_MAX_REQUEST_CHARS", "250")
    monkeypatch.setenv("ASSAY_MAX_JSON_BYTES", "4096")
    with TestClient(create_app(scored)) as c:
        assert c.post("/v1/metrics/tox/score", json={"rows": ["x" * 100, "y" * 100]}).status_code == 200
        e = _err(c.post("/v1/metrics/tox/score", json={"rows": [{"input": "x" * 101}]}), 413, "too_large")
        assert e["found"] == "rows[0].input: 101 characters"
        e = _err(c.post("/v1/metrics/tox/score", json={"rows": ["x" * 90] * 3}), 413, "too_large")
        assert "250 characters of text in one request" in e["expected"]
        e = _err(c.post("/v1/metrics/tox/score", json={"rows": ["x"] * 2000}), 413, "too_large")  # > 4096 bytes
        assert "a JSON or form body of at most" in e["expected"]
        chunked = c.build_request("POST", "/v1/projects", content=iter([b'{"name": "', b"x" * 5000, b'"}']),
                                  headers={"content-type": "application/json"})
        assert "content-length" not in chunked.headers
        _err(c.send(chunked), 413, "too_large")
        page = c.post("/projects", data={"name": "x" * 5000}, headers={"accept": "text/html"})  # a UI form post
        assert page.status_code == 413 and page.headers["content-type"].startswith("text/html")
    assert create_app(scored, limits=Limits(text_chars=5)).state.limits.text_chars == 5
    monkeypatch.setenv("ASSAY_MAX_TEXT_CHARS", "lots")
    with pytest.raises(AssayError) as exc:
        create_app(scored)
    assert "ASSAY_MAX_TEXT_CHARS" in str(exc.value)


def test_a_100k_column_csv_is_refused_fast_with_a_short_error(reg, monkeypatch):
    """A 1.1 MB CSV with 100,000 columns cost 54 s of CPU and answered a 1.9 MB error listing them."""
    import assay.registry._ingest as ingest

    built = []
    monkeypatch.setattr(ingest, "to_rows", lambda *a, **k: built.append(1) or [])
    header = ",".join(f"column_{i}" for i in range(100_000))
    csv = (header + "\n" + ",".join("x" for _ in range(100_000)) + "\n").encode()
    with TestClient(create_app(reg)) as c:
        cpu = time.process_time()
        r = c.post("/v1/projects/demo/datasets", data={"metric": "toxicity"}, files={"file": ("wide.csv", csv)})
        cpu = time.process_time() - cpu
        e = _err(r, 413, "too_large")
    assert "100,000 columns in wide.csv" in e["found"] and "2,000 columns" in e["expected"]
    assert len(r.content) < 1000 and not built  # refused at the header, before any row is built
    print(f"100,000 columns ({len(csv) / 2**20:.1f} MiB): refused in {cpu:.2f} s of CPU, {len(r.content)} byte error")
    assert cpu < 10


# --- what callers may see -----------------------------------------------------------------------------
def test_health_shows_other_projects_nothing(reg):
    """/v1/health listed every worker with its run id to any key, and the worker processes' pids to anyone."""
    run_b = finished_run(reg, "beta")
    reg.runs.worker_seen("worker-b", run_id=run_b)
    viewer = {"Authorization": f"Bearer {reg.keys.create('v', project='demo', role='viewer').key}"}
    op = {"Authorization": f"Bearer {reg.keys.create('ops').key}"}

    class Sup:
        def status(self):
            return {"processes": [{"pid": 4242, "alive": True, "restarts": 0}], "stale_after_s": 60}

    with TestClient(create_app(reg, auth=True, supervisor=Sup())) as c:
        for headers in (viewer, {}):
            r = c.get("/v1/health", headers=headers)
            assert r.status_code == 200 and run_b not in r.text and "worker-b" not in r.text and "4242" not in r.text
            h = r.json()
            assert h["workers"]["alive"] >= 1 and "list" not in h["workers"] and "artifacts" not in h
            assert h["supervisor"] == {"processes": 1, "alive": 1}
        full = c.get("/v1/health", headers=op).json()
        assert [w["run_id"] for w in full["workers"]["list"]] == [run_b] and full["supervisor"]["processes"][0]["pid"]


def test_errors_never_echo_the_servers_provider_settings(reg, monkeypatch):
    """A bad judge field on POST /v1/datasets/{id}/label answered with the resolved provider config: the
    operator's base URL and key variable, to an editor."""
    url, env = "http://10.9.8.7:8080/v1", "OPERATOR_SECRET_KEY"
    sp = ServerProviders({"teacher": {"model": "corp/judge-1", "base_url": url, "api_key_env": env}})
    editor = {"Authorization": f"Bearer {reg.keys.create('e', project='demo', role='editor').key}"}
    op = {"Authorization": f"Bearer {reg.keys.create('ops').key}"}
    with TestClient(create_app(reg, auth=True, providers=sp)) as c:
        ds = c.post("/v1/projects/demo/datasets", data={"metric": "toxicity", "label_map": json.dumps(BINARY_MAP)},
                    files={"file": ("t.jsonl", sample_test_set(40))}, headers=editor).json()["id"]
        for judge in ({"model": "teacher", "temperature": "hot"}, {"model": "teacher", "max_retries": -1},
                      {"model": "teacher", "concurrency": "x", "timeout": []}):
            r = c.post(f"/v1/datasets/{ds}/label", json={"judge": judge}, headers=editor)
            e = _err(r, 422, "invalid_config")
            assert e["found"].startswith("judge.")
            assert url not in r.text and env not in r.text and "10.9.8.7" not in r.text
        # any other error naming a server setting is masked for callers other than the operator

        def leak(*a, **k):
            raise AssayError("a reachable judge", f"no answer from {url} (key ${env})", "retry", code="judge_failed")

        monkeypatch.setattr(reg.datasets, "label", leak)
        r = c.post(f"/v1/datasets/{ds}/label", json={"judge": "teacher"}, headers=editor)
        assert r.status_code == 400 and url not in r.text and env not in r.text
        assert "<the server's base_url>" in r.json()["error"]["found"]
        assert url in c.post(f"/v1/datasets/{ds}/label", json={"judge": "teacher"}, headers=op).text
        # a judge tuning's error, read back by the project
        reg.tunings.save({"id": "tune-x", "project_id": reg.projects.get("demo").id, "metric": "tox-v1",
                          "dataset_id": ds, "provider": "teacher", "rows": 1, "status": "failed", "created_at": 1.0,
                          "error": {"code": "judge_failed", "message": url, "expected": "-", "found": env, "fix": "-"}},
                         "api-old")
        job = c.get("/v1/judge-tunings/tune-x", headers=editor)
        assert job.status_code == 200 and url not in job.text and env not in job.text
        assert url in c.get("/v1/judge-tunings/tune-x", headers=op).text


def test_storage_paths_are_relative_to_the_artifact_root_for_project_keys(scored):
    """Every reader saw the server's absolute artifact and dataset paths (a reaped run's reason too)."""
    root = scored.storage.root
    ds = scored.datasets.list("demo")[0].id
    lost = scored.runs.create("demo", run_config(ds))
    scored.runs.claim("w-gone", pid=2**22 + 4321, run_id=lost.id)  # a process that does not exist: reaped
    assert scored.runs.recover_stale() == [lost.id] and root in scored.runs.get(lost.id).failure_reason
    viewer = {"Authorization": f"Bearer {scored.keys.create('v', project='demo', role='viewer').key}"}
    op = {"Authorization": f"Bearer {scored.keys.create('ops').key}"}
    with TestClient(create_app(scored, auth=True)) as c:
        pages = [c.get(url, headers=viewer) for url in ("/v1/metrics", "/v1/metrics/tox", "/v1/runs",
                                                        "/v1/projects/demo/datasets", f"/v1/runs/{lost.id}",
                                                        f"/v1/runs/{lost.id}/logs")]
        for page in pages:
            assert page.status_code == 200 and root not in page.text, page.text[:300]
        full = c.get("/v1/metrics/tox", headers=op).json()["artifact_location"]
        assert full.startswith(root + "/")  # the operator sees where it is
        m = pages[1].json()
        assert m["artifact_location"] == full[len(root) + 1:] == m["versions"][0]["artifact_location"]
        ds = pages[3].json()[0]
        assert not ds["location"].startswith("/") and ds["location"].endswith("rows.jsonl")
        assert f"kept at runs/{lost.id}" in pages[4].json()["failure_reason"]

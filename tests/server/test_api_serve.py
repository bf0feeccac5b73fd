"""The SDK client against a live HTTP server, the `assay serve` bind/auth rules, and the CLI
verbs (runs list/show/create/cancel, register, keys)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from _registry_util import BINARY_MAP, EXAMPLES, fake_worker, finished_run, make_registry
from click.testing import CliRunner

from assay.cli import cli
from assay.client import Client, ClientError
from assay.server import create_app


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, app):
        import uvicorn

        self.port = _port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _config_file(tmp_path: Path) -> Path:
    """A config like a user writes for the CLI: relative paths, column and label mapping."""
    rows = (EXAMPLES / "test_set.jsonl").read_text().splitlines()[:120]
    with (tmp_path / "test.csv").open("w") as fh:
        import csv

        w = csv.writer(fh)
        w.writerow(["text", "klass"])
        for line in rows:
            r = json.loads(line)
            w.writerow([r["input"], r["label"]])
    train = (EXAMPLES / "train_set.jsonl").read_text().splitlines()[:200]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps({"text": json.loads(x)["input"],
                                                                  "klass": json.loads(x)["label"]}) for x in train))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "metric: toxicity\n"
        "data:\n  test_set: test.csv\n  train_set: train.jsonl\n"
        "  columns: {input: text, label: klass}\n"
        f"  label_map: {json.dumps(BINARY_MAP)}\n"
        "report: {bootstrap: 0, baselines: false}\n"
        "output: ignored-by-the-server\n")
    return cfg


def test_sdk_against_live_server(tmp_path):
    reg = make_registry(f"sqlite:///{tmp_path / 'assay.db'}", tmp_path)
    worker = fake_worker(reg)
    worker.poll_interval = 0.1
    wt = threading.Thread(target=worker.run, daemon=True)
    with LiveServer(create_app(reg)) as url:
        wt.start()
        try:
            c = Client(url)
            assert c.health()["status"] == "ok"
            run = c.create_run("demo", _config_file(tmp_path), name="from-yaml")
            assert run["status"] in ("queued", "data_ready", "training") and run["name"] == "from-yaml"
            assert run["config"]["data"]["test_set"].startswith("dataset:")
            datasets = c.list_datasets("demo")
            assert sorted(d["kind"] for d in datasets) == ["test", "train"]
            assert next(d for d in datasets if d["kind"] == "test")["columns"] == {"input": "text", "label": "klass"}
            done = c.wait(run["id"], timeout=120, poll=0.2)
            assert done["status"] == "fine_tuned", done
            assert c.run_report(run["id"])["n"] > 0 and "<html" in c.run_report(run["id"], "html").lower()
            assert any(e["kind"] == "stage" for e in c.run_logs(run["id"]))
            m = c.register(run["id"], "tox")
            assert m["full_name"] == "tox-v1" and c.get_metric("tox")["version"] == 1
            assert [x["name"] for x in c.list_metrics()] == ["tox"]
            out = c.score("tox", ["you are a moron", {"input": "lovely weather"}])
            assert [set(r) >= {"label", "score", "confidence", "probabilities"} for r in out] == [True, True]
            with ThreadPoolExecutor(20) as pool:  # 20 parallel requests over real HTTP
                results = list(pool.map(lambda i: c.score("tox", [f"message {i}"]), range(20)))
            assert len(results) == 20 and all(len(r) == 1 for r in results)
            with pytest.raises(ClientError) as e:
                c.score("unknown", ["x"])
            assert e.value.status == 404 and e.value.code == "not_found"
            with pytest.raises(ClientError) as e:
                c.register(run["id"], "again")
            assert e.value.code == "already_registered" and "already registered" in str(e.value)
            q = c.create_run("demo", {"metric": "toxicity", "data": {"test_set": done["config"]["data"]["test_set"]},
                                      "report": {"bootstrap": 0, "baselines": False}})
            try:
                c.cancel_run(q["id"])
            except ClientError as exc:  # the worker may already have finished it
                assert exc.code == "invalid_status"
            assert c.wait(q["id"], timeout=60, poll=0.2)["status"] in ("cancelled", "fine_tuned")
            assert {r["id"] for r in c.list_runs("demo")} == {run["id"], q["id"]}
        finally:
            worker.stop()
            wt.join(timeout=30)


def test_sdk_auth(tmp_path):
    reg = make_registry(f"sqlite:///{tmp_path / 'assay.db'}", tmp_path)
    key = reg.keys.create("sdk").key
    with LiveServer(create_app(reg, auth=True)) as url:
        with pytest.raises(ClientError) as e:
            Client(url).list_projects()
        assert e.value.status == 401 and e.value.code == "unauthorized"
        assert Client(url, api_key=key).create_project("p")["name"] == "p"
    with pytest.raises(Exception) as e:
        Client(url, timeout=2).health()  # server stopped
    assert getattr(e.value, "code", "") == "unreachable"


def test_serve_refuses_public_bind_without_keys(tmp_path):
    db = f"sqlite:///{tmp_path / 'assay.db'}"
    r = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--db", db, "--workers", "0"])
    assert r.exit_code == 2
    assert "no API keys" in r.output and "assay keys create" in r.output
    r = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--no-auth", "--db", db, "--workers", "0"])
    assert r.exit_code == 2 and "--no-auth" in r.output


def test_cli_runs_register_keys(tmp_path):
    db = f"sqlite:///{tmp_path / 'assay.db'}"
    art = str(tmp_path / "artifacts")
    reg = make_registry(db, tmp_path)
    run_id = finished_run(reg)
    base = ["--db", db, "--artifacts", art]
    runner = CliRunner()
    r = runner.invoke(cli, ["runs", "list", *base, "--json"])
    assert r.exit_code == 0, r.output
    assert [x["id"] for x in json.loads(r.output)] == [run_id]
    r = runner.invoke(cli, ["runs", "show", run_id, *base, "--logs"])
    assert r.exit_code == 0 and "Fine-tuned" in r.output and "log:" in r.output
    r = runner.invoke(cli, ["register", run_id, "tox", *base, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["full_name"] == "tox-v1"
    r = runner.invoke(cli, ["register", run_id, "tox", *base])
    assert r.exit_code == 2 and r.output.startswith("error: expected a run not registered yet")
    r = runner.invoke(cli, ["runs", "create", str(_config_file(tmp_path)), "--project", "demo", *base, "--json"])
    assert r.exit_code == 0, r.output
    queued = json.loads(r.output)
    assert queued["status"] == "queued"
    r = runner.invoke(cli, ["runs", "cancel", queued["id"], *base])
    assert r.exit_code == 0 and "Cancelled" in r.output
    r = runner.invoke(cli, ["runs", "show", "run_nope", *base, "--json"])
    assert r.exit_code == 2 and "no run 'run_nope'" in r.output
    r = runner.invoke(cli, ["keys", "create", "ci", "--db", db, "--json"])
    key = json.loads(r.output)["key"]
    assert key.startswith("assay_") and reg.keys.check(key)
    r = runner.invoke(cli, ["keys", "list", "--db", db])
    assert "ci" in r.output and key not in r.output
    assert runner.invoke(cli, ["keys", "revoke", "ci", "--db", db]).exit_code == 0
    assert not reg.keys.check(key)


@pytest.mark.filterwarnings("ignore:no train_set and no generate")
def test_worker_cli_once(tmp_path):
    """`assay worker --once` drains the queue (a run whose data is bad fails with the reason)."""
    db = f"sqlite:///{tmp_path / 'assay.db'}"
    reg = make_registry(db, tmp_path)
    reg.projects.create("demo")
    ds = reg.datasets.add("demo", b'{"input": "a", "label": "true"}\n{"input": "b", "label": "false"}\n', "t.jsonl",
                          metric="toxicity")
    run = reg.runs.create("demo", {"metric": "toxicity", "data": {"test_set": f"dataset:{ds.id}"},
                                   "model": {"base": str(tmp_path / "no-such-model")}})
    r = CliRunner().invoke(cli, ["worker", "--once", "--db", db, "--artifacts", str(tmp_path / "artifacts")])
    assert r.exit_code == 0, r.output
    out = reg.runs.get(run.id)
    assert out.status.value == "failed" and out.failure_reason


@pytest.mark.slow
def test_assay_serve_process(tmp_path):
    """`assay serve` as a real process on a public bind: auth is forced on."""
    db = f"sqlite:///{tmp_path / 'assay.db'}"
    reg = make_registry(db, tmp_path)
    key = reg.keys.create("ops").key
    port = _port()
    env = {**os.environ, "ASSAY_HOME": str(tmp_path)}
    p = subprocess.Popen([sys.executable, "-c", "import sys; from assay.cli import main; sys.argv[0]='assay'; main()",
                          "serve", "--host", "0.0.0.0", "--port", str(port), "--db", db, "--workers", "1"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                h = Client(url, timeout=2).health()
                break
            except Exception:
                assert p.poll() is None and time.monotonic() < deadline, "assay serve did not start"
                time.sleep(0.3)
        assert h["auth"] is True
        with pytest.raises(ClientError) as e:
            Client(url).list_runs()
        assert e.value.status == 401
        assert Client(url, api_key=key).list_runs() == []
    finally:
        p.terminate()
        out, _ = p.communicate(timeout=60)
    assert "auth on" in out and "1 worker" in out

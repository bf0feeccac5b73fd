"""Host and Origin checks (assay.server._origin): a forged Host (DNS rebinding) is refused with 421,
a write from another origin with 403, both in the one error shape; API clients without Origin, the
UI's own pages and `--allowed-host` names pass. In Chromium: a page on another local port that
auto-submits a form to the server creates nothing, the UI's own form still does, and a name that
resolves to 127.0.0.1 (rebinding) gets no answer but the 421."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.request
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
from _browser_util import assay_serve, browser, free_port, launch_more  # noqa: F401  (the Chromium fixture)
from _registry_util import error_of, make_registry
from click.testing import CliRunner
from fastapi.testclient import TestClient

from assay.cli import cli
from assay.server import create_app
from assay.server._origin import bind_hosts, split_hosts

ME = "http://127.0.0.1:8000"


@pytest.fixture
def reg(tmp_path, monkeypatch):
    """A registry of mock evaluators, and no $ASSAY_ALLOWED_HOSTS (conftest lets TestClient's "testserver" in)."""
    monkeypatch.delenv("ASSAY_ALLOWED_HOSTS", raising=False)
    with closing(make_registry(f"sqlite:///{tmp_path / 'assay.db'}", tmp_path)) as r:
        yield r


def _names(c: TestClient) -> list[str]:
    return [p["name"] for p in c.get("/v1/projects").json()]


def test_forged_host_refused_by_default(reg):
    with TestClient(create_app(reg), base_url=ME) as c:
        assert c.get("/v1/health").status_code == 200
        for host in ("localhost:8000", "[::1]:8000", "127.0.0.1", "LOCALHOST."):
            assert c.get("/v1/health", headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost@evil", ""):
            err = error_of(c.get("/v1/projects", headers={"host": host}), 421, "unknown_host")
            assert "--allowed-host" in err["fix"] and "127.0.0.1" in err["expected"]
        r = c.post("/v1/projects", json={"name": "rebound"}, headers={"host": "evil.example:8000"})
        error_of(r, 421, "unknown_host")
        error_of(c.get("/projects", headers={"host": "evil.example"}), 421, "unknown_host")  # UI pages too
        assert _names(c) == []
    with TestClient(create_app(reg)) as c:  # TestClient's own "testserver" is not a name of a loopback bind
        error_of(c.get("/v1/health"), 421, "unknown_host")


def test_allowed_hosts_let_named_hosts_in(reg, monkeypatch):
    app = create_app(reg, allowed_hosts=["assay.example.com", ".corp.example"])
    with TestClient(app, base_url="https://assay.example.com") as c:
        assert c.get("/v1/health").status_code == 200
        for host in ("a.corp.example", "corp.example:8443", "127.0.0.1:8000"):
            assert c.get("/v1/health", headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "notcorp.example", "assay.example.com.evil.example"):
            error_of(c.get("/v1/health", headers={"host": host}), 421, "unknown_host")
        # a proxy that passes its own Host (127.0.0.1:8000): the public origin is named, so it is the server's own
        r = c.post("/v1/projects", json={"name": "via-proxy"},
                   headers={"host": "127.0.0.1:8000", "origin": "https://assay.example.com"})
        assert r.status_code == 201, r.text
    monkeypatch.setenv("ASSAY_ALLOWED_HOSTS", "a.example, b.example")
    with TestClient(create_app(reg), base_url="http://b.example") as c:
        assert c.get("/v1/health").status_code == 200
    with TestClient(create_app(reg, host="assay.lan"), base_url="http://assay.lan:8000") as c:  # a named bind
        assert c.get("/v1/health").status_code == 200
        error_of(c.get("/v1/health", headers={"host": "localhost:8000"}), 421, "unknown_host")
    assert {"127.0.0.1", "localhost", "::1"} <= bind_hosts("0.0.0.0") and bind_hosts("::1") >= {"localhost"}
    assert split_hosts(["A.example:443,.b.example", "::1"]) == ["a.example", ".b.example", "::1"]


def test_cross_origin_writes_refused(reg):
    with TestClient(create_app(reg), base_url=ME) as c:
        for headers in ({"origin": "http://127.0.0.1:9999"}, {"origin": "http://evil.example"}, {"origin": "null"},
                        {"origin": "http://127.0.0.1"}, {"referer": "http://localhost:8000/projects"},
                        {"referer": "http://127.0.0.1:9999/attack.html"}):
            err = error_of(c.post("/v1/projects", json={"name": "csrf"}, headers=headers), 403, "cross_origin")
            assert "/v1/projects" in err["found"]
            error_of(c.post("/projects", data={"name": "csrf"}, headers=headers), 403, "cross_origin")  # the UI form
        error_of(c.delete("/v1/projects/x", headers={"origin": "http://evil.example"}), 403, "cross_origin")
        assert _names(c) == []
        # reads from another origin are not refused here (the browser keeps their answers from the other page)
        assert c.get("/v1/projects", headers={"origin": "http://127.0.0.1:9999"}).status_code == 200
        # the UI's own pages, and API clients that send no Origin
        assert c.post("/v1/projects", json={"name": "own"}, headers={"origin": ME}).status_code == 201
        assert c.post("/projects", data={"name": "own-form"}, headers={"origin": ME, "referer": ME + "/projects"},
                      follow_redirects=False).status_code == 303
        assert c.post("/v1/projects", json={"name": "by-referer"}, headers={"referer": ME + "/projects"}).status_code == 201
        assert c.post("/v1/projects", json={"name": "script"}).status_code == 201
        assert sorted(_names(c)) == ["by-referer", "own", "own-form", "script"]


def test_keys_without_origin_work_and_do_not_excuse_other_origins(reg):
    key = reg.keys.create("ops").key
    with TestClient(create_app(reg, auth=True), base_url=ME) as c:
        assert c.post("/v1/projects", json={"name": "bearer"}, headers={"authorization": f"Bearer {key}"}).status_code == 201
        assert c.post("/v1/projects", json={"name": "x-api"}, headers={"x-api-key": key}).status_code == 201
        r = c.post("/v1/projects", json={"name": "csrf"}, headers={"x-api-key": key, "origin": "http://evil.example"})
        error_of(r, 403, "cross_origin")
        r = c.post("/login", data={"key": key, "next": "/projects"}, headers={"origin": ME}, follow_redirects=False)
        assert r.status_code == 303
        cookie = r.headers["set-cookie"].lower()
        assert "assay_key=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        error_of(c.post("/login", data={"key": key}, headers={"origin": "http://evil.example"}), 403, "cross_origin")
        assert sorted(p["name"] for p in c.get("/v1/projects", headers={"x-api-key": key}).json()) == ["bearer", "x-api"]


def test_serve_allowed_host_option(tmp_path):
    db = f"sqlite:///{tmp_path / 'assay.db'}"
    r = CliRunner().invoke(cli, ["serve", "--db", db, "--workers", "0", "--allowed-host", "bad/name"])
    assert r.exit_code == 2 and "not a host name" in r.output
    with assay_serve(tmp_path, "--db", db, "--workers", "0", "--allowed-host", "assay.example.com",
                     env={"ASSAY_ALLOWED_HOSTS": "other.example"}) as url:
        port = int(url.rsplit(":", 1)[1])
        for host, status in (("evil.example", 421), ("assay.example.com", 200), (f"localhost:{port}", 200),
                             ("other.example", 421)):  # the option wins over the variable
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/v1/projects", headers={"Host": host})
            resp = conn.getresponse()
            body = json.loads(resp.read())
            assert resp.status == status, (host, body)
            if status == 421:
                assert body["error"]["code"] == "unknown_host"
            conn.close()
    assert "allowed hosts: assay.example.com" in (tmp_path / "serve.log").read_text()


ATTACK = """<!doctype html><title>cute cats</title>
<form id="f" method="post" action="{target}/projects"><input name="name" value="pwned-form">
<input name="description" value="cross-site"></form>
<script>
fetch("{target}/v1/projects", {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}},
  body: JSON.stringify({{name: "pwned-fetch"}})}}).finally(() => document.getElementById("f").submit());
</script>"""


@pytest.fixture
def attacker() -> Iterator[tuple[str, list[str]]]:
    """A page server on another local port (another origin): its URL, the page set by the test."""
    page: list[str] = [""]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page[0].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", page
    finally:
        srv.shutdown()
        srv.server_close()


def _projects(url: str) -> list[str]:
    return [p["name"] for p in json.loads(urllib.request.urlopen(url + "/v1/projects", timeout=10).read())]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_browser_cross_site_form_and_rebinding_refused(browser, attacker, tmp_path: Path):  # noqa: F811
    home, page_html = attacker
    with assay_serve(tmp_path, "--db", f"sqlite:///{tmp_path / 'assay.db'}", "--workers", "0",
                     env={"ASSAY_ALLOWED_HOSTS": ""}) as url:
        page_html[0] = ATTACK.format(target=url)
        tab = browser.new_page()
        with tab.expect_response(lambda r: r.request.method == "POST" and r.url == url + "/projects") as posted:
            tab.goto(home + "/cats.html")
        assert posted.value.status == 403, posted.value.status
        assert posted.value.json()["error"]["code"] == "cross_origin"
        assert _projects(url) == []  # neither the form nor the no-cors fetch created anything

        tab.goto(url + "/projects")  # the UI's own form, same origin: works
        tab.fill("#new-project input[name=name]", "mine")
        tab.click("#new-project button[type=submit]")
        tab.wait_for_url("**/projects/prj_*")
        assert tab.inner_text("h1") == "mine" and _projects(url) == ["mine"]

        port = url.rsplit(":", 1)[1]
        with launch_more(browser, "--host-resolver-rules=MAP rebind.example 127.0.0.1") as other:  # DNS rebinding
            rebound = other.new_page()
            resp = rebound.goto(f"http://rebind.example:{port}/v1/projects")
            assert resp.status == 421 and resp.json()["error"]["code"] == "unknown_host"
        assert _projects(url) == ["mine"]

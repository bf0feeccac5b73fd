"""Providers over real HTTP against a local fault-injecting server (no network, no real sleeping).

``FakeLLM`` speaks the OpenAI chat-completions and the Anthropic messages shapes on 127.0.0.1,
counts requests and in-flight requests, and plays a script of faults (status codes with
Retry-After, slow answers, bodies that are not JSON) before answering normally.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from assay.config import ProviderConfig
from assay.errors import AssayError
from assay.metrics import get_preset
from assay.providers import ProviderError, get_provider, label_rows, provider_from_config

pytest.importorskip("httpx")

TOXICITY = get_preset("toxicity")


class FakeLLM:
    """A scripted OpenAI/Anthropic-compatible server. ``push`` queues actions for the next requests."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.script: deque[dict[str, Any]] = deque()
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay = 0.0  # seconds every request takes (for the concurrency test)
        self.answer: Callable[[dict[str, Any]], str] = lambda body: "true"
        self.logprobs: Callable[[dict[str, Any], str], list[dict[str, float]] | None] | None = None
        self.usage = (None, None)  # fixed (prompt, completion) tokens; None: counted from the text
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # /v1/models
                self._send(200, {"object": "list", "data": [{"id": "fake"}]})

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                with fake.lock:
                    fake.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                    action = fake.script.popleft() if fake.script else {}
                left = False

                def leave() -> None:  # before the reply goes out: once the client has it, it may send the next
                    nonlocal left
                    if not left:
                        left = True
                        with fake.lock:
                            fake.in_flight -= 1

                try:
                    time.sleep(fake.delay + action.get("sleep", 0.0))
                    if "status" in action:
                        status, payload, headers = (action["status"], action.get("json", {"error": {"message":
                                                    "injected"}}), action.get("headers", {}))
                    elif "raw" in action:
                        status, payload, headers = 200, action["raw"], None
                    else:
                        status, payload, headers = 200, fake.response(self.path, body), None
                    leave()
                    self._send(status, payload, headers)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left
                finally:
                    leave()

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def push(self, *actions: dict[str, Any]) -> None:
        self.script.extend(actions)

    @property
    def count(self) -> int:
        return len(self.requests)

    def response(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        text = self.answer(body)
        prompt_tokens = self.usage[0] if self.usage[0] is not None else len(json.dumps(body.get("messages"))) // 4
        out_tokens = self.usage[1] if self.usage[1] is not None else len(text.split())
        if path.endswith("/messages"):
            return {"id": "msg_1", "type": "message", "role": "assistant", "model": body.get("model"),
                    "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                    "usage": {"input_tokens": prompt_tokens, "output_tokens": out_tokens}}
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text},
                                  "finish_reason": "stop"}
        if body.get("logprobs") and self.logprobs is not None:
            positions = self.logprobs(body, text)
            if positions is not None:
                choice["logprobs"] = {"content": [
                    {"token": max(p, key=p.get), "logprob": max(p.values()),
                     "top_logprobs": [{"token": t, "logprob": lp} for t, lp in p.items()]} for p in positions]}
        return {"id": "chatcmpl-1", "object": "chat.completion", "model": body.get("model"), "choices": [choice],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": out_tokens,
                          "total_tokens": prompt_tokens + out_tokens}}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def llm():
    server = FakeLLM()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "ak-test-key")


def make(llm: FakeLLM, name: str = "openai/gpt-4o-mini", *, cache: Any = False, **kw: Any):
    """A provider against the fake server with tiny backoffs; sleeps are recorded, not slept."""
    base = llm.url if name.startswith("anthropic/") else llm.url + "/v1"
    kw.setdefault("max_retries", 3)
    kw.setdefault("backoff", 0.001)
    kw.setdefault("timeout", 5.0)
    p = get_provider(name, base_url_=base, cache=cache, **kw)
    p.sleeps = []  # type: ignore[attr-defined]
    p._sleep = p.sleeps.append  # type: ignore[attr-defined]
    return p


def _one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg and "Traceback" not in msg
    assert msg.startswith("expected ") and "; found " in msg and ". Fix: " in msg
    return msg


# --- success -----------------------------------------------------------------------------
def test_openai_success_parsed_with_usage(llm):
    llm.answer = lambda body: "Hello there"
    p = make(llm, temperature=0.3, max_tokens=20)
    comp = p.generate("Say hello", system="Be brief.", seed=7)
    assert comp.text == "Hello there" and not comp.cached and comp.finish_reason == "stop"
    assert comp.usage.input_tokens > 0 and comp.usage.output_tokens == 2
    sent = llm.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["Authorization"] == "Bearer sk-test-key"
    assert sent["body"]["messages"] == [{"role": "system", "content": "Be brief."},
                                        {"role": "user", "content": "Say hello"}]
    assert sent["body"]["max_tokens"] == 20 and sent["body"]["temperature"] == 0.3 and sent["body"]["seed"] == 7
    stats = p.stats.to_dict()
    assert stats["requests"] == 1 and stats["retries"] == 0 and stats["failures"] == 0
    assert stats["input_tokens"] == comp.usage.input_tokens and stats["output_tokens"] == 2


def test_anthropic_success_parsed_with_usage(llm):
    llm.answer = lambda body: "false"
    p = make(llm, "anthropic/claude-3-5-haiku-latest")
    j = p.judge(TOXICITY, {"id": "a", "input": "have a nice day"})
    assert j.label == "false" and j.probabilities is None  # no logprobs from Anthropic
    sent = llm.requests[0]
    assert sent["path"] == "/v1/messages"
    assert sent["headers"]["x-api-key"] == "ak-test-key" and sent["headers"]["anthropic-version"]
    assert "system" in sent["body"] and all(m["role"] != "system" for m in sent["body"]["messages"])
    assert sent["body"]["max_tokens"] == 16
    assert j.usage.input_tokens > 0 and p.stats.output_tokens == 1
    assert p.stats.cost_usd > 0  # a priced model (default table)


# --- retries -----------------------------------------------------------------------------
def test_429_with_retry_after_then_success(llm):
    llm.push({"status": 429, "headers": {"Retry-After": "0.05"}},
             {"status": 429, "headers": {"retry-after-ms": "20"}})
    p = make(llm)
    comp = p.generate("hi")
    assert comp.text == "true" and llm.count == 3
    assert p.sleeps == [0.05, 0.02]  # the server's Retry-After, not the backoff
    stats = p.stats.to_dict()
    assert stats["retries"] == 2 and stats["requests"] == 3 and stats["retry_reasons"] == {"429": 2}


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_then_success(llm, status):
    llm.push({"status": status}, {"status": status})
    p = make(llm)
    assert p.generate("hi").text == "true"
    assert llm.count == 3 and p.stats.retries == 2 and p.stats.retry_reasons == {str(status): 2}
    assert len(p.sleeps) == 2 and all(0 < s <= 0.01 for s in p.sleeps)  # exponential backoff, tiny base


def test_timeout_retried_then_success(llm):
    llm.push({"sleep": 1.0})
    p = make(llm, timeout=0.2)
    assert p.generate("hi").text == "true"
    assert p.stats.retries == 1 and p.stats.retry_reasons == {"timeout": 1}


def test_timeout_every_time_gives_one_clear_error(llm):
    llm.push(*[{"sleep": 0.6}] * 3)
    p = make(llm, timeout=0.15, max_retries=2)
    with pytest.raises(ProviderError) as info:
        p.generate("hi")
    msg = _one_line(info.value)
    assert "timeout" in msg and "after 3 attempts" in msg and "raise timeout" in msg
    assert isinstance(info.value, AssayError) and not info.value.fatal
    assert p.stats.requests == 3 and p.stats.failures == 1 and p.stats.retries == 2


def test_malformed_json_retried_then_counted(llm):
    llm.push({"raw": "<html>Bad gateway</html>"}, {"raw": json.dumps({"choices": []})})
    p = make(llm)
    assert p.generate("hi").text == "true"
    assert p.stats.retries == 2 and p.stats.retry_reasons == {"malformed": 2}

    llm.push(*[{"raw": "{not json"}] * 4)
    with pytest.raises(ProviderError) as info:
        p.generate("again")
    assert "not JSON" in _one_line(info.value)
    # In a batch a row that fails for good is counted, never lost.
    llm.push(*[{"raw": "{not json"}] * 4)
    res = label_rows(TOXICITY, [{"id": "r1", "input": "x1"}, {"id": "r2", "input": "x2"}],
                     make(llm, concurrency=1))
    s = res.summary()
    assert s["rows"] == 2 and s["labeled"] == 1 and s["failed"] == 1 and len(res.rows) == 2
    assert [r["id"] for r in res.rows] == ["r1", "r2"]
    assert res.rows[0]["label"] is None and res.rows[0]["meta"]["judge"]["error"].startswith("failed:")


def test_400_not_retried(llm):
    llm.push({"status": 400, "json": {"error": {"message": "max_tokens is too large"}}})
    p = make(llm)
    with pytest.raises(ProviderError) as info:
        p.generate("hi", max_tokens=10**6)
    msg = _one_line(info.value)
    assert "HTTP 400" in msg and "max_tokens is too large" in msg
    assert llm.count == 1 and p.stats.retries == 0 and not info.value.fatal
    # judge() turns a non-fatal failure into a counted failed judgment
    llm.push({"status": 400})
    j = p.judge(TOXICITY, {"input": "x"})
    assert j.label is None and j.error.startswith("failed:")


@pytest.mark.parametrize("name,env", [("openai/gpt-4o-mini", "OPENAI_API_KEY"),
                                      ("anthropic/claude-3-5-haiku-latest", "ANTHROPIC_API_KEY")])
def test_401_fatal_names_the_key_variable(llm, name, env):
    llm.push({"status": 401, "json": {"error": {"message": "Incorrect API key provided"}}})
    p = make(llm, name)
    with pytest.raises(ProviderError) as info:
        p.generate("hi")
    msg = _one_line(info.value)
    assert env in msg and "HTTP 401" in msg and info.value.fatal and info.value.status == 401
    assert llm.count == 1 and p.stats.retries == 0
    # a bad key stops a batch instead of failing every row
    llm.push(*[{"status": 401}] * 10)
    with pytest.raises(ProviderError):
        label_rows(TOXICITY, [{"input": f"row {i}"} for i in range(5)], make(llm, name, concurrency=1))


def test_custom_key_variable_is_named(llm, monkeypatch):
    monkeypatch.setenv("MY_GATEWAY_KEY", "gw-key")
    llm.push({"status": 403})
    p = make(llm, "together/llama-3", api_key_env="MY_GATEWAY_KEY")
    with pytest.raises(ProviderError) as info:
        p.generate("hi")
    assert "MY_GATEWAY_KEY" in str(info.value)
    assert llm.requests[0]["headers"]["Authorization"] == "Bearer gw-key"


def test_404_names_model_and_base_url(llm):
    llm.push({"status": 404})
    p = make(llm, "vllm/no-such-model")
    with pytest.raises(ProviderError) as info:
        p.generate("hi")
    assert "no-such-model" in _one_line(info.value) and info.value.fatal


def test_server_down_is_a_clear_error():
    p = get_provider("vllm/m", base_url_="http://127.0.0.1:9/v1", cache=False, max_retries=1, backoff=0.001,
                     timeout=2)
    p._sleep = lambda s: None
    with pytest.raises(ProviderError) as info:
        p.generate("hi")
    msg = _one_line(info.value)
    assert "connection" in msg and "127.0.0.1:9" in msg and "server is up" in msg


# --- concurrency ---------------------------------------------------------------------------
def test_concurrency_limit_respected_in_batches(llm):
    llm.delay = 0.2
    p = make(llm, concurrency=3)
    res = label_rows(TOXICITY, [{"input": f"row {i}"} for i in range(9)], p)
    assert res.summary()["labeled"] == 9 and llm.count == 9
    assert 1 < llm.max_in_flight <= 3


def test_concurrency_limit_respected_across_threads(llm):
    llm.delay = 0.1
    p = make(llm, concurrency=2)
    threads = [threading.Thread(target=p.generate, args=(f"prompt {i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert llm.count == 8 and llm.max_in_flight <= 2


# --- judge ---------------------------------------------------------------------------------
def _true_false_logprobs(p_true: float):
    def fn(body: dict[str, Any], text: str) -> list[dict[str, float]]:
        return [{"True": math.log(p_true * 0.95), "False": math.log((1 - p_true) * 0.95), "The": math.log(0.05)},
                {".": -0.01}]
    return fn


def test_logprobs_give_per_label_probabilities(llm):
    llm.answer = lambda body: "True."
    llm.logprobs = _true_false_logprobs(0.8)
    p = make(llm)
    j = p.judge(TOXICITY, {"input": "you are an idiot"})
    sent = llm.requests[0]["body"]
    assert sent["logprobs"] is True and sent["top_logprobs"] == 10 and sent["temperature"] == 0.0
    assert j.label == "true" and j.error is None
    assert j.probabilities == pytest.approx({"true": 0.8, "false": 0.2})


def test_categorical_logprobs_and_verbalizers(llm):
    metric = get_preset("toxicity_3class")
    llm.answer = lambda body: "offensive"
    llm.logprobs = lambda body, text: [{"off": math.log(0.6), "hate": math.log(0.3), "neither": math.log(0.1)}]
    j = make(llm).judge(metric, {"input": "shut up, loser"})
    assert j.label == "offensive_language"
    assert j.probabilities == pytest.approx({"hate_speech": 0.3, "offensive_language": 0.6, "neither": 0.1})


def test_server_rejecting_logprobs_falls_back_to_text(llm):
    llm.push({"status": 400, "json": {"error": {"message": "logprobs are not supported by this model"}}})
    llm.answer = lambda body: "false"
    j = make(llm, "groq/llama").judge(TOXICITY, {"input": "hello"})
    assert j.label == "false" and j.probabilities is None
    assert llm.requests[0]["body"].get("logprobs") and "logprobs" not in llm.requests[1]["body"]


def test_refusal_is_counted_not_dropped(llm):
    llm.answer = lambda body: ("I'm sorry, I can't help with that." if "kill" in body["messages"][-1]["content"]
                               else "false")
    rows = [{"id": f"r{i}", "input": t, "label": "false"} for i, t in enumerate(["hi", "I will kill you", "ok"])]
    res = label_rows(TOXICITY, rows, make(llm))
    s = res.summary()
    assert s == {**s, "rows": 3, "labeled": 2, "unparseable": 1, "failed": 0}
    assert "can't help" in s["examples_unparseable"][0]
    bad = res.rows[1]
    assert bad["label"] is None and bad["meta"]["human_label"] == "false"
    assert bad["meta"]["judge"]["error"].startswith("unparseable")


# --- cache ---------------------------------------------------------------------------------
CACHE_SCRIPT = r"""
import json, sys
from assay.metrics import get_preset
from assay.providers import get_provider
p = get_provider("openai/gpt-4o-mini", base_url_=sys.argv[1], cache=sys.argv[2], backoff=0.001)
metric = get_preset("toxicity")
out = {"generate": [], "judge": []}
for i in range(3):
    c = p.generate(f"write row {i}", seed=i, max_tokens=8)
    out["generate"].append([c.text, c.usage.to_dict(), c.cached])
for i in range(3):
    j = p.judge(metric, {"input": f"text {i}"})
    out["judge"].append([j.label, j.probabilities, j.text, j.cached])
out["stats"] = p.stats.to_dict()
print(json.dumps(out))
"""


def _run_cache_script(llm: FakeLLM, cache_path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", CACHE_SCRIPT, llm.url + "/v1", str(cache_path)],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ), check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cache_survives_the_process(llm, tmp_path):
    llm.answer = lambda body: "True" if body.get("logprobs") else f"row text {len(body['messages'][-1]['content'])}"
    llm.logprobs = _true_false_logprobs(0.7)
    cache = tmp_path / "cache.db"
    first = _run_cache_script(llm, cache)
    assert llm.count == 6 and first["stats"]["requests"] == 6 and first["stats"]["cache_hits"] == 0
    assert first["stats"]["cost_usd"] > 0

    second = _run_cache_script(llm, cache)  # a new process, the same cache file
    assert llm.count == 6  # zero HTTP requests
    assert second["stats"]["requests"] == 0 and second["stats"]["cache_hits"] == 6
    assert second["stats"]["cost_usd"] == 0 and second["stats"]["saved_by_cache_usd"] == first["stats"]["cost_usd"]
    assert [g[:2] for g in second["generate"]] == [g[:2] for g in first["generate"]]
    assert [j[:3] for j in second["judge"]] == [j[:3] for j in first["judge"]]
    assert all(g[2] for g in second["generate"]) and all(j[3] for j in second["judge"])
    assert first["judge"][0][1] == pytest.approx({"true": 0.7, "false": 0.3})


def test_cache_key_includes_the_request(llm, tmp_path):
    p = make(llm, cache=tmp_path / "c.db")
    p.generate("a", seed=1)
    p.generate("a", seed=1)
    p.generate("a", seed=2)
    p.generate("a", seed=1, max_tokens=5)
    assert llm.count == 3 and p.stats.cache_hits == 1


def test_failed_requests_are_not_cached(llm, tmp_path):
    llm.push({"status": 400})
    p = make(llm, cache=tmp_path / "c.db")
    with pytest.raises(ProviderError):
        p.generate("x")
    assert p.generate("x").text == "true" and llm.count == 2


# --- accounting ----------------------------------------------------------------------------
def test_token_and_dollar_accounting_with_overrides(llm):
    llm.usage = (1000, 10)
    p = make(llm)  # openai/gpt-4o-mini: default table, $0.15 / $0.60 per 1M tokens
    for i in range(4):
        assert p.generate(f"q{i}").cost_usd == pytest.approx((1000 * 0.15 + 10 * 0.60) / 1e6)
    s = p.stats.to_dict()
    assert s["input_tokens"] == 4000 and s["output_tokens"] == 40 and s["priced"]
    assert s["cost_usd"] == pytest.approx(4 * (1000 * 0.15 + 10 * 0.60) / 1e6)

    # a user glob beats the default table
    p2 = make(llm, prices={"openai/gpt-4o-mini*": {"input": 10.0, "output": 20.0}})
    p2.generate("q")
    assert p2.stats.cost_usd == pytest.approx((1000 * 10 + 10 * 20) / 1e6)

    # a local model is unpriced unless the user gives a price
    p3 = make(llm, "openai/my-finetune")
    p3.generate("q")
    assert not p3.stats.priced and p3.stats.cost_usd == 0 and p3.stats.input_tokens == 1000
    p4 = make(llm, "openai/my-finetune", prices={"openai/my-*": [1.0, 2.0]})
    p4.generate("q")
    assert p4.stats.priced and p4.stats.cost_usd == pytest.approx((1000 * 1.0 + 10 * 2.0) / 1e6)


def test_prices_from_the_run_config(llm, tmp_path):
    llm.usage = (2000, 100)
    cfg = ProviderConfig.model_validate({
        "model": "openai/gpt-4o-mini", "base_url": llm.url + "/v1", "cache": "cache.db", "max_retries": 0,
        "prices": {"openai/gpt-4o*": {"input": 1.0, "output": 3.0}}})
    p = provider_from_config(cfg, base_dir=tmp_path)
    p.generate("x")
    assert p.stats.cost_usd == pytest.approx((2000 * 1.0 + 100 * 3.0) / 1e6)
    assert (tmp_path / "cache.db").exists()  # a relative cache path is resolved against the config folder
    assert p.max_retries == 0 and p.key_env == "OPENAI_API_KEY"


def test_org_prices_apply_and_config_wins(llm, monkeypatch, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "providers.yaml").write_text("prices:\n  'vllm/*': {input: 5, output: 5}\n")
    monkeypatch.setenv("ASSAY_HOME", str(home))
    llm.usage = (1000, 0)
    p = make(llm, "vllm/qwen")
    p.generate("x")
    assert p.stats.cost_usd == pytest.approx(5 * 1000 / 1e6)
    p2 = make(llm, "vllm/qwen", prices={"vllm/*": {"input": 1, "output": 1}})
    p2.generate("y")
    assert p2.stats.cost_usd == pytest.approx(1000 / 1e6)

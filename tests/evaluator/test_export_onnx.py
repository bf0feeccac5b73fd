"""`assay export --onnx` for every family: ONNX Runtime, fed as model.json says and pooled and calibrated as
it says, gives the Evaluator's probabilities within 1e-5 on 200 real rows (tests/fixtures/data), rows longer
than max_length included, so the truncation policy's token ids are what the graph reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from conftest import FIXTURE_DATA  # noqa: E402

from assay.cli import cli  # noqa: E402
from assay.evaluator import Evaluator  # noqa: E402
from assay.evaluator._contract import calibrated_probs, decide  # noqa: E402
from assay.evaluator._export import graph_inputs, pool_views  # noqa: E402
from assay.metrics import get_preset, swap_pair  # noqa: E402

TOL = 1e-5  # probabilities, ONNX Runtime against Evaluator.predict_proba
SCORED = 200


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURE_DATA / name).read_text().splitlines()]


def _binary_tweets() -> list[dict]:
    """Davidson tweets as the binary `toxicity` metric: true unless labeled neither."""
    return [{**r, "label": "false" if r["label"] == "neither" else "true"} for r in _rows("toxicity_davidson.jsonl")]


def _pairs(n: int = 300) -> list[dict]:
    """Pairwise rows from real tweets (as tests/metrics/test_pairwise.py): which reply is less offensive."""
    tweets = _rows("toxicity_davidson.jsonl")
    out = []
    for i in range(n):
        a, b = tweets[i], tweets[(i * 7 + 3) % len(tweets)]
        clean_a, clean_b = a["label"] == "neither", b["label"] == "neither"
        out.append({"id": f"pw{i}", "input": "Which reply is less offensive?", "output": a["input"],
                    "output_b": b["input"], "label": "tie" if clean_a == clean_b else ("a" if clean_a else "b")})
    return out


def _calibrate(folder: Path, metric) -> Path:
    """A temperature, a label shift and (binary) a threshold in evaluator.json, so calibration is exercised."""
    path = folder / "evaluator.json"
    info = json.loads(path.read_text())
    info.update(temperature=1.3, label_shift={lab: 0.2 * i for i, lab in enumerate(metric.labels)},
                threshold=0.4 if metric.is_binary else None)
    path.write_text(json.dumps(info))
    return folder


def _linear_artifact(out: Path, metric, rows: list[dict], blocks: list[str], stack: str | None,
                     max_length: int, grounding: bool = False) -> Path:
    """A linear / hybrid artifact fitted on real rows as assay's refit does (blocks, a logistic-regression
    head per block, the hybrid's or the blend's pool), saved and calibrated."""
    from sklearn.linear_model import LogisticRegression

    from assay.evaluator._base_models import resolve_base
    from assay.evaluator._linear import (ContrastiveFeatures, EmbedFeatures, LinearHead, LinearModel, TfidfFeatures,
                                         log_probs)
    from assay.evaluator._lm_features import LmFeatures
    from assay.train._contrastive import tune_body
    from assay.train._pool import equal_pool, pool_head

    fit_rows = rows + [swap_pair(r) for r in rows] if metric.swap_permutation() else rows
    y = np.array([metric.labels.index(r["label"]) for r in fit_rows])
    made, heads, logp = {}, {}, []
    for name in blocks:
        if name == "tfidf":
            block = TfidfFeatures(metric)
            x = block.fit(fit_rows)
        elif name == "lm":
            block = LmFeatures(metric, resolve_base("smollm2"), max_length)
            x = block.fit(fit_rows)
        else:
            kind = EmbedFeatures if name == "embed" else ContrastiveFeatures
            block = kind(metric, resolve_base("minilm"), max_length, grounding=grounding)
            if name == "contrastive":
                tune_body(block, block.encode(fit_rows), y, steps=2, batch_size=8, lr=1e-4, seed=0)
            x = block.fit(fit_rows)
        made[name] = block
        heads[name] = LinearHead.from_sklearn(LogisticRegression(max_iter=1000).fit(x, y), len(metric.labels))
        logp.append(log_probs(heads[name].logits(x)))
    pool = {"hybrid": lambda: pool_head(np.hstack(logp), y, len(metric.labels)),
            "blend": lambda: equal_pool(len(blocks), len(metric.labels))}
    model = LinearModel(metric, made, heads, pool[stack]() if stack else None, max_length)
    embedding = [b for b in blocks if b != "tfidf"]
    info = {"family": model.family, "linear": {"kind": stack or blocks[0], "blocks": blocks,
                                              "max_lengths": {b: max_length for b in embedding},
                                              "grounding": {b: made[b].context for b in embedding if made[b].context}}}
    if "lm" in made:
        info["linear"]["lm"] = {"base": "smollm2", "layers": made["lm"].layers}
    if embedding:
        info["base"] = made[embedding[0]].base.to_dict()
    ev = Evaluator(metric, model, info=info, device="cpu", precision="fp32")
    return _calibrate(ev.save_pretrained(out), metric)


def _sequence_artifact(out: Path, metric, rows: list[dict], family: str, max_length: int,
                       base: str | None = None) -> Path:
    """An encoder / decoder artifact: a few LoRA steps on real rows, saved and calibrated."""
    from assay.config import ModelConfig, TrainingConfig
    from assay.train import train_loop

    cfg = ModelConfig(family=family, max_length=max_length, **({"base": base} if base else {}))
    ev = Evaluator.create(metric, cfg, device="cpu", precision="fp32")
    train_loop(ev, rows, TrainingConfig(max_steps=3, batch_size=8, learning_rate=1e-3, seed=0), progress=False)
    return _calibrate(ev.save_pretrained(out), metric)


def _export_and_score(tmp_path: Path, artifact: Path, rows: list[dict]) -> tuple[float, dict, dict, object]:
    """Export through the CLI, score ``rows`` in ONNX Runtime by model.json; the largest probability difference
    from the Evaluator's, model.json, the graph inputs and the CLI's JSON."""
    import onnxruntime as ort  # the `onnx` extra, part of `all`: installed in CI, never skipped

    res = CliRunner().invoke(cli, ["export", str(artifact), "--onnx", str(tmp_path / "onnx"), "--json"])
    assert res.exit_code == 0, res.output
    written = json.loads(res.output)
    meta = json.loads(Path(written["metadata"]).read_text())
    ev = Evaluator.from_pretrained(artifact, device="cpu", precision="fp32")
    assert written["family"] == meta["family"] == ev.family and meta["labels"] == list(ev.labels)
    inputs = graph_inputs(ev, rows)
    session = ort.InferenceSession(written["onnx"], providers=["CPUExecutionProvider"])
    assert sorted(i.name for i in session.get_inputs()) == sorted(meta["graph"]["inputs"]) == sorted(inputs.feeds)
    logits = session.run(["logits"], inputs.feeds)[0]
    assert logits.shape == (len(inputs.owner), len(ev.labels))
    cal = meta["calibration"]
    shift = None if cal["label_shift"] is None else np.array([cal["label_shift"][k] for k in meta["labels"]])
    probs = calibrated_probs(pool_views(logits, inputs.owner, inputs.swapped, meta), cal["temperature"], shift)
    want = ev.predict_proba(rows)
    assert probs.shape == want.shape == (len(rows), len(ev.labels))
    d = meta["decision"]
    got_labels = [decide(p, meta["labels"], d["positive"], d["threshold"]) for p in probs]
    assert got_labels == ev.decide(want)
    print(f"{meta['kind']}: max |ONNX - Evaluator| probability over {len(rows)} rows: {np.abs(probs - want).max():.2e}")
    return float(np.abs(probs - want).max()), meta, inputs.feeds, written


def _long(feeds: dict, prefix: str, max_length: int) -> int:
    """Sequences cut to max_length tokens (the truncation policy at work)."""
    return int((feeds[f"{prefix}attention_mask"].sum(1) == max_length).sum())


def test_tfidf_exports_ngram_inputs_and_scores_identically(tmp_path):
    """Categorical (3 labels) TF-IDF: the graph counts the analyzers' n-grams against the vocabulary."""
    tweets = _rows("toxicity_davidson.jsonl")
    metric = get_preset("toxicity_3class")
    art = _linear_artifact(tmp_path / "art", metric, tweets[:300], ["tfidf"], None, 64)
    diff, meta, feeds, written = _export_and_score(tmp_path, art, tweets[300:300 + SCORED])
    assert diff < TOL, diff
    assert written["tokenizer"] is None and meta["kind"] == "tfidf"
    assert set(meta["graph"]["inputs"]) == {"word_ngrams", "char_ngrams"}
    ngrams = meta["inputs"]["ngrams"]
    assert ngrams["text_template"] == "input: {input}"
    assert ngrams["word"]["ngram_range"] == [1, 2] and ngrams["char"]["analyzer"] == "char_wb"
    assert ngrams["truncation"].startswith("none")
    assert meta["calibration"]["temperature"] == 1.3 and meta["decision"]["threshold"] is None


@pytest.mark.slow
def test_embed_with_grounding_exports_each_field_and_scores_identically(tmp_path):
    """RAG rows (BEGIN): the row, each field alone and the lexical features; long contexts truncated."""
    rows = _rows("faithfulness_begin.jsonl")
    metric = get_preset("context_adherence")
    art = _linear_artifact(tmp_path / "art", metric, rows[:60], ["embed"], None, 48, grounding=True)
    diff, meta, feeds, _ = _export_and_score(tmp_path, art, rows[100:100 + SCORED])
    assert diff < TOL, diff
    assert {"field_output_input_ids", "field_context_input_ids", "lexical"} <= set(meta["graph"]["inputs"])
    assert _long(feeds, "", 48) > 20 and _long(feeds, "field_context_", 48) > 5
    tokens = meta["inputs"]["tokens"]
    assert tokens["max_length"] == 48 and tokens["truncation"]["head_tokens"] == "max(1, keep * 2 // 3)"
    assert tokens["render_template"].startswith("output: {output}") and tokens["tokenizer"] == meta["tokenizer"]
    assert (tmp_path / "onnx" / meta["tokenizer"]).is_dir()
    assert meta["inputs"]["grounding"]["context_fields"] == ["input", "context"]


@pytest.mark.slow
def test_hybrid_exports_both_blocks_and_the_stack(tmp_path):
    tweets = _binary_tweets()
    metric = get_preset("toxicity")
    art = _linear_artifact(tmp_path / "art", metric, tweets[:200], ["tfidf", "embed"], "hybrid", 24)
    diff, meta, feeds, _ = _export_and_score(tmp_path, art, tweets[300:300 + SCORED])
    assert diff < TOL, diff
    assert meta["kind"] == "hybrid" and meta["blocks"] == ["tfidf", "embed"] and _long(feeds, "", 24) > 10
    assert meta["decision"]["threshold"] == 0.4 and meta["decision"]["positive"] == "true"


@pytest.mark.slow
def test_pairwise_blend_of_three_blocks_pools_both_orders(tmp_path):
    """A blend of tfidf, embed and a contrastive body (its inputs prefixed): both orders of each pair."""
    pairs = _pairs()
    metric = get_preset("pairwise_preference")
    art = _linear_artifact(tmp_path / "art", metric, pairs[:80], ["tfidf", "embed", "contrastive"], "blend", 48)
    diff, meta, feeds, _ = _export_and_score(tmp_path, art, pairs[100:100 + SCORED])
    assert diff < TOL, diff
    assert meta["kind"] == "blend" and meta["pooling"]["pairwise"] and meta["pooling"]["swap_permutation"] == [1, 0, 2]
    assert {"contrastive_input_ids", "contrastive_attention_mask"} <= set(meta["graph"]["inputs"])
    assert feeds["input_ids"].shape[0] == 2 * SCORED and _long(feeds, "", 48) > 10


@pytest.mark.slow
def test_encoder_with_context_windows_scores_identically(tmp_path):
    """The encoder's pair encoding: long BEGIN contexts read in windows, pooled as model.json says."""
    rows = _rows("faithfulness_begin.jsonl")
    metric = get_preset("context_adherence")
    art = _sequence_artifact(tmp_path / "art", metric, rows[:40], "encoder", 64)
    diff, meta, feeds, _ = _export_and_score(tmp_path, art, rows[100:100 + SCORED])
    assert diff < TOL, diff
    assert feeds["input_ids"].shape[0] > SCORED and _long(feeds, "", 64) > 20  # several windows per long row
    assert meta["inputs"]["tokens"]["pair_encoding"]["context_windows"] == 4
    assert meta["pooling"]["aggregation"] == "mean"


@pytest.mark.slow
def test_decoder_exports_and_scores_identically(tmp_path):
    """SmolLM2 + LoRA, left padding; fewer rows (a 135M-parameter forward per row on the CPU)."""
    pytest.importorskip("gguf")
    tweets = _binary_tweets()
    metric = get_preset("toxicity")
    art = _sequence_artifact(tmp_path / "art", metric, tweets[:16], "decoder", 96, base="smollm2")
    rows = tweets[300:324] + [{"id": "long", "input": " ".join(t["input"] for t in tweets[:30])}]
    diff, meta, feeds, _ = _export_and_score(tmp_path, art, rows)
    assert diff < TOL, diff
    assert meta["inputs"]["tokens"]["padding"].startswith("left") and feeds["attention_mask"][:, -1].all()
    assert meta["inputs"]["tokens"]["truncation"]["max_length"] == 96


@pytest.mark.slow
def test_blend_with_the_lm_block_exports_smollm2_s_first_layers(tmp_path):
    """The ``lm`` block (SmolLM2's first third of layers, standardised) beside ``embed``: its own prefixed
    inputs and tokenizer; long tweets cut to max_length."""
    tweets = _binary_tweets()
    metric = get_preset("toxicity")
    art = _linear_artifact(tmp_path / "art", metric, tweets[:120], ["embed", "lm"], "blend", 24)
    diff, meta, feeds, _ = _export_and_score(tmp_path, art, tweets[300:300 + SCORED])
    assert diff < TOL, diff
    assert meta["blocks"] == ["embed", "lm"] and {"lm_input_ids", "lm_attention_mask"} <= set(meta["graph"]["inputs"])
    lm = meta["inputs"]["lm_tokens"]
    assert lm["block"] == "lm" and "first 10 decoder layers" in lm["block_graph"]
    assert (tmp_path / "onnx" / lm["tokenizer"]).is_dir() and lm["tokenizer"] != meta["tokenizer"]
    assert _long(feeds, "lm_", 24) > 10

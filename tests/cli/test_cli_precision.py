"""`--precision auto|fp32|bf16|int8` on `assay score`, `assay serve` and `assay monitor` (issue 9): the
precision reaches the evaluator, and one this CPU or the artifact cannot do is refused with one line
before any model loads or any server starts. Uses the golden TF-IDF artifact (no torch forward: fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from assay import _cpu
from assay.cli import cli

HERE = Path(__file__).parents[1] / "fixtures" / "artifacts"
ARTIFACT = HERE / "toxicity-tfidf-v1"
ROWS = json.loads((HERE / "toxicity-tfidf-v1.expected.json").read_text())["rows"][:6]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"id": f"r{i}", **r}) + "\n" for i, r in enumerate(ROWS)))
    return path


def _flags(monkeypatch, *flags: str) -> None:
    """This CPU's flags as seen by assay (bf16 support is read from them)."""
    monkeypatch.setattr(_cpu, "cpu_flags", lambda path=_cpu.CPUINFO: frozenset(flags))


def _no_gpu(monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _score(data: Path, out: Path, *extra: str):
    return CliRunner().invoke(cli, ["score", str(ARTIFACT), str(data), "-o", str(out), "--json", "-q", *extra])


def test_score_takes_each_precision_the_machine_and_artifact_can_do(tmp_path, data, monkeypatch):
    _no_gpu(monkeypatch)
    _flags(monkeypatch, "avx2", "avx512f", "avx512_bf16")
    outputs = {}
    for precision in ("auto", "fp32", "bf16"):
        out = tmp_path / f"{precision}.jsonl"
        res = _score(data, out, "--precision", precision)
        assert res.exit_code == 0, res.output
        assert json.loads(res.output)["precision"] == precision
        outputs[precision] = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(outputs["auto"]) == len(ROWS)
    # a TF-IDF evaluator has no transformer: every precision gives the same scores
    assert outputs["fp32"] == outputs["auto"] == outputs["bf16"]


def test_score_refuses_bf16_on_a_cpu_without_it_before_loading(tmp_path, data, monkeypatch):
    _no_gpu(monkeypatch)
    _flags(monkeypatch, "avx2", "fma")
    import assay.evaluator as evaluator

    monkeypatch.setattr(evaluator.Evaluator, "from_pretrained",
                        classmethod(lambda cls, *a, **k: pytest.fail("the model was loaded")))
    res = CliRunner().invoke(cli, ["score", str(ARTIFACT), str(data), "--precision", "bf16"])
    assert res.exit_code == 2
    assert res.output.startswith("error: expected a CPU with amx_bf16 or avx512_bf16")
    assert "Fix: pass --precision auto" in res.output and "Traceback" not in res.output
    res = _score(data, tmp_path / "o.jsonl", "--precision", "bf16")
    err = json.loads(res.output)["error"]
    assert res.exit_code == 2 and err["code"] == "invalid_input" and "avx512_bf16" in err["message"]
    assert not (tmp_path / "o.jsonl").exists()


def test_score_refuses_int8_for_a_family_that_cannot_quantise(tmp_path, data, monkeypatch):
    _no_gpu(monkeypatch)
    res = _score(data, tmp_path / "o.jsonl", "--precision", "int8")
    assert res.exit_code == 2
    assert "an encoder-family evaluator for --precision int8" in res.output and "family linear" in res.output
    assert not (tmp_path / "o.jsonl").exists()


def test_score_rejects_an_unknown_precision_and_ray_with_a_precision(tmp_path, data, monkeypatch):
    res = _score(data, tmp_path / "o.jsonl", "--precision", "fp8")
    assert res.exit_code == 2 and "fp8" in res.output and "auto" in res.output
    _no_gpu(monkeypatch)
    res = _score(data, tmp_path / "o.jsonl", "--precision", "fp32", "--engine", "ray")
    assert res.exit_code == 2 and "--engine ray" in res.output and "--engine local" in res.output


def test_the_evaluator_itself_refuses_int8_outside_the_encoder_family():
    from assay.errors import AssayError
    from assay.evaluator import Evaluator

    with pytest.raises(AssayError, match="encoder-family"):
        Evaluator.from_pretrained(ARTIFACT, device="cpu", precision="int8")


def test_monitor_loads_its_evaluators_at_the_precision(tmp_path, data, monkeypatch):
    _no_gpu(monkeypatch)
    _flags(monkeypatch, "avx2")
    base = ["monitor", "--metric", str(ARTIFACT), "--source", str(data), "--json"]
    res = CliRunner().invoke(cli, base + ["--db", str(tmp_path / "a.db")])
    assert res.exit_code == 0, res.output
    auto = json.loads(res.output[res.output.index("{"):])
    res = CliRunner().invoke(cli, base + ["--db", str(tmp_path / "b.db"), "--precision", "fp32"])
    assert res.exit_code == 0, res.output
    fp32 = json.loads(res.output[res.output.index("{"):])
    name = next(iter(auto["metrics"]))
    assert fp32["metrics"][name]["scored"] == auto["metrics"][name]["scored"] == len(ROWS)
    assert fp32["metrics"][name]["routes"] == auto["metrics"][name]["routes"]
    for precision, expect in (("bf16", "avx512_bf16"), ("int8", "encoder-family")):
        res = CliRunner().invoke(cli, base + ["--db", str(tmp_path / f"{precision}.db"), "--precision", precision])
        assert res.exit_code == 2 and expect in res.output, res.output
        assert not (tmp_path / f"{precision}.db").exists()


def test_monitor_checks_keep_the_artifact_report_and_options(monkeypatch):
    from assay.errors import AssayError
    from assay.monitor import GateCheck, make_checks

    _no_gpu(monkeypatch)
    entries = [{"artifact": str(ARTIFACT), "severity": "high"}, {"gate": {"type": "pii"}}]
    assert make_checks(entries)[0].evaluator.precision == "auto"
    checks = make_checks(entries, precision="fp32")
    model = checks[0]
    assert model.evaluator.precision == "fp32" and model.severity == "high"
    assert model.source == str(ARTIFACT) and model.eval_kappa is not None  # the artifact's report is read
    assert isinstance(checks[1], GateCheck)  # gates are unaffected by the precision
    with pytest.raises(AssayError, match="unknown_key"):  # the monitor's own check of an entry's keys
        make_checks([{"artifact": str(ARTIFACT), "unknown_key": 1}], precision="fp32")


def test_serve_refuses_a_precision_before_starting(tmp_path, monkeypatch):
    pytest.importorskip("uvicorn")
    import uvicorn

    _no_gpu(monkeypatch)
    _flags(monkeypatch, "avx2")
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server started"))
    res = CliRunner().invoke(cli, ["serve", "--db", f"sqlite:///{tmp_path / 'a.db'}", "--artifacts",
                                   str(tmp_path / "art"), "--workers", "0", "--precision", "bf16"])
    assert res.exit_code == 2 and "avx512_bf16" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "a.db").exists()


def test_serve_hands_the_precision_and_threads_to_the_scoring_side(tmp_path, monkeypatch):
    pytest.importorskip("uvicorn")
    import uvicorn

    import assay.cli._serve as serve_mod

    _no_gpu(monkeypatch)
    monkeypatch.delenv(_cpu.SERVE_THREADS_ENV, raising=False)
    seen: dict = {}
    real = serve_mod._registry

    def registry(db, artifacts, **kw):
        seen.update(kw)
        return real(db, artifacts, **kw)

    monkeypatch.setattr(serve_mod, "_registry", registry)
    monkeypatch.setattr(uvicorn, "run", lambda app, **k: seen.setdefault("app", app))
    res = CliRunner().invoke(cli, ["serve", "--db", f"sqlite:///{tmp_path / 'a.db'}", "--artifacts",
                                   str(tmp_path / "art"), "--workers", "0", "--precision", "fp32",
                                   "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "precision fp32" in res.output
    ev = seen["load_evaluator"](str(ARTIFACT))
    assert ev.precision == "fp32"
    import os

    assert os.environ[_cpu.SERVE_THREADS_ENV] == "1"
    monkeypatch.delenv(_cpu.SERVE_THREADS_ENV)
    seen.clear()
    res = CliRunner().invoke(cli, ["serve", "--db", f"sqlite:///{tmp_path / 'a.db'}", "--artifacts",
                                   str(tmp_path / "art"), "--workers", "0"])
    assert res.exit_code == 0, res.output
    assert seen["load_evaluator"] is None  # auto: the registry's own loader

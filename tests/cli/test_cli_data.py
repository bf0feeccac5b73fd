"""`assay generate`, `assay label`, `assay review-data`, and `assay train` with `generate:` (mock provider)."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from click.testing import CliRunner

from _synth_util import make_rows, write_jsonl
from assay.cli import cli


def _config(tmp_path, **extra):
    data = write_jsonl(make_rows(), tmp_path / "test.jsonl")
    cfg = {
        "metric": "pii",
        "data": {"test_set": data.name, "seed_fraction": 0.25},
        "output": "run",
        "generate": {"model": "mock/generator", "target_size": 60},
        "judge": {"model": "mock/teacher", "options": {"agree_with": "meta.lineage.intended_label",
                                                       "accuracy": 0.85}},
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_generate_json_and_text(tmp_path):
    cfg = _config(tmp_path)
    out = CliRunner().invoke(cli, ["generate", str(cfg), "--json"])
    assert out.exit_code == 0, out.output
    s = json.loads(out.output)
    assert s["rows"] == 60 and s["label_counts"] == {"true": 30, "false": 30}
    assert s["seeds"] == 40 and s["held_out"] == 120
    assert s["cost"]["requests"] > 0 and s["judge_agreement"]["rate"] is not None
    data = tmp_path / "run" / "data"
    assert len((data / "train.jsonl").read_text().splitlines()) == 60
    assert (data / "data_report.json").exists() and (data / "review_sample.jsonl").exists()

    out = CliRunner().invoke(cli, ["generate", str(cfg), "--set", "generate.target_size=40"])
    assert out.exit_code == 0, out.output
    assert "generated 40/40 rows" in out.output
    for word in ("labels: true 20, false 20", "dropped:", "judge agreement:", "distribution", "cost: $",
                 "cache hits", "data_report.md", "review_sample.jsonl"):
        assert word in out.output


def test_generate_without_generate_section_is_one_error_line(tmp_path):
    cfg = _config(tmp_path)
    data = yaml.safe_load(cfg.read_text())
    del data["generate"]
    cfg.write_text(yaml.safe_dump(data))
    out = CliRunner().invoke(cli, ["generate", str(cfg)])
    assert out.exit_code == 2
    assert out.output.startswith("error: expected a `generate:` section") and "Traceback" not in out.output


def test_label_a_csv_counts_unparseable_rows(tmp_path):
    rows = make_rows(30)
    src = tmp_path / "logs.csv"
    with src.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "message"])
        w.writeheader()
        for r in rows:
            w.writerow({"id": r["id"], "message": r["input"]})
    out_path = tmp_path / "labeled.jsonl"
    args = ["label", str(src), "--metric", "pii", "--judge", "mock/teacher", "-c", "input=message",
            "--option", "refuse_rate=0.3", "-o", str(out_path), "--json"]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    s = json.loads(out.output)
    labeled = [json.loads(x) for x in out_path.read_text().splitlines()]
    assert len(labeled) == 30 == s["rows"]  # unparseable rows are kept, with label null
    nulls = sum(r["label"] is None for r in labeled)
    assert nulls == s["unparseable"] > 0 and s["labeled"] == 30 - nulls
    assert all(r["label"] in ("true", "false") for r in labeled if r["label"] is not None)
    assert all(r["meta"]["judge"]["model"] == "mock/teacher" for r in labeled)
    again = json.loads(CliRunner().invoke(cli, args).output)
    assert again["provider"]["requests"] == 0 and again["provider"]["cache_hits"] == 30

    text = CliRunner().invoke(cli, args[:-1])
    assert text.exit_code == 0 and f"labeled {30 - nulls}/30 rows" in text.output and "unparseable" in text.output


def test_label_with_existing_labels_reports_agreement(tmp_path):
    src = write_jsonl(make_rows(20), tmp_path / "rows.jsonl")
    out = CliRunner().invoke(cli, ["label", str(src), "-m", "pii", "-j", "mock/teacher", "-o",
                                   str(tmp_path / "o.jsonl"), "--option", "agree_with=meta.human_label",
                                   "--json"])
    assert out.exit_code == 0, out.output
    a = json.loads(out.output)["agreement_with_existing_labels"]
    assert a["n"] == 20 and 0 <= a["accuracy"] <= 1


def test_label_bad_judge_name_is_an_error(tmp_path):
    src = write_jsonl(make_rows(4), tmp_path / "rows.jsonl")
    out = CliRunner().invoke(cli, ["label", str(src), "-m", "pii", "-j", "nomodel", "-o", str(tmp_path / "o.jsonl")])
    assert out.exit_code == 2 and out.output.startswith("error: expected a model named provider/model")


def test_review_data_flow(tmp_path):
    cfg = _config(tmp_path)
    assert CliRunner().invoke(cli, ["generate", str(cfg), "-q"]).exit_code == 0
    out = CliRunner().invoke(cli, ["review-data", "sample", str(cfg), "--json"])
    assert out.exit_code == 0, out.output
    sample = json.loads(out.output)
    assert len(sample) == 50 and all(r["decision"] is None for r in sample)
    ids = [r["id"] for r in sample]
    out = CliRunner().invoke(cli, ["review-data", "decide", str(cfg), ids[0], ids[1], "accept"])
    assert out.exit_code == 0 and "accept: 2 row(s)" in out.output
    out = CliRunner().invoke(cli, ["review-data", "decide", str(cfg), ids[2], "regenerate", "-r", "off-topic"])
    assert out.exit_code == 0, out.output
    out = CliRunner().invoke(cli, ["review-data", "decide", str(cfg), ids[3], "regenerate"])
    assert out.exit_code == 2 and "reason" in out.output
    sample_row = {r["id"]: r for r in sample}
    flip = {"true": "false", "false": "true"}[sample_row[ids[4]]["label"]]
    out = CliRunner().invoke(cli, ["review-data", "decide", str(cfg), ids[4], "relabel"])
    assert out.exit_code == 2 and "--label" in out.output
    out = CliRunner().invoke(cli, ["review-data", "decide", str(cfg), ids[4], "relabel", "--label", flip])
    assert out.exit_code == 0, out.output
    st = json.loads(CliRunner().invoke(cli, ["review-data", "status", str(tmp_path / "run" / "data"),
                                             "--json"]).output)
    assert (st["accept"], st["reject"], st["relabel"], st["pending"]) == (2, 1, 1, 46)  # regenerate = reject
    assert st["feedback"] == ["off-topic (1 row)"]
    text = CliRunner().invoke(cli, ["review-data", "sample", str(cfg)]).output
    assert "2 accepted" in text and "46 pending" in text
    before = [json.loads(x) for x in (tmp_path / "run" / "data" / "train.jsonl").read_text().splitlines()]
    out = CliRunner().invoke(cli, ["generate", str(cfg), "--json", "-q"])
    rep = json.loads(out.output)
    assert rep["cost"]["requests"] > 0  # a replacement for the rejected row, with the reason in its prompt
    after = {r["id"]: r for r in (json.loads(x) for x in (tmp_path / "run" / "data" / "train.jsonl").read_text()
                                                              .splitlines())}
    kept = {r["id"] for r in before} - {ids[2]}
    assert kept <= set(after) and ids[2] not in after  # every row but the rejected one is kept
    assert after[ids[4]]["label"] == flip and all(after[i]["label"] == sample_row[i]["label"] for i in ids[:2])
    new_sample = json.loads(CliRunner().invoke(cli, ["review-data", "sample", str(cfg), "--json"]).output)
    assert not {ids[0], ids[1], ids[2], ids[4]} & {r["id"] for r in new_sample}  # the next sample: undecided rows


def test_generate_then_train_with_the_defaults(tmp_path):
    """`assay generate` then `assay train` on the same config: train takes the folder generate wrote,
    keeps its rows (no new requests) and writes the artifact next to them."""
    cfg = _config(tmp_path, train={"candidates": ["tfidf"]}, report={"bootstrap": 0, "latency_rows": 4})
    assert CliRunner().invoke(cli, ["generate", str(cfg), "-q"]).exit_code == 0
    out = CliRunner().invoke(cli, ["train", str(cfg), "--json", "--quiet"])
    assert out.exit_code == 0, out.output
    run = tmp_path / "run"
    assert (run / "evaluator.json").exists() and (run / "data" / "train.jsonl").exists()
    report = json.loads((run / "data" / "data_report.json").read_text())
    assert report["calls"]["planned"] == 0 and report["reused"]["kept"] == 60  # the generated set, kept


def test_review_command_of_the_monitor_is_untouched():
    out = CliRunner().invoke(cli, ["review", "--help"])
    assert out.exit_code == 0 and "list" in out.output and "decide" not in out.output


@pytest.mark.slow
def test_train_with_generate_runs_end_to_end(tmp_path):
    judge = {"model": "mock/teacher", "options": {"agree_with": "label", "accuracy": 0.9}}  # row's label
    cfg = _config(tmp_path, judge=judge, model={"family": "encoder", "max_length": 64},
                  train={"max_steps": 3, "batch_size": 8, "eval_batch_size": 32},
                  report={"bootstrap": 0, "baselines": False, "latency_rows": 4})
    out = CliRunner().invoke(cli, ["train", str(cfg), "--json", "--quiet"])
    assert out.exit_code == 0, out.output
    s = json.loads(out.output[out.output.index("{"):])
    art = tmp_path / "run"
    info = json.loads((art / "evaluator.json").read_text())
    gen = info["data"]["generation"]
    assert info["data"]["counts"]["generated"] == gen["rows"] == 60
    assert (art / "data" / "train.jsonl").exists() and s["train_rows"] >= 60
    report = json.loads((art / "report.json").read_text())
    judge = report["systems"]["judge"]
    assert judge["kind"] == "probabilities" and judge["n"] == 120
    assert judge["kappa"] > 0.5  # the mock judge agrees with the human labels about 90% of the time
    assert info["judge"]["model"] == "mock/teacher" and info["judge"]["answered"] == 120

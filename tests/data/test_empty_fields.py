"""An empty response is data: rows with an empty field are kept as empty text and counted; only a row
with no text in any field the metric reads is refused."""

from __future__ import annotations

import json

from click.testing import CliRunner


def _pairs(n: int, empty_b: int):
    rows = []
    for i in range(n):
        rows.append({"id": f"p{i}", "input": f"question {i}: how do I boil an egg?",
                     "output": f"Put egg {i} in boiling water for {6 + i % 4} minutes.",
                     "output_b": "" if i < empty_b else f"Boil it {i} times.", "label": ("a", "b", "tie")[i % 3]})
    return rows


def test_empty_responses_are_kept_and_counted():
    from assay.data import validate_rows
    from assay.metrics import load_metric

    assert load_metric("pairwise_preference").labels == ("a", "b", "tie")
    rows = _pairs(40, empty_b=6)
    rows[7]["output_b"] = None  # a null is empty text too
    v = validate_rows(rows, load_metric("pairwise_preference"), source="prefs.jsonl")
    assert v.ok and len(v.rows) == 40
    assert v.empty_fields == {"output_b": 7}
    assert any("7 rows of prefs.jsonl have an empty 'output_b'" in w for w in v.warnings)
    assert v.summary()["empty_fields"] == {"output_b": 7}


def test_a_row_with_no_text_at_all_is_still_refused():
    from assay.data import validate_rows
    from assay.metrics import load_metric

    rows = _pairs(10, empty_b=0)
    rows[3].update(input="", output=" ", output_b=None)
    v = validate_rows(rows, load_metric("pairwise_preference"))
    assert not v.ok and v.errors[0].row == 3
    assert "no text in any of 'input', 'output', 'output_b'" in v.errors[0].problem
    assert len(v.rows) == 9  # the others are kept


def test_validate_and_train_accept_a_file_with_empty_responses(tmp_path):
    from assay.cli import cli
    from assay.config import config_from_dict
    from assay.train import train

    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _pairs(60, empty_b=5)))
    out = CliRunner().invoke(cli, ["validate", str(path), "--metric", "pairwise_preference", "--json"])
    assert out.exit_code == 0, out.output
    assert "empty 'output_b'" in out.output
    cfg = config_from_dict({"metric": "pairwise_preference",
                            "data": {"test_set": "prefs.jsonl", "seed_fraction": 0.5, "train_on_seeds": True},
                            "model": {"family": "encoder", "max_length": 32},
                            "train": {"candidates": ["tfidf"], "cv_folds": 3, "seed": 0},
                            "report": {"bootstrap": 20, "latency_rows": 4}, "output": "out"}, base_dir=tmp_path)
    result = train(cfg, progress=False)
    data = result.data
    assert data["counts"]["test_set"] == 60 and data["counts"]["empty_fields"] == {"output_b": 5}
    assert any("5 rows of" in n and "empty 'output_b'" in n for n in data["notes"])
    assert any("empty 'output_b'" in n for n in result.report["notes"])  # report.json / .md say it too

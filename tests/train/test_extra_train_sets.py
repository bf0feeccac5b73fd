"""``data.extra_train_sets`` (what `assay retrain` adds: reviewed verdicts): training rows only, never held out."""

from __future__ import annotations

import json

from _train_util import config, make_data, write_rows

from assay.data import row_hash
from assay.train import train


def test_extra_train_sets_are_training_rows_only(tmp_path):
    make_data(tmp_path)
    reviews = [{"id": f"r{i}", "input": f"zqxreviewed production text {i}", "label": "true"} for i in range(7)]
    write_rows(tmp_path / "reviews.jsonl", reviews)
    cfg = config(tmp_path, ["tfidf"])
    cfg.data.extra_train_sets = ["reviews.jsonl"]
    result = train(cfg, progress=False)

    counts = result.data["counts"]
    assert counts["extra_train_sets"] == 7 and counts["train_rows"] == counts["train_set"] + 7
    assert result.data["extra_train_sets"] == [str(tmp_path / "reviews.jsonl")]
    split = json.loads((result.artifact_dir / "split.json").read_text())
    reviewed = {row_hash(r) for r in reviews}
    assert reviewed <= set(split["trained_on"]) and not reviewed & set(split["held_out"])
    assert result.report["n"] == counts["held_out"]  # the held-out rows are the test set's, as without extras
    assert "extra_train_sets:" in (result.artifact_dir / "config.yaml").read_text()

"""``assay.batch.score_metrics``: several evaluators over one file, chunk by chunk in one shared-body scope,
with the records ``score_file`` gives each alone and MiniLM run once per row for the metrics on it."""

from __future__ import annotations

import json

import pytest
from _shared_util import linear_evaluator, real_rows

pytest.importorskip("sklearn")


def test_score_metrics_gives_each_metric_its_score_file_records(tmp_path, monkeypatch):
    from assay.batch import score_file, score_metrics
    from assay.evaluator._linear import EmbedFeatures

    rows = real_rows(n=10)
    evs = [linear_evaluator("toxicity", rows, "embed"), linear_evaluator("pii", rows, "embed", salt=1),
           linear_evaluator("prompt_injection", rows, "tfidf", salt=2)]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"id": r["id"], "input": r["input"]}) + "\n" for r in rows))
    seen: list[int] = []
    pooled = EmbedFeatures.pooled
    monkeypatch.setattr(EmbedFeatures, "pooled", lambda self, b: seen.append(len(b)) or pooled(self, b))
    alone = [score_file(ev, path, batch_size=4) for ev in evs]
    assert sum(seen) == 2 * len(rows)
    seen.clear()
    shared = score_metrics(evs, path, batch_size=4)
    assert sum(seen) == len(rows)  # the two MiniLM metrics: one forward per row
    for a, s in zip(alone, shared):
        assert [r["id"] for r in s.scores] == [r["id"] for r in a.scores] == [r["id"] for r in rows]
        assert [r["label"] for r in s.scores] == [r["label"] for r in a.scores]
        assert [r["score"] for r in s.scores] == pytest.approx([r["score"] for r in a.scores], abs=1e-6)
        assert s.engine == "local" and s.skipped == a.skipped

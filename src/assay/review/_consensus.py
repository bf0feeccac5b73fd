"""Several reviewers per verdict: whose label counts, and what the people's label of a verdict is.

The rules, in one place (the store, the golden set, retraining, drift and the agreement report
all read them from here):

- **Every label is kept.** The reviews table is append-only: nothing is updated or deleted.
- **One current label per reviewer.** A second label by the same reviewer *replaces* theirs (their
  latest review counts; the earlier one stays in the history). Reviews without a reviewer name
  count as one reviewer, "anonymous", so a store where nobody gave a name behaves as before
  (the latest label wins).
- **Judge labels are not people's labels.** A review whose reviewer starts with ``judge:``
  (``judge:<provider/model>``) records an LLM judge's label for the verdict: it is reported as
  judge-vs-human agreement and never counts toward the people's label, the review queue or the
  golden set.
- **The people's label (consensus)** is the label that more reviewers gave than any other
  (strict plurality: unanimous, or a majority such as 2 of 3). A tie (1 vs 1, or 1-1-1) has no
  consensus: the verdict goes to the disagreement queue and stays out of the golden set, the
  retraining rows and the student-vs-human figures until a deciding review breaks the tie.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Mapping

JUDGE_PREFIX = "judge:"
ANONYMOUS = "anonymous"  # how a review without a reviewer name is shown

# review_status values
UNREVIEWED = "unreviewed"  # no person's label yet
SINGLE = "single"  # one reviewer
UNANIMOUS = "unanimous"  # two or more reviewers, all the same label
MAJORITY = "majority"  # two or more reviewers, one label ahead of every other
TIE = "tie"  # two or more reviewers, no label ahead: no consensus, in the disagreement queue


def clean_reviewer(reviewer: str | None) -> str | None:
    """A reviewer name as stored: surrounding spaces dropped; empty is no name (None)."""
    if reviewer is None:
        return None
    name = str(reviewer).strip()
    return name or None


def is_judge(reviewer: str | None) -> bool:
    """Whether a review records an LLM judge's label (reviewer ``judge:<model>``), not a person's."""
    return reviewer is not None and reviewer.lower().startswith(JUDGE_PREFIX)


def current_reviews(reviews: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Reviewer (``anonymous`` for no name) -> their latest review; ``reviews`` oldest first (by id)."""
    out: dict[str, dict[str, Any]] = {}
    for r in sorted(reviews, key=lambda r: r["id"]):
        out[r.get("reviewer") or ANONYMOUS] = dict(r)
    return out


def consensus(labels: Iterable[str]) -> tuple[str | None, str]:
    """The people's label of one verdict from its reviewers' current labels, and how it was reached."""
    counts = Counter(labels)
    if not counts:
        return None, UNREVIEWED
    n = sum(counts.values())
    ranked = counts.most_common()
    if n == 1:
        return ranked[0][0], SINGLE
    if len(ranked) == 1:
        return ranked[0][0], UNANIMOUS
    if ranked[0][1] > ranked[1][1]:
        return ranked[0][0], MAJORITY
    return None, TIE


def summarize_reviews(reviews: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One verdict's reviews -> ``reviews`` (people's current labels), ``judges`` (judge -> label),
    ``review_label`` (the consensus, None without one), ``review_status``, and ``reviewer``,
    ``review_note``, ``reviewed_at`` of the latest person's review (None without one)."""
    reviews = list(reviews)
    latest = max((r for r in reviews if not is_judge(r.get("reviewer"))), key=lambda r: r["id"], default=None)
    current = current_reviews(reviews)
    people = [dict(r, reviewer=name) for name, r in current.items() if not is_judge(name)]
    judges = {name: r["label"] for name, r in current.items() if is_judge(name)}
    label, status = consensus(r["label"] for r in people)
    return {"reviews": [{"review_id": r["id"], "reviewer": r["reviewer"], "label": r["label"], "note": r.get("note"),
                         "created_at": r["created_at"]} for r in people],
            "judges": judges, "review_label": label, "review_status": status,
            "reviewer": latest.get("reviewer") if latest else None, "review_note": latest.get("note") if latest else None,
            "reviewed_at": latest["created_at"] if latest else None}

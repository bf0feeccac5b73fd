"""Review: what people (and LLM judges) say about verdicts and rows, kept, counted and compared.

- the one review store (``_store``): ``ReviewStore`` (``record`` / ``history`` / ``latest`` of
  ``Decision`` records) with its backends ``VerdictReviews`` (routed verdicts, ``monitor.db``),
  ``DatasetReviews`` (a registry dataset's review sample) and ``ReviewLog`` (a generated training
  set's review sample, ``review.jsonl``);
- which rows are reviewed: ``sample_for_review`` (stratified, generated sets), ``pick_for_review``
  (the same rows every time, registry datasets);
- routed verdicts: ``label`` (``assay review label``), ``find_verdict``, ``golden_rows`` and ``export``
  (the golden set);
- several reviewers: ``consensus`` (whose label counts, ties queued as disagreements), and
  ``agreement_report`` (human-vs-human, judge-vs-human, student-vs-human), ``record_judge_labels``.
"""

from ._agreement import (agreement_report, krippendorff_alpha, pairwise_agreement, rater_agreement,
                         record_judge_labels)
from ._consensus import (ANONYMOUS, JUDGE_PREFIX, MAJORITY, SINGLE, TIE, UNANIMOUS, UNREVIEWED, clean_reviewer,
                         consensus, current_reviews, is_judge, summarize_reviews)
from ._rows import pick_for_review, sample_for_review
from ._store import (ALIASES, DECISIONS, HUMAN, LABEL, LOG_FILE, PRESET_REASONS, SAMPLE_FILE, DatasetReviews,
                     Decision, ReviewLog, ReviewStore, VerdictReviews, check_decision)
from ._verdicts import VerdictStore, export, find_verdict, golden_rows, label

__all__ = [
    "ALIASES", "ANONYMOUS", "DECISIONS", "HUMAN", "JUDGE_PREFIX", "LABEL", "LOG_FILE", "MAJORITY", "PRESET_REASONS",
    "SAMPLE_FILE", "SINGLE", "TIE", "UNANIMOUS", "UNREVIEWED", "DatasetReviews", "Decision", "ReviewLog",
    "ReviewStore", "VerdictReviews", "VerdictStore", "agreement_report", "check_decision", "clean_reviewer",
    "consensus", "current_reviews", "export", "find_verdict", "golden_rows", "is_judge", "krippendorff_alpha", "label",
    "pairwise_agreement", "pick_for_review", "rater_agreement", "record_judge_labels", "sample_for_review",
    "summarize_reviews",
]

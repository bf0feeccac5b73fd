"""Synthetic training data from a few labeled seed rows: generation, judge supervision, review.

``generate_training_set(config, seeds, held_out)`` plans generator calls from the seeds only,
filters (held-out leakage, duplicates), lets the judge label every row, tops up while short and
writes train.jsonl, data_report.json/.md and a stratified review sample to ``config.data_dir()``.
"""

from ._dedupe import NearDuplicateIndex, jaccard, key_text, normalize, shingles
from ._filter import RowFilter, to_row
from ._generate import GenerationResult, generate_training_set
from ._plan import Call, apportion, label_targets, plan_calls
from ._prompts import EXPANSION, STRATEGIES, build_prompt, parse_rows
from ._report import DROPPED_FILE, REPORT_FILE, REPORT_MD, TRAIN_FILE, report_markdown
from ._stats import distribution_check, diversity_stats, length_stats

# the review of generated rows is ``assay.review``'s (one review store); its names stay importable here
from ..review import DECISIONS, LOG_FILE, PRESET_REASONS, SAMPLE_FILE, Decision, ReviewLog, sample_for_review

__all__ = [
    "DECISIONS",
    "DROPPED_FILE",
    "EXPANSION",
    "LOG_FILE",
    "PRESET_REASONS",
    "REPORT_FILE",
    "REPORT_MD",
    "SAMPLE_FILE",
    "STRATEGIES",
    "TRAIN_FILE",
    "Call",
    "Decision",
    "GenerationResult",
    "NearDuplicateIndex",
    "ReviewLog",
    "RowFilter",
    "apportion",
    "build_prompt",
    "distribution_check",
    "diversity_stats",
    "generate_training_set",
    "jaccard",
    "key_text",
    "label_targets",
    "length_stats",
    "normalize",
    "parse_rows",
    "plan_calls",
    "report_markdown",
    "sample_for_review",
    "shingles",
    "to_row",
]

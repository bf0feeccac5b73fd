"""The judge is the ceiling: tune a metric's judge prompt against people, and find the rows it is unsure of.

- :func:`tune_judge`: measure the judge prompt's agreement with human labels (Cohen's kappa), ask the
  provider for revised prompts from the rows where judge and people disagree, keep the best by kappa on a
  validation part, and measure the start and the chosen prompt once on a test part the search never saw.
- :func:`judge_consistency`: judge each row several times (temperature > 0 or paraphrased prompts); rows
  whose verdict flips are ambiguous, each with a short question for the expert, exported as JSONL.
- :func:`discover`: reviewed rows with notes (or judge rationales) -> failure-mode clusters, one binary
  check per cluster measured against the reviewed labels; the kept ones written as metric specs.
"""

from ._consistency import AmbiguousRow, ConsistencyResult, judge_consistency
from ._discover import Discovery, FoundCheck, discover
from ._measure import Agreement, measure_prompt
from ._reviewed import Reviewed, read_reviewed
from ._split import TuneSplit, split_for_tuning
from ._tune import Candidate, TuneResult, tune_judge

__all__ = [
    "Agreement",
    "AmbiguousRow",
    "Candidate",
    "ConsistencyResult",
    "Discovery",
    "FoundCheck",
    "Reviewed",
    "TuneResult",
    "TuneSplit",
    "discover",
    "judge_consistency",
    "measure_prompt",
    "read_reviewed",
    "split_for_tuning",
    "tune_judge",
]

"""What a new ``generate`` keeps from the last one: every row a reviewer did not reject.

A generation writes a fingerprint of what decides its rows (the metric, the seeds, the generator and
judge, and the generate settings other than feedback, review size and concurrency) into its data
report. The next run with the same fingerprint starts from that set: rejected rows are left out
(and their reasons go into the prompts of the replacements), relabelled rows keep the reviewer's
label, and only the missing rows are generated. ``generate`` then ``train`` therefore costs one
generation, and a review followed by ``generate`` regenerates only what was rejected.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..data import row_hash
from ..review import ReviewLog

# settings that do not change which rows a generation yields
VOLATILE = ("feedback", "review_size", "concurrency", "output", "timeout", "max_retries", "backoff", "max_backoff",
            "api_key_env", "cache", "prices")


def fingerprint(config: Any, metric: Any, seeds: Sequence[dict[str, Any]]) -> str:
    """A hash of what decides the generated rows (see the module docstring)."""
    gen = {k: v for k, v in config.generate.model_dump(mode="json").items() if k not in VOLATILE}
    judge = config.judge.model_dump(mode="json") if config.judge is not None else None
    judge = {k: v for k, v in judge.items() if k not in VOLATILE} if judge else None
    body = {"metric": metric.name, "labels": list(metric.labels), "shape": metric.shape.value,
            "prompt": metric.prompt, "seeds": sorted(row_hash(s) + str(s.get("label")) for s in seeds),
            "generate": gen, "judge": judge}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Previous:
    rows: list[dict[str, Any]] = field(default_factory=list)  # kept, relabels applied
    rejected: int = 0
    relabelled: int = 0
    found: int = 0  # rows in the last set

    def summary(self) -> dict[str, int]:
        return {"kept": len(self.rows), "rejected": self.rejected, "relabelled": self.relabelled,
                "last_set": self.found}


def previous_rows(data_dir: Path, fp: str, review: ReviewLog, train_file: str, report_file: str) -> Previous:
    """The last set in ``data_dir`` minus rejected rows, when it was made with fingerprint ``fp``."""
    try:
        report = json.loads((data_dir / report_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Previous()
    if not isinstance(report, dict) or report.get("fingerprint") != fp or not (data_dir / train_file).exists():
        return Previous()
    with (data_dir / train_file).open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    excluded, relabels = review.excluded_hashes(), review.relabels()
    out = Previous(found=len(rows))
    for r in rows:
        h = row_hash(r)
        if h in excluded:
            out.rejected += 1
            continue
        if h in relabels and relabels[h] != r.get("label"):
            r = {**r, "label": relabels[h], "meta": {**(r.get("meta") or {}), "relabelled_in_review": True}}
            out.relabelled += 1
        out.rows.append(r)
    return out

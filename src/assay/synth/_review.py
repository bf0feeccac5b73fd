"""Human review: a stratified sample of generated rows, and a log of the decisions on them.

Decisions are appended to ``review.jsonl`` next to the training set (one JSON object per line:
id, row_hash, decision, reason, label, at); the latest decision for a row wins. The vocabulary is the
registry's (the web UI's): ``accept`` (keep), ``reject`` (leave out; its reason goes into the next
generation round's prompts, and the row's content is kept out of the next set) and ``relabel`` (keep
with the reviewer's label). ``regenerate``, the old spelling of a reject with a reason, is read as
``reject``. The next ``generate`` keeps every row not rejected and generates only replacements.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import AssayError
from ..data import row_hash

DECISIONS = ("accept", "reject", "relabel")
ALIASES = {"regenerate": "reject"}  # older logs and the old CLI spelling
PRESET_REASONS = ("too repetitive", "labels look wrong", "off-topic")
SAMPLE_FILE = "review_sample.jsonl"
LOG_FILE = "review.jsonl"


def sample_for_review(rows: Sequence[Mapping[str, Any]], size: int = 50, seed: int = 0) -> list[dict[str, Any]]:
    """``size`` rows stratified by (label, strategy): every stratum gets a share in proportion to
    its size (at least one row while the size allows), picked at random with ``seed``."""
    if size <= 0 or not rows:
        return []
    strata: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        strata[(str(r.get("label")), str(_lineage(r).get("strategy")))].append(i)
    keys = sorted(strata)
    size = min(size, len(rows))
    alloc = {k: 0 for k in keys}
    for k in sorted(keys, key=lambda k: -len(strata[k]))[:size]:
        alloc[k] = 1
    left = size - sum(alloc.values())
    if left > 0:
        quota = {k: left * len(strata[k]) / len(rows) for k in keys}
        for k in keys:
            alloc[k] += min(int(quota[k]), len(strata[k]) - alloc[k])
        order = sorted(keys, key=lambda k: -(quota[k] - int(quota[k])))
        while sum(alloc.values()) < size:
            for k in order:
                if sum(alloc.values()) < size and alloc[k] < len(strata[k]):
                    alloc[k] += 1
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for k in keys:
        idx = strata[k]
        picked += [idx[i] for i in sorted(rng.choice(len(idx), size=alloc[k], replace=False))]
    return [dict(rows[i]) for i in sorted(picked)]


def _content(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("input", "output", "context", "tools") if row.get(k) not in (None, "")}


def _lineage(row: Mapping[str, Any]) -> Mapping[str, Any]:
    return (row.get("meta") or {}).get("lineage") or {}


@dataclass
class Decision:
    id: str
    decision: str
    reason: str = ""
    row_hash: str | None = None
    at: float = 0.0
    row: dict[str, Any] | None = None  # the row's content, kept for reject (excluded next time)
    label: str | None = None  # relabel: the reviewer's label

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.id, "row_hash": self.row_hash, "decision": self.decision, "reason": self.reason,
             "at": self.at}
        if self.row is not None:
            d["row"] = self.row
        if self.label is not None:
            d["label"] = self.label
        return d


class ReviewLog:
    """The review sample and the decisions taken on it, in one folder."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.sample_path = self.folder / SAMPLE_FILE
        self.log_path = self.folder / LOG_FILE

    def sample(self) -> list[dict[str, Any]]:
        if not self.sample_path.exists():
            return []
        with self.sample_path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def history(self) -> list[Decision]:
        if not self.log_path.exists():
            return []
        out = []
        with self.log_path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    d = json.loads(line)
                    out.append(Decision(d["id"], ALIASES.get(d["decision"], d["decision"]), d.get("reason") or "",
                                        d.get("row_hash"), float(d.get("at") or 0), d.get("row"), d.get("label")))
        return out

    def decisions(self) -> dict[str, Decision]:
        """The latest decision per row id."""
        latest: dict[str, Decision] = {}
        for d in self.history():
            latest[d.id] = d
        return latest

    def record(self, ids: Sequence[str], decision: str, reason: str = "", label: str | None = None,
               labels: Sequence[str] | None = None) -> list[Decision]:
        """Append ``decision`` for sample rows ``ids``; ``label`` for relabel (checked against ``labels``)."""
        if decision == "regenerate" and not reason.strip():
            raise AssayError("a reason for regenerate", "none",
                             "pass --reason, e.g. " + ", ".join(repr(r) for r in PRESET_REASONS) + " or free text")
        decision = ALIASES.get(decision, decision)
        if decision not in DECISIONS:
            raise AssayError(f"a decision among {list(DECISIONS)}", f"'{decision}'", "use accept, reject or relabel")
        by_id = {str(r.get("id")): r for r in self.sample()}
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise AssayError("ids from the review sample", f"unknown ids {unknown[:5]}",
                             f"list them with `assay review-data sample {self.folder}`", code="not_found")
        known = list(labels) if labels else sorted({str(r["label"]) for r in by_id.values() if r.get("label")})
        if decision == "relabel" and (label is None or label not in known):
            raise AssayError(f"relabel with one of the metric's labels {known}", f"label {label!r}",
                             "pass --label LABEL", code="invalid_input")
        now = time.time()
        out = [Decision(i, decision, reason.strip(), row_hash(by_id[i]), now,
                        _content(by_id[i]) if decision == "reject" else None,
                        label if decision == "relabel" else None) for i in ids]
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as fh:
            for d in out:
                fh.write(json.dumps(d.to_dict(), ensure_ascii=False) + "\n")
        return out

    def status(self) -> dict[str, Any]:
        latest = self.decisions()
        sample = self.sample()
        counts = Counter(d.decision for d in latest.values() if any(str(r.get("id")) == d.id for r in sample))
        return {"sample": len(sample), **{d: counts.get(d, 0) for d in DECISIONS},
                "pending": len(sample) - sum(counts.values()), "feedback": self.feedback()}

    def feedback(self) -> list[str]:
        """Distinct reasons from reject and relabel decisions, most frequent first, with counts."""
        reasons = Counter(d.reason for d in self.decisions().values()
                          if d.decision in ("reject", "relabel") and d.reason)
        return [f"{r} ({n} row{'s' if n != 1 else ''})" for r, n in reasons.most_common()]

    def excluded_hashes(self) -> set[str]:
        return {d.row_hash for d in self.decisions().values() if d.decision == "reject" and d.row_hash}

    def excluded_rows(self) -> list[dict[str, Any]]:
        """The content of rejected rows (latest decision per row)."""
        return [d.row for d in self.decisions().values() if d.decision == "reject" and d.row]

    def relabels(self) -> dict[str, str]:
        """Row content hash -> the reviewer's label, for rows whose latest decision is relabel."""
        return {d.row_hash: d.label for d in self.decisions().values()
                if d.decision == "relabel" and d.row_hash and d.label}

    def decided_hashes(self) -> set[str]:
        return {d.row_hash for d in self.decisions().values() if d.row_hash}

    def write_sample(self, rows: Sequence[Mapping[str, Any]]) -> Path:
        """Write the sample; decisions already taken on the same rows are kept in the log."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.sample_path.open("w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(dict(r), ensure_ascii=False, default=str) + "\n")
        return self.sample_path

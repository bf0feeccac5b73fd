"""The review store: the one module that reads and writes review decisions.

A review decision is one person's (or an LLM judge's) word on one subject: a label on a routed
verdict, or accept / reject / relabel on a sampled row of a training set. Decisions are only ever
appended, never updated or deleted; which of them count is read from the history (on a verdict,
each reviewer's latest label and their consensus, see ``_consensus``; on a row, its latest decision).

Every backend is a :class:`ReviewStore` (``record`` appends decisions, ``history`` reads them back
as :class:`Decision` records, ``latest`` is the latest per subject), one per place decisions have
always been kept:

- :class:`VerdictReviews`: routed verdicts of the monitor, the ``reviews`` table of ``monitor.db``
  (subject: a verdict id; ``Store.add_review`` / ``Store.reviews`` and the queue queries use it);
- :class:`DatasetReviews`: a registry dataset's review sample, the ``review_items`` and
  ``review_decisions`` tables of the registry database (subject: a review item id; the web UI and
  ``/v1/review``; ``reg.datasets`` uses it);
- :class:`ReviewLog`: a generated training set's review sample, ``review_sample.jsonl`` and
  ``review.jsonl`` next to it (subject: a sample row id; ``assay review-data``, ``assay generate``).

The tables and the file stay where they were: merging them would move users' decisions between a
SQLite file on the monitoring host, the registry database (SQLite or PostgreSQL) and a folder. The
schemas stay the stores' own (``monitor/_store.MIGRATIONS``, ``registry/_migrations.py``); the SQL
and file formats that read and write decisions are all here.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Mapping, Sequence

from ..data import row_hash
from ..errors import AssayError
from ._consensus import clean_reviewer

LABEL = "label"  # the decision of a verdict review: the reviewer's label
DECISIONS = ("accept", "reject", "relabel")  # the decisions on a sampled row (the registry's, the web UI's)
ALIASES = {"regenerate": "reject"}  # older logs and the old CLI spelling
PRESET_REASONS = ("too repetitive", "labels look wrong", "off-topic")
SAMPLE_FILE = "review_sample.jsonl"
LOG_FILE = "review.jsonl"


@dataclass
class Decision:
    """One review decision, as every backend reads it back."""

    id: Any  # the subject: a sample row id, a review item id, a verdict id
    decision: str  # accept / reject / relabel (a row), label (a verdict)
    reason: str | None = ""  # the reviewer's note (a row's reason)
    row_hash: str | None = None  # a row: its content hash
    at: float = 0.0
    row: dict[str, Any] | None = None  # a rejected generated row's content, kept out of the next set
    label: str | None = None  # relabel: the reviewer's label; a verdict: the label
    reviewer: str | None = None
    review_id: int | None = None  # the decision's own id in a table (None: a line of review.jsonl)

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.id, "row_hash": self.row_hash, "decision": self.decision, "reason": self.reason,
             "at": self.at}
        for key in ("row", "label", "reviewer", "review_id"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d


def check_decision(decision: str) -> str:
    """A decision on a row, refused unless it is one of ``DECISIONS``."""
    if decision not in DECISIONS:
        raise AssayError(f"a decision among {list(DECISIONS)}", f"'{decision}'",
                         "accept the label, reject the row, or relabel it", code="invalid_input")
    return decision


class ReviewStore(ABC):
    """Review decisions on subjects: appended by ``record``, read back by ``history``."""

    @abstractmethod
    def record(self, subjects: Sequence[Any], decision: str, *, label: str | None = None,
               reviewer: str | None = None, note: str | None = "") -> list[Decision]:
        """Append ``decision`` on each subject; the decisions as stored."""

    @abstractmethod
    def history(self, subjects: Iterable[Any] | None = None) -> list[Decision]:
        """Every decision (on ``subjects``: only theirs), oldest first."""

    def latest(self, subjects: Iterable[Any] | None = None) -> dict[Any, Decision]:
        """The latest decision per subject."""
        return {d.id: d for d in self.history(subjects)}


# --- routed verdicts: monitor.db ----------------------------------------------------------------
# a person's review, not a judge's (reviewer ``judge:...``, see ``_consensus``); LIKE ignores ASCII case
HUMAN = "(reviewer IS NULL OR reviewer NOT LIKE 'judge:%')"


class VerdictReviews(ReviewStore):
    """The ``reviews`` table of a monitor database: several reviewers per verdict, judges' labels too.

    ``PERSON_REVIEWED`` and ``DISPUTED`` are conditions on a verdicts row ``v`` for the store's queries."""

    PERSON_REVIEWED = f"EXISTS (SELECT 1 FROM reviews WHERE verdict_id=v.id AND {HUMAN})"
    DISPUTED = (f"v.id IN (SELECT verdict_id FROM reviews WHERE {HUMAN} GROUP BY verdict_id"
                " HAVING COUNT(DISTINCT COALESCE(reviewer, '')) >= 2)")

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock | None = None):
        self.db = db
        self.lock = lock or threading.RLock()

    def add(self, verdict_id: int, label: str, reviewer: str | None = None, note: str | None = None) -> int:
        """Append one reviewer's label for a verdict; its review id."""
        with self.lock, self.db:
            cur = self.db.execute(
                "INSERT INTO reviews (verdict_id, label, reviewer, note, created_at) VALUES (?, ?, ?, ?, ?)",
                (verdict_id, label, clean_reviewer(reviewer), note, time.time()))
        return int(cur.lastrowid)

    def record(self, subjects: Sequence[Any], decision: str = LABEL, *, label: str | None = None,
               reviewer: str | None = None, note: str | None = None) -> list[Decision]:
        if decision != LABEL or label is None:
            raise AssayError("a label for the verdict", f"decision {decision!r}, label {label!r}", "pass label=",
                             code="invalid_input")
        ids = [self.add(int(v), label, reviewer, note) for v in subjects]
        return [d for d in self.history(subjects) if d.review_id in ids]

    def rows(self, verdict_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        """Verdict id -> its reviews as table rows (id, verdict_id, label, reviewer, note, created_at), oldest first."""
        out: dict[int, list[dict[str, Any]]] = {}
        ids = list(verdict_ids)
        with self.lock:
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                for r in self.db.execute(f"SELECT * FROM reviews WHERE verdict_id IN ({','.join('?' * len(part))})"
                                         " ORDER BY id", part):
                    out.setdefault(r["verdict_id"], []).append(dict(r))
        return out

    def history(self, subjects: Iterable[Any] | None = None) -> list[Decision]:
        if subjects is None:
            with self.lock:
                found = [dict(r) for r in self.db.execute("SELECT * FROM reviews ORDER BY id")]
        else:
            found = sorted((r for rs in self.rows([int(s) for s in subjects]).values() for r in rs),
                           key=lambda r: r["id"])
        return [Decision(r["verdict_id"], LABEL, r["note"], at=r["created_at"], label=r["label"],
                         reviewer=r["reviewer"], review_id=r["id"]) for r in found]


# --- a registry dataset's review sample -----------------------------------------------------------
class DatasetReviews(ReviewStore):
    """The registry's ``review_items`` (the rows picked for review) and ``review_decisions`` tables.

    ``tx`` opens a transaction on the registry database; ``items`` / ``decisions`` are its SQLAlchemy
    tables (the registry owns the schema)."""

    def __init__(self, tx: Callable[[], ContextManager[Any]], now: Callable[[], float], items: Any, decisions: Any):
        self.tx, self.now, self.items_table, self.decisions_table = tx, now, items, decisions

    def has_items(self, dataset_id: str) -> bool:
        from sqlalchemy import func, select

        t = self.items_table
        with self.tx() as conn:
            return bool(conn.execute(select(func.count()).select_from(t).where(t.c.dataset_id == dataset_id)).scalar())

    def add_items(self, dataset_id: str, rows: Mapping[int, Mapping[str, Any]], new_id: Callable[[], str]) -> None:
        """Put the rows (position -> row) of a dataset up for review."""
        from sqlalchemy import insert

        with self.tx() as conn:
            for pos in sorted(rows):
                conn.execute(insert(self.items_table).values(
                    id=new_id(), dataset_id=dataset_id, position=pos,
                    row_data=json.dumps(rows[pos], ensure_ascii=False, default=str),
                    proposed_label=rows[pos].get("label"), created_at=self.now()))

    def items(self, dataset_id: str) -> list[dict[str, Any]]:
        """The dataset's review items in position order, each with its latest decision (or None)."""
        from sqlalchemy import select

        t, d = self.items_table, self.decisions_table
        with self.tx() as conn:
            items = conn.execute(select(t).where(t.c.dataset_id == dataset_id).order_by(t.c.position)).mappings().all()
            decisions = conn.execute(select(d).join(t, t.c.id == d.c.item_id).where(t.c.dataset_id == dataset_id)
                                     .order_by(d.c.id)).mappings().all()
        latest = {x["item_id"]: x for x in decisions}
        out = []
        for it in items:
            x = latest.get(it["id"])
            out.append({"id": it["id"], "dataset_id": it["dataset_id"], "position": it["position"],
                        "row": json.loads(it["row_data"]) if it["row_data"] else {},
                        "proposed_label": it["proposed_label"], "decision": x["decision"] if x else None,
                        "label": x["label"] if x else None, "reviewer": x["reviewer"] if x else None,
                        "note": x["note"] if x else None})
        return out

    def dataset_of(self, item_id: str) -> str | None:
        """The dataset a review item belongs to (None: no such item)."""
        from sqlalchemy import select

        t = self.items_table
        with self.tx() as conn:
            return conn.execute(select(t.c.dataset_id).where(t.c.id == item_id)).scalar()

    def record(self, subjects: Sequence[Any], decision: str, *, label: str | None = None,
               reviewer: str | None = None, note: str | None = "") -> list[Decision]:
        from sqlalchemy import insert

        check_decision(decision)
        now = self.now()
        with self.tx() as conn:
            for item_id in subjects:
                conn.execute(insert(self.decisions_table).values(
                    item_id=item_id, decision=decision, label=label if decision == "relabel" else None,
                    reviewer=reviewer or "", note=note or "", created_at=now))
        return [self.latest([s])[s] for s in subjects]

    def history(self, subjects: Iterable[Any] | None = None) -> list[Decision]:
        from sqlalchemy import select

        d = self.decisions_table
        query = select(d).order_by(d.c.id)
        if subjects is not None:
            query = query.where(d.c.item_id.in_(list(subjects)))
        with self.tx() as conn:
            found = conn.execute(query).mappings().all()
        return [Decision(x["item_id"], x["decision"], x["note"], at=float(x["created_at"]), label=x["label"],
                         reviewer=x["reviewer"], review_id=x["id"]) for x in found]


# --- a generated training set's review sample: files ----------------------------------------------
def _content(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("input", "output", "context", "tools") if row.get(k) not in (None, "")}


class ReviewLog(ReviewStore):
    """The review sample of a generated training set and the decisions taken on it, in one folder.

    Decisions are appended to ``review.jsonl`` (one JSON object per line: id, row_hash, decision, reason,
    label, at); the latest decision for a row wins. ``accept`` keeps a row, ``reject`` leaves it out
    (its reason goes into the next generation round's prompts, its content is kept out of the next
    set), ``relabel`` keeps it with the reviewer's label; ``regenerate``, the old spelling of a reject
    with a reason, is read as ``reject``. The next ``generate`` keeps every row not rejected."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.sample_path = self.folder / SAMPLE_FILE
        self.log_path = self.folder / LOG_FILE

    def sample(self) -> list[dict[str, Any]]:
        if not self.sample_path.exists():
            return []
        with self.sample_path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def write_sample(self, rows: Sequence[Mapping[str, Any]]) -> Path:
        """Write the sample; decisions already taken on the same rows are kept in the log."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.sample_path.open("w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(dict(r), ensure_ascii=False, default=str) + "\n")
        return self.sample_path

    def history(self, subjects: Iterable[Any] | None = None) -> list[Decision]:
        if not self.log_path.exists():
            return []
        keep = None if subjects is None else {str(s) for s in subjects}
        out = []
        with self.log_path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    d = json.loads(line)
                    if keep is None or str(d["id"]) in keep:
                        out.append(Decision(d["id"], ALIASES.get(d["decision"], d["decision"]),
                                            d.get("reason") or "", d.get("row_hash"), float(d.get("at") or 0),
                                            d.get("row"), d.get("label"), d.get("reviewer")))
        return out

    def decisions(self) -> dict[str, Decision]:
        """The latest decision per row id."""
        return self.latest()

    def record(self, subjects: Sequence[Any], decision: str, reason: str | None = "", label: str | None = None,
               labels: Sequence[str] | None = None, *, reviewer: str | None = None,
               note: str | None = None) -> list[Decision]:
        """Append ``decision`` for sample rows ``subjects``; ``label`` for relabel (checked against ``labels``)."""
        reason = (note if note is not None else reason) or ""
        if decision == "regenerate" and not reason.strip():
            raise AssayError("a reason for regenerate", "none",
                             "pass --reason, e.g. " + ", ".join(repr(r) for r in PRESET_REASONS) + " or free text")
        decision = check_decision(ALIASES.get(decision, decision))
        by_id = {str(r.get("id")): r for r in self.sample()}
        unknown = [i for i in subjects if i not in by_id]
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
                        label if decision == "relabel" else None, clean_reviewer(reviewer)) for i in subjects]
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

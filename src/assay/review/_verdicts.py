"""Human review of routed verdicts (trace, session or span verdicts), and export of reviewed rows as a golden set.

A verdict may have several reviewers; whose label counts is ``_consensus``'s rule (each reviewer's
latest label, the label most reviewers gave, ties left out and queued as disagreements). The
verdicts are the monitor's (``assay.monitor.Store``, a :class:`VerdictStore` here); their reviews are kept
by ``_store.VerdictReviews``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

from ..data import normalize_label, read_records, row_hash, to_rows, write_rows
from ..errors import AssayError
from ._consensus import ANONYMOUS, clean_reviewer, current_reviews, is_judge


class VerdictStore(Protocol):
    """What review reads and writes of the monitor's store (``assay.monitor.Store``): the checks it
    scored, its verdicts with their reviews summarized, and the reviews themselves."""

    def checks(self) -> dict[str, dict[str, Any]]: ...

    def verdict(self, verdict_id: int) -> dict[str, Any] | None: ...

    def verdicts(self, metric: str | None = None, *, trace_id: str | None = None) -> list[dict[str, Any]]: ...

    def reviewed(self, metric: str | None = None) -> list[dict[str, Any]]: ...

    def disagreements(self, metric: str | None = None, *, pending: bool = True,
                      limit: int | None = 50) -> list[dict[str, Any]]: ...

    def reviews(self, verdict_id: int) -> list[dict[str, Any]]: ...

    def add_review(self, verdict_id: int, label: str, reviewer: str | None = None,
                   note: str | None = None) -> int: ...


def _labels_of(store: VerdictStore, metric: str) -> list[str]:
    info = store.checks().get(metric)
    if info is None:
        raise AssayError("a metric the monitor scored", f"'{metric}'", "see `assay review list`", code="not_found")
    if info["kind"] == "gate":
        return ["pass", "fail"]
    return list((info.get("spec") or {}).get("labels") or [])


def find_verdict(store: VerdictStore, ref: str | int, metric: str | None = None) -> dict[str, Any]:
    """A verdict by trace id (with ``metric`` when the trace has several verdicts) or by verdict id
    (the only way to pick one span verdict when a metric judged several spans of the trace).

    ``#12`` (or an int) is always verdict id 12, ``trace:12`` always trace 12. A bare ``12`` that is
    both a trace id and another trace's verdict id is refused as ambiguous, never guessed: a label
    must not land on the wrong trace.
    """
    text = str(ref).strip()
    if text.startswith("trace:"):
        return _one_for_trace(store, text[len("trace:"):], metric)
    if isinstance(ref, int) or (text.startswith("#") and text[1:].isdigit()):
        v = store.verdict(int(text.lstrip("#")))
        if v is None or (metric is not None and v["metric"] != metric):
            raise AssayError("a verdict id from `assay review list`", f"no verdict {text}"
                             + (f" for {metric}" if metric else ""), "check the id", code="not_found")
        return v
    found = store.verdicts(metric, trace_id=text)
    by_id = store.verdict(int(text)) if text.isdigit() else None
    if by_id is not None and (metric is not None and by_id["metric"] != metric):
        by_id = None
    if by_id is not None and found and all(v["id"] != by_id["id"] for v in found):
        raise AssayError("a reference to one verdict",
                         f"'{text}' is both trace {text} and verdict #{text} (trace {by_id['trace_id']})",
                         f"pass #{text} for the verdict id, or trace:{text} for the trace", code="ambiguous")
    if not found and by_id is not None:
        return by_id
    return _one_for_trace(store, text, metric, found)


def _one_for_trace(store: VerdictStore, trace_id: str, metric: str | None,
                   found: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    found = store.verdicts(metric, trace_id=trace_id) if found is None else found
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        which = ", ".join(f"#{v['id']} {v['metric']}" + (f" span {v['span_id']}" if v.get("span_id") else "")
                          for v in found[:10])
        spans = len({v["metric"] for v in found}) < len(found)  # one metric judged several spans
        raise AssayError("one verdict", f"{len(found)} verdicts for trace {trace_id} ({which})",
                         "pass the verdict id (#ID) to pick one" if spans else "pass --metric to pick one",
                         code="ambiguous")
    raise AssayError("a verdict id or trace id from `assay review list`", f"'{trace_id}'", "check the id",
                     code="not_found")


def label(store: VerdictStore, ref: str | int, value: str, *, metric: str | None = None, reviewer: str | None = None,
          note: str | None = None) -> dict[str, Any]:
    """Store a reviewer's label for a verdict; the label must be one of the metric's labels.

    Several reviewers may label one verdict and every label is kept; a reviewer's second label
    replaces their first (``replaced``: the label it replaced). ``consensus`` and ``review_status``
    are the verdict's people's label after this review (see ``_consensus``); a reviewer named
    ``judge:<model>`` records an LLM judge's label, which is never a person's."""
    v = find_verdict(store, ref, metric)
    labels = _labels_of(store, v["metric"])
    lab = normalize_label(value)
    if lab not in labels:
        raise AssayError(f"a label among {labels} for {v['metric']}", f"'{value}'", "pass one of those labels",
                         code="invalid_label")
    who = clean_reviewer(reviewer)
    before = current_reviews(store.reviews(v["id"])).get(who or ANONYMOUS)
    rid = store.add_review(v["id"], lab, who, note)
    after = store.verdict(v["id"]) or {}
    return {"review_id": rid, "verdict_id": v["id"], "trace_id": v["trace_id"], "span_id": v.get("span_id"),
            "metric": v["metric"], "label": lab, "reviewer": who, "judge": is_judge(who),
            "replaced": before["label"] if before else None, "evaluator_label": v["label"],
            "agrees": lab == v["label"], "consensus": after.get("review_label"),
            "review_status": after.get("review_status"), "reviewers": len(after.get("reviews") or [])}


def golden_rows(store: VerdictStore, metric: str, counts: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Reviewed rows of one metric as canonical rows with the people's label.

    The label of a verdict is its reviewers' consensus (each reviewer's latest label; the label more
    reviewers gave than any other, see ``_consensus``). A verdict whose reviewers are tied has no
    label and is left out until a deciding review (``counts["no_consensus"]``); judges' labels never
    count. Traces with the same content become one row; ``counts`` gets how many were merged and how
    many of those carried a different label (the later verdict wins)."""
    if metric in store.checks() and store.checks()[metric]["kind"] == "gate":
        raise AssayError("an evaluator metric (gates have no training data)", f"the gate '{metric}'",
                         "export an evaluator metric", code="invalid_input")
    if counts is not None:
        counts["no_consensus"] = len(store.disagreements(metric, limit=None))
    rows: dict[str, dict[str, Any]] = {}
    for v in store.reviewed(metric):
        row = dict(v["row"] or {})
        if not row:
            continue
        meta = dict(row.get("meta") or {})
        meta.pop("tool_calls", None)
        meta["review"] = {"trace_id": v["trace_id"], "evaluator_label": v["label"], "score": v["score"],
                          "route_reason": v["route_reason"], "reviewer": v["reviewer"],
                          "agreement": v["review_status"]}
        if len(v["reviews"]) > 1:
            meta["review"]["reviewers"] = {r["reviewer"]: r["label"] for r in v["reviews"]}
        if v.get("span_id"):  # a span verdict: its row is that span's slice
            meta["review"]["span_id"] = v["span_id"]
        row["meta"] = meta
        row["label"] = v["review_label"]
        h = row_hash(row)
        if h in rows and counts is not None:
            counts["duplicates_merged"] = counts.get("duplicates_merged", 0) + 1
            if rows[h]["label"] != row["label"]:
                counts["conflicting_labels"] = counts.get("conflicting_labels", 0) + 1
        rows[h] = row
    return list(rows.values())


def export(store: VerdictStore, metric: str | None = None, *, out: str | Path | None = None,
           append_to: str | Path | None = None) -> dict[str, Any]:
    """Write reviewed rows as a golden-set JSONL (``out``) and/or append them to a training file."""
    if metric is None:
        metrics = sorted({v["metric"] for v in store.reviewed() if store.checks()[v["metric"]]["kind"] != "gate"})
        if len(metrics) != 1:
            raise AssayError("one reviewed metric to export", f"{metrics or 'no reviewed metrics'}",
                             "pass --metric NAME" if metrics else "label some traces with `assay review label`",
                             code="invalid_input")
        metric = metrics[0]
    if out is None and append_to is None:
        raise AssayError("--output FILE or --append FILE", "neither", "say where the golden set goes", code="invalid_input")
    counts = {"duplicates_merged": 0, "conflicting_labels": 0, "no_consensus": 0}
    rows = golden_rows(store, metric, counts)
    result: dict[str, Any] = {"metric": metric, "rows": len(rows), "labels": dict(Counter(r["label"] for r in rows)),
                              **counts}
    if out is not None:
        result["out"] = str(write_rows(rows, out))
    if append_to is not None:
        result["append"] = _append(rows, Path(append_to))
    return result


def _append(rows: list[dict[str, Any]], path: Path) -> dict[str, Any]:
    if path.suffix.lower() not in (".jsonl", ".ndjson"):
        raise AssayError("a JSONL training file to append to", f"'{path.name}'",
                         "export with --output and merge it yourself, or append to a .jsonl file", code="invalid_input")
    existing: dict[str, Any] = {}
    if path.exists():
        if path.stat().st_size:
            for r in to_rows(read_records(path), source=path.stem):
                existing[row_hash(r)] = r.get("label")
    added, same, conflicts = [], 0, 0
    for r in rows:
        h = row_hash(r)
        if h in existing:
            same += existing[h] == r["label"]
            conflicts += existing[h] != r["label"]
            continue
        added.append(r)
    path.parent.mkdir(parents=True, exist_ok=True)
    needs_newline = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    with path.open("a", encoding="utf-8") as fh:
        if needs_newline:
            fh.write("\n")
        for r in added:
            fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    return {"path": str(path), "added": len(added), "already_present": same, "conflicting_labels_skipped": conflicts}

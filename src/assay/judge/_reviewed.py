"""Reviewed rows for ``discover``: a labeled file with notes, or the monitor store's reviewed verdicts.

A file (JSONL, JSON, CSV, TSV, Parquet) holds canonical rows (``id``, ``input``, ``output``,
``context``, ``tools``) with a ``label`` and a free-text description of what went wrong: the first
of ``note``, ``review_note``, ``notes``, ``rationale``, ``reason``, ``comment`` (or the same keys in
``meta``). A monitor database (``.db``) gives every reviewed verdict: the latest human label and
its ``note`` (else the verdict's reason), the judged row, and the metric that decides which
label fails.

Which rows fail: ``fail_label`` when given; else the metric's failing label (``positive_label``);
else common words (fail, failed, bad, incorrect, wrong vs pass, passed, good, correct, ok).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..data import normalize_label, read_records
from ..errors import AssayError
from ..metrics import InputShape, MetricSpec, load_metric

NOTE_KEYS = ("note", "review_note", "notes", "rationale", "reason", "comment")
ROW_FIELDS = ("input", "output", "output_b", "context", "tools")
FAIL_WORDS = {"fail", "failed", "failure", "failing", "bad", "incorrect", "wrong", "reject", "rejected"}
PASS_WORDS = {"pass", "passed", "passing", "good", "correct", "ok", "okay", "accept", "accepted"}
DB_SUFFIXES = (".db", ".sqlite", ".sqlite3")


@dataclass
class Reviewed:
    """Reviewed rows split into failing and passing, with the notes of the failing ones."""

    rows: list[dict[str, Any]]  # canonical rows (id + the shape's fields), label kept as the reviewer gave it
    failing: list[int]  # indexes into rows
    passing: list[int]
    notes: dict[int, str]  # failing row index -> its description
    shape: InputShape
    fail_label: str
    source: str = ""
    metric: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def described(self) -> list[int]:
        """Failing rows that have a description (the ones that can be clustered)."""
        return [i for i in self.failing if i in self.notes]


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value if v not in (None, ""))
    return " ".join(str(value).split()) if value not in (None, "") else ""


def _note(rec: Mapping[str, Any], note_field: str | None = None) -> str:
    if note_field:  # a dotted path, e.g. meta.error (a list of messages is joined)
        cur: Any = rec
        for part in note_field.split("."):
            cur = cur.get(part) if isinstance(cur, Mapping) else None
        return _text(cur)
    meta = rec.get("meta") if isinstance(rec.get("meta"), Mapping) else {}
    for src in (rec, meta):
        for k in NOTE_KEYS:
            v = src.get(k)
            if isinstance(v, str) and v.strip():
                return " ".join(v.split())
    return ""


def _canonical(rec: Mapping[str, Any], i: int) -> dict[str, Any]:
    row: dict[str, Any] = {"id": str(rec.get("id") if rec.get("id") not in (None, "") else f"row{i}")}
    for f in ROW_FIELDS:
        if rec.get(f) not in (None, "", []):
            row[f] = rec[f]
    return row


def infer_shape(rows: Iterable[Mapping[str, Any]]) -> InputShape:
    """The input shape the fields of the rows fit best (tools > rag > input_output > trace > message)."""
    rows = list(rows)

    def share(f: str) -> float:
        return sum(1 for r in rows if r.get(f) not in (None, "", [])) / max(1, len(rows))

    if share("tools") >= 0.5 and share("output") >= 0.5 and share("input") >= 0.5:
        return InputShape.tools
    if share("context") >= 0.5 and share("output") >= 0.5 and share("input") >= 0.5:
        return InputShape.rag
    if share("input") >= 0.5 and share("output") >= 0.5:
        return InputShape.input_output
    if share("output") >= 0.5:
        return InputShape.trace
    return InputShape.message


def _fail_label(labels: set[str], fail_label: str | None, metric: MetricSpec | None, source: str) -> str:
    if fail_label is not None:
        if fail_label not in labels:
            raise AssayError(f"the fail label '{fail_label}' among the labels of {source}", f"labels {sorted(labels)}",
                             "pass --fail-label with one of those labels", code="invalid_input")
        return fail_label
    if metric is not None:
        return metric.positive
    fails = sorted(x for x in labels if x.lower() in FAIL_WORDS)
    if len(fails) == 1 and all(x.lower() in FAIL_WORDS | PASS_WORDS for x in labels):
        return fails[0]
    raise AssayError("a way to tell failing rows from passing ones", f"labels {sorted(labels)} in {source}",
                     "pass --fail-label LABEL (e.g. --fail-label false) or --metric NAME (its positive_label fails)",
                     code="invalid_input")


def _build(records: list[tuple[dict[str, Any], str, str]], *, source: str, fail_label: str | None,
           metric: MetricSpec | None, metric_name: str | None = None) -> Reviewed:
    """(canonical row, label, note) triples -> Reviewed."""
    if not records:
        raise AssayError("reviewed rows with a label", f"none in {source}",
                         "label rows (a 'label' column, or `assay review label` in the monitor)", code="invalid_input")
    labels = {lab for _, lab, _ in records}
    fail = _fail_label(labels, fail_label, metric, source)
    rows, failing, passing, notes = [], [], [], {}
    seen: dict[str, int] = {}
    for i, (row, lab, note) in enumerate(records):
        rid = str(row["id"])
        seen[rid] = seen.get(rid, 0) + 1
        if seen[rid] > 1:  # ids name rows in the report and the written files: keep them unique
            rid = f"{rid}#{seen[rid]}"
        rows.append({**row, "id": rid, "label": lab})
        if lab == fail:
            failing.append(i)
            if note:
                notes[i] = note
        else:
            passing.append(i)
    shape = metric.shape if metric is not None else infer_shape(rows)
    counts = {"rows": len(rows), "failing": len(failing), "passing": len(passing), "failing_with_note": len(notes),
              "failing_without_note": len(failing) - len(notes)}
    name = metric_name or (metric.name if metric else None)
    return Reviewed(rows, failing, passing, notes, shape, fail, source, name,
                    counts)


def _from_records(recs: list[dict[str, Any]], source: str, fail_label: str | None, metric: MetricSpec | None,
                  note_field: str | None = None) -> Reviewed:

    out, unlabeled = [], 0
    for i, rec in enumerate(recs):
        lab = normalize_label(rec.get("label"))
        if lab is None:
            unlabeled += 1
            continue
        out.append((_canonical(rec, i), lab, _note(rec, note_field)))
    rev = _build(out, source=source, fail_label=fail_label, metric=metric)
    rev.counts["unlabeled"] = unlabeled
    return rev


def _store_record(r: Mapping[str, Any], i: int) -> tuple[dict[str, Any], str, str]:
    """(row, review label, description) of a reviewed verdict: the reviewer's note, else the verdict's reason."""
    rid = str(r["trace_id"]) + (f":{r['span_id']}" if r.get("span_id") else "")  # span verdicts: one row each
    row = {**_canonical(r.get("row") or {}, i), "id": rid}
    return row, str(r["review_label"]), " ".join(str(r.get("review_note") or r.get("reason") or "").split())


def _from_store(path: Path, fail_label: str | None, metric: MetricSpec | None, metric_name: str | None) -> Reviewed:
    from ..monitor import Store

    store = Store(path)
    try:
        checks = store.checks()
        reviewed = store.reviewed(metric_name)
    finally:
        store.close()
    names = sorted({r["metric"] for r in reviewed})
    if metric_name is None and len(names) > 1:
        raise AssayError("reviewed verdicts of one metric", f"reviews of {names} in {path.name}",
                         f"pass --metric with one of {names}", code="invalid_input")
    name = metric_name or (names[0] if names else None)
    if metric is None and name is not None:
        spec = (checks.get(name) or {}).get("spec")
        if isinstance(spec, dict) and "prompt" in spec:
            metric = load_metric(spec)
    records = [_store_record(r, i) for i, r in enumerate(reviewed)]
    return _build(records, source=str(path), fail_label=fail_label, metric=metric, metric_name=name)


def read_reviewed(source: Any, *, fail_label: str | None = None, metric: Any = None,
                  note_field: str | None = None) -> Reviewed:
    """Reviewed rows from a file, a monitor database (``.db``), a ``Reviewed``, or a list of row dicts.

    ``metric``: a preset, YAML path or MetricSpec (its failing label and shape apply); for a monitor
    database, a metric name picks whose reviewed verdicts are read. ``note_field``: where a file's
    descriptions are (a dotted path such as ``meta.error``) instead of the usual note keys."""
    if isinstance(source, Reviewed):
        return source
    spec = None
    metric_name = None
    if isinstance(metric, MetricSpec):
        spec = metric
    elif isinstance(metric, str) and metric:
        metric_name = metric
        is_db = isinstance(source, (str, Path)) and Path(source).suffix.lower() in DB_SUFFIXES
        try:
            spec = load_metric(metric)
        except AssayError:
            if not is_db:  # in a monitor database the name may be a check of its own
                raise
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise AssayError("a reviewed rows file or a monitor database", f"no file at {path}", "check the path",
                             code="not_found")
        if path.suffix.lower() in DB_SUFFIXES:
            return _from_store(path, fail_label, spec, metric_name if spec is None else spec.name)

        return _from_records(read_records(path), path.name, fail_label, spec, note_field)
    if isinstance(source, Iterable):
        recs = [dict(r) for r in source]
        return _from_records(recs, "rows", fail_label, spec, note_field)
    raise AssayError("reviewed rows: a file, a monitor database or a list of dicts", f"a {type(source).__name__}",
                     "pass a path", code="invalid_input")

"""Check rows against a metric: fields its shape needs, its label set, duplicates, class counts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..errors import AssayError
from ..metrics import REQUIRED_FIELDS, MetricSpec
from ..metrics._render import field_text
from ._io import row_hash


@dataclass
class RowProblem:
    row: int  # 0-based position in the input
    id: str
    field: str
    problem: str

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "id": self.id, "field": self.field, "problem": self.problem}


@dataclass
class Validation:
    """What validation found; ``rows`` are the rows kept (exact duplicates removed)."""

    rows: list[dict[str, Any]]
    errors: list[RowProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dropped_duplicates: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)
    empty_fields: dict[str, int] = field(default_factory=dict)  # field -> rows kept with it empty (empty text)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> dict[str, Any]:
        return {
            "rows": len(self.rows),
            "errors": len(self.errors),
            "dropped_duplicates": self.dropped_duplicates,
            "label_counts": self.label_counts,
            "empty_fields": self.empty_fields,
            "warnings": self.warnings,
        }

    def raise_for_errors(self, source: str = "data") -> None:
        if not self.errors:
            return
        first = self.errors[0]
        more = f" (and {len(self.errors) - 1} more rows)" if len(self.errors) > 1 else ""
        raise AssayError(
            _expected(first),
            f"{first.problem} in row {first.row + 1} (id {first.id}) of {source}{more}",
            _fix(first),
            code="invalid_rows",
        )


def _expected(p: RowProblem) -> str:
    if p.field == "label":
        return "every label to be one of the metric's labels"
    return f"a non-empty '{p.field}' on every row"


def _fix(p: RowProblem) -> str:
    if p.field == "label":
        return "map the labels with label_map in the config, or fix the rows"
    return f"map the column that holds '{p.field}' with columns.{p.field} in the config, or fill it in"


def validate_rows(
    rows: Sequence[Mapping[str, Any]],
    metric: MetricSpec,
    *,
    labeled: bool = True,
    min_rows: int = 1,
    min_per_class: int = 0,
    source: str = "data",
) -> Validation:
    """Validate rows; exact duplicates (same content and label) are dropped and counted.

    An empty field (``""``, whitespace or null: a model that returned nothing, a trace without a
    response) is data, kept as empty text and counted in ``empty_fields``. Refused: a row without a
    field the metric reads at all (a mapping problem), and a row with no text in any of them (there is
    nothing to judge)."""
    errors: list[RowProblem] = []
    kept: list[dict[str, Any]] = []
    seen: dict[str, str | None] = {}
    dup = 0
    conflicts = 0
    needed = set(REQUIRED_FIELDS[metric.shape]) | set(metric.fields)
    needed = [f for f in ("input", "output", "output_b", "context", "tools") if f in needed]
    _check_columns(rows, needed + (["label"] if labeled else []), source)
    empty: Counter[str] = Counter()
    for i, row in enumerate(rows):
        rid = str(row.get("id", i))
        absent = [f for f in needed if f not in row]
        blank = [f for f in needed if not field_text(row.get(f)).strip()]
        bad = bool(absent) or len(blank) == len(needed)
        if absent:
            errors.append(RowProblem(i, rid, absent[0], f"missing '{absent[0]}'"))
        elif bad:
            errors.append(RowProblem(i, rid, needed[0], "no text in any of " + ", ".join(f"'{f}'" for f in needed)
                                     if len(needed) > 1 else f"empty '{needed[0]}'"))
        label = row.get("label")
        if labeled:
            if label in (None, ""):
                errors.append(RowProblem(i, rid, "label", "missing label"))
                bad = True
            elif label not in metric.labels:
                errors.append(RowProblem(i, rid, "label", f"unknown label '{label}' (labels: {list(metric.labels)})"))
                bad = True
        elif label not in (None, "") and label not in metric.labels:
            errors.append(RowProblem(i, rid, "label", f"unknown label '{label}' (labels: {list(metric.labels)})"))
            bad = True
        if bad:
            continue
        h = row_hash(row)
        if h in seen:
            if seen[h] == label:
                dup += 1
                continue
            conflicts += 1
        seen[h] = label
        empty.update(blank)
        kept.append(dict(row))
    v = Validation(rows=kept, errors=errors, dropped_duplicates=dup, empty_fields=dict(empty))
    counts = Counter(r.get("label") for r in kept if r.get("label") is not None)
    v.label_counts = {lab: counts.get(lab, 0) for lab in metric.labels} if labeled else dict(counts)
    if dup:
        v.warnings.append(f"{dup} exact duplicate rows were dropped from {source}")
    for f, n in empty.items():
        v.warnings.append(f"{n} rows of {source} have an empty '{f}': kept, read as empty text")
    if conflicts:
        v.warnings.append(f"{conflicts} rows repeat another row's content with a different label in {source}")
    if not errors and len(kept) < min_rows:
        errors.append(RowProblem(-1, "-", "rows", f"only {len(kept)} usable rows (need at least {min_rows})"))
    if labeled and min_per_class and not errors:
        thin = {lab: n for lab, n in v.label_counts.items() if n < min_per_class}
        if thin:
            v.warnings.append(f"few rows for {thin} in {source} (want at least {min_per_class} per label)")
    return v


def _check_columns(rows: Sequence[Mapping[str, Any]], fields: list[str], source: str) -> None:
    """A field no row has at all is a missing column: one error that lists the columns found."""
    if not rows:
        return
    for f in fields:
        if any(f in r for r in rows):
            continue
        found: list[str] = []
        for r in rows[:50]:
            for k in [*r, *(r.get("meta") or {})]:
                if k not in ("meta", "id") and k not in found:
                    found.append(k)
        raise AssayError(f"a column for '{f}' in {source}", f"no such column (columns found: {found})",
                         f"map the column that holds '{f}' with --column {f}=NAME (columns.{f} in the config)"
                         + (", or pass --unlabeled for rows without labels" if f == "label" else ""),
                         code="missing_column")


def check_enough(v: Validation, min_rows: int, source: str) -> None:
    if len(v.rows) < min_rows:
        raise AssayError(f"at least {min_rows} usable rows in {source}", f"{len(v.rows)}",
                         "add more labeled rows", code="too_few_rows")

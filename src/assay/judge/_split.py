"""The three parts of the human-labeled rows a tuning run uses: search-train, validation and final test.

Each part is cut with :func:`assay.data.split_rows` (stratified by label, by content hash and a seed,
rows sharing a group on one side), so the same rows always split the same way whatever their order.
The search shows the provider search-train rows only, selects by validation kappa, and the final
figure is measured once on the test part.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..data import resolve_group_by, row_hash, rows_hash, split_rows
from ..errors import AssayError
from ..metrics import MetricSpec

MIN_PER_LABEL = 3  # rows of each label needed to put one in every part
_SALT = 7919  # the tuning split differs from the seed / held-out split made with the same seed


@dataclass
class TuneSplit:
    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    test: list[dict[str, Any]]
    group_by: str | None = None
    dropped: int = 0  # rows without a label of the metric

    def parts(self) -> dict[str, list[dict[str, Any]]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}

    def manifest(self) -> dict[str, Any]:
        """Counts, label counts and content hashes of each part (what was used for what)."""
        out: dict[str, Any] = {"group_by": self.group_by, "rows_without_a_metric_label": self.dropped}
        for name, rows in self.parts().items():
            out[name] = describe_rows(rows)
        return out


def describe_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"n": len(rows), "labels": dict(sorted(Counter(str(r.get("label")) for r in rows).items())),
            "rows_hash": rows_hash(rows), "hashes": sorted(row_hash(r) for r in rows)}


def split_for_tuning(metric: MetricSpec, rows: Sequence[Mapping[str, Any]], *, seed: int = 0,
                     validation_fraction: float = 0.3, test_fraction: float = 0.3,
                     group_by: str | None = "auto") -> TuneSplit:
    """Search-train / validation / test parts of ``rows`` (the metric's seeds, never held-out rows)."""
    if not (0 < validation_fraction < 1 and 0 < test_fraction < 1 and validation_fraction + test_fraction < 1):
        raise AssayError("validation and test fractions between 0 and 1 that leave rows for the search",
                         f"validation {validation_fraction}, test {test_fraction}",
                         "use e.g. 0.3 and 0.3 (the rest, 0.4, is the search-train part)", code="invalid_input")
    labeled = [dict(r) for r in rows if r.get("label") in metric.labels]
    counts = Counter(str(r["label"]) for r in labeled)
    short = {lab: counts.get(lab, 0) for lab in metric.labels if counts.get(lab, 0) < MIN_PER_LABEL}
    if short:
        raise AssayError(f"at least {MIN_PER_LABEL} human-labeled rows of each label of '{metric.name}' "
                         f"({', '.join(metric.labels)}) to tune its judge",
                         f"{len(labeled)} labeled rows; too few of {short}",
                         "label more seed rows (a larger data.seed_fraction, or more rows in data.test_set)",
                         code="invalid_input")
    grouping = resolve_group_by(group_by, metric.shape, labeled)
    first = split_rows(labeled, test_fraction, seed=_SALT + seed, group_by=grouping)
    val_share = validation_fraction / (1 - test_fraction)
    second = split_rows(first.held_out, val_share, seed=2 * _SALT + seed, group_by=grouping)
    return TuneSplit(train=second.held_out, validation=second.seeds, test=first.seeds, group_by=grouping,
                     dropped=len(rows) - len(labeled))

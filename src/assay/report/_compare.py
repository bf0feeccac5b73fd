"""A new version against the previous one: both evaluators scored on the same rows, side by side.

A retrain from reviews (``assay retrain``) adds this as ``report.json``'s ``comparison`` section:
kappa, F1 (macro), AUROC and accuracy of the previous and the new evaluator on each row set, with
the delta (new - previous). Both are scored here with the same figures code on the very same rows,
so the two columns differ only by the evaluator.
"""

from __future__ import annotations

import html
from typing import Any, Mapping, Sequence

import numpy as np

from ..data import rows_hash
from ._metrics import classification_metrics, to_jsonable
from ._schema import Comparison
from ._schema import fmt as _f

FIGURES = ("kappa", "f1_macro", "auroc", "accuracy")


def _figures(evaluator: Any, rows: list[Mapping[str, Any]], threshold: float | None, bootstrap: int
             ) -> dict[str, Any]:
    metric = evaluator.metric
    labels = list(getattr(evaluator, "labels", None) or metric.labels)
    positive = metric.positive if len(labels) == 2 else None
    probs = np.asarray(evaluator.predict_proba(rows), dtype=float)
    m = classification_metrics([r.get("label") for r in rows], probs, labels, positive=positive,
                               threshold=threshold, bootstrap=bootstrap)
    out = {k: m.get(k) for k in FIGURES}
    out["threshold"] = m.get("threshold")
    if m.get("ci"):
        out["ci"] = {k: v for k, v in m["ci"].items() if k in FIGURES or k in ("n_boot", "seed")}
    return out


def compare_versions(previous: Any, new: Any, row_sets: Mapping[str, Sequence[Mapping[str, Any]]], *,
                     previous_name: str, new_name: str = "this run", previous_threshold: float | None = None,
                     bootstrap: int = 0, notes: Sequence[str] = ()) -> dict[str, Any]:
    """The ``comparison`` section: for each named row set, both evaluators' figures and the delta.

    ``previous_threshold``: the registered version's decision threshold (None: the evaluator's own)."""
    prev_t = previous_threshold if previous_threshold is not None else getattr(previous, "threshold", None)
    sets: dict[str, Any] = {}
    for name, rows in row_sets.items():
        rows = list(rows)
        if not rows:
            continue
        before = _figures(previous, rows, prev_t, bootstrap)
        after = _figures(new, rows, getattr(new, "threshold", None), bootstrap)
        delta = {k: (after[k] - before[k] if after.get(k) is not None and before.get(k) is not None else None)
                 for k in FIGURES}
        sets[name] = {"n": len(rows), "rows_hash": rows_hash(rows), "previous": before, "new": after,
                      "delta": delta}
    return to_jsonable({"previous": previous_name, "new": new_name, "figures": list(FIGURES), "sets": sets,
                        "notes": list(notes)})


# --- rendering ------------------------------------------------------------------------------------
_SET_TITLES = {"held_out": "held-out rows of the previous version"}
HEAD = ["figure", "previous", "new", "delta"]


def _delta(x: Any) -> str:
    return "–" if x is None else f"{x:+.3f}"


def _sets(comparison: Comparison) -> list[tuple[str, list[list[str]]]]:
    """(title, table rows) per row set."""
    out = []
    for name, s in comparison.sets.items():
        title = f"{_SET_TITLES.get(name, name)}: n={s.n}, rows hash {str(s.rows_hash or '')[:12]}"
        rows = [[k, _f(getattr(s.previous, k, None)), _f(getattr(s.new, k, None)), _delta(s.delta.get(k))]
                for k in comparison.figures or FIGURES]
        out.append((title, rows))
    return out


def _intro(comparison: Comparison) -> str:
    text = (f"{comparison.previous} (previous) and {comparison.new} (new), both scored here on the "
            "same rows; delta = new - previous.")
    if comparison.skipped:
        text += f" Not compared: {comparison.skipped}."
    return text


def _shown(comparison: Comparison | Mapping[str, Any] | None) -> Comparison | None:
    """The section as a model, or None when there is none (an empty one included)."""
    if comparison is None:
        return None
    model = comparison if isinstance(comparison, Comparison) else Comparison.model_validate(dict(comparison))
    return model if model.model_fields_set else None


def comparison_markdown(comparison: Comparison | Mapping[str, Any] | None, table: Any) -> list[str]:
    """The report's "Compared with the previous version" section (``table``: the markdown table helper)."""
    comparison = _shown(comparison)
    if comparison is None:
        return []
    lines = ["## Compared with the previous version", "", _intro(comparison), ""]
    for title, rows in _sets(comparison):
        lines += [f"**{title}**", "", table(HEAD, rows), ""]
    lines += [f"- {n}" for n in comparison.notes or []]
    return lines + ([""] if comparison.notes else [])


def comparison_html(comparison: Comparison | Mapping[str, Any] | None, table: Any) -> str:
    comparison = _shown(comparison)
    if comparison is None:
        return ""
    e = html.escape
    sets = "".join(f"<p><strong>{e(title)}</strong></p>" + table(HEAD, rows) for title, rows in _sets(comparison))
    notes = "".join(f"<li>{e(str(n))}</li>" for n in comparison.notes or [])
    return ("<h2>Compared with the previous version</h2>" + f"<p>{e(_intro(comparison))}</p>" + sets
            + (f'<ul class="note">{notes}</ul>' if notes else ""))

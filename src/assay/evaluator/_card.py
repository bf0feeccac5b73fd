"""The model card (README.md) written next to an evaluator's weights, from the artifact's models in memory:
:class:`~assay.evaluator.EvaluatorInfo` and the held-out report (``assay.report.Report``, or the
:class:`~assay.evaluator._artifact.Headline` figures of a ``report.json``)."""

from __future__ import annotations

from typing import Any, Mapping

from ._artifact import INFO_FILE, REPORT_MD, EvaluatorInfo, Figures, Headline
from ._contract import Calibration

LINEAR = ("linear", "hybrid")


def _f(x: Any, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) and not isinstance(x, bool) else "–"


def _headline(report: Any) -> str:
    """The held-out table: this evaluator, then each baseline (``report``: a Report or Headline)."""
    rows: list[tuple[str, Figures]] = [("this evaluator", report.student)]
    rows += list((report.baselines or {}).items())
    lines = ["| system | kappa | F1 macro | AUROC | ECE | n |", "|---|---|---|---|---|---|"]
    for name, m in rows:
        if m.is_skipped:
            lines.append(f"| {name} | skipped: {m.skipped} | | | | |")
            continue
        n = m.n if "n" in m.model_fields_set else "–"
        lines.append(f"| {name} | {_f(m.kappa)} | {_f(m.f1_macro)} | {_f(m.auroc)} | {_f(m.ece)} | {n} |")
    return "\n".join(lines)


def _what_it_judges(metric: Mapping[str, Any]) -> list[str]:
    labels = ", ".join(f"`{x}`" for x in metric.get("labels", []))
    return [
        f"# {metric.get('name', 'evaluator')} evaluator (assay)", "", metric.get("description") or "", "",
        "## What it judges", "",
        f"- metric: `{metric.get('name')}`, output {metric.get('output')}, labels {labels}, "
        f"input shape `{metric.get('shape')}`",
        f"- positive label: `{metric.get('positive_label') or (metric.get('labels') or ['?'])[0]}`"
        if metric.get("output") == "boolean" else "- categorical: the most probable label is returned",
    ]


def _calibration_line(info: EvaluatorInfo, cal: Calibration | None) -> str:
    threshold = _f(info.threshold) if info.threshold is not None else "argmax"
    line = f"- calibration: temperature {_f(info.temperature)}, threshold {threshold}"
    if cal is None:
        return line
    if cal.threshold_method:
        line += f" chosen by {cal.threshold_method}"
    if cal.n_rows:
        line += f" on {cal.n_rows} rows ({cal.source or 'calibration rows'})"
    if cal.prior:
        mix = ", ".join(f"{k} {v:.2f}" for k, v in (cal.prior.get("target") or {}).items())
        prior = info.training.prior if info.training is not None and info.training.prior is not None else "seeds"
        line += f"; probabilities re-weighted to the label mix {mix} (train.prior: {prior})"
    return line


def _model(info: EvaluatorInfo) -> list[str]:
    base = info.base
    linear = info.family in LINEAR
    training = info.training
    out = ["## Model", "",
           f"- family: {info.family} — base `{info.base_name}`"
           + (f" (package {base.package} {base.package_version})" if base is not None and base.package else "")]
    if linear:
        out.append(f"- features: {', '.join(b for b in info.blocks if b != 'encoder')} -> logistic regression"
                   + (" (stacked)" if info.family == "hybrid" else "") + f"; max_length {info.max_length} tokens")
        if "encoder" in info.blocks:
            out.append("- pooled at equal weight with the fine-tuned network (the `encoder` block: "
                       f"{'LoRA' if (info.model or {}).get('lora') else 'full fine-tune'}, weights in the artifact)")
    else:
        out.append(f"- adapter: {'LoRA' if (info.model or {}).get('lora') else 'full fine-tune'}; "
                   f"max_length {info.max_length} tokens")
    out.append(_calibration_line(info, info.calibration))
    rows = _or_dash(training, "rows")
    out.append(f"- training: logistic regression(s) refit on {rows} rows" if linear else
               f"- training: {_or_dash(training, 'steps')} steps, {rows} rows, device {_or_dash(training, 'device')}")
    return out


def _or_dash(section: Any, key: str) -> Any:
    """A recorded value of a section (what it holds, None included), else ``–``."""
    if section is None or key not in section.model_fields_set:
        return "–"
    return getattr(section, key)


def _data(info: EvaluatorInfo) -> list[str]:
    out = ["## Data", ""]
    data = info.data
    recorded = (data.model_fields_set | set(data.model_extra or {})) if data is not None else set()
    if not recorded:
        out.append("- not recorded")
    for key in ("test_set", "train_set", "seeds", "held_out", "train_rows", "generated", "leaked_dropped"):
        if key in recorded:
            out.append(f"- {key}: {getattr(data, key)}")
    warnings = list(data.notes) if data is not None else []
    cal = info.calibration
    warnings += [f"calibration: {w}" for w in (cal.warnings if cal is not None else ())
                 if f"calibration: {w}" not in warnings]
    if warnings:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in warnings]
    return out


def _selection(info: EvaluatorInfo) -> list[str]:
    sel = info.selection
    if sel is None or not (sel.model_fields_set | set(sel.model_extra or {})):
        return []

    def kappa(c: Any) -> str:
        return _f(c.validation_kappa if c.validation_kappa is not None else c.cv_kappa)

    return ["", "## Model selection", "",
            f"Candidates compared on {sel.compared_on} (training rows only): "
            + ", ".join(f"{c.name} {kappa(c)}" for c in sel.candidates)
            + f". Winner: {sel.winner} ({sel.reason})."]


def _use_and_limits(info: EvaluatorInfo) -> list[str]:
    return [
        "", "## Intended use", "",
        "Score production traces for this metric in place of an LLM judge: one forward pass per row, "
        "a calibrated probability per label. Use the probability (not only the label) for monitoring, "
        "and re-check agreement on fresh labeled rows when your traffic changes.",
        "", "## Limits", "",
        "- It only knows what its training rows showed; inputs unlike them (new domains, languages, "
        "formats) can be scored confidently and wrongly.",
        f"- Inputs longer than {info.max_length} tokens are cut (see truncation_policy in "
        f"{INFO_FILE}); each score reports `truncated`.",
        f"- Held-out figures come from a small labeled set; read their confidence intervals in {REPORT_MD}.",
        "", "Load it with `assay.evaluator.Evaluator.from_pretrained(<this folder>)` or `assay score`.", "",
    ]


def model_card(info: EvaluatorInfo | Mapping[str, Any], report: Any = None) -> str:
    """Markdown: what the evaluator judges, what it was built from, how well it did, its limits.

    ``info``: the artifact's :class:`EvaluatorInfo` (a mapping is validated into one); ``report``: the
    held-out report (an ``assay.report.Report``, a :class:`Headline`, a report mapping, or None)."""
    if not isinstance(info, EvaluatorInfo):
        info = EvaluatorInfo.from_dict(info)
    if report is not None and not hasattr(report, "student"):
        report = Headline.model_validate(dict(report))
    student = report.student if report is not None else None
    shown = student is not None and bool(student.model_fields_set | set(student.model_extra or {}))
    out = _what_it_judges(info.metric) + [""] + _model(info) + [""] + _data(info) + _selection(info)
    out += ["", "## Held-out results", ""]
    out.append(_headline(report) if shown else
               "No report in this folder; run `assay evaluate` on labeled rows the model never saw.")
    return "\n".join(out + _use_and_limits(info))

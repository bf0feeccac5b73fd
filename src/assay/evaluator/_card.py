"""The model card (README.md) written next to an evaluator's weights."""

from __future__ import annotations

from typing import Any, Mapping

from ._artifact import INFO_FILE, REPORT_MD


def _f(x: Any, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) and not isinstance(x, bool) else "–"


def _headline(report: Mapping[str, Any]) -> str:
    rows = [("this evaluator", report.get("student") or {})]
    rows += list((report.get("baselines") or {}).items())
    lines = ["| system | kappa | F1 macro | AUROC | ECE | n |", "|---|---|---|---|---|---|"]
    for name, m in rows:
        if "skipped" in m:
            lines.append(f"| {name} | skipped: {m['skipped']} | | | | |")
            continue
        lines.append(f"| {name} | {_f(m.get('kappa'))} | {_f(m.get('f1_macro'))} | {_f(m.get('auroc'))} "
                     f"| {_f(m.get('ece'))} | {m.get('n', '–')} |")
    return "\n".join(lines)


def model_card(info: Mapping[str, Any], report: Mapping[str, Any] | None = None) -> str:
    """Markdown: what the evaluator judges, what it was built from, how well it did, its limits."""
    metric = info.get("metric") or {}
    base = info.get("base") or {}
    data = info.get("data") or {}
    cal = info.get("calibration") or {}
    training = info.get("training") or {}
    labels = ", ".join(f"`{x}`" for x in metric.get("labels", []))
    out = [
        f"# {metric.get('name', 'evaluator')} evaluator (assay)",
        "",
        metric.get("description") or "",
        "",
        "## What it judges",
        "",
        f"- metric: `{metric.get('name')}`, output {metric.get('output')}, labels {labels}, "
        f"input shape `{metric.get('shape')}`",
        f"- positive label: `{metric.get('positive_label') or (metric.get('labels') or ['?'])[0]}`"
        if metric.get("output") == "boolean" else "- categorical: the most probable label is returned",
        "",
        "## Model",
        "",
        f"- family: {info.get('family')} — base `{base.get('name')}`"
        + (f" (package {base.get('package')} {base.get('package_version')})" if base.get("package") else ""),
        (f"- features: {', '.join((info.get('linear') or {}).get('blocks') or [])} -> logistic regression"
         + (" (stacked)" if info.get("family") == "hybrid" else "") + f"; max_length {info.get('max_length')} tokens"
         if info.get("family") in ("linear", "hybrid") else
         f"- adapter: {'LoRA' if (info.get('model') or {}).get('lora') else 'full fine-tune'}; "
         f"max_length {info.get('max_length')} tokens"),
        f"- calibration: temperature {_f(info.get('temperature'))}, threshold "
        f"{_f(info.get('threshold')) if info.get('threshold') is not None else 'argmax'}"
        + (f" chosen by {cal.get('threshold_method')}" if cal.get("threshold_method") else "")
        + (f" on {cal.get('rows')} rows ({cal.get('source', 'calibration rows')})" if cal.get("rows") else "")
        + ("; probabilities re-weighted to the label mix "
           + ", ".join(f"{k} {v:.2f}" for k, v in ((cal.get("prior") or {}).get("target") or {}).items())
           + f" (train.prior: {(info.get('training') or {}).get('prior', 'seeds')})" if cal.get("prior") else ""),
        (f"- training: logistic regression(s) refit on {training.get('rows', '–')} rows"
         if info.get("family") in ("linear", "hybrid") else
         f"- training: {training.get('steps', '–')} steps, {training.get('rows', '–')} rows, "
         f"device {training.get('device', '–')}"),
        "",
        "## Data",
        "",
    ]
    if data:
        for key in ("test_set", "train_set", "seeds", "held_out", "train_rows", "generated", "leaked_dropped"):
            if key in data:
                out.append(f"- {key}: {data[key]}")
    else:
        out.append("- not recorded")
    warnings = list(data.get("notes") or [])
    warnings += [f"calibration: {w}" for w in cal.get("warnings") or [] if f"calibration: {w}" not in warnings]
    if warnings:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in warnings]
    sel = info.get("selection") or {}
    if sel:
        out += ["", "## Model selection", "",
                f"Candidates compared on {sel.get('compared_on')} (training rows only): "
                + ", ".join(f"{c.get('name')} {_f(c.get('validation_kappa') if c.get('validation_kappa') is not None else c.get('cv_kappa'))}"
                            for c in sel.get("candidates") or [])
                + f". Winner: {sel.get('winner')} ({sel.get('reason')})."]
    out += ["", "## Held-out results", ""]
    out.append(_headline(report) if report and report.get("student") else
               "No report in this folder; run `assay evaluate` on labeled rows the model never saw.")
    out += [
        "",
        "## Intended use",
        "",
        "Score production traces for this metric in place of an LLM judge: one forward pass per row, "
        "a calibrated probability per label. Use the probability (not only the label) for monitoring, "
        "and re-check agreement on fresh labeled rows when your traffic changes.",
        "",
        "## Limits",
        "",
        "- It only knows what its training rows showed; inputs unlike them (new domains, languages, "
        "formats) can be scored confidently and wrongly.",
        f"- Inputs longer than {info.get('max_length')} tokens are cut (see truncation_policy in "
        f"{INFO_FILE}); each score reports `truncated`.",
        f"- Held-out figures come from a small labeled set; read their confidence intervals in {REPORT_MD}.",
        "",
        "Load it with `assay.evaluator.Evaluator.from_pretrained(<this folder>)` or `assay score`.",
        "",
    ]
    return "\n".join(out)

"""Write a report as report.json, report.md and a self-contained report.html (inline SVG).

Both renderings read the report through its model, :class:`~assay.report.Report` (a mapping is validated
into one first)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Mapping

from ..evaluator._artifact import REPORT_FILES as FILES  # report.json / .md / .html, by kind
from ._compare import comparison_html, comparison_markdown
from ._metrics import to_jsonable
from ._schema import REPORT_FORMAT_VERSION, Bin, Figures, Report, ReportMetric, Resources, Routing, Selection, Speed
from ._schema import fmt as _f


def write_report(report: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write the three report files into ``out_dir``; returns their paths by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = to_jsonable({"format_version": REPORT_FORMAT_VERSION, **dict(report)})
    model = Report.from_dict(report, out / FILES["json"])  # never write a report.json its readers would refuse
    paths = {kind: out / name for kind, name in FILES.items()}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["md"].write_text(render_markdown(model), encoding="utf-8")
    paths["html"].write_text(render_html(model), encoding="utf-8")
    return paths


# --- formatting ----------------------------------------------------------------------------

def _has(model: Any) -> bool:
    """A section that is there and holds something (an empty ``{}`` reads as absent)."""
    return model is not None and bool(model.model_fields_set)


def _set(model: Any, key: str, default: Any = "") -> Any:
    """``model.<key>`` when the file recorded it (None included), else ``default``."""
    return getattr(model, key) if model is not None and key in model.model_fields_set else default


def _ci(m: Figures, key: str) -> str:
    ci = (m.ci or {}).get(key)
    return f"{_f(getattr(m, key))} [{_f(ci[0], 2)}, {_f(ci[1], 2)}]" if ci else _f(getattr(m, key))


def _money(x: Any) -> str:
    if x is None:
        return "–"
    return f"${x:,.2f}" if x >= 1 else f"${x:.3g}"


def _rows(report: Report) -> list[tuple[str, Figures]]:
    ev = report.evaluator or {}
    who = " ".join(str(ev[k]) for k in ("family", "base") if ev.get(k))
    rows = [(f"student ({who})" if who else "student", report.student)]
    return rows + report.others()


HEAD = ["system", "kappa [95% CI]", "F1 macro [95% CI]", "accuracy", "AUROC", "AUPRC", "ECE", "Brier", "n"]


def _headline_cells(m: Figures) -> list[str]:
    if m.is_skipped:
        return [f"skipped: {m.skipped}"] + [""] * 7
    return [_ci(m, "kappa"), _ci(m, "f1_macro"), _f(m.accuracy), _f(m.auroc), _f(m.auprc), _f(m.ece), _f(m.brier),
            str(_set(m, "n", "–"))]


def _resources_line(res: Resources | None) -> str:
    """Training's wall time against its budget, and the peak memory (RSS) of each stage."""
    if not _has(res):
        return ""
    budget = res.budget_seconds
    peaks = ", ".join(f"{k} {v:,.0f} MiB" for k, v in (res.peak_rss_mib or {}).items())
    return (f"Training took {_f(res.seconds, 0)} s" + (f" of a {budget:.0f} s budget (train.budget)" if budget
                                                      else " (no train.budget limit)")
            + (f"; peak memory (RSS) by stage: {peaks}" if peaks else "") + ".")


def _speed_line(speed: Speed | None) -> str:
    if not _has(speed):
        return "not measured"
    ratio = speed.cheaper_than_judge
    return (f"best batch size {speed.best_batch_size}: {_f(speed.best_rows_per_s, 1)} rows/s "
            f"-> {_money(speed.cost_per_1m)} per 1M evaluations at {_money(speed.cost_per_hour)}/hour, "
            f"vs {_money(speed.judge_cost_per_1m)} per 1M for a frontier judge at "
            f"{_money(speed.judge_cost_per_eval)}/eval"
            + (f" ({ratio:,.0f}x cheaper)" if ratio else "")
            + (f"; {speed.ratio_to_floor:.2f} of the bare model forward's rows/s at that batch size"
               if speed.ratio_to_floor else "")
            + f" ({speed.rows_timed} rows timed per batch size)")


def _batch_rows(speed: Speed) -> list[list[str]]:
    """Per batch size: rows/s, the bare forward's, their ratio, row and call latency p50 / p95."""
    return [[str(b.batch_size), _f(b.rows_per_s, 1), _f(b.floor_rows_per_s, 1), _f(b.ratio_to_floor, 2),
             _f(b.row_latency_ms.get("p50"), 1), _f(b.row_latency_ms.get("p95"), 1),
             _f(b.batch_latency_ms.get("p50"), 1), _f(b.batch_latency_ms.get("p95"), 1)] for b in speed.batches]


def _settings_rows(report: Report) -> list[list[str]]:
    return ([[f"evaluator.{k}", str(v)] for k, v in (report.evaluator or {}).items()]
            + [[f"report.{k}", str(v)] for k, v in (report.settings or {}).items()]
            + [["assay", str(report.assay_version)], ["created", str(report.created_at)]])


def _held_out_line(report: Report, metric: ReportMetric, positive: str, esc: Any = str) -> str:
    """Held-out (and training) rows, the positive label and threshold, rows left out (``positive``: how
    the positive label is shown; ``esc``: how the label counts are escaped)."""
    s = report.student
    return (f"Held-out rows: {report.n} ({esc(_counts(report.label_counts))})"
            + (f"; training rows: {report.n_train}" if report.n_train is not None else "")
            + (f"; positive label {positive}, threshold {_f(s.threshold)}" if metric.positive else "")
            + (f"; {report.excluded_trained_rows} rows the artifact trained on were left out"
               if report.excluded_trained_rows else ""))


def _intervals_note(report: Report) -> str:
    ci = report.student.ci or {}
    return (f"Intervals: percentile bootstrap over rows ({ci.get('n_boot', 0)} resamples, seed {ci.get('seed', 0)}). "
            "ECE: 15 bins of the predicted label's probability."
            + (" Baselines are fitted on the same training rows; their binary threshold is 0.5."
               if report.baselines else ""))


def _per_label_rows(s: Figures) -> list[list[str]]:
    return [[lab, _f(v["precision"]), _f(v["recall"]), _f(v["f1"]), str(v["support"])]
            for lab, v in (s.per_class or {}).items()]


def _confusion_rows(s: Figures, labels: list[str]) -> list[list[str]]:
    return [[lab] + [str(c) for c in row] for lab, row in zip(labels, s.confusion or [])]


_BASELINE_NAMES = {"tfidf_logreg": "TF-IDF", "majority": "majority-label"}


def baseline_warnings(report: Mapping[str, Any] | Report) -> list[str]:
    """A warning for each baseline whose kappa is above the student's 95% interval (without an interval:
    above its kappa): a cheaper model would have done better on the same held-out rows."""
    report = Report.from_dict(report)
    s = report.student
    kappa, ci = s.kappa_value, s.ci_of("kappa")
    if kappa is None:
        return []
    out = []
    for name, m in (report.baselines or {}).items():
        b = None if m.is_skipped else m.kappa_value
        hi = ci[1] if ci and isinstance(ci[1], (int, float)) else None
        if b is None or not (b > hi if hi is not None else b > kappa):
            continue
        label = _BASELINE_NAMES.get(name, name)
        where = (f"95% CI [{_f(ci[0])}, {_f(hi)}]: the baseline is above the whole interval" if hi is not None
                 else "no interval (report.bootstrap: 0), so the gap may be noise")
        out.append(f"the evaluator is below the {label} baseline: kappa {_f(kappa)} vs {_f(b)} on the same "
                   f"held-out rows ({where}); the baseline would be the better evaluator")
    return out


def summary_line(report: Mapping[str, Any] | Report) -> str:
    """For the CLI: the student's headline figures, then the baselines' kappa (:meth:`Report.headline`);
    then a ``warning:`` line for each baseline the student is below (:func:`baseline_warnings`)."""
    model = Report.from_dict(report)
    return "\n".join([model.headline()] + [f"warning: {w}" for w in baseline_warnings(model)])


# --- markdown ------------------------------------------------------------------------------

def _md_table(head: list[str], rows: list[list[str]]) -> str:
    esc = [[str(c).replace("|", "\\|").replace("\n", " ") for c in r] for r in [head] + rows]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(lines)


CAND_HEAD = ["candidate", "CV kappa [95% CI]", "kappa per fold", "validated on", "time (s)", "settings"]


def _candidate_rows(selection: Selection) -> list[list[str]]:
    rows = []
    for c in selection.candidates:
        name = str(c.name) + (" (winner)" if c.name == selection.winner else "")
        validated = str(_set(c, "validated_on"))
        if c.error:
            rows.append([name, f"not scored: {c.error}", "", validated, "", ""])
            continue
        kappa = _f(c.cv_kappa) + (f" [{_f(c.ci[0], 2)}, {_f(c.ci[1], 2)}]" if c.ci else "")
        if c.validation_kappa is not None and c.validation_kappa != c.cv_kappa:
            kappa += f"; on the encoder's validation rows {_f(c.validation_kappa)}"
        params = {k: v for k, v in (c.params or {}).items() if k != "cv_kappa_by_C"}
        rows.append([name, kappa, ", ".join(_f(k, 2) for k in c.fold_kappas or []) or "–", validated,
                     _f(c.seconds, 1), ", ".join(f"{k} {v}" for k, v in params.items())])
    return rows


def _rule_text(selection: Selection) -> str:
    tol, cost = selection.tie_tolerance, " < ".join(selection.cost_order or [])
    if str(selection.rule or "").startswith("highest CV kappa"):
        return ("Among the single blocks the highest CV kappa wins; when two or more are within one standard error "
                f"of it (the spread of its fold kappas / sqrt(folds), at least {tol}), their equal-weight pool "
                "(blend: the mean of their out-of-fold log-probabilities, nothing fitted on top) is scored on the "
                f"same rows and ships unless it is below the best by more than {tol}. The fitted stack (hybrid) "
                "ships only when it beats that winner by more than its own standard error. " + _encoder_rule(selection))
    if selection.rule != "one standard error":  # reports written before the one-SE rule
        return f"Ties (within {tol}) go to the cheaper candidate ({cost})."
    within = f"within one standard error of the best CV kappa (the spread of its fold kappas / sqrt(folds), at least {tol})"
    counts = {k: v for k, v in (selection.fitted_parameters or {}).items() if v is not None}
    if not counts:  # reports written before the parameter order
        return f"The cheapest candidate {within} wins ({cost})."
    order = " < ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: kv[1]))
    return (f"The simplest candidate {within} wins: the fewest fitted parameters ({order}), then the cheaper "
            f"({cost}).")


def _encoder_cross_validated(selection: Selection) -> bool:
    return any(c.name == "encoder" and (c.params or {}).get("validation") == "out-of-fold"
               for c in selection.candidates)


def _encoder_rule(selection: Selection) -> str:
    tol, band = selection.tie_tolerance, selection.encoder_band
    if band is None:  # reports written before the band
        return (f"The fine-tuned encoder (trained once) ships alone when it beats that winner on its validation rows "
                f"by more than {tol}; when the two are within noise there, their equal-weight pool (pooled) ships "
                f"unless it is below the better one by more than {tol}.")
    margin = (f"{selection.encoder_margin:g} of its standard errors (at least {tol})"
              if selection.encoder_margin is not None else f"{tol}")  # reports written before the margin
    return (f"The fine-tuned encoder ships alone when it beats that winner on its validation rows (its out-of-fold "
            f"predictions when it was cross-validated, else a held-back slice) by more than {margin}; when the two "
            f"are within {band:g} of the encoder's standard errors there (at least {tol}), their equal-weight pool "
            f"(pooled) ships unless it is below the better one by more than that.")


def _selection_text(selection: Selection) -> str:
    return (f"Winner: **{selection.winner}**: {selection.reason}. Compared on "
            f"{selection.compared_on}. Folds: stratified by label, grouped by "
            f"{selection.group_by or 'row content'}, seed {selection.seed}; only training rows, "
            "never the held-out rows. Kappa from argmax (binary: P >= 0.5) of the out-of-fold predictions; "
            "intervals: bootstrap over those rows. C of the logistic regressions is picked on the same folds "
            "(slightly optimistic for tuned candidates). "
            + _rule_text(selection) + " The winner is refit on all training rows (the encoder: "
            + ("trained on every one, its fold models set aside)." if _encoder_cross_validated(selection)
               else "trained once, on the rows outside its validation slice).")
            + ("".join(f" Note: {n}." for n in selection.notes or [])))


def _md_student(report: Report, labels: list[str]) -> list[str]:
    """The student's confusion matrix, per-label figures and calibration table (markdown)."""
    s, out = report.student, []
    if s.confusion:
        out += ["## Confusion matrix (student)", "", "Rows: true label; columns: predicted label.", "",
                _md_table(["true \\ predicted"] + labels, _confusion_rows(s, labels)), ""]
        out += ["## Per label (student)", "",
                _md_table(["label", "precision", "recall", "F1", "support"], _per_label_rows(s)), ""]
    rel = report.reliability
    if rel is not None and rel.confidence:
        out += ["## Calibration (student)", "",
                f"ECE {_f(s.ece)}" + (f"; ECE of P(positive) {_f(s.ece_positive)}" if s.ece_positive is not None
                                      else ""), "",
                _md_table(["bin", "mean confidence", "accuracy", "rows"],
                          [[f"{b.lo:.2f}-{b.hi:.2f}", _f(b.confidence), _f(b.accuracy), str(b.count)]
                           for b in rel.confidence]), ""]
    return out


def render_markdown(report: Mapping[str, Any] | Report) -> str:
    report = Report.from_dict(report)
    metric, s = report.metric or ReportMetric(), report.student
    labels = s.labels or metric.labels or []
    out = [f"# Evaluation report: {_set(metric, 'name', '?')}", ""]
    if metric.description:
        out += [metric.description, ""]
    out += [_held_out_line(report, metric, f"'{metric.positive}'"), ""]
    warned = baseline_warnings(report)
    if report.notes or warned:
        out += ["## Warnings and notes", ""] + [f"- **Warning:** {w}" for w in warned]
        out += [f"- {n}" for n in report.notes or []] + [""]
    out += ["## Headline", "", _md_table(HEAD, [[name] + _headline_cells(m) for name, m in _rows(report)]), ""]
    out += comparison_markdown(report.comparison, _md_table)
    out += [_intervals_note(report), ""]
    sel = report.selection
    if _has(sel):
        out += ["## Candidates (model selection on the training rows)", "", _md_table(CAND_HEAD, _candidate_rows(sel)),
                "", _selection_text(sel), ""]
    out += _md_student(report, labels)
    out += _routing_lines(report.routing)
    speed = report.speed
    out += ["## Speed and cost", "", _speed_line(speed), ""]
    if _has(report.resources):
        out += [_resources_line(report.resources), ""]
    if _has(speed):
        out += [_md_table(["batch size", "rows/s", "bare forward rows/s", "ratio", "row latency p50 (ms)",
                           "row latency p95 (ms)", "call latency p50 (ms)", "call latency p95 (ms)"],
                          _batch_rows(speed)), ""]
        out += ["## Machine", "", _md_table(["", ""], [[k, str(v)] for k, v in (speed.machine or {}).items()]), ""]
    out += ["## Settings", "", _md_table(["", ""], _settings_rows(report)), ""]
    return "\n".join(out)


def _counts(counts: Mapping[str, int] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (counts or {}).items())


# --- html ----------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:980px;color:#1f2328;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}th,td{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f6f8fa}.note{color:#57606a;font-size:.85rem}
.plots{display:flex;flex-wrap:wrap;gap:1.5rem}figure{margin:0}figcaption{font-size:.85rem;color:#57606a;text-align:center}
"""


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    h = "".join(f"<th>{e(str(c))}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def confusion_svg(confusion: list[list[int]], labels: list[str]) -> str:
    """A heatmap of the confusion matrix; shade = share of the true label's row."""
    e = html.escape
    k = len(labels)
    cell, left, top = 64, 130, 90
    w, h = left + k * cell + 100, top + k * cell + 30  # room on the right for the slanted labels
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
             f'aria-label="confusion matrix" font-family="sans-serif" font-size="12">',
             f'<text x="{left + k * cell / 2}" y="{top + k * cell + 20}" text-anchor="middle" '
             f'font-weight="bold">predicted</text>',
             f'<text x="12" y="{top + k * cell / 2}" text-anchor="middle" font-weight="bold" '
             f'transform="rotate(-90 12 {top + k * cell / 2})">true</text>']
    for j, lab in enumerate(labels):
        x = left + j * cell + cell / 2
        parts.append(f'<text x="{x}" y="{top - 8}" text-anchor="start" '
                     f'transform="rotate(-35 {x} {top - 8})">{e(_short(lab))}</text>')
    for i, lab in enumerate(labels):
        total = sum(confusion[i]) or 1
        parts.append(f'<text x="{left - 6}" y="{top + i * cell + cell / 2 + 4}" text-anchor="end">{e(_short(lab))}</text>')
        for j in range(k):
            c = confusion[i][j]
            share = c / total
            fill = _blue(share)
            ink = "#ffffff" if share > 0.55 else "#1f2328"
            x, y = left + j * cell, top + i * cell
            parts.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" stroke="#ffffff">'
                         f'<title>true {e(lab)}, predicted {e(labels[j])}: {c} ({share:.0%} of row)</title></rect>')
            parts.append(f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" text-anchor="middle" fill="{ink}">{c}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _short(label: str, n: int = 16) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def _blue(t: float) -> str:
    lo, hi = (247, 251, 255), (8, 69, 148)
    r, g, b = (round(a + (c - a) * max(0.0, min(1.0, t))) for a, c in zip(lo, hi))
    return f"#{r:02x}{g:02x}{b:02x}"


def reliability_svg(bins: list[Bin], xlabel: str = "mean confidence",
                    ylabel: str = "accuracy") -> str:
    """A reliability diagram: observed rate per bin (bars) against confidence; the diagonal is perfect."""
    size, pad = 300, 45
    w = h = size + 2 * pad

    def px(v: float) -> float:
        return pad + v * size

    def py(v: float) -> float:
        return pad + (1 - v) * size

    total = sum(b.count for b in bins) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
             f'aria-label="reliability diagram" font-family="sans-serif" font-size="11">',
             f'<rect x="{pad}" y="{pad}" width="{size}" height="{size}" fill="#ffffff" stroke="#57606a"/>']
    for t in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<line x1="{px(t)}" y1="{py(0)}" x2="{px(t)}" y2="{py(0) + 4}" stroke="#57606a"/>'
                     f'<text x="{px(t)}" y="{py(0) + 16}" text-anchor="middle">{t:g}</text>'
                     f'<text x="{px(0) - 6}" y="{py(t) + 4}" text-anchor="end">{t:g}</text>')
    for b in bins:
        x0, x1 = px(b.lo), px(b.hi)
        acc = b.accuracy
        parts.append(f'<rect x="{x0 + 1}" y="{py(acc)}" width="{x1 - x0 - 2}" height="{py(0) - py(acc)}" '
                     f'fill="#4c8bd6" fill-opacity="0.75"><title>{b.lo:.2f}-{b.hi:.2f}: confidence '
                     f'{b.confidence:.3f}, observed {acc:.3f}, {b.count} rows</title></rect>')
        r = 2 + 6 * (b.count / total) ** 0.5
        parts.append(f'<circle cx="{px(b.confidence)}" cy="{py(acc)}" r="{r:.1f}" fill="#cf222e"/>')
    parts.append(f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(1)}" y2="{py(1)}" stroke="#57606a" stroke-dasharray="4 3"/>')
    parts.append(f'<text x="{pad + size / 2}" y="{h - 8}" text-anchor="middle">{html.escape(xlabel)}</text>')
    parts.append(f'<text x="12" y="{pad + size / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 12 {pad + size / 2})">{html.escape(ylabel)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _html_plots(report: Report, metric: ReportMetric, labels: list[str]) -> list[str]:
    """The student's confusion heatmap and reliability diagrams, then its confusion and per-label tables."""
    e, s, rel = html.escape, report.student, report.reliability
    plots = []
    if s.confusion:
        plots.append(f"<figure>{confusion_svg(s.confusion, labels)}"
                     "<figcaption>Confusion matrix (rows: true, columns: predicted)</figcaption></figure>")
    if rel is not None and rel.confidence:
        plots.append(f"<figure>{reliability_svg(rel.confidence)}"
                     f"<figcaption>Reliability, predicted label (ECE {_f(s.ece)})</figcaption></figure>")
    if rel is not None and rel.positive:
        plots.append(f"<figure>{reliability_svg(rel.positive, 'mean P(positive)', 'positive rate')}"
                     f"<figcaption>Reliability, P({e(str(metric.positive))}) "
                     f"(ECE {_f(s.ece_positive)})</figcaption></figure>")
    body = []
    if plots:
        body.append("<h2>Student: confusion and calibration</h2><div class=\"plots\">" + "".join(plots) + "</div>")
    if s.confusion:
        body.append(_html_table(["true \\ predicted"] + labels, _confusion_rows(s, labels)))
        body.append(_html_table(["label", "precision", "recall", "F1", "support"], _per_label_rows(s)))
    return body


def render_html(report: Mapping[str, Any] | Report) -> str:
    report = Report.from_dict(report)
    e = html.escape
    metric, s = report.metric or ReportMetric(), report.student
    labels = s.labels or metric.labels or []
    body = [f"<h1>Evaluation report: {e(str(_set(metric, 'name', '?')))}</h1>"]
    if metric.description:
        body.append(f"<p>{e(metric.description)}</p>")
    body.append(f"<p>{_held_out_line(report, metric, f'<code>{e(str(metric.positive))}</code>', e)}</p>")
    body.append(f"<p><code>{e(report.headline())}</code></p>")
    warned = baseline_warnings(report)
    if report.notes or warned:
        body.append("<h2>Warnings and notes</h2><ul>"
                    + "".join(f"<li><strong>Warning:</strong> {e(w)}</li>" for w in warned)
                    + "".join(f"<li>{e(str(n))}</li>" for n in report.notes or []) + "</ul>")
    body.append("<h2>Headline</h2>")
    body.append(_html_table(HEAD, [[name] + _headline_cells(m) for name, m in _rows(report)]))
    body.append(comparison_html(report.comparison, _html_table))
    body.append(f'<p class="note">{_intervals_note(report)}</p>')
    sel = report.selection
    if _has(sel):
        body.append("<h2>Candidates (model selection on the training rows)</h2>"
                    + _html_table(CAND_HEAD, _candidate_rows(sel))
                    + f'<p class="note">{e(_selection_text(sel)).replace("**", "")}</p>')
    body += _html_plots(report, metric, labels)
    speed = report.speed
    body.append("<h2>Speed and cost</h2>" + f"<p>{e(_speed_line(speed))}</p>"
                + (f"<p>{e(_resources_line(report.resources))}</p>" if _has(report.resources) else ""))
    if _has(speed):
        body.append(_html_table(["batch size", "rows/s", "bare forward rows/s", "ratio", "row p50 (ms)", "row p95 (ms)",
                                 "call p50 (ms)", "call p95 (ms)"], _batch_rows(speed)))
        body.append("<h2>Machine</h2>" + _html_table(["", ""], [[k, str(v)] for k, v in (speed.machine or {}).items()]))
    body.append("<h2>Settings</h2>" + _html_table(["", ""], _settings_rows(report)))
    title = e(f"assay report: {_set(metric, 'name', '?')}")
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n")


def _routing_lines(routing: Routing | None) -> list[str]:
    """The risk-controlled routing section: the target, the region, the share routed, the realised
    disagreement of auto-accepted verdicts on the held-out rows."""
    if not _has(routing):
        return []
    c = routing.certified
    head = (f"Target: at most {_f(c.target)} disagreement with people among the verdicts accepted "
            f"automatically, with confidence {_f(1 - float(c.delta or 0))} ({c.method}; "
            f"{c.n_rows} calibration rows).")
    if not c.met:
        return ["## Routing to people", "", head, "",
                "No review region met the target on the calibration rows: the monitor uses its default "
                "band. Add calibration rows or raise `train.review_target`.", ""]
    region = (f"P(positive) in [{_f(c.band[0])}, {_f(c.band[1])}]" if c.band
              else f"confidence below {_f(c.min_confidence)}")
    rows = [["calibration rows", _f(c.routed_share), _f(c.accepted_disagreement)]]
    held = routing.held_out
    if _has(held):
        rows.append(["held-out rows", _f(held.routed_share), _f(held.accepted_disagreement)])
    lines = ["## Routing to people", "", head, f"Region sent to people: {region}.", "",
             _md_table(["rows", "share routed to people", "disagreement among auto-accepted"], rows), ""]
    if not routing.applies:
        lines += ["The evaluator's threshold has moved since calibration: the certified region does not apply.", ""]
    elif _has(held) and held.within_target is False:
        lines += [f"On the held-out rows the disagreement among auto-accepted verdicts is above the target "
                  f"{_f(c.target)}.", ""]
    return lines

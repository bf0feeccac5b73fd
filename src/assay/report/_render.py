"""Write a report as report.json, report.md and a self-contained report.html (inline SVG)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Mapping

from ..evaluator._artifact import REPORT_FILES as FILES  # report.json / .md / .html, by kind
from ._compare import comparison_html, comparison_markdown
from ._metrics import to_jsonable
from ._schema import REPORT_FORMAT_VERSION, Report
from ._schema import fmt as _f


def write_report(report: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write the three report files into ``out_dir``; returns their paths by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = to_jsonable({"format_version": REPORT_FORMAT_VERSION, **dict(report)})
    Report.from_dict(report, out / FILES["json"])  # never write a report.json its readers would refuse
    paths = {kind: out / name for kind, name in FILES.items()}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["md"].write_text(render_markdown(report), encoding="utf-8")
    paths["html"].write_text(render_html(report), encoding="utf-8")
    return paths


# --- formatting ----------------------------------------------------------------------------

def _ci(m: Mapping[str, Any], key: str) -> str:
    ci = (m.get("ci") or {}).get(key)
    return f"{_f(m.get(key))} [{_f(ci[0], 2)}, {_f(ci[1], 2)}]" if ci else _f(m.get(key))


def _money(x: Any) -> str:
    if x is None:
        return "–"
    return f"${x:,.2f}" if x >= 1 else f"${x:.3g}"


def _rows(report: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    ev = report.get("evaluator") or {}
    who = " ".join(str(ev[k]) for k in ("family", "base") if ev.get(k))
    rows = [(f"student ({who})" if who else "student", report.get("student") or {})]
    rows += [(name, m) for name, m in (report.get("baselines") or {}).items()]
    rows += [(name, m) for name, m in (report.get("systems") or {}).items()]
    return rows


HEAD = ["system", "kappa [95% CI]", "F1 macro [95% CI]", "accuracy", "AUROC", "AUPRC", "ECE", "Brier", "n"]


def _headline_cells(m: Mapping[str, Any]) -> list[str]:
    if "skipped" in m:
        return [f"skipped: {m['skipped']}"] + [""] * 7
    return [_ci(m, "kappa"), _ci(m, "f1_macro"), _f(m.get("accuracy")), _f(m.get("auroc")),
            _f(m.get("auprc")), _f(m.get("ece")), _f(m.get("brier")), str(m.get("n", "–"))]


def _resources_line(res: Mapping[str, Any] | None) -> str:
    """Training's wall time against its budget, and the peak memory (RSS) of each stage."""
    if not res:
        return ""
    budget = res.get("budget_seconds")
    peaks = ", ".join(f"{k} {v:,.0f} MiB" for k, v in (res.get("peak_rss_mib") or {}).items())
    return (f"Training took {_f(res.get('seconds'), 0)} s" + (f" of a {budget:.0f} s budget (train.budget)" if budget
                                                             else " (no train.budget limit)")
            + (f"; peak memory (RSS) by stage: {peaks}" if peaks else "") + ".")


def _speed_line(speed: Mapping[str, Any]) -> str:
    if not speed:
        return "not measured"
    ratio = speed.get("cheaper_than_judge")
    return (f"best batch size {speed.get('best_batch_size')}: {_f(speed.get('best_rows_per_s'), 1)} rows/s "
            f"-> {_money(speed.get('cost_per_1m'))} per 1M evaluations at {_money(speed.get('cost_per_hour'))}/hour, "
            f"vs {_money(speed.get('judge_cost_per_1m'))} per 1M for a frontier judge at "
            f"{_money(speed.get('judge_cost_per_eval'))}/eval"
            + (f" ({ratio:,.0f}x cheaper)" if ratio else "")
            + (f"; {speed['ratio_to_floor']:.2f} of the bare model forward's rows/s at that batch size"
               if speed.get("ratio_to_floor") else "")
            + f" ({speed.get('rows_timed')} rows timed per batch size)")


def summary_line(report: Mapping[str, Any]) -> str:
    """One line for the CLI: the student's headline figures, then the baselines' kappa
    (:meth:`Report.headline`)."""
    return Report.from_dict(report).headline()


# --- markdown ------------------------------------------------------------------------------

def _md_table(head: list[str], rows: list[list[str]]) -> str:
    esc = [[str(c).replace("|", "\\|").replace("\n", " ") for c in r] for r in [head] + rows]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(lines)


CAND_HEAD = ["candidate", "CV kappa [95% CI]", "kappa per fold", "validated on", "time (s)", "settings"]


def _candidate_rows(selection: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for c in selection.get("candidates") or []:
        name = str(c.get("name")) + (" (winner)" if c.get("name") == selection.get("winner") else "")
        if c.get("error"):
            rows.append([name, f"not scored: {c['error']}", "", str(c.get("validated_on", "")), "", ""])
            continue
        ci = c.get("ci")
        kappa = _f(c.get("cv_kappa")) + (f" [{_f(ci[0], 2)}, {_f(ci[1], 2)}]" if ci else "")
        if c.get("validation_kappa") is not None and c.get("validation_kappa") != c.get("cv_kappa"):
            kappa += f"; on the encoder's validation rows {_f(c['validation_kappa'])}"
        params = {k: v for k, v in (c.get("params") or {}).items() if k != "cv_kappa_by_C"}
        rows.append([name, kappa, ", ".join(_f(k, 2) for k in c.get("fold_kappas") or []) or "–",
                     str(c.get("validated_on", "")), _f(c.get("seconds"), 1),
                     ", ".join(f"{k} {v}" for k, v in params.items())])
    return rows


def _rule_text(selection: Mapping[str, Any]) -> str:
    tol, cost = selection.get("tie_tolerance"), " < ".join(selection.get("cost_order") or [])
    if str(selection.get("rule", "")).startswith("highest CV kappa"):
        return ("Among the single blocks the highest CV kappa wins; when two or more are within one standard error "
                f"of it (the spread of its fold kappas / sqrt(folds), at least {tol}), their equal-weight pool "
                "(blend: the mean of their out-of-fold log-probabilities, nothing fitted on top) is scored on the "
                f"same rows and ships unless it is below the best by more than {tol}. The fitted stack (hybrid) "
                "ships only when it beats that winner by more than its own standard error.")
    if selection.get("rule") != "one standard error":  # reports written before the one-SE rule
        return f"Ties (within {tol}) go to the cheaper candidate ({cost})."
    within = f"within one standard error of the best CV kappa (the spread of its fold kappas / sqrt(folds), at least {tol})"
    counts = {k: v for k, v in (selection.get("fitted_parameters") or {}).items() if v is not None}
    if not counts:  # reports written before the parameter order
        return f"The cheapest candidate {within} wins ({cost})."
    order = " < ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: kv[1]))
    return (f"The simplest candidate {within} wins: the fewest fitted parameters ({order}), then the cheaper "
            f"({cost}).")


def _selection_text(selection: Mapping[str, Any]) -> str:
    return (f"Winner: **{selection.get('winner')}**: {selection.get('reason')}. Compared on "
            f"{selection.get('compared_on')}. Folds: stratified by label, grouped by "
            f"{selection.get('group_by') or 'row content'}, seed {selection.get('seed')}; only training rows, "
            "never the held-out rows. Kappa from argmax (binary: P >= 0.5) of the out-of-fold predictions; "
            "intervals: bootstrap over those rows. C of the logistic regressions is picked on the same folds "
            "(slightly optimistic for tuned candidates). "
            + _rule_text(selection) + " The winner is refit on "
            "all training rows (the encoder: trained once, on the rows outside its validation slice)."
            + ("".join(f" Note: {n}." for n in selection.get("notes") or [])))


def render_markdown(report: Mapping[str, Any]) -> str:
    metric = report.get("metric") or {}
    s = report.get("student") or {}
    labels = s.get("labels") or metric.get("labels") or []
    out = [f"# Evaluation report: {metric.get('name', '?')}", ""]
    if metric.get("description"):
        out += [metric["description"], ""]
    out += [f"Held-out rows: {report.get('n')} ({_counts(report.get('label_counts'))})"
            + (f"; training rows: {report['n_train']}" if report.get("n_train") is not None else "")
            + (f"; positive label '{metric['positive']}', threshold {_f(s.get('threshold'))}"
               if metric.get("positive") else "")
            + (f"; {report['excluded_trained_rows']} rows the artifact trained on were left out"
               if report.get("excluded_trained_rows") else ""), ""]
    if report.get("notes"):
        out += ["## Warnings and notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    out += ["## Headline", "", _md_table(HEAD, [[name] + _headline_cells(m) for name, m in _rows(report)]), ""]
    out += comparison_markdown(report.get("comparison"), _md_table)
    out += ["Intervals: percentile bootstrap over rows "
            f"({(s.get('ci') or {}).get('n_boot', 0)} resamples, seed {(s.get('ci') or {}).get('seed', 0)}). "
            "ECE: 15 bins of the predicted label's probability."
            + (" Baselines are fitted on the same training rows; their binary threshold is 0.5."
               if report.get("baselines") else ""), ""]
    sel = report.get("selection")
    if sel:
        out += ["## Candidates (model selection on the training rows)", "", _md_table(CAND_HEAD, _candidate_rows(sel)),
                "", _selection_text(sel), ""]
    if s.get("confusion"):
        out += ["## Confusion matrix (student)", "", "Rows: true label; columns: predicted label.", "",
                _md_table(["true \\ predicted"] + labels,
                          [[lab] + [str(c) for c in row] for lab, row in zip(labels, s["confusion"])]), ""]
        out += ["## Per label (student)", "",
                _md_table(["label", "precision", "recall", "F1", "support"],
                          [[lab, _f(v["precision"]), _f(v["recall"]), _f(v["f1"]), str(v["support"])]
                           for lab, v in (s.get("per_class") or {}).items()]), ""]
    rel = report.get("reliability") or {}
    if rel.get("confidence"):
        out += ["## Calibration (student)", "",
                f"ECE {_f(s.get('ece'))}" + (f"; ECE of P(positive) {_f(s.get('ece_positive'))}"
                                             if s.get("ece_positive") is not None else ""), "",
                _md_table(["bin", "mean confidence", "accuracy", "rows"],
                          [[f"{b['lo']:.2f}-{b['hi']:.2f}", _f(b["confidence"]), _f(b["accuracy"]), str(b["count"])]
                           for b in rel["confidence"]]), ""]
    out += _routing_lines(report.get("routing"))
    speed = report.get("speed")
    out += ["## Speed and cost", "", _speed_line(speed or {}), ""]
    if report.get("resources"):
        out += [_resources_line(report["resources"]), ""]
    if speed:
        out += [_md_table(["batch size", "rows/s", "bare forward rows/s", "ratio", "row latency p50 (ms)",
                           "row latency p95 (ms)", "call latency p50 (ms)", "call latency p95 (ms)"],
                          [[str(b["batch_size"]), _f(b["rows_per_s"], 1), _f(b.get("floor_rows_per_s"), 1),
                            _f(b.get("ratio_to_floor"), 2), _f(b["row_latency_ms"]["p50"], 1),
                            _f(b["row_latency_ms"]["p95"], 1), _f(b["batch_latency_ms"]["p50"], 1),
                            _f(b["batch_latency_ms"]["p95"], 1)] for b in speed.get("batches", [])]), ""]
        out += ["## Machine", "", _md_table(["", ""], [[k, str(v)] for k, v in (speed.get("machine") or {}).items()]), ""]
    out += ["## Settings", "",
            _md_table(["", ""], [[f"evaluator.{k}", str(v)] for k, v in (report.get("evaluator") or {}).items()]
                      + [[f"report.{k}", str(v)] for k, v in (report.get("settings") or {}).items()]
                      + [["assay", str(report.get("assay_version"))], ["created", str(report.get("created_at"))]]),
            ""]
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


def reliability_svg(bins: list[dict[str, Any]], xlabel: str = "mean confidence",
                    ylabel: str = "accuracy") -> str:
    """A reliability diagram: observed rate per bin (bars) against confidence; the diagonal is perfect."""
    size, pad = 300, 45
    w = h = size + 2 * pad

    def px(v: float) -> float:
        return pad + v * size

    def py(v: float) -> float:
        return pad + (1 - v) * size

    total = sum(b["count"] for b in bins) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
             f'aria-label="reliability diagram" font-family="sans-serif" font-size="11">',
             f'<rect x="{pad}" y="{pad}" width="{size}" height="{size}" fill="#ffffff" stroke="#57606a"/>']
    for t in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<line x1="{px(t)}" y1="{py(0)}" x2="{px(t)}" y2="{py(0) + 4}" stroke="#57606a"/>'
                     f'<text x="{px(t)}" y="{py(0) + 16}" text-anchor="middle">{t:g}</text>'
                     f'<text x="{px(0) - 6}" y="{py(t) + 4}" text-anchor="end">{t:g}</text>')
    for b in bins:
        x0, x1 = px(b["lo"]), px(b["hi"])
        acc = b["accuracy"]
        parts.append(f'<rect x="{x0 + 1}" y="{py(acc)}" width="{x1 - x0 - 2}" height="{py(0) - py(acc)}" '
                     f'fill="#4c8bd6" fill-opacity="0.75"><title>{b["lo"]:.2f}-{b["hi"]:.2f}: confidence '
                     f'{b["confidence"]:.3f}, observed {acc:.3f}, {b["count"]} rows</title></rect>')
        r = 2 + 6 * (b["count"] / total) ** 0.5
        parts.append(f'<circle cx="{px(b["confidence"])}" cy="{py(acc)}" r="{r:.1f}" fill="#cf222e"/>')
    parts.append(f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(1)}" y2="{py(1)}" stroke="#57606a" stroke-dasharray="4 3"/>')
    parts.append(f'<text x="{pad + size / 2}" y="{h - 8}" text-anchor="middle">{html.escape(xlabel)}</text>')
    parts.append(f'<text x="12" y="{pad + size / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 12 {pad + size / 2})">{html.escape(ylabel)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: Mapping[str, Any]) -> str:
    e = html.escape
    metric = report.get("metric") or {}
    s = report.get("student") or {}
    labels = s.get("labels") or metric.get("labels") or []
    rel = report.get("reliability") or {}
    body = [f"<h1>Evaluation report: {e(str(metric.get('name', '?')))}</h1>"]
    if metric.get("description"):
        body.append(f"<p>{e(metric['description'])}</p>")
    body.append(f"<p>Held-out rows: {report.get('n')} ({e(_counts(report.get('label_counts')))})"
                + (f"; training rows: {report['n_train']}" if report.get("n_train") is not None else "")
                + (f"; positive label <code>{e(str(metric['positive']))}</code>, threshold {_f(s.get('threshold'))}"
                   if metric.get("positive") else "")
                + (f"; {report['excluded_trained_rows']} rows the artifact trained on were left out"
                   if report.get("excluded_trained_rows") else "") + "</p>")
    body.append(f"<p><code>{e(summary_line(report))}</code></p>")
    if report.get("notes"):
        body.append("<h2>Warnings and notes</h2><ul>" + "".join(f"<li>{e(str(n))}</li>" for n in report["notes"])
                    + "</ul>")
    body.append("<h2>Headline</h2>")
    body.append(_html_table(HEAD, [[name] + _headline_cells(m) for name, m in _rows(report)]))
    body.append(comparison_html(report.get("comparison"), _html_table))
    ci = s.get("ci") or {}
    body.append(f'<p class="note">Intervals: percentile bootstrap over rows ({ci.get("n_boot", 0)} resamples, '
                f'seed {ci.get("seed", 0)}). ECE: 15 bins of the predicted label\'s probability.'
                + (" Baselines are fitted on the same training rows; their binary threshold is 0.5."
                   if report.get("baselines") else "") + "</p>")
    sel = report.get("selection")
    if sel:
        body.append("<h2>Candidates (model selection on the training rows)</h2>"
                    + _html_table(CAND_HEAD, _candidate_rows(sel))
                    + f'<p class="note">{e(_selection_text(sel)).replace("**", "")}</p>')
    plots = []
    if s.get("confusion"):
        plots.append(f"<figure>{confusion_svg(s['confusion'], labels)}"
                     "<figcaption>Confusion matrix (rows: true, columns: predicted)</figcaption></figure>")
    if rel.get("confidence"):
        plots.append(f"<figure>{reliability_svg(rel['confidence'])}"
                     f"<figcaption>Reliability, predicted label (ECE {_f(s.get('ece'))})</figcaption></figure>")
    if rel.get("positive"):
        plots.append(f"<figure>{reliability_svg(rel['positive'], 'mean P(positive)', 'positive rate')}"
                     f"<figcaption>Reliability, P({e(str(metric.get('positive')))}) "
                     f"(ECE {_f(s.get('ece_positive'))})</figcaption></figure>")
    if plots:
        body.append("<h2>Student: confusion and calibration</h2><div class=\"plots\">" + "".join(plots) + "</div>")
    if s.get("confusion"):
        body.append(_html_table(["true \\ predicted"] + labels,
                                [[lab] + [str(c) for c in row] for lab, row in zip(labels, s["confusion"])]))
        body.append(_html_table(["label", "precision", "recall", "F1", "support"],
                                [[lab, _f(v["precision"]), _f(v["recall"]), _f(v["f1"]), str(v["support"])]
                                 for lab, v in (s.get("per_class") or {}).items()]))
    speed = report.get("speed")
    body.append("<h2>Speed and cost</h2>" + f"<p>{e(_speed_line(speed or {}))}</p>"
                + (f"<p>{e(_resources_line(report['resources']))}</p>" if report.get("resources") else ""))
    if speed:
        body.append(_html_table(["batch size", "rows/s", "bare forward rows/s", "ratio", "row p50 (ms)", "row p95 (ms)",
                                 "call p50 (ms)", "call p95 (ms)"],
                                [[str(b["batch_size"]), _f(b["rows_per_s"], 1), _f(b.get("floor_rows_per_s"), 1),
                                  _f(b.get("ratio_to_floor"), 2), _f(b["row_latency_ms"]["p50"], 1),
                                  _f(b["row_latency_ms"]["p95"], 1), _f(b["batch_latency_ms"]["p50"], 1),
                                  _f(b["batch_latency_ms"]["p95"], 1)] for b in speed.get("batches", [])]))
        body.append("<h2>Machine</h2>" + _html_table(["", ""], [[k, str(v)] for k, v in (speed.get("machine") or {}).items()]))
    body.append("<h2>Settings</h2>" + _html_table(
        ["", ""], [[f"evaluator.{k}", str(v)] for k, v in (report.get("evaluator") or {}).items()]
        + [[f"report.{k}", str(v)] for k, v in (report.get("settings") or {}).items()]
        + [["assay", str(report.get("assay_version"))], ["created", str(report.get("created_at"))]]))
    title = e(f"assay report: {metric.get('name', '?')}")
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n")


def _routing_lines(routing: Any) -> list[str]:
    """The risk-controlled routing section: the target, the region, the share routed, the realised
    disagreement of auto-accepted verdicts on the held-out rows."""
    if not routing:
        return []
    c = routing.get("certified") or {}
    head = (f"Target: at most {_f(c.get('target'))} disagreement with people among the verdicts accepted "
            f"automatically, with confidence {_f(1 - float(c.get('delta') or 0))} ({c.get('method')}; "
            f"{c.get('n_rows')} calibration rows).")
    if not c.get("met"):
        return ["## Routing to people", "", head, "",
                "No review region met the target on the calibration rows: the monitor uses its default "
                "band. Add calibration rows or raise `train.review_target`.", ""]
    region = (f"P(positive) in [{_f(c['band'][0])}, {_f(c['band'][1])}]" if c.get("band")
              else f"confidence below {_f(c.get('min_confidence'))}")
    rows = [["calibration rows", _f(c.get("routed_share")), _f(c.get("accepted_disagreement"))]]
    held = routing.get("held_out")
    if held:
        rows.append(["held-out rows", _f(held.get("routed_share")), _f(held.get("accepted_disagreement"))])
    lines = ["## Routing to people", "", head, f"Region sent to people: {region}.", "",
             _md_table(["rows", "share routed to people", "disagreement among auto-accepted"], rows), ""]
    if not routing.get("applies"):
        lines += ["The evaluator's threshold has moved since calibration: the certified region does not apply.", ""]
    elif held and held.get("within_target") is False:
        lines += [f"On the held-out rows the disagreement among auto-accepted verdicts is above the target "
                  f"{_f(c.get('target'))}.", ""]
    return lines

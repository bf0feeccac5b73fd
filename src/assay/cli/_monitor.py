"""``assay traces``, ``eval``, ``monitor``, ``review`` and ``drift``: the online side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml

from ..errors import AssayError
from ._app import cli, emit
from ._precision import precision_option

db_option = click.option("--db", type=click.Path(), help="SQLite file (default $ASSAY_HOME/monitor.db).")


def _gates(items: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for g in items:
        try:
            d = yaml.safe_load(g)
        except yaml.YAMLError:
            d = None
        if not isinstance(d, dict):
            raise AssayError("--gate as an inline mapping like '{type: pii, field: output}'", f"'{g}'",
                             "quote the mapping", code="invalid_input")
        out.append({"gate": d})
    return out


def _band(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise AssayError("--band LOW,HIGH like 0.3,0.7", f"'{text}'", "pass two numbers", code="invalid_input") from None
    return lo, hi


def _run_config(config: str | None, metrics: tuple[str, ...], gates: tuple[str, ...]) -> Any:
    from ..monitor._config import RunConfig, load_run_config

    cfg = load_run_config(config) if config else RunConfig()
    cfg.evaluators = list(cfg.evaluators) + [{"artifact": m} for m in metrics] + _gates(gates)
    if not cfg.evaluators:
        raise AssayError("at least one evaluator", "none", "pass --metric ARTIFACT_DIR, --gate or a config file",
                         code="invalid_input")
    return cfg


def _route(cfg: Any, band: str | None, audit_rate: float | None, seed: int | None) -> Any:
    from ..monitor import RouteConfig

    data = cfg.route.model_dump()
    if band is not None:
        data["band"] = _band(band)
    if audit_rate is not None:
        data["audit_rate"] = audit_rate
    if seed is not None:
        data["seed"] = seed
    try:
        return RouteConfig(**data)
    except Exception as exc:  # pydantic error -> one line
        raise AssayError("a valid routing setup", str(exc).splitlines()[-1].strip(), "fix --band / --audit-rate",
                         code="invalid_input") from None


@cli.command()
@click.argument("source", type=click.Path())
@click.option("--metric", "-m", "metrics", multiple=True, help="Preset or metric YAML: show how many traces fit it.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def traces(source: str, metrics: tuple[str, ...], as_json: bool) -> None:
    """Read a trace file (OTel/OpenInference spans, LangSmith runs, plain JSONL) and report what it holds."""
    from ..metrics import load_metric
    from ..traces import read_traces, rows_for

    ing = read_traces(source)
    out = ing.summary()
    for m in metrics:
        spec = load_metric(m)
        rows, skipped = rows_for(ing.traces, spec)
        out.setdefault("metrics", {})[spec.name] = {"shape": spec.shape.value, "rows": len(rows),
                                                     "skipped": dict(skipped)}
        if spec.target is not None:  # rows are spans of that kind
            out["metrics"][spec.name]["target"] = spec.target.span_kind
    emit(out, as_json)


@cli.command("eval", short_help="Pass rates of evaluators and gates over a dataset (a CI gate).")
@click.argument("config", required=False, type=click.Path())
@click.option("--metric", "-m", "metrics", multiple=True, help="Evaluator artifact directory (repeatable).")
@click.option("--gate", "gates", multiple=True, help="A gate as inline YAML, e.g. '{type: pii}' (repeatable).")
@click.option("--data", "-d", help="Golden set or trace file (overrides the config's dataset).")
@click.option("--smoke", type=int, help="Evaluate a fixed subset of N traces.")
@click.option("--parallel", type=int, help="Worker threads.")
@click.option("--batch-size", type=int)
@click.option("--seed", type=int, help="Seed of the smoke subset.")
@click.option("--out", "out", type=click.Path(), help="Also write the report JSON here.")
@click.option("--fail-under", "fail_under", multiple=True, metavar="FIGURE=N,...",
              help="Exit 1 when a metric's figure is below N, e.g. pass_rate=0.9,kappa=0.6 (any figure of a metric's "
                   "block; METRIC.figure=N for one metric): a CI / release gate.")
@click.option("--min-pass-rate", type=click.FloatRange(0, 1), help="Same as --fail-under pass_rate=N.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def eval_cmd(config: str | None, metrics: tuple[str, ...], gates: tuple[str, ...], data: str | None,
             smoke: int | None, parallel: int | None, batch_size: int | None, seed: int | None, out: str | None,
             fail_under: tuple[str, ...], min_pass_rate: float | None, as_json: bool) -> None:
    """Run evaluators and gates over a dataset: pass rates, failures with trace ids, histograms.

    For one artifact's agreement report on labeled rows (kappa, F1, calibration), use `assay evaluate`.

    With --fail-under (or --min-pass-rate) the exit status gates a merge or a release: 0 when every
    figure is at or above its bar, 1 otherwise (2: the run itself failed, or a figure cannot be measured)."""
    from ..monitor import Eval
    from ..monitor._eval import check_bars, parse_bars

    bars = parse_bars(fail_under)  # bad bars fail before anything is scored
    if min_pass_rate is not None:
        bars.setdefault("pass_rate", min_pass_rate)
    cfg = _run_config(config, metrics, gates)
    dataset = data or cfg.dataset
    if not dataset:
        raise AssayError("a dataset", "none", "pass --data FILE or set dataset: in the config", code="invalid_input")
    ev = Eval(cfg.evaluators, dataset, name=cfg.name, batch_size=batch_size or cfg.batch_size, suites=cfg.suites)
    report = ev.run(parallel=parallel or cfg.parallel, smoke=smoke or cfg.smoke,
                    seed=cfg.seed if seed is None else seed)
    below: list[dict[str, Any]] = []
    if bars:
        report["gate"] = check_bars(report, bars)
        below = report["gate"]["below"]
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    text = _eval_text(report)
    if bars:
        text += ("\nGATE FAILED: " + "; ".join(f"{b['metric']} {b['figure']} {b['value']} < {b['bar']}" for b in below)
                 if below else "\ngate passed: " + ", ".join(f"every {k} >= {v}" for k, v in bars.items()))
    emit(report, as_json, text)
    if below:
        raise SystemExit(1)


def _eval_text(r: dict[str, Any]) -> str:
    d = r["dataset"]
    lines = [f"eval {r['eval']}: {d['evaluated']} of {d['traces']} traces in {r['seconds']}s"]
    probs = d["ingest"]["problems"]
    if probs:
        lines.append("  ingest problems: " + ", ".join(f"{k} {v}" for k, v in probs.items()))
    for name, m in r["metrics"].items():
        rate = "n/a" if m["pass_rate"] is None else f"{m['pass_rate']:.1%}"
        line = f"  {name:32s} {m['kind']:9s} pass {rate:>7s}  ({m['passed']}/{m['scored']})"
        if m.get("agreement"):
            line += f"  kappa vs labels {m['agreement']['kappa']}"
        if m["skipped"]:
            line += "  skipped " + ", ".join(f"{k} {v}" for k, v in m["skipped"].items())
        lines.append(line)
        for f in m["failures"][:3]:
            lines.append(f"      fail {f['trace_id']}: {f['label']} {f['reason'] or ''}".rstrip())
    return "\n".join(lines)


@cli.command()
@click.option("--config", "-c", "config", type=click.Path(), help="Monitor YAML (evaluators, route, db).")
@click.option("--metric", "-m", "metrics", multiple=True, help="Evaluator artifact directory (repeatable).")
@click.option("--gate", "gates", multiple=True, help="A standalone gate as inline YAML (repeatable).")
@click.option("--source", type=click.Path(), help="Trace file to read (JSONL or JSON).")
@click.option("--follow", "-f", is_flag=True, help="Keep reading lines appended to --source (tail -f).")
@click.option("--http", "http_port", type=int, help="Serve an ingest endpoint on this port instead.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address for --http.")
@db_option
@click.option("--band", help="A fixed uncertainty band on P(positive), e.g. 0.3,0.7 (default: around each evaluator's calibrated threshold, route.margin).")
@click.option("--audit-rate", type=float, help="Share of confident passes sent to review (default 0.05).")
@click.option("--seed", type=int, help="Seed of the audit sample.")
@click.option("--batch-size", type=int)
@click.option("--settle", type=float, help="Seconds a trace's spans may keep arriving (follow/http).")
@click.option("--max-traces", type=int, help="Stop after this many traces.")
@click.option("--idle-timeout", type=float, help="With --follow: stop after this many seconds without new lines.")
@precision_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def monitor(config: str | None, metrics: tuple[str, ...], gates: tuple[str, ...], source: str | None, follow: bool,
            http_port: int | None, host: str, db: str | None, band: str | None, audit_rate: float | None,
            seed: int | None, batch_size: int | None, settle: float | None, max_traces: int | None,
            idle_timeout: float | None, as_json: bool, precision: str = "auto") -> None:
    """Score every trace, store verdicts, route uncertain / failing / audited ones to review."""
    from ..monitor import IngestServer, Monitor, Store
    from ..monitor._checks import make_checks
    from ._precision import check_machine

    if (source is None) == (http_port is None):
        raise AssayError("one trace source", "both --source and --http" if source else "neither",
                         "pass --source FILE [--follow] or --http PORT", code="invalid_input")
    check_machine(precision)
    cfg = _run_config(config, metrics, gates)
    route = _route(cfg, band, audit_rate, seed)
    checks = make_checks(cfg.evaluators, precision)  # each artifact loaded at --precision
    _stop_on_sigterm()
    store = Store(db or cfg.db)
    mon = Monitor(checks, store, route, batch_size=batch_size or cfg.batch_size, suites=cfg.suites)
    if source:
        summary = mon.run_file(source, follow=follow, settle=cfg.settle if settle is None else settle,
                               max_traces=max_traces, idle_timeout=idle_timeout)
    else:
        if host not in ("127.0.0.1", "localhost", "::1"):
            click.echo(f"warning: the ingest endpoint listens on {host}, not only this machine", err=True)
        srv = IngestServer(mon, host=host, port=http_port or 0, settle=cfg.settle if settle is None else settle,
                           max_traces=max_traces)
        click.echo(f"assay monitor: POST traces to {srv.url}/v1/traces (Ctrl-C stops)", err=True)
        srv.serve_forever()
        summary = mon.summary()
    store.close()
    emit(summary, as_json, _monitor_text(summary))


def _stop_on_sigterm() -> None:
    """SIGTERM (docker stop, systemd) ends the monitor like Ctrl-C: pending traces are scored first."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        def _raise(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _raise)


def _monitor_text(s: dict[str, Any]) -> str:
    lines = [f"{s['traces']} traces -> {s['db']}"]
    ing = s["ingest"]
    if ing["problems"]:
        lines.append("  ingest problems: " + ", ".join(f"{k} {v}" for k, v in ing["problems"].items()))
    if ing["warnings"]:
        lines.append("  ingest warnings: " + ", ".join(f"{k} {v}" for k, v in ing["warnings"].items()))
    for name, m in s["metrics"].items():
        routes = ", ".join(f"{k} {v}" for k, v in sorted(m["routes"].items()))
        line = f"  {name:32s} scored {m['scored']:6d}  failed {m['failed']:6d}  {routes}"
        if m["skipped"]:
            line += "  skipped " + ", ".join(f"{k} {v}" for k, v in m["skipped"].items())
        if m["already_scored"]:
            line += f"  already scored {m['already_scored']}"
        lines.append(line)
    return "\n".join(lines)


def queue_options(all_help: str) -> Any:
    """The options of a review queue listing (``review list``, ``review disagreements``); ``--all`` says
    what else it includes."""
    options = [db_option, click.option("--metric", "-m", help="Only this metric."),
               click.option("--all", "show_all", is_flag=True, help=all_help),
               click.option("--limit", type=int, default=50, show_default=True),
               click.option("--json", "as_json", is_flag=True, help="Print JSON.")]

    def apply(f: Any) -> Any:
        for option in reversed(options):  # click applies the bottom decorator first
            f = option(f)
        return f

    return apply


@cli.group()
def review() -> None:
    """Human review of routed verdicts: list, label, disagreements, agreement, export as a golden set."""


@review.command("list")
@queue_options("Include items already labeled.")
def review_list(db: str | None, metric: str | None, show_all: bool, limit: int, as_json: bool) -> None:
    """Verdicts waiting for a human label (oldest first)."""
    from ..metrics import field_text

    store = _open_store(db)
    items = store.review_queue(metric, pending=not show_all, limit=limit)
    data = [{"id": v["id"], "trace_id": v["trace_id"], "span_id": v.get("span_id"), "metric": v["metric"],
             "label": v["label"],
             "score": v["score"], "confidence": v["confidence"], "why": v["route_reason"],
             "review_label": v["review_label"], "row": v["row"]} for v in items]
    lines = []
    for v in data:
        score = "" if v["score"] is None else f" P={v['score']:.2f}"
        text = " ".join(field_text((v["row"] or {}).get("output") or (v["row"] or {}).get("input")).split())[:100]
        done = f" [labeled {v['review_label']}]" if v["review_label"] else ""
        where = v["trace_id"] + (f" span {v['span_id']}" if v["span_id"] else "")
        lines.append(f"#{v['id']:<5d} {v['metric']:24s} {v['why']:18s} {v['label']}{score}{done}  {where}: {text}")
    emit(data, as_json, "\n".join(lines) or "the review queue is empty")
    store.close()


@review.command("label")
@click.argument("ref")
@click.argument("label")
@db_option
@click.option("--metric", "-m", help="The metric, when REF is a trace id with several verdicts.")
@click.option("--reviewer", help="Who labels.")
@click.option("--note", help="A note kept with the label.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def review_label_cmd(ref: str, label: str, db: str | None, metric: str | None, reviewer: str | None,
                     note: str | None, as_json: bool) -> None:
    """Label a verdict: REF is a trace id, #ID a verdict id from `assay review list`, trace:ID a trace id.

    Several reviewers may label one verdict (every label is kept; the people's label is the majority,
    ties go to `assay review disagreements`); a reviewer's second label replaces their first.
    --reviewer judge:MODEL records an LLM judge's label (agreement only, never a person's)."""
    from ..monitor import review_label

    store = _open_store(db)
    out = review_label(store, ref, label, metric=metric, reviewer=reviewer, note=note)
    store.close()
    where = out["trace_id"] + (f" span {out['span_id']}" if out.get("span_id") else "")
    text = (f"labeled {where} ({out['metric']}) as {out['label']}"
            f" ({'agrees' if out['agrees'] else 'disagrees'} with the evaluator's {out['evaluator_label']})")
    if out.get("replaced"):
        text += f"; replaces {out['reviewer'] or 'anonymous'}'s {out['replaced']}"
    if (out.get("reviewers") or 0) > 1:
        text += (f"; {out['reviewers']} reviewers: " + ("tied, in `assay review disagreements`"
                                                        if out["consensus"] is None else
                                                        f"{out['review_status']} {out['consensus']}"))
    emit(out, as_json, text)


@review.command("export")
@db_option
@click.option("--metric", "-m", help="The metric to export (needed when several were reviewed).")
@click.option("--out", "out", type=click.Path(), help="Write a golden-set JSONL here.")
@click.option("--append", "append_to", type=click.Path(), help="Append new rows to this training JSONL.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def review_export(db: str | None, metric: str | None, out: str | None, append_to: str | None, as_json: bool) -> None:
    """Export reviewed traces as canonical labeled rows (data.test_set / data.train_set of `assay train`)."""
    from ..monitor import export_golden

    store = _open_store(db)
    res = export_golden(store, metric, out=out, append_to=append_to)
    store.close()
    text = f"{res['rows']} reviewed rows of {res['metric']} {res['labels']}"
    if res.get("out"):
        text += f" -> {res['out']}"
    if res.get("append"):
        a = res["append"]
        text += f"; appended {a['added']} to {a['path']} ({a['already_present']} already there"
        text += f", {a['conflicting_labels_skipped']} with a conflicting label skipped)"
    emit(res, as_json, text)


@review.command("disagreements")
@queue_options("Include disagreements a majority already settled.")
def review_disagreements(db: str | None, metric: str | None, show_all: bool, limit: int, as_json: bool) -> None:
    """Verdicts whose reviewers disagree with no majority (oldest first): add a deciding label with
    `assay review label #ID LABEL --reviewer NAME`."""
    store = _open_store(db)
    items = store.disagreements(metric, pending=not show_all, limit=limit)
    store.close()
    data = [{"id": v["id"], "trace_id": v["trace_id"], "span_id": v.get("span_id"), "metric": v["metric"],
             "label": v["label"], "reviews": {r["reviewer"]: r["label"] for r in v["reviews"]},
             "status": v["review_status"], "review_label": v["review_label"], "row": v["row"]} for v in items]
    lines = [f"#{v['id']:<5d} {v['metric']:24s} {v['status']:9s} evaluator {v['label']}  "
             + " ".join(f"{who}={lab}" for who, lab in v["reviews"].items())
             + (f" -> {v['review_label']}" if v["review_label"] else "") + f"  {v['trace_id']}" for v in data]
    emit(data, as_json, "\n".join(lines) or "no disagreements between reviewers")


@review.command("agreement")
@db_option
@click.option("--metric", "-m", "metrics", multiple=True, help="Metric(s); default every evaluator metric.")
@click.option("--n-boot", type=click.IntRange(0, 10000), default=1000, show_default=True,
              help="Bootstrap resamples for the 95% intervals (0: none).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def review_agreement(db: str | None, metrics: tuple[str, ...], n_boot: int, as_json: bool) -> None:
    """Human-vs-human (pairwise kappa, Krippendorff's alpha), judge-vs-human and student-vs-human agreement."""
    from ..monitor import agreement_report

    store = _open_store(db)
    try:
        names = list(metrics) or [n for n, c in store.checks().items() if c["kind"] == "evaluator"]
        out = {n: agreement_report(store, n, n_boot=n_boot) for n in names}
    finally:
        store.close()
    emit(out[names[0]] if len(metrics) == 1 else out, as_json,
         "\n".join(_agreement_text(r) for r in out.values()) or "no metrics")


def _agreement_text(r: dict[str, Any]) -> str:
    def fig(d: dict[str, Any], key: str = "kappa") -> str:
        ci = d.get(f"{key}_interval")
        return ("n/a" if d.get(key) is None else f"{d[key]:.3f}") + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    h, st = r["human_vs_human"], r["student_vs_human"]
    lines = [f"{r['metric']}: {r['reviewed']} verdicts with a people's label",
             f"  human vs human  {h['verdicts']} verdicts with >= 2 reviewers ({h['ties']} tied): mean pairwise kappa "
             f"{'n/a' if h['kappa_mean'] is None else format(h['kappa_mean'], '.3f')}, alpha {fig(h, 'alpha')}"]
    lines += [f"    {p['reviewers'][0]} vs {p['reviewers'][1]}: n {p['n']}, kappa {fig(p)}" for p in h["pairs"]]
    lines += [f"  {j['judge']} vs human: n {j['n']}, kappa {fig(j)}" for j in r["judge_vs_human"]]
    lines.append(f"  student vs human: n {st['n']}, kappa {fig(st)}")
    return "\n".join(lines)


def _open_store(db: str | None) -> Any:
    from ..monitor import Store, default_db

    path = Path(db) if db else default_db()
    if not path.exists():
        raise AssayError("a monitor database", f"no file at {path}", "run `assay monitor` first or pass --db",
                         code="not_found")
    return Store(path)


@cli.command()
@db_option
@click.option("--metric", "-m", "metrics", multiple=True, help="Metric(s); default every evaluator metric.")
@click.option("--window", default="1h", show_default=True, help="Window length: 15m, 1h, 1d or seconds.")
@click.option("--kappa-margin", type=float, default=0.1, show_default=True)
@click.option("--min-reviews", type=int, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def drift(db: str | None, metrics: tuple[str, ...], window: str, kappa_margin: float, min_reviews: int,
          as_json: bool) -> None:
    """Per window: verdict rate, score shift vs training (PSI/KS), agreement with reviewers (kappa)."""
    from ..monitor import drift as drift_fn

    store = _open_store(db)
    names = list(metrics) or [n for n, c in store.checks().items() if c["kind"] == "evaluator"]
    out = {n: drift_fn(store, n, window=window, kappa_margin=kappa_margin, min_reviews=min_reviews) for n in names}
    store.close()
    lines = []
    for n, d in out.items():
        lines.append(f"{n}: {d['n']} verdicts, baseline {d['baseline']['source']}, eval kappa {d['eval_kappa']}")
        for w in d["windows"]:
            lines.append(f"  {w['start']:.0f}  n {w['n']:6d}  fail {w['fail_rate']:.3f}  psi {w.get('psi')}"
                         f"  reviews {w['reviews']}  kappa {w['kappa']}")
        lines += [f"  WARNING {x}" for x in d["warnings"]]
    emit(out, as_json, "\n".join(lines) or "no metrics")

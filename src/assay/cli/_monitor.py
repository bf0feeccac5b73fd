"""``assay traces``, ``eval``, ``monitor``, ``review`` and ``drift``: the online side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml

from ..errors import AssayError
from ._app import cli, emit, output_option
from ._precision import precision_option

db_option = click.option("--db", type=click.Path(),
                         help="SQLite file or postgresql:// URL (default $ASSAY_HOME/monitor.db).")


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


def _run_config(config: str | None, metrics: tuple[str, ...], gates: tuple[str, ...],
                need: bool = True) -> Any:
    from ..monitor._config import RunConfig, load_run_config

    cfg = load_run_config(config) if config else RunConfig()
    cfg.evaluators = list(cfg.evaluators) + [{"artifact": m} for m in metrics] + _gates(gates)
    if need and not cfg.evaluators:
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
@output_option("Also write the report JSON here.", name="out")
@click.option("--fail-under", "fail_under", multiple=True, metavar="FIGURE=N,...",
              help="Exit 1 when a metric's figure is below N, e.g. pass_rate=0.9,kappa=0.6 (any figure of a metric's "
                   "block; METRIC.figure=N for one metric): a CI / release gate.")
@click.option("--min-pass-rate", type=click.FloatRange(0, 1), help="Same as --fail-under pass_rate=N.")
@click.option("--include-trained", is_flag=True,
              help="Keep rows an evaluator trained on (by default they are left out of its figures and counted).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def eval_cmd(config: str | None, metrics: tuple[str, ...], gates: tuple[str, ...], data: str | None,
             smoke: int | None, parallel: int | None, batch_size: int | None, seed: int | None, out: str | None,
             fail_under: tuple[str, ...], min_pass_rate: float | None, as_json: bool,
             include_trained: bool = False) -> None:
    """Run evaluators and gates over a dataset: pass rates, failures with trace ids, histograms.

    For one artifact's agreement report on labeled rows (kappa, F1, calibration), use `assay evaluate`.
    Rows an evaluator's artifact trained on (split.json) are left out of its figures and counted, as
    `assay evaluate` leaves them out (--include-trained keeps them).

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
    ev = Eval(cfg.evaluators, dataset, name=cfg.name, batch_size=batch_size or cfg.batch_size, suites=cfg.suites,
              include_trained=include_trained)
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
        if m.get("excluded_trained_rows"):
            line += f"  left out {m['excluded_trained_rows']} rows it trained on"
        lines.append(line)
        for f in m["failures"][:3]:
            lines.append(f"      fail {f['trace_id']}: {f['label']} {f['reason'] or ''}".rstrip())
    return "\n".join(lines)


@cli.group(invoke_without_command=True)
@click.option("--config", "-c", "config", type=click.Path(), help="Monitor YAML (evaluators, route, db, queue).")
@click.option("--metric", "-m", "metrics", multiple=True, help="Evaluator artifact directory (repeatable).")
@click.option("--gate", "gates", multiple=True, help="A standalone gate as inline YAML (repeatable).")
@click.option("--source", type=click.Path(), help="Trace file to read (JSONL or JSON).")
@click.option("--follow", "-f", is_flag=True, help="Keep reading lines appended to --source (tail -f).")
@click.option("--http", "http_port", type=int, help="Serve an ingest endpoint on this port instead.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address for --http.")
@db_option
@click.option("--queue", is_flag=True, default=None,
              help="Only enqueue the traces for `assay monitor worker`s (no evaluators loaded here).")
@click.option("--band", help="A fixed uncertainty band on P(positive), e.g. 0.3,0.7 (default: around each evaluator's calibrated threshold, route.margin).")
@click.option("--audit-rate", type=float, help="Share of confident passes sent to review (default 0.05).")
@click.option("--seed", type=int, help="Seed of the audit sample.")
@click.option("--batch-size", type=int)
@click.option("--settle", type=float, help="Seconds a trace's spans may keep arriving (follow/http).")
@click.option("--max-traces", type=int, help="Stop after this many traces.")
@click.option("--idle-timeout", type=float, help="With --follow: stop after this many seconds without new lines.")
@click.option("--otlp-endpoint", help="Send each verdict as a span to this OTLP/HTTP endpoint, e.g. "
              "http://127.0.0.1:4318 (export.otlp in the config; needs assay[otel]).")
@precision_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def monitor(ctx: click.Context, config: str | None, metrics: tuple[str, ...], gates: tuple[str, ...],
            source: str | None, follow: bool, http_port: int | None, host: str, db: str | None, queue: bool | None,
            band: str | None, audit_rate: float | None, seed: int | None, batch_size: int | None,
            settle: float | None, max_traces: int | None, idle_timeout: float | None, as_json: bool,
            otlp_endpoint: str | None = None, precision: str = "auto") -> None:
    """Score every trace, store verdicts, route uncertain / failing / audited ones to review.

    With --queue (or queue: true in the config) traces are only enqueued in the store, and
    `assay monitor worker`s score them: several workers on one PostgreSQL store (--db postgresql://...)."""
    from ..monitor import IngestServer, Monitor, Store
    from ..monitor._checks import make_checks
    from ._precision import check_machine

    if ctx.invoked_subcommand is not None:
        return
    if (source is None) == (http_port is None):
        raise AssayError("one trace source", "both --source and --http" if source else "neither",
                         "pass --source FILE [--follow] or --http PORT", code="invalid_input")
    cfg = _run_config(config, metrics, gates, need=not queue)
    queue = cfg.queue if queue is None else queue
    route = _route(cfg, band, audit_rate, seed)
    checks: list[Any] = []
    if not queue:
        check_machine(precision)
        checks = make_checks(cfg.evaluators, precision)  # each artifact loaded at --precision
    _stop_on_sigterm()
    store = Store(db or cfg.db)
    mon = Monitor(checks, store, route, batch_size=batch_size or cfg.batch_size, suites=[] if queue else cfg.suites,
                  queue=queue)
    exporter = _verdict_exporter(cfg, otlp_endpoint, mon)
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
    if exporter is not None:
        summary["export"] = exporter.close()
    store.close()
    emit(summary, as_json, _monitor_text(summary))


@monitor.command("worker")
@click.option("--store", "--db", "store_url", help="The store: a postgresql:// URL (several workers) or a "
              "SQLite file (default: the config's db, else $ASSAY_HOME/monitor.db).")
@click.option("--config", "-c", "config", type=click.Path(), help="Monitor YAML (evaluators, route, db).")
@click.option("--metric", "-m", "metrics", multiple=True, help="Evaluator artifact directory (repeatable).")
@click.option("--gate", "gates", multiple=True, help="A standalone gate as inline YAML (repeatable).")
@click.option("--band", help="A fixed uncertainty band on P(positive), e.g. 0.3,0.7.")
@click.option("--audit-rate", type=float, help="Share of confident passes sent to review (default 0.05).")
@click.option("--seed", type=int, help="Seed of the audit sample.")
@click.option("--batch-size", type=click.IntRange(1), help="Traces per claim (default: the config's, 32).")
@click.option("--lease", type=click.FloatRange(min=0, min_open=True), default=120.0, show_default=True,
              help="Seconds a claimed batch stays this worker's; then another worker may claim it.")
@click.option("--max-attempts", type=click.IntRange(1), default=5, show_default=True,
              help="Claims of one trace before it is parked as failed.")
@click.option("--poll", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Seconds between looks at an empty queue.")
@click.option("--max-traces", type=click.IntRange(1), help="Stop after scoring this many traces.")
@click.option("--idle-timeout", type=click.FloatRange(min=0),
              help="Stop after this many seconds with nothing to claim (0: once the queue is empty).")
@click.option("--otlp-endpoint", help="Send each verdict as a span to this OTLP/HTTP endpoint, e.g. "
              "http://127.0.0.1:4318 (export.otlp in the config; needs assay[otel]).")
@precision_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def monitor_worker(store_url: str | None, config: str | None, metrics: tuple[str, ...], gates: tuple[str, ...],
                   band: str | None, audit_rate: float | None, seed: int | None, batch_size: int | None,
                   lease: float, max_attempts: int, poll: float, max_traces: int | None, idle_timeout: float | None,
                   as_json: bool, otlp_endpoint: str | None = None, precision: str = "auto") -> None:
    """Score queued traces: claim a batch from the store, score it, store the verdicts, repeat.

    Run N of these on one PostgreSQL store (`assay monitor --queue` or the ingest server enqueues):
    each trace is scored once, and a dead worker's batch is claimed again after --lease seconds."""
    from ..monitor import Monitor, Store, Worker
    from ..monitor._checks import make_checks
    from ..monitor._sql import driver_errors
    from ._precision import check_machine

    check_machine(precision)
    cfg = _run_config(config, metrics, gates)
    route = _route(cfg, band, audit_rate, seed)
    checks = make_checks(cfg.evaluators, precision)
    _stop_on_sigterm()
    store = Store(store_url or cfg.db)
    try:
        mon = Monitor(checks, store, route, batch_size=batch_size or cfg.batch_size, suites=cfg.suites)
        worker = Worker(mon, lease=lease, max_attempts=max_attempts)
        exporter = _verdict_exporter(cfg, otlp_endpoint, mon)
        click.echo(f"assay monitor worker {worker.name}: claiming from {store.path} (Ctrl-C stops)", err=True)
        summary = worker.run(max_traces=max_traces, idle_timeout=idle_timeout, poll=poll)
        if exporter is not None:
            summary["export"] = exporter.close()
    except driver_errors() as exc:  # the store went away: one line; the batch in hand comes back after --lease
        raise AssayError("a reachable monitor store", f"{store.path} ({(str(exc).strip().splitlines() or [''])[0]})",
                         f"check the database and restart the worker (its batch is claimed again after {lease:g}s)",
                         code="unreachable") from None
    finally:
        store.close()
    q, w = summary["queue"], summary["worker"]
    text = (_monitor_text(summary) + f"\n  worker {w['name']}: {w['traces']} traces in {w['batches']} batches;"
            f" queue: {q['ready']} ready, {q['leased']} leased, {q['failed']} failed")
    emit(summary, as_json, text)


def _verdict_exporter(cfg: Any, endpoint: str | None, mon: Any) -> Any:
    """The OTLP verdict exporter that ``export.otlp`` or --otlp-endpoint asks for, attached to ``mon``;
    None when export is off (``assay.monitor._otlp_export``)."""
    otlp = cfg.export.otlp_with(endpoint)
    if otlp is None:
        return None
    from ..monitor._otlp_export import OtlpVerdictExporter

    return OtlpVerdictExporter.from_config(otlp).attach(mon)


def _stop_on_sigterm() -> None:
    """SIGTERM (docker stop, systemd) ends the monitor like Ctrl-C: pending traces are scored first."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        def _raise(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _raise)


def _monitor_text(s: dict[str, Any]) -> str:
    lines = [f"{s['traces']} traces {'queued for workers ' if 'queued' in s else ''}-> {s['db']}"]
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
@click.argument("ref", required=False)
@click.argument("label", required=False)
@db_option
@click.option("--metric", "-m", help="The metric, when REF is a trace id with several verdicts.")
@click.option("--reviewer", help="Who labels.")
@click.option("--note", help="A note kept with the label.")
@click.option("--file", "-f", "decisions", type=click.Path(exists=True, dir_okay=False),
              help="Label many verdicts at once: a CSV/JSONL with a ref (or verdict_id, or trace_id) and a label "
                   "column per row, optionally metric, reviewer and note (--metric/--reviewer/--note fill gaps).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def review_label_cmd(ref: str | None, label: str | None, db: str | None, metric: str | None, reviewer: str | None,
                     note: str | None, decisions: str | None, as_json: bool) -> None:
    """Label a verdict: REF is a trace id, #ID a verdict id from `assay review list`, trace:ID a trace id.
    With --file, every row of a decisions file (no REF LABEL): the rows that fail are listed with their
    row number, the others are labelled, and the exit status is 1 when any failed.

    Several reviewers may label one verdict (every label is kept; the people's label is the majority,
    ties go to `assay review disagreements`); a reviewer's second label replaces their first.
    --reviewer judge:MODEL records an LLM judge's label (agreement only, never a person's)."""
    from ..review import label as review_label

    if decisions is not None or ref is None or label is None:
        return _label_file(decisions, ref, db, metric, reviewer, note, as_json)
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


def _decision_ref(rec: dict[str, Any]) -> str | None:
    """A decisions-file row's verdict: ``ref`` as `assay review label` takes it, ``verdict_id`` (#ID) or
    ``trace_id`` (trace:ID)."""
    for key, prefix in (("ref", ""), ("verdict_id", "#"), ("trace_id", "trace:")):
        value = rec.get(key)
        if value not in (None, ""):
            text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value).strip()
            return prefix + text.lstrip("#") if prefix == "#" else prefix + text
    return None


def _label_file(decisions: str | None, ref: str | None, db: str | None, metric: str | None, reviewer: str | None,
                note: str | None, as_json: bool) -> None:
    """``assay review label --file``: every row of a decisions file, in one store session."""
    from ..data import read_records
    from ..review import label as review_label

    if decisions is None or ref is not None:
        raise AssayError("REF LABEL, or --file DECISIONS.csv", "--file with REF" if decisions else "no LABEL",
                         "pass `assay review label REF LABEL` or `assay review label --file decisions.csv`",
                         code="invalid_input")
    records = read_records(decisions)
    done: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    store = _open_store(db)
    try:
        for n, rec in enumerate(records, 1):
            which, lab = _decision_ref(rec), rec.get("label")
            try:
                if which is None or lab in (None, ""):
                    raise AssayError("a ref (or verdict_id, trace_id) and a label on each row",
                                     f"row {n} without {'a ref' if which is None else 'a label'}",
                                     "fill the row or remove it", code="invalid_input")
                value = lab.strip() if isinstance(lab, str) else lab  # JSONL true/false as the metric's labels
                done.append(review_label(store, which, value, metric=rec.get("metric") or metric,
                                         reviewer=rec.get("reviewer") or reviewer, note=rec.get("note") or note))
            except AssayError as exc:
                failed.append({"row": n, "ref": which, "label": lab, "error": str(exc)})
    finally:
        store.close()
    out = {"file": decisions, "rows": len(records), "labeled": len(done), "failed": len(failed),
           "agrees": sum(bool(d["agrees"]) for d in done), "errors": failed, "labels": done}
    text = (f"labeled {len(done)} of {len(records)} verdicts from {Path(decisions).name} "
            f"({out['agrees']} agree with the evaluator)")
    text += "".join(f"\n  failed row {f['row']} ({f['ref']}): {f['error']}" for f in failed[:20])
    if len(failed) > 20:
        text += f"\n  ... {len(failed) - 20} more failed rows (--json lists them all)"
    emit(out, as_json, text)
    if failed:
        raise SystemExit(1)


@review.command("export")
@db_option
@click.option("--metric", "-m", help="The metric to export (needed when several were reviewed).")
@output_option("Write a golden-set JSONL here.", name="out")
@click.option("--append", "append_to", type=click.Path(), help="Append new rows to this training JSONL.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def review_export(db: str | None, metric: str | None, out: str | None, append_to: str | None, as_json: bool) -> None:
    """Export reviewed traces as canonical labeled rows (data.test_set / data.train_set of `assay train`)."""
    from ..review import export as export_golden

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
    from ..review import agreement_report

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
    from ..monitor._sql import is_postgres, sqlite_path

    if is_postgres(db):
        return Store(db)
    path = sqlite_path(db) if db else default_db()
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
    emit(out, as_json, _drift_text(out) or "no metrics")


def _drift_text(out: dict[str, Any]) -> str:
    """Per metric and window: ISO (UTC) window starts, figures to 3 decimals."""
    from ..monitor._drift import iso_time

    def f3(x: Any) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    lines = []
    for n, d in out.items():
        lines.append(f"{n}: {d['n']} verdicts, baseline {d['baseline']['source']}, eval kappa {f3(d['eval_kappa'])}")
        for w in d["windows"]:
            w["start_time"] = iso_time(w["start"])  # --json keeps the epoch seconds too
            lines.append(f"  {w['start_time']}  n {w['n']:6d}  fail {w['fail_rate']:.3f}  psi {f3(w.get('psi'))}"
                         f"  reviews {w['reviews']}  kappa {f3(w['kappa'])}")
        lines += [f"  WARNING {x}" for x in d["warnings"]]
    return "\n".join(lines)

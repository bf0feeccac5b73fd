"""Past one box: the monitor store on PostgreSQL, and several workers on one store without double-scoring.

The PostgreSQL tests start a throwaway cluster (``postgres_server`` in conftest.py) and skip without the
binaries. Each test gets a fresh database; every worker opens its own ``Store`` (its own connection).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from _monitor_util import traces as trace_rows
from assay.errors import AssayError
from assay.monitor import MIGRATIONS, IngestServer, Monitor, RouteConfig, Store, TraceQueue, Verdict, Worker, drift
from assay.monitor._queue import CLAIM_POSTGRES
from assay.monitor._store import postgres_steps
from assay.review import agreement_report
from assay.review import label as review_label
from assay.traces import Problems
from assay.testing import MockEvaluator

METRICS = ("toxicity", "pii")
ROUTE = RouteConfig(band=(0.3, 0.7), audit_rate=0.5, seed=0)


@pytest.fixture
def pg_url(pg_database):
    """A fresh, empty PostgreSQL database (tests/conftest.py's ``pg_database``)."""
    return pg_database


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """One monitor store: a SQLite file, or a PostgreSQL database by URL."""
    if request.param == "sqlite":
        return str(tmp_path / "monitor.db")
    return request.getfixturevalue("pg_url")


def _score(i: int) -> float:
    return (0.05, 0.95, 0.5, 0.45, 0.6, 0.1)[i % 6]


def _evaluators(delay: float = 0.0, hang_on: str | None = None) -> list[MockEvaluator]:
    def proba(row):
        if row["id"] == hang_on:
            time.sleep(3600)  # a worker stuck here is killed by the test
        if delay:
            time.sleep(delay)
        return _score(int(row["id"][1:]))

    return [MockEvaluator(m, proba=proba) for m in METRICS]


def _write(path: Path, start: int, n: int) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in trace_rows(start, n)))
    return path


def _enqueue(url: str, path: Path) -> dict:
    """The ingest side: ``Monitor(queue=True)`` reads the file and only enqueues."""
    store = Store(url)
    try:
        return Monitor([], store, ROUTE, queue=True).run_file(path)
    finally:
        store.close()


def _verdict_counts(url: str) -> Counter:
    store = Store(url)
    try:
        return Counter((v["trace_id"], v["metric"]) for v in store.verdicts())
    finally:
        store.close()


def _assert_each_scored_once(url: str, n: int) -> None:
    counts = _verdict_counts(url)
    want = {(f"t{i}", m) for i in range(n) for m in METRICS}
    assert set(counts) == want, f"missing {sorted(want - set(counts))[:5]}, extra {sorted(set(counts) - want)[:5]}"
    assert set(counts.values()) == {1}, [k for k, c in counts.items() if c != 1][:5]


# --- the store on PostgreSQL ---------------------------------------------------------------------
def _schema_sqlite(store: Store) -> dict[str, list[str]]:
    tables = [r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type='table'"
                                             " AND name NOT LIKE 'sqlite_%'")]
    out = {t: [c[1] for c in store.db.execute(f"PRAGMA table_info({t})")] for t in tables}
    out["indexes"] = sorted(r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type='index'"
                                                           " AND name NOT LIKE 'sqlite_%'"))
    return out


def _schema_pg(store: Store) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in store.db.execute("SELECT table_name, column_name FROM information_schema.columns"
                              " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"):
        out.setdefault(r["table_name"], []).append(r["column_name"])
    out["indexes"] = sorted(r[0] for r in store.db.execute("SELECT indexname FROM pg_indexes WHERE schemaname ="
                                                           " current_schema() AND indexname NOT LIKE '%_pkey'"))
    return out


def test_postgres_store_has_the_sqlite_schema(pg_url, tmp_path):
    """Same steps (versions, names), same tables, columns (in order) and named indexes on both."""
    assert [(s.version, s.name) for s in postgres_steps()] == [(s.version, s.name) for s in MIGRATIONS]
    lite, pg = Store(tmp_path / "m.db"), Store(pg_url)
    try:
        assert pg.version() == lite.version() == len(MIGRATIONS)
        assert _schema_pg(pg) == _schema_sqlite(lite)
        assert "password" not in str(pg.path) and str(pg.path).startswith("postgresql+psycopg://")
    finally:
        lite.close()
        pg.close()
    again = Store(pg_url)  # reopening applies nothing
    assert again.migrate() == len(MIGRATIONS)
    again.close()


def test_store_api(store_url):
    """What the monitor, the review commands and the server call, on SQLite and on PostgreSQL alike."""
    s = Store(store_url)
    s.register_check("pii", "evaluator", spec={"labels": ["true", "false"]}, eval_kappa=0.8)
    s.register_check("pii", "evaluator", spec={"labels": ["true", "false"]})  # keeps the kappa
    assert s.checks()["pii"]["eval_kappa"] == 0.8
    v = Verdict("t1", "pii", "evaluator", "true", False, score=0.55, confidence=0.55,
                probabilities={"true": 0.55, "false": 0.45}, row={"id": "t1", "input": "x 100%"})
    vid = s.add_verdict(v, "review", "uncertain", created_at=100.0)
    assert isinstance(vid, int) and s.add_verdict(v, "review", "uncertain") is None  # one per (trace, metric)
    assert s.has_verdict("t1", "pii") and not s.has_verdict("t2", "pii")
    span = Verdict("t1", "pii", "evaluator", "false", True, score=0.1, confidence=0.9, span_id="s1")
    assert s.add_verdict(span, "recorded", "pass") is not None  # a span of it is another subject
    assert s.scored("pii", ["t1", ("t1", "s1"), ("t1", "s2"), "t2"]) == {"t1", ("t1", "s1")}
    queue = s.review_queue()
    assert [q["id"] for q in queue] == [vid] and queue[0]["details"]["probabilities"]["true"] == 0.55
    s.add_review(vid, "true", reviewer="Judge:gpt")  # a judge (any case): still pending for people
    assert [q["id"] for q in s.review_queue()] == [vid]
    s.add_review(vid, "false", reviewer="ana")
    s.add_review(vid, "true", reviewer="ana", note="ok")  # a reviewer's latest label replaces theirs (both kept)
    assert s.review_queue() == []
    got = s.reviewed("pii")
    assert len(got) == 1 and got[0]["review_label"] == "true" and got[0]["reviewer"] == "ana"
    assert got[0]["row"]["input"] == "x 100%" and got[0]["passed"] is False
    s.add_review(vid, "false", reviewer="bo")
    assert s.review_queue() == [] and s.reviewed() == []  # tied: in the disagreements (see test_agreement)
    assert [d["id"] for d in s.disagreements("pii")] == [vid]
    s.add_review(vid, "true", reviewer="cy")
    assert s.reviewed("pii")[0]["review_label"] == "true"
    assert [r["reviewer"] for r in s.reviews(vid)] == ["Judge:gpt", "ana", "ana", "bo", "cy"]
    assert s.route_counts() == {"pii": {"review:uncertain": 1, "recorded": 1}}
    run = s.start_run({"source": "x"})
    s.finish_run(run, {"traces": 0})
    assert isinstance(run, int)
    p = Problems()
    p.add("invalid_json", "f:1", "bad")
    p.add("invalid_json", "f:2", "bad")
    s.add_problems("f", p)
    assert s.problem_counts() == {"invalid_json": 2}
    if not store_url.endswith(".db"):
        with pytest.raises(AssayError, match="NUL"):  # PostgreSQL cannot store it: refused as bad input
            s.add_traces([{"trace_id": "a\x00b"}])
    s.close()


def _run_inline(url: str, src: Path) -> dict:
    """Two days of traffic scored inline, then reviews: the steps the server's monitor pages read."""
    store = Store(url)
    now = time.time()
    for day, clock in enumerate((now - 86400, now)):
        mon = Monitor(_evaluators(), store, ROUTE, clock=lambda c=clock: c)
        mon.run_file(_write(src / f"day{day}.jsonl", day * 12, 12))
    for v in store.review_queue("toxicity", limit=4):
        review_label(store, f"#{v['id']}", "true", reviewer="ana")
        review_label(store, f"#{v['id']}", "false", reviewer="judge:llm")
    keep = ("trace_id", "metric", "label", "passed", "score", "route", "route_reason", "review_label", "review_status")
    out = {"verdicts": sorted(tuple(v[k] for k in keep) for v in store.verdicts()),
           "routes": store.route_counts(), "queue": len(store.review_queue(limit=None)),
           "drift": [(w["n"], w["fail_rate"], w["reviews"]) for w in drift(store, "toxicity", window="1d")["windows"]],
           "agreement": agreement_report(store, "toxicity", n_boot=0)["judge_vs_human"],
           "traces": sorted(t.trace_id for t in store.traces())}  # ties in received_at: by trace id on PostgreSQL
    store.close()
    return out


def test_monitor_on_postgres_matches_sqlite(pg_url, tmp_path):
    """The inline monitor, review labels, drift and agreement give the same answers on both stores."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    lite = _run_inline(str(tmp_path / "monitor.db"), tmp_path / "a")
    pg = _run_inline(pg_url, tmp_path / "b")
    assert lite["verdicts"] and lite["queue"] and lite["agreement"]
    assert pg == lite


# --- workers --------------------------------------------------------------------------------------
def test_two_workers_on_postgres_score_every_trace_once(pg_url, tmp_path):
    n = 300
    assert _enqueue(pg_url, _write(tmp_path / "t.jsonl", 0, n))["queued"] == n
    workers: list[Worker] = []
    errors: list[BaseException] = []

    def work() -> None:
        store = Store(pg_url)  # its own connection
        try:
            w = Worker(Monitor(_evaluators(delay=0.001), store, ROUTE, batch_size=10))
            workers.append(w)
            w.run(idle_timeout=0, poll=0.05)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and len(workers) == 2
    _assert_each_scored_once(pg_url, n)
    assert sum(w.finished for w in workers) == n and all(w.finished > 0 for w in workers)  # both took batches
    for m in METRICS:  # no trace was even scored twice: each was claimed by one worker
        assert sum(w.monitor.summary()["metrics"][m]["scored"] for w in workers) == n
    store = Store(pg_url)
    assert TraceQueue(store).stats() == {"ready": 0, "leased": 0, "failed": 0}
    store.close()


def test_a_claim_skips_the_rows_another_worker_is_claiming(pg_url, tmp_path):
    """FOR UPDATE SKIP LOCKED: while A's claim is not committed, B takes the next rows without waiting."""
    _enqueue(pg_url, _write(tmp_path / "t.jsonl", 0, 25))
    a, b = Store(pg_url), Store(pg_url)
    b.db.execute("SET statement_timeout = 10000")  # a claim that waited on A's locks would fail, not hang
    now = time.time()
    with a.lock, a.db:  # A's claim, still in its transaction
        mine = a.db.execute(CLAIM_POSTGRES, (now, 5, 10, "A", now, now + 60)).fetchall()
        theirs = TraceQueue(b).claim("B", 10)
    assert sorted(r[0] for r in mine) == list(range(1, 11))
    assert theirs.ids == list(range(11, 21)) and [t.trace_id for t in theirs.traces] == [f"t{i}" for i in range(10, 20)]
    assert TraceQueue(a).claim("C", 10).ids == list(range(21, 26))  # A committed: only the rest is free
    a.close()
    b.close()


def test_expired_lease_is_claimed_again_and_nothing_is_written_twice(store_url, tmp_path):
    """A worker that stored part of its batch and died: after the lease, another finishes the batch."""
    _enqueue(store_url, _write(tmp_path / "t.jsonl", 0, 40))
    store = Store(store_url)
    ghost = TraceQueue(store, lease=60)
    claim = ghost.claim("ghost", 15)
    assert len(claim.ids) == 15
    dead = Monitor(_evaluators(), store, ROUTE)
    dead.process(claim.traces[:6])  # its verdicts for 6 traces are stored; then it "dies" (no finish)
    clock = [time.time()]
    live = Worker(Monitor(_evaluators(), store, ROUTE, batch_size=50), lease=60, clock=lambda: clock[0])
    assert live.run_once() == 25  # the ghost's rows are still leased
    assert live.run_once() == 0 and live.queue.stats() == {"ready": 0, "leased": 15, "failed": 0}
    clock[0] += 61  # the lease ran out
    assert live.run_once() == 15
    assert ghost.finish(claim) == 0  # too late: the rows are gone, nothing happens
    assert live.monitor.summary()["metrics"]["toxicity"]["already_scored"] == 6
    store.close()
    _assert_each_scored_once(store_url, 40)


def test_failed_batch_is_handed_back_and_a_poison_trace_is_parked(store_url, tmp_path):
    _enqueue(store_url, _write(tmp_path / "t.jsonl", 0, 8))
    store = Store(store_url)

    def broken(row):
        raise RuntimeError("model crashed")

    bad = Worker(Monitor([MockEvaluator("toxicity", proba=broken)], store, ROUTE), batch_size=8, max_attempts=2)
    with pytest.raises(RuntimeError):
        bad.run_once()
    q = TraceQueue(store, max_attempts=2)
    assert q.stats() == {"ready": 8, "leased": 0, "failed": 0}  # handed back at once, not after the lease
    errors = [r[0] for r in store.db.execute("SELECT error FROM pending_traces")]
    assert errors == ["RuntimeError: model crashed"] * 8
    with pytest.raises(RuntimeError):
        bad.run_once()
    assert q.stats() == {"ready": 0, "leased": 0, "failed": 8}  # two attempts: parked, never claimed again
    assert q.claim("w", 10).ids == []
    store.close()


_CHILD = """
import sys, time
from assay.monitor import Monitor, RouteConfig, Store, Worker
from assay.testing import MockEvaluator

def proba(row):
    if row["id"] == "t7":
        open(sys.argv[2], "w").close()  # the test kills us now, mid-batch
        time.sleep(3600)
    return 0.2

store = Store(sys.argv[1])
mon = Monitor([MockEvaluator(m, proba=proba) for m in ("toxicity", "pii")], store, RouteConfig(), batch_size=4)
Worker(mon, batch_size=20, lease=float(sys.argv[3])).run_once()
"""


def test_killed_worker_process_loses_no_trace(store_url, tmp_path):
    """A worker process SIGKILLed in the middle of a batch (verdicts of part of it stored): its traces
    are scored by the next worker once the lease runs out, each exactly once."""
    _enqueue(store_url, _write(tmp_path / "t.jsonl", 0, 50))
    flag = tmp_path / "hung"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, store_url, str(flag), "2"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(600):
            if flag.exists() or child.poll() is not None:
                break
            time.sleep(0.1)
        assert flag.exists(), child.communicate(timeout=5)[1].decode()[-2000:]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    partial = _verdict_counts(store_url)
    assert 0 < len(partial) < 40  # part of its batch (t0-t19) was stored before it died
    store = Store(store_url)
    live = Worker(Monitor(_evaluators(), store, ROUTE), batch_size=16, lease=2)
    started = time.monotonic()
    summary = live.run(max_traces=50, idle_timeout=20, poll=0.2)  # the dead worker's 20 come back after its 2 s lease
    store.close()
    assert live.finished == 50 and time.monotonic() - started < 60
    assert summary["queue"] == {"ready": 0, "leased": 0, "failed": 0}
    already = sum(summary["metrics"][m]["already_scored"] for m in METRICS)
    assert already == len(partial)  # what the dead worker stored was not scored again
    _assert_each_scored_once(store_url, 50)


# --- the ingest side and the command line ----------------------------------------------------------
def test_ingest_server_enqueues_for_workers(tmp_path):
    import urllib.request

    db = str(tmp_path / "monitor.db")
    store = Store(db)
    srv = IngestServer(Monitor([], store, ROUTE, queue=True), settle=0.0).start()
    body = "".join(json.dumps(r) + "\n" for r in trace_rows(0, 12)).encode()
    req = urllib.request.Request(srv.url + "/v1/traces", data=body, headers={"Content-Type": "application/x-ndjson"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert json.loads(resp.read())["verdicts"] == []  # nothing scored on the ingest side
    summary = srv.stop()
    assert summary["queued"] == 12 and store.verdicts() == []
    store.close()
    worker_store = Store(db)
    assert Worker(Monitor(_evaluators(), worker_store, ROUTE)).run(idle_timeout=0)["worker"]["traces"] == 12
    worker_store.close()
    _assert_each_scored_once(db, 12)


def test_cli_queue_and_worker(store_url, tmp_path):
    from assay.cli import cli

    src = _write(tmp_path / "t.jsonl", 0, 30)
    runner = CliRunner()
    res = runner.invoke(cli, ["monitor", "--source", str(src), "--db", store_url, "--queue", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["queued"] == 30
    gate = "{type: length, field: output, max_chars: 17}"  # "assistant reply 9" passes, "... 10" fails
    outs = []
    for _ in range(2):  # two workers one after the other: the second finds nothing left
        res = runner.invoke(cli, ["monitor", "worker", "--store", store_url, "--gate", gate, "--batch-size", "7",
                                  "--idle-timeout", "0", "--poll", "0", "--json"])
        assert res.exit_code == 0, res.output
        outs.append(json.loads(res.output[res.output.index("{"):]))
    assert outs[0]["worker"]["traces"] == 30 and outs[0]["worker"]["batches"] == 5 and outs[1]["worker"]["traces"] == 0
    assert outs[1]["queue"] == {"ready": 0, "leased": 0, "failed": 0}
    store = Store(store_url)
    counts = Counter(v["trace_id"] for v in store.verdicts())
    fails = {v["trace_id"] for v in store.verdicts() if not v["passed"]}
    store.close()
    assert set(counts) == {f"t{i}" for i in range(30)} and set(counts.values()) == {1}
    assert fails == {f"t{i}" for i in range(10, 30)}


def test_store_urls(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'a' / 'm.db'}")  # the registry's SQLite URL form
    assert s.path == tmp_path / "a" / "m.db" and s.path.exists() and not s.is_postgres
    s.close()


def test_cli_worker_refuses_a_bad_store_in_one_line(tmp_path):
    from assay.cli import cli

    res = CliRunner().invoke(cli, ["monitor", "worker", "--store", "mysql://x@h/db", "--gate", "{type: pii}"])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "postgresql://" in res.output
    with pytest.raises(AssayError, match="reachable PostgreSQL") as err:
        Store("postgresql://nobody@127.0.0.1:1/none")
    assert err.value.code == "unreachable"

"""``assay serve``, ``assay worker``, ``assay runs``, ``assay register``, ``assay keys``.

``runs`` and ``register`` talk to a server with ``--url`` (or ``ASSAY_URL``), else open the
registry database directly (``--db``/``ASSAY_DATABASE_URL``, default ``$ASSAY_HOME/assay.db``).
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import click

from ..errors import AssayError
from ._app import cli, emit
from ._precision import precision_option

_db = click.option("--db", envvar="ASSAY_DATABASE_URL", default=None,
                   help="Registry database URL (default: SQLite at $ASSAY_HOME/assay.db).")
_artifacts = click.option("--artifacts", envvar="ASSAY_ARTIFACTS", default=None,
                          help="Artifact root: a folder or an fsspec URL (default: $ASSAY_HOME/artifacts).")
_url = click.option("--url", envvar="ASSAY_URL", default=None, help="An assay server (else the local registry).")
_key = click.option("--api-key", envvar="ASSAY_API_KEY", default=None, help="API key for --url.")
_json = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def is_loopback(host: str) -> bool:
    """Only 127.0.0.0/8, ::1 and "localhost" are loopback. Anything else, including "" and 0.0.0.0
    (which bind every interface), is public: authentication is required there."""
    host = (host or "").strip()
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _registry(db: str | None, artifacts: str | None, **kw: Any) -> Any:
    from ..registry import Registry

    return Registry(db, artifacts, **kw)


class LocalBackend:
    """The Client's verbs on a local registry (no server), returning the same dicts."""

    def __init__(self, db: str | None, artifacts: str | None):
        self.reg = _registry(db, artifacts, allow_local_paths=True)

    @staticmethod
    def _d(obj: Any) -> Any:
        if isinstance(obj, list):
            return [LocalBackend._d(o) for o in obj]
        return obj.model_dump(mode="json") if hasattr(obj, "model_dump") else obj

    def list_runs(self, project: str | None = None, status: str | None = None) -> list[dict]:
        return self._d(self.reg.runs.list(project, status))

    def get_run(self, run_id: str) -> dict:
        return self._d(self.reg.runs.get(run_id))

    def cancel_run(self, run_id: str) -> dict:
        return self._d(self.reg.runs.cancel(run_id))

    def run_logs(self, run_id: str, after: int = 0) -> list[dict]:
        return self._d(self.reg.runs.events(run_id, after))

    def register(self, run_id: str, name: str, **kw: Any) -> dict:
        return self._d(self.reg.metrics.register(run_id, name, **kw))

    def create_run(self, project: str, config: Any, *, name: str | None = None) -> dict:
        from ..client import prepare_config

        try:
            self.reg.projects.get(project)
        except AssayError:
            self.reg.projects.create(project)

        def upload(path: Path, kind: str, metric: Any, columns: Any, label_map: Any) -> str:
            if not path.exists():
                raise AssayError("a data file", f"no file at {path}", "check the path in the config", code="not_found")
            return self.reg.datasets.add(project, path.read_bytes(), path.name, metric=metric, kind=kind,
                                         columns=columns, label_map=label_map).id

        return self._d(self.reg.runs.create(project, prepare_config(config, upload), name=name))


def _backend(url: str | None, api_key: str | None, db: str | None, artifacts: str | None) -> Any:
    if url:
        from ..client import Client

        return Client(url, api_key=api_key)
    return LocalBackend(db, artifacts)


# --- serve / worker ----------------------------------------------------------------------------
def _start_worker(db: str, artifacts: str, stale_after: float = 60.0, worker_cmd: str | None = None
                  ) -> subprocess.Popen:
    """An ``assay worker`` child process (the database URL goes in its environment, not argv)."""
    import shlex

    env = {**os.environ, "ASSAY_DATABASE_URL": db, "ASSAY_ARTIFACTS": artifacts}
    if worker_cmd:  # tests: a worker with the mock training (python -m assay.testing ...)
        cmd = [sys.executable if c == "python" else c for c in shlex.split(worker_cmd)]
        cmd += ["--db", db, "--artifacts", artifacts, "--stale-after", str(stale_after)]
    else:
        cmd = [sys.executable, "-c", "import sys; from assay.cli import main; sys.argv[0] = 'assay'; main()",
               "worker", "--stale-after", str(stale_after)]
    return subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent if sys.platform == "linux" else None)


def _die_with_parent() -> None:
    """Linux: the worker gets SIGTERM if `assay serve` dies without cleaning up (e.g. SIGKILL)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _check_hosts(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    """--allowed-host values (each may be comma-separated), as host names without ports."""
    if not value:
        return ()
    from ..server._origin import split_hosts

    try:
        return tuple(split_hosts(value))
    except ValueError as exc:
        raise click.BadParameter(f"{exc} (expected a name like assay.example.com, or .example.com)") from None


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address; non-loopback forces auth.")
@click.option("--port", default=8000, show_default=True, type=int)
@_db
@_artifacts
@click.option("--workers", default=1, show_default=True, type=click.IntRange(0, 64),
              help="Worker processes to start (0: run `assay worker` yourself).")
@click.option("--auth/--no-auth", default=None, help="Require API keys (default: only off loopback).")
@click.option("--batch-rows", default=64, show_default=True, help="Score micro-batch: most rows per call.")
@click.option("--batch-ms", default=10.0, show_default=True, help="Score micro-batch: longest wait (ms).")
@click.option("--providers", "providers_file", envvar="ASSAY_SERVER_CONFIG", default=None,
              type=click.Path(exists=True, dir_okay=False),
              help="YAML of the named providers callers may use (model, base_url, api_key_env); "
                   "default: only mock/... (see docs/server.md).")
@click.option("--stale-after", default=60.0, show_default=True, type=click.FloatRange(1, None),
              help="Fail a run whose worker has not beaten for this many seconds.")
@click.option("--monitor-db", envvar="ASSAY_MONITOR_DB", default=None, type=click.Path(dir_okay=False),
              help="The monitor's SQLite store for the monitoring pages, review queue and drift "
                   "(default: $ASSAY_HOME/monitor.db, the one `assay monitor` writes).")
@click.option("--allowed-host", "allowed_hosts", multiple=True, envvar="ASSAY_ALLOWED_HOSTS", callback=_check_hosts,
              help="Another Host name clients use (a proxy's public name; .example.com: the domain and its "
                   "subdomains); repeatable, or ASSAY_ALLOWED_HOSTS=a,b. Default: the --host name only (and "
                   "127.0.0.1, localhost, ::1 on loopback).")
@click.option("--worker-cmd", default=None, hidden=True, help="Tests: the command that starts a worker.")
@precision_option
@click.option("--threads", type=click.IntRange(1, 256), default=None,
              help="Torch threads of the one scoring thread (default: the usable cores less one, at least 1, "
                   "so the event loop keeps a core).")
def serve(host: str, port: int, db: str | None, artifacts: str | None, workers: int, auth: bool | None,
          batch_rows: int, batch_ms: float, providers_file: str | None, stale_after: float,
          monitor_db: str | None, allowed_hosts: tuple[str, ...], worker_cmd: str | None, precision: str = "auto",
          threads: int | None = None) -> None:
    """Serve the REST API and web UI, with supervised worker processes for queued runs."""
    from ..errors import require

    uvicorn = require("uvicorn", "assay serve", extra="server")
    from ..providers import ServerProviders
    from ..server import create_app
    from ..server._supervisor import Supervisor
    from ._precision import check_machine, serve_loader

    check_machine(precision)  # before anything starts; int8 on a non-encoder metric is refused when it loads
    if threads:
        from .._cpu import SERVE_THREADS_ENV

        os.environ[SERVE_THREADS_ENV] = str(threads)  # read by the scoring thread (assay._cpu.serve_threads)
    loopback = is_loopback(host)
    if not loopback and auth is False:
        raise AssayError(f"authentication on a non-loopback bind ({host})", "--no-auth",
                         "drop --no-auth, or bind to 127.0.0.1", code="auth_required")
    use_auth = True if not loopback else bool(auth)
    providers = ServerProviders.load(providers_file)
    # API and UI callers never name server files (data by uploaded dataset id), whatever the host or auth
    reg = _registry(db, artifacts, providers=providers, load_evaluator=serve_loader(precision))
    if use_auth and not reg.keys.has_any():
        raise AssayError(f"an API key in the registry before serving with authentication on {host or '(all)'}",
                         "no API keys", f"run `assay keys create NAME{' --db ' + db if db else ''}` and send the key "
                         "as 'Authorization: Bearer <key>'", code="auth_required")
    url = reg.engine.url.render_as_string(hide_password=False)
    sup = Supervisor(reg, lambda: _start_worker(url, reg.storage.root, stale_after, worker_cmd), workers,
                     stale_after=stale_after, check_every=min(2.0, max(stale_after / 10, 0.5))).start()
    click.echo(f"assay serving http://{host or '0.0.0.0'}:{port} (database {reg.dialect}, artifacts "
               f"{reg.storage.root}, auth {'on' if use_auth else 'off'}, {workers} worker{'s' * (workers != 1)}, "
               f"providers: {', '.join(providers.names()) or 'none'}, precision {precision}"
               f"{', allowed hosts: ' + ', '.join(allowed_hosts) if allowed_hosts else ''})", err=True)
    import signal

    # uvicorn re-raises SIGTERM after its shutdown: exit through `finally` to stop the workers.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        uvicorn.run(create_app(reg, auth=use_auth, batch_rows=batch_rows, batch_wait_ms=batch_ms,
                               providers=providers, stale_after=stale_after, supervisor=sup,
                               monitor_db=monitor_db, host=host, allowed_hosts=allowed_hosts),
                    host=host, port=port, log_level="info")
    finally:
        sup.stop()


@cli.command()
@_db
@_artifacts
@click.option("--once", is_flag=True, help="Run what is queued, then exit.")
@click.option("--poll", default=1.0, show_default=True, help="Seconds between queue checks.")
@click.option("--heartbeat", default=2.0, show_default=True, help="Seconds between heartbeats.")
@click.option("--stale-after", default=30.0, show_default=True,
              help="Fail a run whose worker has not beaten for this long.")
def worker(db: str | None, artifacts: str | None, once: bool, poll: float, heartbeat: float,
           stale_after: float) -> None:
    """Execute queued runs (train, evaluate, save) from the registry."""
    import signal

    from ..registry import Worker

    w = Worker(_registry(db, artifacts, allow_local_paths=True), poll_interval=poll,
               heartbeat_interval=heartbeat, stale_after=stale_after)

    def _term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _term)
    click.echo(f"worker {w.worker_id} ready (pid {os.getpid()})", err=True)
    try:
        n = w.run(once=once)
    except (KeyboardInterrupt, SystemExit):
        click.echo("worker stopped", err=True)
        return
    click.echo(f"worker done: {n} run(s)", err=True)


# --- runs / register ---------------------------------------------------------------------------
def _run_line(r: dict) -> str:
    summ = r.get("metrics_summary") or {}
    kappa = f" kappa={summ['kappa']:.3f}" if isinstance(summ.get("kappa"), (int, float)) else ""
    extra = f"  {r['failure_reason']}" if r.get("failure_reason") else ""
    return f"{r['id']}  {r['status_title']:<16} {r['progress'] * 100:3.0f}%  {r['name']}{kappa}{extra}"


def _with_backend(fn: Callable[..., Any]) -> Callable[..., Any]:
    for deco in (_json, _key, _url, _artifacts, _db):
        fn = deco(fn)
    return fn


@cli.group()
def runs() -> None:
    """List, show, create and cancel training runs."""


@runs.command("list")
@click.option("--project", default=None)
@click.option("--status", default=None)
@_with_backend
def runs_list(project: str | None, status: str | None, db: str | None, artifacts: str | None, url: str | None,
              api_key: str | None, as_json: bool) -> None:
    """List runs, newest first."""
    items = _backend(url, api_key, db, artifacts).list_runs(project, status)
    emit(items, as_json, "\n".join(_run_line(r) for r in items) or "no runs")


@runs.command("show")
@click.argument("run_id")
@click.option("--logs", is_flag=True, help="Also print the run's log.")
@_with_backend
def runs_show(run_id: str, logs: bool, db: str | None, artifacts: str | None, url: str | None,
              api_key: str | None, as_json: bool) -> None:
    """Show one run: status history, progress, failure reason, figures."""
    b = _backend(url, api_key, db, artifacts)
    run = b.get_run(run_id)
    if logs:
        run["logs"] = b.run_logs(run_id)
    hist = "\n".join(f"  {h['at']}  {h['message']}" for h in run.get("history") or [])
    text = _run_line(run) + f"\n  artifact: {run.get('artifact_location') or '-'}\n" + hist
    if logs:
        text += "\nlog:\n" + "\n".join(f"  {e['at']} [{e['kind']}] {e['message']}" for e in run["logs"])
    emit(run, as_json, text)


@runs.command("create")
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--project", required=True, help="Project name (created if missing).")
@click.option("--name", default=None)
@_with_backend
def runs_create(config: str, project: str, name: str | None, db: str | None, artifacts: str | None,
                url: str | None, api_key: str | None, as_json: bool) -> None:
    """Queue a run from a config YAML (its data files are uploaded as datasets)."""
    run = _backend(url, api_key, db, artifacts).create_run(project, config, name=name)
    emit(run, as_json, _run_line(run))


@runs.command("cancel")
@click.argument("run_id")
@_with_backend
def runs_cancel(run_id: str, db: str | None, artifacts: str | None, url: str | None, api_key: str | None,
                as_json: bool) -> None:
    """Cancel a queued run, or ask the worker to stop a running one."""
    run = _backend(url, api_key, db, artifacts).cancel_run(run_id)
    emit(run, as_json, _run_line(run) + ("  (cancel requested)" if run.get("cancel_requested") else ""))


@cli.command()
@click.argument("run_id")
@click.argument("name", required=False)
@click.option("--threshold", type=float, default=None, help="Binary: positive when score >= threshold.")
@click.option("--description", default=None)
@click.option("--yes", "-y", "confirm", is_flag=True,
              help="Register even when the run's report shows the evaluator below a baseline.")
@_with_backend
def register(run_id: str, name: str | None, threshold: float | None, description: str | None, confirm: bool,
             db: str | None, artifacts: str | None, url: str | None, api_key: str | None, as_json: bool) -> None:
    """Register a Fine-tuned run as the next immutable version of metric NAME (NAME-vN).

    A retrain from reviews (`assay retrain`) needs no NAME: it becomes the next version of its metric.

    When the run's report shows the evaluator's kappa below a baseline's, this stops with a warning;
    at a terminal it asks, else pass --yes."""
    backend = _backend(url, api_key, db, artifacts)
    try:
        m = backend.register(run_id, name, threshold=threshold, description=description, confirm=confirm)
    except AssayError as exc:  # the local registry and the client (ClientError) raise the same code
        if exc.code != "needs_confirmation" or as_json or not sys.stdin.isatty():
            raise
        click.echo(f"warning: {exc.found}", err=True)
        if not click.confirm("Register it anyway?", default=False):
            raise SystemExit(1) from None
        m = backend.register(run_id, name, threshold=threshold, description=description, confirm=True)
    emit(m, as_json, f"registered {m['full_name']} (run {m['run_id']}, sha256 {m['artifact_sha256'][:12]})")


# --- keys --------------------------------------------------------------------------------------
@cli.group()
def keys() -> None:
    """API keys for the server (stored hashed)."""


@keys.command("create")
@click.argument("name")
@click.option("--project", default=None, help="Scope the key to this project (default: an operator key, "
                                               "admin of every project).")
@click.option("--role", default="viewer", show_default=True,
              type=click.Choice(["admin", "editor", "scorer", "viewer"]), help="The key's role in --project.")
@_db
@_json
def keys_create(name: str, project: str | None, role: str, db: str | None, as_json: bool) -> None:
    """Create a key; it is printed once."""
    k = _registry(db, None).keys.create(name, project=project, role=role).model_dump(mode="json")
    emit(k, as_json, f"{k['key']}\n(key {k['id']} '{k['name']}': store it now, it is not shown again)")


@keys.command("grant")
@click.argument("ref")
@click.argument("project")
@click.argument("role", type=click.Choice(["admin", "editor", "scorer", "viewer", "none"]))
@_db
@_json
def keys_grant(ref: str, project: str, role: str, db: str | None, as_json: bool) -> None:
    """Give key REF (id, name or prefix) ROLE on PROJECT ('none' removes it)."""
    k = _registry(db, None).keys.grant(ref, project, None if role == "none" else role).model_dump(mode="json")
    emit(k, as_json, f"key {k['id']} '{k['name']}': {k['projects'] or 'no projects'}")


@keys.command("list")
@_db
@_json
def keys_list(db: str | None, as_json: bool) -> None:
    """List keys (prefixes only)."""
    items = [k.model_dump(mode="json") for k in _registry(db, None).keys.list()]
    emit(items, as_json, "\n".join(f"{k['id']}  {k['prefix']}...  {k['name']}"
                                   f"{'  revoked' if k['revoked_at'] else ''}" for k in items) or "no keys")


@keys.command("revoke")
@click.argument("ref")
@_db
@_json
def keys_revoke(ref: str, db: str | None, as_json: bool) -> None:
    """Revoke a key by id, name or prefix."""
    k = _registry(db, None).keys.revoke(ref).model_dump(mode="json")
    emit(k, as_json, f"revoked {k['id']} '{k['name']}'")

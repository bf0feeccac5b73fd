"""The FastAPI application: one JSON error shape, API-key authentication, the routers."""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import AssayError, require

require("fastapi", "the assay server", extra="server")

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from sqlalchemy import exc as sa_exc  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

from ..monitor._sql import store_target  # noqa: E402
from ..registry import Registry  # noqa: E402
from . import _api  # noqa: E402
from ._batcher import ScoreBatcher  # noqa: E402
from ._deps import error_body, shown_error, status_of  # noqa: E402
from ._judge_api import router as judge_router  # noqa: E402
from ._limits import Limits, RequestLimits  # noqa: E402
from ._monitor_api import router as monitor_router  # noqa: E402
from ._origin import HostOriginCheck  # noqa: E402
from ._retrain import router as retrain_router  # noqa: E402
from ._uploads import BodyLimit, clean_at_start  # noqa: E402

log = logging.getLogger("assay.server")

_HTTP_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
               413: "too_large", 415: "unsupported_media_type"}


def _assay_error(request: Request, exc: AssayError) -> JSONResponse:
    return JSONResponse(shown_error(request, exc.to_dict()), status_code=status_of(exc))


RETRY_AFTER_S = 5
BAD_INPUT = (UnicodeError, RecursionError, OverflowError)


def db_errors() -> tuple[type[BaseException], ...]:
    """The database down, locked or out of connections: SQLAlchemy's wrapper, the pool's timeout, the raw
    drivers' errors (psycopg's when it is loaded: a PostgreSQL registry loads it)."""
    pg = sys.modules.get("psycopg")
    return (sa_exc.OperationalError, sa_exc.TimeoutError, sqlite3.OperationalError,
            *((pg.OperationalError,) if pg is not None else ()))


def _db_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """503 with Retry-After: the database is down, locked or out of connections (its own message, which can
    name the host, goes to the log only)."""
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, str(exc).splitlines()[:1])
    return JSONResponse(error_body("database_unavailable", "a reachable database",
                                   f"database unavailable ({type(exc).__name__})",
                                   f"retry in {RETRY_AFTER_S} seconds; if it persists, the operator checks "
                                   "the database"),
                        status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


def _bad_input(request: Request, exc: Exception) -> JSONResponse:
    """422 for input no check named earlier: text that is not valid Unicode, nesting deeper than Python
    follows, a number too large for the database."""
    log.warning("refused input on %s %s: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
    if isinstance(exc, UnicodeError):
        body = error_body("invalid_unicode", "valid Unicode text (UTF-8, no lone surrogates such as \\ud800)",
                          f"text that cannot be encoded ({type(exc).__name__})", "fix the text")
    elif isinstance(exc, RecursionError):
        body = error_body("invalid_json", "input nested a few levels deep", "nesting too deep to read",
                          "flatten the structure")
    else:
        body = error_body("invalid_input", "numbers within the 64-bit range", "a number too large",
                          "send a smaller number")
    return JSONResponse(body, status_code=422)


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errs = exc.errors()
    first = errs[0] if errs else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
    found = f"{where}: {first.get('msg', 'invalid')}" + (f" (and {len(errs) - 1} more)" if len(errs) > 1 else "")
    body = error_body("invalid_request", f"a request matching the API schema at {request.url.path}", found,
                      "see /docs for the request format")
    body["error"]["details"] = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg")} for e in errs[:20]]
    return JSONResponse(shown_error(request, body["error"]), status_code=422)


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    if exc.status_code == 404:
        body = error_body(code, "an existing API path (see /docs)", f"no route {request.method} {request.url.path}",
                          "check the URL")
    elif exc.status_code == 405:
        body = error_body(code, "a method this path accepts", f"{request.method} {request.url.path}",
                          "see /docs for the methods of each path")
    else:
        body = error_body(code, "a request the server accepts", str(exc.detail), "see /docs")
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, db_errors()):  # raised outside the routes (the key check), or wrapped by no handler
        return _db_unavailable(request, exc)
    if isinstance(exc, BAD_INPUT):
        return _bad_input(request, exc)
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(error_body("internal_error", "the request to succeed",
                                   f"an internal error ({type(exc).__name__})",
                                   "retry; if it persists, report it with the server log"), status_code=500)


def _add_error_handlers(app: FastAPI) -> None:
    """Every failure in the one error shape: the routes' (through Starlette's exception middleware) and,
    through ``_internal_error``, the middlewares'."""
    app.add_exception_handler(AssayError, _assay_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _internal_error)
    for cls in db_errors():
        app.add_exception_handler(cls, _db_unavailable)
    for cls in BAD_INPUT:
        app.add_exception_handler(cls, _bad_input)


class Failsafe:
    """ASGI middleware, the outermost: an exception no handler answered becomes the one error shape here
    (503 for the database, 422 for unreadable input, else 500) instead of reaching Starlette's last
    handler, which re-raises it and so made the server drop the client's connection after a 500."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracked(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if started:  # the answer is on its way: nothing to replace it with
                raise
            await _internal_error(Request(scope), exc)(scope, receive, send)


class KeyCheck:
    """Checks ``Authorization: Bearer <key>`` (or ``X-API-Key``, or the UI's ``assay_key`` cookie).
    Valid keys (and their project roles) are remembered for ``ttl`` seconds, so a revoked key or a
    changed role takes effect within that."""

    def __init__(self, registry: Registry, ttl: float = 10.0):
        self.registry = registry
        self.ttl = ttl
        self._ok: dict[str, tuple[float, Any]] = {}

    @staticmethod
    def token(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return request.headers.get("x-api-key") or request.cookies.get("assay_key")

    def __call__(self, token: str | None) -> bool:
        return self.scope(token) is not None

    def scope(self, token: str | None) -> Any:
        """The key's scope (assay.registry KeyScope), or None for no, an unknown or a revoked key."""
        if not token:
            return None
        now = time.monotonic()
        hit = self._ok.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        sc = self.registry.keys.scope(token)
        if sc is not None:
            if len(self._ok) > 10000:  # bounded: stale entries of many keys
                self._ok = {k: v for k, v in self._ok.items() if v[0] > now}
            self._ok[token] = (now + self.ttl, sc)
            return sc
        self._ok.pop(token, None)
        return None


def unauthorized(request: Request) -> JSONResponse:
    has = bool(KeyCheck.token(request))
    return JSONResponse(error_body(
        "unauthorized", "a valid API key (Authorization: Bearer <key>)",
        "an unknown or revoked key" if has else "no key", "create one with `assay keys create NAME`"),
        status_code=401, headers={"WWW-Authenticate": "Bearer"})


def create_app(registry: Registry | None = None, *, auth: bool = False, ui: bool = True,
               batch_rows: int = 64, batch_wait_ms: float = 10.0, providers: Any = None,
               stale_after: float = 60.0, supervisor: Any = None, monitor_db: str | Path | None = None,
               host: str = "127.0.0.1", allowed_hosts: list[str] | tuple[str, ...] | None = None,
               limits: Limits | None = None) -> FastAPI:
    """The assay server app. ``auth``: require an API key on every /v1 and UI request
    (``/v1/health``, ``/docs`` and ``/openapi.json`` stay open). ``providers``: the named
    providers callers may use (:class:`assay.providers.ServerProviders`; default: from
    ``$ASSAY_SERVER_CONFIG``, else only ``mock/...``). ``stale_after``: seconds without a worker
    heartbeat before ``/v1/health`` reports it stale. ``supervisor``: the worker processes
    ``assay serve`` runs (reported by ``/v1/health``). ``monitor_db``: the monitor's SQLite store
    that the monitoring endpoints and pages read and label (default: ``$ASSAY_MONITOR_DB``, else
    ``$ASSAY_HOME/monitor.db``), opened on first use; callers never choose it. ``host``: the bind address;
    with ``allowed_hosts`` (default: ``$ASSAY_ALLOWED_HOSTS``) the ``Host`` names accepted, and writes
    from other origins are refused (:mod:`assay.server._origin`). ``limits``: what one request may carry
    (default: :meth:`Limits.from_env`, ``$ASSAY_MAX_*``; see :mod:`assay.server._limits`)."""
    from ..providers import ServerProviders

    registry = registry or Registry()
    if providers is not None or registry.providers is None:
        registry.providers = providers if providers is not None else ServerProviders.load()
    app = FastAPI(title="assay", version=_version(),
                  description="Projects, datasets, training runs and registered evaluator metrics. "
                              "Errors always have the shape {\"error\": {code, message, expected, found, fix}}. "
                              "Score requests for one metric are micro-batched "
                              f"(up to {batch_rows} rows or {batch_wait_ms:g} ms).")
    clean_at_start(registry)  # temporary and dataset folders left by a killed server
    app.state.registry = registry
    app.state.auth = auth
    app.state.keys = KeyCheck(registry)
    app.state.batcher = ScoreBatcher(registry, max_rows=batch_rows, max_wait_ms=batch_wait_ms)
    app.state.stale_after = stale_after
    app.state.supervisor = supervisor
    app.state.monitor_db = store_target(monitor_db or os.environ.get("ASSAY_MONITOR_DB") or _default_monitor_db())
    app.state.monitor = None  # the monitor Store, opened by the first monitoring request
    app.state.limits = limits or Limits.from_env()
    _add_error_handlers(app)
    app.add_middleware(RequestLimits, limits=app.state.limits)  # inside the key check: no body read before it

    open_paths = ("/v1/health", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc", "/static/", "/login")

    @app.middleware("http")
    async def _auth(request: Request, call_next: Any) -> Any:
        path = request.url.path
        if "\x00" in path or "%00" in str(request.url.query):
            return JSONResponse(error_body("invalid_input", "a URL without NUL characters", "a NUL (%00) in the URL",
                                           "remove the NUL character"), status_code=400)
        if app.state.auth:
            import asyncio

            token = KeyCheck.token(request)
            sc = await asyncio.to_thread(app.state.keys.scope, token) if token else None
            request.state.scope = sc
            if sc is None and not path.startswith(open_paths):
                if not path.startswith("/v1/") and request.method == "GET":
                    from urllib.parse import quote

                    from fastapi.responses import RedirectResponse

                    return RedirectResponse(f"/login?next={quote(path)}", status_code=303)
                return unauthorized(request)
        return await call_next(request)

    app.add_middleware(BodyLimit, max_bytes=_api.MAX_UPLOAD_BYTES)
    app.add_middleware(HostOriginCheck, host=host, allowed_hosts=allowed_hosts)  # before the body and key checks
    app.include_router(_api.router)
    app.include_router(retrain_router)
    app.include_router(judge_router)
    app.include_router(monitor_router)
    if ui:
        try:
            from ._ui import mount_ui
        except ModuleNotFoundError as exc:  # the UI is optional
            if exc.name != f"{__package__}._ui":
                raise
        else:
            mount_ui(app)
    app.add_middleware(Failsafe)  # the outermost
    return app


def _default_monitor_db() -> Path:
    from ..monitor import default_db

    return default_db()


def _version() -> str:
    return __version__

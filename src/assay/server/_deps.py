"""What the routers and middlewares share: the error table, the one error shape and what an error may show
a caller, and the request helpers (the request's registry, lookups with the caller's access checked).

The routers (``_api``, ``_monitor_api``, ``_retrain``, ``_judge_api``, ``_ui``) and the middlewares
(``_limits``, ``_uploads``, ``_origin``) import these from here; ``_app`` imports them and the routers, and
no server module imports ``_app``, so the server's modules import each other without a circle.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request
from pydantic import BaseModel

from ..errors import AssayError
from ..registry import Dataset, Metric, Project, Registry, Run
from . import _access as acc

STATUS = {
    "not_found": 404, "unauthorized": 401, "forbidden": 403, "conflict": 409, "name_taken": 409,
    "provider_not_allowed": 400, "artifact_modified": 409, "invalid_upload": 400,
    "already_registered": 409, "needs_confirmation": 409, "invalid_status": 409, "too_large": 413, "missing_dependency": 501,
    "invalid_artifact": 500, "internal_error": 500, "database_unavailable": 503,
}
LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # in a parsed str: never part of a pair (json.loads joins pairs)


def error_body(code: str, expected: str, found: str, fix: str) -> dict[str, Any]:
    return {"error": AssayError(expected, found, fix, code=code).to_dict()}


def status_of(exc: AssayError) -> int:
    """The HTTP status of an error, for the API and the UI pages alike."""
    return STATUS.get(exc.code, 422 if exc.code.startswith(("invalid", "missing", "empty", "too_few")) else 400)


MAX_ERROR_CHARS = 2000  # one text of an error (message, expected, found, fix); 300 in its lists (rows)


def _server_settings(request: Request) -> list[tuple[str, str]]:
    """(text, stand-in): the operator's settings an error may never show a caller who is not the operator:
    provider endpoints and key variables, the database URL, the artifact root."""
    sc = acc.scope(request)
    if sc is None or sc.global_role:
        return []
    reg = request.app.state.registry
    out = [(str(reg.url), "<the server's database>"), (str(reg.storage.root), "<artifacts>")]
    for entry in (getattr(reg.providers, "providers", None) or {}).values():
        out += [(entry[k], f"<the server's {k}>") for k in ("base_url", "api_key_env")
                if isinstance(entry.get(k), str) and len(entry[k]) > 2]
    return sorted(out, key=lambda p: -len(p[0]))


def _bounded(value: Any, hide: list[tuple[str, str]], limit: int = MAX_ERROR_CHARS) -> Any:
    """An error's texts cut to ``limit`` characters (lists: 200 items), server settings hidden, lone
    surrogates replaced (so the body always encodes as UTF-8)."""
    if isinstance(value, str):
        for text, stand_in in hide:
            value = value.replace(text, stand_in)
        value = LONE_SURROGATE.sub("\ufffd", value)
        return value if len(value) <= limit else f"{value[:limit]}... ({len(value) - limit:,} more characters)"
    if isinstance(value, dict):
        return {_bounded(str(k), hide, 100): _bounded(v, hide, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_bounded(v, hide, 300) for v in value[:200]]
    return value


def shown_error(request: Request, error: dict[str, Any]) -> dict[str, Any]:
    """``{"error": error}`` as a caller may see it (see :func:`_bounded`)."""
    return {"error": _bounded(error, _server_settings(request))}


# --- request helpers --------------------------------------------------------------------------------
def _reg(request: Request) -> Registry:
    return request.app.state.registry


class ErrorBody(BaseModel):
    code: str
    message: str
    expected: str
    found: str
    fix: str


class ErrorResponse(BaseModel):
    error: ErrorBody


_ERRORS: dict[int | str, dict[str, Any]] = {c: {"model": ErrorResponse} for c in (400, 401, 403, 404, 409, 413, 422,
                                                                                  500)}


def _visible(request: Request, kind: str, ref: str, need: str, get: Any) -> Any:
    """``get(ref)``, if the caller may ``need`` it: 404 for strangers (names never leak), 403 for small roles."""
    try:
        obj = get(ref)
    except AssayError as exc:
        if exc.code != "not_found":
            raise
        raise acc.hidden(kind, ref) from None
    acc.check(request, obj.project_id if kind != "project" else obj.id, need, kind, ref)
    return obj


def _project(request: Request, ref: str, need: str) -> Project:
    return _visible(request, "project", ref, need, _reg(request).projects.get)


def _dataset(request: Request, dataset_id: str, need: str) -> Dataset:
    return _visible(request, "dataset", dataset_id, need, _reg(request).datasets.get)


def _run(request: Request, run_id: str, need: str) -> Run:
    return _visible(request, "run", run_id, need, _reg(request).runs.get)


def _metric(request: Request, name: str, need: str) -> Metric:
    return _visible(request, "metric", name, need, _reg(request).metrics.get)

"""Bounds on what one request may carry, checked before the expensive work.

``RequestLimits`` (ASGI middleware) reads a JSON or form body (never a multipart upload: those
stream to disk under ``BodyLimit``) and refuses, before FastAPI parses it into objects or anything
scores it:

- a body over ``json_bytes`` (413 ``too_large``: by ``Content-Length`` at once, else by counting);
- JSON nested deeper than ``json_depth`` (422 ``invalid_json``);
- one string over ``text_chars`` characters, or all strings together over ``request_chars``
  (413 ``too_large``, naming the field, e.g. ``rows[0].input``);
- a lone UTF-16 surrogate (``"\\ud800"`` sent as a JSON escape; no UTF-8 text can hold one) in any
  string or key (422 ``invalid_unicode``, naming the field).

The common case costs two byte counts and one regular-expression scan: a body is parsed here only
when it has more brackets than ``json_depth``, a surrogate escape, or more bytes than
``text_chars`` (a JSON string never has more characters than bytes). Defaults suit real traces;
the operator changes them with ``$ASSAY_MAX_TEXT_CHARS``, ``$ASSAY_MAX_REQUEST_CHARS``,
``$ASSAY_MAX_JSON_BYTES`` and ``$ASSAY_MAX_JSON_DEPTH`` (see docs/server.md). Columns per
uploaded file are capped by the data reader (``$ASSAY_MAX_COLUMNS``, :mod:`assay.data`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass, fields
from typing import Any, Iterator

from starlette.responses import JSONResponse

from ..errors import AssayError
from ._deps import LONE_SURROGATE, error_body, status_of
from ._uploads import too_large_response

ENV = {"text_chars": "ASSAY_MAX_TEXT_CHARS", "request_chars": "ASSAY_MAX_REQUEST_CHARS",
       "json_bytes": "ASSAY_MAX_JSON_BYTES", "json_depth": "ASSAY_MAX_JSON_DEPTH"}
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # a JSON escape of a UTF-16 surrogate (maybe paired)
_THREAD_BYTES = 1 << 20  # larger bodies are checked off the event loop


@dataclass(frozen=True)
class Limits:
    """What one request may carry (see the module docstring)."""

    text_chars: int = 1_000_000  # one string (a row's input, output, context ...)
    request_chars: int = 8_000_000  # all strings of one JSON body together
    json_bytes: int = 32 * 2**20  # a JSON or form body (uploads: MAX_UPLOAD_BYTES)
    json_depth: int = 64  # nesting of JSON arrays and objects

    @classmethod
    def from_env(cls) -> "Limits":
        """The defaults, changed by ``$ASSAY_MAX_TEXT_CHARS``, ``$ASSAY_MAX_REQUEST_CHARS``,
        ``$ASSAY_MAX_JSON_BYTES`` and ``$ASSAY_MAX_JSON_DEPTH`` (``1_000_000`` style allowed)."""
        values: dict[str, int] = {}
        for f in fields(cls):
            raw = os.environ.get(ENV[f.name], "").strip().replace("_", "")
            if raw:
                if not raw.isdigit() or int(raw) < 1:
                    raise AssayError(f"a positive whole number in ${ENV[f.name]}", f"'{raw}'",
                                     f"set {ENV[f.name]} to a number such as {f.default}", code="invalid_config")
                values[f.name] = int(raw)
        return cls(**values)


def field_name(path: tuple[Any, ...]) -> str:
    """``("rows", 0, "input")`` -> ``rows[0].input`` (the body itself: ``the body``)."""
    out = ""
    for part in path:
        name = LONE_SURROGATE.sub("\ufffd", str(part)[:60])  # the field's name, as a reply can carry it
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + name
    return out or "the body"


def _strings(obj: Any, max_depth: int) -> Iterator[tuple[tuple[Any, ...], str | None]]:
    """(path, text) of every string and key in document order; (path, None) where nesting passes ``max_depth``."""
    stack: list[tuple[Any, tuple[Any, ...], int]] = [(obj, (), 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            yield path, value
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth > max_depth:
            yield path, None
            return
        items = list(value.items() if isinstance(value, dict) else enumerate(value))
        for key, item in reversed(items):
            stack.append((item, (*path, key), depth + 1))
            if isinstance(key, str):
                stack.append((key, (*path, key), depth + 1))


def too_deep(limit: int, where: str = "the JSON body") -> AssayError:
    return AssayError(f"{where} nested at most {limit} levels deep", "deeper nesting",
                      "flatten the structure", code="invalid_json")


def lone_surrogate(where: str) -> AssayError:
    return AssayError(f"valid Unicode text in {where}", "a lone UTF-16 surrogate (such as \\ud800), which no "
                      "UTF-8 text can hold", f"fix the text of {where} (send UTF-8, or escape pairs only)",
                      code="invalid_unicode")


def check_value(obj: Any, limits: Limits, *, surrogates: bool = True, what: str = "") -> None:
    """Raise the first problem of a parsed JSON value: nesting, a text too long, all texts too long,
    a lone surrogate. ``what``: the prefix of field names (a form field's name)."""
    total = 0
    for path, text in _strings(obj, limits.json_depth):
        where = field_name((what, *path) if what else path)
        if text is None:
            raise too_deep(limits.json_depth, what or "the JSON body")
        total += len(text)
        if len(text) > limits.text_chars:
            raise AssayError(f"texts of at most {limits.text_chars:,} characters each", f"{where}: "
                             f"{len(text):,} characters", "shorten or split the text", code="too_large")
        if surrogates and LONE_SURROGATE.search(text):
            raise lone_surrogate(where)
    if total > limits.request_chars:
        raise AssayError(f"at most {limits.request_chars:,} characters of text in one request",
                         f"{total:,} characters", "send fewer or shorter rows per request", code="too_large")


def check_json(body: bytes, limits: Limits) -> None:
    """The checks of :func:`check_value` on a raw JSON body, parsing it only when a problem is possible.
    A body that is not JSON passes (FastAPI answers it in the one error shape)."""
    escape = _SURROGATE_ESCAPE.search(body) is not None
    brackets = body.count(b"[") + body.count(b"{")
    if brackets <= limits.json_depth and not escape and len(body) <= min(limits.text_chars, limits.request_chars):
        return
    try:
        obj = json.loads(body)
    except RecursionError:  # far deeper than any limit: the parser gave up
        raise too_deep(limits.json_depth) from None
    except ValueError:
        return
    check_value(obj, limits, surrogates=escape)


def _refusal(exc: AssayError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(exc.code, exc.expected, exc.found, exc.fix), status_code=status_of(exc),
                        headers=headers)


def _body_too_large(scope: dict, limit: int, found: str, form: bool) -> Any:
    if form:  # a UI form post: a short page for a browser (see _uploads.too_large_response)
        return too_large_response(scope, limit, found)
    exc = AssayError(f"a JSON or form body of at most {limit / 2**20:g} MiB (files: a multipart upload)", found,
                     "send fewer or shorter rows per request", code="too_large")
    return _refusal(exc, {"Connection": "close"})


class RequestLimits:
    """ASGI middleware: the checks of the module docstring on JSON and form bodies."""

    def __init__(self, app: Any, limits: Limits):
        self.app = app
        self.limits = limits

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") not in BODY_METHODS:
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        ctype = headers.get(b"content-type", b"").lower()
        if ctype.startswith(b"multipart/"):
            return await self.app(scope, receive, send)
        form = ctype.startswith(b"application/x-www-form-urlencoded")
        body, refusal = await self._read(scope, receive, headers.get(b"content-length", b""), form)
        if body is not None and not form:
            try:
                if len(body) > _THREAD_BYTES:
                    await asyncio.to_thread(check_json, body, self.limits)
                else:
                    check_json(body, self.limits)
            except AssayError as exc:
                refusal = _refusal(exc)
        if refusal is not None:
            return await refusal(scope, receive, send)
        if body is not None:
            await self.app(scope, _replay(body, receive), send)

    async def _read(self, scope: dict, receive: Any, declared: bytes, form: bool) -> tuple[bytes | None, Any]:
        """(the whole body, None), or (None, the 413 answer) over the limit, or (None, None) when the client left."""
        limit = self.limits.json_bytes
        if declared.isdigit() and int(declared) > limit:
            return None, _body_too_large(scope, limit, f"{int(declared) / 2**20:.1f} MiB", form)
        chunks, seen, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return None, None
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                return None, _body_too_large(scope, limit, f"more than {limit / 2**20:g} MiB", form)
            chunks.append(chunk)
            more = message.get("more_body", False)
        return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), None


def _replay(body: bytes, receive: Any) -> Any:
    """A ``receive`` that hands the app the body already read, then passes on (a disconnect)."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay

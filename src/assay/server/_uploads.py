"""Uploads go to disk in chunks, with the size limit enforced while the body is read.

``BodyLimit`` (ASGI middleware) refuses a request body over the limit as it streams in (413
``too_large``, before it is all received: by ``Content-Length`` at once, else, chunked, by
counting); ``spool_upload`` copies the multipart file part to a private temporary file in 1 MiB
chunks, so the handler never holds the file in memory. Parsing then reads the file
incrementally (see ``Registry.datasets.add``). The temporary folder is named after this process
(``assay.registry._ingest.private_temp_dir``): one left by a killed server is removed at the next
start (``clean_at_start``), with dataset folders that no database row names.
"""

from __future__ import annotations

import logging
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..errors import AssayError
from ..registry._ingest import private_temp_dir, remove_dead_temp_dirs
from ._deps import error_body

log = logging.getLogger("assay.server")

CHUNK = 1 << 20
MULTIPART_SLACK = 1 << 20  # form fields and part headers around the file


class _Overflow(Exception):
    """Raised inside ``receive`` when the body passes the limit (the handler's answer is dropped)."""


def too_large_response(scope: dict, limit: int, found: str) -> Any:
    """413 ``too_large``: the one JSON error shape, or a short page for a browser's UI form post."""
    from starlette.responses import HTMLResponse, JSONResponse

    body = error_body("too_large", f"a request body of at most {limit // 2**20} MiB", found,
                      "split the file or sample it")
    headers = {k.lower(): v for k, v in scope.get("headers") or []}
    if not scope.get("path", "").startswith("/v1") and b"text/html" in headers.get(b"accept", b""):
        import html

        e = body["error"]
        return HTMLResponse(f"<!doctype html><title>Too large</title><h1>Request too large</h1>"
                            f"<p>{html.escape(e['message'])}</p><p><a href=\"/projects\">Back to projects</a></p>",
                            status_code=413, headers={"Connection": "close"})
    return JSONResponse(body, status_code=413, headers={"Connection": "close"})


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` (+ slack for the form fields) while they stream in:
    at once by ``Content-Length``, else (chunked) by counting; either way a 413 ``too_large``."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes + MULTIPART_SLACK

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        limit = self.max_bytes
        for k, v in scope.get("headers") or []:
            if k == b"content-length":
                try:
                    n = int(v)
                except ValueError:
                    n = 0
                if n > limit:
                    return await too_large_response(scope, limit, f"{n // 2**20} MiB")(scope, receive, send)
        seen = 0
        overflow = started = False

        async def counted() -> dict:
            nonlocal seen, overflow
            if overflow:  # the handler swallowed _Overflow (e.g. FastAPI's "error parsing the body")
                raise _Overflow()
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    overflow = True
                    raise _Overflow()
            return message

        async def guarded(message: dict) -> None:
            nonlocal started
            if overflow and not started:  # drop the handler's answer to the cut body (a 400 or 422)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except _Overflow:
            pass
        except Exception:
            if not overflow:
                raise
        if overflow and not started:
            await too_large_response(scope, limit, f"more than {limit // 2**20} MiB (chunked)")(scope, receive, send)


@contextmanager
def spool_upload(upload: Any, max_bytes: int) -> Iterator[Path]:
    """The uploaded file as a private temporary file (removed afterwards); 413 over ``max_bytes``."""
    tmp = private_temp_dir("upload")
    try:
        path = tmp / "upload"
        n = 0
        src = upload.file
        src.seek(0)
        with path.open("wb") as out:
            while True:
                chunk = src.read(CHUNK)
                if not chunk:
                    break
                n += len(chunk)
                if n > max_bytes:
                    raise AssayError(f"a file of at most {max_bytes // 2**20} MiB", "a larger file",
                                     "split the file or sample it", code="too_large")
                out.write(chunk)
        yield path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def clean_at_start(registry: Any) -> None:
    """At server start: remove the temporary folders of servers and workers on this host that are gone
    (an upload being read when its server was killed) and dataset folders no database row names (a
    failed insert); never fatal to the start."""
    try:
        for path in remove_dead_temp_dirs():
            log.warning("removed %s, left by a server or worker that is gone", path)
        for path in registry.datasets.remove_orphans():
            log.warning("removed the dataset folder %s: no dataset row names it", path)
    except Exception as exc:
        log.warning("clean-up at start skipped: %s", exc)

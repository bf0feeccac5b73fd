"""Uploads go to disk in chunks, with the size limit enforced while the body is read.

``BodyLimit`` (ASGI middleware) refuses a request body over the limit as it streams in (413,
before it is all received: by ``Content-Length`` at once, else by counting); ``spool_upload``
copies the multipart file part to a private temporary file in 1 MiB chunks, so the handler never
holds the file in memory. Parsing then reads the file incrementally (see
``Registry.add_dataset``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from starlette.exceptions import HTTPException

from ..errors import AssayError

CHUNK = 1 << 20
MULTIPART_SLACK = 1 << 20  # form fields and part headers around the file


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` (+ slack for the form fields) while they stream in."""

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
                    from starlette.responses import JSONResponse

                    from ._app import error_body

                    resp = JSONResponse(error_body("too_large", f"a request body of at most {limit // 2**20} MiB",
                                                   f"{n // 2**20} MiB", "split the file or sample it"),
                                        status_code=413)
                    return await resp(scope, receive, send)
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, f"a request body over {limit // 2**20} MiB")
            return message

        return await self.app(scope, counted, send)


@contextmanager
def spool_upload(upload: Any, max_bytes: int) -> Iterator[Path]:
    """The uploaded file as a private temporary file (removed afterwards); 413 over ``max_bytes``."""
    tmp = Path(tempfile.mkdtemp(prefix="assay-upload-"))
    try:
        os.chmod(tmp, 0o700)
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

"""Where uploaded datasets and run artifacts live: a folder by default, any fsspec URL for teams.

The registry stores full locations (a path, or a URL such as ``s3://bucket/assay/runs/r1``)
so that a server, its workers and a client reading artifacts agree on where things are.
Remote files are fetched into ``$ASSAY_HOME/cache`` when a local path is needed (training
reads datasets, scoring loads an evaluator).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import AssayError, require
from ._db import assay_home


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def _strip(url: str) -> str:
    return url[len("file://"):] if url.startswith("file://") else url


class Storage:
    """Files under one root (a folder or an fsspec URL)."""

    def __init__(self, root: str | os.PathLike[str] | None = None, cache: str | Path | None = None):
        root = str(root or os.environ.get("ASSAY_ARTIFACTS") or assay_home() / "artifacts")
        self.local = _is_local(root)
        self.root = str(Path(_strip(root)).expanduser().resolve()) if self.local else root.rstrip("/")
        self.cache = Path(cache or assay_home() / "cache")

    def __repr__(self) -> str:
        return f"Storage({self.root!r})"

    # --- addressing -------------------------------------------------------------------------
    def url(self, *parts: str) -> str:
        return "/".join([self.root, *[p.strip("/") for p in parts]])

    def _fs(self, url: str) -> tuple[Any, str]:
        fsspec = require("fsspec", "remote artifact storage", extra="registry")
        fs, path = fsspec.core.url_to_fs(url)
        return fs, path

    # --- files ------------------------------------------------------------------------------
    def write_bytes(self, url: str, data: bytes) -> str:
        if _is_local(url):
            p = Path(_strip(url))
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name(p.name + ".part")
            tmp.write_bytes(data)
            tmp.replace(p)
            return url
        fs, path = self._fs(url)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(path, "wb") as fh:
            fh.write(data)
        return url

    def put_file(self, local: str | Path, url: str) -> str:
        """Copy a local file to ``url`` in chunks (never whole in memory)."""
        if _is_local(url):
            p = Path(_strip(url))
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name(p.name + ".part")
            shutil.copyfile(local, tmp)
            tmp.replace(p)
            return url
        fs, path = self._fs(url)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with open(local, "rb") as src, fs.open(path, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        return url

    def read_bytes(self, url: str) -> bytes:
        if _is_local(url):
            p = Path(_strip(url))
            if not p.exists():
                raise AssayError("a stored file", f"nothing at {url}", "check the artifact root (--artifacts)",
                                 code="not_found")
            return p.read_bytes()
        fs, path = self._fs(url)
        if not fs.exists(path):
            raise AssayError("a stored file", f"nothing at {url}", "check the artifact root (--artifacts)",
                             code="not_found")
        with fs.open(path, "rb") as fh:
            return fh.read()

    def exists(self, url: str) -> bool:
        if _is_local(url):
            return Path(_strip(url)).exists()
        fs, path = self._fs(url)
        return bool(fs.exists(path))

    def local_file(self, url: str) -> Path:
        """A local path for ``url`` (downloaded to the cache when remote)."""
        if _is_local(url):
            return Path(_strip(url))
        target = self.cache / hashlib.sha256(url.encode()).hexdigest()[:16] / url.rsplit("/", 1)[-1]
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.read_bytes(url))
        return target

    # --- folders ----------------------------------------------------------------------------
    def put_dir(self, local_dir: str | Path, url: str) -> str:
        """Copy a local folder to ``url`` (replacing what is there)."""
        local_dir = Path(local_dir)
        if _is_local(url):
            dest = Path(_strip(url))
            if dest.resolve() != local_dir.resolve():
                shutil.copytree(local_dir, dest, dirs_exist_ok=True)
            return url
        for f in sorted(p for p in local_dir.rglob("*") if p.is_file()):
            self.write_bytes(url + "/" + f.relative_to(local_dir).as_posix(), f.read_bytes())
        return url

    def remove_dir(self, url: str) -> None:
        """Remove a folder and everything in it (nothing if it does not exist)."""
        if _is_local(url):
            shutil.rmtree(_strip(url), ignore_errors=True)
            return
        fs, path = self._fs(url)
        if fs.exists(path):
            fs.rm(path, recursive=True)

    def local_dir(self, url: str) -> Path:
        """A local folder with the contents of ``url`` (downloaded to the cache when remote)."""
        if _is_local(url):
            return Path(_strip(url))
        target = self.cache / hashlib.sha256(url.encode()).hexdigest()[:16]
        if not (target / ".complete").exists():
            fs, path = self._fs(url)
            for f in fs.find(path):
                rel = f[len(path):].lstrip("/")
                out = target / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                with fs.open(f, "rb") as fh:
                    out.write_bytes(fh.read())
            (target / ".complete").write_text("")
        return target

    def dir_sha256(self, url: str) -> str:
        """One hash over every file's relative path and content (the artifact's identity)."""
        root = self.local_dir(url)
        h = hashlib.sha256()
        for f in sorted(p for p in root.rglob("*") if p.is_file() and p.name != ".complete"):
            h.update(f.relative_to(root).as_posix().encode() + b"\0")
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            h.update(b"\0")
        return h.hexdigest()

    def file_hashes(self, url: str) -> dict[str, str]:
        """The sha256 of every file of a folder, by relative path (any artifact layout)."""
        root = self.local_dir(url)
        out = {}
        for f in sorted(p for p in root.rglob("*") if p.is_file() and p.name != ".complete"):
            h = hashlib.sha256()
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            out[f.relative_to(root).as_posix()] = h.hexdigest()
        return out

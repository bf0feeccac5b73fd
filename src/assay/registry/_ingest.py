"""Incremental reading of an uploaded data file: records are parsed, mapped, validated and written
out in chunks, so an upload never sits whole in memory (a 24 MB CSV peaks well under 5x its size).

Records come from ``assay.data.iter_records`` (CSV, TSV and JSONL stream line by line; JSON and
Parquet are whole-file formats). The result matches ``validate_rows`` over the whole file: problems
with their row positions, exact duplicates dropped across chunks, label counts, the order-
independent content hash; the canonical rows go to ``rows_out`` (JSONL).

Uploads are read in private temporary folders named after their process (``private_temp_dir``, also
used for a worker's run inputs); those of processes that are gone are removed at the next server or
worker start (``remove_dead_temp_dirs``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..data import iter_records, to_rows, validate_rows
from ..data._io import row_hash
from ..errors import AssayError
from ..metrics import MetricSpec
from ._queue import pid_alive

CHUNK = 2000
MAX_PROBLEMS = 10000  # kept for the error report; a garbage file cannot fill memory with them
CONTENT = ("input", "output", "output_b", "context", "tools")


@dataclass
class Ingested:
    rows_total: int = 0
    kept: int = 0
    dropped_duplicates: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)
    content_hash: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


def _records(path: Path, fname: str, fmt: str) -> Iterator[list[dict[str, Any]]]:
    """The upload's records in chunks: ``assay.data.iter_records`` (the reader the CLI uses), named by
    the upload's own file name; anything else a corrupt file raises becomes one AssayError too."""
    try:
        yield from iter_records(path, fmt, name=fname, chunk=CHUNK)
    except AssayError:
        raise
    except Exception as exc:  # RecursionError, MemoryError on a hostile file ...: never a traceback
        raise AssayError(f"a readable {fmt.upper()} file", f"{fname} could not be parsed ({type(exc).__name__})",
                         "upload UTF-8 CSV/TSV/JSONL/JSON or a valid Parquet file", code="invalid_format") from None


def ingest(path: Path, fname: str, fmt: str, spec: MetricSpec, *, labeled: bool, columns: Mapping[str, str],
           label_map: Mapping[str, str], rows_out: Path) -> Ingested:
    """Parse, map and validate ``path`` chunk by chunk; valid rows go to ``rows_out`` (a temporary
    file: with problems the caller stores nothing)."""
    out = Ingested()
    seen: dict[bytes, Any] = {}
    hashes: list[str] = []
    counts: Counter = Counter()
    conflicts = 0
    stem = Path(fname).stem
    id_col = dict(columns).get("id", "id")
    with rows_out.open("w", encoding="utf-8") as fh:
        for records in _records(path, fname, fmt):
            offset = out.rows_total
            rows = to_rows(records, columns, label_map, source=stem)
            for i, (rec, row) in enumerate(zip(records, rows)):
                if rec.get(id_col) in (None, ""):
                    row["id"] = f"{stem}-{offset + i}"
            del records
            v = validate_rows(rows, spec, labeled=labeled, min_rows=0, source=fname)
            out.rows_total += len(rows)
            del rows
            out.dropped_duplicates += v.dropped_duplicates
            for e in v.errors:
                if len(out.errors) < MAX_PROBLEMS:
                    d = e.to_dict()
                    d["row"] = d["row"] + offset if d["row"] >= 0 else d["row"]
                    out.errors.append(d)
            for r in v.rows:
                h = row_hash(r)
                key = bytes.fromhex(h)
                label = r.get("label")
                if key in seen:
                    if seen[key] == label:
                        out.dropped_duplicates += 1
                        continue
                    conflicts += 1
                seen[key] = label
                hashes.append(h + ":" + str(label))
                if label is not None:
                    counts[label] += 1
                fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
                out.kept += 1
    del seen
    out.label_counts = {lab: counts.get(lab, 0) for lab in spec.labels} if labeled else dict(counts)
    if out.dropped_duplicates:
        out.warnings.append(f"{out.dropped_duplicates} exact duplicate rows were dropped from {fname}")
    if conflicts:
        out.warnings.append(f"{conflicts} rows repeat another row's content with a different label in {fname}")
    if not out.errors and out.kept < 1:
        out.errors.append({"row": -1, "id": "-", "field": "rows", "problem": "only 0 usable rows (need at least 1)"})
    if out.ok:
        hashes.sort()
        out.content_hash = hashlib.sha256("\n".join(hashes).encode()).hexdigest()
    return out


def split_input(rows_file: Path) -> list[dict[str, Any]]:
    """The stored rows reduced to what the seed/held-out split reads (content fields and label)."""
    out = []
    with rows_file.open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            out.append({k: r[k] for k in (*CONTENT, "label") if k in r})
    return out


# --- private temporary folders ----------------------------------------------------------------------
# An upload being read, or a worker's run inputs, live in ``assay-<kind>-<host>-<pid>-XXXXXXXX`` under the
# system's temporary folder; a process killed meanwhile leaves its folder, which the next server or
# worker start on this host removes once that process is gone (remove_dead_temp_dirs).
TEMP_KINDS = ("upload", "run")
_TEMP = re.compile(r"^assay-(?:upload|run)-([0-9a-f]{8})-(\d+)-[A-Za-z0-9_]+$")
_LEGACY_UPLOAD = re.compile(r"^assay-upload-[A-Za-z0-9_]{8}$")  # before the host and pid were in the name
LEGACY_AGE = 3600.0  # seconds: no upload is read for that long


def _host_tag() -> str:
    return f"{zlib.crc32(socket.gethostname().encode()):08x}"


def private_temp_dir(kind: str) -> Path:
    """A new private (0700) temporary folder of this process, ``kind`` among ``TEMP_KINDS``."""
    if kind not in TEMP_KINDS:
        raise ValueError(f"kind must be one of {TEMP_KINDS}")
    path = Path(tempfile.mkdtemp(prefix=f"assay-{kind}-{_host_tag()}-{os.getpid()}-"))
    os.chmod(path, 0o700)
    return path


def remove_dead_temp_dirs(root: str | Path | None = None) -> list[Path]:
    """Remove the private temporary folders (see ``private_temp_dir``) of processes on this host that
    are gone, and upload folders of older assay versions untouched for ``LEGACY_AGE``; returns them."""
    root = Path(root or tempfile.gettempdir())
    host, removed = _host_tag(), []
    for path in sorted(root.glob("assay-*")):
        m = _TEMP.match(path.name)
        try:
            if m:
                dead = m.group(1) == host and not pid_alive(int(m.group(2)))
            else:
                dead = bool(_LEGACY_UPLOAD.match(path.name)) and time.time() - path.stat().st_mtime > LEGACY_AGE
            if dead and path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
                removed.append(path)
        except (OSError, ValueError, OverflowError):  # gone meanwhile, not ours to remove, an odd pid
            continue
    return removed

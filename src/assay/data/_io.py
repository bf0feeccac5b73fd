"""Read labeled or unlabeled rows from CSV, JSONL, JSON or Parquet into plain dicts.

A row is a dict with the canonical keys ``id``, ``input``, ``output``, ``context``,
``tools``, ``label`` and ``meta``; ``columns`` maps canonical keys to the file's own names.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from ..errors import AssayError, require

CANONICAL = ("id", "input", "output", "output_b", "context", "tools", "label", "meta")  # output_b: pairwise B
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
           ".parquet": "parquet", ".pq": "parquet"}


def detect_format(path: Path, fmt: str | None = None) -> str:
    if fmt:
        return fmt
    found = FORMATS.get(path.suffix.lower())
    if not found:
        raise AssayError(
            "a data file ending in .csv, .tsv, .jsonl, .json or .parquet",
            f"'{path.name}'",
            "rename the file with its format's extension or pass format=",
            code="invalid_format",
        )
    return found


def check_encoding(encoding: str | None) -> str | None:
    """``encoding`` if Python knows it (None: UTF-8), else one AssayError line."""
    if encoding is None:
        return None
    import codecs

    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise AssayError("a text encoding such as utf-8, latin-1 or cp1252", f"'{encoding}'",
                         "pass a known encoding with --encoding (or data.encoding in the config)",
                         code="invalid_input") from None


CHUNK_ROWS = 5000  # rows per chunk of iter_records
MAX_COLUMNS_ENV = "ASSAY_MAX_COLUMNS"
DEFAULT_MAX_COLUMNS = 2000
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # a JSON escape of a UTF-16 surrogate (maybe paired)


def max_columns() -> int:
    """Columns (JSON keys) one record of a data file may have: ``$ASSAY_MAX_COLUMNS``, default 2000. A
    wider file is refused before its rows are built (100,000 columns cost a minute of CPU per file)."""
    raw = os.environ.get(MAX_COLUMNS_ENV, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_COLUMNS


def _check_columns(n: int, name: str, where: str = "") -> None:
    cap = max_columns()
    if n > cap:
        raise AssayError(f"at most {cap:,} columns per data file (${MAX_COLUMNS_ENV})",
                         f"{n:,} columns in {name}{where}",
                         "keep the columns the metric reads (input, output, context, label, id ...) and drop the rest",
                         code="too_large")


def _check_unicode(obj: Any, text: str, name: str, where: str) -> None:
    """Refuse parsed JSON holding a lone UTF-16 surrogate (``"\\ud800"``), which no UTF-8 text can store."""
    if not _SURROGATE_ESCAPE.search(text):
        return
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise AssayError(f"valid Unicode text in {name}", f"a lone UTF-16 surrogate escape (such as \\ud800){where}",
                         "fix the text: a surrogate escape must come in a pair", code="invalid_encoding") from None


def _guess(raw: bytes, encoding: str | None) -> str:
    if encoding:
        return ""
    try:
        raw.decode("cp1252")
        return "; it looks like a Latin-1 / Windows-1252 file (a spreadsheet export)"
    except UnicodeDecodeError:
        return "; it does not look like text"


def _undecodable(name: str, exc: UnicodeDecodeError, raw: bytes, offset: int, line: int,
                 encoding: str | None) -> AssayError:
    """``raw`` failed to decode at ``exc.start``; ``raw`` starts at byte ``offset`` of the file, on ``line``."""
    at = offset + exc.start
    bad = raw[exc.start:exc.start + 4].hex(" ")
    return AssayError(
        f"{exc.encoding.upper().replace('-SIG', '')}-encoded text in {name}",
        f"bytes that are not valid {exc.encoding} at byte offset {at} (line {line}: {bad}){_guess(raw, encoding)}",
        "re-save the file as UTF-8, or pass its encoding with --encoding latin-1 (data.encoding in the config)",
        code="invalid_encoding")


def _binary(name: str, fmt: str, head: bytes) -> AssayError:
    where = head.index(b"\x00")
    line = head[:where].count(b"\n") + 1
    return AssayError(f"a {fmt.upper()} text file",
                      f"binary data in {name} (a NUL byte at byte offset {where}, line {line})",
                      "export the data as UTF-8 text (CSV, JSONL) or Parquet with a .parquet name",
                      code="invalid_encoding")


def _is_utf8(enc: str) -> bool:
    return enc.replace("-", "").replace("_", "").lower().startswith("utf8")


def _decode(path: Path, encoding: str | None, fmt: str, name: str) -> str:
    """The whole file's text (JSON, and encodings whose newline is not the byte 0x0A)."""
    raw = path.read_bytes()
    enc = check_encoding(encoding) or "utf-8-sig"  # UTF-8, with or without a byte-order mark
    if b"\x00" in raw[:8192] and _is_utf8(enc):
        raise _binary(name, fmt, raw[:8192])
    try:
        return raw.decode(enc)
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        start = raw.rfind(b"\n", 0, exc.start) + 1
        exc.start -= start
        raise _undecodable(name, exc, raw[start:], start, line, encoding) from None


def _lines(path: Path, encoding: str | None, fmt: str, name: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line, read and decoded one line at a time (memory: one line)."""
    enc = check_encoding(encoding) or "utf-8-sig"
    with path.open("rb") as fh:
        head = fh.read(8192)
        if b"\x00" in head and _is_utf8(enc):
            raise _binary(name, fmt, head)
        fh.seek(0)
        offset = 0
        for n, raw in enumerate(fh, 1):
            if n == 1 and enc == "utf-8-sig" and raw.startswith(b"\xef\xbb\xbf"):
                raw, offset = raw[3:], 3
            try:
                text = raw.decode(enc if enc != "utf-8-sig" else "utf-8")
            except UnicodeDecodeError as exc:
                raise _undecodable(name, exc, raw, offset, n, encoding) from None
            offset += len(raw)
            yield n, text


def _parse_jsonl(lines: Iterator[tuple[int, str]], name: str) -> Iterator[dict[str, Any]]:
    for n, line in lines:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AssayError("one JSON object per line", f"invalid JSON on line {n} of {name} ({exc.msg})",
                             f"fix line {n} or remove it", code="invalid_format") from None
        except RecursionError:
            raise AssayError("one JSON object per line", f"JSON nested too deeply on line {n} of {name}",
                             "flatten the row", code="invalid_format") from None
        if not isinstance(obj, dict):
            raise AssayError("a JSON object on each line", f"a {type(obj).__name__} on line {n} of {name}",
                             "write each row as {\"input\": ..., \"label\": ...}", code="invalid_format")
        _check_columns(len(obj), name, f" (line {n})")
        _check_unicode(obj, line, name, f" on line {n}")
        yield obj


def _parse_csv(lines: Iterator[tuple[int, str]], fmt: str, name: str) -> Iterator[dict[str, Any]]:
    csv.field_size_limit(64 * 2**20)
    reader = csv.DictReader((text for _, text in lines), delimiter="\t" if fmt == "tsv" else ",")
    _check_columns(len(reader.fieldnames or ()), name, " (the header)")
    for rec in reader:
        rec.pop(None, None)  # cells beyond the header have no column name
        yield rec


def _read_whole(path: Path, fmt: str, encoding: str | None, name: str) -> list[dict[str, Any]]:
    """JSON and Parquet files (and text in UTF-16/32), read at once."""
    if fmt in ("csv", "tsv", "jsonl"):
        text = _decode(path, encoding, fmt, name)
        lines = enumerate(io.StringIO(text, newline=""), 1)
        return list(_parse_csv(lines, fmt, name) if fmt != "jsonl" else _parse_jsonl(lines, name))
    if fmt == "json":
        text = _decode(path, encoding, fmt, name)
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AssayError("a JSON array of rows", f"invalid JSON in {name} ({exc.msg}, line {exc.lineno})",
                             "fix the file or use JSONL", code="invalid_format") from None
        except RecursionError:
            raise AssayError("a JSON array of rows", f"JSON nested too deeply in {name}", "flatten the rows",
                             code="invalid_format") from None
        records = obj.get("rows", obj.get("data")) if isinstance(obj, dict) else obj
        if not isinstance(records, list):
            raise AssayError("a JSON array of row objects", f"a {type(obj).__name__}",
                             "write a list of rows, or {\"rows\": [...]}", code="invalid_format")
        bad = next((i for i, r in enumerate(records) if not isinstance(r, dict)), None)
        if bad is not None:
            raise AssayError("a JSON object for each row", f"a {type(records[bad]).__name__} at row {bad + 1}",
                             "write each row as {\"input\": ..., \"label\": ...}", code="invalid_format")
        _check_columns(max(map(len, records), default=0), name)
        _check_unicode(records, text, name, "")
        return records

    pq = require("pyarrow.parquet", "reading Parquet files", extra="data", package="pyarrow")
    try:
        _check_columns(len(pq.read_schema(path).names), name)
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # ArrowInvalid, OSError ...: a corrupt or truncated file
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise AssayError(f"a readable Parquet file at {name}", f"a file pyarrow cannot read ({type(exc).__name__}: {msg})",
                         "export the file again (or give CSV/JSONL with the matching extension)",
                         code="invalid_format") from None


def iter_records(path: str | Path, fmt: str | None = None, encoding: str | None = None, *,
                 name: str | None = None, chunk: int = CHUNK_ROWS) -> Iterator[list[dict[str, Any]]]:
    """The file's records as dicts with its own column names, in chunks of up to ``chunk`` rows.

    CSV, TSV and JSONL stream line by line (memory: one chunk); JSON and Parquet are read whole.
    ``encoding``: the text encoding (default UTF-8, with or without a BOM). ``name``: the file's name
    in messages (an upload's own name rather than its temporary path). A byte that does not decode,
    a malformed line or a corrupt Parquet file is one AssayError that says what and where (line,
    byte offset from the start of the file).
    """
    path = Path(path)
    name = name or path.name
    if not path.exists():
        raise AssayError("a data file", f"no file at {path}", "check the path", code="not_found")
    if path.is_dir():
        raise AssayError("a data file", f"{path} is a folder", "give the path of a .csv, .jsonl or .parquet file",
                         code="invalid_input")
    fmt = detect_format(path, fmt)
    if path.stat().st_size == 0:
        raise AssayError("rows in the data file", f"{name} is empty", "add labeled rows", code="empty_file")
    enc = check_encoding(encoding) or "utf-8"
    if fmt in ("csv", "tsv", "jsonl") and not enc.startswith(("utf-16", "utf-32")):
        lines = _lines(path, encoding, fmt, name)
        records: Iterable[dict[str, Any]] = (_parse_jsonl(lines, name) if fmt == "jsonl"
                                             else _parse_csv(lines, fmt, name))
    else:
        records = _read_whole(path, fmt, encoding, name)
    n, buf = 0, []
    try:
        for rec in records:
            buf.append(rec)
            if len(buf) >= chunk:
                n += len(buf)
                yield buf
                buf = []
    except csv.Error as exc:
        raise AssayError(f"a well-formed {fmt.upper()} file", f"{exc} in {name}",
                         f"fix the file or export it again as {fmt.upper()}", code="invalid_format") from None
    if buf:
        n += len(buf)
        yield buf
    if n == 0:
        raise AssayError("rows in the data file", f"{name} has a header but no rows", "add labeled rows",
                         code="empty_file")


def read_records(path: str | Path, fmt: str | None = None, encoding: str | None = None) -> list[dict[str, Any]]:
    """All the file's records (see :func:`iter_records`)."""
    return [rec for part in iter_records(path, fmt, encoding) for rec in part]


def to_rows(records: Iterable[Mapping[str, Any]], columns: Mapping[str, str] | None = None,
            label_map: Mapping[Any, str] | None = None, source: str = "data") -> list[dict[str, Any]]:
    """Map records to canonical rows; unmapped extra columns go to ``meta``."""
    columns = dict(columns or {})
    unknown = set(columns) - set(CANONICAL)
    if unknown:
        raise AssayError(f"column mappings for {list(CANONICAL)}", f"mappings for {sorted(unknown)}",
                         "map canonical names to your columns, e.g. columns: {input: text, label: class}",
                         code="invalid_config")
    records = list(records)
    if records:
        present = set().union(*(r.keys() for r in records[:50]))
        for key, col in columns.items():
            if col not in present:
                names = sorted(map(str, present))
                more = f" and {len(names) - 50:,} more" if len(names) > 50 else ""
                raise AssayError(f"a column '{col}' (mapped to {key}) in {source}",
                                 f"columns {names[:50]}{more}", f"fix columns.{key} in the config",
                                 code="missing_column")
    src_of = {key: columns.get(key, key) for key in CANONICAL}
    taken = set(src_of.values())
    rows = []
    for i, rec in enumerate(records):
        row: dict[str, Any] = {}
        for key in CANONICAL:
            if src_of[key] in rec:
                row[key] = _parse_json_field(rec[src_of[key]]) if key in ("tools", "meta") else rec[src_of[key]]
        meta = dict(row.get("meta") or {})
        meta.update({k: v for k, v in rec.items() if k not in taken})
        row["meta"] = meta
        if row.get("id") in (None, ""):
            row["id"] = f"{source}-{i}"
        row["id"] = str(row["id"])
        if "label" in row and row["label"] is not None:
            row["label"] = normalize_label(row["label"], label_map)
        rows.append(row)
    return rows


def _parse_json_field(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def normalize_label(value: Any, label_map: Mapping[Any, str] | None = None) -> str | None:
    """A label as the metric's string: maps via ``label_map``, bools/1/0 become true/false."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if label_map:
        for key in (value, str(value)):
            if key in label_map:
                return str(label_map[key])
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    low = text.lower()
    if low in ("true", "false", "yes", "no", "1", "0"):
        return "true" if low in ("true", "yes", "1") else "false"
    return text


def row_hash(row: Mapping[str, Any]) -> str:
    """Content hash of what the judge reads (not id, label or meta)."""
    payload = {k: row.get(k) for k in ("input", "output", "output_b", "context", "tools")
               if row.get(k) not in (None, "")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def rows_hash(rows: Iterable[Mapping[str, Any]]) -> str:
    """Hash of a whole set of rows with their labels, order-independent."""
    items = sorted(row_hash(r) + ":" + str(r.get("label")) for r in rows)
    return hashlib.sha256("\n".join(items).encode()).hexdigest()


def write_rows(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write rows as JSONL (or CSV when the path ends in .csv)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    if path.suffix.lower() == ".csv":
        keys: list[str] = []
        for r in rows:
            keys += [k for k in r if k not in keys]
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            for r in rows:
                w.writerow({k: (json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v)
                            for k, v in r.items()})
    else:
        with path.open("w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    return path

"""Read labeled or unlabeled rows from CSV, JSONL, JSON or Parquet into plain dicts.

A row is a dict with the canonical keys ``id``, ``input``, ``output``, ``context``,
``tools``, ``label`` and ``meta``; ``columns`` maps canonical keys to the file's own names.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import AssayError

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


def _decode(path: Path, encoding: str | None, fmt: str) -> str:
    """The file's text; a byte that is not valid in the encoding becomes one AssayError line."""
    raw = path.read_bytes()
    enc = check_encoding(encoding) or "utf-8-sig"  # UTF-8, with or without a byte-order mark
    if b"\x00" in raw[:8192] and enc.replace("-", "").replace("_", "").lower().startswith("utf8"):
        where = raw.index(b"\x00")
        line = raw[:where].count(b"\n") + 1
        raise AssayError(
            f"a {fmt.upper()} text file",
            f"binary data in {path.name} (a NUL byte at byte offset {where}, line {line})",
            "export the data as UTF-8 text (CSV, JSONL) or Parquet with a .parquet name", code="invalid_encoding")
    try:
        return raw.decode(enc)
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        bad = raw[exc.start:exc.start + 4].hex(" ")
        guess = ""
        if not encoding:
            try:
                raw.decode("cp1252")
                guess = "; it looks like a Latin-1 / Windows-1252 file (a spreadsheet export)"
            except UnicodeDecodeError:
                guess = "; it does not look like text"
        raise AssayError(
            f"{exc.encoding.upper().replace('-SIG', '')}-encoded text in {path.name}",
            f"bytes that are not valid {exc.encoding} at byte offset {exc.start} (line {line}: {bad}){guess}",
            "re-save the file as UTF-8, or pass its encoding with --encoding latin-1 "
            "(data.encoding in the config)",
            code="invalid_encoding",
        ) from None


def read_records(path: str | Path, fmt: str | None = None, encoding: str | None = None) -> list[dict[str, Any]]:
    """The file's records as dicts, with its own column names.

    ``encoding`` is the text encoding of CSV/TSV/JSONL/JSON files (default UTF-8, with or without
    a BOM); a byte that does not decode, or a corrupt Parquet file, is one AssayError line that
    names the problem and where it is.
    """
    path = Path(path)
    if not path.exists():
        raise AssayError("a data file", f"no file at {path}", "check the path", code="not_found")
    if path.is_dir():
        raise AssayError("a data file", f"{path} is a folder", "give the path of a .csv, .jsonl or .parquet file",
                         code="invalid_input")
    fmt = detect_format(path, fmt)
    if path.stat().st_size == 0:
        raise AssayError("rows in the data file", f"{path.name} is empty", "add labeled rows", code="empty_file")
    if fmt in ("csv", "tsv"):
        text = _decode(path, encoding, fmt)
        try:
            records = list(csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ","))
        except csv.Error as exc:
            raise AssayError(f"a well-formed {fmt.upper()} file", f"{exc} in {path.name}",
                             f"fix the file or export it again as {fmt.upper()}", code="invalid_format") from None
    elif fmt == "jsonl":
        records = []
        for n, line in enumerate(_decode(path, encoding, fmt).split("\n"), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AssayError(
                    "one JSON object per line",
                    f"invalid JSON on line {n} of {path.name} ({exc.msg})",
                    f"fix line {n} or remove it",
                    code="invalid_format",
                ) from None
            if not isinstance(obj, dict):
                raise AssayError("a JSON object on each line", f"a {type(obj).__name__} on line {n}",
                                 "write each row as {\"input\": ..., \"label\": ...}", code="invalid_format")
            records.append(obj)
    elif fmt == "json":
        try:
            obj = json.loads(_decode(path, encoding, fmt))
        except json.JSONDecodeError as exc:
            raise AssayError("a JSON array of rows", f"invalid JSON ({exc.msg}, line {exc.lineno})",
                             "fix the file or use JSONL", code="invalid_format") from None
        records = obj.get("rows", obj.get("data")) if isinstance(obj, dict) else obj
        if not isinstance(records, list):
            raise AssayError("a JSON array of row objects", f"a {type(obj).__name__}",
                             "write a list of rows, or {\"rows\": [...]}", code="invalid_format")
        bad = next((i for i, r in enumerate(records) if not isinstance(r, dict)), None)
        if bad is not None:
            raise AssayError("a JSON object for each row", f"a {type(records[bad]).__name__} at row {bad + 1}",
                             "write each row as {\"input\": ..., \"label\": ...}", code="invalid_format")
    else:
        from ..errors import require

        pq = require("pyarrow.parquet", "reading Parquet files", extra="data", package="pyarrow")
        try:
            records = pq.read_table(path).to_pylist()
        except Exception as exc:  # ArrowInvalid, OSError ...: a corrupt or truncated file
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise AssayError(f"a readable Parquet file at {path.name}",
                             f"a file pyarrow cannot read ({type(exc).__name__}: {msg})",
                             "export the file again (or give CSV/JSONL with the matching extension)",
                             code="invalid_format") from None
    if not records:
        raise AssayError("rows in the data file", f"{path.name} has a header but no rows", "add labeled rows",
                         code="empty_file")
    return records


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
                raise AssayError(f"a column '{col}' (mapped to {key}) in {source}",
                                 f"columns {sorted(present)}", f"fix columns.{key} in the config",
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

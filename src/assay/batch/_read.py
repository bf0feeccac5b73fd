"""Traces to score from a file (a trace export, a golden set, a CSV/Parquet table) or from rows in memory.

- :func:`read_dataset`: traces (``assay.traces.read_traces``, what ``assay traces`` reads), for the monitor
  and ``assay eval``.
- :func:`read_rows`: the rows ``assay score`` scores: canonical rows when the file has the metric's
  columns, else the rows of its traces, read with the same readers as ``assay traces`` (an OTLP JSON
  object, spans, runs, plain traces, JSON or JSONL). A line that is not JSON is counted with its line
  number (:attr:`RowsRead.bad_lines`, the first few kept) and the other lines are scored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from ..data import read_records, to_rows, validate_rows
from ..errors import AssayError
from ..traces import Ingest, Problems, Trace, TraceAssembler, read_traces, rows_for

TABULAR = (".csv", ".tsv", ".parquet", ".pq")
BAD_LINE_EXAMPLES = 5  # bad lines kept with their line number and parse error


def read_dataset(dataset: Any) -> Ingest:
    """Traces from a trace/golden-set file, a table, an Ingest, or an iterable of rows/records/Traces.

    A monitor database (live traffic) is the monitor's source: ``assay.monitor.load_dataset`` reads it."""
    if isinstance(dataset, Ingest):
        return dataset
    if isinstance(dataset, (str, Path)):
        path = Path(dataset)
        if path.suffix.lower() in TABULAR:
            return read_traces(read_records(path))
        return read_traces(path)
    if isinstance(dataset, Iterable):
        items = list(dataset)
        traces = [x for x in items if isinstance(x, Trace)]
        rest = [x for x in items if not isinstance(x, Trace)]
        ing = read_traces(rest) if rest else Ingest([], Problems(), Problems())
        ing.traces = traces + ing.traces
        ing.items += len(traces)
        return ing
    raise AssayError("a dataset: a trace or golden-set file, or a list of rows", f"a {type(dataset).__name__}",
                     "pass a path or a list of dicts", code="invalid_input")


@dataclass
class RowsRead:
    """What :func:`read_rows` read: the rows to score and what it could not use."""

    rows: list[dict[str, Any]]
    skipped: dict[str, int] = field(default_factory=dict)  # traces without the metric's fields, by reason
    ingest: dict[str, Any] = field(default_factory=dict)  # the trace reader's summary (trace files only)
    bad: int = 0  # lines that are not a JSON object
    bad_lines: list[dict[str, Any]] = field(default_factory=list)  # the first few: {"line": N, "error": ...}

    def bad_summary(self) -> dict[str, Any]:
        return {"count": self.bad, "first": list(self.bad_lines)}


def _text_lines(path: Path, encoding: str | None) -> Iterator[tuple[int, str]]:
    """(line number, text): each line of a JSONL file; a .json file whole (line 1), or line by line when
    it does not parse whole but its lines might (JSONL saved as .json)."""
    enc = encoding or "utf-8-sig"
    if path.suffix.lower() == ".json":
        text = path.read_text(encoding=enc, errors="replace")
        try:
            json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            if len([x for x in text.splitlines() if x.strip()]) > 1:
                yield from enumerate(text.splitlines(), 1)
                return
        yield 1, text
        return
    with path.open(encoding=enc, errors="replace") as fh:
        yield from enumerate(fh, 1)


def _json_records(path: Path, encoding: str | None, out: RowsRead) -> list[tuple[int, Any]]:
    """(line number, parsed value) of every line that parses; the others counted in ``out``."""
    found: list[tuple[int, Any]] = []
    for n, text in _text_lines(path, encoding):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            _bad(out, n, f"invalid JSON ({exc.msg}, column {exc.colno})")
            continue
        except RecursionError:
            _bad(out, n, "JSON nested too deeply")
            continue
        if not isinstance(obj, (dict, list)):
            _bad(out, n, f"a JSON {type(obj).__name__}, not an object")
            continue
        found.append((n, obj))
    return found


def _bad(out: RowsRead, line: int, error: str) -> None:
    out.bad += 1
    if len(out.bad_lines) < BAD_LINE_EXAMPLES:
        out.bad_lines.append({"line": line, "error": error})


def _as_rows(found: list[tuple[int, Any]]) -> list[Mapping[str, Any]]:
    """The parsed values as row records: a list's items, a ``{"rows": [...]}`` (or ``data``) object's rows."""
    records: list[Any] = []
    for _, obj in found:
        if isinstance(obj, dict) and isinstance(obj.get("rows", obj.get("data")), list):
            obj = obj.get("rows", obj.get("data"))
        records += obj if isinstance(obj, list) else [obj]
    return records


def read_rows(path: str | Path, metric: Any, *, columns: Mapping[str, str] | None = None,
              encoding: str | None = None) -> RowsRead:
    """The rows of a data or trace file for ``metric`` (see the module docstring).

    Canonical rows (after ``columns``) when the file has the metric's columns; otherwise, for a JSON or
    JSONL file without ``columns``, the rows of its traces. Every row is scored, exact duplicates too.
    A file with neither: the rows' problem (e.g. the missing column), as an ``AssayError``."""
    path = Path(path)
    if not path.exists():
        raise AssayError("a data or trace file", f"no file at {path}", "check the path", code="not_found")
    if path.suffix.lower() in TABULAR:
        rows = to_rows(read_records(path, encoding=encoding), columns, source=path.stem)
        validate_rows(rows, metric, labeled=False, source=path.name).raise_for_errors(path.name)
        return RowsRead(rows)
    out = RowsRead([])
    found = _json_records(path, encoding, out)
    records = _as_rows(found)
    if not found:
        first = f": line {out.bad_lines[0]['line']}, {out.bad_lines[0]['error']}" if out.bad_lines else ""
        raise AssayError("rows or traces (JSON objects) in the file", f"none in {path.name} ({out.bad} bad lines"
                         f"{first})", "fix the file or export it again", code="invalid_format")
    problem = None
    if all(isinstance(r, Mapping) for r in records):
        try:
            rows = to_rows(records, columns, source=path.stem)
            validate_rows(rows, metric, labeled=False, source=path.name).raise_for_errors(path.name)
            out.rows = rows
            return out
        except AssayError as exc:
            if exc.code != "missing_column" or columns:
                raise
            problem = exc
    traced = _traced_rows(path, found, metric, out)
    if not traced:
        raise problem or AssayError(f"rows with the fields {metric.name} reads, or traces that have them",
                                    f"none in {path.name}", "check the file (`assay traces FILE -m METRIC`)",
                                    code="missing_column")
    out.rows = traced
    return out


def _traced_rows(path: Path, found: list[tuple[int, Any]], metric: Any, out: RowsRead) -> list[dict[str, Any]]:
    """The rows of the file's traces (the assembler of ``assay traces``); bad lines counted as it counts them."""
    asm = TraceAssembler()
    for n, obj in found:
        asm.add_record(obj, f"{path.name}:{n}")
    for b in out.bad_lines:
        asm.problems.add("invalid_json", f"{path.name}:{b['line']}", b["error"])
    if out.bad > len(out.bad_lines):
        asm.problems.counts["invalid_json"] += out.bad - len(out.bad_lines)
    asm.items += out.bad
    ing = Ingest(asm.pop_ready(final=True), asm.problems, asm.warnings, items=asm.items, spans=asm.spans_kept)
    rows, skipped = rows_for(ing.traces, metric)
    out.skipped, out.ingest = dict(skipped), ing.summary()
    return rows

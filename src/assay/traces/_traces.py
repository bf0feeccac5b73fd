"""Trace ingestion: OpenTelemetry GenAI / OpenInference spans, LangSmith runs and plain JSONL traces.

Every input item (a plain trace, a span or a run) ends up in a trace or in ``problems`` under a
reason; traces kept despite a flaw (an orphan span, no root) are counted under ``warnings``.
Nothing is dropped without being counted.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter, OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from ..errors import AssayError
from ._runs import is_run, spans_from_run
from ._spanitem import span_item
from ._spans import Span, SpanError, content_text, messages, span_from_record, to_seconds, tool_call

PLAIN_KEYS = ("input", "output", "messages", "context", "tool_calls")
SESSION_FIELDS = ("session_id", "session", "thread_id", "conversation_id")
_EXAMPLES = 5


@dataclass
class Trace:
    """One request through the application, with the fields metrics read."""

    trace_id: str
    input: str | None = None
    output: str | None = None
    context: Any = None  # retrieved documents (list of str) or a context string
    system: str | None = None
    tools: list[Any] = field(default_factory=list)  # tool definitions (or names)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    session_id: str | None = None
    start: float | None = None
    label: str | None = None  # a human label, when the file is a golden set
    source: str = "plain"  # plain | otel | langsmith
    spans: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    # one record per llm / retriever / tool span, in time order (see ``_spanitem.span_item``)
    span_items: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Trace":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class Session:
    session_id: str
    traces: list[Trace]


class Problems:
    """Counts per reason, with the first few places each reason was seen."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}

    def add(self, reason: str, where: str, detail: str = "", n: int = 1) -> None:
        self.counts[reason] += n
        ex = self.examples.setdefault(reason, [])
        if len(ex) < _EXAMPLES:
            ex.append(f"{where}: {detail}" if detail else where)

    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "examples": {k: list(v) for k, v in self.examples.items()}}

    def merge(self, other: "Problems") -> None:
        for reason, n in other.counts.items():
            self.counts[reason] += n
            for ex in other.examples.get(reason, []):
                if len(self.examples.setdefault(reason, [])) < _EXAMPLES:
                    self.examples[reason].append(ex)


@dataclass
class Ingest:
    """What reading a source gave: traces, and every item that could not be used, by reason."""

    traces: list[Trace]
    problems: Problems
    warnings: Problems
    items: int = 0  # plain traces + spans + runs + unparseable lines read
    spans: int = 0  # spans and runs kept in a trace

    def sessions(self) -> list[Session]:
        return group_sessions(self.traces)

    def summary(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "spans": self.spans,
            "traces": len(self.traces),
            "sessions": len(self.sessions()),
            "rejected": self.problems.total(),
            "problems": dict(self.problems.counts),
            "warnings": dict(self.warnings.counts),
            "examples": {**self.problems.examples, **{f"warning:{k}": v for k, v in self.warnings.examples.items()}},
        }


def group_sessions(traces: Iterable[Trace]) -> list[Session]:
    """Traces grouped by session id (a trace without one is its own session), turns in time order."""
    groups: OrderedDict[str, list[Trace]] = OrderedDict()
    for t in traces:
        groups.setdefault(t.session_id or t.trace_id, []).append(t)
    return [Session(sid, sorted(ts, key=lambda t: (t.start is None, t.start or 0.0)))
            for sid, ts in groups.items()]


# --- the assembler ------------------------------------------------------------------------------

class TraceAssembler:
    """Collects items in any of the formats and hands back finished traces.

    Plain traces are finished at once; spans wait until their trace has a root span and no new
    span came for ``settle`` seconds (or until ``pop_ready(final=True)``).
    """

    def __init__(self, settle: float = 0.0, remember: int = 100_000):
        self.settle = settle
        self.problems = Problems()
        self.warnings = Problems()
        self.items = 0
        self.spans_kept = 0
        self._spans: dict[str, dict[str, Span]] = {}
        self._where: dict[str, str] = {}
        self._seen_at: dict[str, float] = {}
        self._ready: list[Trace] = []
        self._done: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self._order = 0

    # input
    def add_line(self, line: str, where: str) -> None:
        if not line.strip():
            return
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            self.items += 1
            self.problems.add("invalid_json", where, exc.msg)
            return
        self.add_record(obj, where)

    def add_body(self, text: str, where: str, content_type: str = "application/json") -> None:
        """One received payload (an HTTP request body): OTLP/HTTP JSON, a span/run/trace object, a
        JSON list, or JSONL (by content type ``ndjson``/``jsonl``, or several lines of JSON)."""
        stripped = text.strip()
        if "ndjson" in content_type or "jsonl" in content_type or (
                "\n" in stripped and not stripped.startswith("[") and _is_jsonl(stripped)):
            for n, line in enumerate(stripped.splitlines(), 1):
                self.add_line(line, f"{where} line {n}")
        else:
            self.add_line(stripped, where)

    def add_record(self, rec: Any, where: str) -> None:
        if isinstance(rec, list):
            for i, r in enumerate(rec):
                self.add_record(r, f"{where}[{i}]")
            return
        if not isinstance(rec, Mapping):
            self.items += 1
            self.problems.add("not_an_object", where, f"a {type(rec).__name__}")
            return
        if "resourceSpans" in rec:
            for i, rs in enumerate(rec.get("resourceSpans") or []):
                resource = (rs.get("resource") or {}).get("attributes") if isinstance(rs, Mapping) else None
                scopes = (rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []) if isinstance(
                    rs, Mapping) else []
                for j, ss in enumerate(scopes):
                    for k, sp in enumerate((ss.get("spans") or []) if isinstance(ss, Mapping) else []):
                        self._add_span(sp, f"{where}.resourceSpans[{i}].spans[{j}.{k}]", resource)
            return
        if isinstance(rec.get("runs"), list):
            for i, run in enumerate(rec["runs"]):
                self._add_run(run, f"{where}.runs[{i}]")
            return
        if isinstance(rec.get("spans"), list) and not any(k in rec for k in PLAIN_KEYS):
            for i, sp in enumerate(rec["spans"]):
                self._add_span(sp, f"{where}.spans[{i}]")
            return
        for key in ("traces", "rows", "data"):
            if isinstance(rec.get(key), list) and not any(k in rec for k in PLAIN_KEYS):
                self.add_record(rec[key], f"{where}.{key}")
                return
        if is_run(rec):
            self._add_run(rec, where)
        elif _is_span(rec):
            self._add_span(rec, where)
        elif any(k in rec for k in PLAIN_KEYS):
            self.items += 1
            self._add_plain(rec, where)
        else:
            self.items += 1
            keys = ", ".join(sorted(map(str, rec))[:6])
            self.problems.add("unknown_shape", where, f"keys {keys or '(none)'}")

    def _add_span(self, rec: Any, where: str, resource: Any = None) -> None:
        self.items += 1
        if not isinstance(rec, Mapping):
            self.problems.add("not_an_object", where, f"a {type(rec).__name__} where a span was expected")
            return
        try:
            span = span_from_record(rec, self._next(), resource)
        except SpanError as exc:
            self.problems.add(exc.reason, where, str(exc))
            return
        self._keep(span, where)

    def _add_run(self, rec: Any, where: str) -> None:
        if not isinstance(rec, Mapping):
            self.items += 1
            self.problems.add("not_an_object", where, f"a {type(rec).__name__} where a run was expected")
            return
        try:
            spans = list(spans_from_run(rec, self._next()))
        except SpanError as exc:
            self.items += 1 + _count_children(rec)
            self.problems.add(exc.reason, where, str(exc), n=1 + _count_children(rec))
            return
        for s in spans:
            self.items += 1
            self._order += 1
            s.order = self._order
            self._keep(s, where)

    def _keep(self, span: Span, where: str) -> None:
        tid = span.trace_id
        if tid in self._done:
            self.problems.add("late_span", where, f"span {span.span_id} came after trace {tid} was scored")
            return
        bucket = self._spans.setdefault(tid, {})
        if span.span_id in bucket:
            self.problems.add("duplicate_span", where, f"span {span.span_id} of trace {tid} seen twice")
            return
        bucket[span.span_id] = span
        self._where.setdefault(tid, where)
        self._seen_at[tid] = time.monotonic()
        self.spans_kept += 1

    def _add_plain(self, rec: Mapping[str, Any], where: str) -> None:
        try:
            trace = plain_trace(rec)
        except SpanError as exc:
            self.problems.add(exc.reason, where, str(exc))
            return
        self._ready.append(trace)

    def _next(self) -> int:
        self._order += 1
        return self._order

    # output
    def pending(self) -> int:
        return len(self._spans)

    def pop_ready(self, final: bool = False, spans: bool = True) -> list[Trace]:
        """Finished traces; ``spans=False`` hands back only plain traces (spans wait for the end)."""
        out, self._ready = self._ready, []
        now = time.monotonic()
        for tid in list(self._spans) if (spans or final) else []:
            spans = self._spans[tid]
            has_root = any(s.parent_id is None for s in spans.values())
            if final or (has_root and now - self._seen_at[tid] >= self.settle):
                out.append(assemble(tid, list(spans.values()), self.warnings, self._where.get(tid, tid)))
                del self._spans[tid], self._seen_at[tid]
                self._where.pop(tid, None)
                self._done[tid] = None
                if len(self._done) > self._remember:
                    self._done.popitem(last=False)
        return out


def _is_jsonl(text: str) -> bool:
    first = text.splitlines()[0].strip()
    try:
        json.loads(first)
        return True
    except json.JSONDecodeError:
        return False


def _count_children(run: Mapping[str, Any]) -> int:
    kids = [c for c in run.get("child_runs") or [] if isinstance(c, Mapping)]
    return len(kids) + sum(_count_children(c) for c in kids)


def _is_span(rec: Mapping[str, Any]) -> bool:
    ctx = rec.get("context")
    span_keys = ("spanId", "span_id", "traceId", "trace_id", "context.span_id", "parentSpanId", "parent_id")
    if isinstance(ctx, Mapping) and ("span_id" in ctx or "trace_id" in ctx):
        return True
    if any(k in rec for k in ("spanId", "span_id", "context.span_id", "parentSpanId")):
        return True
    return "attributes" in rec and any(k in rec for k in span_keys + ("name",))


# --- plain traces -------------------------------------------------------------------------------

def plain_trace(rec: Mapping[str, Any]) -> Trace:
    """A Trace from a plain record: id, input, output, context, tools, messages, session_id, label."""
    msgs = messages(rec.get("messages")) if rec.get("messages") is not None else []
    inp, out = rec.get("input"), rec.get("output")
    if inp in (None, "") and msgs:
        users = [m for m in msgs if m["role"] == "user"]
        inp = users[0]["content"] if users else None
    if out in (None, "") and msgs:
        bots = [m for m in msgs if m["role"] == "assistant"]
        out = bots[-1]["content"] if bots else None
    if all(v in (None, "", [], {}) for v in (inp, out, rec.get("context"), msgs)):
        raise SpanError("missing_fields", "no input, output, context or messages")
    tid = rec.get("id", rec.get("trace_id"))
    if tid in (None, ""):
        tid = "trace-" + hashlib.sha256(json.dumps(rec, sort_keys=True, default=str).encode()).hexdigest()[:16]
    calls = [c for c in (tool_call(x) for x in rec.get("tool_calls") or []) if c]
    for m in msgs:
        calls += [c for c in m.get("tool_calls", []) if c not in calls]
    session = next((rec[k] for k in SESSION_FIELDS if rec.get(k) not in (None, "")), None)
    meta = dict(rec.get("meta") or {}) if isinstance(rec.get("meta"), Mapping) else {}
    label = rec.get("label")
    return Trace(
        trace_id=str(tid),
        input=inp if isinstance(inp, str) or inp is None else _text(inp),
        output=out if isinstance(out, str) or out is None else _text(out),
        context=rec.get("context"),
        system=rec.get("system") if isinstance(rec.get("system"), str) else None,
        tools=list(rec.get("tools") or []) if isinstance(rec.get("tools"), list) else (
            [rec["tools"]] if rec.get("tools") else []),
        tool_calls=calls,
        messages=msgs,
        session_id=str(session) if session is not None else None,
        start=to_seconds(rec.get("timestamp") or rec.get("start_time") or rec.get("created_at")),
        label=None if label in (None, "") else str(label),
        source="plain",
        meta=meta,
    )


def _text(v: Any) -> str:
    if isinstance(v, list) and v and all(isinstance(m, Mapping) and "role" in m for m in v):
        return json.dumps(v, ensure_ascii=False)
    return content_text(v) if not isinstance(v, (Mapping, list)) else json.dumps(v, ensure_ascii=False, default=str)


# --- spans -> trace -----------------------------------------------------------------------------

def _value_text(v: Any, keys: tuple[str, ...], role: str) -> str | None:
    if v is None or v == "":
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, Mapping):
        for k in keys:
            if k in v and v[k] not in (None, ""):
                return _value_text(v[k], keys, role)
        if isinstance(v.get("messages"), list):
            msgs = [m for m in messages(v["messages"]) if m["role"] == role]
            if msgs:
                return msgs[-1]["content"]
    if isinstance(v, list):
        msgs = [m for m in messages(v) if m["role"] == role]
        if msgs:
            return msgs[-1]["content"]
    return json.dumps(v, ensure_ascii=False, default=str)


_IN_KEYS = ("input", "question", "query", "prompt", "text", "user_input")
_OUT_KEYS = ("output", "answer", "result", "response", "text", "content", "generation")


def assemble(trace_id: str, spans: list[Span], warnings: Problems, where: str = "") -> Trace:
    """One Trace from its spans: root input/output, the message trajectory, documents and tools."""
    spans.sort(key=lambda s: (s.start is None, s.start or 0.0, s.order))
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent_id is None]
    orphans = [s for s in spans if s.parent_id is not None and s.parent_id not in ids]
    if orphans:
        warnings.add("orphan_span", where or trace_id, f"{len(orphans)} spans name a parent not in trace {trace_id}",
                     n=len(orphans))
    if not roots:
        warnings.add("no_root_span", where or trace_id, f"trace {trace_id}")
    root = roots[0] if roots else (orphans[0] if orphans else spans[0])
    llm = [s for s in spans if s.kind == "llm" and (s.input_messages or s.output_messages)]
    inp = _value_text(root.input_value, _IN_KEYS, "user")
    if inp is None:
        for s in llm:
            users = [m for m in s.input_messages if m["role"] == "user"]
            if users:
                inp = users[-1]["content"]
                break
    if inp is None:
        inp = next((_value_text(s.input_value, _IN_KEYS, "user") for s in spans if s.input_value is not None), None)
    out = _value_text(root.output_value, _OUT_KEYS, "assistant")
    if out is None:
        for s in reversed(llm):
            bots = [m for m in s.output_messages if m["role"] == "assistant"]
            if bots:
                out = bots[-1]["content"] or json.dumps(bots[-1].get("tool_calls", []), ensure_ascii=False)
                break
    if out is None:
        out = next((_value_text(s.output_value, _OUT_KEYS, "assistant") for s in reversed(spans)
                    if s.output_value is not None), None)
    msgs: list[dict[str, Any]] = []
    seen: set[str] = set()
    calls: list[dict[str, Any]] = []

    def push(m: dict[str, Any]) -> None:
        key = json.dumps([m.get("role"), m.get("content"), m.get("tool_calls")], sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            msgs.append(m)

    for s in spans:
        for m in s.input_messages + s.output_messages:
            push(m)
            for c in m.get("tool_calls", []):
                if c not in calls:
                    calls.append(c)
        if s.kind == "tool" and s.tool_call:
            c = {k: v for k, v in s.tool_call.items() if k != "result"}
            if not any(x.get("name") == c["name"] and (x.get("id") == c.get("id") or x.get("arguments") == c.get(
                    "arguments")) for x in calls):
                calls.append(c)
            if s.tool_call.get("result") is not None:
                push({"role": "tool", "name": c["name"], "content": content_text(s.tool_call["result"])
                      if not isinstance(s.tool_call["result"], (dict, list))
                      else json.dumps(s.tool_call["result"], ensure_ascii=False, default=str)})
    system = next((m["content"] for m in msgs if m["role"] == "system"), None)
    convo = [m for m in msgs if m["role"] != "system"]
    if not convo and (inp or out):
        convo = [m for m in ({"role": "user", "content": inp}, {"role": "assistant", "content": out}) if m["content"]]
    docs: list[str] = []
    for s in spans:
        docs += [d for d in s.documents if d not in docs]
    tools: list[dict[str, Any]] = []
    for s in spans:
        tools += [t for t in s.tool_defs if t.get("name") not in {x.get("name") for x in tools}]
    session = next((s.session_id for s in spans if s.session_id), None)
    # root_span_id: what a verdict on the whole trace is parented to when it goes back out as a span
    meta: dict[str, Any] = {"root": root.name, "root_span_id": root.span_id, "errors": sum(s.error for s in spans)}
    model = next((s.attributes.get(k) for s in spans for k in ("gen_ai.request.model", "llm.model_name",
                                                                  "gen_ai.response.model") if s.attributes.get(k)), None)
    if model:
        meta["model"] = model
    items = [x for x in (span_item(s) for s in spans) if x is not None]
    return Trace(trace_id=trace_id, input=inp, output=out, context=docs or None, system=system, tools=tools,
                 tool_calls=calls, messages=convo, session_id=session, start=root.start,
                 source="langsmith" if "langsmith.run_type" in root.attributes else "otel",
                 spans=len(spans), meta=meta, span_items=items)


# --- sources ------------------------------------------------------------------------------------

def read_traces(source: str | Path | Iterable[Any], *, settle: float = 0.0) -> Ingest:
    """Read every trace from a file (JSONL or JSON), a list of records, or lines of JSON."""
    asm = TraceAssembler(settle=settle)
    traces: list[Trace] = []
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise AssayError("a trace file", f"no file at {path}", "check the path", code="not_found")
        for line, where in iter_lines(path):
            asm.add_line(line, where)
    else:
        for i, rec in enumerate(source):
            if isinstance(rec, str):
                asm.add_line(rec, f"item {i + 1}")
            else:
                asm.add_record(rec, f"item {i + 1}")
    traces += asm.pop_ready(final=True)
    return Ingest(traces=traces, problems=asm.problems, warnings=asm.warnings, items=asm.items,
                  spans=asm.spans_kept)


def iter_lines(path: Path) -> Iterator[tuple[str, str]]:
    """(text, where) for each JSONL line; a .json file is read whole as one item."""
    if path.suffix.lower() == ".json":
        yield path.read_text(encoding="utf-8"), path.name
        return
    with path.open(encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            yield line, f"{path.name}:{n}"


def follow_lines(path: Path, *, follow: bool = True, poll: float = 0.5, should_stop: Any = None,
                 idle_timeout: float | None = None) -> Iterator[tuple[str | None, str]]:
    """Like ``tail -f``: yields complete lines as they are appended; yields (None, "") while idle.

    Partial last lines wait until their newline arrives (or until the end when not following).
    """
    n = 0
    buf = ""
    idle_since = time.monotonic()
    with path.open(encoding="utf-8", errors="replace") as fh:
        while True:
            chunk = fh.readline()
            if chunk:
                idle_since = time.monotonic()
                buf += chunk
                if buf.endswith("\n"):
                    n += 1
                    yield buf, f"{path.name}:{n}"
                    buf = ""
                continue
            if not follow:
                if buf:
                    n += 1
                    yield buf, f"{path.name}:{n}"
                return
            if should_stop is not None and should_stop():
                return
            if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                return
            yield None, ""
            time.sleep(poll)

"""LangSmith-style run exports (``runs`` with ``inputs``/``outputs``/``child_runs``) as Spans."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from ._spans import (Span, SpanError, content_text, documents, messages, to_seconds, tool_defs,
                     _maybe_json)

_RUN_KINDS = {"llm": "llm", "chat_model": "llm", "tool": "tool", "retriever": "retriever",
              "chain": "chain", "prompt": "chain", "parser": "chain", "embedding": "embedding",
              "agent": "agent"}
_SESSION_META = ("session_id", "thread_id", "conversation_id")


def is_run(rec: Mapping[str, Any]) -> bool:
    return "run_type" in rec or ("inputs" in rec and ("outputs" in rec or "child_runs" in rec))


def spans_from_run(run: Mapping[str, Any], order: int = 0, parent: str | None = None,
                   trace_id: str | None = None, session: str | None = None) -> Iterator[Span]:
    """The run and its child runs (depth first) as Spans; raises SpanError for a run without an id."""
    rid = run.get("id") or run.get("run_id")
    if not rid:
        raise SpanError("run_missing_id", "a run without an id")
    rid = str(rid)
    tid = str(run.get("trace_id") or trace_id or (rid if not (run.get("parent_run_id") or parent) else ""))
    if not tid:
        raise SpanError("span_missing_trace_id", f"run {rid} has a parent but no trace_id")
    s = span_from_run(run, rid, tid, parent, order)
    s.session_id = s.session_id or session
    yield s
    for i, child in enumerate(run.get("child_runs") or []):
        if isinstance(child, Mapping):
            yield from spans_from_run(child, order + i + 1, rid, tid, s.session_id)


def span_from_run(run: Mapping[str, Any], rid: str, tid: str, parent: str | None, order: int) -> Span:
    kind = _RUN_KINDS.get(str(run.get("run_type", "")).lower(), "chain")
    extra = run.get("extra") if isinstance(run.get("extra"), Mapping) else {}
    meta = dict(extra.get("metadata") or {}) if isinstance(extra.get("metadata"), Mapping) else {}
    if isinstance(run.get("metadata"), Mapping):
        meta.update(run["metadata"])
    s = Span(trace_id=tid, span_id=rid, parent_id=str(run.get("parent_run_id") or parent or "") or None,
             name=str(run.get("name") or ""), kind=kind, order=order,
             start=to_seconds(run.get("start_time")), end=to_seconds(run.get("end_time")),
             attributes={"langsmith.run_type": run.get("run_type"), **{f"metadata.{k}": v for k, v in meta.items()
                                                                        if isinstance(v, (str, int, float, bool))}},
             error=bool(run.get("error")))
    inputs = _maybe_json(run.get("inputs"))
    outputs = _maybe_json(run.get("outputs"))
    inputs = inputs if isinstance(inputs, Mapping) else ({"input": inputs} if inputs is not None else {})
    outputs = outputs if isinstance(outputs, Mapping) else ({"output": outputs} if outputs is not None else {})
    for key in _SESSION_META:
        if meta.get(key):
            s.session_id = str(meta[key])
            break
    params = extra.get("invocation_params") if isinstance(extra.get("invocation_params"), Mapping) else {}
    s.tool_defs = tool_defs(params.get("tools") or params.get("functions") or inputs.get("tools"))
    if kind == "llm":
        s.input_messages = messages(inputs.get("messages")) or messages(inputs.get("prompts")) or messages(
            inputs.get("prompt"))
        gens = outputs.get("generations")
        outs: list[Any] = []
        if isinstance(gens, list):
            for g in (x for batch in gens for x in (batch if isinstance(batch, list) else [batch])):
                if isinstance(g, Mapping):
                    outs.append(g.get("message") or {"role": "assistant", "content": g.get("text", "")})
        elif outputs.get("output") is not None:
            outs.append(outputs["output"])
        elif outputs.get("choices"):
            outs.extend(c.get("message", c) for c in outputs["choices"] if isinstance(c, Mapping))
        s.output_messages = messages(outs, "assistant")
    elif kind == "retriever":
        s.documents = documents(outputs.get("documents", outputs.get("output")))
        s.input_value = inputs.get("query", inputs.get("input", inputs))
    elif kind == "tool":
        args = inputs.get("input", inputs) if set(inputs) <= {"input"} else inputs
        s.tool_call = {"name": s.name, "arguments": _maybe_json(args),
                       "result": _maybe_json(outputs.get("output", outputs or None))}
        s.input_value, s.output_value = args, s.tool_call["result"]
    else:
        s.input_value = _unwrap(inputs, ("input", "question", "query", "messages", "text"))
        s.output_value = _unwrap(outputs, ("output", "answer", "result", "text", "response", "generation"))
        if isinstance(inputs.get("messages"), list):
            s.input_messages = messages(inputs["messages"])
    return s


def _unwrap(d: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    if not d:
        return None
    for k in keys:
        if k in d:
            v = d[k]
            if k == "messages" and isinstance(v, list):
                msgs = messages(v)
                users = [m for m in msgs if m["role"] == "user"]
                return users[-1]["content"] if users else content_text(v)
            return v
    if len(d) == 1:
        return next(iter(d.values()))
    return dict(d)

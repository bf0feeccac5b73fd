"""Normalize one exported span (OpenTelemetry GenAI / OpenInference, OTLP or flat JSON) to a ``Span``.

Attributes may come as OTLP key/value lists, as flat dotted keys (``llm.input_messages.0.message.role``)
or as nested objects (Phoenix exports); they are flattened to dotted keys first, then the
conventions' fields are read from them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

# OpenInference span kinds and GenAI operation names -> our span kinds.
_KINDS = {
    "llm": "llm", "chat": "llm", "text_completion": "llm", "generate_content": "llm", "chat_model": "llm",
    "tool": "tool", "execute_tool": "tool",
    "retriever": "retriever", "reranker": "retriever",
    "agent": "agent", "invoke_agent": "agent", "create_agent": "agent",
    "chain": "chain", "embedding": "embedding", "embeddings": "embedding",
    "guardrail": "chain", "evaluator": "chain", "prompt": "chain", "parser": "chain",
}
SESSION_KEYS = ("session.id", "gen_ai.conversation.id", "session_id", "thread_id", "conversation_id",
                "langsmith.metadata.session_id", "langsmith.metadata.thread_id")


class SpanError(ValueError):
    """A span that cannot be used; ``reason`` is the counter key."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason = reason


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str = ""
    kind: str = "unknown"
    start: float | None = None
    end: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    input_messages: list[dict[str, Any]] = field(default_factory=list)
    output_messages: list[dict[str, Any]] = field(default_factory=list)
    input_value: Any = None
    output_value: Any = None
    documents: list[str] = field(default_factory=list)
    tool_defs: list[dict[str, Any]] = field(default_factory=list)
    tool_call: dict[str, Any] | None = None  # for tool spans: name, arguments, result
    session_id: str | None = None
    error: bool = False
    order: int = 0  # position in the input, to keep a stable order without timestamps


# --- attribute flattening ---------------------------------------------------------------------

def otlp_value(v: Any) -> Any:
    """An OTLP AnyValue (``{"stringValue": ...}``) as a plain value."""
    if not isinstance(v, Mapping):
        return v
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in v:
            return v[key]
    if "intValue" in v:
        try:
            return int(v["intValue"])
        except (TypeError, ValueError):
            return v["intValue"]
    if "arrayValue" in v:
        return [otlp_value(x) for x in (v["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in v:
        return {kv.get("key"): otlp_value(kv.get("value")) for kv in (v["kvlistValue"] or {}).get("values", [])}
    if "bytesValue" in v:
        return v["bytesValue"]
    return v


def flatten(attrs: Any) -> dict[str, Any]:
    """Attributes (OTLP list, nested dict or flat dict) as one flat dict with dotted keys."""
    if isinstance(attrs, list):
        attrs = {a.get("key"): otlp_value(a.get("value")) for a in attrs if isinstance(a, Mapping) and "key" in a}
    if not isinstance(attrs, Mapping):
        return {}
    out: dict[str, Any] = {}

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, Mapping) and v and not _is_leaf_object(prefix):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        elif isinstance(v, list) and v and all(isinstance(x, Mapping) for x in v) and not _is_leaf_object(prefix):
            for i, x in enumerate(v):
                walk(f"{prefix}.{i}", x)
        else:
            out[prefix] = v

    for k, v in attrs.items():
        walk(str(k), v)
    return out


def _is_leaf_object(key: str) -> bool:
    # Values kept whole: JSON-schema-like and free-form payloads.
    last = key.rsplit(".", 1)[-1]
    return last in ("json_schema", "parameters", "arguments", "metadata", "kwargs", "value", "args")


def unflatten(flat: Mapping[str, Any], prefix: str) -> Any:
    """The value under ``prefix``: a whole value, or rebuilt from ``prefix.0.x``-style keys."""
    if prefix in flat:
        return _maybe_json(flat[prefix])
    p = prefix + "."
    sub = {k[len(p):]: v for k, v in flat.items() if k.startswith(p)}
    if not sub:
        return None
    root: dict[str, Any] = {}
    for key, v in sub.items():
        node = root
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = v
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    node = {k: _listify(v) for k, v in node.items()}
    if node and all(k.isdigit() for k in node):
        return [node[k] for k in sorted(node, key=int)]
    return node


def _maybe_json(v: Any) -> Any:
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    return v


# --- messages ---------------------------------------------------------------------------------

def content_text(c: Any) -> str:
    """Message content (string, parts list, dict) as text."""
    if c is None:
        return ""
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        parts = [content_text(x) for x in c]
        return "\n".join(p for p in parts if p)
    if isinstance(c, Mapping):
        if "message_content" in c:
            return content_text(c["message_content"])
        for key in ("text", "content", "page_content", "response", "result"):
            if key in c and c.get("type") not in ("tool_call",):
                return content_text(c[key])
        if c.get("type") in ("image", "image_url", "blob", "uri"):
            return ""
        return json.dumps(c, ensure_ascii=False, default=str)
    return str(c)


def tool_call(c: Any) -> dict[str, Any] | None:
    """A tool call in any of the usual shapes as {"name", "arguments", "id"}."""
    if not isinstance(c, Mapping):
        return None
    c = c.get("tool_call", c)
    fn = c.get("function") if isinstance(c.get("function"), Mapping) else {}
    name = fn.get("name") or c.get("name")
    if not name:
        return None
    args = fn.get("arguments", c.get("arguments", c.get("args", c.get("input"))))
    args = _maybe_json(args)
    out = {"name": str(name), "arguments": args if args is not None else {}}
    if c.get("id"):
        out["id"] = str(c["id"])
    return out


_ROLES = {"human": "user", "ai": "assistant", "humanmessage": "user", "aimessage": "assistant",
          "systemmessage": "system", "toolmessage": "tool", "functionmessage": "tool", "model": "assistant",
          "aimessagechunk": "assistant", "humanmessagechunk": "user"}


def message(m: Any, default_role: str = "user") -> dict[str, Any] | None:
    """One message from OpenInference, GenAI (parts), OpenAI or LangChain shapes."""
    if isinstance(m, str):
        return {"role": default_role, "content": m}
    if not isinstance(m, Mapping):
        return None
    if "message" in m and isinstance(m["message"], Mapping):  # OpenInference wrapper
        m = m["message"]
    if m.get("lc") and isinstance(m.get("kwargs"), Mapping):  # LangChain serialized
        cls = str((m.get("id") or ["user"])[-1]).lower()
        kw = dict(m["kwargs"])
        kw.setdefault("role", _ROLES.get(cls, kw.get("role", default_role)))
        m = kw
    if isinstance(m.get("data"), Mapping) and "type" in m:  # LangChain message_to_dict
        d = dict(m["data"])
        d.setdefault("role", _ROLES.get(str(m["type"]).lower(), str(m["type"])))
        m = d
    role = m.get("role") or _ROLES.get(str(m.get("type", "")).lower()) or default_role
    role = _ROLES.get(str(role).lower(), str(role))
    calls: list[dict[str, Any]] = []
    texts: list[str] = []
    parts = m.get("parts")
    if isinstance(parts, list):  # GenAI semantic conventions
        for p in parts:
            if isinstance(p, Mapping) and p.get("type") == "tool_call":
                tc = tool_call(p)
                if tc:
                    calls.append(tc)
            elif isinstance(p, Mapping) and p.get("type") == "tool_call_response":
                texts.append(content_text(p.get("response", p.get("result"))))
            else:
                texts.append(content_text(p))
    content = m.get("content", m.get("contents"))
    if content is not None:
        texts.insert(0, content_text(content))
    for c in list(m.get("tool_calls") or []) + list((m.get("additional_kwargs") or {}).get("tool_calls") or []):
        tc = tool_call(c)
        if tc and not any(tc == x for x in calls):
            calls.append(tc)
    if m.get("function_call"):
        tc = tool_call({"function": m["function_call"]})
        if tc:
            calls.append(tc)
    out: dict[str, Any] = {"role": role, "content": "\n".join(t for t in texts if t)}
    if calls:
        out["tool_calls"] = calls
    if m.get("name") and role == "tool":
        out["name"] = m["name"]
    if m.get("tool_call_id"):
        out["tool_call_id"] = m["tool_call_id"]
    return out


def messages(v: Any, default_role: str = "user") -> list[dict[str, Any]]:
    v = _maybe_json(v)
    if v is None:
        return []
    if isinstance(v, Mapping):
        if isinstance(v.get("messages"), list):
            v = v["messages"]
        else:
            v = [v]
    if isinstance(v, str):
        return [{"role": default_role, "content": v}]
    if isinstance(v, list) and v and all(isinstance(x, list) for x in v):  # LangChain [[...]]
        v = [m for batch in v for m in batch]
    out = []
    for x in v if isinstance(v, list) else []:
        msg = message(x, default_role)
        if msg and (msg["content"] or msg.get("tool_calls")):
            out.append(msg)
    return out


# --- the span ---------------------------------------------------------------------------------

def _id(v: Any) -> str | None:
    if v in (None, "", 0):
        return None
    s = str(v)
    if s.lower().startswith("0x"):
        s = s[2:]
    return s or None


def to_seconds(v: Any) -> float | None:
    """Unix nanoseconds / seconds / ISO-8601 as float seconds."""
    if v in (None, ""):
        return None
    if isinstance(v, (int, float)) or (isinstance(v, str) and v.strip().lstrip("-").isdigit()):
        x = float(v)
        if x > 1e17:  # nanoseconds
            return x / 1e9
        if x > 1e14:  # microseconds
            return x / 1e6
        if x > 1e11:  # milliseconds
            return x / 1e3
        return x
    try:
        return datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _json_list(v: Any) -> list[Any]:
    """A value that may be JSON text, as a list: none -> [], one item -> [item]."""
    v = _maybe_json(v)
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def documents(v: Any) -> list[str]:
    out = []
    for d in _json_list(v):
        if isinstance(d, Mapping):
            d = d.get("document", d)
            text = d.get("content", d.get("page_content", d.get("text"))) if isinstance(d, Mapping) else d
            text = content_text(text)
        else:
            text = content_text(d)
        if text:
            out.append(text)
    return out


def tool_defs(v: Any) -> list[dict[str, Any]]:
    out = []
    for t in _json_list(v):
        t = _maybe_json(t)
        if isinstance(t, Mapping):
            t = t.get("tool", t)
            t = _maybe_json(t.get("json_schema", t)) if isinstance(t, Mapping) else t
        if isinstance(t, Mapping):
            fn = t.get("function") if isinstance(t.get("function"), Mapping) else t
            if fn.get("name"):
                d = {"name": fn["name"]}
                if fn.get("description"):
                    d["description"] = fn["description"]
                params = _maybe_json(fn.get("parameters", fn.get("input_schema", fn.get("args_schema"))))
                if params is not None:
                    d["parameters"] = params
                out.append(d)
        elif isinstance(t, str) and t:
            out.append({"name": t})
    return out


def span_from_record(rec: Mapping[str, Any], order: int = 0, resource: Mapping[str, Any] | None = None) -> Span:
    """A Span from one exported span object; raises SpanError with a reason when unusable."""
    ctx = rec.get("context") if isinstance(rec.get("context"), Mapping) else {}
    trace_id = _id(rec.get("traceId") or rec.get("trace_id") or ctx.get("trace_id") or ctx.get("traceId")
                   or rec.get("context.trace_id"))
    span_id = _id(rec.get("spanId") or rec.get("span_id") or ctx.get("span_id") or ctx.get("spanId")
                  or rec.get("context.span_id"))
    if not trace_id:
        raise SpanError("span_missing_trace_id", "a span without a trace id")
    if not span_id:
        raise SpanError("span_missing_span_id", "a span without a span id")
    p = rec.get("parent")
    parent = _id(rec.get("parentSpanId") or rec.get("parent_span_id") or rec.get("parent_id")
                 or (p.get("span_id") if isinstance(p, Mapping) else p))
    raw_attrs = rec.get("attributes")
    if raw_attrs is None:  # Phoenix dataframe-style flat columns "attributes.x.y"
        raw_attrs = {k[len("attributes."):]: v for k, v in rec.items() if k.startswith("attributes.")}
    if raw_attrs is not None and not isinstance(raw_attrs, (list, Mapping)):
        raise SpanError("span_bad_attributes", f"attributes are a {type(raw_attrs).__name__}")
    attrs = flatten(raw_attrs)
    for ev in rec.get("events") or []:  # deprecated GenAI content events
        if isinstance(ev, Mapping):
            for k, v in flatten(ev.get("attributes")).items():
                attrs.setdefault(k, v)
    for k, v in flatten(resource or {}).items():
        attrs.setdefault(k, v)
    status = rec.get("status") or {}
    code = status.get("code", status.get("status_code")) if isinstance(status, Mapping) else status
    s = Span(
        trace_id=trace_id, span_id=span_id, parent_id=parent, name=str(rec.get("name") or ""),
        start=to_seconds(rec.get("startTimeUnixNano") or rec.get("start_time") or rec.get("startTime")),
        end=to_seconds(rec.get("endTimeUnixNano") or rec.get("end_time") or rec.get("endTime")),
        attributes=attrs, order=order,
        error=str(code).upper() in ("2", "ERROR", "STATUS_CODE_ERROR"),
    )
    read_attributes(s)
    return s


def read_attributes(s: Span) -> None:
    """Fill the span's content fields from OpenInference and GenAI attributes."""
    a = s.attributes
    kind = a.get("openinference.span.kind") or a.get("gen_ai.operation.name") or ""
    s.kind = _KINDS.get(str(kind).lower(), s.kind)
    s.input_messages = (messages(unflatten(a, "llm.input_messages"))
                        or messages(unflatten(a, "gen_ai.input.messages"))
                        or messages(unflatten(a, "gen_ai.prompt")))
    system = unflatten(a, "gen_ai.system_instructions")
    if system is not None and not any(m["role"] == "system" for m in s.input_messages):
        s.input_messages.insert(0, {"role": "system", "content": content_text(system)})
    s.output_messages = (messages(unflatten(a, "llm.output_messages"), "assistant")
                         or messages(unflatten(a, "gen_ai.output.messages"), "assistant")
                         or messages(unflatten(a, "gen_ai.completion"), "assistant"))
    s.input_value = _maybe_json(a.get("input.value"))
    s.output_value = _maybe_json(a.get("output.value"))
    s.documents = documents(unflatten(a, "retrieval.documents")) or documents(
        unflatten(a, "reranker.output_documents")) or documents(unflatten(a, "gen_ai.retrieval.documents"))
    s.tool_defs = tool_defs(unflatten(a, "llm.tools")) or tool_defs(unflatten(a, "gen_ai.tool.definitions"))
    name = a.get("tool.name") or a.get("gen_ai.tool.name") or a.get("tool_call.function.name")
    if name:
        args = a.get("gen_ai.tool.call.arguments", a.get("tool_call.function.arguments", s.input_value))
        result = a.get("gen_ai.tool.call.result", s.output_value)
        s.tool_call = {"name": str(name), "arguments": _maybe_json(args) if args is not None else {},
                       "result": _maybe_json(result)}
        if a.get("gen_ai.tool.call.id") or a.get("tool_call.id"):
            s.tool_call["id"] = str(a.get("gen_ai.tool.call.id") or a.get("tool_call.id"))
        if s.kind == "unknown":
            s.kind = "tool"
        params = unflatten(a, "tool.parameters") or unflatten(a, "tool.json_schema")
        if params is not None or a.get("tool.description") or a.get("gen_ai.tool.description"):
            d = {"name": str(name)}
            desc = a.get("tool.description") or a.get("gen_ai.tool.description")
            if desc:
                d["description"] = desc
            if isinstance(params, Mapping):
                d["parameters"] = params.get("parameters", params) if "parameters" in params else params
            s.tool_defs = s.tool_defs or [d]
    if s.kind == "unknown":
        if s.input_messages or s.output_messages:
            s.kind = "llm"
        elif s.documents:
            s.kind = "retriever"
        elif s.input_value is not None or s.output_value is not None:
            s.kind = "chain"
    for key in SESSION_KEYS:
        if a.get(key):
            s.session_id = str(a[key])
            break

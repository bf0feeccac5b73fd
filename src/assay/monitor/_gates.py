"""Deterministic gates: cheap code checks that run before the model, configured per metric in YAML.

    gates:
      - {type: pii, kinds: [email, card], field: input, decides: true}
      - {type: regex, pattern: "sk-[A-Za-z0-9]{20,}", field: output, severity: high}
      - {type: tool_schema}
      - {type: required_tool, tools: [search]}
      - {type: length, field: output, max_chars: 4000}

A gate passes or fails; ``decides: true`` on a gate attached to a metric makes a failing gate
the metric's verdict (the model is not run for that row).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Mapping, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..errors import AssayError, invalid
from ..metrics import field_text
from ..traces import tool_call, tool_defs
from ._schema import validate as validate_schema

FieldName = Literal["input", "output", "context", "tools", "any"]


@dataclass
class GateResult:
    gate: str
    passed: bool
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "passed": self.passed, "reason": self.reason, "details": self.details}


class _Gate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    field: FieldName | None = None  # None: the metric's judged field (output, or input for messages)
    severity: Literal["low", "medium", "high"] = "medium"
    decides: bool = False

    @property
    def label(self) -> str:
        return self.name or getattr(self, "type")

    def text(self, row: Mapping[str, Any], default: str = "output") -> str:
        f = self.field or default
        if f == "any":
            return "\n".join(field_text(row.get(k)) for k in ("input", "output", "context") if row.get(k))
        return field_text(row.get(f))

    def check(self, row: Mapping[str, Any], default_field: str = "output") -> GateResult:  # pragma: no cover
        raise NotImplementedError


class RegexGate(_Gate):
    type: Literal["regex"]
    pattern: str | list[str]
    fail_on: Literal["match", "no_match"] = "match"
    ignore_case: bool = True

    def check(self, row: Mapping[str, Any], default_field: str = "output") -> GateResult:
        text = self.text(row, default_field)
        flags = re.IGNORECASE if self.ignore_case else 0
        pats = [self.pattern] if isinstance(self.pattern, str) else self.pattern
        hits = [p for p in pats if re.search(p, text, flags)]
        return _verdict(self.label, bool(hits), self.fail_on, f"pattern {hits[0] if hits else pats[0]!r}")


class KeywordGate(_Gate):
    type: Literal["keyword"]
    keywords: list[str]
    fail_on: Literal["match", "no_match"] = "match"
    case_sensitive: bool = False
    whole_word: bool = True

    def check(self, row: Mapping[str, Any], default_field: str = "output") -> GateResult:
        text = self.text(row, default_field)
        flags = 0 if self.case_sensitive else re.IGNORECASE
        hits = [k for k in self.keywords
                if re.search((r"(?<!\w)" + re.escape(k) + r"(?!\w)") if self.whole_word else re.escape(k), text, flags)]
        return _verdict(self.label, bool(hits), self.fail_on, f"keyword {hits[0] if hits else self.keywords[0]!r}",
                        {"matched": hits})


def _verdict(name: str, hit: bool, fail_on: str, what: str, details: dict | None = None) -> GateResult:
    failed = hit if fail_on == "match" else not hit
    reason = (f"{what} matched" if hit else f"{what} not found") if failed else ""
    return GateResult(name, not failed, reason, details or {})


# --- PII ----------------------------------------------------------------------------------------

def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    s = text.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    num = "".join(str(int(c, 36)) for c in moved)
    return int(num) % 97 == 1


PII_PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b"),
    "card": re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])"),
    "iban": re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"),
    "ssn": re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}[- ](?!00)\d{2}[- ](?!0000)\d{4}(?![\d-])"),
    "ipv4": re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d.])"),
    "phone": re.compile(r"(?<![\w+])(?:\+?\d{1,3}[\s.\-]?)?(?:\(\d{1,4}\)[\s.\-]?)?\d{2,4}(?:[\s.\-]\d{2,4}){1,4}(?!\w)"
                        r"|(?<![\w+])\+\d{9,15}(?!\d)"),
}
PII_KINDS = tuple(PII_PATTERNS)
_SSN_SHAPE = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")


def find_pii(text: str, kinds: tuple[str, ...] | list[str] = PII_KINDS) -> dict[str, int]:
    """Counts of each PII kind found; cards pass Luhn, IBANs pass mod-97, phones have 9-15 digits."""
    found: dict[str, int] = {}
    masked = text
    for kind in PII_KINDS:  # fixed order: specific kinds are masked before phone numbers
        if kind not in kinds and kind not in ("card", "iban", "ssn"):
            continue
        n = 0
        for m in list(PII_PATTERNS[kind].finditer(masked)):
            s = m.group(0)
            digits = re.sub(r"\D", "", s)
            if kind == "card" and not (13 <= len(digits) <= 19 and luhn_ok(digits)):
                continue
            if kind == "iban" and not iban_ok(s):
                masked = masked[:m.start()] + "#" * len(s) + masked[m.end():]  # IBAN-shaped: not a phone
                continue
            if kind == "phone" and not (9 <= len(digits) <= 15):
                continue
            n += 1
            masked = masked[:m.start()] + "#" * len(s) + masked[m.end():]
        if kind == "ssn":  # SSN-shaped but invalid numbers are not phone numbers either
            masked = _SSN_SHAPE.sub(lambda m: "#" * len(m.group(0)), masked)
        if n and kind in kinds:
            found[kind] = n
    return found


class PIIGate(_Gate):
    type: Literal["pii"]
    kinds: list[Literal["email", "phone", "card", "iban", "ssn", "ipv4"]] = Field(
        default_factory=lambda: list(PII_KINDS))

    def check(self, row: Mapping[str, Any], default_field: str = "output") -> GateResult:
        found = find_pii(self.text(row, default_field), self.kinds)
        reason = "found " + ", ".join(f"{n} {k}" for k, n in found.items()) if found else ""
        return GateResult(self.label, not found, reason, {"found": found})


class LengthGate(_Gate):
    type: Literal["length"]
    min_chars: int | None = Field(None, ge=0)
    max_chars: int | None = Field(None, ge=0)
    min_words: int | None = Field(None, ge=0)
    max_words: int | None = Field(None, ge=0)

    def check(self, row: Mapping[str, Any], default_field: str = "output") -> GateResult:
        text = self.text(row, default_field)
        c, w = len(text), len(text.split())
        for bad, msg in ((self.min_chars is not None and c < self.min_chars, f"{c} chars < {self.min_chars}"),
                         (self.max_chars is not None and c > self.max_chars, f"{c} chars > {self.max_chars}"),
                         (self.min_words is not None and w < self.min_words, f"{w} words < {self.min_words}"),
                         (self.max_words is not None and w > self.max_words, f"{w} words > {self.max_words}")):
            if bad:
                return GateResult(self.label, False, msg, {"chars": c, "words": w})
        return GateResult(self.label, True, "", {"chars": c, "words": w})


class JsonGate(_Gate):
    type: Literal["json"]
    json_schema: dict[str, Any] | None = Field(None, alias="schema")

    def check(self, row: Mapping[str, Any], default_field: str = "output") -> GateResult:
        f = self.field or default_field
        v = row.get(f)
        if isinstance(v, str):
            try:
                v = json.loads(v)
            except json.JSONDecodeError as exc:
                return GateResult(self.label, False, f"{f} is not valid JSON ({exc.msg})")
        if self.json_schema:
            errs = validate_schema(v, self.json_schema)
            if errs:
                return GateResult(self.label, False, errs[0], {"errors": errs})
        return GateResult(self.label, True)


# --- tools --------------------------------------------------------------------------------------

def extract_calls(row: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """(tool calls, problem) from the row's meta.tool_calls or its output (several JSON shapes)."""
    meta = row.get("meta") or {}
    if isinstance(meta, Mapping) and meta.get("tool_calls"):
        return [c for c in (tool_call(x) for x in meta["tool_calls"]) if c], None
    out = row.get("output")
    if isinstance(out, str):
        s = out.strip()
        if not s or s[0] not in "[{":
            return [], None  # a text answer: no call
        try:
            out = json.loads(s)
        except json.JSONDecodeError as exc:
            return [], f"the tool call is not valid JSON ({exc.msg})"
    if isinstance(out, Mapping):
        out = out.get("tool_calls", [out])
    calls: list[dict[str, Any]] = []
    for item in out if isinstance(out, list) else []:
        if not isinstance(item, Mapping):
            continue
        if "role" in item:  # a message list
            calls += [c for c in (tool_call(x) for x in item.get("tool_calls") or []) if c]
            continue
        c = tool_call(item)
        if c is None and len(item) == 1:  # {"fn_name": args} (BFCL style)
            name, args = next(iter(item.items()))
            c = {"name": str(name), "arguments": args}
        if c:
            calls.append(c)
    return calls, None


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


class ToolSchemaGate(_Gate):
    type: Literal["tool_schema"]
    require_call: bool = False

    def check(self, row: Mapping[str, Any], default_field: str = "output") -> GateResult:
        calls, problem = extract_calls(row)
        if problem:
            return GateResult(self.label, False, problem)
        if not calls:
            ok = not self.require_call
            return GateResult(self.label, ok, "" if ok else "no tool was called")
        schemas = {t["name"]: t.get("parameters") for t in tool_defs(row.get("tools"))}
        # providers that forbid dots in function names call "a.b" as "a_b"
        sanitized = {_sanitize(n): n for n in schemas}
        for c in calls:
            name = c["name"] if c["name"] in schemas else sanitized.get(_sanitize(c["name"]))
            if schemas and name is None:
                return GateResult(self.label, False, f"unknown tool '{c['name']}'", {"tool": c["name"]})
            args = c.get("arguments")
            if isinstance(args, str):
                try:
                    args = json.loads(args) if args.strip() else {}
                except json.JSONDecodeError as exc:
                    return GateResult(self.label, False, f"arguments of '{c['name']}' are not valid JSON ({exc.msg})")
            if not isinstance(args, Mapping):
                return GateResult(self.label, False, f"arguments of '{c['name']}' are not an object")
            schema = schemas.get(name) if name else None
            if isinstance(schema, Mapping):
                errs = validate_schema(dict(args), schema)
                if errs:
                    return GateResult(self.label, False, f"'{c['name']}': {errs[0]}", {"errors": errs})
        return GateResult(self.label, True, "", {"calls": len(calls)})


class RequiredToolGate(_Gate):
    type: Literal["required_tool"]
    tools: list[str] = Field(min_length=1)
    mode: Literal["all", "any"] = "all"

    def check(self, row: Mapping[str, Any], default_field: str = "output") -> GateResult:
        calls, _ = extract_calls(row)
        called = {c["name"] for c in calls}
        missing = [t for t in self.tools if t not in called]
        ok = not missing if self.mode == "all" else len(missing) < len(self.tools)
        return GateResult(self.label, ok, "" if ok else f"tool(s) not called: {', '.join(missing)}",
                          {"called": sorted(called)})


Gate = Annotated[Union[RegexGate, KeywordGate, PIIGate, LengthGate, JsonGate, ToolSchemaGate, RequiredToolGate],
                 Field(discriminator="type")]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(Gate)
GATE_TYPES = ("regex", "keyword", "pii", "length", "json", "tool_schema", "required_tool")


def gate_from_dict(d: Any, source: str = "gates") -> Any:
    """A gate from its YAML mapping; problems become one AssayError."""
    if isinstance(d, _Gate):
        return d
    if not isinstance(d, Mapping) or d.get("type") not in GATE_TYPES:
        found = d.get("type") if isinstance(d, Mapping) else type(d).__name__
        raise AssayError(f"a gate with type one of {', '.join(GATE_TYPES)} in {source}", f"{found!r}",
                         "write each gate as {type: pii, ...} (see assay.monitor docs)", code="invalid_config")
    try:
        return _ADAPTER.validate_python(dict(d))
    except ValidationError as exc:  # pydantic's key path starts with the gate's type
        raise invalid(exc, f"a valid '{{where}}' for the {d['type']} gate in {source}",
                      "fix {where} of that gate", found="{msg}", code="invalid_config", top="gate", skip=1) from None


def gates_from_list(items: Any, source: str = "gates") -> list[Any]:
    gates = [gate_from_dict(d, source) for d in (items or [])]
    names = [g.label for g in gates]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise AssayError(f"distinct gate names in {source}", f"{sorted(dup)} used twice",
                         "give each gate a name:", code="invalid_config")
    return gates

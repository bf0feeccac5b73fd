"""One cluster of failure descriptions -> a proposed binary check: name, description, judge prompt.

The provider is shown the cluster's most typical descriptions (and a few of its rows) and asked for
JSON ``{"name", "description", "prompt"}``. Its prompt is kept when it is a valid metric prompt for
the rows' shape (every placeholder the shape needs); otherwise its text becomes the criterion of a
standard template that adds the fields. An answer that is not JSON (a small local model, the mock
provider) falls back to a name from the cluster's distinctive words and a template prompt built from
its descriptions; the report says which happened (``named_by``).

A check's verdict ``true`` means the failure is present (``positive_label: "true"``): the label the
monitor counts as failing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..errors import AssayError
from ..metrics import InputShape, MetricSpec, metric_from_dict
from ..metrics._spec import REQUIRED_FIELDS

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
FIELD_TITLES = {"input": "Request", "tools": "Available tools", "context": "Context", "output": "Response",
                "output_b": "Second response"}
SHAPE_FIELDS: dict[InputShape, tuple[str, ...]] = {
    InputShape.message: ("input",), InputShape.input_output: ("input", "output"),
    InputShape.rag: ("input", "context", "output"), InputShape.tools: ("input", "tools", "output"),
    InputShape.trace: ("output",), InputShape.session: ("output",),
    InputShape.pairwise: ("input", "output", "output_b"),
}

ASK = """You are helping build evaluation checks for an AI system. Reviewers marked the rows below as
failing and described what went wrong. All the descriptions below belong to ONE failure mode.

<descriptions>
{notes}
</descriptions>

<example_rows>
{rows}
</example_rows>

Name this failure mode and write a binary judge prompt that detects it in a single row.
Answer with one JSON object only:
{{"name": "short_snake_case_name", "description": "one sentence: what the failure is",
  "prompt": "the judge prompt"}}
The judge prompt must ask whether THIS failure is present (answer true when it is, false when it is
not) and must contain these placeholders, each once, where the row's fields go: {placeholders}."""


@dataclass
class Proposal:
    name: str
    description: str
    prompt: str
    named_by: str  # "provider", "provider+template" (its criterion in the template) or "fallback"
    raw: str = ""


def slug(text: str, default: str = "check") -> str:
    """A metric name (lowercase letters, digits, ``_``/``-``; at most 48 characters) from free text."""
    s = re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_-")
    s = s[:48].rstrip("_-")
    return s if s and NAME_RE.match(s) else default


def ask_prompt(notes: Sequence[str], rows: Sequence[Mapping[str, Any]], shape: InputShape) -> str:
    fields = SHAPE_FIELDS.get(shape, ("input", "output"))
    shown = []
    for r in rows:
        shown.append(json.dumps({f: r.get(f) for f in fields if r.get(f) is not None}, ensure_ascii=False,
                                default=str)[:1200])
    return ASK.format(notes="\n".join(f"- {n}" for n in notes), rows="\n".join(shown) or "(none)",
                      placeholders=", ".join("{" + f + "}" for f in fields))


def template_prompt(description: str, criterion: str, shape: InputShape, examples: Sequence[str] = ()) -> str:
    """The standard check prompt: the failure, how to recognise it, the row's fields, a true/false question."""
    parts = [f"You are a judge checking one failure mode: {description.rstrip('.')}."]
    if criterion.strip() and criterion.strip() != description.strip():
        parts.append(criterion.strip())
    if examples:
        parts.append("Reviewers described this failure like this:\n" + "\n".join(f"- {e}" for e in examples))
    for f in SHAPE_FIELDS.get(shape, ("input", "output")):
        parts.append(f"{FIELD_TITLES.get(f, f.title())}:\n{{{f}}}")
    parts.append("Does the response show this failure? Answer true if it does, false if it does not.")
    return "\n\n".join(parts) + "\n"


def _json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (fenced or bare), or None."""
    text = re.sub(r"```(?:json)?", "", text)
    start = text.find("{")
    while start != -1:
        depth, in_str, esc = 0, False, False
        for i in range(start, len(text)):
            ch = text[i]
            if in_str:
                esc = ch == "\\" and not esc
                if ch == '"' and not esc:
                    in_str = False
                continue
            if ch == '"':
                in_str = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    try:
                        obj = json.loads(text[start:i + 1])
                    except json.JSONDecodeError:
                        break
                    return obj if isinstance(obj, dict) else None
        start = text.find("{", start + 1)
    return None


def check_spec(name: str, description: str, prompt: str, shape: InputShape, severity: str = "medium") -> MetricSpec:
    """The metric spec of a check: boolean, ``true`` = the failure is present (the failing label)."""
    return metric_from_dict({
        "name": name, "description": description, "output": "boolean", "shape": shape.value, "prompt": prompt,
        "positive_label": "true", "severity": severity,
        "label_descriptions": {"true": f"the failure is present: {description}"[:300],
                               "false": "this failure is not present"},
    }, f"check {name}")


def valid_prompt(prompt: str, shape: InputShape) -> bool:
    need = REQUIRED_FIELDS.get(shape, ())
    if not all("{" + f + "}" in prompt for f in need):
        return False
    try:
        check_spec("probe", "probe", prompt, shape)
    except AssayError:
        return False
    return True


def propose(provider: Any, notes: Sequence[str], rows: Sequence[Mapping[str, Any]], shape: InputShape,
            fallback_terms: Sequence[str]) -> Proposal:
    """Ask the provider to name the cluster and write its check prompt; fall back when it cannot."""
    raw = ""
    obj = None
    if provider is not None:
        try:
            comp = provider.generate(ask_prompt(notes, rows, shape), max_tokens=800, temperature=0.0, seed=0)
            raw = comp.text
            obj = _json_object(raw)
        except AssayError:  # ProviderError is an AssayError: a failed request falls back, never stops discovery
            obj = None
    examples = list(notes[:3])
    if obj and isinstance(obj.get("name"), str) and slug(obj["name"], ""):
        name = slug(obj["name"])
        desc = " ".join(str(obj.get("description") or name.replace("_", " ")).split())
        prompt = str(obj.get("prompt") or "")
        if valid_prompt(prompt, shape):
            return Proposal(name, desc, prompt if prompt.endswith("\n") else prompt + "\n", "provider", raw)
        return Proposal(name, desc, template_prompt(desc, prompt, shape, examples), "provider+template", raw)
    terms = list(fallback_terms)
    name = slug("_".join(terms[:3])) if terms else "failure_mode"
    desc = f"failures that reviewers describe with: {', '.join(terms) or 'the notes below'}"
    return Proposal(name, desc, template_prompt(desc, "", shape, examples), "fallback", raw)

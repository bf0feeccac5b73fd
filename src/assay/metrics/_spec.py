"""The metric: what the judge is asked, what shape of input it reads, what it may answer."""

from __future__ import annotations

import re
from enum import Enum
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import AssayError, invalid


class InputShape(str, Enum):
    """Which fields of a row the metric reads."""

    message = "message"  # a single message: input
    input_output = "input_output"  # a request and the response being judged
    rag = "rag"  # input, output and the retrieved context
    tools = "tools"  # input, the tool schemas and the call(s) made (output)
    trace = "trace"  # a full agent trajectory (output holds the messages/spans)
    session = "session"  # several turns of a conversation (output holds the turns)
    pairwise = "pairwise"  # a prompt (input) and two responses (output = A, output_b = B): labels a / b / tie


# Fields each shape needs on every row, and placeholders its template may use.
REQUIRED_FIELDS: dict[InputShape, tuple[str, ...]] = {
    InputShape.message: ("input",),
    InputShape.input_output: ("input", "output"),
    InputShape.rag: ("input", "output", "context"),
    InputShape.tools: ("input", "output", "tools"),
    InputShape.trace: ("output",),
    InputShape.session: ("output",),
    InputShape.pairwise: ("input", "output", "output_b"),
}
PLACEHOLDERS = ("input", "output", "output_b", "context", "tools")
_PLACEHOLDER = re.compile(r"\{(input|output|output_b|context|tools)\}")
# Pairwise metrics: the labels saying which response wins; swapping A and B swaps them (others stay).
PAIR_LABELS = ("a", "b")

BOOLEAN_LABELS = ("true", "false")

# Span kinds a metric may target (``target: {span_kind: tool}``): one verdict per matching span.
SPAN_KINDS = ("llm", "retriever", "tool", "agent")  # agent: its task in, its final answer out
# Shapes that read one span; trace, session and pairwise judge more than one span.
SPAN_SHAPES = (InputShape.message, InputShape.input_output, InputShape.rag, InputShape.tools)


class SpanTarget(BaseModel):
    """Which spans of a trace a metric judges, one verdict each (e.g. ``{span_kind: tool}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    span_kind: str

    @model_validator(mode="after")
    def _check(self) -> "SpanTarget":
        if self.span_kind not in SPAN_KINDS:
            raise ValueError(f"span_kind '{self.span_kind}' is not one of {list(SPAN_KINDS)}")
        return self


class MetricSpec(BaseModel):
    """A judge metric: name, output type, input shape and judge prompt template.

    The template uses ``{input}``, ``{output}``, ``{context}`` and ``{tools}`` placeholders;
    other braces (JSON examples) are left as they are.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$", max_length=64)
    description: str = ""
    output: Literal["boolean", "categorical"] = "boolean"
    labels: tuple[str, ...] = BOOLEAN_LABELS
    shape: InputShape = InputShape.message
    prompt: str
    label_descriptions: dict[str, str] = Field(default_factory=dict)
    # Word the decoder reads for each label; its first token must differ between labels.
    verbalizers: dict[str, str] = Field(default_factory=dict)
    # The label that counts as a failing verdict (boolean: "true" means the problem is present).
    positive_label: str | None = None
    severity: Literal["low", "medium", "high"] = "medium"
    # None: one verdict per trace (or session); a SpanTarget: one verdict per matching span.
    target: SpanTarget | None = None

    @field_validator("target", mode="before")
    @classmethod
    def _target_shorthand(cls, v: Any) -> Any:
        return {"span_kind": v} if isinstance(v, str) else v  # ``target: tool`` = ``target: {span_kind: tool}``

    @model_validator(mode="after")
    def _check(self) -> "MetricSpec":
        if self.output == "boolean" and tuple(self.labels) != BOOLEAN_LABELS:
            raise ValueError(
                f"a boolean metric has labels ['true', 'false'], not {list(self.labels)}; "
                "use output: categorical for other label sets"
            )
        if self.output == "categorical":
            if len(self.labels) < 2:
                raise ValueError("a categorical metric needs at least two labels")
            if len(set(self.labels)) != len(self.labels):
                raise ValueError(f"labels repeat: {list(self.labels)}")
        unknown = set(self.label_descriptions) | set(self.verbalizers)
        unknown -= set(self.labels)
        if unknown:
            raise ValueError(f"descriptions/verbalizers name unknown labels {sorted(unknown)}")
        if self.positive_label is not None and self.positive_label not in self.labels:
            raise ValueError(f"positive_label '{self.positive_label}' is not one of {list(self.labels)}")
        if self.shape == InputShape.pairwise and not set(PAIR_LABELS) <= set(self.labels):
            raise ValueError(f"a pairwise metric has the labels 'a' and 'b' (and e.g. 'tie'), not {list(self.labels)}")
        if self.target is not None and self.shape not in SPAN_SHAPES:
            raise ValueError(f"a span-targeted metric reads one span: its shape is one of "
                             f"{[x.value for x in SPAN_SHAPES]}, not '{self.shape.value}'")
        used = set(_PLACEHOLDER.findall(self.prompt))
        if not used:
            raise ValueError(
                "the prompt uses none of the placeholders {input}, {output}, {output_b}, {context}, {tools}"
            )
        missing = [f for f in REQUIRED_FIELDS[self.shape] if f not in used]
        if missing:
            raise ValueError(
                f"shape '{self.shape.value}' judges {list(REQUIRED_FIELDS[self.shape])} "
                f"but the prompt has no {{{missing[0]}}} placeholder"
            )
        return self

    # --- derived -------------------------------------------------------------------------
    @property
    def is_binary(self) -> bool:
        return len(self.labels) == 2

    @property
    def positive(self) -> str:
        """The label scored as P(positive); 'true' for boolean metrics."""
        return self.positive_label or self.labels[0]

    @property
    def fields(self) -> tuple[str, ...]:
        """Row fields the prompt reads."""
        return tuple(f for f in PLACEHOLDERS if "{" + f + "}" in self.prompt)

    def swap_permutation(self) -> list[int] | None:
        """Pairwise: label index i of the swapped pair (B, A) is label ``perm[i]`` of (A, B); else None."""
        if self.shape != InputShape.pairwise:
            return None
        labels = list(self.labels)
        swap = {"a": "b", "b": "a"}
        return [labels.index(swap.get(lab, lab)) for lab in labels]

    def verbalizer(self, label: str) -> str:
        """The word (with a leading space) the decoder's next token stands for."""
        word = self.verbalizers.get(label, label)
        return word if word.startswith(" ") else " " + word

    # --- io ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["labels"] = list(self.labels)
        if self.target is None:  # trace-level metrics keep the dict (and hashes) they always had
            data.pop("target")
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


def metric_from_dict(data: dict[str, Any], source: str = "metric") -> MetricSpec:
    """Build a MetricSpec, turning validation problems into one clear AssayError."""
    if not isinstance(data, dict):
        raise AssayError(
            f"{source} to be a mapping with name, output, shape and prompt",
            f"a {type(data).__name__}",
            "write the metric as YAML keys (see `assay presets` for examples)",
            code="invalid_metric",
        )
    try:
        return MetricSpec(**data)
    except ValidationError as exc:
        raise invalid(exc, f"a valid {{where}} in {source}", lambda p: _fix_for(p.where), found="{msg}",
                      code="invalid_metric", top="metric") from None


def _fix_for(where: str) -> str:
    return {
        "name": "use lowercase letters, digits, '_' or '-' (at most 64 characters)",
        "output": "set output to 'boolean' or 'categorical'",
        "shape": "set shape to one of " + ", ".join(s.value for s in InputShape),
        "prompt": "write a prompt template that uses the shape's placeholders, e.g. {input}",
        "target": "write target as {span_kind: KIND} with KIND one of " + ", ".join(SPAN_KINDS)
                  + ", or leave it out to judge whole traces",
        "target.span_kind": "set target.span_kind to one of " + ", ".join(SPAN_KINDS),
    }.get(where, "correct that field of the metric (see `assay presets` for examples)")

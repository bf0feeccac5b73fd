"""One error type for everything a user can get wrong.

Every message answers three questions on one line: what was expected, what was found,
and how to fix it. The CLI prints ``error: <message>`` and exits 2; the REST API wraps
the same fields in its JSON error shape.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Union


class AssayError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    def __init__(self, expected: str, found: str, fix: str, *, code: str = "invalid_input"):
        self.expected = expected
        self.found = found
        self.fix = fix
        self.code = code
        super().__init__(f"expected {expected}; found {found}. Fix: {fix}")

    def to_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "message": str(self),
            "expected": self.expected,
            "found": self.found,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class Problem:
    """The first problem a pydantic ``ValidationError`` lists, in the words of an AssayError line."""

    where: str  # the dotted key path (see :func:`invalid` for ``top``, ``under`` and ``skip``)
    msg: str  # pydantic's message, less its "Value error, " prefix
    what: str  # msg, or "an unknown key '<where>'" for a stray key and "no '<where>'" for a missing one
    input: str  # the value found, as JSON, at most 80 characters
    kind: str  # pydantic's error type ("missing", "extra_forbidden", ...)
    loc: tuple[Any, ...]  # pydantic's full key path


Text = Union[str, Callable[[Problem], str]]
_SLOT = re.compile(r"\{(where|what|msg|input)\}")


def invalid(exc: Any, expected: Text, fix: Text, *, found: Text = "{what}", code: str = "invalid_input",
            top: str = "value", under: str | None = None, skip: int = 0) -> AssayError:
    """The one conversion of a pydantic ``ValidationError`` (anything with ``.errors()``) into an AssayError.

    The first problem it lists becomes one line: ``expected``, ``found`` and ``fix`` are text in which
    ``{where}``, ``{what}``, ``{msg}`` and ``{input}`` name it (see :class:`Problem`), or functions of the
    :class:`Problem`. ``{where}`` is pydantic's key path less its first ``skip`` parts, below ``under`` (a
    model read from under one key), or ``top`` at the top level. Raise it ``from None``.
    """
    err = (exc.errors() or [{}])[0]
    loc = tuple(err.get("loc", ()))
    where = ".".join(str(p) for p in ([under] if under else []) + list(loc[skip:])) or top
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    kind = str(err.get("type", ""))
    what = {"extra_forbidden": f"an unknown key '{where}'", "missing": f"no '{where}'"}.get(kind, msg)
    problem = Problem(where, msg, what, json.dumps(err.get("input"), default=str)[:80], kind, loc)

    def fill(text: Text) -> str:
        return text(problem) if callable(text) else _SLOT.sub(lambda m: getattr(problem, m[1]), text)

    return AssayError(fill(expected), fill(found), fill(fix), code=code)


class MissingDependency(AssayError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, feature: str, extra: str | None = None):
        hint = f"pip install 'assay[{extra}]'" if extra else f"pip install {package}"
        super().__init__(
            expected=f"the package '{package}' for {feature}",
            found="it is not installed",
            fix=hint,
            code="missing_dependency",
        )


def require(module: str, feature: str, extra: str | None = None, package: str | None = None):
    """Import ``module`` lazily, or raise a MissingDependency with a pip hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only when missing
        raise MissingDependency(package or module.split(".")[0], feature, extra) from exc


class Cancelled(Exception):
    """A run or training stopped because it was asked to (``should_stop()``, a cancelled run): the one
    class the trainer raises and the worker recognises (``assay.train.Cancelled`` and
    ``assay.registry.Cancelled`` are this class)."""

"""One error type for everything a user can get wrong.

Every message answers three questions on one line: what was expected, what was found,
and how to fix it. The CLI prints ``error: <message>`` and exits 2; the REST API wraps
the same fields in its JSON error shape.
"""

from __future__ import annotations


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

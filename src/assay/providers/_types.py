"""Value types shared by every provider: usage, completions, judgments, run statistics."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import AssayError


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class Completion:
    """One answer from a model. ``logprobs``: top alternatives per output token, when the API gives them."""

    text: str
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    cached: bool = False
    cost_usd: float = 0.0
    logprobs: list[dict[str, float]] | None = None  # one {token: logprob} per position
    finish_reason: str | None = None


@dataclass
class Judgment:
    """The judge's verdict on one row. ``label`` is None when the answer could not be parsed."""

    label: str | None
    probabilities: dict[str, float] | None = None  # from logprobs when available
    text: str = ""
    error: str | None = None  # "unparseable: ..." or "failed: ..."
    usage: Usage = field(default_factory=Usage)
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.label is not None

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "probabilities": self.probabilities, "text": self.text[:500],
                "error": self.error, "cached": self.cached}


class ProviderError(AssayError):
    """A request that failed for good (after retries, or a non-retryable status).

    An AssayError, so it reads as one line (expected; found. Fix:) and the CLI prints it
    without a traceback. ``found`` is what went wrong; ``status`` the HTTP status, if any.
    """

    def __init__(self, found: str, *, status: int | None = None, fatal: bool = False,
                 expected: str = "an answer from the LLM provider",
                 fix: str = "check the provider settings (model, base_url, key) and try again"):
        super().__init__(expected, found, fix, code="provider_error")
        self.status = status
        self.fatal = fatal  # bad key, unknown model: every request would fail, so the run stops


class RetryableError(Exception):
    """A failure worth another try: 429, 5xx, a timeout, a lost connection, a malformed body."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class Stats:
    """Counters for one provider over one run (thread-safe)."""

    FIELDS = ("requests", "cache_hits", "retries", "failures", "input_tokens", "output_tokens")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0  # HTTP requests sent (every attempt counts)
        self.cache_hits = 0
        self.retries = 0
        self.failures = 0  # calls that failed for good
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd = 0.0
        self.saved_usd = 0.0  # what the cache hits would have cost
        self.retry_reasons: dict[str, int] = {}
        self.priced = True

    def add(self, **kw: Any) -> None:
        with self._lock:
            for k, v in kw.items():
                if k == "retry_reason":
                    self.retry_reasons[v] = self.retry_reasons.get(v, 0) + 1
                else:
                    setattr(self, k, getattr(self, k) + v)

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            d: dict[str, Any] = {k: getattr(self, k) for k in self.FIELDS}
            d["cost_usd"] = round(self.cost_usd, 6)
            d["saved_by_cache_usd"] = round(self.saved_usd, 6)
            d["retry_reasons"] = dict(self.retry_reasons)
            d["priced"] = self.priced
            return d

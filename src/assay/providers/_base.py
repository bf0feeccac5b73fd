"""The provider interface and the machinery every provider shares.

A provider turns a request payload into a raw response (``_send``) and a raw response into
a Completion (``_parse``). This base class adds the rest: the SQLite cache (a cached request
is never sent), retries with exponential backoff and Retry-After, token and dollar
accounting, a concurrency limit for batches, and the judge on top of ``generate``.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from ..metrics import MetricSpec, render
from ._cache import RequestCache, open_cache, request_key
from ._parse import label_probabilities, parse_label
from ._prices import PriceTable
from ._types import Completion, Judgment, ProviderError, RetryableError, Stats, Usage

T = TypeVar("T")
R = TypeVar("R")

JUDGE_SYSTEM = ("You are a careful evaluator. Answer with the label only (one word), "
                "optionally followed by one short sentence of rationale.")


class Provider:
    """An LLM reachable as ``<name>/<model>``. Subclasses implement ``_payload``, ``_send``, ``_parse``."""

    name = "base"
    supports_logprobs = False

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        cache: RequestCache | str | Path | None = None,
        prices: PriceTable | Mapping[str, Any] | None = None,
        concurrency: int = 4,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        temperature: float | None = None,
        max_tokens: int | None = None,
        options: Mapping[str, Any] | None = None,
        key_env: str | None = None,
    ):
        self.model = model
        self.base_url = base_url
        self.api_key = api_key
        self.cache = open_cache(cache) if isinstance(cache, (str, Path)) else cache
        self.prices = prices if isinstance(prices, PriceTable) else PriceTable(prices)
        self.concurrency = max(1, int(concurrency))
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.options = dict(options or {})
        self.key_env = key_env  # the env variable the key comes from, named in key errors
        self.stats = Stats()
        # At most ``concurrency`` requests in flight, however many threads call this provider.
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self.stats.priced = self.prices.price(self.id) is not None
        self._sleep: Callable[[float], None] = time.sleep

    @property
    def id(self) -> str:
        return f"{self.name}/{self.model}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"

    # --- subclass hooks -----------------------------------------------------------------
    def _payload(self, messages: list[dict[str, str]], *, max_tokens: int | None, temperature: float | None,
                 seed: int | None, logprobs: int) -> dict[str, Any]:
        raise NotImplementedError

    def _send(self, payload: dict[str, Any]) -> Any:
        """One attempt; raise RetryableError or ProviderError on failure."""
        raise NotImplementedError

    def _parse(self, raw: Any) -> Completion:
        """A Completion from a raw response; raise RetryableError when the body is malformed."""
        raise NotImplementedError

    # --- generate ------------------------------------------------------------------------
    def generate(self, prompt: str, *, system: str | None = None, max_tokens: int | None = None,
                 temperature: float | None = None, seed: int | None = None, logprobs: int = 0) -> Completion:
        """Complete ``prompt`` (a user message). Cached, retried, counted."""
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        payload = self._payload(
            messages,
            max_tokens=max_tokens or self.max_tokens,
            temperature=self.temperature if temperature is None else temperature,
            seed=seed,
            logprobs=logprobs if self.supports_logprobs else 0,
        )
        return self._call(payload)

    def _call(self, payload: dict[str, Any]) -> Completion:
        key = request_key(self.name, self.base_url, self.model, payload)
        if self.cache is not None:
            raw = self.cache.get(key)
            if raw is not None:
                comp = self._parse(raw)
                comp.cached = True
                saved = self.prices.cost(self.id, comp.usage) or 0.0
                self.stats.add(cache_hits=1, saved_usd=saved)
                return comp
        attempt = 0
        while True:
            self.stats.add(requests=1)
            try:
                with self._slots:
                    raw = self._send(payload)
                comp = self._parse(raw)
                break
            except RetryableError as exc:
                if attempt >= self.max_retries:
                    self.stats.add(failures=1)
                    where = f" at {self.base_url}" if self.base_url else ""
                    raise ProviderError(
                        f"{exc} (after {attempt + 1} attempts)", status=exc.status,
                        expected=f"an answer from {self.id}{where}",
                        fix="check that the server is up; raise timeout or max_retries, or lower concurrency",
                    ) from None
                reason = str(exc.status) if (exc.status or 0) >= 400 else str(exc).split(":")[0]
                self.stats.add(retries=1, retry_reason=reason)
                self._sleep(self._delay(attempt, exc.retry_after))
                attempt += 1
            except ProviderError:
                self.stats.add(failures=1)
                raise
        cost = self.prices.cost(self.id, comp.usage)
        comp.cost_usd = cost or 0.0
        self.stats.add(input_tokens=comp.usage.input_tokens, output_tokens=comp.usage.output_tokens,
                       cost_usd=comp.cost_usd)
        if self.cache is not None:
            self.cache.put(key, self.name, self.model, payload, raw, comp.usage.input_tokens,
                           comp.usage.output_tokens)
        return comp

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_backoff)
        base = self.backoff * (2 ** attempt)
        return min(self.max_backoff, base * (0.5 + random.random() / 2))

    # --- judge ---------------------------------------------------------------------------
    def judge_prompt(self, metric: MetricSpec, row: Mapping[str, Any]) -> str:
        return render(metric, row)

    def judge(self, metric: MetricSpec, row: Mapping[str, Any], *, max_tokens: int | None = None) -> Judgment:
        """The metric's judge prompt on ``row``: label, and probabilities when logprobs exist.

        A failed request or an answer that names no label gives ``label=None`` with ``error``
        set; it never raises (except for fatal errors such as a bad key).
        """
        try:
            comp = self._judge_completion(metric, row, max_tokens or self.options.get("judge_max_tokens") or 16)
        except ProviderError as exc:
            if exc.fatal:
                raise
            return Judgment(label=None, error=f"failed: {exc}")
        label = parse_label(comp.text, metric)
        probs = label_probabilities(comp.logprobs, metric)
        if probs and label is not None and max(probs, key=probs.get) != label:  # type: ignore[arg-type]
            probs = None  # the probabilities describe another position than the parsed word
        err = None if label is not None else f"unparseable: {comp.text.strip()[:120]!r}"
        return Judgment(label=label, probabilities=probs, text=comp.text, error=err, usage=comp.usage,
                        cached=comp.cached)

    def _judge_completion(self, metric: MetricSpec, row: Mapping[str, Any], max_tokens: int) -> Completion:
        return self.generate(self.judge_prompt(metric, row), system=JUDGE_SYSTEM, max_tokens=max_tokens,
                             temperature=0.0, seed=0, logprobs=10)

    # --- batches -------------------------------------------------------------------------
    def map(self, fn: Callable[[T], R], items: Sequence[T], on_done: Callable[[int, R | Exception], None] | None = None,
            ) -> list[R | Exception]:
        """``fn`` over ``items`` with at most ``concurrency`` in flight; results in order.

        A per-item ProviderError is returned in place of the result; a fatal one (bad key)
        stops the batch and is raised.
        """
        results: list[Any] = [None] * len(items)

        def one(i: int) -> None:
            try:
                results[i] = fn(items[i])
            except ProviderError as exc:
                if exc.fatal:
                    raise
                results[i] = exc
            if on_done is not None:
                on_done(i, results[i])

        if self.concurrency == 1 or len(items) <= 1:
            for i in range(len(items)):
                one(i)
            return results
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(one, i) for i in range(len(items))]
            try:
                for f in futures:
                    f.result()
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        return results

    def judge_many(self, metric: MetricSpec, rows: Iterable[Mapping[str, Any]],
                   on_done: Callable[[int, Judgment], None] | None = None) -> list[Judgment]:
        rows = list(rows)
        return self.map(lambda r: self.judge(metric, r), rows, on_done)  # type: ignore[return-value]

    def close(self) -> None:
        """Release connections (the cache stays open for other providers)."""


def usage_from(d: Mapping[str, Any] | None, in_key: str, out_key: str) -> Usage:
    d = d or {}
    return Usage(int(d.get(in_key) or 0), int(d.get(out_key) or 0))

"""JSON over HTTP with httpx (the ``providers`` extra): status codes become retryable or final errors."""

from __future__ import annotations

import email.utils
import threading
import time
from typing import Any, Mapping

from ..errors import require
from ._types import ProviderError, RetryableError

RETRY_STATUS = {408, 409, 425, 429}
FATAL_STATUS = {401, 403, 404}


class HttpMixin:
    """``_post(url, payload, headers)`` for providers; one httpx client per provider object."""

    timeout: float
    id: str

    def _client(self) -> Any:
        lock = self.__dict__.setdefault("_client_lock", threading.Lock())
        with lock:
            client = self.__dict__.get("_httpx_client")
            if client is None:
                httpx = require("httpx", "calling LLM providers over HTTP", extra="providers")
                client = httpx.Client(timeout=self.timeout, follow_redirects=True)
                self.__dict__["_httpx_client"] = client
            return client

    def close(self) -> None:
        client = self.__dict__.pop("_httpx_client", None)
        if client is not None:
            client.close()

    def _post(self, url: str, payload: Mapping[str, Any], headers: Mapping[str, str]) -> Any:
        httpx = require("httpx", "calling LLM providers over HTTP", extra="providers")
        try:
            resp = self._client().post(url, json=payload, headers=dict(headers), timeout=self.timeout)
        except httpx.TimeoutException as exc:
            raise RetryableError(f"timeout: no answer from {url} within {self.timeout:g}s ({type(exc).__name__})")
        except httpx.TransportError as exc:
            raise RetryableError(f"connection: {type(exc).__name__}: {exc}")
        status = resp.status_code
        body = " ".join(resp.text[:300].split())
        if status in RETRY_STATUS or status >= 500:
            raise RetryableError(f"{status}: {body}", retry_after=retry_after(resp.headers), status=status)
        if status in (401, 403):
            env = getattr(self, "key_env", None) or "the provider's API key variable"
            raise ProviderError(f"HTTP {status} from {url}: {body}", status=status, fatal=True,
                                expected=f"an API key that {self.id} accepts",
                                fix=f"set {env} to a valid key (or the api_key in $ASSAY_HOME/providers.yaml)")
        if status == 404:
            raise ProviderError(f"HTTP 404 from {url}: {body}", status=status, fatal=True,
                                expected=f"the model '{getattr(self, 'model', '?')}' served at {url}",
                                fix="check the model name and base_url (OpenAI-compatible servers end in /v1)")
        if status >= 400:
            raise ProviderError(f"HTTP {status} from {url}: {body}", status=status,
                                expected=f"a request that {self.id} accepts",
                                fix="check the model's options (max_tokens, temperature, extra_body)")
        try:
            return resp.json()
        except ValueError:
            raise RetryableError(f"malformed: the response is not JSON: {body[:80]!r}", status=status) from None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())

"""Anthropic Messages API over HTTP (no SDK needed). No logprobs: the judge parses the text."""

from __future__ import annotations

from typing import Any

from ._base import Provider, usage_from
from ._http import HttpMixin
from ._types import Completion, RetryableError

API_VERSION = "2023-06-01"


class AnthropicProvider(HttpMixin, Provider):
    """``POST {base_url}/v1/messages``. options: ``extra_body``, ``anthropic_version``."""

    name = "anthropic"
    supports_logprobs = False

    def _payload(self, messages, *, max_tokens, temperature, seed, logprobs):  # type: ignore[override]
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        p: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens or 1024,
            "messages": [m for m in messages if m["role"] != "system"],
        }
        if system:
            p["system"] = system
        if temperature is not None:
            p["temperature"] = min(float(temperature), 1.0)
        p.update(self.options.get("extra_body") or {})
        return p

    def _send(self, payload: dict[str, Any]) -> Any:
        headers = {"content-type": "application/json",
                   "anthropic-version": self.options.get("anthropic_version", API_VERSION)}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        return self._post(f"{self.base_url}/v1/messages", payload, headers)

    def _parse(self, raw: Any) -> Completion:
        try:
            blocks = raw["content"]
            text = "".join(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")
        except (KeyError, TypeError, AttributeError) as exc:
            raise RetryableError(f"malformed: no content blocks in the response ({exc})") from None
        return Completion(text=text, usage=usage_from(raw.get("usage"), "input_tokens", "output_tokens"),
                          model=str(raw.get("model") or self.model), finish_reason=raw.get("stop_reason"))

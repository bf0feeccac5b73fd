"""OpenAI-compatible chat completions: OpenAI, vLLM, llama.cpp server, Ollama, LM Studio, Together..."""

from __future__ import annotations

from typing import Any

from ._base import Provider, usage_from
from ._http import HttpMixin
from ._types import Completion, ProviderError, RetryableError


class OpenAIProvider(HttpMixin, Provider):
    """``POST {base_url}/chat/completions``; per-token top logprobs when the server gives them.

    options: ``extra_body`` (merged into every request), ``max_tokens_field``
    (``max_completion_tokens`` for models that need it), ``logprobs`` (False to never ask).
    """

    name = "openai"
    supports_logprobs = True

    def __init__(self, model: str, *, provider_name: str = "openai", **kw: Any):
        super().__init__(model, **kw)
        self.name = provider_name
        if self.options.get("logprobs") is False:
            self.supports_logprobs = False

    def _payload(self, messages, *, max_tokens, temperature, seed, logprobs):  # type: ignore[override]
        p: dict[str, Any] = {"model": self.model, "messages": messages}
        if max_tokens:
            p[self.options.get("max_tokens_field", "max_tokens")] = max_tokens
        if temperature is not None:
            p["temperature"] = temperature
        if seed is not None:
            p["seed"] = seed
        if logprobs:
            p["logprobs"] = True
            p["top_logprobs"] = min(int(logprobs), 20)
        p.update(self.options.get("extra_body") or {})
        return p

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h

    def _send(self, payload: dict[str, Any]) -> Any:
        url = f"{self.base_url}/chat/completions"
        try:
            return self._post(url, payload, self._headers())
        except ProviderError as exc:
            # Some compatible servers reject logprobs: ask once more without them.
            if exc.status == 400 and payload.get("logprobs") and "logprob" in exc.found.lower():
                plain = {k: v for k, v in payload.items() if k not in ("logprobs", "top_logprobs")}
                return self._post(url, plain, self._headers())
            raise

    def _parse(self, raw: Any) -> Completion:
        try:
            choice = raw["choices"][0]
            msg = choice.get("message") or {}
            text = msg.get("content")
            if text is None:
                text = msg.get("refusal") or choice.get("text") or ""
            if not isinstance(text, str):
                raise TypeError("content is not text")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise RetryableError(f"malformed: no choices[0].message.content in the response ({exc})") from None
        return Completion(
            text=text,
            usage=usage_from(raw.get("usage"), "prompt_tokens", "completion_tokens"),
            model=str(raw.get("model") or self.model),
            logprobs=_top_logprobs(choice.get("logprobs")),
            finish_reason=choice.get("finish_reason"),
        )


def _top_logprobs(lp: Any) -> list[dict[str, float]] | None:
    if not isinstance(lp, dict):
        return None
    content = lp.get("content")
    out: list[dict[str, float]] = []
    if isinstance(content, list):
        for pos in content:
            d: dict[str, float] = {}
            for alt in pos.get("top_logprobs") or []:
                if isinstance(alt, dict) and "token" in alt and alt.get("logprob") is not None:
                    d[str(alt["token"])] = float(alt["logprob"])
            if pos.get("token") is not None and pos.get("logprob") is not None:
                d.setdefault(str(pos["token"]), float(pos["logprob"]))
            out.append(d)
    elif isinstance(lp.get("top_logprobs"), list):  # legacy completions shape
        out = [{str(k): float(v) for k, v in (d or {}).items()} for d in lp["top_logprobs"]]
    return out or None

"""Where keys, base URLs and prices come from: the environment, then ``$ASSAY_HOME/providers.yaml``.

The org-level file (default ``~/.assay/providers.yaml``)::

    providers:
      openai: {api_key: sk-..., base_url: https://api.openai.com/v1}
      together: {api_key: ..., base_url: https://api.together.xyz/v1}
    prices:            # dollars per million tokens; globs allowed
      openai/gpt-4o-mini: {input: 0.15, output: 0.60}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


from .._files import assay_home, read_yaml
from ..errors import AssayError

# OpenAI-compatible services with a well-known endpoint (any other needs base_url).
KNOWN_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "together": "https://api.together.xyz/v1",
    "fireworks": "https://api.fireworks.ai/inference/v1",
    "groq": "https://api.groq.com/openai/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "mistral": "https://api.mistral.ai/v1",
    "ollama": "http://127.0.0.1:11434/v1",
    "lmstudio": "http://127.0.0.1:1234/v1",
    "vllm": "http://127.0.0.1:8000/v1",
    "llamacpp": "http://127.0.0.1:8080/v1",
}
LOCAL = ("ollama", "lmstudio", "vllm", "llamacpp")


def default_cache_path() -> Path:
    return assay_home() / "cache.db"


def org_config() -> dict[str, Any]:
    """The org-level provider file, or {} when there is none."""
    path = assay_home() / "providers.yaml"
    if not path.exists():
        return {}
    data = read_yaml(path, "the provider settings", f"fix {path}") or {}
    if not isinstance(data, dict):
        raise AssayError("a mapping with 'providers' and 'prices'", f"a {type(data).__name__} in {path}",
                         f"fix {path}", code="invalid_config")
    return data


def _provider_entry(provider: str) -> dict[str, Any]:
    entry = (org_config().get("providers") or {}).get(provider) or {}
    return entry if isinstance(entry, dict) else {}


def env_name(provider: str, what: str) -> str:
    return f"{provider.upper().replace('-', '_')}_{what}"


def api_key(provider: str, env_var: str | None = None) -> str | None:
    """The key: ``env_var``, else ``<PROVIDER>_API_KEY``, else the org file; None when there is none."""
    for name in (env_var, env_name(provider, "API_KEY")):
        if name and os.environ.get(name):
            return os.environ[name]
    key = _provider_entry(provider).get("api_key")
    return str(key) if key else None


def base_url(provider: str, explicit: str | None = None) -> str | None:
    """The endpoint: explicit, else ``<PROVIDER>_BASE_URL``, else the org file, else a known default."""
    url = explicit or os.environ.get(env_name(provider, "BASE_URL")) or _provider_entry(provider).get("base_url")
    url = url or KNOWN_BASE_URLS.get(provider)
    return str(url).rstrip("/") if url else None


def org_prices() -> dict[str, Any]:
    prices = org_config().get("prices") or {}
    return prices if isinstance(prices, dict) else {}

"""Provider lookup by ``provider/model`` name; implementations are imported lazily.

``openai`` and ``anthropic`` have their own classes, ``mock`` is the test double, and any other
prefix (together, groq, vllm, llamacpp, ollama, or a name of your own with ``base_url``) is an
OpenAI-compatible endpoint. Third-party packages can add providers through the
``assay.providers`` entry-point group (name -> a Provider subclass).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ..errors import AssayError
from ._base import Provider
from ._prices import PriceTable
from ._settings import KNOWN_BASE_URLS, LOCAL, api_key, base_url, default_cache_path, env_name, org_prices

_BUILTIN = {
    "openai": "assay.providers._openai:OpenAIProvider",
    "anthropic": "assay.providers._anthropic:AnthropicProvider",
    "mock": "assay.providers._mock:MockProvider",
}


def split_name(name: str) -> tuple[str, str]:
    provider, sep, model = name.partition("/")
    if not sep or not provider or not model:
        raise AssayError("a model named provider/model, e.g. openai/gpt-4o-mini", f"'{name}'",
                         "prefix the model with its provider (openai, anthropic, mock, or any "
                         "OpenAI-compatible name with base_url)", code="invalid_config")
    return provider.lower(), model


def _load(path: str) -> type[Provider]:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _plugin(provider: str) -> type[Provider] | None:
    try:
        from importlib.metadata import entry_points

        for ep in entry_points(group="assay.providers"):
            if ep.name == provider:
                return ep.load()
    except Exception:  # pragma: no cover - a broken plugin must not break built-in providers
        return None
    return None


def get_provider(name: str, *, base_url_: str | None = None, api_key_env: str | None = None,
                 cache: Any = True, prices: Any = None, **kw: Any) -> Provider:
    """A provider for ``name`` (``provider/model``).

    ``cache``: True for ``$ASSAY_HOME/cache.db``, a path, or False/None for none.
    ``prices``: overrides of the price table ({"openai/gpt-4o-mini": {input: .., output: ..}}).
    Other keyword arguments go to the Provider (concurrency, timeout, max_retries, options, ...).
    """
    provider, model = split_name(name)
    table = PriceTable({**org_prices(), **dict(prices or {})})
    cache_arg = default_cache_path() if cache is True else (cache or None)
    if provider in _BUILTIN:
        cls = _load(_BUILTIN[provider])
    else:
        cls = _plugin(provider) or _load(_BUILTIN["openai"])
        if cls.__name__ == "OpenAIProvider":
            kw["provider_name"] = provider
    url = base_url(provider, base_url_)
    key = api_key(provider, api_key_env)
    if provider != "mock":
        if url is None:
            known = ", ".join(sorted({*_BUILTIN, *KNOWN_BASE_URLS}))
            raise AssayError(f"a known provider ({known}) or a base_url for the OpenAI-compatible "
                             f"provider '{provider}'", "no base_url",
                             f"set base_url in the config or {env_name(provider, 'BASE_URL')}; providers from "
                             "plugins register under the 'assay.providers' entry point", code="invalid_config")
        hosted = provider not in LOCAL and url == KNOWN_BASE_URLS.get(provider)
        if key is None and hosted:
            env = api_key_env or env_name(provider, "API_KEY")
            raise AssayError(f"an API key for {provider}", "none in the environment or $ASSAY_HOME/providers.yaml",
                             f"export {env}=... (or add providers.{provider}.api_key to providers.yaml)",
                             code="missing_key")
    kw.setdefault("key_env", api_key_env or env_name(provider, "API_KEY"))
    return cls(model, base_url=url, api_key=key, cache=cache_arg, prices=table, **kw)


def provider_from_config(cfg: Any, base_dir: str | Path | None = None) -> Provider:
    """A provider from a ``ProviderConfig`` (``generate:`` or ``judge:`` in the run config).

    A relative cache path is resolved against ``base_dir`` (the config file's folder).
    """
    cache = cfg.cache
    if isinstance(cache, str) and base_dir is not None and not Path(cache).expanduser().is_absolute():
        cache = str(Path(base_dir) / cache)
    return get_provider(
        cfg.model, base_url_=cfg.base_url, api_key_env=cfg.api_key_env, cache=cache,
        prices={k: (v.model_dump() if hasattr(v, "model_dump") else v) for k, v in cfg.prices.items()},
        concurrency=cfg.concurrency, timeout=cfg.timeout, max_retries=cfg.max_retries,
        backoff=cfg.backoff, max_backoff=cfg.max_backoff,
        temperature=cfg.temperature, max_tokens=cfg.max_tokens, options=cfg.options,
    )

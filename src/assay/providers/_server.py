"""Named providers for the server: the operator declares them, API and UI callers pick one by name.

A caller of the REST API or the web UI never sets where requests go or which key they carry:
``base_url``, ``api_key_env``, a cache path, or any file path in a ``judge:``/``generate:``
config is refused (HTTP 400, code ``provider_not_allowed``). The operator's file (``assay serve
--providers FILE``, or ``$ASSAY_SERVER_CONFIG``)::

    providers:
      teacher:                          # the name callers use: judge: teacher
        model: openai/gpt-4o-mini
        api_key_env: OPENAI_API_KEY     # read from the server's environment
      local-llm:
        model: llamacpp/smollm2
        base_url: http://127.0.0.1:8080/v1
    allow_mock: true                    # mock/<anything> stays available (tests, demos); default true

A caller writes ``judge: teacher`` or ``judge: {model: teacher, temperature: 0}``; tuning fields
(concurrency, timeout, retries, temperature, max_tokens, prices and, for ``generate:``, the
generation settings) stay the caller's. The command line keeps full control for a local user:
none of this applies to ``assay train`` or ``assay label``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping


from ..errors import AssayError

ENV = "ASSAY_SERVER_CONFIG"
# What a caller may never set: where requests go, which secret they carry, files on the server.
FORBIDDEN = ("base_url", "api_key_env", "api_key", "output")
OPERATOR_FIELDS = ("model", "base_url", "api_key_env", "concurrency", "timeout", "max_retries", "prices", "options")


def _refuse(where: str, found: str, fix: str) -> AssayError:
    return AssayError(f"a provider chosen by name in {where} (the server's operator sets endpoints, keys and files)",
                      found, fix, code="provider_not_allowed")


class ServerProviders:
    """The providers a server's callers may use, by name."""

    def __init__(self, providers: Mapping[str, Mapping[str, Any]] | None = None, *, allow_mock: bool = True,
                 source: str = "the server config"):
        self.source = source
        self.allow_mock = allow_mock
        self.providers: dict[str, dict[str, Any]] = {}
        for name, entry in (providers or {}).items():
            if isinstance(entry, str):
                entry = {"model": entry}
            if not isinstance(entry, Mapping) or not isinstance(entry.get("model"), str) or "/" not in entry["model"]:
                raise AssayError(f"providers.{name} with model: provider/model", f"{entry!r} in {source}",
                                 f"fix providers.{name} in {source}", code="invalid_config")
            unknown = set(entry) - set(OPERATOR_FIELDS) - {"cache"}
            if unknown:
                raise AssayError(f"providers.{name} fields among {list(OPERATOR_FIELDS)}", f"{sorted(unknown)}",
                                 f"fix providers.{name} in {source}", code="invalid_config")
            self.providers[str(name)] = dict(entry)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> "ServerProviders":
        from .._files import read_yaml

        p = Path(path).expanduser()
        data = read_yaml(p, "a server provider file (--providers)") or {}
        if not isinstance(data, Mapping) or not isinstance(data.get("providers", {}), Mapping):
            raise AssayError("a mapping with 'providers: {name: {model, base_url, api_key_env}}'",
                             f"{type(data).__name__} in {p}", f"fix {p}", code="invalid_config")
        return cls(data.get("providers") or {}, allow_mock=bool(data.get("allow_mock", True)), source=str(p))

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> "ServerProviders":
        """From ``path``, else ``$ASSAY_SERVER_CONFIG``, else none declared (only mock/...)."""
        path = path or os.environ.get(ENV)
        return cls.from_file(path) if path else cls(source="no server provider file")

    def names(self) -> list[str]:
        return sorted(self.providers) + (["mock/<name>"] if self.allow_mock else [])

    def resolve(self, value: Any, where: str, *, generate: bool = False) -> dict[str, Any]:
        """A caller's ``judge:``/``generate:`` value -> the provider config the server runs with."""
        if isinstance(value, str):
            value = {"model": value}
        if not isinstance(value, Mapping):
            raise _refuse(where, f"a {type(value).__name__}", "send the provider's name, e.g. judge: teacher")
        value = dict(value)
        for key in FORBIDDEN:
            if value.get(key) not in (None, ""):
                raise _refuse(where, f"{where}.{key} set by the caller",
                              f"drop {key}; pick one of the server's providers by name ({', '.join(self.names())})")
        cache = value.get("cache", True)
        if not isinstance(cache, bool):
            raise _refuse(where, f"{where}.cache set to a path", "drop cache, or send cache: false")
        name = value.get("model")
        if not isinstance(name, str) or not name:
            raise _refuse(where, "no provider name", f"send {where}: <name> ({', '.join(self.names())})")
        if name in self.providers:
            entry = self.providers[name]
            if value.get("options"):
                raise _refuse(where, f"{where}.options for the server provider '{name}'",
                              "drop options: the operator sets them")
            out = {k: v for k, v in value.items() if k not in ("model", "options")}
            out.update({k: v for k, v in entry.items() if k in OPERATOR_FIELDS})
            out["cache"] = bool(entry.get("cache", True)) and cache
            return out
        if self.allow_mock and name.lower().startswith("mock/"):
            return {**value, "cache": cache}
        raise AssayError(f"one of the server's providers for {where}: {', '.join(self.names()) or 'none declared'}",
                         f"'{name}'", "pick a provider by name; the operator declares them with "
                         "`assay serve --providers FILE`", code="provider_not_allowed")

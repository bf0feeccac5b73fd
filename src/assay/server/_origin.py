"""Host and Origin checks: no DNS rebinding, no cross-site writes.

``HostOriginCheck`` (ASGI middleware, before the body limit and the key check) refuses:

- a request whose ``Host`` header names neither the bind address nor an allowed host (421
  ``unknown_host``): a page on an attacker's name that resolves to 127.0.0.1 (DNS rebinding) arrives
  with that name. Allowed: 127.0.0.1, localhost and ::1 on a loopback bind; the bound name on any
  other bind (plus the loopback names and the machine's host name on a wildcard bind, 0.0.0.0 or ::);
  an IP address the connection actually reached; and ``allowed_hosts`` (``--allowed-host``,
  ``$ASSAY_ALLOWED_HOSTS``, comma-separated; ``.example.com`` allows the domain and its subdomains).
- a POST, PUT, PATCH or DELETE whose ``Origin`` (when absent: ``Referer``) is another origin than the
  server's own (403 ``cross_origin``): browsers send ``Origin`` on every such request. A request with
  neither header (curl, ``assay.Client``, any API client) is not a browser's and passes; keys are
  checked after this as before. An ``Origin`` whose host is named in ``allowed_hosts`` (a proxy's
  public name) is the server's own too.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from typing import Any, Iterable
from urllib.parse import urlsplit

from starlette.responses import JSONResponse

from ._deps import error_body

ENV = "ASSAY_ALLOWED_HOSTS"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_HOST = re.compile(r"^(?:\[([0-9a-f:.]+)\]|([a-z0-9_.-]+))(?::(\d{1,5}))?$")
_DEFAULT_PORT = {"http": 80, "https": 443}


def split_hosts(values: Iterable[str] | str | None) -> list[str]:
    """Host names from option values or an environment variable: comma- or space-separated, lowercased,
    ports dropped (``assay.example.com:443`` is ``assay.example.com``); ``.example.com`` stays a domain."""
    if values is None:
        return []
    items = re.split(r"[,\s]+", values) if isinstance(values, str) else [p for v in values for p in re.split(r"[,\s]+", v)]
    out = []
    for item in filter(None, (i.strip().lower() for i in items)):
        name = _config_name(item.lstrip("."))
        if name is None:
            raise ValueError(f"not a host name: {item!r}")
        out.append("." * item.startswith(".") + name)
    return out


def _config_name(value: str) -> str | None:
    """A name or address from the operator (``::1`` without brackets too), as ``parse_host`` gives it."""
    bare = value.strip().strip("[]").lower()
    if _ip(bare) is not None:
        return bare
    parsed = parse_host(value)
    return parsed[0] if parsed else None


def parse_host(value: str) -> tuple[str, int | None] | None:
    """``Host`` header → (lowercased name or address without brackets, port or None); None when malformed."""
    m = _HOST.match(value.strip().lower())
    if m is None:
        return None
    name = (m.group(1) or m.group(2) or "").rstrip(".")
    return (name, int(m.group(3)) if m.group(3) else None) if name else None


def _ip(name: str) -> Any:
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return None
    return getattr(ip, "ipv4_mapped", None) or ip


def bind_hosts(bind: str) -> set[str]:
    """The names a client may use for a server bound to ``bind``."""
    name = (_config_name(bind) or bind.strip().lower()) if bind else ""
    ip = _ip(name)
    if name == "localhost" or (ip is not None and ip.is_loopback):
        return {*LOOPBACK_NAMES, name}
    if not name or (ip is not None and ip.is_unspecified):  # every interface
        return {*LOOPBACK_NAMES, socket.gethostname().lower()}  # no DNS lookup (getfqdn) at start
    return {name}


def _header(scope: dict, name: bytes) -> str | None:
    for k, v in scope.get("headers") or ():
        if k.lower() == name:
            return v.decode("latin-1")
    return None


class HostOriginCheck:
    """Refuse unknown ``Host`` names (421) and cross-origin writes (403); see the module docstring."""

    def __init__(self, app: Any, host: str = "127.0.0.1", allowed_hosts: Iterable[str] | str | None = None):
        self.app = app
        extra = split_hosts(allowed_hosts if allowed_hosts is not None else os.environ.get(ENV))
        self.origin_names = {h for h in extra if not h.startswith(".")}
        self.names = bind_hosts(host) | self.origin_names
        self.domains = tuple(h for h in extra if h.startswith("."))

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            refused = self.refusal(scope)
            if refused is not None:
                return await refused(scope, receive, send)
        await self.app(scope, receive, send)

    def host_allowed(self, name: str, scope: dict) -> bool:
        if name in self.names or any(name.endswith(d) or name == d[1:] for d in self.domains):
            return True
        ip, server = _ip(name), scope.get("server")
        return ip is not None and bool(server) and ip == _ip(str(server[0]))  # the address the client reached

    def refusal(self, scope: dict) -> JSONResponse | None:
        raw = _header(scope, b"host")
        host = parse_host(raw) if raw else None
        if host is None or not self.host_allowed(host[0], scope):
            return self._unknown_host(raw)
        if scope.get("method") not in WRITES:
            return None
        origin = _header(scope, b"origin")
        if origin is None:
            referer = _header(scope, b"referer")
            if not referer:
                return None  # not a browser: API clients, curl
            parts = urlsplit(referer)
            origin = f"{parts.scheme}://{parts.netloc}"
        if self.same_origin(origin, host):
            return None
        return JSONResponse(error_body(
            "cross_origin", f"a request from this server's own pages ({raw}) or an API client without Origin",
            f"{scope.get('method')} {scope.get('path')} from another origin ({origin[:100]})",
            "use the assay UI itself, or call the API from a script (Authorization: Bearer <key>)"),
            status_code=403)

    def same_origin(self, origin: str, host: tuple[str, int | None]) -> bool:
        try:
            parts = urlsplit(origin.strip().lower())
            name, port = parts.hostname, parts.port or _DEFAULT_PORT.get(parts.scheme)
        except ValueError:
            return False
        if parts.scheme not in _DEFAULT_PORT or not name:
            return False  # "null" (sandboxed frames, file:), other schemes
        if name in self.origin_names:
            return True
        return name == host[0] and (port == host[1] or (host[1] is None and port == _DEFAULT_PORT[parts.scheme]))

    def _unknown_host(self, raw: str | None) -> JSONResponse:
        names = ", ".join(sorted(self.names)) + "".join(f", *{d}" for d in self.domains)
        found = f"Host: {raw[:100]}" if raw else "no Host header"
        fix = ("open the server by one of those names, or start it with `--allowed-host NAME` "
               f"(or ${ENV}=NAME,...)")
        return JSONResponse(error_body("unknown_host", f"a Host header naming this server ({names})", found, fix),
                            status_code=421)

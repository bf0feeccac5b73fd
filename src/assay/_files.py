"""Where assay keeps its files, and how it reads a YAML file: one copy of each rule.

- ``assay_home()``: ``$ASSAY_HOME``, default ``~/.assay`` (registry database, artifacts, model
  cache, request cache, provider settings, monitor database).
- ``read_yaml(path, what, fix)``: the file's YAML, or one AssayError that says what was expected,
  what was found (no file, a byte that is not UTF-8 with its offset, the YAML error's first line)
  and how to fix it, never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import AssayError


def assay_home() -> Path:
    """``$ASSAY_HOME``, default ``~/.assay``."""
    return Path(os.environ.get("ASSAY_HOME") or Path.home() / ".assay").expanduser()


def read_yaml(path: str | os.PathLike[str], what: str = "a YAML file", fix: str | None = None) -> Any:
    """The parsed YAML at ``path`` (None for an empty file); ``what`` names the file in messages."""
    import yaml

    p = Path(path).expanduser()
    fix = fix or f"fix {p.name}"
    if not p.exists():
        raise AssayError(what, f"no file at {p}", "check the path", code="not_found")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise AssayError(f"{what} in UTF-8", f"a byte that is not UTF-8 at byte offset {exc.start} of {p.name}",
                         f"re-save {p.name} as UTF-8", code="invalid_encoding") from None
    except yaml.YAMLError as exc:
        raise AssayError(f"valid YAML in {what}", f"a YAML error in {p.name}: {str(exc).splitlines()[0]}", fix,
                         code="invalid_config") from None
    except OSError as exc:
        raise AssayError(f"{what} that can be read", f"{p}: {exc.strerror}", "check the path and its permissions",
                         code="invalid_config") from None

"""Who may do what: API keys are scoped to projects with a role.

- admin: everything in the project; editor: upload, label, review, train, cancel, register (and read,
  score); scorer: score only; viewer: read only.
- An operator key (``assay keys create NAME`` without ``--project``) is admin of every project and
  the only kind that may create projects.
- A project the key has no role in answers 404 exactly like one that does not exist, so names do
  not leak; a known project with too small a role answers 403.
- With authentication off (a loopback bind without ``--auth``) nothing is restricted.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from ..errors import AssayError
from ..registry import KeyScope

PERMS = {
    "admin": {"member", "read", "score", "edit", "admin"},
    "editor": {"member", "read", "score", "edit"},
    "scorer": {"member", "score"},
    "viewer": {"member", "read"},
}
_NEED = {"read": "viewer, editor or admin", "score": "scorer, editor or admin", "edit": "editor or admin",
         "admin": "admin", "member": "any"}


def scope(request: Request) -> KeyScope | None:
    """The caller's key scope; None when nothing is restricted (authentication off)."""
    if not request.app.state.auth:
        return None
    return getattr(request.state, "scope", None) or KeyScope("", "", None, {})


def hidden(what: str, ref: str) -> AssayError:
    return AssayError(f"an existing {what}", f"no {what} '{ref}'", "check the name, or ask for access to its project",
                      code="not_found")


def check(request: Request, project_id: str, need: str, what: str = "project", ref: str | None = None) -> None:
    """Raise 404 (not a member: the thing is hidden) or 403 (member with too small a role)."""
    sc = scope(request)
    if sc is None:
        return
    role = sc.role(project_id)
    if role is None:
        raise hidden(what, ref or project_id)
    if need not in PERMS.get(role, set()):
        raise AssayError(f"a key with the role {_NEED[need]} on this project", f"the role {role}",
                         "ask a project admin for a role that allows it", code="forbidden")


def visible(request: Request, need: str = "member") -> set[str] | None:
    """Project ids the caller may see with ``need`` (None: all)."""
    sc = scope(request)
    if sc is None or sc.global_role:
        return None
    return {pid for pid, role in sc.roles.items() if need in PERMS.get(role, set())}


def require_operator(request: Request, action: str) -> None:
    sc = scope(request)
    if sc is not None and not sc.global_role:
        raise AssayError(f"an operator key to {action}", "a key scoped to projects",
                         "ask the operator (a key made without --project) to do it", code="forbidden")


def filter_by_project(request: Request, items: list[Any], need: str = "read") -> list[Any]:
    ids = visible(request, need)
    return items if ids is None else [i for i in items if i.project_id in ids]

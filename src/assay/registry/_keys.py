"""API keys (``reg.keys``): stored as hashes, each an operator key (admin of every project) or
scoped to projects with a role (admin, editor, scorer, viewer)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

from sqlalchemy import delete, insert, or_, select, update

from ..errors import AssayError
from . import _db as t
from ._base import Core, new_id, not_found
from ._models import ApiKey, to_time
from ._projects import Projects

KEY_PREFIX = "assay_"
ROLES = ("admin", "editor", "scorer", "viewer")


@dataclass
class KeyScope:
    """What a key may reach: ``global_role`` "admin" reaches every project (an operator key);
    otherwise only the projects in ``roles`` (project id -> role)."""

    id: str
    name: str
    global_role: str | None = None
    roles: dict[str, str] = field(default_factory=dict)

    def role(self, project_id: str) -> str | None:
        return self.global_role or self.roles.get(project_id)


def hash_key(key: str) -> str:
    """Keys are long random tokens, so one SHA-256 is enough (no password stretching needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


class Keys:
    """``create``, ``grant``, ``scope``, ``list``, ``has_any``, ``revoke`` and ``check`` API keys."""

    def __init__(self, core: Core, projects: Projects):
        self.core = core
        self.projects = projects

    def create(self, name: str, *, project: str | None = None, role: str = "viewer") -> ApiKey:
        """A new key; its secret is in ``.key`` and is stored only as a hash. Without ``project``
        it is an operator key (admin of every project); with ``project`` it reaches only that
        project, with ``role`` (admin, editor, scorer, viewer; add more with :meth:`grant`)."""
        if not name or not name.strip():
            raise AssayError("a name for the key", "an empty name", "pass a name, e.g. 'ci'", code="invalid_input")
        if project is not None:
            self._check_role(role)
            pid = self.projects.get(project).id
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        kid = new_id("key")
        with self.core.tx() as conn:
            conn.execute(insert(t.api_keys).values(id=kid, name=name.strip(), prefix=key[:12], key_hash=hash_key(key),
                                                   created_at=self.core.now(),
                                                   global_role=None if project is not None else "admin"))
            if project is not None:
                conn.execute(insert(t.key_projects).values(key_id=kid, project_id=pid, role=role,
                                                           created_at=self.core.now()))
        out = self._key(kid)
        out.key = key
        return out

    @staticmethod
    def _check_role(role: str) -> None:
        if role not in ROLES:
            raise AssayError(f"a role among {list(ROLES)}", f"'{role}'",
                             "admin: everything; editor: upload, train, register; scorer: score only; viewer: read",
                             code="invalid_input")

    def grant(self, key_ref: str, project: str, role: str | None) -> ApiKey:
        """Give a key ``role`` on ``project`` (replacing its earlier role there); None removes it."""
        if role is not None:
            self._check_role(role)
        pid = self.projects.get(project).id
        kid = self._key_row(key_ref)["id"]
        with self.core.tx() as conn:
            conn.execute(delete(t.key_projects).where(t.key_projects.c.key_id == kid,
                                                      t.key_projects.c.project_id == pid))
            if role is not None:
                conn.execute(insert(t.key_projects).values(key_id=kid, project_id=pid, role=role,
                                                           created_at=self.core.now()))
        return self._key(kid)

    def scope(self, key: str | None) -> KeyScope | None:
        """What a valid, unrevoked key may reach (None for an unknown or revoked key)."""
        if not key or not self.check(key):
            return None
        with self.core.tx() as conn:
            row = conn.execute(select(t.api_keys).where(t.api_keys.c.key_hash == hash_key(key))).mappings().first()
            if row is None:
                return None
            roles = dict(conn.execute(select(t.key_projects.c.project_id, t.key_projects.c.role)
                                      .where(t.key_projects.c.key_id == row["id"])).all())
        return KeyScope(row["id"], row["name"], row["global_role"], roles)

    def _key_row(self, ref: str) -> dict:
        with self.core.tx() as conn:
            row = conn.execute(select(t.api_keys).where(or_(t.api_keys.c.id == ref, t.api_keys.c.prefix == ref,
                                                            t.api_keys.c.name == ref))).mappings().first()
        if row is None:
            raise not_found("API key", ref, "list keys with `assay keys list`")
        return dict(row)

    def list(self) -> list[ApiKey]:
        with self.core.tx() as conn:
            rows = conn.execute(select(t.api_keys).order_by(t.api_keys.c.created_at)).mappings().all()
        return [self._key_model(r) for r in rows]

    def has_any(self) -> bool:
        with self.core.tx() as conn:
            return conn.execute(select(t.api_keys.c.id).where(t.api_keys.c.revoked_at.is_(None)).limit(1)
                                ).first() is not None

    def revoke(self, ref: str) -> ApiKey:
        """Revoke a key by id, name or prefix."""
        with self.core.tx() as conn:
            row = conn.execute(select(t.api_keys).where(or_(t.api_keys.c.id == ref, t.api_keys.c.prefix == ref,
                                                            t.api_keys.c.name == ref))).mappings().first()
            if row is None:
                raise not_found("API key", ref, "list keys with `assay keys list`")
            conn.execute(update(t.api_keys).where(t.api_keys.c.id == row["id"]).values(revoked_at=self.core.now()))
        return self._key(row["id"])

    def check(self, key: str | None) -> bool:
        """Whether ``key`` is a valid, unrevoked key (records when it was last used)."""
        if not key:
            return False
        h = hash_key(key)
        with self.core.tx() as conn:
            row = conn.execute(select(t.api_keys.c.id, t.api_keys.c.last_used_at).where(
                t.api_keys.c.key_hash == h, t.api_keys.c.revoked_at.is_(None))).first()
            if row is None:
                return False
            if row[1] is None or self.core.now() - row[1] > 60:
                conn.execute(update(t.api_keys).where(t.api_keys.c.id == row[0]).values(last_used_at=self.core.now()))
        return True

    def _key(self, kid: str) -> ApiKey:
        with self.core.tx() as conn:
            row = conn.execute(select(t.api_keys).where(t.api_keys.c.id == kid)).mappings().first()
        return self._key_model(row)

    def _key_model(self, r: dict) -> ApiKey:
        with self.core.tx() as conn:
            roles = dict(conn.execute(select(t.key_projects.c.project_id, t.key_projects.c.role)
                                      .where(t.key_projects.c.key_id == r["id"])).all())
        return ApiKey(id=r["id"], name=r["name"], prefix=r["prefix"], created_at=to_time(r["created_at"]),
                      last_used_at=to_time(r["last_used_at"]), revoked_at=to_time(r["revoked_at"]),
                      global_role=r.get("global_role"), projects=roles)

"""The Registry: one service object used by the REST API, the CLI, the worker and the UI."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import insert, or_, select, update

from ..errors import AssayError
from . import _db as t
from ._base import new_id, not_found
from ._metrics import MetricsMixin
from ._models import ApiKey, to_time

KEY_PREFIX = "assay_"


def hash_key(key: str) -> str:
    """Keys are long random tokens, so one SHA-256 is enough (no password stretching needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


class Registry(MetricsMixin):
    """Projects, datasets, runs, registered metrics, reviews and API keys.

    >>> reg = Registry()                       # SQLite at $ASSAY_HOME/assay.db
    >>> reg = Registry("postgresql://u@h/db", artifacts="s3://bucket/assay")
    """

    # --- API keys ---------------------------------------------------------------------------
    def create_api_key(self, name: str) -> ApiKey:
        """A new key; its secret is in ``.key`` and is stored only as a hash."""
        if not name or not name.strip():
            raise AssayError("a name for the key", "an empty name", "pass a name, e.g. 'ci'", code="invalid_input")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        kid = new_id("key")
        with self.tx() as conn:
            conn.execute(insert(t.api_keys).values(id=kid, name=name.strip(), prefix=key[:12], key_hash=hash_key(key),
                                                   created_at=self.now()))
        out = self._key(kid)
        out.key = key
        return out

    def list_api_keys(self) -> list[ApiKey]:
        with self.tx() as conn:
            rows = conn.execute(select(t.api_keys).order_by(t.api_keys.c.created_at)).mappings().all()
        return [self._key_model(r) for r in rows]

    def has_api_keys(self) -> bool:
        with self.tx() as conn:
            return conn.execute(select(t.api_keys.c.id).where(t.api_keys.c.revoked_at.is_(None)).limit(1)
                                ).first() is not None

    def revoke_api_key(self, ref: str) -> ApiKey:
        """Revoke a key by id, name or prefix."""
        with self.tx() as conn:
            row = conn.execute(select(t.api_keys).where(or_(t.api_keys.c.id == ref, t.api_keys.c.prefix == ref,
                                                            t.api_keys.c.name == ref))).mappings().first()
            if row is None:
                raise not_found("API key", ref, "list keys with `assay keys list`")
            conn.execute(update(t.api_keys).where(t.api_keys.c.id == row["id"]).values(revoked_at=self.now()))
        return self._key(row["id"])

    def check_api_key(self, key: str | None) -> bool:
        """Whether ``key`` is a valid, unrevoked key (records when it was last used)."""
        if not key:
            return False
        h = hash_key(key)
        with self.tx() as conn:
            row = conn.execute(select(t.api_keys.c.id, t.api_keys.c.last_used_at).where(
                t.api_keys.c.key_hash == h, t.api_keys.c.revoked_at.is_(None))).first()
            if row is None:
                return False
            if row[1] is None or self.now() - row[1] > 60:
                conn.execute(update(t.api_keys).where(t.api_keys.c.id == row[0]).values(last_used_at=self.now()))
        return True

    def _key(self, kid: str) -> ApiKey:
        with self.tx() as conn:
            row = conn.execute(select(t.api_keys).where(t.api_keys.c.id == kid)).mappings().first()
        return self._key_model(row)

    @staticmethod
    def _key_model(r: dict) -> ApiKey:
        return ApiKey(id=r["id"], name=r["name"], prefix=r["prefix"], created_at=to_time(r["created_at"]),
                      last_used_at=to_time(r["last_used_at"]), revoked_at=to_time(r["revoked_at"]))

"""API keys: each maps to a principal (user, groups) and a role (``admin`` or ``user``).

Keys are 32 random bytes, shown once at creation; only their SHA-256 is stored. A slow password
hash (bcrypt, argon2) protects low-entropy secrets people choose; a 256-bit random key cannot
be guessed, so a fast hash loses nothing and keeps every request's check at microseconds.

Example:
    >>> import tempfile
    >>> keys = KeyStore(tempfile.mkdtemp())
    >>> secret, info = keys.create("ana", groups=["eng"], role="admin")
    >>> keys.lookup(secret).principal.groups, keys.lookup("rt_wrong")
    (('eng',), None)
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ragtune.config import ragtune_home
from ragtune.errors import InputError, NotFoundError, StateError
from ragtune.types import Principal

ROLES = ("admin", "user")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
  id TEXT PRIMARY KEY, hash TEXT UNIQUE NOT NULL, user TEXT NOT NULL, groups TEXT NOT NULL,
  role TEXT NOT NULL, created REAL NOT NULL, revoked REAL
);
"""


@dataclass(frozen=True)
class KeyInfo:
    id: str  # public handle: list, revoke and logs name a key by it, never by the secret
    user: str
    groups: tuple[str, ...]
    role: str
    created: float
    revoked: float | None = None

    @property
    def principal(self) -> Principal:
        return Principal(user=self.user, groups=self.groups)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def to_dict(self) -> dict:
        return {**asdict(self), "groups": list(self.groups)}


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """``$RAGTUNE_HOME/keys.sqlite``; safe to share between request threads."""

    def __init__(self, home: str | Path | None = None):
        path = ragtune_home(home) / "keys.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def create(self, user: str, groups: list[str] | tuple[str, ...] = (), role: str = "user") -> tuple[str, KeyInfo]:
        """A new key for ``user``: returns (secret, info). The secret is not stored anywhere."""
        if role not in ROLES:
            raise InputError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        if not user or not user.strip():
            raise InputError("a key needs a user name")
        bad = [g for g in groups if not g or "," in g]
        if bad:
            raise InputError(f"invalid group name(s) {bad}: non-empty, no commas")
        secret = "rt_" + secrets.token_urlsafe(32)
        info = KeyInfo(id=secrets.token_hex(6), user=user.strip(), groups=tuple(sorted(set(groups))), role=role,
                       created=time.time())
        with self._lock:
            self._db.execute("INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?, NULL)",
                             (info.id, _digest(secret), info.user, ",".join(info.groups), info.role, info.created))
        return secret, info

    def lookup(self, secret: str) -> KeyInfo | None:
        """The key's info, or None when the secret is unknown or revoked."""
        with self._lock:
            row = self._db.execute("SELECT * FROM keys WHERE hash = ? AND revoked IS NULL", (_digest(secret),)).fetchone()
        return _info(row) if row else None

    def list(self, include_revoked: bool = False) -> list[KeyInfo]:
        sql = "SELECT * FROM keys" + ("" if include_revoked else " WHERE revoked IS NULL") + " ORDER BY created"
        with self._lock:
            return [_info(r) for r in self._db.execute(sql).fetchall()]

    def revoke(self, key_id: str) -> KeyInfo:
        with self._lock:
            cur = self._db.execute("UPDATE keys SET revoked = ? WHERE id = ? AND revoked IS NULL", (time.time(), key_id))
            row = self._db.execute("SELECT * FROM keys WHERE id = ?", (key_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no API key with id {key_id!r}; see `ragtune keys list`")
        if cur.rowcount == 0:
            raise StateError(f"API key {key_id!r} was already revoked")
        return _info(row)


def _info(row: tuple) -> KeyInfo:
    kid, _, user, groups, role, created, revoked = row
    return KeyInfo(kid, user, tuple(g for g in groups.split(",") if g), role, created, revoked)

"""Bearer tokens of the HTTP API: created, listed, revoked, and checked on every request.

A token reads `spane_KEY_SECRET`. KEY is public and finds the row; only a salted HMAC of
SECRET is kept, compared in constant time. The secret is returned once by `create` and is
never stored, logged or put in an error message.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

import peewee

from spane_cli.errors import NotFound, OperationFailed, UsageError
from spane_cli.store.db import write_transaction
from spane_cli.store.models import ApiToken

PREFIX = "spane_"
_KEY_BYTES = 8  # 16 hex characters: a lookup key, not a secret
_SECRET_BYTES = 32
# A used token's `last_used_at` is written at most this often, so a busy client does not
# turn every read into a write on one row.
LAST_USED_RESOLUTION_SECONDS = 60.0
NAME_MAX = 64


class Scope(StrEnum):
    """What a token may do; each scope includes those below it."""

    READ = "read"  # list and get
    RUN = "run"  # start, cancel, pause, resume, retry, resubmit, replay
    ADMIN = "admin"  # purge dead letters

    @property
    def rank(self) -> int:
        return list(Scope).index(self)

    def includes(self, other: Scope) -> bool:
        return self.rank >= other.rank


@dataclass(frozen=True)
class TokenRecord:
    """A token as it may be shown: everything but its secret."""

    name: str
    scope: Scope
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def to_json(self, now: float | None = None) -> dict[str, object]:
        now = time.time() if now is None else now
        return {
            "name": self.name,
            "scope": self.scope.value,
            "state": self.state(now),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "last_used_at": self.last_used_at,
        }


def _record(row: ApiToken) -> TokenRecord:
    return TokenRecord(
        name=str(row.name),
        scope=Scope(row.scope),
        created_at=float(row.created_at),
        expires_at=None if row.expires_at is None else float(row.expires_at),
        revoked_at=None if row.revoked_at is None else float(row.revoked_at),
        last_used_at=None if row.last_used_at is None else float(row.last_used_at),
    )


def _digest(salt: str, secret: str) -> str:
    # The secret has 256 random bits: a keyed hash suffices, a slow one would only slow
    # down every request.
    return hmac.new(bytes.fromhex(salt), secret.encode(), hashlib.sha256).hexdigest()


def check_name(name: str) -> str:
    if not name or len(name) > NAME_MAX or not all(c.isalnum() or c in "-_." for c in name):
        raise UsageError(
            f"invalid token name {name[:NAME_MAX]!r}: use 1 to {NAME_MAX} letters, digits,"
            " '-', '_' or '.'"
        )
    return name


def create(
    database: peewee.Database,
    name: str,
    scope: Scope | str,
    expires: float | None = None,
    now: float | None = None,
) -> str:
    """Store a new token and return it (the only time its secret is seen). `expires` is the
    epoch time it stops working, None for never."""
    check_name(name)
    try:
        scope = Scope(scope)
    except ValueError:
        raise UsageError(f"invalid scope {scope!r}: use read, run or admin") from None
    now = time.time() if now is None else now
    key = secrets.token_hex(_KEY_BYTES)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    salt = secrets.token_hex(16)
    try:
        with write_transaction(database):
            ApiToken.insert(
                name=name,
                key=key,
                scope=scope.value,
                salt=salt,
                secret_hash=_digest(salt, secret),
                created_at=now,
                expires_at=expires,
            ).execute()
    except peewee.IntegrityError:
        raise OperationFailed(
            f"a token named {name!r} exists: revoke it first or choose another name"
        ) from None
    return f"{PREFIX}{key}_{secret}"


def authenticate(token: str, now: float | None = None) -> TokenRecord | None:
    """The record of a live token, or None when it is malformed, unknown, wrong, revoked or
    expired (which one is not said: the caller answers all of them alike)."""
    now = time.time() if now is None else now
    if not token.startswith(PREFIX):
        return None
    key, sep, secret = token[len(PREFIX) :].partition("_")
    if not sep or len(key) != 2 * _KEY_BYTES or not secret or len(secret) > 128:
        return None
    row = ApiToken.get_or_none(ApiToken.key == key)
    if row is None:
        # The same work as for a known key, so the answer's timing does not tell keys apart.
        hmac.compare_digest(_digest("00" * 16, secret), "0" * 64)
        return None
    if not hmac.compare_digest(_digest(str(row.salt), secret), str(row.secret_hash)):
        return None
    record = _record(row)
    if record.state(now) != "active":
        return None
    if record.last_used_at is None or record.last_used_at < now - LAST_USED_RESOLUTION_SECONDS:
        ApiToken.update(last_used_at=now).where(
            (ApiToken.id == row.id)
            & (
                ApiToken.last_used_at.is_null()
                | (ApiToken.last_used_at < now - LAST_USED_RESOLUTION_SECONDS)
            )
        ).execute()
    return record


def list_tokens() -> list[TokenRecord]:
    rows = ApiToken.select().order_by(ApiToken.name, ApiToken.created_at)
    return [_record(row) for row in rows]


def revoke(database: peewee.Database, name: str, now: float | None = None) -> TokenRecord:
    """Revoke the live token named `name`; its requests are refused from now on."""
    now = time.time() if now is None else now
    with write_transaction(database):
        row = ApiToken.get_or_none((ApiToken.name == name) & ApiToken.revoked_at.is_null())
        if row is None:
            raise NotFound(f"no token named {name!r} (spane token list shows them)")
        ApiToken.update(revoked_at=now).where(ApiToken.id == row.id).execute()
        row.revoked_at = now
    return _record(row)

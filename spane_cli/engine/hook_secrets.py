"""Webhook secrets, derived and never stored.

A hook's secret is HMAC-SHA256(server key, "spane-hook" NUL workflow NUL salt): the database
holds the salt only, so neither it nor a backup of it signs a request. The server key is
`SPANE_SECRET_KEY` when set, else 32 random bytes in `SPANE_HOME/secret.key`, made with mode
0600 on first use. Every `spane serve` that shares the setting (or the file), and the
`spane hook create` that printed a secret, derive the same one. A new salt (`spane hook
create` again) rotates a hook's secret; a new server key rotates them all.

Requests are signed as GitHub signs them: `X-Hub-Signature-256: sha256=HEX`, the HMAC-SHA256
of the raw body under the secret, compared in constant time.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile

from spane_cli.errors import UsageError

KEY_VARIABLE = "SPANE_SECRET_KEY"
KEY_FILE = "secret.key"
SIGNATURE_PREFIX = "sha256="
_MIN_KEY_CHARACTERS = 16


def _home() -> str:
    from platformdirs import user_state_dir

    directory = os.environ.get("SPANE_HOME") or user_state_dir("spane")
    os.makedirs(directory, exist_ok=True)
    return directory


def key_path() -> str:
    return os.path.join(_home(), KEY_FILE)


def server_key() -> bytes:
    """The key hook secrets are derived under (see the module's docstring)."""
    given = os.environ.get(KEY_VARIABLE)
    if given is not None:
        if len(given) < _MIN_KEY_CHARACTERS:
            raise UsageError(f"{KEY_VARIABLE} must be at least {_MIN_KEY_CHARACTERS} characters")
        return given.encode()
    path = key_path()
    with contextlib.suppress(FileNotFoundError):
        return _read_key(path)
    # Written aside and linked into place: a second process starting at the same moment
    # either wins the link or reads the whole key of the one that did, never half of it.
    directory = os.path.dirname(path)
    handle, scratch = tempfile.mkstemp(prefix=".secret-", dir=directory)  # mode 0600
    try:
        os.write(handle, secrets.token_hex(32).encode() + b"\n")
        os.fsync(handle)
        os.close(handle)
        with contextlib.suppress(FileExistsError):
            os.link(scratch, path)
    finally:
        os.unlink(scratch)
    return _read_key(path)


def _read_key(path: str) -> bytes:
    with open(path, "rb") as handle:
        key = handle.read().strip()
    if len(key) < _MIN_KEY_CHARACTERS:
        raise UsageError(f"{path}: the server key is too short; remove it to make a new one")
    return key


def new_salt() -> str:
    return secrets.token_hex(16)


def hook_secret(key: bytes, workflow: str, salt: str) -> str:
    """The secret a sender signs the hook's requests with."""
    message = b"\0".join((b"spane-hook", workflow.encode(), salt.encode()))
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value of `body`."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verifies(secret: str, body: bytes, header: str) -> bool:
    """Whether `header` is the signature of `body` under `secret` (constant time)."""
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().lower().encode())


def signature_digest(header: str) -> str:
    """What a delivery records of its signature: a hash, so replays are told apart without
    keeping anything that was on the wire."""
    return hashlib.sha256(header.strip().lower().encode()).hexdigest()

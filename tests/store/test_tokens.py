"""API tokens in the store: the secret is shown once and kept only as a salted hash."""

from __future__ import annotations

import uuid

import pytest

from spane_cli.errors import NotFound, OperationFailed, UsageError
from spane_cli.store import tokens
from spane_cli.store.store import Store
from spane_cli.store.tokens import Scope


def unique(name: str) -> str:
    """PostgreSQL's test database is shared by the run's tests: names of this test only."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def test_a_created_token_authenticates_with_its_scope(store: Store) -> None:
    name = unique("deploy")
    secret = tokens.create(store.database, name, "run")
    record = tokens.authenticate(secret)
    assert record is not None and record.name == name and record.scope is Scope.RUN
    assert record.scope.includes(Scope.READ) and not record.scope.includes(Scope.ADMIN)


def test_only_a_salted_hash_is_stored(store: Store) -> None:
    names = (unique("a"), unique("b"))
    first = tokens.create(store.database, names[0], "read")
    second = tokens.create(store.database, names[1], "read")
    rows = store.database.execute_sql(
        "SELECT * FROM api_token WHERE name IN (%s, %s)".replace(
            "%s", "?" if store.database.param == "?" else "%s"
        ),
        names,
    ).fetchall()
    dump = repr(rows)
    for secret in (first, second):
        assert secret.split("_", 2)[2] not in dump  # the secret part (it may hold a _)
    assert len(rows) == 2 and len({row[4] for row in rows}) == 2  # each its own salt


def test_wrong_expired_and_revoked_tokens_are_refused(store: Store) -> None:
    good_name = unique("good")
    good = tokens.create(store.database, good_name, "admin")
    key_part = "_".join(good.split("_", 2)[:2])
    assert tokens.authenticate(key_part + "_" + "x" * 43) is None
    assert tokens.authenticate("not a token") is None
    assert tokens.authenticate("spane_") is None
    expired = tokens.create(store.database, unique("old"), "admin", expires=1000.0, now=10.0)
    assert tokens.authenticate(expired, now=999.0) is not None
    assert tokens.authenticate(expired, now=1000.0) is None
    tokens.revoke(store.database, good_name)
    assert tokens.authenticate(good) is None
    with pytest.raises(NotFound):
        tokens.revoke(store.database, good_name)


def test_a_name_is_free_again_once_revoked(store: Store) -> None:
    name = unique("ci")
    tokens.create(store.database, name, "read")
    with pytest.raises(OperationFailed):
        tokens.create(store.database, name, "run")
    tokens.revoke(store.database, name)
    again = tokens.create(store.database, name, "run")
    record = tokens.authenticate(again)
    assert record is not None and record.scope is Scope.RUN
    states = [t.state(now=2e9) for t in tokens.list_tokens() if t.name == name]
    assert sorted(states) == ["active", "revoked"]


def test_bad_names_and_scopes_are_usage_errors(store: Store) -> None:
    with pytest.raises(UsageError):
        tokens.create(store.database, "has space", "read")
    with pytest.raises(UsageError):
        tokens.create(store.database, "ok", "root")

"""API keys: creation, authentication, revocation, roles, the key file and its CLI."""

from __future__ import annotations

import argparse
import json
import os
import stat

import pytest

from sightline.security import commands
from sightline.security.keys import (
    ROLES,
    AuthenticationError,
    KeyStore,
    KeyStoreError,
    PermissionDenied,
    Principal,
    authorize,
    parse_token,
)


@pytest.fixture
def store(tmp_path):
    # one PBKDF2 iteration keeps the tests fast; the cost is per key, stored in the file
    return KeyStore(tmp_path / "keys.json", create=True, iterations=1)


def test_create_authenticate_revoke(store):
    key_id, token = store.create("alice", "analyst")
    assert token.startswith(f"sl_{key_id}_")
    assert store.authenticate(token) == Principal("alice", "analyst", key_id)
    assert store.authenticate(token) == Principal("alice", "analyst", key_id)  # cached path
    info = store.revoke(key_id)
    assert info.revoked is not None
    with pytest.raises(AuthenticationError, match="unknown or revoked key"):
        store.authenticate(token)
    assert store.revoke(key_id).revoked == info.revoked  # idempotent


def test_revocation_by_another_process_is_seen(store):
    key_id, token = store.create("alice", "analyst")
    store.authenticate(token)
    other = KeyStore(store.path)
    other.revoke(key_id)
    with pytest.raises(AuthenticationError, match="unknown or revoked key"):
        store.authenticate(token)


@pytest.mark.parametrize("tamper", ["secret", "key_id"])
def test_wrong_secret_or_id_reads_the_same(store, tamper):
    key_id, token = store.create("alice", "analyst")
    store.authenticate(token)  # a cached success must not let a wrong secret through
    secret = token[len(f"sl_{key_id}_") :]
    bad = {"secret": f"sl_{key_id}_{'A' * len(secret)}", "key_id": f"sl_{'0' * 16}_{secret}"}[
        tamper
    ]
    with pytest.raises(AuthenticationError) as err:
        store.authenticate(bad)
    assert str(err.value) == "unknown or revoked key"
    assert err.value.status == 401


@pytest.mark.parametrize(
    "token",
    [None, "", "sl_", "Bearer x", "sl_0123456789abcdef", "sl_XYZ_" + "a" * 43, "sk_" + "0" * 60],
)
def test_malformed_tokens(store, token):
    with pytest.raises(AuthenticationError, match=r"malformed key|no API key"):
        store.authenticate(token)


def test_parse_token_splits_id_and_secret():
    assert parse_token(f"sl_{'a' * 16}_{'b_-' * 14}c") == ("a" * 16, "b_-" * 14 + "c")


ROLE_TABLE = [
    # (key role, required, allowed)
    ("analyst", "analyst", True),
    ("analyst", "data", False),
    ("data", "data", True),
    ("data", "analyst", False),
    ("operator", "operator", True),
    ("operator", "data", False),
    ("admin", "admin", True),
    ("admin", "analyst", False),  # admin does not imply the others
    ("admin", "operator", False),
    ("analyst", "admin", False),
    ("data", ("analyst", "data"), True),
    ("operator", ("analyst", "data"), False),
]


@pytest.mark.parametrize(("role", "required", "allowed"), ROLE_TABLE)
def test_roles(role, required, allowed):
    who = Principal("p", role, "0" * 16)
    if allowed:
        authorize(who, required)
    else:
        with pytest.raises(PermissionDenied, match="needs role") as err:
            authorize(who, required)
        assert err.value.status == 403
        assert role in str(err.value)


def test_unknown_roles_are_refused(store):
    with pytest.raises(ValueError, match="'superuser' is not one of"):
        store.create("alice", "superuser")
    with pytest.raises(ValueError, match="required role 'analyts'"):
        authorize(Principal("p", "analyst", "0" * 16), "analyts")


@pytest.mark.parametrize("principal", ["", "   ", "a\nb", "x" * 201])
def test_bad_principal_names(store, principal):
    with pytest.raises(ValueError, match="principal"):
        store.create(principal, "analyst")


def test_file_holds_hashes_not_secrets(store):
    key_id, token = store.create("alice", "data")
    text = store.path.read_text()
    secret = token[len(f"sl_{key_id}_") :]
    assert secret not in text and token not in text
    record = json.loads(text)["keys"][key_id]
    assert len(record["hash"]) == 64 and len(record["salt"]) == 32
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert [k.key_id for k in store.list()] == [key_id]
    assert "hash" not in store.list()[0].to_dict()


def test_failed_rewrite_keeps_old_keys(store, monkeypatch):
    _, first = store.create("alice", "analyst")
    before = store.path.read_bytes()

    def fail(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(KeyStoreError, match="cannot write key file"):
        store.create("bob", "data")
    monkeypatch.undo()
    assert store.path.read_bytes() == before
    assert [p.name for p in store.path.parent.iterdir() if p.suffix == ".tmp"] == []
    assert store.authenticate(first).principal == "alice"
    assert [k.principal for k in KeyStore(store.path).list()] == ["alice"]


def test_rewrites_keep_every_key(store):
    tokens = [store.create(f"user{i}", sorted(ROLES)[i % 4])[1] for i in range(5)]
    fresh = KeyStore(store.path)
    assert [fresh.authenticate(t).principal for t in tokens] == [f"user{i}" for i in range(5)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "invalid JSON"),
        ('{"version": 2, "keys": {}}', "not a version 1 key file"),
        ('{"version": 1, "keys": []}', "'keys' must be an object"),
        ('{"version": 1, "keys": {"zz": {}}}', "is not 16 hex digits"),
    ],
)
def test_corrupt_file_names_the_file(tmp_path, content, message):
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(KeyStoreError, match=message) as err:
        KeyStore(path)
    assert str(path) in str(err.value)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(KeyStoreError, match="no such key file") as err:
        KeyStore(tmp_path / "nope.json")
    assert "nope.json" in str(err.value)


# ------------------------------------------------------------------ CLI


def _run(argv, capsys):
    parser = argparse.ArgumentParser()
    commands.add_security_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    return code, json.loads(capsys.readouterr().out)


def test_cli_create_list_revoke(tmp_path, capsys):
    keys = str(tmp_path / "sec" / "keys.json")
    code, made = _run(
        ["keys", "create", "--keys", keys, "--principal", "bob", "--role", "data"], capsys
    )
    assert code == 0 and made["role"] == "data"
    assert KeyStore(keys).authenticate(made["key"]).principal == "bob"
    _, listed = _run(["keys", "list", "--keys", keys], capsys)
    assert [k["key_id"] for k in listed] == [made["key_id"]] and "key" not in listed[0]
    _, revoked = _run(["keys", "revoke", "--keys", keys, made["key_id"]], capsys)
    assert revoked["revoked"] is not None
    _, active = _run(["keys", "list", "--keys", keys], capsys)
    assert active == []
    _, everything = _run(["keys", "list", "--keys", keys, "--all"], capsys)
    assert len(everything) == 1
    with pytest.raises(ValueError, match="no key 'ffffffffffffffff'"):
        _run(["keys", "revoke", "--keys", keys, "f" * 16], capsys)


def test_cli_without_a_location_says_what_to_give(capsys):
    with pytest.raises(FileNotFoundError, match="--keys or a site config with --config"):
        _run(["keys", "list"], capsys)

"""API keys: one principal and one role per key, stored only as salted hashes.

A key reads ``sl_<key_id>_<secret>``: ``key_id`` is 16 hex digits (public, it names the
key in lists, logs and the audit trail), ``secret`` is 32 random bytes in URL-safe
base64. The key file keeps, per ``key_id``, the principal, role, creation and revocation
times, a 16-byte random salt and ``PBKDF2-HMAC-SHA256(secret, salt)``; the plaintext is
returned once by :meth:`KeyStore.create` and never stored. Lookup is by ``key_id``, so one
hash is computed per request, and compared with :func:`hmac.compare_digest`.

Why PBKDF2 with a modest iteration count rather than scrypt: a secret has 256 random bits,
so a stolen key file cannot be brute-forced however fast the hash is; slow hashing
protects low-entropy passwords, which these are not. It would cost every API request
(scrypt's default parameters take ~60 ms, which alone would sink a 200 requests/s
target). The iteration count is stored per key, so it can be raised for new keys.
A store also remembers, in memory, the SHA-256 of each secret it has verified, so a
client's repeated requests skip PBKDF2; that memory is dropped whenever the file changes.

Roles (:data:`ROLES`) do not imply one another: an ``admin`` manages keys and reads the
audit log, but cannot search unless it also holds an ``analyst`` key. One role per key
keeps the model simple; a person who needs two roles holds two keys.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sightline.durable import fsync_path

__all__ = [
    "DEFAULT_ITERATIONS",
    "ROLES",
    "AuthenticationError",
    "KeyInfo",
    "KeyStore",
    "KeyStoreError",
    "PermissionDenied",
    "Principal",
    "authorize",
    "parse_token",
]

log = logging.getLogger(__name__)

ROLES: dict[str, str] = {
    "analyst": "missing-person searches, their results, routes, thumbnails and watches",
    "data": "fused tracks, sightings, identity routes, exports, zone counts and density",
    "operator": "cameras (list, add, remove, change), deployments and scaling",
    "admin": "API keys and the audit log",
}
"""Every role and what it may do; no role implies another."""

DEFAULT_ITERATIONS = 10_000
"""PBKDF2 iterations for new keys (~3 ms a verification); see the module docstring."""

_FORMAT_VERSION = 1
_TOKEN = re.compile(r"^sl_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_PRINCIPAL = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")
_RECORD_FIELDS = ("principal", "role", "created", "revoked", "iterations", "salt", "hash")


class AuthenticationError(Exception):
    """The request carries no usable API key (HTTP 401); the message says why."""

    status = 401


class PermissionDenied(Exception):  # noqa: N818 - the HTTP name reads best at call sites
    """The key is valid but its role may not do this (HTTP 403); the message says which
    role was needed."""

    status = 403


class KeyStoreError(ValueError):
    """The key file is missing, unreadable or malformed (the message names the file)."""


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the ``principal`` (a person or service name), its ``role``
    and the ``key_id`` it authenticated with (recorded in the audit log)."""

    principal: str
    role: str
    key_id: str


@dataclass(frozen=True)
class KeyInfo:
    """A key as :meth:`KeyStore.list` shows it: everything but its hash and salt."""

    key_id: str
    principal: str
    role: str
    created: str
    revoked: str | None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return dataclasses.asdict(self)


def _check_role(role: str, what: str = "role") -> str:
    if role not in ROLES:
        raise ValueError(f"{what} {role!r} is not one of {sorted(ROLES)}")
    return role


def authorize(principal: Principal, required: str | Iterable[str]) -> None:
    """Raise :class:`PermissionDenied` unless ``principal``'s role is ``required`` (a role,
    or several of which any will do). Unknown role names are a programming error
    (``ValueError``), so a typo in a route cannot silently lock everyone out."""
    allowed = (required,) if isinstance(required, str) else tuple(required)
    if not allowed:
        raise ValueError("authorize needs at least one role")
    for role in allowed:
        _check_role(role, "required role")
    if principal.role not in allowed:
        need = allowed[0] if len(allowed) == 1 else " or ".join(allowed)
        raise PermissionDenied(
            f"principal {principal.principal!r} (key {principal.key_id}) has role "
            f"{principal.role!r}; this needs role {need}"
        )


def parse_token(token: str | None) -> tuple[str, str]:
    """Split ``sl_<key_id>_<secret>`` into ``(key_id, secret)``; raise
    :class:`AuthenticationError` for a missing or malformed key."""
    if not token:
        raise AuthenticationError("no API key given")
    match = _TOKEN.match(token.strip())
    if match is None:
        raise AuthenticationError("malformed key: expected sl_<16 hex digits>_<43 characters>")
    return match.group(1), match.group(2)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _pbkdf2(secret: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", secret.encode("ascii"), salt, iterations)


def _fast(secret: str, salt: bytes) -> bytes:
    return hashlib.sha256(salt + secret.encode("ascii")).digest()


class KeyStore:
    """API keys in a JSON file at ``path`` (created on the first :meth:`create` when
    ``create`` is true; otherwise a missing file is a :class:`KeyStoreError`).

    Every write rewrites the whole file under a temporary name (mode 0600), fsyncs it and
    renames it into place, holding an exclusive lock on ``<path>.lock`` so two ``sightline
    keys`` commands cannot lose each other's changes. Readers notice a changed file (a key
    revoked by another process) on their next :meth:`authenticate` and reload it.
    ``iterations`` applies to keys created by this instance.
    """

    def __init__(
        self, path: str | Path, *, create: bool = False, iterations: int = DEFAULT_ITERATIONS
    ) -> None:
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        self.path = Path(path)
        self.iterations = iterations
        self._records: dict[str, dict[str, Any]] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._verified: dict[str, bytes] = {}
        if not self.path.exists() and not create:
            raise KeyStoreError(
                f"{self.path}: no such key file; create a key with "
                "`sightline keys create --keys FILE --principal NAME --role ROLE`"
            )
        self._reload(force=True)

    # ------------------------------------------------------------------ public

    def create(self, principal: str, role: str) -> tuple[str, str]:
        """Add a key for ``principal`` with ``role``; returns ``(key_id, plaintext)``.

        The plaintext is not kept anywhere: show it to its owner once."""
        if not isinstance(principal, str) or not _PRINCIPAL.match(principal.strip()):
            raise ValueError(
                f"principal {principal!r} must be 1-200 printable characters (no control codes)"
            )
        _check_role(role)
        key_id = secrets.token_hex(8)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        salt = secrets.token_bytes(16)
        record = {
            "principal": principal.strip(),
            "role": role,
            "created": _now(),
            "revoked": None,
            "iterations": self.iterations,
            "salt": salt.hex(),
            "hash": _pbkdf2(secret, salt, self.iterations).hex(),
        }
        with self._locked():
            while key_id in self._records:  # 64 random bits: never, but cheap to rule out
                key_id = secrets.token_hex(8)
            self._records[key_id] = record
            self._write()
        return key_id, f"sl_{key_id}_{secret}"

    def revoke(self, key_id: str) -> KeyInfo:
        """Revoke ``key_id`` (kept in the file, marked revoked, so the audit trail can still
        name it); revoking a revoked key is a no-op. Unknown ids raise ``KeyError``."""
        with self._locked():
            record = self._records.get(key_id)
            if record is None:
                raise KeyError(f"no key {key_id!r} in {self.path}")
            if record["revoked"] is None:
                record["revoked"] = _now()
                self._write()
        self._verified.pop(key_id, None)
        return self._info(key_id, record)

    def list(self, *, include_revoked: bool = True) -> list[KeyInfo]:
        """Every key, oldest first, without secrets or hashes."""
        self._reload()
        infos = [self._info(k, r) for k, r in self._records.items()]
        infos.sort(key=lambda i: (i.created, i.key_id))
        return [i for i in infos if include_revoked or i.revoked is None]

    def authenticate(self, token: str | None) -> Principal:
        """The :class:`Principal` that ``token`` belongs to.

        Raises :class:`AuthenticationError`: "no API key given", "malformed key" or
        "unknown or revoked key" (an unknown id, a revoked key and a wrong secret read the
        same, so the answer does not tell a guesser which part was wrong)."""
        key_id, secret = parse_token(token)
        self._reload()
        record = self._records.get(key_id)
        if record is None or record["revoked"] is not None:
            # spend the same work as a real check, so timing does not reveal valid ids
            _pbkdf2(secret, b"\0" * 16, self.iterations)
            raise AuthenticationError("unknown or revoked key")
        salt = bytes.fromhex(record["salt"])
        fast = _fast(secret, salt)
        known = self._verified.get(key_id)
        if known is None or not hmac.compare_digest(known, fast):
            digest = _pbkdf2(secret, salt, record["iterations"])
            if not hmac.compare_digest(digest, bytes.fromhex(record["hash"])):
                raise AuthenticationError("unknown or revoked key")
            self._verified[key_id] = fast
        return Principal(record["principal"], record["role"], key_id)

    # ------------------------------------------------------------------ file

    @staticmethod
    def _info(key_id: str, record: dict[str, Any]) -> KeyInfo:
        return KeyInfo(
            key_id, record["principal"], record["role"], record["created"], record["revoked"]
        )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the file's write lock, with the newest contents loaded."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._reload()
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _reload(self, *, force: bool = False) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._records, self._stamp = {}, None
            self._verified.clear()
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if not force and stamp == self._stamp:
            return
        if st.st_mode & 0o077:
            log.warning("%s is readable by others (mode %o); chmod 600 it", self.path, st.st_mode)
        self._records = self._parse(self.path)
        self._stamp = stamp
        self._verified.clear()

    @staticmethod
    def _parse(path: Path) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyStoreError(f"{path}: cannot read key file: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise KeyStoreError(f"{path}: not a key file (invalid JSON: {exc})") from exc
        if not isinstance(data, dict) or data.get("version") != _FORMAT_VERSION:
            raise KeyStoreError(f"{path}: not a version {_FORMAT_VERSION} key file")
        keys = data.get("keys")
        if not isinstance(keys, dict):
            raise KeyStoreError(f"{path}: field 'keys' must be an object")
        for key_id, record in keys.items():
            if not re.fullmatch(r"[0-9a-f]{16}", key_id):
                raise KeyStoreError(f"{path}: key id {key_id!r} is not 16 hex digits")
            if not isinstance(record, dict) or set(record) != set(_RECORD_FIELDS):
                raise KeyStoreError(
                    f"{path}: key {key_id} must have exactly the fields {list(_RECORD_FIELDS)}"
                )
            if record["role"] not in ROLES:
                raise KeyStoreError(f"{path}: key {key_id} has unknown role {record['role']!r}")
            if not isinstance(record["iterations"], int) or record["iterations"] < 1:
                raise KeyStoreError(f"{path}: key {key_id} field 'iterations' must be >= 1")
        return keys

    def _write(self) -> None:
        data = {"version": _FORMAT_VERSION, "keys": self._records}
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            self._reload(force=True)  # drop the change that did not reach the file
            raise KeyStoreError(f"{self.path}: cannot write key file: {exc}") from exc
        fsync_path(self.path.parent)
        self._reload(force=True)

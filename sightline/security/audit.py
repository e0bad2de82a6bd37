"""The audit log: append-only, hash-chained JSON Lines, one file per UTC day.

Layout of the audit folder::

    audit-YYYY-MM-DD.jsonl   one entry per line, oldest first
    checkpoint.json          where the chain resumes after a purge (absent before one)
    .lock                    the writers' lock (fcntl.flock)
    audit-*.jsonl.torn       fragments of interrupted writes, cut off on the next append

An entry is ``{seq, ts, principal, role, action, case_id, reason, parameters, prev_hash,
hash}``: ``seq`` counts from 0 across files, ``ts`` is UTC (``...T12:00:00.000000Z``),
``prev_hash`` is the previous entry's ``hash`` (:data:`GENESIS`, 64 zeros, for seq 0) and
``hash`` is the SHA-256 of the entry's canonical JSON without ``hash`` (sorted keys, no
spaces, UTF-8; :func:`entry_hash`). Changing, deleting, reordering or inserting an entry
breaks the chain at that point, which :meth:`AuditLog.verify` reports.

A hash chain cannot show that its newest entries were cut off (nothing follows them), nor
a wholesale rewrite from some point on. Record :attr:`VerifyReport.head_hash` somewhere the
log's host cannot write (a ticket, another system) now and then: a later verify whose chain
no longer passes through that hash, or ends before its seq, shows the log was rewritten.

Retention: :meth:`AuditLog.purge_before` deletes whole day files, but first appends an
``audit.purge`` entry naming the seq and hash of the last entry it deletes, and writes the
same seq and hash to ``checkpoint.json``. Verify then starts the chain from the checkpoint
and requires the ``audit.purge`` entry that confirms it, so a forged checkpoint (to hide
deleted recent files) does not verify.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sightline.durable import fsync_path

__all__ = [
    "ENTRY_FIELDS",
    "GENESIS",
    "MAX_ENTRY_BYTES",
    "PURGE_ACTION",
    "AuditError",
    "AuditLog",
    "BadEntry",
    "VerifyReport",
    "canonical_json",
    "entry_hash",
]

log = logging.getLogger(__name__)

GENESIS = "0" * 64
"""``prev_hash`` of the first entry ever written."""

ENTRY_FIELDS = (
    "seq",
    "ts",
    "principal",
    "role",
    "action",
    "case_id",
    "reason",
    "parameters",
    "prev_hash",
    "hash",
)
"""An entry's fields, in the order they are written."""

MAX_ENTRY_BYTES = 64 * 1024
"""Largest entry (one line); bounds what the writer reads back to continue the chain."""

PURGE_ACTION = "audit.purge"
"""The action :meth:`AuditLog.purge_before` records; :meth:`AuditLog.append` refuses it."""

_FILE = re.compile(r"^audit-(\d{4}-\d{2}-\d{2})\.jsonl$")
_ACTION = re.compile(r"^[a-z][a-z0-9_.-]{0,99}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_LIMITS = {"principal": 200, "role": 50, "case_id": 200, "reason": 2000}
_CHECKPOINT = "checkpoint.json"


class AuditError(ValueError):
    """The audit log cannot be written or read as it should (the message names the file)."""


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON: sorted keys, no spaces, no NaN, non-ASCII kept."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def entry_hash(entry: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of ``entry``'s canonical JSON without its ``hash`` field."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def _utc_text(when: datetime) -> str:
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _utc_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} value {value!r} is not JSON")


def _normalise_parameters(parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """``parameters`` as the plain JSON they will read back as (so the hash we compute now
    is the hash verify recomputes)."""
    if parameters is None:
        return {}
    if not isinstance(parameters, Mapping):
        raise ValueError(f"parameters must be a mapping, got {type(parameters).__name__}")
    try:
        text = json.dumps(dict(parameters), default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"parameters are not JSON-serialisable: {exc}") from exc
    return json.loads(text)


def _check_text(name: str, value: Any, *, required: bool) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValueError(f"{name} is required and must not be empty")
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    if len(value) > _LIMITS[name]:
        raise ValueError(f"{name} is {len(value)} characters; at most {_LIMITS[name]}")
    return value.strip()


@dataclass(frozen=True)
class BadEntry:
    """Where verification failed: the ``file`` (name), 1-based ``line``, the entry's
    ``seq`` when it could be read, a ``kind`` and a readable ``reason``.

    Kinds: ``edited`` (an entry's content or the chain link to it was changed),
    ``missing`` (entries absent: a deleted line, or a removed file), ``reordered``,
    ``truncated`` (a last line without its newline: an interrupted write or a cut),
    ``malformed`` (not an entry), ``checkpoint`` (a checkpoint that is unreadable or not
    confirmed by its ``audit.purge`` entry).
    """

    file: str
    line: int
    seq: int | None
    kind: str
    reason: str


@dataclass(frozen=True)
class VerifyReport:
    """The result of :meth:`AuditLog.verify`.

    ``ok`` is true when every entry checked out; ``entries`` is how many were checked
    before the first problem (all of them when ok); ``head_seq``/``head_hash`` are the last
    good entry's (record them elsewhere to detect a later rewrite); ``checkpoint`` is the
    checkpoint the chain started from, if any; ``warnings`` are findings that do not break
    the chain (fragments cut off by the writer, files left by an interrupted purge).
    """

    ok: bool
    entries: int
    first_bad: BadEntry | None
    head_seq: int
    head_hash: str
    checkpoint: dict[str, Any] | None = None
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        out = dataclasses.asdict(self)
        out["warnings"] = list(self.warnings)
        return out


@dataclass
class _Head:
    """The newest entry: where the next one chains from."""

    seq: int
    hash: str
    day: date | None
    path: Path | None = None
    size: int = -1


@dataclass
class _Cursor:
    """Verification state: what the next entry must look like."""

    seq: int
    prev: str
    entries: int = 0
    checkpoint: tuple[int, str] | None = None  # (seq, hash) an audit.purge must confirm
    confirmed: bool = True


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AuditLog:
    """The audit log in ``folder`` (created, mode 0700, if missing).

    :meth:`append` is safe across threads and processes (a thread lock and an exclusive
    ``flock`` on ``<folder>/.lock``) and across restarts (it continues from the newest
    entry on disk). With ``durable`` each entry is fsynced before :meth:`append` returns,
    so an acknowledged request's entry survives a crash. ``clock`` gives the current UTC
    time (injected for tests).
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        durable: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.durable = durable
        self.clock = clock or (lambda: datetime.now(UTC))
        self._thread_lock = threading.Lock()
        self._head_cache: _Head | None = None
        # Group commit: entries are written under the lock and made durable outside it,
        # one fsync covering every entry written before it (see _make_durable).
        self._sync_lock = threading.Lock()
        self._written = 0  # entries this instance has written (a ticket per entry)
        self._synced = 0  # tickets known to be on disk
        self._unsynced: set[Path] = set()
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise AuditError(f"{self.folder}: cannot create the audit folder: {exc}") from exc
        if not self.folder.is_dir():
            raise AuditError(f"{self.folder}: not a folder")

    # ------------------------------------------------------------------ writing

    def append(
        self,
        principal: str,
        role: str,
        action: str,
        *,
        case_id: str | None = None,
        reason: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write one entry and return it (with its ``seq`` and ``hash``).

        ``action`` is a dotted lower-case name (``search.create``, ``tracks.read``);
        actions starting with ``search`` need a ``case_id`` and a ``reason``, and a
        ``ValueError`` naming the missing field refuses them. ``parameters`` must be
        JSON-able (datetimes, dates, paths, sets and numpy scalars are converted).
        """
        if not isinstance(action, str) or not _ACTION.match(action):
            raise ValueError(
                f"action {action!r} must be lower-case letters, digits and '_.-' (<= 100)"
            )
        if action == PURGE_ACTION:
            raise ValueError(f"action {PURGE_ACTION!r} is reserved for AuditLog.purge_before")
        searching = action.startswith("search")
        fields = {
            "principal": _check_text("principal", principal, required=True),
            "role": _check_text("role", role, required=True),
            "case_id": _check_text("case_id", case_id, required=searching),
            "reason": _check_text("reason", reason, required=searching),
        }
        params = _normalise_parameters(parameters)
        with self._locked():
            entry = self._append_locked(action, fields, params)
            ticket = self._written
        self._make_durable(ticket)
        return entry

    def _make_durable(self, ticket: int) -> None:
        """Return once the entry with ``ticket`` is fsynced. Concurrent appends share
        fsyncs: whoever syncs first covers every entry written before it, and the others
        find their ticket already covered (an append still returns only once its own
        entry is on disk)."""
        if not self.durable:
            return
        with self._sync_lock:
            if self._synced >= ticket:
                return
            with self._thread_lock:
                target, paths = self._written, self._unsynced
                self._unsynced = set()
            try:
                for path in sorted(paths):
                    _fsync_file(path)
            except OSError as exc:
                with self._thread_lock:
                    self._unsynced |= paths
                raise AuditError(f"{self.folder}: cannot sync the audit log: {exc}") from exc
            self._synced = target

    def _append_locked(
        self, action: str, fields: dict[str, str | None], params: dict[str, Any]
    ) -> dict[str, Any]:
        head = self._head()
        now = self.clock()
        day = now.astimezone(UTC).date()
        if head.day is not None and day < head.day:
            day = head.day  # the clock went back: stay in the newest file, keep the order
        entry: dict[str, Any] = {
            "seq": head.seq + 1,
            "ts": _utc_text(now),
            "principal": fields["principal"],
            "role": fields["role"],
            "action": action,
            "case_id": fields["case_id"],
            "reason": fields["reason"],
            "parameters": params,
            "prev_hash": head.hash,
        }
        entry["hash"] = entry_hash(entry)
        data = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
        if len(data) > MAX_ENTRY_BYTES:
            raise ValueError(
                f"audit entry is {len(data)} bytes (parameters too large); "
                f"at most {MAX_ENTRY_BYTES}"
            )
        path = self._day_path(day)
        size = self._write_line(path, data)
        self._head_cache = _Head(entry["seq"], entry["hash"], day, path, size)
        self._written += 1
        self._unsynced.add(path)
        return entry

    def _write_line(self, path: Path, data: bytes) -> int:
        """Append ``data`` to ``path`` (not yet fsynced: :meth:`_make_durable`); returns
        the file's new size."""
        new = not path.exists()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if new and self.durable:
                fsync_path(self.folder)
        except OSError as exc:
            self._head_cache = None  # re-read the file next time: it may hold part of a line
            raise AuditError(f"{path}: cannot write the audit entry: {exc}") from exc
        return size

    # ------------------------------------------------------------------ reading

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every entry on disk, oldest first (unverified; see :meth:`verify`)."""
        for _, path in self._files():
            with path.open("rb") as f:
                for raw in f:
                    if raw.endswith(b"\n"):
                        yield json.loads(raw)

    def verify(self) -> VerifyReport:
        """Check the whole chain (from the checkpoint, if there is one).

        Reads what was on disk when it started; appends made meanwhile are left for the
        next verify. Writers are held off only while the file list is taken.
        """
        try:
            with self._locked():
                files = [(day, path, path.stat().st_size) for day, path in self._files()]
        except OSError:  # a read-only copy (an auditor's): no writers to hold off
            files = [(day, path, path.stat().st_size) for day, path in self._files()]
        return self._verify(files)

    def _verify(self, files: list[tuple[date, Path, int]]) -> VerifyReport:
        warnings: list[str] = [
            f"{p.name}.torn holds the fragment of an interrupted write"
            for _, p, _ in files
            if p.with_name(p.name + ".torn").exists()
        ]
        try:
            checkpoint = self._read_checkpoint()
        except AuditError as exc:
            bad = BadEntry(_CHECKPOINT, 0, None, "checkpoint", str(exc))
            return VerifyReport(False, 0, bad, -1, GENESIS, None, tuple(warnings))
        cursor = _Cursor(-1, GENESIS)
        if checkpoint is not None:
            key = (checkpoint["seq"], checkpoint["hash"])
            cursor = _Cursor(key[0], key[1], checkpoint=key, confirmed=False)
            through = date.fromisoformat(checkpoint["through"])
            leftover = [p.name for d, p, _ in files if d <= through]
            if leftover:
                warnings.append(
                    f"{len(leftover)} file(s) covered by the checkpoint are still present "
                    f"(an interrupted purge; purge again): {leftover}"
                )
            files = [f for f in files if f[0] > through]
        for index, (_, path, size) in enumerate(files):
            bad = self._verify_file(path, size, cursor, newest=index == len(files) - 1)
            if bad is not None:
                return VerifyReport(
                    False, cursor.entries, bad, cursor.seq, cursor.prev, checkpoint, tuple(warnings)
                )
        if not cursor.confirmed:
            assert checkpoint is not None
            bad = BadEntry(
                _CHECKPOINT,
                0,
                checkpoint["seq"],
                "checkpoint",
                f"checkpoint at seq {checkpoint['seq']} is not confirmed by an "
                f"{PURGE_ACTION!r} entry in the log (a forged or replaced checkpoint)",
            )
            return VerifyReport(
                False, cursor.entries, bad, cursor.seq, cursor.prev, checkpoint, tuple(warnings)
            )
        return VerifyReport(
            True, cursor.entries, None, cursor.seq, cursor.prev, checkpoint, tuple(warnings)
        )

    @staticmethod
    def _verify_file(path: Path, size: int, cursor: _Cursor, *, newest: bool) -> BadEntry | None:
        """Check one file's entries against ``cursor`` (advanced past the good ones); the
        first problem, or None."""
        with path.open("rb") as f:
            data = f.read(size)
        lines = data.split(b"\n")
        fragment = lines.pop()  # b"" when the file ends with a newline
        parsed: list[dict[str, Any] | str] = [_parse_entry(raw) for raw in lines]
        for number, entry in enumerate(parsed, start=1):
            if isinstance(entry, str):
                return BadEntry(path.name, number, None, "malformed", entry)
            bad = _check_entry(entry, cursor, parsed[number:])
            if bad is not None:
                kind, reason = bad
                if number == 1 and kind == "missing":
                    reason += " (lines deleted, or a whole day file removed before this one)"
                return BadEntry(path.name, number, entry["seq"], kind, reason)
            cursor.seq, cursor.prev = entry["seq"], entry["hash"]
            cursor.entries += 1
            if entry["action"] == PURGE_ACTION and _confirms(entry, cursor.checkpoint):
                cursor.confirmed = True
        if fragment:
            where = "the newest file's last line" if newest else "the last line of an older file"
            return BadEntry(
                path.name,
                len(parsed) + 1,
                None,
                "truncated",
                f"{where} is cut short ({len(fragment)} bytes without a newline): "
                "an interrupted write, or the file was truncated",
            )
        return None

    # ------------------------------------------------------------------ retention

    def purge_before(
        self,
        before: date,
        *,
        principal: str = "system",
        role: str = "admin",
        reason: str = "audit retention",
    ) -> dict[str, Any]:
        """Delete the day files dated before ``before``, keeping the chain verifiable.

        The newest file is always kept (the chain continues from it). The log must verify
        first (purging must not destroy the evidence of tampering). Then an
        ``audit.purge`` entry naming the last deleted entry's seq and hash is appended,
        ``checkpoint.json`` records them, and the files are deleted, in that order, so an
        interruption at any point leaves a log that verifies (and a purge to redo).
        Returns ``{"files": [...], "checkpoint": {...} | None, "entry": {...} | None}``.
        """
        fields = {
            "principal": _check_text("principal", principal, required=True),
            "role": _check_text("role", role, required=True),
            "case_id": None,
            "reason": _check_text("reason", reason, required=True),
        }
        with self._locked():
            files = [(day, path, path.stat().st_size) for day, path in self._files()]
            victims = [(d, p) for d, p, _ in files[:-1] if d < before]
            if not victims:
                return {"files": [], "checkpoint": None, "entry": None}
            report = self._verify(files)
            if not report.ok:
                raise AuditError(
                    f"{self.folder}: will not purge a log that does not verify: {report.first_bad}"
                )
            last = _last_entry(victims[-1][1])
            names = [p.name for _, p in victims]
            params = {
                "before": before.isoformat(),
                "files": names,
                "checkpoint_seq": last["seq"],
                "checkpoint_hash": last["hash"],
            }
            entry = self._append_locked(PURGE_ACTION, fields, params)
            if self.durable and self._head_cache is not None:  # on disk before deleting
                _fsync_file(self._head_cache.path)
            checkpoint = {
                "version": 1,
                "seq": last["seq"],
                "hash": last["hash"],
                "through": victims[-1][0].isoformat(),
                "purge_seq": entry["seq"],
                "purged_files": names,
                "created": entry["ts"],
            }
            self._write_checkpoint(checkpoint)
            for _, path in victims:
                path.unlink()
                path.with_name(path.name + ".torn").unlink(missing_ok=True)
            fsync_path(self.folder)
        return {"files": names, "checkpoint": checkpoint, "entry": entry}

    # ------------------------------------------------------------------ helpers

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the lock

    def _files(self) -> list[tuple[date, Path]]:
        """The day files, oldest first."""
        found = []
        for path in self.folder.iterdir():
            match = _FILE.match(path.name)
            if match:
                found.append((date.fromisoformat(match.group(1)), path))
        return sorted(found)

    def _day_path(self, day: date) -> Path:
        return self.folder / f"audit-{day.isoformat()}.jsonl"

    def _head(self) -> _Head:
        """The newest entry on disk (cached while the newest file is unchanged)."""
        files = self._files()
        cache = self._head_cache
        if cache is not None and files and files[-1][1] == cache.path:
            with contextlib.suppress(OSError):
                if cache.path.stat().st_size == cache.size:
                    return cache
        for day, path in reversed(files):
            self._cut_torn_tail(path)
            if path.stat().st_size == 0:
                continue
            last = _last_entry(path)
            return _Head(last["seq"], last["hash"], day, path, path.stat().st_size)
        checkpoint = self._read_checkpoint()
        if checkpoint is not None:
            after = date.fromisoformat(checkpoint["through"]) + timedelta(days=1)
            return _Head(checkpoint["seq"], checkpoint["hash"], after)
        return _Head(-1, GENESIS, None)

    def _cut_torn_tail(self, path: Path) -> None:
        """Move an unterminated last line (a write interrupted by a crash: never
        acknowledged) to ``<file>.torn``, so the chain continues from the last whole entry.
        Verify lists the ``.torn`` file among its warnings."""
        size = path.stat().st_size
        if size == 0:
            return
        with path.open("rb+") as f:
            start = max(0, size - 2 * MAX_ENTRY_BYTES)
            f.seek(start)
            tail = f.read()
            if tail.endswith(b"\n"):
                return
            cut = tail.rfind(b"\n") + 1
            if cut == 0 and start > 0:
                raise AuditError(f"{path}: last line is longer than {MAX_ENTRY_BYTES} bytes")
            torn = path.with_name(path.name + ".torn")
            with torn.open("ab") as t:
                t.write(tail[cut:] + b"\n")
                t.flush()
                os.fsync(t.fileno())
            f.truncate(start + cut)
            f.flush()
            os.fsync(f.fileno())
        log.warning("%s: cut off an interrupted write's fragment into %s", path, torn)

    @property
    def _checkpoint_path(self) -> Path:
        return self.folder / _CHECKPOINT

    def _read_checkpoint(self) -> dict[str, Any] | None:
        path = self._checkpoint_path
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise AuditError(f"{path}: unreadable checkpoint: {exc}") from exc
        ok = (
            isinstance(data, dict)
            and isinstance(data.get("seq"), int)
            and isinstance(data.get("hash"), str)
            and _HEX64.match(data["hash"])
            and isinstance(data.get("through"), str)
        )
        if not ok:
            raise AuditError(f"{path}: a checkpoint needs an int 'seq', a 'hash' and 'through'")
        try:
            date.fromisoformat(data["through"])
        except ValueError as exc:
            raise AuditError(f"{path}: 'through' {data['through']!r} is not a date") from exc
        return data

    def _write_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        path = self._checkpoint_path
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(checkpoint, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_path(self.folder)


def _parse_entry(raw: bytes) -> dict[str, Any] | str:
    """The entry on one line, or why it is not one."""
    try:
        entry = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"not JSON: {exc}"
    if not isinstance(entry, dict) or set(entry) != set(ENTRY_FIELDS):
        return f"not an audit entry: expected exactly the fields {list(ENTRY_FIELDS)}"
    if not isinstance(entry["seq"], int) or not isinstance(entry["hash"], str):
        return "not an audit entry: 'seq' must be an integer and 'hash' a string"
    return entry


def _check_entry(
    entry: dict[str, Any], cursor: _Cursor, rest: list[dict[str, Any] | str]
) -> tuple[str, str] | None:
    """``(kind, reason)`` if ``entry`` does not follow ``cursor``; ``rest`` are the file's
    later lines (to tell a reordered entry from a missing one)."""
    seq, expected = entry["seq"], cursor.seq + 1
    try:
        recomputed = entry_hash(entry)
    except ValueError as exc:
        return "malformed", f"entry cannot be hashed: {exc}"
    if recomputed != entry["hash"]:
        return "edited", f"hash mismatch: entry seq {seq} was changed after it was written"
    if seq != expected:
        return _order_problem(seq, expected, rest)
    if entry["prev_hash"] != cursor.prev:
        return (
            "edited",
            f"prev_hash of seq {seq} does not match the hash of seq {cursor.seq}: an "
            "earlier entry was rewritten (or the checkpoint changed)",
        )
    return None


def _order_problem(seq: int, expected: int, rest: list[dict[str, Any] | str]) -> tuple[str, str]:
    """Why ``seq`` came where ``expected`` should have: reordered, or entries missing."""
    if seq < expected:
        return "reordered", f"seq {seq} comes after seq {expected - 1}: entries out of order"
    if any(isinstance(e, dict) and e["seq"] == expected for e in rest):
        return "reordered", f"seq {seq} comes before seq {expected}: entries out of order"
    missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
    return "missing", f"seq {missing} missing before seq {seq}"


def _confirms(entry: dict[str, Any], key: tuple[int, str] | None) -> bool:
    params = entry["parameters"]
    return (
        key is not None
        and isinstance(params, dict)
        and (params.get("checkpoint_seq"), params.get("checkpoint_hash")) == key
    )


def _last_entry(path: Path) -> dict[str, Any]:
    """The last whole entry of ``path`` (which must end with a newline)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        f.seek(max(0, size - 2 * MAX_ENTRY_BYTES))
        tail = f.read()
    lines = tail.split(b"\n")
    if lines[-1] != b"" or len(lines) < 2:
        raise AuditError(f"{path}: last line is cut short; run `sightline audit verify`")
    entry = _parse_entry(lines[-2])
    if isinstance(entry, str):
        raise AuditError(
            f"{path}: cannot continue the chain from the last line ({entry}); "
            "run `sightline audit verify`"
        )
    return entry

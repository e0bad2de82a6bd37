"""The coordinator's write-ahead log: framed, checksummed, fsynced records in segments.

A batch of tracklets is acknowledged to a camera only after :meth:`WriteAheadLog.append`
returned, and ``append`` returns only after the record is on disk (``os.fsync`` of the
segment, and of the folder when a segment is created). A restarted coordinator
:meth:`~WriteAheadLog.replay`\\ s the log to rebuild its state.

Layout: ``<folder>/wal-<n>.log`` segments (``n`` zero-padded, increasing); a segment
rolls over once the next record would take it past ``segment_bytes``. Each record is::

    magic  b"SLW1"        4 bytes (format version 1)
    length uint32 LE      4 bytes, payload length
    crc32  uint32 LE      4 bytes, CRC-32 of the length field and the payload
    payload               length bytes

Damage is found, reported and contained rather than fatal. A stretch that does not parse
as an intact record (bad magic, bad CRC, or a record running past the end of its
segment) is a :class:`WalDamage` (segment, byte offset, problem), logged as a warning and
kept in :attr:`WriteAheadLog.damage`. Reading skips the stretch up to the next intact
record of the same segment, if any (magic, length and CRC must all check out, so a
false match is a 2**-32 event), and every other segment is replayed as usual: a flipped
byte costs the one record it is in. Opening the log for appending repairs the one damage
a crash causes on its own, a torn tail of the last segment (a half-written record, or
unwritten zeros, with nothing intact after it), by cutting it off, so new records follow
good ones; it is reported with ``repaired=True``. Damage anywhere else is left in place
for inspection.

:func:`encode_tracklets` / :func:`decode_tracklets` turn a batch of tracklets into a
record payload and back, exactly (see :data:`TRACKLET_BATCH_FORMAT`).
"""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa

from sightline.durable import fsync_path
from sightline.tracking.tracklets import Tracklet

try:  # POSIX only; elsewhere two writers on one log are not prevented
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "RECORD_MAGIC",
    "TRACKLET_BATCH_FORMAT",
    "WalDamage",
    "WalError",
    "WriteAheadLog",
    "decode_tracklets",
    "encode_tracklets",
]

log = logging.getLogger(__name__)

RECORD_MAGIC = b"SLW1"
_HEADER = struct.Struct("<4sII")  # magic, payload length, crc32
_SEGMENT = re.compile(r"^wal-(\d+)\.log$")
_MAX_PAYLOAD = 2**32 - 1


class WalError(OSError):
    """The log cannot be used (folder not writable, locked by another writer, ...)."""


@dataclass(frozen=True)
class WalDamage:
    """A damaged place in the log: ``segment`` file, byte ``offset`` of the bad record,
    and what is wrong (``problem``); ``repaired`` when it was a torn tail cut off."""

    segment: Path
    offset: int
    problem: str
    repaired: bool = False

    def __str__(self) -> str:
        note = " (torn tail, cut off)" if self.repaired else ""
        return f"{self.segment}@{self.offset}: {self.problem}{note}"


def _frame(payload: bytes) -> bytes:
    length = len(payload).to_bytes(4, "little")
    crc = zlib.crc32(payload, zlib.crc32(length))
    return _HEADER.pack(RECORD_MAGIC, len(payload), crc) + payload


@dataclass
class _Scan:
    """What reading one segment found: intact payloads, damage, and whether the last
    damage is a tail (nothing intact follows it), where a crash mid-append would leave it."""

    payloads: list[bytes] = field(default_factory=list)
    damage: list[WalDamage] = field(default_factory=list)
    tail_damaged: bool = False


def _parse(data: bytes, offset: int) -> tuple[bytes, int] | str:
    """The payload of the record at ``offset`` and where the next one starts, or what is
    wrong with it."""
    left = len(data) - offset
    if left < _HEADER.size:
        return f"truncated header ({left} of {_HEADER.size} bytes)"
    magic, length, crc = _HEADER.unpack_from(data, offset)
    if magic != RECORD_MAGIC:
        return f"bad magic {magic!r}"
    end = offset + _HEADER.size + length
    if end > len(data):
        return f"truncated record (needs {end - offset} bytes, {left} left)"
    payload = data[offset + _HEADER.size : end]
    if zlib.crc32(payload, zlib.crc32(length.to_bytes(4, "little"))) != crc:
        return "CRC mismatch"
    return payload, end


def _next_intact(data: bytes, start: int) -> int | None:
    """Offset of the first intact record at or after ``start`` (magic, length and CRC all
    check out), or None."""
    pos = data.find(RECORD_MAGIC, start)
    while pos != -1:
        if not isinstance(_parse(data, pos), str):
            return pos
        pos = data.find(RECORD_MAGIC, pos + 1)
    return None


def _scan_segment(segment: Path) -> _Scan:
    """Every intact record of ``segment`` and every damaged stretch between them."""
    data = segment.read_bytes()
    scan = _Scan()
    offset = 0
    while offset < len(data):
        parsed = _parse(data, offset)
        if not isinstance(parsed, str):
            scan.payloads.append(parsed[0])
            offset = parsed[1]
            continue
        resume = _next_intact(data, offset + 1)
        skipped = (len(data) if resume is None else resume) - offset
        scan.damage.append(WalDamage(segment, offset, f"{parsed}; {skipped} bytes skipped"))
        if resume is None:
            scan.tail_damaged = True
            break
        offset = resume
    return scan


class WriteAheadLog:
    """An append-only, fsynced, checksummed log of byte records in rolling segments.

    One writer per folder (an exclusive lock is taken where the OS supports it). Opening
    scans the last segment to find where to append and cuts off a torn tail (reported in
    :attr:`damage`). ``segment_bytes`` bounds how much one replay holds in memory (a
    segment is read whole) and how many files the log has; it does not bound what damage
    costs, since intact records after a damaged stretch are still found.
    """

    def __init__(self, folder: str | Path, *, segment_bytes: int = 64 * 1024 * 1024) -> None:
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be >= 1, got {segment_bytes}")
        self.folder = Path(folder)
        self.segment_bytes = segment_bytes
        self.damage: list[WalDamage] = []
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._lock: BinaryIO | None = self._take_lock()
        except WalError:
            raise
        except OSError as exc:
            raise WalError(f"write-ahead log {self.folder}: cannot open: {exc}") from exc
        self._file: BinaryIO | None = None
        self._size = 0
        self._number = 0
        self._open_tail()

    # ------------------------------------------------------------------ public

    def segments(self) -> list[Path]:
        """The segment files, oldest first."""
        found = [(_number(p), p) for p in self.folder.iterdir() if _SEGMENT.match(p.name)]
        return [p for _, p in sorted(found)]

    def append(self, payload: bytes) -> None:
        """Write one record and return once it is durable (fsynced)."""
        if len(payload) > _MAX_PAYLOAD:
            raise ValueError(f"record of {len(payload)} bytes exceeds the 4 GiB limit")
        record = _frame(payload)
        full = bool(self._size) and self._size + len(record) > self.segment_bytes
        if self._file is None or full:
            self._open_for_append(roll=full or self._number == 0)
        f = self._file
        assert f is not None
        try:
            _write_all(f, record)
            os.fsync(f.fileno())
        except OSError:
            # e.g. a full disk: take the partial record back so a later append after the
            # cause is fixed does not follow garbage
            f.truncate(self._size)
            raise
        self._size += len(record)

    def roll(self) -> Path:
        """Start a new segment (the next append goes there); returns its path."""
        self._open_for_append(roll=True)
        return self._segment_path(self._number)

    def replay(self) -> Iterator[bytes]:
        """Every intact record, oldest first; damage is logged and added to :attr:`damage`."""
        for segment in self.segments():
            scan = _scan_segment(segment)
            self._report(scan.damage)
            yield from scan.payloads

    def check(self) -> list[WalDamage]:
        """Scan every segment; the damage in the log now (also logged and kept in
        :attr:`damage`)."""
        found = [d for segment in self.segments() for d in _scan_segment(segment).damage]
        self._report(found)
        return found

    def remove_segments_before(self, segment: str | Path) -> list[Path]:
        """Delete the segments older than ``segment``, e.g. once the store holds their
        content durably (see :meth:`roll`); returns what was deleted. The segment being
        appended to is never deleted."""
        if not _SEGMENT.match(Path(segment).name):
            raise ValueError(f"{segment} is not a segment of {self.folder}")
        limit = min(_number(Path(segment)), self._number)
        removed = [p for p in self.segments() if _number(p) < limit]
        for path in removed:
            path.unlink()
        if removed:
            fsync_path(self.folder)
        return removed

    def close(self) -> None:
        """Close the open segment and release the lock."""
        self._close_file()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers

    def _take_lock(self) -> BinaryIO:
        lock = open(self.folder / "LOCK", "a+b")  # noqa: SIM115 - held for the log's life
        if fcntl is None:  # pragma: no cover
            return lock
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            lock.close()
            raise WalError(f"write-ahead log {self.folder} is open in another writer") from exc
        return lock

    def _segment_path(self, number: int) -> Path:
        return self.folder / f"wal-{number:08d}.log"

    def _open_tail(self) -> None:
        """Find where to append: the end of the last segment, after cutting a torn tail."""
        segments = self.segments()
        if not segments:
            return
        last = segments[-1]
        self._number = _number(last)
        scan = _scan_segment(last)
        self._size = last.stat().st_size
        if scan.tail_damaged:
            tail = scan.damage[-1]
            with last.open("r+b") as f:
                f.truncate(tail.offset)
                os.fsync(f.fileno())
            self._size = tail.offset
            scan.damage[-1] = WalDamage(last, tail.offset, tail.problem, repaired=True)
        self._report(scan.damage)

    def _open_for_append(self, *, roll: bool) -> None:
        self._close_file()
        if roll:
            self._number += 1
            self._size = 0
        path = self._segment_path(self._number)
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - held open for appends
        if roll:
            fsync_path(self.folder)  # the new file's name must survive a crash too

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _report(self, damage: list[WalDamage]) -> None:
        known = {(d.segment, d.offset, d.problem) for d in self.damage}
        for d in damage:
            if (d.segment, d.offset, d.problem) in known:
                continue
            known.add((d.segment, d.offset, d.problem))
            self.damage.append(d)
            log.warning("write-ahead log damage: %s", d)


def _write_all(f: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = f.write(view)
        if not written:
            raise OSError(f"write to {f.name} made no progress")
        view = view[written:]


def _number(segment: Path) -> int:
    match = _SEGMENT.match(segment.name)
    if match is None:
        raise ValueError(f"{segment} is not a write-ahead log segment (wal-<n>.log)")
    return int(match.group(1))


# --------------------------------------------------------------------------- payloads

TRACKLET_BATCH_FORMAT = "sightline.tracklets/1"
"""Schema-metadata tag of a tracklet batch payload (an Arrow IPC stream, one row per
tracklet). Scalar fields are columns of their own type; each numpy array field ``a`` is
three columns: ``a`` (raw C-order bytes), ``a.dtype`` (numpy dtype string, e.g. ``<f4``)
and ``a.shape`` (list of int64), so arrays come back with their exact dtype and shape;
``thumbnail_jpeg`` is a binary column."""

_ARRAY_FIELDS = ("ts", "boxes", "scores", "foot_px", "foot_world", "embeddings", "embedding_mean")
_SCALAR_FIELDS: dict[str, pa.DataType] = {
    "tracklet_id": pa.string(),
    "camera_id": pa.string(),
    "track_id": pa.int64(),
    "version": pa.int64(),
    "final": pa.bool_(),
    "upper_colour": pa.string(),
    "upper_colour_confidence": pa.float64(),
    "lower_colour": pa.string(),
    "lower_colour_confidence": pa.float64(),
    "height_m": pa.float64(),
    "quality": pa.float64(),
    "thumbnail_jpeg": pa.binary(),
    "hat_probability": pa.float64(),
    "bag_probability": pa.float64(),
}
_ADDED_FIELDS = ("hat_probability", "bag_probability")  # absent from older payloads: None


def encode_tracklets(tracklets: list[Tracklet]) -> bytes:
    """A batch of tracklets as a WAL payload (:data:`TRACKLET_BATCH_FORMAT`)."""
    columns: dict[str, pa.Array] = {
        name: pa.array([getattr(t, name) for t in tracklets], type=kind)
        for name, kind in _SCALAR_FIELDS.items()
    }
    for name in _ARRAY_FIELDS:
        arrays = [np.ascontiguousarray(getattr(t, name)) for t in tracklets]
        if any(a.dtype.hasobject for a in arrays):
            raise ValueError(f"tracklet field {name!r}: object arrays cannot be encoded")
        columns[name] = pa.array([a.tobytes() for a in arrays], type=pa.large_binary())
        columns[f"{name}.dtype"] = pa.array([a.dtype.str for a in arrays], type=pa.string())
        columns[f"{name}.shape"] = pa.array(
            [list(a.shape) for a in arrays], type=pa.list_(pa.int64())
        )
    table = pa.table(columns).replace_schema_metadata({"format": TRACKLET_BATCH_FORMAT})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def decode_tracklets(payload: bytes) -> list[Tracklet]:
    """The tracklets of a payload made by :func:`encode_tracklets`.

    Raises ``ValueError`` for a payload of another format or version.
    """
    try:
        table = pa.ipc.open_stream(payload).read_all()
    except pa.ArrowInvalid as exc:
        raise ValueError(f"not a tracklet batch payload: {exc}") from exc
    fmt = (table.schema.metadata or {}).get(b"format", b"").decode()
    if fmt != TRACKLET_BATCH_FORMAT:
        raise ValueError(f"tracklet batch format {fmt!r} is not {TRACKLET_BATCH_FORMAT!r}")
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    out = []
    for i in range(table.num_rows):
        fields: dict[str, Any] = {
            name: columns[name][i]
            for name in _SCALAR_FIELDS
            if name in columns or name not in _ADDED_FIELDS
        }
        for name in _ARRAY_FIELDS:
            dtype = np.dtype(columns[f"{name}.dtype"][i])
            raw = np.frombuffer(columns[name][i], dtype=dtype)
            fields[name] = raw.reshape(columns[f"{name}.shape"][i]).copy()
        out.append(Tracklet(**fields))
    return out

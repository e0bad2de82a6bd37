"""The fused-track store: Parquet tables partitioned by date and camera, plus thumbnails.

Anyone with polars can read it without Sightline running::

    pl.scan_parquet(f"{root}/tracklets/**/*.parquet", hive_partitioning=True)

Layout under ``root`` (``date`` is the UTC date of :data:`DATE_COLUMN`)::

    tracklets/date=YYYY-MM-DD/camera_id=<id>/part-<n>.parquet   TRACKLET_SCHEMA
    sightings/date=YYYY-MM-DD/camera_id=<id>/part-<n>.parquet   SIGHTING_SCHEMA
    identities/date=YYYY-MM-DD/part-<n>.parquet                  IDENTITY_SCHEMA
    events/date=YYYY-MM-DD/part-<n>.parquet                      EVENT_SCHEMA
    zone_counts/date=YYYY-MM-DD/part-<n>.parquet                 ZONE_COUNT_SCHEMA
    camera_counts/date=YYYY-MM-DD/camera_id=<id>/part-<n>.parquet CAMERA_COUNT_SCHEMA
    ground_points/date=YYYY-MM-DD/part-<n>.parquet               GROUND_POINT_SCHEMA
    density_alerts/date=YYYY-MM-DD/part-<n>.parquet              DENSITY_ALERT_SCHEMA
    thumbnails/camera_id=<id>/<tracklet_id>.jpg

The tables are append-only logs of facts; readers take the newest row per key: the
highest ``version`` per ``tracklet_id`` (tracklets, sightings), the highest ``seq`` per
``tracklet_id`` (identities), one row per ``seq`` (events). Rows may repeat (after a
replay, or a retried flush); the same rule makes that harmless.
:mod:`sightline.store.queries` applies these rules.

:class:`TrackStore` buffers rows and writes them on :meth:`TrackStore.flush`: thumbnails
first, then the parts that refer to them. A local part is written under a temporary name,
fsynced and renamed (readers never see half a file). A URL root (``s3://``, ``gs://``,
``az://``, ...) is written with polars' cloud support (an object PUT is atomic) and the
thumbnails with fsspec; ``file://`` URLs are local folders.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlparse

import numpy as np
import polars as pl

from sightline.config import StorageConfig
from sightline.durable import fsync_path
from sightline.tracking.sink import TRACKLET_SCHEMA, tracklets_frame
from sightline.tracking.tracklets import Tracklet

__all__ = [
    "CAMERA_COUNT_SCHEMA",
    "DATE_COLUMN",
    "DENSITY_ALERT_SCHEMA",
    "EVENT_KINDS",
    "EVENT_SCHEMA",
    "GROUND_POINT_SCHEMA",
    "IDENTITY_SCHEMA",
    "PARTITIONS",
    "SIGHTING_SCHEMA",
    "TABLES",
    "ZONE_COUNT_SCHEMA",
    "StoreError",
    "TrackStore",
    "commit_local",
    "is_url",
    "sightings_frame",
    "thumbnail_ref",
    "tracklet_rows",
]

_UTC_US = pl.Datetime("us", "UTC")

SIGHTING_SCHEMA: dict[str, pl.DataType] = {
    "global_id": pl.String(),
    "camera_id": pl.String(),
    "tracklet_id": pl.String(),
    "version": pl.Int32(),
    "final": pl.Boolean(),
    "t_start": _UTC_US,
    "t_end": _UTC_US,
    "n_frames": pl.Int32(),
    "world_x": pl.Float32(),
    "world_y": pl.Float32(),
    "first_x": pl.Float32(),
    "first_y": pl.Float32(),
    "last_x": pl.Float32(),
    "last_y": pl.Float32(),
    "upper_colour": pl.String(),
    "lower_colour": pl.String(),
    "height_m": pl.Float32(),
    "quality": pl.Float32(),
    "thumbnail": pl.String(),
}
"""One row per tracklet version: where and when a person was seen by one camera.
``global_id`` is the identity when the row was written (null if none yet); a later merge
or split is in the identities table. ``world_x/y`` is the median ground position,
``first_*``/``last_*`` the first and last; ``thumbnail`` is a path relative to the root."""

IDENTITY_SCHEMA: dict[str, pl.DataType] = {
    "tracklet_id": pl.String(),
    "global_id": pl.String(),
    "seq": pl.Int64(),
    "assigned_at": _UTC_US,
    "reason": pl.String(),
}
"""Identity assignments: ``tracklet_id`` belongs to ``global_id`` from ``seq`` on (a
coordinator-wide, increasing number); the highest ``seq`` per tracklet wins."""

EVENT_KINDS = ("new", "assign", "merge", "split")
EVENT_SCHEMA: dict[str, pl.DataType] = {
    "seq": pl.Int64(),
    "ts": _UTC_US,
    "kind": pl.String(),
    "global_ids": pl.List(pl.String()),
    "tracklet_ids": pl.List(pl.String()),
    "reason": pl.String(),
}
"""Fusion events, one per ``seq``: ``kind`` is one of :data:`EVENT_KINDS`."""

ZONE_COUNT_SCHEMA: dict[str, pl.DataType] = {
    "zone_id": pl.String(),
    "ts": _UTC_US,
    "count": pl.Float32(),
    "peak": pl.Int32(),
    "density_per_m2": pl.Float32(),
    "coverage": pl.Float32(),
    "naive_count": pl.Float32(),
    "n_cameras": pl.Int16(),
    "frames": pl.Int16(),
}
"""People in a zone during the second starting at ``ts``, counted once across cameras:
``count`` is the mean over the second's frame times, ``peak`` the most at one time,
``density_per_m2`` is ``count`` over the zone's area. ``coverage`` (0..1) is the share of
the zone the reporting cameras see (below 1 the count misses whoever stands out of view);
``naive_count`` sums every camera's own count (double views counted twice);
``n_cameras`` cameras seeing part of the zone reported ``frames`` frame times."""

CAMERA_COUNT_SCHEMA: dict[str, pl.DataType] = {
    "camera_id": pl.String(),
    "ts": _UTC_US,
    "count": pl.Float32(),
    "peak": pl.Int32(),
    "frames": pl.Int16(),
}
"""People one camera sees (tracked, anywhere in view) during the second starting at
``ts``: the mean and the most per frame over ``frames`` frames."""

GROUND_POINT_SCHEMA: dict[str, pl.DataType] = {
    "ts": _UTC_US,
    "world_x": pl.Float32(),
    "world_y": pl.Float32(),
    "n_views": pl.Int8(),
}
"""Where people stood, one sample per second (the second's first frame time), each
person once however many cameras saw them (``n_views``); heatmaps are made from it."""

DENSITY_ALERT_SCHEMA: dict[str, pl.DataType] = {
    "alert_id": pl.String(),
    "zone_id": pl.String(),
    "state": pl.String(),
    "ts": _UTC_US,
    "t_start": _UTC_US,
    "t_peak": _UTC_US,
    "t_end": _UTC_US,
    "peak_density": pl.Float32(),
    "peak_count": pl.Float32(),
    "alert_density": pl.Float32(),
    "clear_density": pl.Float32(),
}
"""Crowd alerts as a log: a ``start`` row when a zone's density has stayed above
``alert_density`` for the hold time, an ``end`` row (with ``t_end``) once it has stayed
below ``clear_density`` as long; ``peak_*`` as known at ``ts``. The newest row per
``alert_id`` is the alert's state."""

TABLES: dict[str, dict[str, pl.DataType]] = {
    "tracklets": TRACKLET_SCHEMA,
    "sightings": SIGHTING_SCHEMA,
    "identities": IDENTITY_SCHEMA,
    "events": EVENT_SCHEMA,
    "zone_counts": ZONE_COUNT_SCHEMA,
    "camera_counts": CAMERA_COUNT_SCHEMA,
    "ground_points": GROUND_POINT_SCHEMA,
    "density_alerts": DENSITY_ALERT_SCHEMA,
}
"""Every table's file columns (the ``date`` partition column comes from the path)."""

PARTITIONS: dict[str, tuple[str, ...]] = {
    "tracklets": ("date", "camera_id"),
    "sightings": ("date", "camera_id"),
    "identities": ("date",),
    "events": ("date",),
    "zone_counts": ("date",),
    "camera_counts": ("date", "camera_id"),
    "ground_points": ("date",),
    "density_alerts": ("date",),
}
"""Hive partition columns of each table, outermost first."""

DATE_COLUMN = {
    "tracklets": "t_start",
    "sightings": "t_start",
    "identities": "assigned_at",
    "events": "ts",
    "zone_counts": "ts",
    "camera_counts": "ts",
    "ground_points": "ts",
    "density_alerts": "ts",
}
"""The time column whose UTC date is a row's ``date`` partition."""

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class StoreError(OSError):
    """The store cannot be written or read where it should be (the message names it)."""


def is_url(root: str | Path) -> bool:
    """Whether ``root`` is a URL (``scheme://...``) rather than a local folder."""
    return isinstance(root, str) and bool(_URL.match(root))


def thumbnail_ref(camera_id: str, tracklet_id: str) -> str:
    """The thumbnail's path relative to the store root."""
    for name in (camera_id, tracklet_id):
        if not _SAFE_NAME.match(name):
            raise ValueError(f"{name!r} cannot name a file (letters, digits, '_.-' only)")
    return f"thumbnails/camera_id={camera_id}/{tracklet_id}.jpg"


def _ground_summary(foot_world: np.ndarray) -> list[float]:
    """Median, first and last finite ground point (nan where there are none)."""
    points = np.asarray(foot_world, dtype=np.float64).reshape(-1, 2)
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) == 0:
        return [float("nan")] * 6
    median = np.median(points, axis=0)
    return [*median.tolist(), *points[0].tolist(), *points[-1].tolist()]


# the store's tracklet rows are the tracking sink's table (one builder for both)
tracklet_rows = tracklets_frame


def sightings_frame(
    tracklets: list[Tracklet], global_ids: Mapping[str, str], thumbnails: list[str | None]
) -> pl.DataFrame:
    """One :data:`SIGHTING_SCHEMA` row per tracklet (``thumbnails``: one ref each)."""
    rows = []
    for t, thumb in zip(tracklets, thumbnails, strict=True):
        world = _ground_summary(t.foot_world)
        rows.append(
            {
                "global_id": global_ids.get(t.tracklet_id),
                "camera_id": t.camera_id,
                "tracklet_id": t.tracklet_id,
                "version": t.version,
                "final": t.final,
                "t_start": round(t.t_start * 1_000_000),
                "t_end": round(t.t_end * 1_000_000),
                "n_frames": len(t.ts),
                **dict(
                    zip(
                        ("world_x", "world_y", "first_x", "first_y", "last_x", "last_y"),
                        world,
                        strict=True,
                    )
                ),
                "upper_colour": t.upper_colour,
                "lower_colour": t.lower_colour,
                "height_m": t.height_m,
                "quality": t.quality,
                "thumbnail": thumb,
            }
        )
    schema = {**SIGHTING_SCHEMA, "t_start": pl.Int64(), "t_end": pl.Int64()}
    return pl.DataFrame(rows, schema=schema).with_columns(pl.col("t_start", "t_end").cast(_UTC_US))


def _as_dict(row: Any) -> dict[str, Any]:
    if isinstance(row, Mapping):
        return dict(row)
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        return dataclasses.asdict(row)
    if hasattr(row, "_asdict"):
        return dict(row._asdict())
    raise TypeError(f"a row must be a mapping, dataclass or named tuple, not {type(row)!r}")


def _utc(value: Any) -> datetime:
    """A time value (aware/naive-as-UTC datetime, or epoch seconds) as an aware UTC datetime."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, int | float | np.integer | np.floating):
        return datetime.fromtimestamp(float(value), UTC)
    raise TypeError(f"expected a datetime or epoch seconds, got {value!r}")


def _rows_frame(
    rows: pl.DataFrame | Iterable[Any],
    schema: dict[str, pl.DataType],
    time_column: str,
    defaults: Mapping[str, Any] | None = None,
) -> pl.DataFrame:
    """Rows given as a frame, mappings, dataclasses or named tuples, as ``schema``;
    ``defaults`` fill columns the rows lack."""
    defaults = defaults or {}
    if isinstance(rows, pl.DataFrame):
        frame = rows.with_columns(
            pl.lit(_utc(v) if c == time_column else v).alias(c)
            for c, v in defaults.items()
            if c not in rows.columns
        )
        missing = [c for c in schema if c not in frame.columns]
        if missing:
            raise ValueError(f"rows lack columns {missing}; expected {list(schema)}")
        frame = frame.select(list(schema))
        if frame.schema[time_column].is_numeric():
            frame = frame.with_columns(
                (pl.col(time_column) * 1_000_000).round().cast(pl.Int64).cast(_UTC_US)
            )
        return frame.cast(schema)  # type: ignore[arg-type]
    dicts = []
    for row in rows:
        d = {**defaults, **_as_dict(row)}
        missing = [c for c in schema if c not in d]
        if missing:
            raise ValueError(f"row {d!r} lacks {missing}; expected {list(schema)}")
        dicts.append({c: (_utc(d[c]) if c == time_column else d[c]) for c in schema})
    return pl.DataFrame(dicts, schema=schema)


def _check_events(events: pl.DataFrame) -> None:
    bad = events.filter(~pl.col("kind").is_in(EVENT_KINDS))["kind"].unique().to_list()
    if bad:
        raise ValueError(f"event kind(s) {bad} not among {list(EVENT_KINDS)}")


_ALWAYS = 2**62  # the "version" of a thumbnail copied in as is
_FSYNC_THREADS = 16


class _Thumbnails:
    """Thumbnails waiting to be written, the newest tracklet version's each.

    It remembers which version is on disk for the most recently written ``remember``
    thumbnails, so a late, older version (a retried batch) does not replace a newer
    thumbnail; late versions arrive within seconds, so a bounded memory is enough.
    """

    def __init__(self, remember: int = 100_000) -> None:
        self.remember = remember
        self.pending: dict[str, tuple[int, bytes]] = {}
        self.on_disk: OrderedDict[str, int] = OrderedDict()

    def offer(self, ref: str, version: int, jpeg: bytes) -> None:
        current = self.pending.get(ref)
        if current is None or version >= current[0]:
            self.pending[ref] = (version, jpeg)

    def due(self) -> dict[str, bytes]:
        """The pending thumbnails newer than what is on disk (stale ones are dropped)."""
        for ref, (version, _) in list(self.pending.items()):
            if version < self.on_disk.get(ref, -1):
                del self.pending[ref]
        return {ref: jpeg for ref, (_, jpeg) in self.pending.items()}

    def written(self) -> None:
        """Everything :meth:`due` returned is on disk now."""
        for ref, (version, _) in self.pending.items():
            self.on_disk[ref] = version
            self.on_disk.move_to_end(ref)
        self.pending.clear()
        while len(self.on_disk) > self.remember:
            self.on_disk.popitem(last=False)


def _missing_parents(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


def commit_local(files: dict[Path, Callable[[Path], object]], durable: bool) -> None:
    """Write each file under a temporary name, then rename it into place.

    With ``durable``, the files are fsynced before the renames and the folders after, so
    a file is either absent or complete after a crash. The fsyncs run in threads: a
    journaling filesystem commits concurrent fsyncs together, ~20x faster than in turn.
    """
    folders: set[Path] = set()
    temporary = {}
    for path, write in files.items():
        created = _missing_parents(path.parent)
        path.parent.mkdir(parents=True, exist_ok=True)
        folders.update(p.parent for p in created)  # a new folder's name lives in its parent
        folders.add(path.parent)
        temporary[path] = path.with_name(f".{path.name}.tmp")
        write(temporary[path])
    if durable:
        _fsync_all(list(temporary.values()))
    for path, tmp in temporary.items():
        os.replace(tmp, path)
    if durable:
        _fsync_all(sorted(folders))


def _fsync_all(paths: list[Path]) -> None:
    if len(paths) < 2:
        for path in paths:
            fsync_path(path)
        return
    with ThreadPoolExecutor(min(_FSYNC_THREADS, len(paths))) as pool:
        list(pool.map(fsync_path, paths))


_PART = re.compile(r"^part-(\d+)\.parquet$")


def _next_part_number(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _PART.match(p.name))]
    return max(numbers, default=-1) + 1


def _partitions(table: str, rows: pl.DataFrame) -> Iterator[tuple[str, pl.DataFrame]]:
    """``rows`` split by partition: (``table/date=.../camera_id=...``, rows)."""
    keyed = rows.with_columns(pl.col(DATE_COLUMN[table]).dt.date().alias("date"))
    columns = list(PARTITIONS[table])
    for key, part in keyed.partition_by(columns, as_dict=True, maintain_order=True).items():
        folder = "/".join(
            f"{name}={value.isoformat() if name == 'date' else value}"
            for name, value in zip(columns, key, strict=True)
        )
        yield f"{table}/{folder}", part.drop("date")


class TrackStore:
    """Writes the store's tables under ``root`` (a local folder, or a URL polars can write).

    Writes are buffered: :meth:`flush` writes them, and runs by itself once ``flush_rows``
    rows wait, or (with ``flush_after_s``) once the oldest buffered row has waited that
    long, so a live service's readers see rows within seconds; raising either makes
    fewer, larger parts and holds more in memory (a tracklet and its thumbnail take
    ~10-50 kB). ``durable`` fsyncs local files before and after
    renaming them into place: a flushed part survives a crash, which lets the caller drop
    write-ahead log segments it covers; without it a crash may lose recent parts (never
    leave half ones). ``storage_options`` go to polars and fsspec for URL roots
    (credentials, region, ...). One writer per store: part numbers are not coordinated
    between processes, and an instance is not thread-safe (call it from one thread).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        flush_rows: int = 2000,
        flush_after_s: float | None = None,
        durable: bool = True,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        if flush_rows < 1:
            raise ValueError(f"flush_rows must be >= 1, got {flush_rows}")
        if flush_after_s is not None and flush_after_s <= 0:
            raise ValueError(f"flush_after_s must be > 0 or None, got {flush_after_s}")
        self.flush_after_s = flush_after_s
        self._oldest_pending: float | None = None
        text = str(root)
        if text.startswith("file://"):
            text = urlparse(text).path
        self.root = text.rstrip("/") or "/"
        self.local: Path | None = None if is_url(text) else Path(text)
        self.flush_rows = flush_rows
        self.durable = durable
        self.storage_options = dict(storage_options or {})
        self._pending: dict[str, list[pl.DataFrame]] = {name: [] for name in TABLES}
        self._pending_rows = 0
        self._thumbs = _Thumbnails()
        self._next_part: dict[str, int] = {}
        self._check_root()

    @classmethod
    def from_config(cls, storage: StorageConfig, **kwargs: Any) -> TrackStore:
        """The store a site config names (``storage.root``, already resolved)."""
        return cls(storage.root, **kwargs)

    # ------------------------------------------------------------------ writing

    def write_tracklets(
        self, tracklets: list[Tracklet], global_ids: Mapping[str, str] | None = None
    ) -> None:
        """Buffer tracklet versions, their sightings (with ``global_ids`` as known now)
        and their thumbnails (the newest version's)."""
        if not tracklets:
            return
        refs: list[str | None] = []
        for t in tracklets:
            ref = thumbnail_ref(t.camera_id, t.tracklet_id) if t.thumbnail_jpeg else None
            refs.append(ref)
            if ref is not None:
                self._thumbs.offer(ref, t.version, t.thumbnail_jpeg)
        self._buffer("tracklets", tracklet_rows(tracklets, refs))
        self._buffer("sightings", sightings_frame(tracklets, global_ids or {}, refs))
        self._maybe_flush()

    def write_assignments(
        self, rows: pl.DataFrame | Iterable[Any], *, assigned_at: Any = None
    ) -> None:
        """Buffer identity assignments (:data:`IDENTITY_SCHEMA`; rows as a frame, mappings,
        dataclasses or named tuples). Times are datetimes or epoch seconds; rows without
        ``assigned_at`` get the keyword's value, or the current UTC time if it is None
        (pass the event time to keep replays byte-identical)."""
        when = datetime.now(UTC) if assigned_at is None else assigned_at
        frame = _rows_frame(rows, IDENTITY_SCHEMA, "assigned_at", {"assigned_at": when})
        self._buffer("identities", frame)
        self._maybe_flush()

    def write_events(self, rows: pl.DataFrame | Iterable[Any]) -> None:
        """Buffer fusion events (:data:`EVENT_SCHEMA`, given like :meth:`write_assignments`)."""
        frame = _rows_frame(rows, EVENT_SCHEMA, "ts")
        _check_events(frame)
        self._buffer("events", frame)
        self._maybe_flush()

    def append_rows(self, table: str, rows: pl.DataFrame) -> None:
        """Buffer rows already in ``table``'s schema (extra columns such as ``date`` are
        dropped); used to copy between stores."""
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; expected one of {list(TABLES)}")
        self._buffer(table, _rows_frame(rows, TABLES[table], DATE_COLUMN[table]))
        self._maybe_flush()

    def add_thumbnail(self, ref: str, jpeg: bytes) -> None:
        """Buffer a thumbnail file at ``ref`` (a path relative to the root)."""
        if ref.startswith("/") or ".." in Path(ref).parts:
            raise ValueError(f"thumbnail ref {ref!r} must stay inside the store")
        self._thumbs.offer(ref, _ALWAYS, jpeg)

    @property
    def pending_rows(self) -> int:
        """Rows buffered and not yet written."""
        return self._pending_rows

    def flush(self) -> int:
        """Write what is buffered, thumbnails first; returns the number of rows written.

        On an error everything stays buffered, so a retry writes it (rows already written
        then repeat, which readers tolerate).
        """
        thumbnails = self._thumbs.due()
        parts = [
            (folder, part)
            for table, frames in self._pending.items()
            if frames
            for folder, part in _partitions(table, pl.concat(frames))
        ]
        if self.local is None:
            self._write_remote(thumbnails, parts)
        else:
            self._write_local(thumbnails, parts)
        self._thumbs.written()
        written = self._pending_rows
        for frames in self._pending.values():
            frames.clear()
        self._pending_rows = 0
        self._oldest_pending = None
        return written

    def close(self) -> None:
        """Flush what is left."""
        self.flush()

    def __enter__(self) -> TrackStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()

    def path(self, relative: str) -> str:
        """``relative`` (a table folder, a thumbnail ref) joined to the root."""
        return f"{self.root}/{relative}" if self.root != "/" else f"/{relative}"

    # ------------------------------------------------------------------ helpers

    def _check_root(self) -> None:
        if self.local is None:
            if importlib.util.find_spec("fsspec") is None:
                raise StoreError(
                    f"store root {self.root} is a URL: writing thumbnails there needs fsspec "
                    "(and its protocol package, e.g. s3fs, gcsfs, adlfs)"
                )
            return
        try:
            self.local.mkdir(parents=True, exist_ok=True)
            probe = self.local / f".write-probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StoreError(
                f"store root {self.local} is not a writable folder: {exc.strerror or exc}"
            ) from exc

    def _buffer(self, table: str, frame: pl.DataFrame) -> None:
        if frame.height:
            self._pending[table].append(frame)
            self._pending_rows += frame.height
            if self._oldest_pending is None:
                self._oldest_pending = time.monotonic()

    def _maybe_flush(self) -> None:
        waited = (
            self.flush_after_s is not None
            and self._oldest_pending is not None
            and time.monotonic() - self._oldest_pending >= self.flush_after_s
        )
        if self._pending_rows >= self.flush_rows or waited:
            self.flush()

    def _write_local(
        self, thumbnails: dict[str, bytes], parts: list[tuple[str, pl.DataFrame]]
    ) -> None:
        assert self.local is not None
        numbers = dict(self._next_part)
        files: dict[Path, Callable[[Path], object]] = {}
        for folder, frame in parts:
            if folder not in numbers:
                numbers[folder] = _next_part_number(self.local / folder)
            path = self.local / folder / f"part-{numbers[folder]:06d}.parquet"
            numbers[folder] += 1
            files[path] = frame.write_parquet
        try:
            # thumbnails first, so no part ever refers to a missing one
            commit_local(
                {self.local / r: _bytes_writer(b) for r, b in thumbnails.items()}, self.durable
            )
            commit_local(files, self.durable)
            if files or thumbnails:
                bump_store_version(self.local)
        except OSError as exc:
            where = exc.filename or self.local
            raise StoreError(f"cannot write {where}: {exc.strerror or exc}") from exc
        self._next_part = numbers

    def _write_remote(
        self, thumbnails: dict[str, bytes], parts: list[tuple[str, pl.DataFrame]]
    ) -> None:
        import fsspec

        for ref, jpeg in thumbnails.items():
            url = self.path(ref)
            try:
                with fsspec.open(url, "wb", **self.storage_options) as f:
                    f.write(jpeg)
            except Exception as exc:
                raise StoreError(f"cannot write thumbnail {url}: {exc}") from exc
        for folder, frame in parts:
            name = f"part-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
            url = self.path(f"{folder}/{name}")
            try:
                frame.write_parquet(url, storage_options=self.storage_options or None)
            except Exception as exc:
                raise StoreError(f"cannot write {url}: {exc}") from exc


VERSION_FILE = "_version"
"""A file at the root of a local store, replaced after every flush that wrote rows and
every retention purge: its ``stat`` changes whenever the store's content does, so
readers can cache query results per version (:func:`store_version`)."""


def bump_store_version(root: Path) -> None:
    """Mark that the local store at ``root`` changed (atomic replace of the marker)."""
    tmp = root / f".{VERSION_FILE}.{uuid.uuid4().hex[:8]}"
    tmp.write_text(f"{uuid.uuid4().hex} {time.time():.6f}\n", encoding="ascii")
    os.replace(tmp, root / VERSION_FILE)


def store_version(root: str | Path) -> tuple[int, int, int] | None:
    """A token that changes whenever the local store at ``root`` changes (the marker's
    inode, mtime and size), or None for a URL store or one never written by this
    version of Sightline (callers then must not cache)."""
    text = str(root)
    if is_url(text) and not text.startswith("file://"):
        return None
    try:
        st = os.stat(Path(text.removeprefix("file://")) / VERSION_FILE)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _bytes_writer(data: bytes) -> Callable[[Path], object]:
    return lambda path: path.write_bytes(data)

"""Data retention: delete the store's day partitions older than N days, and their thumbnails.

The store (:mod:`sightline.store.tables`) files every row under ``<table>/date=YYYY-MM-DD``,
so retention removes whole day folders of the tables in
:data:`~sightline.store.tables.PARTITIONS` and the thumbnails that the removed tracklet
and sighting rows name in their ``thumbnail`` column. Nothing else under the root is
touched (``_security/``, write-ahead logs, a thumbnail still named by a kept row).

A partition is first moved, in one rename, out of its table into
``<root>/.retention-trash/<id>/`` (next to a ``plan.json`` listing its thumbnails), then
deleted: readers scanning ``<table>/**/*.parquet`` see a day whole or not at all, and a
purge interrupted by a crash is finished by the next one.

Granularity is one UTC day: with ``days=30`` on 30 June, partitions up to 30 May go
(:func:`cutoff_date`); no row younger than 30 days is ever removed, and rows up to 31
days old remain until the next run. Identity assignments and events written after the
cutoff may still name purged tracklets; readers treat such ids as unknown.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from sightline.store.tables import PARTITIONS, StoreError, bump_store_version, is_url

__all__ = ["TRASH", "RetentionReport", "cutoff_date", "purge_store"]

TRASH = ".retention-trash"
"""Folder under the store root holding partitions being deleted."""

_DATE_FOLDER = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
_THUMBNAIL = re.compile(r"^thumbnails/camera_id=[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+\.jpg$")
_WITH_THUMBNAILS = ("tracklets", "sightings")


@dataclass
class RetentionReport:
    """What a purge removed (or, with ``dry_run``, would remove).

    ``partitions`` maps each table to its removed ``date=`` folders; ``files``, ``rows``
    and ``bytes`` count their Parquet parts; ``thumbnails`` counts thumbnail files (and
    ``thumbnail_bytes`` their size); ``resumed`` counts interrupted purges finished first.
    """

    root: str
    before: str
    dry_run: bool
    partitions: dict[str, list[str]] = field(default_factory=dict)
    files: int = 0
    rows: int = 0
    bytes: int = 0
    thumbnails: int = 0
    thumbnail_bytes: int = 0
    resumed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return dataclasses.asdict(self)


def cutoff_date(days: int, now: datetime | None = None) -> date:
    """The oldest day kept when keeping ``days`` days: partitions dated before it go."""
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    now = now or datetime.now(UTC)
    today = (now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)).date()
    return today - timedelta(days=days)


def purge_store(root: str | Path, before: date, *, dry_run: bool = False) -> RetentionReport:
    """Remove every table partition of the local store at ``root`` dated before ``before``,
    and the thumbnails their tracklet and sighting rows name (unless a kept row names the
    same file). With ``dry_run`` nothing is changed and the report says what would go.

    Raises :class:`~sightline.store.tables.StoreError` when ``root`` is not a local
    folder (an object store's own lifecycle rules do this job there).
    """
    if is_url(str(root)) and not str(root).startswith("file://"):
        raise StoreError(
            f"store root {root} is a URL: purge it with the object store's lifecycle rules "
            "on the date= prefixes, or run retention where the store is a local folder"
        )
    local = Path(str(root).removeprefix("file://"))
    if not local.is_dir():
        raise StoreError(f"store root {local} is not a folder")
    report = RetentionReport(str(local), before.isoformat(), dry_run)
    if not dry_run:
        report.resumed = _finish_interrupted(local)
    victims = _old_partitions(local, before)
    for table, folder in victims:
        report.partitions.setdefault(table, []).append(folder.name)
        for part in sorted(folder.rglob("*.parquet")):
            report.files += 1
            report.bytes += part.stat().st_size
            report.rows += pl.scan_parquet(part).select(pl.len()).collect().item()
    thumbnails = _thumbnails_to_remove(local, victims)
    report.thumbnails = len(thumbnails)
    report.thumbnail_bytes = sum(p.stat().st_size for p in thumbnails)
    if not dry_run and victims:
        _remove(local, victims, thumbnails)
        bump_store_version(local)
    return report


def _old_partitions(root: Path, before: date) -> list[tuple[str, Path]]:
    """``(table, date folder)`` of every partition dated before ``before``."""
    found = []
    for table in PARTITIONS:
        folder = root / table
        if not folder.is_dir():
            continue
        for child in sorted(folder.iterdir()):
            match = _DATE_FOLDER.match(child.name)
            if match and child.is_dir() and date.fromisoformat(match.group(1)) < before:
                found.append((table, child))
    return found


def _thumbnail_refs(files: list[Path]) -> set[str]:
    if not files:
        return set()
    frame = pl.scan_parquet(files, hive_partitioning=False).select("thumbnail").collect()
    return set(frame["thumbnail"].drop_nulls().to_list())


def _thumbnails_to_remove(root: Path, victims: list[tuple[str, Path]]) -> list[Path]:
    """The existing thumbnail files named by rows of ``victims`` and by no kept row."""
    removed = {folder for _, folder in victims}
    refs: set[str] = set()
    kept: dict[str, list[Path]] = {}
    for table in _WITH_THUMBNAILS:
        for folder in sorted((root / table).glob("date=*")):
            files = sorted(folder.rglob("*.parquet"))
            if folder in removed:
                refs |= _thumbnail_refs(files)
            else:
                kept.setdefault(table, []).extend(files)
    for files in kept.values():
        if refs and files:
            still = (
                pl.scan_parquet(files, hive_partitioning=False)
                .select("thumbnail")
                .filter(pl.col("thumbnail").is_in(sorted(refs)))
                .collect()
            )
            refs -= set(still["thumbnail"].to_list())
    paths = []
    for ref in sorted(refs):
        # a ref is data: only a well-formed one inside thumbnails/ may name a file to delete
        if _THUMBNAIL.match(ref) and (root / ref).is_file():
            paths.append(root / ref)
    return paths


def _remove(root: Path, victims: list[tuple[str, Path]], thumbnails: list[Path]) -> None:
    """Write the plan into a new trash folder, then carry it out (:func:`_finish`)."""
    trash = root / TRASH / uuid.uuid4().hex
    trash.mkdir(parents=True)
    plan = {
        "partitions": [f"{table}/{folder.name}" for table, folder in victims],
        "thumbnails": [str(p.relative_to(root)) for p in thumbnails],
    }
    _write_synced(trash / "plan.json", json.dumps(plan, indent=1))
    _finish(root, trash)


def _finish(root: Path, trash: Path) -> None:
    """Carry out a trash folder's plan: move each partition (still in place) into the
    trash in one rename, delete the thumbnails, then the trash folder.

    Parts go before their thumbnails (the reverse of the store's write order), so no
    visible row ever names a missing thumbnail; the plan is written first, so a crash at
    any point leaves a plan the next purge completes."""
    plan_path = trash / "plan.json"
    plan = json.loads(plan_path.read_text(encoding="utf-8")) if plan_path.is_file() else {}
    for name in plan.get("partitions", []):
        table, folder = name.split("/", 1)
        source = root / table / folder
        if table not in PARTITIONS or not _DATE_FOLDER.match(folder) or not source.is_dir():
            continue
        target = trash / table / folder
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(source, target)
        except OSError as exc:
            raise StoreError(f"cannot move {source} out of the store: {exc}") from exc
    for ref in plan.get("thumbnails", []):
        if _THUMBNAIL.match(ref):
            (root / ref).unlink(missing_ok=True)
    shutil.rmtree(trash)
    if trash.parent.is_dir() and not any(trash.parent.iterdir()):
        trash.parent.rmdir()


def _finish_interrupted(root: Path) -> int:
    """Finish the purges a crash interrupted; returns how many."""
    folder = root / TRASH
    if not folder.is_dir():
        return 0
    pending = [p for p in folder.iterdir() if p.is_dir()]
    for trash in pending:
        _finish(root, trash)
    return len(pending)


def _write_synced(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (temporary name, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

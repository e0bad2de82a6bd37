"""Times as Sightline takes them: UTC, within a supported range.

Windows, last-seen times and audit entries accept ISO 8601 text, epoch seconds or
datetimes; a naive time means UTC. Times outside :data:`EARLIEST` .. :data:`LATEST` are
refused with a ``ValueError`` naming the field: CCTV footage lies well inside, and
arithmetic near the ends of Python's datetime range (a window widened by a tracklet's
longest span, a time zone shift) would otherwise overflow deep inside a query.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["EARLIEST", "LATEST", "TimeLike", "to_utc"]

TimeLike = datetime | float | int | str

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def to_utc(value: TimeLike, name: str = "time") -> datetime:
    """``value`` as an aware UTC datetime; ``ValueError`` naming ``name`` when it is not a
    time or lies outside ``[EARLIEST, LATEST]``, ``TypeError`` for other types."""
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected a datetime, epoch seconds or ISO string, got {value!r}")
    try:
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError as exc:
                raise ValueError(f"{name}: {value!r} is not an ISO 8601 time") from exc
        if isinstance(value, int | float):
            value = datetime.fromtimestamp(value, UTC)
        if not isinstance(value, datetime):
            raise TypeError(
                f"{name}: expected a datetime, epoch seconds or ISO string, got {value!r}"
            )
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, OSError) as exc:
        raise ValueError(f"{name}: {value!r} is outside the supported times ({exc})") from None
    if not EARLIEST <= value <= LATEST:
        raise ValueError(
            f"{name}: {value.isoformat()} is outside the supported times "
            f"{EARLIEST.date()} .. {LATEST.date()}"
        )
    return value

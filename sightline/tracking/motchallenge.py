"""Read and write MOTChallenge text files (detections, ground truth, tracker results).

One comma-separated row per box, frames 1-based, boxes as top-left corner and size:

- detections ``det.txt``: ``frame, -1, x, y, w, h, conf[, ...]``
- ground truth ``gt.txt``: ``frame, id, x, y, w, h, consider (0/1), class, visibility``
- tracker results: ``frame, id, x, y, w, h, conf, -1, -1, -1``

In memory every file is a polars DataFrame with corner boxes: ``frame, track_id, x1, y1,
x2, y2, score`` (results and detections; ``track_id`` is -1 for detections) or ``frame,
track_id, x1, y1, x2, y2, consider, class, visibility`` (ground truth). ``frame`` stays
1-based as in the files. A malformed file raises :class:`ValueError` naming the file,
the line and what is wrong with it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

__all__ = [
    "read_mot_detections",
    "read_mot_gt",
    "read_mot_results",
    "write_mot_detections",
    "write_mot_gt",
    "write_mot_results",
]

_BOX = ("x", "y", "w", "h")
_DET_COLUMNS = ("frame", "id", *_BOX, "conf")
_GT_COLUMNS = ("frame", "id", *_BOX, "consider", "class", "visibility")
_INTEGER = {"frame", "id", "consider", "class"}


def _parse_row(fields: list[str], names: tuple[str, ...], where: str) -> list[float]:
    if len(fields) < len(names):
        raise ValueError(
            f"{where}: expected at least {len(names)} values ({', '.join(names)}), "
            f"got {len(fields)}"
        )
    values = []
    for name, text in zip(names, fields, strict=False):
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{where}: {name} is not a number: {text.strip()!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"{where}: {name} must be finite, got {text.strip()!r}")
        if name in _INTEGER and value != int(value):
            raise ValueError(f"{where}: {name} must be an integer, got {text.strip()!r}")
        values.append(value)
    return values


def _check_row(row: dict[str, float], where: str) -> None:
    if row["frame"] < 1:
        raise ValueError(
            f"{where}: frame must be >= 1 (MOT frames are 1-based), got {row['frame']:g}"
        )
    if row["w"] < 0 or row["h"] < 0:
        raise ValueError(
            f"{where}: box width and height must be >= 0, got {row['w']:g}, {row['h']:g}"
        )
    if "consider" in row and row["consider"] not in (0, 1):
        raise ValueError(f"{where}: consider must be 0 or 1, got {row['consider']:g}")


def _read_rows(path: Path, names: tuple[str, ...]) -> np.ndarray:
    path = Path(path)
    rows: list[list[float]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text:
                continue
            fields = text.split(",") if "," in text else text.split()
            where = f"{path} line {number}"
            values = _parse_row(fields, names, where)
            _check_row(dict(zip(names, values, strict=True)), where)
            rows.append(values)
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(names))


def _corner_frame(table: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    col = {name: table[:, i] for i, name in enumerate(names)}
    return {
        "frame": col["frame"].astype(np.int64),
        "track_id": col["id"].astype(np.int64),
        "x1": col["x"],
        "y1": col["y"],
        "x2": col["x"] + col["w"],
        "y2": col["y"] + col["h"],
    }


def read_mot_detections(path: Path) -> pl.DataFrame:
    """A ``det.txt``: columns ``frame, track_id (-1), x1, y1, x2, y2, score``."""
    table = _read_rows(path, _DET_COLUMNS)
    return pl.DataFrame({**_corner_frame(table, _DET_COLUMNS), "score": table[:, 6]})


def read_mot_results(path: Path) -> pl.DataFrame:
    """A tracker result file: columns ``frame, track_id, x1, y1, x2, y2, score``."""
    return read_mot_detections(path)


def read_mot_gt(path: Path) -> pl.DataFrame:
    """A ``gt.txt``: ``frame, track_id, x1, y1, x2, y2, consider, class, visibility``."""
    table = _read_rows(path, _GT_COLUMNS)
    return pl.DataFrame(
        {
            **_corner_frame(table, _GT_COLUMNS),
            "consider": table[:, 6].astype(np.int64),
            "class": table[:, 7].astype(np.int64),
            "visibility": table[:, 8],
        }
    )


def _require(df: pl.DataFrame, columns: tuple[str, ...], path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"cannot write {path}: missing columns {missing}")
    if len(df) and int(df["frame"].min()) < 1:  # type: ignore[arg-type]
        raise ValueError(f"cannot write {path}: frames must be >= 1 (MOT frames are 1-based)")


def _write(path: Path, df: pl.DataFrame, ids: pl.Expr, tail: list[pl.Expr]) -> None:
    def fmt(column: str) -> pl.Expr:
        return pl.col(column).round(3).cast(pl.String)

    line = pl.concat_str(
        [
            pl.col("frame").cast(pl.String),
            ids.cast(pl.String),
            fmt("x1"),
            fmt("y1"),
            (pl.col("x2") - pl.col("x1")).round(3).cast(pl.String),
            (pl.col("y2") - pl.col("y1")).round(3).cast(pl.String),
            *[t.cast(pl.String) for t in tail],
        ],
        separator=",",
    )
    lines = df.sort("frame", "track_id").select(line.alias("line"))["line"].to_list()
    Path(path).write_text("".join(f"{row}\n" for row in lines), encoding="utf-8")


def write_mot_results(df: pl.DataFrame, path: Path) -> None:
    """Write tracks (``frame, track_id, x1, y1, x2, y2, score``) as a MOT result file."""
    _require(df, ("frame", "track_id", "x1", "y1", "x2", "y2", "score"), path)
    minus_one = pl.lit(-1)
    _write(
        path, df, pl.col("track_id"), [pl.col("score").round(5), minus_one, minus_one, minus_one]
    )


def write_mot_detections(df: pl.DataFrame, path: Path) -> None:
    """Write detections (``frame, x1, y1, x2, y2, score``) as a ``det.txt`` (ids -1)."""
    _require(df, ("frame", "x1", "y1", "x2", "y2", "score"), path)
    if "track_id" not in df.columns:
        df = df.with_columns(track_id=pl.lit(-1))
    minus_one = pl.lit(-1)
    _write(path, df, pl.lit(-1), [pl.col("score").round(5), minus_one, minus_one, minus_one])


def write_mot_gt(df: pl.DataFrame, path: Path) -> None:
    """Write ground truth (``frame, track_id, x1..y2, consider, class, visibility``)."""
    _require(df, ("frame", "track_id", "x1", "y1", "x2", "y2"), path)
    defaults = {"consider": pl.lit(1), "class": pl.lit(1), "visibility": pl.lit(1.0)}
    tail = [pl.col(c) if c in df.columns else v for c, v in defaults.items()]
    tail[2] = tail[2].round(5)
    _write(path, df, pl.col("track_id"), tail)

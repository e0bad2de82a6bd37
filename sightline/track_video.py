"""Any video in, tracks out: detect and track the people in one video file.

:func:`track_video` probes the file (PyAV), builds a one-camera site for it
(:func:`video_site`), runs it through the real pipeline (Ray Serve detector and embedder,
one CameraActor that tracks) and turns the raw run into files a new user can open:

- ``tracks.parquet``: one row per track per frame (frame numbers 1-based, pixel boxes,
  foot-points, world coordinates when calibrated);
- ``tracklets.parquet``: one row per track (span, clothing colours, height, thumbnail);
- ``tracks.txt``: MOTChallenge tracker results (``frame,id,x,y,w,h,conf,-1,-1,-1``);
- ``preview.mp4``: the video with every tracked box and its id drawn;
- ``run/``: the pipeline's own output (detections, tracklet versions, thumbnails).

Frames are stamped ``SOURCE_START + pts`` (a fixed epoch), so each output row maps back
to its video frame exactly: the preview's decode lists every frame's time, and a row's
frame number is the position of its time in that list (for a constant-rate video,
``round((ts - SOURCE_START) * fps) + 1``; variable-rate phone videos are numbered right too).

Without a calibration the site still needs a homography: a nominal one (pixels / 100 as
metres) satisfies the config, and every world coordinate and height it would give is
written as null instead. Ray is imported only by :func:`track_video`, so the helpers
here stay usable (and testable) without it.
"""

from __future__ import annotations

import colorsys
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import numpy as np
import polars as pl
import yaml
from PIL import Image, ImageDraw, ImageFont
from pydantic import ValidationError

from sightline.config import (
    CalibrationPoint,
    CameraConfig,
    ConfigError,
    ModelsConfig,
    SiteConfig,
    parse_site_config,
)
from sightline.ingest.sampler import FpsSampler
from sightline.sim.video import H264Writer
from sightline.tracking.motchallenge import write_mot_results
from sightline.tracking.sink import latest_versions, read_tracklets

__all__ = [
    "MAX_FPS",
    "SOURCE_START",
    "TrackVideoError",
    "VideoInfo",
    "camera_id_for",
    "draw_tracks",
    "frame_numbers",
    "load_calibration",
    "nominal_calibration",
    "probe_video",
    "track_video",
    "tracklets_table",
    "tracks_table",
    "video_site",
    "write_outputs",
    "write_preview",
]

SOURCE_START = datetime(2000, 1, 1, tzinfo=UTC)
"""Time of a video's first frame in every output (frame numbers are recovered from it)."""

MAX_FPS = 120.0
"""Highest analysis rate a camera config accepts; faster videos are sampled down to it."""

_START_US = int(SOURCE_START.timestamp() * 1_000_000)
_MIN_SIZE, _MAX_SIZE = (16, 16), (7680, 4320)  # the camera config's resolution bounds
_NOMINAL_PX_PER_M = 100.0
_RUN_FOLDERS = {"detections", "tracklets", "thumbnails"}  # what run_pipeline writes
_UNCALIBRATED_NOTE = (
    "no --calibration: world_x, world_y and height_m are null; pass --calibration FILE "
    "(>= 4 image <-> ground point pairs) for ground positions in metres and heights"
)


class TrackVideoError(ValueError):
    """The video cannot be tracked (missing, undecodable, unusable); the message names it."""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the video


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learnt about a video file.

    ``fps`` is the stream's average frame rate (the default analysis rate, and the
    preview's); ``frames`` the frame count the container states, else its packet count.
    """

    path: Path
    width: int
    height: int
    fps: float
    frames: int
    duration_s: float | None
    codec: str


def _stream_fps(stream: av.video.stream.VideoStream) -> float | None:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else None


def _count_packets(container: av.container.InputContainer) -> int:
    stream = container.streams.video[0]
    container.seek(0, stream=stream)
    return sum(1 for packet in container.demux(stream) if packet.size)


def probe_video(path: str | Path, fps: float | None = None) -> VideoInfo:
    """Open ``path`` and decode its first frame; :class:`TrackVideoError` if that fails.

    ``fps`` stands in for a frame rate the file does not state.
    """
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise TrackVideoError(f"{path}: no such video file")
    if not path.is_file():
        raise TrackVideoError(f"{path}: is not a file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise TrackVideoError(f"{path}: has no video stream")
            stream = container.streams.video[0]
            next(container.decode(stream))
            rate = _stream_fps(stream) or fps
            if rate is None:
                raise TrackVideoError(f"{path}: the file states no frame rate; pass --fps")
            frames = stream.frames or _count_packets(container)
            duration = stream.duration * stream.time_base if stream.duration else None
            return VideoInfo(
                path=path,
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                fps=rate,
                frames=frames,
                duration_s=float(duration) if duration is not None else None,
                codec=stream.codec_context.name,
            )
    except (av.error.FFmpegError, StopIteration, UnicodeDecodeError) as exc:
        reason = "no frame could be decoded" if isinstance(exc, StopIteration) else str(exc)
        raise TrackVideoError(f"{path}: cannot decode as video: {reason}") from None


def camera_id_for(path: str | Path) -> str:
    """A valid camera id from the file's stem (other characters become ``-``)."""
    chars = [c if c.isascii() and (c.isalnum() or c in "_-") else "-" for c in Path(path).stem]
    text = "".join(chars).lstrip("_-")[:64]
    return text or "video"


# --------------------------------------------------------------------------- calibration


def _error_path(loc: tuple[Any, ...]) -> str:
    """``('calibration', 2, 'image')`` as ``calibration[2].image``."""
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc]
    return "".join(parts).removeprefix(".")


def _calibration_errors(exc: ValidationError, source: Path) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        where = _error_path(err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        value = err["input"]
        got = "" if isinstance(value, dict | list) else f" (got {value!r:.120})"
        lines.append(f"{source}: {where + ': ' if where else ''}{message}{got}")
    return "\n".join(lines)


def _read_calibration_yaml(path: Path) -> Any:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such calibration file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read calibration file: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if isinstance(data, dict) and "calibration" in data:
        data = data["calibration"]  # a camera entry of a site config works too
    if not isinstance(data, list):
        raise ConfigError(
            f"{path}: calibration: expected a list of {{image: [x, y], ground: [x, y]}} "
            f"points, got {type(data).__name__}"
        )
    return data


def load_calibration(path: str | Path, resolution: tuple[int, int]) -> list[CalibrationPoint]:
    """Calibration points from a YAML file, checked against a ``(width, height)`` video.

    The file holds a list of ``{image: [x, y], ground: [x, y]}`` pairs (pixels of the
    video, metres on the ground), like a site config camera's ``calibration:``; a mapping
    with a ``calibration`` key is accepted too. :class:`ConfigError` names the file, the
    field (``calibration[2].image``) and the bad value.
    """
    path = Path(path).expanduser()
    points = _read_calibration_yaml(path)
    try:
        camera = CameraConfig.model_validate(
            {"id": "calibration", "source": "-", "resolution": resolution, "calibration": points}
        )
    except ValidationError as exc:
        raise ConfigError(_calibration_errors(exc, path)) from None
    return camera.calibration


def nominal_calibration(width: int, height: int) -> list[CalibrationPoint]:
    """The frame corners as ground points at ``pixels / 100`` metres: a stand-in only."""
    corners = [(0, 0), (width, 0), (width, height), (0, height)]
    return [
        CalibrationPoint(image=(x, y), ground=(x / _NOMINAL_PX_PER_M, y / _NOMINAL_PX_PER_M))
        for x, y in corners
    ]


def video_site(
    info: VideoInfo,
    calibration: list[CalibrationPoint] | None = None,
    *,
    fps: float | None = None,
    models: ModelsConfig | None = None,
) -> SiteConfig:
    """A one-camera forensic site for ``info``'s video, at its own size and frame rate.

    ``fps`` overrides the analysis rate (default: the video's, at most :data:`MAX_FPS`);
    without ``calibration`` the camera gets :func:`nominal_calibration`. ``models``
    defaults to the built-in detector and embedder.
    """
    size = (info.width, info.height)
    if not all(lo <= v <= hi for v, lo, hi in zip(size, _MIN_SIZE, _MAX_SIZE, strict=True)):
        raise TrackVideoError(
            f"{info.path}: frame size {info.width}x{info.height} is outside "
            f"{_MIN_SIZE[0]}x{_MIN_SIZE[1]}..{_MAX_SIZE[0]}x{_MAX_SIZE[1]}"
        )
    if fps is not None and not 0 < fps <= MAX_FPS:
        raise TrackVideoError(f"--fps must be in (0, {MAX_FPS:g}], got {fps:g}")
    points = calibration or nominal_calibration(*size)
    camera = {
        "id": camera_id_for(info.path),
        "source": str(info.path),
        "source_start": SOURCE_START.isoformat(),
        "fps": fps or min(info.fps, MAX_FPS),
        "resolution": list(size),
        "mode": "forensic",
        "calibration": [p.model_dump() for p in points],
    }
    data: dict[str, Any] = {"name": f"video {info.path.name}", "cameras": [camera]}
    if models is not None:
        data["models"] = models.model_dump()
    return parse_site_config(data, source=str(info.path), base_dir=info.path.parent)


# --------------------------------------------------------------------------- tables


def frame_numbers(ts: pl.Series, frame_times_us: np.ndarray) -> pl.Series:
    """1-based number of the video frame each timestamp of ``ts`` belongs to.

    ``frame_times_us`` holds every decoded frame's time (microseconds after
    :data:`SOURCE_START`) in decoding order; each timestamp gets the nearest one, which
    for frames the pipeline stamped is an exact match, also in variable-frame-rate video.
    """
    times = np.asarray(frame_times_us, dtype=np.int64)
    if not len(times):
        return pl.Series("frame", [None] * len(ts), dtype=pl.Int64)
    order = np.argsort(times, kind="stable")
    ordered = times[order]
    offsets = ts.dt.epoch("us").to_numpy() - _START_US
    right = np.clip(np.searchsorted(ordered, offsets), 0, len(ordered) - 1)
    left = np.clip(right - 1, 0, len(ordered) - 1)
    nearer = np.where(offsets - ordered[left] <= ordered[right] - offsets, left, right)
    return pl.Series("frame", order[nearer] + 1, dtype=pl.Int64)


def _track_rows(tracklets: pl.DataFrame, *, calibrated: bool) -> pl.DataFrame:
    """:func:`tracks_table` without its ``frame`` column."""
    lists = ["ts", "boxes", "scores", "foot_px", "foot_world"]
    rows = tracklets.select("tracklet_id", "track_id", *lists).explode(lists)

    def item(column: str, i: int, name: str) -> pl.Expr:
        return pl.col(column).list.get(i).cast(pl.Float64).alias(name)

    if calibrated:
        world = [item("foot_world", 0, "world_x"), item("foot_world", 1, "world_y")]
    else:
        world = [pl.lit(None, pl.Float64).alias(name) for name in ("world_x", "world_y")]
    return rows.select(
        "ts",
        "track_id",
        "tracklet_id",
        *(item("boxes", i, name) for i, name in enumerate(("x1", "y1", "x2", "y2"))),
        pl.col("scores").cast(pl.Float64).alias("score"),
        item("foot_px", 0, "foot_x"),
        item("foot_px", 1, "foot_y"),
        *world,
    ).sort("ts", "track_id")


def _with_frames(rows: pl.DataFrame, frame_times_us: np.ndarray) -> pl.DataFrame:
    return rows.select(frame_numbers(rows["ts"], frame_times_us), pl.all())


def tracks_table(
    tracklets: pl.DataFrame, frame_times_us: np.ndarray, *, calibrated: bool
) -> pl.DataFrame:
    """One row per track per frame, from the latest tracklet versions.

    Columns: ``frame`` (1-based, see :func:`frame_numbers`), ``ts``, ``track_id``,
    ``tracklet_id``, ``x1, y1, x2, y2, score``, ``foot_x, foot_y`` (pixels) and
    ``world_x, world_y`` (metres; null when not ``calibrated``).
    """
    return _with_frames(_track_rows(tracklets, calibrated=calibrated), frame_times_us)


def tracklets_table(
    tracklets: pl.DataFrame, frame_times_us: np.ndarray, *, calibrated: bool
) -> pl.DataFrame:
    """One row per track: frame span, times, clothing colours, height, hat and bag
    (``P(hat)``, ``P(bag)``), thumbnail.

    ``height_m`` is null when not ``calibrated`` or when no crop was good enough;
    ``thumbnail`` is relative to the output folder (the crops live under ``run/``).
    """
    height = pl.col("height_m").fill_nan(None) if calibrated else pl.lit(None)
    return tracklets.select(
        "tracklet_id",
        "camera_id",
        "track_id",
        frame_numbers(tracklets["t_start"], frame_times_us).alias("frame_start"),
        frame_numbers(tracklets["t_end"], frame_times_us).alias("frame_end"),
        "n_frames",
        "t_start",
        "t_end",
        "upper_colour",
        "upper_colour_confidence",
        "lower_colour",
        "lower_colour_confidence",
        height.cast(pl.Float32).alias("height_m"),
        "hat_probability",
        "bag_probability",
        "quality",
        ("run/" + pl.col("thumbnail")).alias("thumbnail"),
    ).sort("track_id")


# --------------------------------------------------------------------------- preview


def _id_colour(track_id: int) -> tuple[int, int, int]:
    # Golden-ratio hue steps keep consecutive ids (often neighbours in a scene) far apart.
    r, g, b = colorsys.hsv_to_rgb((track_id * 0.618033988749895) % 1.0, 0.85, 1.0)
    return round(255 * r), round(255 * g), round(255 * b)


Box = tuple[int, float, float, float, float]  # track id, x1, y1, x2, y2


def draw_tracks(image: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """``image`` (RGB) with each box outlined in its id's colour and labelled with the id."""
    if not boxes:
        return image
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    height = image.shape[0]
    width = max(1, round(height / 180))
    font = ImageFont.load_default(size=max(10, height // 28))
    for track_id, x1, y1, x2, y2 in boxes:
        colour = _id_colour(track_id)
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
        label = str(track_id)
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        tw, th = right - left + 4, bottom - top + 4
        ty = y1 - th if y1 - th >= 0 else y1  # above the box, else just inside it
        draw.rectangle((x1, ty, x1 + tw, ty + th), fill=colour)
        draw.text((x1 + 2 - left, ty + 2 - top), label, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def _decoded_frames(path: Path, fps: float) -> Iterator[tuple[float, np.ndarray]]:
    """``(t, rgb)`` for every frame, ``t`` from the pts exactly as the camera reader computes it."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = stream.start_time or 0
        last: float | None = None
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except (av.error.FFmpegError, ValueError):
                continue  # the reader skips a corrupt packet too
            for frame in frames:
                if frame.pts is not None and frame.time_base is not None:
                    t = float((frame.pts - start) * frame.time_base)
                else:
                    t = 0.0 if last is None else last + 1.0 / fps
                last = t
                yield t, frame.to_ndarray(format="rgb24")


def _boxes_by_time(tracks: pl.DataFrame) -> dict[int, list[Box]]:
    out: dict[int, list[Box]] = {}
    offsets = tracks["ts"].dt.epoch("us") - _START_US
    columns = ("track_id", "x1", "y1", "x2", "y2")
    for offset, box in zip(offsets, tracks.select(columns).iter_rows(), strict=True):
        out.setdefault(offset, []).append(box)
    return out


def write_preview(
    info: VideoInfo,
    tracks: pl.DataFrame,
    path: str | Path,
    *,
    sample_fps: float,
    log: Callable[[str], None] = _log,
) -> np.ndarray:
    """Re-decode the video and write it with ``tracks`` drawn; returns the frame times.

    ``tracks`` needs ``ts, track_id, x1, y1, x2, y2``. The preview keeps the video's
    size and frame rate. When the pipeline sampled fewer frames than the video has
    (``sample_fps`` below its rate) each sampled frame's boxes stay up until the next
    sampled frame. An odd width or height is padded by one pixel (H.264 in 4:2:0 needs
    even sizes). The result holds every frame's time in microseconds after
    :data:`SOURCE_START`, in order (what :func:`frame_numbers` needs).
    """
    by_time = _boxes_by_time(tracks)
    sampler = FpsSampler(sample_fps)  # the camera reader's own decisions, replayed
    pad = ((0, info.height % 2), (0, info.width % 2), (0, 0))
    size = (info.width + info.width % 2, info.height + info.height % 2)
    shown: list[Box] = []
    times: list[int] = []
    step = max(1, info.frames // 10)
    with H264Writer(path, info.fps, *size) as writer:
        for t, image in _decoded_frames(info.path, info.fps):
            # the reader stamps source_start + timedelta(seconds=t): microseconds, rounded
            times.append(round(t * 1_000_000))
            if sampler.keep(t):
                shown = by_time.get(times[-1], [])
            rgb = np.pad(image, pad, mode="edge") if any(p[1] for p in pad) else image
            writer.write(draw_tracks(rgb, shown))
            if len(times) % step == 0:
                log(f"preview: {len(times)}/{info.frames} frames")
    return np.asarray(times, dtype=np.int64)


# --------------------------------------------------------------------------- run


def write_outputs(
    run_dir: Path,
    out_dir: Path,
    info: VideoInfo,
    *,
    sample_fps: float,
    calibrated: bool,
    log: Callable[[str], None] = _log,
) -> dict[str, Any]:
    """Turn the tracklets of a pipeline run in ``run_dir`` into the files in ``out_dir``."""
    latest = latest_versions(read_tracklets(run_dir))
    rows = _track_rows(latest, calibrated=calibrated)
    paths = {
        "tracks": out_dir / "tracks.parquet",
        "tracklets": out_dir / "tracklets.parquet",
        "mot": out_dir / "tracks.txt",
        "preview": out_dir / "preview.mp4",
        "run": run_dir,
    }
    log(f"writing {paths['preview']} ...")
    # The preview's decode gives every frame's time: frame numbers come from it.
    times = write_preview(info, rows, paths["preview"], sample_fps=sample_fps, log=log)
    tracks = _with_frames(rows, times).sort("frame", "track_id")
    tracks.write_parquet(paths["tracks"])
    tracklets_table(latest, times, calibrated=calibrated).write_parquet(paths["tracklets"])
    write_mot_results(tracks, paths["mot"])
    return {
        "tracks": tracks["track_id"].n_unique(),
        "track_rows": tracks.height,
        "video_frames": len(times),
        "outputs": {name: str(p) for name, p in paths.items()},
    }


def _fresh_run_dir(out_dir: Path) -> Path:
    """``out_dir/run``, emptied of an earlier run's output (and nothing else)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise TrackVideoError(f"{out_dir}: exists and is not a folder")
    run_dir = out_dir / "run"
    if run_dir.exists():
        found = {p.name for p in run_dir.iterdir()}
        if not found <= _RUN_FOLDERS:
            raise TrackVideoError(
                f"{run_dir}: holds files that are not from an earlier `sightline track` run "
                f"({sorted(found - _RUN_FOLDERS)[:3]}); choose another --out"
            )
        # Old tracklet parts would be read back as this run's.
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    return run_dir


def _run_pipeline(
    site: SiteConfig, run_dir: Path, log: Callable[[str], None], poll_s: float
) -> dict[str, Any]:
    from actors.pipeline import connect_ray, run_pipeline
    from serve.deployments import delete_models

    connect_ray()
    # A unique prefix: several `track` runs (or a site's own pipeline) may share one Ray.
    prefix = f"track-{uuid.uuid4().hex[:8]}"
    try:
        return run_pipeline(site, run_dir, app_prefix=prefix, poll_s=poll_s, log=log, track=True)
    finally:
        delete_models(prefix)


def _camera_health(run: dict[str, Any]) -> dict[str, Any]:
    health = run["cameras"][0] if run["cameras"] else {}
    keys = (
        "state",
        "frames_delivered",
        "decode_errors",
        "detector_errors",
        "embed_errors",
        "attribute_errors",
        "sink_errors",
        "last_error",
        "last_detector_error",
        "last_sink_error",
    )
    return {k: health.get(k) for k in keys}


def track_video(
    video: str | Path,
    out_dir: str | Path,
    *,
    calibration: str | Path | None = None,
    fps: float | None = None,
    models: ModelsConfig | None = None,
    poll_s: float = 2.0,
    log: Callable[[str], None] = _log,
) -> dict[str, Any]:
    """Detect and track the people in ``video`` on Ray; write the outputs to ``out_dir``.

    ``calibration`` is a YAML file of image <-> ground points (see
    :func:`load_calibration`); without it world coordinates and heights are null. ``fps``
    is the analysis rate (default: the video's). ``models`` overrides the built-in
    detector and embedder or their serving options. Joins the running Ray (or starts a
    local one). Returns a JSON-ready summary; ``camera.state`` ``failed`` means the video
    could not be read to its end (the outputs then hold what was processed).
    """
    started = time.perf_counter()
    info = probe_video(video, fps)
    points = None
    if calibration is not None:
        points = load_calibration(calibration, (info.width, info.height))
    site = video_site(info, points, fps=fps, models=models)
    camera = site.cameras[0]
    out = Path(out_dir).expanduser().resolve()
    run_dir = _fresh_run_dir(out)
    log(
        f"tracking {info.path.name}: {info.width}x{info.height}, {info.frames} frames at "
        f"{info.fps:g} fps, analysed at {camera.fps:g} fps"
        + ("" if points else " (uncalibrated: world coordinates will be null)")
    )
    run = _run_pipeline(site, run_dir, log, poll_s)
    outputs_started = time.perf_counter()
    written = write_outputs(
        run_dir, out, info, sample_fps=camera.fps, calibrated=points is not None, log=log
    )
    now = time.perf_counter()
    summary: dict[str, Any] = {
        "video": str(info.path),
        "camera_id": camera.id,
        "size": [info.width, info.height],
        "video_fps": round(info.fps, 3),
        "analysis_fps": round(camera.fps, 3),
        "frames": written["video_frames"],
        "frames_processed": run["frames"],
        "tracks": written["tracks"],
        "track_rows": written["track_rows"],
        "calibrated": points is not None,
        "calibration_rmse_m": round(camera.calibration_rmse_m, 4) if points else None,
        "seconds": {
            "pipeline": run["seconds"],
            "outputs": round(now - outputs_started, 2),
            "total": round(now - started, 2),
        },
        "camera": _camera_health(run),
        "outputs": written["outputs"],
    }
    if points is None:
        summary["note"] = _UNCALIBRATED_NOTE
    return summary

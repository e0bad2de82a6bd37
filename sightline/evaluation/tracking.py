"""Multi-object tracking accuracy with TrackEval, and our tracker against a peer ByteTrack.

Scores come from TrackEval's own metric classes (``HOTA``, ``CLEAR`` for MOTA/MOTP/ID
switches/fragmentations/MT/ML, ``Identity`` for IDF1/IDP/IDR), fed in-memory sequence data
built here exactly the way TrackEval's ``MotChallenge2DBox`` builds it:

1. per frame, tracker boxes are matched to *all* ground-truth boxes (Hungarian on IoU,
   IoU >= 0.5); a tracker box matched to an ignored ground-truth box is removed (neither
   a true nor a false positive);
2. ground-truth boxes that are ignored or not evaluated are removed (missing them is no
   miss);
3. ids are relabelled to 0..n-1 per sequence; sequences (cameras) are combined with
   each metric's ``combine_sequences``.

Ignored ground truth: MOTChallenge's distractor classes (2 person on vehicle, 7 static
person, 8 distractor, 12 reflection) and, for our synthetic sites, people less than
``min_visibility`` visible (default :data:`DEFAULT_MIN_VISIBILITY` = 0.25: a tracker is
expected to follow people through partial occlusion, which is what ByteTrack's low-score
stage is for, so the bar is lower than the detector evaluation's 0.5; people hidden more
than that are not expected and a track kept on them is not punished). Rows with
``consider == 0`` or a class other than pedestrian (1) are removed from the ground truth
without removing matched tracker boxes, as TrackEval does. Ground-truth boxes of our sites
are amodal and are clipped to the image first.

``sightline eval tracking`` (:func:`run_eval_tracking`) runs our :class:`ByteTracker` and
Roboflow ``trackers``' ``ByteTrackTracker`` on exactly the same detections: the built-in
detector's on a held-out synthetic site, noisy ground-truth boxes on the same site (to
separate association from detection quality), or a MOTChallenge ``det.txt``.
"""

from __future__ import annotations

import configparser
import hashlib
import inspect
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

from sightline.config import SiteConfig, TrackerConfig, TrackingConfig, load_site_config
from sightline.evaluation import EvaluationError
from sightline.evaluation.commands import _check_held_out, detect_video
from sightline.evaluation.matching import box_iou
from sightline.models.core import Detections
from sightline.tracking.core import ByteTracker
from sightline.tracking.motchallenge import read_mot_detections, read_mot_gt
from sightline.tracking.stage import GroundFn
from sightline.tracking.tracklets import Tracklet
from sightline.training.data import read_frames
from sightline.training.sites import ensure_site

__all__ = [
    "DEFAULT_MIN_VISIBILITY",
    "DETECTOR_SCORE_THRESHOLD",
    "DISTRACTOR_CLASSES",
    "Frame",
    "NoiseSettings",
    "frames_from_table",
    "noisy_ground_truth",
    "peer_settings",
    "run_eval_tracking",
    "run_ours",
    "run_peer",
    "score_tracks",
]

Frame = tuple[int, float, Detections]
"""One tracker input: (frame number, timestamp in seconds, detections)."""

DEFAULT_MIN_VISIBILITY = 0.25
DISTRACTOR_CLASSES = (2, 7, 8, 12)
DETECTOR_SCORE_THRESHOLD = 0.1  # keep weak boxes so the low-score stage has input
_PEDESTRIAN = 1
_PREPROC_IOU = 0.5
_EPS = float(np.finfo(float).eps)
_TARGETS = {"IDF1": 0.80, "MOTA": 0.75}
_TRACK_COLUMNS = {
    "frame": pl.Int64,
    "track_id": pl.Int64,
    "x1": pl.Float64,
    "y1": pl.Float64,
    "x2": pl.Float64,
    "y2": pl.Float64,
    "score": pl.Float64,
}

# --------------------------------------------------------------------------- scoring


@dataclass
class _Truth:
    """Ground truth of one sequence sorted by frame, with TrackEval's two masks."""

    frame: np.ndarray
    ids: np.ndarray
    xyxy: np.ndarray
    ignore: np.ndarray  # tracker boxes matched to these are removed
    keep: np.ndarray  # evaluated rows


def _column(df: pl.DataFrame, name: str, default: float) -> np.ndarray:
    if name in df.columns:
        return df[name].to_numpy()
    return np.full(len(df), default)


def _truth(gt: pl.DataFrame, min_visibility: float, image_size: tuple[int, int] | None) -> _Truth:
    gt = gt.sort("frame", maintain_order=True)
    xyxy = gt.select("x1", "y1", "x2", "y2").to_numpy().astype(np.float64)
    if image_size is not None:
        w, h = image_size
        xyxy = np.clip(xyxy, 0, [w, h, w, h])
    cls = _column(gt, "class", _PEDESTRIAN)
    ignore = np.isin(cls, DISTRACTOR_CLASSES) | (_column(gt, "visibility", 1.0) < min_visibility)
    keep = (_column(gt, "consider", 1) != 0) & (cls == _PEDESTRIAN) & ~ignore
    return _Truth(gt["frame"].to_numpy(), gt["track_id"].to_numpy(), xyxy, ignore, keep)


def _matched_to_ignored(similarity: np.ndarray, ignore: np.ndarray) -> np.ndarray:
    """Columns (tracker boxes) that TrackEval's preprocessing removes in one frame."""
    if not ignore.any() or similarity.size == 0:
        return np.zeros(0, np.int64)
    scores = np.where(similarity < _PREPROC_IOU - _EPS, 0.0, similarity)
    rows, cols = linear_sum_assignment(-scores)
    matched = scores[rows, cols] > _EPS
    rows, cols = rows[matched], cols[matched]
    return cols[ignore[rows]]


def _relabel(per_frame: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    unique = np.unique(np.concatenate([*per_frame, np.zeros(0, np.int64)]))
    return [np.searchsorted(unique, ids).astype(int) for ids in per_frame], len(unique)


def _sequence_data(truth: _Truth, pred: pl.DataFrame, num_frames: int, name: str) -> dict[str, Any]:
    """TrackEval's per-sequence ``data`` dict (what ``get_preprocessed_seq_data`` returns)."""
    pred = pred.sort("frame", maintain_order=True)
    p_frame = pred["frame"].to_numpy()
    p_ids = pred["track_id"].to_numpy()
    p_xyxy = pred.select("x1", "y1", "x2", "y2").to_numpy().astype(np.float64)
    bounds = np.arange(1, num_frames + 2)
    g_at, p_at = np.searchsorted(truth.frame, bounds), np.searchsorted(p_frame, bounds)
    gt_ids, tracker_ids, similarity = [], [], []
    for t in range(num_frames):
        g, p = slice(g_at[t], g_at[t + 1]), slice(p_at[t], p_at[t + 1])
        sim = box_iou(truth.xyxy[g], p_xyxy[p])
        kept_tracks = np.delete(np.arange(sim.shape[1]), _matched_to_ignored(sim, truth.ignore[g]))
        kept_truth = truth.keep[g]
        for label, ids in (("ground-truth", truth.ids[g][kept_truth]), ("track", p_ids[p])):
            if len(np.unique(ids)) != len(ids):
                raise ValueError(f"sequence {name!r} frame {t + 1}: a {label} id appears twice")
        gt_ids.append(truth.ids[g][kept_truth])
        tracker_ids.append(p_ids[p][kept_tracks])
        similarity.append(sim[kept_truth][:, kept_tracks])
    gt_ids, num_gt_ids = _relabel(gt_ids)
    tracker_ids, num_tracker_ids = _relabel(tracker_ids)
    return {
        "seq": name,
        "num_timesteps": num_frames,
        "gt_ids": gt_ids,
        "tracker_ids": tracker_ids,
        "similarity_scores": similarity,
        "num_gt_ids": num_gt_ids,
        "num_tracker_ids": num_tracker_ids,
        "num_gt_dets": int(sum(len(i) for i in gt_ids)),
        "num_tracker_dets": int(sum(len(i) for i in tracker_ids)),
    }


def _metrics() -> dict[str, Any]:
    from trackeval.metrics import CLEAR, HOTA, Identity

    quiet = {"THRESHOLD": 0.5, "PRINT_CONFIG": False}  # TrackEval prints configs to stdout
    return {"HOTA": HOTA(), "CLEAR": CLEAR(dict(quiet)), "Identity": Identity(dict(quiet))}


_COUNTS = ("num_gt_ids", "num_tracker_ids", "num_gt_dets", "num_tracker_dets", "num_timesteps")


def _summary(res: Mapping[str, Any]) -> dict[str, Any]:
    hota, clear, ident = res["HOTA"], res["CLEAR"], res["Identity"]
    out: dict[str, Any] = {k: round(float(np.mean(hota[k])), 4) for k in ("HOTA", "DetA", "AssA")}
    out["LocA"] = round(float(np.mean(hota["LocA"])), 4)
    out.update({k: round(float(clear[k]), 4) for k in ("MOTA", "MOTP")})
    out.update({k: round(float(ident[k]), 4) for k in ("IDF1", "IDP", "IDR")})
    names = {"IDSW": "IDSW", "Frag": "Frag", "MT": "MT", "PT": "PT", "ML": "ML"}
    names.update({"TP": "CLR_TP", "FN": "CLR_FN", "FP": "CLR_FP"})
    out.update({k: int(clear[v]) for k, v in names.items()})
    out.update({k: int(res["counts"][k]) for k in _COUNTS})
    return out


def _evaluate(data: dict[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    res = {name: metric.eval_sequence(data) for name, metric in metrics.items()}
    res["counts"] = {k: data[k] for k in _COUNTS}
    return res


def _combine(per_seq: Mapping[str, dict[str, Any]], metrics: Mapping[str, Any]) -> dict[str, Any]:
    res = {
        name: metric.combine_sequences({s: r[name] for s, r in per_seq.items()})
        for name, metric in metrics.items()
    }
    res["counts"] = {k: sum(r["counts"][k] for r in per_seq.values()) for k in _COUNTS}
    return res


def _split(df: pl.DataFrame, names: list[str]) -> dict[str, pl.DataFrame]:
    if "sequence" not in df.columns:
        return {"": df}
    parts = {key[0]: part for key, part in df.partition_by("sequence", as_dict=True).items()}
    return {name: parts.get(name, df.clear()) for name in names}


def _last_frame(*tables: pl.DataFrame) -> int:
    return max((int(t["frame"].max()) for t in tables if len(t)), default=0)  # type: ignore[arg-type]


def _sequence_names(gt: pl.DataFrame, pred: pl.DataFrame) -> list[str]:
    has = ("sequence" in gt.columns, "sequence" in pred.columns)
    if has[0] != has[1]:
        raise ValueError("give a 'sequence' column in both ground truth and tracks, or in neither")
    if not has[0]:
        return []
    return sorted(set(gt["sequence"].to_list()) | set(pred["sequence"].to_list()))


def score_tracks(
    gt: pl.DataFrame,
    pred: pl.DataFrame,
    *,
    min_visibility: float = DEFAULT_MIN_VISIBILITY,
    image_size: tuple[int, int] | None = None,
    num_frames: int | Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """TrackEval HOTA, CLEAR and Identity scores of tracks ``pred`` against ``gt``.

    ``gt``: ``frame, track_id, x1, y1, x2, y2`` and optionally ``visibility`` (default
    1), ``consider`` (default 1) and ``class`` (default 1, pedestrian); ``pred``: ``frame,
    track_id, x1, y1, x2, y2``. Frames are 1-based. With a ``sequence`` column in both,
    each sequence is scored and the sequences combined the TrackEval way (integer counts
    summed, ratios recomputed); the per-sequence scores are under ``"per_sequence"``.
    ``image_size`` (width, height) clips ground-truth boxes to the image; ``num_frames``
    (one number or one per sequence) defaults to the last frame seen. See the module
    docstring for which ground truth is ignored; HOTA, DetA, AssA, LocA are averaged over
    TrackEval's 19 IoU thresholds.
    """
    names = _sequence_names(gt, pred)
    gts, preds = _split(gt, names), _split(pred, names)
    metrics = _metrics()
    per_seq: dict[str, dict[str, Any]] = {}
    for name, seq_gt in gts.items():
        seq_pred = preds[name]
        if isinstance(num_frames, Mapping):
            frames = int(num_frames[name])
        elif num_frames is not None:
            frames = int(num_frames)
        else:
            frames = _last_frame(seq_gt, seq_pred)
        truth = _truth(seq_gt, min_visibility, image_size)
        per_seq[name] = _evaluate(_sequence_data(truth, seq_pred, frames, name), metrics)
    if list(per_seq) == [""]:
        return _summary(per_seq[""])
    result = _summary(_combine(per_seq, metrics))
    result["per_sequence"] = {name: _summary(res) for name, res in per_seq.items()}
    return result


# --------------------------------------------------------------------------- the two trackers


def _tracks_table(parts: list[tuple[np.ndarray, ...]]) -> pl.DataFrame:
    if not parts:
        return pl.DataFrame(schema=_TRACK_COLUMNS)
    frame, ids, boxes, scores = (np.concatenate(cols) for cols in zip(*parts, strict=True))
    return pl.DataFrame(
        {
            "frame": frame.astype(np.int64),
            "track_id": ids.astype(np.int64),
            **{k: boxes[:, i].astype(np.float64) for i, k in enumerate(("x1", "y1", "x2", "y2"))},
            "score": scores.astype(np.float64),
        },
        schema=_TRACK_COLUMNS,
    )


def run_ours(
    frames: Sequence[Frame],
    fps: float,
    config: TrackerConfig | None = None,
    embeddings: Sequence[np.ndarray] | None = None,
) -> pl.DataFrame:
    """Our :class:`ByteTracker` over ``frames``: one row per confirmed track and frame.

    Columns ``frame, track_id, x1, y1, x2, y2, score``; boxes are the tracker's
    Kalman-filtered boxes (what Sightline emits downstream), scores the matched
    detections' scores. ``embeddings`` (one array per frame, a row per detection)
    switch the appearance cue on.
    """
    tracker = ByteTracker(config, fps=fps)
    parts = []
    for i, (frame, ts, dets) in enumerate(frames):
        step = tracker.update(dets, ts, None if embeddings is None else embeddings[i])
        if len(step):
            parts.append((np.full(len(step), frame), step.track_ids, step.boxes, step.scores))
    tracker.finish()
    return _tracks_table(parts)


def _peer_class() -> type:
    from trackers import ByteTrackTracker

    return ByteTrackTracker


def peer_settings(config: TrackerConfig | None, fps: float) -> dict[str, Any]:
    """Every constructor argument given to the peer ``trackers.ByteTrackTracker``.

    Fair configuration: ``frame_rate`` is the camera's fps; the thresholds that mean the
    same thing in both trackers are copied from ours; the rest keep the peer's defaults:

    - ``high_conf_det_threshold`` = ``high_score`` (splits the first and second stage);
    - ``track_activation_threshold`` = ``new_track_score`` (least score to start a track);
    - ``lost_track_buffer`` = ``max_lost_s`` * 30 (the peer counts its buffer in
      30-fps frames and turns it into ``lost_track_buffer / 30`` seconds);
    - ``low_score`` has no peer counterpart: the peer treats every box below
      ``high_conf_det_threshold`` as low-score, so both trackers are fed the same
      detections, already cut at ``low_score``;
    - not 1:1, so peer defaults: ``minimum_iou_threshold`` (one IoU gate for both stages,
      no score fusion, where ours has ``match_iou``, ``low_match_iou``,
      ``unconfirmed_match_iou`` and ``fuse_score``), ``minimum_consecutive_frames``
      (default 2: like ours, a track is confirmed by its second detection), the state
      estimator and IoU variant.
    """
    config = config or TrackerConfig()
    signature = inspect.signature(_peer_class().__init__)
    settings = {
        name: p.default
        for name, p in signature.parameters.items()
        if name not in {"self", "state_estimator_class", "iou"}
    }
    settings.update(
        frame_rate=float(fps),
        high_conf_det_threshold=config.high_score,
        track_activation_threshold=config.new_track_score,
        lost_track_buffer=round(config.max_lost_s * 30),
    )
    return settings


def run_peer(
    frames: Sequence[Frame], fps: float, settings: Mapping[str, Any] | None = None
) -> pl.DataFrame:
    """Roboflow ``trackers``' ``ByteTrackTracker`` over ``frames``, same columns as ours.

    ``settings`` default to :func:`peer_settings` for our default config. The peer returns
    every detection with ``tracker_id`` -1 when it is not (yet) a confirmed track; those
    rows are dropped. Its boxes are the detections it matched.
    """
    import supervision as sv

    kwargs = dict(settings or peer_settings(None, fps))
    kwargs["frame_rate"] = float(fps)
    tracker = _peer_class()(**kwargs)
    parts = []
    for frame, ts, dets in frames:
        out = tracker.update(sv.Detections(xyxy=dets.xyxy, confidence=dets.scores), timestamp=ts)
        keep = np.asarray(out.tracker_id) >= 0
        if keep.any():
            ids = np.asarray(out.tracker_id)[keep]
            parts.append((np.full(len(ids), frame), ids, out.xyxy[keep], out.confidence[keep]))
    return _tracks_table(parts)


# --------------------------------------------------------------------------- inputs


def frames_from_table(
    dets: pl.DataFrame, timestamps: np.ndarray, min_score: float = 0.0
) -> list[Frame]:
    """Tracker input from a detections table (``frame, x1, y1, x2, y2, score``).

    ``timestamps[i]`` is the time in seconds of frame ``i + 1``; every frame gets an entry
    (empty when it has no detections) so trackers see time pass. Boxes below
    ``min_score`` are left out.
    """
    dets = dets.filter(pl.col("score") >= min_score).sort("frame", maintain_order=True)
    frame = dets["frame"].to_numpy()
    xyxy = dets.select("x1", "y1", "x2", "y2").to_numpy()
    scores = dets["score"].to_numpy()
    at = np.searchsorted(frame, np.arange(1, len(timestamps) + 2))
    return [
        (
            i + 1,
            float(ts),
            Detections.from_arrays(xyxy[at[i] : at[i + 1]], scores[at[i] : at[i + 1]]),
        )
        for i, ts in enumerate(timestamps)
    ]


@dataclass(frozen=True)
class NoiseSettings:
    """How :func:`noisy_ground_truth` turns ground-truth boxes into detections.

    ``jitter``: standard deviation of each box coordinate as a fraction of the box height;
    ``drop``: fraction of boxes removed; a box's score is its visibility plus
    ``N(0, score_noise)``, clipped to [``score_floor``, 1], so partly hidden people get
    low scores and need the tracker's low-score stage; ``false_positives_per_frame``:
    Poisson mean of person-sized boxes placed at random, scored uniformly in
    [``score_floor``, ``false_positive_max_score``].
    """

    min_visibility: float = 0.25
    jitter: float = 0.03
    drop: float = 0.10
    score_noise: float = 0.10
    score_floor: float = 0.10
    false_positives_per_frame: float = 0.2
    false_positive_max_score: float = 0.7


def _false_positives(
    rng: np.random.Generator, num_frames: int, image_size: tuple[int, int], s: NoiseSettings
) -> np.ndarray:
    """Rows ``frame, x1, y1, x2, y2, score`` of random person-sized boxes."""
    w, h = image_size
    frames = np.repeat(
        np.arange(1, num_frames + 1), rng.poisson(s.false_positives_per_frame, num_frames)
    )
    n = len(frames)
    bh = rng.uniform(0.1, 0.4, n) * h
    bw = 0.4 * bh
    x1, y1 = rng.uniform(0, 1, n) * (w - bw), rng.uniform(0, 1, n) * (h - bh)
    score = rng.uniform(s.score_floor, s.false_positive_max_score, n)
    return np.stack([frames, x1, y1, x1 + bw, y1 + bh, score], axis=1)


def noisy_ground_truth(
    gt: pl.DataFrame,
    seed: int,
    *,
    image_size: tuple[int, int],
    num_frames: int | None = None,
    settings: NoiseSettings | None = None,
) -> pl.DataFrame:
    """Detections made from ground truth (``frame, track_id, x1..y2, visibility``).

    Deterministic per ``seed``: boxes of people at least ``settings.min_visibility``
    visible, clipped to ``image_size`` (width, height), jittered, some dropped, scored by
    visibility, plus a few false positives (see :class:`NoiseSettings`). Returns
    ``frame, x1, y1, x2, y2, score``.
    """
    s = settings or NoiseSettings()
    rng = np.random.default_rng(seed)
    gt = gt.filter(pl.col("visibility") >= s.min_visibility).sort("frame", "track_id")
    w, h = image_size
    xyxy = np.clip(gt.select("x1", "y1", "x2", "y2").to_numpy().astype(np.float64), 0, [w, h, w, h])
    heights = xyxy[:, 3] - xyxy[:, 1]
    xyxy = xyxy + rng.normal(0.0, 1.0, xyxy.shape) * s.jitter * heights[:, None]
    score = np.clip(
        gt["visibility"].to_numpy() + rng.normal(0.0, s.score_noise, len(gt)), s.score_floor, 1.0
    )
    kept = rng.random(len(gt)) >= s.drop
    true_rows = np.column_stack([gt["frame"].to_numpy(), xyxy, score])[kept]
    last = num_frames or _last_frame(gt)
    rows = np.concatenate([true_rows, _false_positives(rng, last, image_size, s)])
    lo = np.clip(np.minimum(rows[:, 1:3], rows[:, 3:5]), 0, [w, h])
    hi = np.clip(np.maximum(rows[:, 1:3], rows[:, 3:5]), 0, [w, h])
    table = pl.DataFrame(
        {
            "frame": rows[:, 0].astype(np.int64),
            "x1": lo[:, 0],
            "y1": lo[:, 1],
            "x2": hi[:, 0],
            "y2": hi[:, 1],
            "score": rows[:, 5],
        }
    )
    return table.sort("frame", maintain_order=True)


# --------------------------------------------------------------------------- site mode


@dataclass
class _Camera:
    """One camera of a site: its ground truth and what the detector found."""

    camera_id: str
    fps: float
    image_size: tuple[int, int]
    timestamps: np.ndarray  # seconds, index = frame number - 1
    truth: pl.DataFrame  # frame (1-based), track_id, x1..y2 clipped to the image, visibility
    detections: list[Frame]
    embeddings: list[np.ndarray] | None = None  # per frame, a row per detection


def _timestamps(site: Path) -> dict[str, np.ndarray]:
    frames = pl.read_parquet(site / "gt" / "frames.parquet").sort("camera_id", "frame_index")
    out = {}
    for (camera,), part in frames.partition_by("camera_id", as_dict=True).items():
        if not np.array_equal(part["frame_index"].to_numpy(), np.arange(len(part))):
            raise EvaluationError(f"{site}: frames of camera {camera} are not numbered 0..n-1")
        ts = part["ts"]
        out[str(camera)] = ((ts - ts.min()).dt.total_microseconds() / 1e6).to_numpy()
    return out


def _site_truth(site: Path) -> pl.DataFrame:
    return pl.read_parquet(site / "gt" / "boxes.parquet").select(
        "camera_id",
        frame=pl.col("frame_index").cast(pl.Int64) + 1,
        track_id=pl.col("person_id").cast(pl.Int64),
        x1="x1",
        y1="y1",
        x2="x2",
        y2="y2",
        visibility="visibility",
    )


def _load_detector(weights: Path | None) -> tuple[Any, dict[str, Any], Path]:
    from sightline.models.builtin_detector import (
        DEFAULT_DETECTOR_WEIGHTS,
        BuiltinDetector,
        load_detector_weights,
    )

    path = Path(weights or DEFAULT_DETECTOR_WEIGHTS)
    net, meta = load_detector_weights(path)
    width = int(meta.get("input_width", 320))
    return BuiltinDetector(net, width, DETECTOR_SCORE_THRESHOLD, prefer_gpu=False), meta, path


def weights_key(path: Path) -> str:
    """A short content hash of a weights file: detections cached under it are reused
    only with the very same weights."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _detect_cached(
    video: Path, detector: Any, cache_key: str | None, bar: tqdm
) -> tuple[list[int], list[Detections], tuple[int, int]]:
    """``detect_video``, cached beside the site under ``cache/`` when ``cache_key`` is
    given (the weights' hash; a re-rendered video has a new size or time and misses)."""
    if cache_key is None:
        return detect_video(video, detector, 16, bar)
    stat = video.stat()
    cache = (
        video.parent.parent
        / "cache"
        / (f"det-{video.stem}-{cache_key}-{stat.st_size}-{int(stat.st_mtime)}.parquet")
    )
    if cache.is_file():
        table = pl.read_parquet(cache)
        h, w = (int(v) for v in table["size"][0])
        dets = [
            Detections.from_arrays(np.asarray(b, np.float32).reshape(-1, 4), np.asarray(s))
            for b, s in zip(table["boxes"].to_list(), table["scores"].to_list(), strict=True)
        ]
        bar.update(len(dets))
        return table["frame_index"].to_list(), dets, (h, w)
    indices, dets, size = detect_video(video, detector, 16, bar)
    cache.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {
            "frame_index": indices,
            "boxes": [d.xyxy.reshape(-1).tolist() for d in dets],
            "scores": [d.scores.tolist() for d in dets],
            "size": [list(size)] * len(dets),
        },
        schema={
            "frame_index": pl.Int64,
            "boxes": pl.List(pl.Float32),
            "scores": pl.List(pl.Float32),
            "size": pl.List(pl.Int64),
        },
    ).write_parquet(cache)
    return indices, dets, size


@dataclass(frozen=True)
class HeldOutSite:
    """A rendered evaluation site, its config, and the built-in detector to run on it."""

    path: Path
    config: SiteConfig
    detector: Any
    weights_key: str  # the detector weights' hash (caches detections under it)

    def cameras(self) -> list[_Camera]:
        """Every camera's detections (cached per weights), as the trackers take them."""
        low = self.config.tracking.tracker.low_score
        return _site_cameras(self.path, self.detector, low, self.weights_key)

    def track(self, ground: GroundFn | None = None) -> list[Tracklet]:
        """Every camera tracked as the camera actors track it (built-in embedder and
        hat-and-bag reader): every tracklet version in emission order; ``ground`` gets
        every frame's ground points."""
        from sightline.evaluation.tracklets import build_tracklets
        from sightline.models.builtin_attributes import builtin_attribute_reader

        embedder = _builtin_embedder()
        reader = builtin_attribute_reader()
        tracklets: list[Tracklet] = []
        for camera in tqdm(self.cameras(), desc="tracking", unit="camera", file=sys.stderr):
            tracklets += build_tracklets(
                self.path / "videos" / f"{camera.camera_id}.mp4",
                self.config.camera(camera.camera_id),
                [d for _, _, d in camera.detections],
                embedder,
                self.config.tracking,
                ground=ground,
                read_attributes=reader,
            )
        return tracklets


def held_out_site(
    preset: str, seed: int, data_dir: Path, detector_weights: Path | None = None
) -> HeldOutSite:
    """Site (preset, seed), rendered into ``data_dir`` if missing; refuses a seed the
    weights (detector or built-in re-ID) were trained or validated on."""
    from sightline.models.builtin_embedder import DEFAULT_REID_WEIGHTS, load_embedder_weights

    detector, meta, weights_path = _load_detector(detector_weights)
    _check_held_out(seed, meta)
    _check_held_out(seed, load_embedder_weights(DEFAULT_REID_WEIGHTS)[1])
    site = ensure_site(data_dir, preset, seed)
    return HeldOutSite(
        site, load_site_config(site / "site.yaml"), detector, weights_key(weights_path)
    )


def _site_cameras(
    site: Path, detector: Any, low_score: float, cache_key: str | None = None
) -> list[_Camera]:
    fps = {c.id: c.fps for c in load_site_config(site / "site.yaml").cameras}
    times = _timestamps(site)
    truth = _site_truth(site)
    cameras = []
    total = sum(len(t) for t in times.values())
    with tqdm(total=total, desc="detecting", unit="frame", file=sys.stderr) as bar:
        for camera in sorted(fps):
            indices, dets, (h, w) = _detect_cached(
                site / "videos" / f"{camera}.mp4", detector, cache_key, bar
            )
            ts = times.get(camera, np.zeros(0))
            ts = np.concatenate(
                [ts, np.arange(len(ts), max(indices, default=-1) + 1) / fps[camera]]
            )
            frames = [
                (i + 1, float(ts[i]), d.above(low_score))
                for i, d in zip(indices, dets, strict=True)
            ]
            gt = truth.filter(pl.col("camera_id") == camera).drop("camera_id")
            gt = gt.with_columns(pl.col("x1", "x2").clip(0, w), pl.col("y1", "y2").clip(0, h))
            cameras.append(_Camera(camera, fps[camera], (w, h), ts, gt, frames))
    return cameras


def _builtin_embedder() -> Any:
    from sightline.models.builtin_embedder import (
        DEFAULT_REID_WEIGHTS,
        BuiltinEmbedder,
        load_embedder_weights,
    )

    net, _ = load_embedder_weights(DEFAULT_REID_WEIGHTS)
    return BuiltinEmbedder(net, prefer_gpu=False)


def _embed_detections(site: Path, cameras: list[_Camera]) -> None:
    """Give every camera the built-in re-ID embedding of each detection (appearance cue)."""
    from sightline.tracking.tracklets import crop_box

    embedder = _builtin_embedder()
    total = sum(len(c.detections) for c in cameras)
    with tqdm(total=total, desc="embedding", unit="frame", file=sys.stderr) as bar:
        for camera in cameras:
            by_frame = {number: dets for number, _, dets in camera.detections}
            vectors: dict[int, np.ndarray] = {}
            for index, image in read_frames(site / "videos" / f"{camera.camera_id}.mp4"):
                dets = by_frame.get(index + 1)
                if dets is not None:
                    crops = [crop_box(image, box) for box in dets.xyxy]
                    vectors[index + 1] = (
                        embedder.embed(crops) if crops else np.zeros((0, embedder.dim), np.float32)
                    )
                    bar.update(1)
            camera.embeddings = [vectors[number] for number, _, _ in camera.detections]


def _tracklet_scores(
    site: Path, cameras: list[_Camera], config: TrackerConfig, appearance: bool
) -> dict[str, Any]:
    """Tracklets built as a camera actor builds them, scored on colours, height, feet,
    hat and bag."""
    from sightline.evaluation.tracklets import score_tracklets, tracklets_for_camera
    from sightline.models.builtin_attributes import builtin_attribute_reader

    site_config = load_site_config(site / "site.yaml")
    tracking = TrackingConfig(tracker=config, appearance=appearance)
    embedder = _builtin_embedder()
    reader = builtin_attribute_reader()
    tables = []
    for camera in tqdm(cameras, desc="tracklets", unit="camera", file=sys.stderr):
        detections = [dets for _, _, dets in camera.detections]
        video = site / "videos" / f"{camera.camera_id}.mp4"
        cam = site_config.camera(camera.camera_id)
        tables.append(
            tracklets_for_camera(
                video, cam, detections, embedder, tracking, camera.embeddings, reader
            )
        )
    return score_tracklets(
        pl.concat(tables),
        pl.read_parquet(site / "gt" / "boxes.parquet"),
        pl.read_parquet(site / "gt" / "people.parquet"),
        site_config.cameras,
    )


def _noisy_frames(camera: _Camera, seed: int, low_score: float) -> list[Frame]:
    noisy = noisy_ground_truth(
        camera.truth, seed, image_size=camera.image_size, num_frames=len(camera.timestamps)
    )
    return frames_from_table(noisy, camera.timestamps, min_score=low_score)


def _with_sequence(df: pl.DataFrame, name: str) -> pl.DataFrame:
    return df.with_columns(sequence=pl.lit(name))


def _track_site(
    cameras: list[_Camera], seed: int, config: TrackerConfig
) -> dict[str, list[pl.DataFrame]]:
    """Every run on every camera. With embeddings, ``ours`` uses the appearance cue and
    ``ours_iou_only`` is the like-for-like ByteTrack comparison; noisy ground-truth boxes
    have no crops, so ours runs on them without appearance."""
    runs: dict[str, list[pl.DataFrame]] = defaultdict(list)
    for index, camera in enumerate(tqdm(cameras, desc="tracking", unit="camera", file=sys.stderr)):
        peer = peer_settings(config, camera.fps)
        noisy = _noisy_frames(camera, seed * 1000 + index, config.low_score)
        dets = camera.detections
        plan: list[tuple[str, pl.DataFrame]] = [
            ("ours", run_ours(dets, camera.fps, config, camera.embeddings)),
            ("peer", run_peer(dets, camera.fps, peer)),
            ("noisy_ours", run_ours(noisy, camera.fps, config)),
            ("noisy_peer", run_peer(noisy, camera.fps, peer)),
        ]
        if camera.embeddings is not None:
            plan.append(("ours_iou_only", run_ours(dets, camera.fps, config)))
        for name, table in plan:
            runs[name].append(_with_sequence(table, camera.camera_id))
    return dict(runs)


def _settings(
    config: TrackerConfig, fps: Mapping[str, float], min_visibility: float
) -> dict[str, Any]:
    from importlib.metadata import version

    rates = sorted(set(fps.values()))
    peer = peer_settings(config, rates[0] if rates else 10.0)
    if len(rates) > 1:
        peer["frame_rate"] = "each camera's fps (see fps)"
    return {
        "min_visibility": min_visibility,
        "ignored_ground_truth": "people less visible than min_visibility (and any tracker box "
        "matched to them at IoU >= 0.5) are left out, as TrackEval does for distractors",
        "fps": dict(fps),
        "input": f"both trackers get the same detections, cut at low_score ({config.low_score})",
        "ours": {
            "tracker": "sightline.tracking.ByteTracker",
            "config": config.model_dump(),
            "boxes": "Kalman-filtered track boxes",
        },
        "peer": {
            "tracker": "trackers.ByteTrackTracker",
            "version": version("trackers"),
            "settings": peer,
            "mapped_from_ours": {
                "high_conf_det_threshold": "high_score",
                "track_activation_threshold": "new_track_score",
                "lost_track_buffer": "max_lost_s * 30",
                "frame_rate": "camera fps",
            },
            "boxes": "the matched detections (what it returns)",
        },
    }


def _passed(ours: Mapping[str, Any], peer: Mapping[str, Any]) -> dict[str, bool]:
    result = {name: bool(ours[name] >= target) for name, target in _TARGETS.items()}
    result["IDF1_at_least_peer"] = bool(ours["IDF1"] >= peer["IDF1"])
    return result


def _run_site(
    preset: str,
    seed: int,
    data_dir: Path,
    weights: Path | None,
    config: TrackerConfig,
    min_visibility: float,
    appearance: bool,
) -> dict[str, Any]:
    detector, meta, weights_path = _load_detector(weights)
    _check_held_out(seed, meta)
    site = ensure_site(data_dir, preset, seed)
    cameras = _site_cameras(site, detector, config.low_score, weights_key(weights_path))
    if appearance:
        _embed_detections(site, cameras)
    runs = _track_site(cameras, seed, config)
    truth = pl.concat([_with_sequence(c.truth, c.camera_id) for c in cameras])
    lengths = {c.camera_id: len(c.timestamps) for c in cameras}
    scores = {
        name: score_tracks(
            truth, pl.concat(parts), min_visibility=min_visibility, num_frames=lengths
        )
        for name, parts in runs.items()
    }
    per_camera = {
        c.camera_id: {
            "ours": scores["ours"]["per_sequence"][c.camera_id],
            "peer": scores["peer"]["per_sequence"][c.camera_id],
            "noisy_gt": {
                "ours": scores["noisy_ours"]["per_sequence"][c.camera_id],
                "peer": scores["noisy_peer"]["per_sequence"][c.camera_id],
            },
        }
        for c in cameras
    }
    combined = {k: {m: v for m, v in s.items() if m != "per_sequence"} for k, s in scores.items()}
    settings = _settings(config, {c.camera_id: c.fps for c in cameras}, min_visibility)
    settings["detector"] = {
        "weights": str(weights_path),
        "score_threshold": DETECTOR_SCORE_THRESHOLD,
    }
    settings["noise"] = {**asdict(NoiseSettings()), "seed": f"{seed} * 1000 + camera index"}
    return {
        "evaluation": "tracking",
        "mode": "site",
        "preset": preset,
        "seed": seed,
        "metric": "TrackEval HOTA, CLEAR (MOTA), Identity (IDF1); cameras combined with "
        "TrackEval's combine_sequences",
        "ours": combined["ours"],
        "peer": combined["peer"],
        **({"ours_iou_only": combined["ours_iou_only"]} if appearance else {}),
        "appearance": appearance,
        "tracklets": _tracklet_scores(site, cameras, config, appearance),
        "noisy_gt": {"ours": combined["noisy_ours"], "peer": combined["noisy_peer"]},
        "per_camera": per_camera,
        "settings": settings,
        "targets": {**_TARGETS, "IDF1_at_least_peer": True},
        "passed": _passed(combined["ours"], combined["peer"]),
    }


# --------------------------------------------------------------------------- MOTChallenge mode


def _seqinfo(*files: Path) -> dict[str, Any]:
    """``frameRate``, ``seqLength`` and ``name`` from a MOTChallenge ``seqinfo.ini`` nearby."""
    for file in files:
        for folder in (file.parent.parent, file.parent):
            ini = folder / "seqinfo.ini"
            if ini.is_file():
                parser = configparser.ConfigParser()
                parser.read(ini, encoding="utf-8")
                section = parser["Sequence"] if parser.has_section("Sequence") else {}
                return {
                    "fps": float(section.get("frameRate", 0)) or None,
                    "length": int(section.get("seqLength", 0)) or None,
                    "name": section.get("name", folder.name),
                }
    return {}


def _run_mot(
    det_file: Path,
    gt_file: Path,
    fps: float | None,
    config: TrackerConfig,
    min_visibility: float,
) -> dict[str, Any]:
    try:
        dets, gt = read_mot_detections(det_file), read_mot_gt(gt_file)
    except ValueError as exc:
        raise EvaluationError(str(exc)) from exc
    info = _seqinfo(Path(det_file), Path(gt_file))
    rate = float(fps or info.get("fps") or 30.0)
    length = int(info.get("length") or _last_frame(dets, gt))
    frames = frames_from_table(dets, np.arange(length) / rate, min_score=config.low_score)
    ours, peer = run_ours(frames, rate, config), run_peer(frames, rate, peer_settings(config, rate))
    return {
        "evaluation": "tracking",
        "mode": "motchallenge",
        "sequence": info.get("name", Path(gt_file).stem),
        "det_file": str(det_file),
        "gt_file": str(gt_file),
        "metric": "TrackEval HOTA, CLEAR (MOTA), Identity (IDF1) with MotChallenge2DBox's "
        "preprocessing (distractor classes removed with the tracker boxes on them)",
        "ours": score_tracks(gt, ours, min_visibility=min_visibility, num_frames=length),
        "peer": score_tracks(gt, peer, min_visibility=min_visibility, num_frames=length),
        "settings": _settings(config, {"sequence": rate}, min_visibility),
    }


def run_eval_tracking(
    preset: str = "small",
    seed: int = 21,
    data_dir: Path | None = None,
    *,
    det_file: Path | None = None,
    gt_file: Path | None = None,
    fps: float | None = None,
    detector_weights: Path | None = None,
    tracking: TrackingConfig | None = None,
) -> dict[str, Any]:
    """Score our tracker and the peer ByteTrack on the same detections (see module doc).

    Site mode (no ``det_file``/``gt_file``): site (``preset``, ``seed``) under
    ``data_dir``, which must be held out from the detector's training; the built-in
    detector (``detector_weights``) runs on every frame at score threshold 0.1, and both
    trackers also run on noisy ground-truth boxes (``"noisy_gt"``); people less than
    :data:`DEFAULT_MIN_VISIBILITY` visible are ignored. MOTChallenge mode (``det_file``
    and ``gt_file``): both trackers run on the detections and are scored against the
    ground truth with TrackEval's MOT17 rules (no visibility cut); ``fps`` defaults to the
    ``seqinfo.ini`` next to the files, else 30. ``tracking`` holds our tracker's config
    (the peer's mapped thresholds follow it) and whether ours uses the appearance cue
    (site mode only: the built-in re-ID model embeds every detection; the JSON then has
    ``ours_iou_only`` too, the like-for-like ByteTrack comparison).
    """
    tracking = tracking or TrackingConfig()
    config = tracking.tracker
    if det_file is not None or gt_file is not None:
        if det_file is None or gt_file is None:
            raise EvaluationError("MOTChallenge mode needs both a det file and a gt file")
        return _run_mot(Path(det_file), Path(gt_file), fps, config, 0.0)
    if data_dir is None:
        raise EvaluationError("site mode needs a data directory")
    return _run_site(
        preset,
        seed,
        Path(data_dir),
        detector_weights,
        config,
        DEFAULT_MIN_VISIBILITY,
        tracking.appearance,
    )

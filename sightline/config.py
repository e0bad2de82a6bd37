"""Site configuration: cameras, calibration, zones, topology, models, storage, security.

A site config is a YAML file validated by the pydantic models below. Every model
forbids unknown keys, so a typo fails loudly instead of being ignored. Camera
settings shared by all cameras are declared once under ``camera_defaults`` and
merged into each camera (the camera's own values win).

Load with :func:`load_site_config`; a bad file raises :class:`ConfigError` whose
message names the file, the field path (``cameras[1] (id=gate).fps``) and the bad
value. Relative paths in the file (video files, storage root, model files) are
resolved against the folder that holds the config file.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import shapely
import yaml
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sightline import geometry

__all__ = [
    "BuiltinDetectorConfig",
    "BuiltinEmbedderConfig",
    "CalibrationPoint",
    "CameraConfig",
    "CameraDefaults",
    "ConfigError",
    "DensityConfig",
    "FusionConfig",
    "ModelsConfig",
    "SecurityConfig",
    "ServingConfig",
    "SiteConfig",
    "StorageConfig",
    "TopologyConfig",
    "TorchScriptDetectorConfig",
    "TorchScriptEmbedderConfig",
    "TrackerConfig",
    "TrackingConfig",
    "ZoneConfig",
    "dump_site_config",
    "load_site_config",
    "parse_site_config",
]

_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "srt://")
Point2 = tuple[float, float]


class ConfigError(ValueError):
    """A site config could not be loaded; the message names file, field and value."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _resolve_path(value: str, info: ValidationInfo) -> str:
    """Resolve a relative local path against the config file's folder (if known)."""
    if value.startswith(_URL_SCHEMES) or "://" in value:
        return value
    base = (info.context or {}).get("base_dir")
    path = Path(value).expanduser()
    if base is not None and not path.is_absolute():
        path = Path(base) / path
    return str(path)


# A file path in the config, resolved against the config file's folder (URLs kept as-is).
ConfigPath = Annotated[str, Field(min_length=1), AfterValidator(_resolve_path)]

# --------------------------------------------------------------------------- cameras


class CalibrationPoint(_Strict):
    """One image-pixel <-> ground-metre correspondence used to fit the homography."""

    image: Point2 = Field(title="Image point", description="Pixel (x, y), origin top-left.")
    ground: Point2 = Field(title="Ground point", description="World (x, y) in metres.")


class CameraDefaults(_Strict):
    """Camera settings declared once and merged into every camera that omits them."""

    fps: float = Field(
        10.0,
        gt=0,
        le=120,
        title="Target fps",
        description="Frames per second sampled from the stream for analysis. Raising it "
        "improves tracking through fast motion at proportionally more model load.",
    )
    resolution: tuple[
        Annotated[int, Field(ge=16, le=7680)], Annotated[int, Field(ge=16, le=4320)]
    ] = Field(
        (640, 360),
        title="Resolution",
        description="(width, height) in pixels of the frames the calibration refers to; "
        "decoded frames are resized to it.",
    )
    clock_offset_s: float = Field(
        0.0,
        ge=-86400,
        le=86400,
        title="Clock offset",
        description="Seconds added to the camera's timestamps to get true UTC.",
    )
    enabled: bool = Field(True, description="Disabled cameras are kept in the config but not run.")
    mode: Literal["live", "forensic"] | None = Field(
        None,
        title="Processing mode",
        description="live: keep up with the stream, dropping frames when behind (and counting "
        "them); forensic: process every sampled frame of a recording as fast as the cluster "
        "allows. Default: live for stream URLs, forensic for files.",
    )
    max_in_flight: int = Field(
        4,
        ge=1,
        le=256,
        title="Detector requests in flight",
        description="Frames a camera has at the detector at once. Raising it lets replicas "
        "form bigger batches (throughput) at the cost of latency and memory.",
    )


class CameraConfig(CameraDefaults):
    """One camera: where its video comes from and how its image maps to the ground."""

    id: str = Field(pattern=_ID_PATTERN, description="Unique camera id (letters, digits, _ and -).")
    source: ConfigPath = Field(
        description="Stream URL (rtsp/http/...) or video file path, relative to the config file.",
    )
    source_start: AwareDatetime | None = Field(
        None,
        description="UTC time of the first frame of a recorded file (ISO 8601 with timezone); "
        "live streams use the arrival time instead.",
    )
    calibration: list[CalibrationPoint] = Field(
        description=">= 4 image <-> ground point pairs, no three collinear, from which the "
        "image-to-ground homography is computed."
    )
    _image_to_ground: np.ndarray = PrivateAttr()
    _calibration_rmse_m: float = PrivateAttr()

    @field_validator("calibration")
    @classmethod
    def _enough_points(cls, value: list[CalibrationPoint]) -> list[CalibrationPoint]:
        if len(value) < 4:
            raise ValueError(
                f"calibration needs at least 4 image<->ground point pairs to fit a homography, "
                f"got {len(value)}"
            )
        return value

    @model_validator(mode="after")
    def _fit_homography(self) -> CameraConfig:
        image = np.array([p.image for p in self.calibration])
        ground = np.array([p.ground for p in self.calibration])
        width, height = self.resolution
        outside = [
            i for i, (x, y) in enumerate(image) if not (0 <= x <= width and 0 <= y <= height)
        ]
        if outside:
            i = outside[0]
            raise ValueError(
                f"calibration[{i}].image {tuple(float(v) for v in image[i])} lies outside the "
                f"{width}x{height} frame"
            )
        try:
            h = geometry.fit_homography(image, ground)
        except geometry.DegenerateCalibrationError as exc:
            raise ValueError(f"degenerate calibration: {exc}") from None
        self._image_to_ground = h
        self._calibration_rmse_m = geometry.homography_rmse(h, image, ground)
        return self

    @property
    def image_to_ground(self) -> np.ndarray:
        """3x3 homography mapping image pixels to ground metres."""
        return self._image_to_ground

    @property
    def ground_to_image(self) -> np.ndarray:
        """3x3 homography mapping ground metres to image pixels."""
        return geometry.invert_homography(self._image_to_ground)

    @property
    def calibration_rmse_m(self) -> float:
        """RMS distance (metres) between the calibration ground points and their fit."""
        return self._calibration_rmse_m

    @property
    def is_stream(self) -> bool:
        """True for network streams, false for local video files."""
        return self.source.startswith(_URL_SCHEMES)


# --------------------------------------------------------------------------- zones


class ZoneConfig(_Strict):
    """A named area of the ground plane where crowd density is counted and alerted."""

    id: str = Field(pattern=_ID_PATTERN, description="Unique zone id.")
    name: str | None = Field(None, description="Human-readable name shown to operators.")
    polygon: list[Point2] = Field(
        min_length=3, description="Vertices (x, y) in ground metres, in order; not closed."
    )
    alert_density: float = Field(
        2.0,
        gt=0,
        le=10,
        title="Alert density",
        description="Persons per m2 above which an alert starts. Lower it to warn earlier "
        "at the cost of more alerts on ordinary busy moments.",
    )
    clear_density: float | None = Field(
        None,
        gt=0,
        le=10,
        description="Persons per m2 below which an alert ends (hysteresis); default 80% of "
        "alert_density. Closer to alert_density ends alerts sooner but lets them flap.",
    )
    alert_hold_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="Seconds the density must stay above alert_density before an alert "
        "starts. Longer holds ignore brief surges.",
    )

    @field_validator("polygon")
    @classmethod
    def _simple_polygon(cls, value: list[Point2]) -> list[Point2]:
        poly = shapely.Polygon(value)
        if not poly.is_valid:
            raise ValueError(f"polygon is not simple ({shapely.is_valid_reason(poly)})")
        if poly.area <= 0:
            raise ValueError("polygon has zero area")
        return value

    @model_validator(mode="after")
    def _hysteresis(self) -> ZoneConfig:
        if self.clear_density is not None and self.clear_density > self.alert_density:
            raise ValueError(
                f"clear_density {self.clear_density} must not exceed alert_density "
                f"{self.alert_density}"
            )
        return self

    @property
    def area_m2(self) -> float:
        """Zone area in square metres."""
        return geometry.polygon_area(self.polygon)

    @property
    def effective_clear_density(self) -> float:
        """The density at which an alert ends."""
        return self.clear_density if self.clear_density is not None else 0.8 * self.alert_density


# --------------------------------------------------------------------------- topology


class TopologyLink(_Strict):
    """Two cameras a person can walk between, with how long that usually takes."""

    cameras: tuple[str, str] = Field(description="The two camera ids.")
    typical_transit_s: float = Field(
        ge=0, le=86400, description="Typical seconds from leaving one view to entering the other."
    )
    max_transit_s: float | None = Field(
        None, ge=0, le=86400, description="Longest plausible transit; default 3x typical."
    )
    bidirectional: bool = Field(True, description="The link can be walked both ways.")


class TopologyConfig(_Strict):
    """Optional knowledge of how cameras connect; fusion also learns transit times."""

    links: list[TopologyLink] = Field(default_factory=list)
    min_walking_speed_mps: float = Field(
        0.3, gt=0, le=3, description="Slowest plausible walking speed (metres/second)."
    )
    max_walking_speed_mps: float = Field(
        2.5,
        gt=0,
        le=10,
        description="Fastest plausible speed. Raising it admits more camera transitions "
        "as reachable (more candidates, more false matches).",
    )

    @model_validator(mode="after")
    def _speed_order(self) -> TopologyConfig:
        if self.min_walking_speed_mps >= self.max_walking_speed_mps:
            raise ValueError(
                f"min_walking_speed_mps {self.min_walking_speed_mps} must be below "
                f"max_walking_speed_mps {self.max_walking_speed_mps}"
            )
        return self


# --------------------------------------------------------------------------- models


class AutoscalingConfig(_Strict):
    """Ray Serve autoscaling for one deployment (validated here because Ray ignores typos)."""

    min_replicas: int = Field(1, ge=0, le=1000)
    max_replicas: int = Field(1, ge=1, le=1000)
    initial_replicas: int | None = Field(None, ge=0, le=1000)
    target_ongoing_requests: float = Field(
        2.0,
        gt=0,
        description="Requests in flight per replica that autoscaling aims for; lower scales "
        "out sooner (lower latency, more GPUs).",
    )
    upscale_delay_s: float = Field(30.0, ge=0, description="Load must stay high this long.")
    downscale_delay_s: float = Field(600.0, ge=0, description="Load must stay low this long.")
    look_back_period_s: float = Field(
        30.0,
        gt=0,
        description="Window over which ongoing requests are averaged; shorter reacts faster "
        "(also to short bursts).",
    )

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas {self.min_replicas} exceeds max_replicas {self.max_replicas}"
            )
        init = self.initial_replicas
        if init is not None and not self.min_replicas <= init <= self.max_replicas:
            raise ValueError(
                f"initial_replicas {init} is outside [{self.min_replicas}, {self.max_replicas}]"
            )
        return self


class ServingConfig(_Strict):
    """How a model deployment is batched, placed and scaled."""

    max_batch_size: int = Field(
        16,
        ge=1,
        le=1024,
        description="Largest batch one replica runs. Larger batches use the GPU better but "
        "wait longer to fill.",
    )
    batch_wait_timeout_s: float = Field(
        0.01,
        ge=0,
        le=10,
        description="How long a replica waits for a batch to fill; longer raises throughput "
        "and latency.",
    )
    num_gpus: float = Field(
        0.0, ge=0, le=8, description="GPUs per replica; fractions share a device."
    )
    num_cpus: float = Field(0.5, ge=0, le=64, description="CPUs per replica.")
    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig)


class BuiltinDetectorConfig(_Strict):
    """The project's own small person detector, trained on synthetic sites."""

    type: Literal["builtin"] = "builtin"
    weights: ConfigPath | None = Field(
        None, description="Weights file; default: the committed ones."
    )
    score_threshold: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Boxes scoring below are dropped; lower finds more people and more false "
        "boxes. The default keeps the weak boxes the tracker's low-score stage needs "
        "(tracking.tracker.low_score); only confident ones start tracks.",
    )
    serving: ServingConfig = Field(default_factory=ServingConfig)


class TorchScriptDetectorConfig(_Strict):
    """A bring-your-own TorchScript detector with an output adapter for its format."""

    type: Literal["torchscript"]
    path: ConfigPath = Field(description="TorchScript file, relative to the config.")
    format: Literal["boxes", "yolov8"] = Field(
        description="Output format: plain (boxes, scores), or YOLOv8 raw head output (NMS applied)."
    )
    input_size: tuple[int, int] = Field((640, 640), description="(width, height) fed to the model.")
    person_class: int = Field(
        0, ge=0, description="Class index of 'person' for multi-class models."
    )
    score_threshold: float = Field(0.3, ge=0, le=1)
    nms_iou: float = Field(0.5, gt=0, le=1, description="IoU above which NMS drops a box.")
    serving: ServingConfig = Field(default_factory=ServingConfig)


class BuiltinEmbedderConfig(_Strict):
    """The project's own re-identification embedder, trained on synthetic sites."""

    type: Literal["builtin"] = "builtin"
    weights: ConfigPath | None = Field(
        None, description="Weights file; default: the committed ones."
    )
    serving: ServingConfig = Field(default_factory=ServingConfig)


class TorchScriptEmbedderConfig(_Strict):
    """A bring-your-own TorchScript re-ID model (e.g. OSNet exported to TorchScript)."""

    type: Literal["torchscript"]
    path: ConfigPath = Field(description="TorchScript file, relative to the config.")
    input_size: tuple[int, int] = Field((128, 256), description="(width, height) of crops.")
    serving: ServingConfig = Field(default_factory=ServingConfig)


def _model_type(value: Any) -> str:
    """Discriminator of model configs: ``type``, defaulting to the built-in model."""
    if isinstance(value, dict):
        return str(value.get("type", "builtin"))
    return str(getattr(value, "type", "builtin"))


DetectorConfig = Annotated[
    Annotated[BuiltinDetectorConfig, Tag("builtin")]
    | Annotated[TorchScriptDetectorConfig, Tag("torchscript")],
    Discriminator(_model_type),
]
EmbedderConfig = Annotated[
    Annotated[BuiltinEmbedderConfig, Tag("builtin")]
    | Annotated[TorchScriptEmbedderConfig, Tag("torchscript")],
    Discriminator(_model_type),
]


class ModelsConfig(_Strict):
    """Which detector and embedder the site runs, and how they are served."""

    detector: DetectorConfig = Field(default_factory=BuiltinDetectorConfig)
    embedder: EmbedderConfig = Field(default_factory=BuiltinEmbedderConfig)


# --------------------------------------------------------------------------- tracking


class TrackerConfig(_Strict):
    """ByteTrack-style association thresholds (one tracker per camera).

    Each description says what raising the value does; lowering does the opposite.
    """

    high_score: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Detections at or above this score enter the first association and may "
        "start tracks. Raising it starts fewer false tracks but leans more on the low stage.",
    )
    low_score: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Detections between this and high_score only extend existing tracks "
        "(the second stage). Raising it ignores more doubtful boxes: fewer wrong extensions, "
        "more tracks lost in occlusion. The detector's score_threshold must be at or below "
        "it for the stage to see anything.",
    )
    new_track_score: float = Field(
        0.6,
        gt=0,
        le=1,
        description="An unmatched detection starts a track only at or above this score. "
        "Raising it suppresses tracks on false detections and starts real ones later.",
    )
    match_iou: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Least IoU (after score fusion) between a predicted track and a "
        "high-score detection to associate them. Raising it avoids swaps in crowds and "
        "breaks tracks of fast or jittery people.",
    )
    low_match_iou: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Least IoU for the second stage (low-score detections). Raising it makes "
        "occluded people lose their tracks sooner rather than steal a neighbour's box.",
    )
    unconfirmed_match_iou: float = Field(
        0.3,
        gt=0,
        le=1,
        description="Least IoU for a one-frame-old track to be confirmed by its second "
        "detection. Raising it drops more flicker and more slow starts.",
    )
    fuse_score: bool = Field(
        True,
        description="Multiply IoU by the detection score in the first stage, so a confident "
        "box wins a tie.",
    )
    max_lost_s: float = Field(
        3.0,
        gt=0,
        le=600,
        description="How long a lost track waits to be found again before it ends. Raising "
        "it bridges longer occlusions and risks handing the id to someone else.",
    )
    appearance_max_distance: float = Field(
        0.25,
        gt=0,
        le=1,
        description="With embeddings of every detection (appearance cue on): a pair whose "
        "cosine distance ((1 - cos) / 2) is below this may match on appearance when the "
        "boxes are near. Raising it re-associates more after occlusion and risks swaps.",
    )
    appearance_proximity_iou: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Appearance matching needs at least this IoU with the predicted box "
        "(a spatial gate). Lowering it lets appearance bridge larger jumps.",
    )
    switch_cosine: float | None = Field(
        0.4,
        ge=-1,
        le=1,
        description="With embeddings of every detection (appearance cue on): a track whose "
        "detections look unlike the person it follows (cosine similarity below this) for "
        "switch_frames frames in a row has switched to someone else; its id ends there and "
        "the track goes on under a new id. Raising it cuts more (and more wrongly); null "
        "turns the check off.",
    )
    switch_frames: int = Field(
        5,
        ge=1,
        le=1000,
        description="Frames in a row that must look unlike a track's person before it is "
        "cut (see switch_cosine). Lowering it cuts sooner, also on brief occlusions.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> TrackerConfig:
        if not self.low_score <= self.high_score <= self.new_track_score:
            raise ValueError(
                "scores must satisfy low_score <= high_score <= new_track_score, got "
                f"{self.low_score}, {self.high_score}, {self.new_track_score}"
            )
        return self


class TrackingConfig(_Strict):
    """Per-camera tracking and how its tracklets are emitted."""

    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    appearance: bool = Field(
        True,
        description="Embed every detection before tracking and use appearance in "
        "association (fewer identity switches in crossings and after occlusions; costs one "
        "embedded crop per detection instead of a few per track).",
    )
    emit_every_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="A track still in view is emitted as a partial tracklet this often, with "
        "a higher version each time; lower makes live searches see people sooner.",
    )
    min_track_frames: int = Field(
        3,
        ge=1,
        description="Tracks with fewer observed frames are not emitted (flicker).",
    )
    embeddings_per_tracklet: int = Field(
        8,
        ge=1,
        le=64,
        description="Best-quality crops embedded per tracklet; more is a better appearance "
        "summary and more embedder load.",
    )


# --------------------------------------------------------------------------- fusion


class FusionConfig(_Strict):
    """How the coordinator joins tracklets of all cameras into people (global identities).

    Each description says what raising the value does.
    """

    min_match_probability: float = Field(
        0.8,
        gt=0,
        lt=1,
        description="Calibrated appearance probability needed to join a tracklet to a person "
        "seen elsewhere. Raising it makes fewer wrong joins and more split identities.",
    )
    min_probability_together: float = Field(
        0.3,
        ge=0,
        lt=1,
        description="Two tracklets seen together at one place are joined only if their "
        "appearance probability reaches this (in a crowd, neighbours stand within the "
        "radius). Raising it trusts geometry less.",
    )
    overlap_radius_m: float = Field(
        1.5,
        gt=0,
        le=20,
        description="Two cameras seeing people this close on the ground at the same time see "
        "the same person. Raising it joins more across overlapping views, including "
        "neighbours in a crowd.",
    )
    conflict_distance_m: float = Field(
        4.0,
        gt=0,
        le=100,
        description="Seen this far apart at the same time, two tracklets are two people (a "
        "veto). Raising it tolerates worse calibration and vetoes fewer wrong joins.",
    )
    min_overlap_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="Time two tracklets must share before their positions count as evidence.",
    )
    max_gap_s: float = Field(
        300.0,
        gt=0,
        le=86400,
        description="A person unseen for longer is no longer a candidate for new tracklets "
        "(bounds the work per tracklet). Raising it re-identifies after longer absences "
        "at more cost and risk.",
    )
    position_slack_m: float = Field(
        2.0,
        ge=0,
        le=50,
        description="Ground distance allowed on top of walking speed x time (foot-point "
        "noise, calibration error).",
    )
    transit_slack_s: float = Field(
        120.0,
        ge=0,
        le=3600,
        description="Time allowed on top of a configured link's max transit time: the gap "
        "between two tracklets also holds the time the trackers lost the person "
        "(occlusion, crowds: on the synthetic sites people reappear up to about 3 "
        "minutes later, a few metres from where they were lost). Raising it vetoes fewer "
        "slow transitions.",
    )
    use_height: bool = Field(
        True,
        description="Weigh the tracklets' estimated heights with appearance: similar heights "
        "raise the match probability, different heights lower it.",
    )
    height_noise_m: float = Field(
        0.032,
        gt=0,
        le=1,
        description="Standard deviation of one tracklet's height estimate. Raising it trusts "
        "height differences less.",
    )
    height_spread_m: float = Field(
        0.12,
        gt=0,
        le=1,
        description="Standard deviation of height among people who look alike. Raising it "
        "makes equal heights stronger evidence of one person.",
    )
    height_outlier_probability: float = Field(
        0.26,
        gt=0,
        le=1,
        description="Share of one person's tracklets whose height estimate is off (partly "
        "visible, at the image edge). Raising it bounds the penalty for a height "
        "difference more tightly; 1 ignores heights.",
    )
    recluster_every_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="Every this many seconds of site time, the active window's people are "
        "clustered again from their tracklets, all at once (the online decisions are "
        "greedy); 0 turns it off. Lowering it corrects mistakes sooner at more cost.",
    )
    recluster_min_log_odds: float = Field(
        2.0,
        ge=-10,
        le=20,
        description="Re-clustering joins two groups of tracklets while the mean match "
        "log-odds between them exceeds this. Raising it makes fewer wrong joins and more "
        "split identities.",
    )
    together_log_odds: float = Field(
        3.0,
        ge=0,
        le=20,
        description="Log-odds re-clustering adds to a pair of tracklets seen together at one "
        "place by two cameras. Raising it trusts overlapping views more than appearance.",
    )


# --------------------------------------------------------------------------- density


class DensityConfig(_Strict):
    """How the coordinator counts people per zone across overlapping cameras.

    Each description says what raising the value does.
    """

    dedup_radius_m: float = Field(
        0.7,
        gt=0,
        le=5,
        description="Two cameras seeing people this close on the ground in the same frame "
        "time see one person (counted once). Raising it merges more double views and also "
        "more true neighbours in a dense crowd.",
    )
    coverage_cell_m: float = Field(
        0.25,
        gt=0,
        le=5,
        description="Grid step used to measure how much of a zone the cameras see. Raising "
        "it is cheaper and coarser.",
    )
    view_margin_px: float = Field(
        4.0,
        ge=0,
        le=200,
        description="A ground point counts as seen by a camera only if its image lies this "
        "far inside the frame.",
    )
    max_view_distance_m: float | None = Field(
        40.0,
        gt=0,
        description="Ground distance from a camera beyond which it is not trusted to see "
        "people (too small to detect); null for no limit. Raising it claims more coverage.",
    )
    camera_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="A second is counted once every camera has reported past it; a camera "
        "that has sent nothing for this long (wall time) no longer holds the counts back, "
        "and its absence shows as lower coverage. Raising it waits longer for a stalled "
        "camera and delays live counts and alerts.",
    )
    heatmap_cell_m: float = Field(
        0.5,
        gt=0,
        le=10,
        description="Cell size of occupancy heatmaps. Raising it gives coarser, smoother maps.",
    )


# --------------------------------------------------------------------------- storage, security


class StorageConfig(_Strict):
    """Where the fused-track store (Parquet) and thumbnails live."""

    root: ConfigPath = Field(
        "store",
        description="Local folder (relative to the config) or any URL polars can write.",
    )
    flush_after_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        title="Longest wait before rows are written",
        description="The coordinator writes buffered rows once the oldest has waited this "
        "long (or 2000 rows wait), so searches and queries of a live site see tracklets "
        "within about this delay. Lower it for fresher reads at the cost of more, smaller "
        "Parquet parts.",
    )


class SecurityConfig(_Strict):
    """API authentication, audit and retention settings."""

    api_keys_file: str = Field(
        "keys.json",
        description="Hashed API keys: a file name under <storage.root>/_security/ "
        "(beside the audit log, <storage.root>/_security/audit/).",
    )
    retention_days: int = Field(
        30, ge=1, le=3650, description="Tracklets, sightings and thumbnails older are purged."
    )
    audit_retention_days: int = Field(
        365, ge=1, le=36500, description="The audit log's own (longer) retention."
    )
    max_upload_mb: float = Field(10.0, gt=0, le=100, description="Largest accepted photo upload.")

    @model_validator(mode="after")
    def _audit_outlives_data(self) -> SecurityConfig:
        if self.audit_retention_days < self.retention_days:
            raise ValueError(
                f"audit_retention_days {self.audit_retention_days} must be at least "
                f"retention_days {self.retention_days}"
            )
        return self


# --------------------------------------------------------------------------- site


def _merge(defaults: dict, override: dict) -> dict:
    """Deep-merge ``override`` onto ``defaults`` (override wins; nested dicts merge)."""
    out = copy.deepcopy(defaults)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _unique(ids: list[str], what: str) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise ValueError(f"duplicate {what} id {i!r}")
        seen.add(i)


class SiteConfig(_Strict):
    """A whole site: cameras with calibration, zones, topology, models, storage, security."""

    version: Literal[1] = Field(1, description="Config format version.")
    name: str = Field(min_length=1, max_length=200, description="Site name.")
    outline: list[Point2] | None = Field(
        None, description="Site boundary polygon in ground metres (drawn on maps)."
    )
    camera_defaults: CameraDefaults = Field(default_factory=CameraDefaults)
    cameras: list[CameraConfig] = Field(min_length=1)
    zones: list[ZoneConfig] = Field(default_factory=list)
    topology: TopologyConfig | None = None
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    density: DensityConfig = Field(default_factory=DensityConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)

    @model_validator(mode="before")
    @classmethod
    def _merge_camera_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        # An omitted storage section is filled in here, not by a default_factory, so its
        # relative root is resolved against the config file's folder like a written one.
        data.setdefault("storage", {})
        defaults = data.get("camera_defaults") or {}
        cameras = data.get("cameras")
        if isinstance(defaults, dict) and isinstance(cameras, list):
            data["cameras"] = [
                _merge(defaults, cam) if isinstance(cam, dict) else cam for cam in cameras
            ]
        return data

    @field_validator("cameras")
    @classmethod
    def _unique_cameras(cls, value: list[CameraConfig]) -> list[CameraConfig]:
        _unique([c.id for c in value], "camera")
        return value

    @field_validator("zones")
    @classmethod
    def _unique_zones(cls, value: list[ZoneConfig]) -> list[ZoneConfig]:
        _unique([z.id for z in value], "zone")
        return value

    @field_validator("topology")
    @classmethod
    def _links_name_known_cameras(
        cls, value: TopologyConfig | None, info: ValidationInfo
    ) -> TopologyConfig | None:
        # cameras are declared before topology, so they are already validated here
        known = {c.id for c in info.data.get("cameras", [])}
        for i, link in enumerate(value.links if value and known else []):
            for cam in link.cameras:
                if cam not in known:
                    raise ValueError(
                        f"links[{i}] names unknown camera {cam!r} (known: {sorted(known)})"
                    )
        return value

    def camera(self, camera_id: str) -> CameraConfig:
        """The camera with id ``camera_id``; KeyError naming the known ids otherwise."""
        for cam in self.cameras:
            if cam.id == camera_id:
                return cam
        raise KeyError(f"unknown camera {camera_id!r}; known: {[c.id for c in self.cameras]}")

    def zone(self, zone_id: str) -> ZoneConfig:
        """The zone with id ``zone_id``; KeyError naming the known ids otherwise."""
        for zone in self.zones:
            if zone.id == zone_id:
                return zone
        raise KeyError(f"unknown zone {zone_id!r}; known: {[z.id for z in self.zones]}")


# --------------------------------------------------------------------------- load / dump


def _loc_to_path(loc: tuple, data: Any) -> str:
    """Render a pydantic error location as ``cameras[1] (id=gate).fps``."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            label = f"[{item}]"
            try:
                node = node[item]
                if isinstance(node, dict) and "id" in node:
                    label += f" (id={node['id']})"
            except (IndexError, KeyError, TypeError):
                node = None
            parts.append(label)
        elif isinstance(node, dict) and node.get("type", "builtin") == item and item not in node:
            continue  # pydantic's tag of a discriminated union, not a key of the file
        else:
            node = node.get(item) if isinstance(node, dict) else None
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _short_repr(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_validation_error(exc: ValidationError, data: Any, source: str) -> str:
    """One line per problem: ``source: field.path: message (got value)``."""
    lines = []
    for err in exc.errors(include_url=False):
        path = _loc_to_path(err["loc"], data)
        msg = err["msg"].removeprefix("Value error, ")
        # A whole section as "value" is noise: the path already says which one it is.
        show = err["type"] == "extra_forbidden" or (
            err["type"] != "missing" and not isinstance(err["input"], dict)
        )
        got = f" (got {_short_repr(err['input'])})" if show else ""
        lines.append(f"{source}: {path}: {msg}{got}")
    return "\n".join(lines)


def parse_site_config(
    data: Any, source: str = "<config>", base_dir: str | Path | None = None
) -> SiteConfig:
    """Validate an already-parsed mapping; raise :class:`ConfigError` on any problem."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the top level must be a mapping of settings, got {type(data).__name__}"
        )
    context = {"base_dir": str(base_dir) if base_dir is not None else None}
    try:
        return SiteConfig.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, data, source)) from None


def load_site_config(path: str | Path) -> SiteConfig:
    """Load and validate a site config YAML file.

    Raises :class:`ConfigError` naming the file, and for invalid content the field path
    and the bad value; YAML syntax errors give the line and column.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
    return parse_site_config(data, source=str(path), base_dir=path.resolve().parent)


def _relativise(value: str, base_dir: Path) -> str:
    try:
        return str(Path(value).resolve().relative_to(base_dir.resolve()))
    except ValueError:
        return value


def dump_site_config(config: SiteConfig, path: str | Path) -> None:
    """Write ``config`` as YAML to ``path``; paths under its folder are written relative.

    The file round-trips: :func:`load_site_config` on it gives an equal config.
    """
    path = Path(path)
    data = config.model_dump(mode="json", exclude_none=True)
    base = path.resolve().parent
    defaults = data["camera_defaults"]
    cameras = []
    for cam in data["cameras"]:
        if "://" not in cam["source"]:
            cam["source"] = _relativise(cam["source"], base)
        # Write only what differs from camera_defaults; the id first, for readers.
        own = {k: v for k, v in cam.items() if k not in defaults or defaults[k] != v}
        cameras.append({"id": own.pop("id"), **own})
    data["cameras"] = cameras
    if "://" not in data["storage"]["root"]:
        data["storage"]["root"] = _relativise(data["storage"]["root"], base)
    for model in data["models"].values():
        for key in ("path", "weights"):
            if key in model:
                model[key] = _relativise(model[key], base)
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
    path.write_text(f"# Sightline site config: {config.name}\n" + text, encoding="utf-8")

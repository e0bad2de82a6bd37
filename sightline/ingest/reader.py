"""FrameReader: a camera's decode loop in a background thread, with reconnects and health.

The thread opens the source, decodes, samples to the target fps, converts kept frames to
RGB at the target resolution and puts them in a bounded queue that the consumer empties
with :meth:`FrameReader.get`. Any failure (cannot open, network drop, read error, end of
a live stream) is counted and the source reopened after an exponential backoff; recorded
sources resume after the last frame they delivered, live ones at the stream's present.
A new reader of a recording can also start after a given frame
(``ReaderSettings.resume_after_s``, from :meth:`FrameReader.resume_settings` of the last
frame a restarted consumer had finished): it seeks there and skips the frames up to it.
A recording can be read over a window only (``window_start_s``/``window_end_s``, a
forensic ingest of part of a file): it seeks to the window's start, delivers the frames
inside it and ends after it; progress is then the share of the window delivered.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from sightline.ingest._queue import FrameQueue, RateMeter
from sightline.ingest.backoff import Backoff
from sightline.ingest.sampler import FpsSampler
from sightline.ingest.source import SourceError, VideoSource, redact_url

if TYPE_CHECKING:
    from sightline.config import CameraConfig

__all__ = ["Frame", "FrameReader", "Mode", "ReaderHealth", "ReaderSettings", "State"]

Mode = Literal["live", "forensic"]
State = Literal["starting", "running", "reconnecting", "finished", "failed", "stopped"]
_TERMINAL = ("finished", "failed", "stopped")


FILE_MAX_RECONNECTS = 5


@dataclass(frozen=True)
class ReaderSettings:
    """How a :class:`FrameReader` decodes one source.

    ``mode`` ``live`` drops the oldest queued frame when the consumer falls behind and
    stamps frames with their arrival time; ``forensic`` never drops (the decode thread
    waits) and stamps frames ``source_start + pts + clock_offset_s`` (``source_start``
    None: the time the reader started). ``max_reconnects`` bounds consecutive reopen
    attempts that deliver no new frame (None: retry forever); they are spaced by an
    exponential backoff from ``backoff_initial_s`` up to ``backoff_max_s``. ``timeout_s``
    bounds opening and each read of a network source. ``realtime`` paces decoding to the
    frames' timestamps, for a file standing in for a live camera. ``decode_threads`` 0
    lets FFmpeg choose.

    ``resume_after_s`` (forensic only; ignored live, where a restart joins the stream's
    present) starts a recording after the frame at that pts: the source seeks to the
    keyframe before it and the frames up to it are decoded but not delivered.
    ``resume_slot_s`` is the sampler's next slot after that frame (:attr:`Frame.next_slot_s`),
    so the resumed reader keeps exactly the frames an uninterrupted one would have.

    ``window_start_s``/``window_end_s`` (forensic only, seconds of pts from the file's
    start; None: the file's start / end) read only that part of a recording: the source
    seeks to the keyframe before the start, frames before it are decoded but not
    delivered, and the reader finishes at the first frame after the end. With
    ``resume_after_s`` too (a restart inside a window) the later of the two starts.
    """

    width: int = 640
    height: int = 360
    fps: float | None = 10.0
    mode: Mode = "forensic"
    source_start: datetime | None = None
    clock_offset_s: float = 0.0
    queue_size: int = 8
    timeout_s: float = 10.0
    max_reconnects: int | None = None
    realtime: bool = False
    decode_threads: int = 0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    resume_after_s: float | None = None
    resume_slot_s: float | None = None
    window_start_s: float | None = None
    window_end_s: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("live", "forensic"):
            raise ValueError(f"mode must be 'live' or 'forensic', got {self.mode!r}")
        if self.source_start is not None and self.source_start.tzinfo is None:
            raise ValueError("source_start must be timezone-aware (UTC)")
        if self.max_reconnects is not None and self.max_reconnects < 0:
            raise ValueError(f"max_reconnects must be >= 0 or None, got {self.max_reconnects}")
        if self.resume_after_s is not None and not self.resume_after_s >= 0:
            raise ValueError(f"resume_after_s must be >= 0 or None, got {self.resume_after_s}")
        for name in ("window_start_s", "window_end_s"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be >= 0 or None, got {value}")
        if (
            self.window_start_s is not None
            and self.window_end_s is not None
            and self.window_end_s < self.window_start_s
        ):
            raise ValueError(
                f"window_end_s {self.window_end_s} is before window_start_s {self.window_start_s}"
            )

    @classmethod
    def from_camera(
        cls, camera: CameraConfig, mode: Mode | None = None, **overrides: Any
    ) -> ReaderSettings:
        """Settings for a configured camera: ``live`` for streams, ``forensic`` for files."""
        width, height = camera.resolution
        values: dict[str, Any] = {
            "width": width,
            "height": height,
            "fps": camera.fps,
            "mode": mode or ("live" if camera.is_stream else "forensic"),
            "source_start": camera.source_start,
            "clock_offset_s": camera.clock_offset_s,
            # A recording that cannot be read after a few tries will not heal by waiting:
            # give up (state "failed") so a forensic run ends; streams retry forever.
            "max_reconnects": None if camera.is_stream else FILE_MAX_RECONNECTS,
        }
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class Frame:
    """One delivered frame: RGB ``(H, W, 3) uint8`` image, UTC time and stream pts.

    ``index`` counts delivered frames from 0 without gaps (dropped frames get none).
    ``next_slot_s`` (forensic) is the fps sampler's next slot once this frame was kept:
    with ``pts_s`` and the reader's :attr:`~FrameReader.origin` it is where a new reader
    resumes after this frame (:meth:`FrameReader.resume_settings`).
    """

    image: np.ndarray
    ts: datetime
    pts_s: float
    index: int
    next_slot_s: float | None = None


@dataclass(frozen=True)
class ReaderHealth:
    """A snapshot of a reader's state and counters.

    ``lag_s``: live, how far the newest delivered frame trails its expected wall-clock
    time; forensic, how long it waited in the queue. ``progress``: forensic share of
    the duration delivered, 0..1 (None for live or unknown duration).
    """

    source: str
    mode: Mode
    state: State
    frames_decoded: int
    frames_delivered: int
    fps_in: float
    fps_out: float
    lag_s: float | None
    drops: int
    decode_errors: int
    reconnects: int
    last_error: str | None
    last_frame_time: datetime | None
    progress: float | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly values (``last_frame_time`` as ISO 8601 text)."""
        out = dataclasses.asdict(self)
        if self.last_frame_time is not None:
            out["last_frame_time"] = self.last_frame_time.isoformat()
        return out


@dataclass
class _Item:
    """A frame in the queue, with what the health figures need."""

    image: np.ndarray
    ts: datetime
    pts_s: float
    queued_at: float  # monotonic
    expected_wall: float  # epoch seconds the frame should have been seen (live)
    next_slot: float | None = None  # the sampler's next slot after this frame (forensic)


class _Counters:
    """Written by one thread each (decode thread or consumer), read by health()."""

    def __init__(self) -> None:
        self.decoded = 0
        self.delivered = 0
        self.drops = 0
        self.decode_errors = 0
        self.reconnects = 0
        self.last_error: str | None = None
        self.lag_s: float | None = None
        self.last_ts: datetime | None = None
        self.last_pts_out: float | None = None


class FrameReader:
    """Decode one camera source in a background thread; hand frames over a bounded queue.

    ``backoff`` spaces reconnect attempts; ``sleep`` waits between them (default: a wait
    that :meth:`stop` interrupts); ``clock`` is monotonic seconds, ``wall`` epoch seconds.
    All four are injectable for tests; ``backoff`` defaults to the settings' one.
    """

    def __init__(
        self,
        source: str | Path,
        settings: ReaderSettings | None = None,
        *,
        backoff: Backoff | None = None,
        sleep: Callable[[float], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.source = redact_url(str(source))  # what health and errors show
        self.settings = settings or ReaderSettings()
        s = self.settings
        self.backoff = backoff or Backoff(s.backoff_initial_s, s.backoff_max_s, rng=random.Random())
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._clock, self._wall = clock, wall
        self._video = VideoSource(str(source), s.width, s.height, s.timeout_s, s.decode_threads)
        self._queue: FrameQueue[_Item] = FrameQueue(s.queue_size)
        self._sampler = FpsSampler(s.fps)
        self._counts = _Counters()
        self._rate_in, self._rate_out = RateMeter(clock), RateMeter(clock)
        self._state: State = "starting"
        self._state_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._origin = s.source_start or datetime.fromtimestamp(wall(), UTC)
        self._duration_s: float | None = None
        self._resume_after: float | None = None  # pts of the last queued frame (forensic)
        if s.mode == "forensic" and s.resume_after_s is not None:
            # a restarted consumer: start after the last frame it had finished
            self._resume_after = s.resume_after_s
            self._sampler.resume(s.resume_after_s, s.resume_slot_s)
        forensic = s.mode == "forensic"
        self._window_start = s.window_start_s if forensic else None
        self._window_end = s.window_end_s if forensic else None
        self._stalled = 0  # reopen attempts since the last new frame
        self._fresh = True  # no frame queued since the last (re)open
        self._live_anchor: float | None = None  # epoch seconds of pts 0 (live)
        self._pace_anchor: float | None = None  # monotonic seconds of pts 0 (realtime)

    # ------------------------------------------------------------------ consumer side

    def start(self) -> FrameReader:
        """Start the decode thread (once); returns self."""
        if self._thread is None:
            name = f"frame-reader:{Path(self.source).name}"
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop decoding now, discard queued frames and wait (up to ``timeout``) for the thread.

        A network read already in progress ends within the source's ``timeout_s``.
        """
        self._stop.set()
        self._queue.abort()
        self._set_state("stopped")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def get(self, timeout: float | None = None) -> Frame | None:
        """The next frame; None once the reader has ended and the queue is drained.

        Raises :class:`TimeoutError` when no frame came within ``timeout`` seconds.
        """
        item = self._queue.get(timeout)
        if item is None:
            return None
        c = self._counts
        frame = Frame(item.image, item.ts, item.pts_s, c.delivered, item.next_slot)
        c.delivered += 1
        self._rate_out.tick()
        if self.settings.mode == "live":
            c.lag_s = max(0.0, self._wall() - item.expected_wall)
        else:
            c.lag_s = self._clock() - item.queued_at
        c.last_ts, c.last_pts_out = item.ts, item.pts_s
        return frame

    def __iter__(self) -> Iterator[Frame]:
        """Frames until the reader ends (blocks while waiting)."""
        while (frame := self.get()) is not None:
            yield frame

    @property
    def origin(self) -> datetime:
        """The UTC time of pts 0 that forensic frames are stamped from (``source_start``,
        else the time this reader was made)."""
        return self._origin

    def resume_settings(self, frame: Frame) -> dict[str, Any]:
        """:class:`ReaderSettings` overrides for a new reader of this recording that starts
        right after ``frame`` (one this reader delivered): its pts, the sampler's grid and
        the time origin, so the frames that follow are the same frames with the same
        ``ts`` as without the restart. Plain values (a checkpoint can store them)."""
        return {
            "resume_after_s": frame.pts_s,
            "resume_slot_s": frame.next_slot_s,
            "source_start": self._origin,
        }

    @property
    def state(self) -> State:
        """The reader's state now."""
        return self._state

    @property
    def done(self) -> bool:
        """The reader has ended (finished, failed or stopped) and every frame was taken."""
        return self._state in _TERMINAL and self._queue.drained

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the decode thread to end; True if it has."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def health(self) -> ReaderHealth:
        """A snapshot of state, counters, rates, lag and progress."""
        c = self._counts
        return ReaderHealth(
            source=self.source,
            mode=self.settings.mode,
            state=self._state,
            frames_decoded=c.decoded,
            frames_delivered=c.delivered,
            fps_in=round(self._rate_in.rate(), 3),
            fps_out=round(self._rate_out.rate(), 3),
            lag_s=c.lag_s,
            drops=c.drops,
            decode_errors=c.decode_errors,
            reconnects=c.reconnects,
            last_error=c.last_error,
            last_frame_time=c.last_ts,
            progress=self._progress(),
        )

    def _progress(self) -> float | None:
        if self.settings.mode == "live":
            return None
        if self._state == "finished" and self._queue.drained:
            return 1.0
        pts, duration = self._counts.last_pts_out, self._duration_s
        lo = self._window_start or 0.0
        ends = [v for v in (duration, self._window_end) if v is not None]
        if not ends:
            return None  # the file's length is unknown
        hi = min(ends)
        if pts is None:
            return 0.0
        return 1.0 if hi <= lo else min(1.0, max(0.0, (pts - lo) / (hi - lo)))

    # ------------------------------------------------------------------ decode thread

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._session():
                    self._set_state("finished")
                    return
                if not self._wait_to_retry():
                    return
        finally:
            self._video.close()
            self._queue.finish()

    def _session(self) -> bool:
        """Open, decode to the end; True when the source ended for good."""
        try:
            self._open()
            self._pump()
        except Exception as exc:  # whatever goes wrong with a stream must not end the thread
            self._counts.last_error = self._describe(exc)
            return False
        finally:
            self._video.close()
        if self._stop.is_set() or self.settings.mode == "forensic":
            return True
        self._counts.last_error = f"{self.source}: stream ended"
        return False

    def _wait_to_retry(self) -> bool:
        """Back off before reopening; False when the reader gives up or is stopped."""
        if self._stop.is_set():
            return False
        limit = self.settings.max_reconnects
        if limit is not None and self._stalled >= limit:
            self._set_state("failed")
            return False
        self._set_state("reconnecting")
        self._sleep(self.backoff.next_delay())
        if self._stop.is_set():
            return False
        self._stalled += 1
        self._counts.reconnects += 1
        return True

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, SourceError):
            return str(exc)
        return f"{self.source}: {type(exc).__name__}: {self._video.redact(str(exc))}"

    def _set_state(self, state: State) -> None:
        """Move to ``state``; terminal states stick, and after stop() only "stopped" goes."""
        with self._state_lock:
            if self._state in _TERMINAL or (self._stop.is_set() and state != "stopped"):
                return
            self._state = state

    def _open(self) -> None:
        info = self._video.open()
        self._duration_s = info.duration_s
        self._fresh = True
        self._live_anchor = self._pace_anchor = None
        if self.settings.mode == "live":
            self._sampler.reset()  # the stream's clock may restart on reconnect
        elif self._resume_after is not None or self._window_start is not None:
            self._video.seek(max(self._resume_after or 0.0, self._window_start or 0.0))
        self._set_state("running")

    def _pump(self) -> None:
        for t, image in self._video.frames(self._keep, self._on_decode_error):
            if self._stop.is_set():
                return
            if self._window_end is not None and t > self._window_end:
                return  # past the window: the recording is done for this reader
            self._counts.decoded += 1
            self._rate_in.tick()
            if image is not None:
                self._pace(t)
                self._deliver(t, image)

    def _keep(self, t: float) -> bool:
        if self._resume_after is not None and t <= self._resume_after:
            return False  # delivered before a reconnect
        if self._window_start is not None and t < self._window_start:
            return False  # before the window
        if self._window_end is not None and t > self._window_end:
            return False
        return self._sampler.keep(t)

    def _on_decode_error(self, exc: Exception) -> None:
        self._counts.decode_errors += 1
        self._counts.last_error = self._describe(exc)

    def _pace(self, t: float) -> None:
        if not self.settings.realtime:
            return
        now = self._clock()
        if self._pace_anchor is None:
            self._pace_anchor = now - t
        delay = self._pace_anchor + t - now
        if delay > 0:
            self._stop.wait(delay)

    def _deliver(self, t: float, image: np.ndarray) -> None:
        now = self._wall()
        if self.settings.mode == "live":
            anchor = now - t
            if self._live_anchor is None or anchor < self._live_anchor:
                self._live_anchor = anchor
            item = _Item(image, _utc(now), t, self._clock(), self._live_anchor + t)
            self._counts.drops += self._queue.put_drop_oldest(item)
        else:
            ts = self._origin + timedelta(seconds=t + self.settings.clock_offset_s)
            item = _Item(image, ts, t, self._clock(), now, self._sampler.next_slot)
            if not self._queue.put_wait(item):
                return
            self._resume_after = t
        if self._fresh:
            self._fresh = False
            self._stalled = 0
            self.backoff.reset()


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)

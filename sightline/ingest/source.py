"""Open a video file or network stream with PyAV and decode it to resized RGB frames."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import av
import av.container
import av.video.stream
import numpy as np

__all__ = ["SourceError", "VideoSource", "is_network_url", "redact_url"]

_NETWORK_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "srt://", "udp://")


class SourceError(RuntimeError):
    """The source cannot be opened or read; the message names the source and the cause."""


def is_network_url(source: str) -> bool:
    """True for stream URLs (rtsp, http, ...), false for local file paths."""
    return source.lower().startswith(_NETWORK_PREFIXES)


def redact_url(source: str) -> str:
    """``source`` with any password in it replaced by ``***`` (for logs and health)."""
    parts = urlsplit(source)
    try:
        password = parts.password
    except ValueError:  # a malformed port: nothing sensible to redact
        return source
    if not password:
        return source
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{password}@", ":***@", 1)))


@dataclass(frozen=True)
class SourceInfo:
    """What an opened source says about itself."""

    codec: str
    width: int
    height: int
    average_fps: float | None
    duration_s: float | None


class VideoSource:
    """One opened video: decode, sample and convert frames.

    ``width``/``height`` is the resolution frames come out at (PyAV's own scaler does the
    resize together with the RGB conversion). ``timeout_s`` bounds opening and each read
    of a network source so a dead server raises instead of hanging. Frame timestamps are
    seconds from the stream's start, from the frame's pts. Error messages name the source
    with any password in its URL redacted (``name``).
    """

    def __init__(
        self,
        source: str | Path,
        width: int,
        height: int,
        timeout_s: float = 10.0,
        threads: int = 0,
    ) -> None:
        self.source = str(source)
        self.name = redact_url(self.source)
        self.width, self.height = width, height
        self.timeout_s = timeout_s
        self.threads = threads
        self._container: av.container.InputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._start_pts = 0
        self._last_t: float | None = None

    # ------------------------------------------------------------------ open / close

    def open(self) -> SourceInfo:
        """Open the source; raise :class:`SourceError` naming it and the cause."""
        self.close()
        try:
            container = av.open(self.source, options=self._options(), timeout=self.timeout_s)
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot open {self.name}: {self.redact(str(exc))}") from exc
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self.name} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if self.threads:
            stream.codec_context.thread_count = self.threads
        self._container, self._stream = container, stream
        self._start_pts = stream.start_time if stream.start_time is not None else 0
        self._last_t = None
        return self.info

    def _options(self) -> dict[str, str]:
        if not is_network_url(self.source):
            return {}
        micros = str(int(self.timeout_s * 1_000_000))
        options = {"rw_timeout": micros}
        if self.source.lower().startswith(("rtsp://", "rtsps://")):
            # rtsp's "timeout" is the socket I/O timeout; tcp survives lossy links.
            options.update(rtsp_transport="tcp", timeout=micros)
        elif self.source.lower().startswith(("http://", "https://")):
            options["timeout"] = micros
        return options

    def close(self) -> None:
        """Close the container (safe to call twice)."""
        if self._container is not None:
            # Closing a broken connection may itself fail; there is nothing to recover.
            with contextlib.suppress(av.error.FFmpegError, OSError):
                self._container.close()
        self._container = self._stream = None

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` succeeded and :meth:`close` has not been called since."""
        return self._container is not None

    def _opened(self) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
        if self._container is None or self._stream is None:
            raise SourceError(f"{self.name} is not open")
        return self._container, self._stream

    @property
    def info(self) -> SourceInfo:
        """Codec, native size, average fps and duration (None if unknown) of the source."""
        container, stream = self._opened()
        rate = stream.average_rate
        return SourceInfo(
            codec=stream.codec_context.name,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            average_fps=float(rate) if rate else None,
            duration_s=_duration_s(container, stream),
        )

    # ------------------------------------------------------------------ seek / decode

    def seek(self, t: float) -> bool:
        """Position decoding at the keyframe at or before ``t`` seconds from the start.

        Returns False when the source cannot seek (decoding then goes on from where it
        is, and the caller skips frames it already has).
        """
        container, stream = self._opened()
        if t <= 0:
            return True
        offset = self._start_pts + int(Fraction(t) / stream.time_base)
        try:
            container.seek(offset, stream=stream, backward=True, any_frame=False)
        except (av.error.FFmpegError, OSError):
            return False
        self._last_t = None
        return True

    def frames(
        self,
        keep: Callable[[float], bool],
        on_decode_error: Callable[[Exception], None],
    ) -> Iterator[tuple[float, np.ndarray | None]]:
        """Decode every frame and yield ``(t, rgb)``; ``rgb`` is None where ``keep(t)`` is false.

        Only kept frames are converted to RGB ``(height, width, 3) uint8``. A packet the
        decoder rejects, or a frame it marks corrupt, is reported to ``on_decode_error``
        and decoding goes on with the next packet. The iterator ends at the end of the
        source; a demuxing (read) failure raises :class:`SourceError`.
        """
        container, stream = self._opened()
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except (av.error.FFmpegError, OSError) as exc:
                raise SourceError(f"reading {self.name} failed: {self.redact(str(exc))}") from exc
            yield from self._decode_packet(packet, keep, on_decode_error)

    def _decode_packet(
        self,
        packet: av.Packet,
        keep: Callable[[float], bool],
        on_decode_error: Callable[[Exception], None],
    ) -> Iterator[tuple[float, np.ndarray | None]]:
        try:
            decoded = packet.decode()
        except (av.error.FFmpegError, ValueError) as exc:
            on_decode_error(SourceError(f"corrupt packet at pts {packet.pts}: {exc}"))
            return
        for frame in decoded:
            if frame.is_corrupt:
                on_decode_error(SourceError(f"corrupt frame at pts {frame.pts}"))
            t = self._timestamp(frame)
            if not keep(t):
                yield t, None
                continue
            yield t, frame.to_ndarray(format="rgb24", width=self.width, height=self.height)

    def redact(self, text: str) -> str:
        """``text`` with this source's URL replaced by its redacted form."""
        return text.replace(self.source, self.name)

    def _timestamp(self, frame: av.VideoFrame) -> float:
        _, stream = self._opened()
        if frame.pts is not None and frame.time_base is not None:
            t = float((frame.pts - self._start_pts) * frame.time_base)
        elif self._last_t is not None:
            # No pts (some raw streams): step by the nominal frame period.
            rate = stream.average_rate or stream.guessed_rate or 25
            t = self._last_t + 1.0 / float(rate)
        else:
            t = 0.0
        self._last_t = t
        return t


def _duration_s(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        value = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        value = container.duration / av.time_base
    else:
        return None
    return value if math.isfinite(value) and value > 0 else None

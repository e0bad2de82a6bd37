"""H.264 video writing with PyAV (libx264), frame-exact and deterministic."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

__all__ = ["H264Writer"]


class H264Writer:
    """Write RGB frames to an H.264 MP4 at a constant frame rate.

    Frame ``i`` gets presentation time ``i / fps``, so decoding yields exactly the frames
    written. libx264 runs single-threaded: the simulator parallelises across cameras
    instead, and a single thread keeps the bitstream identical between runs.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        width: int,
        height: int,
        crf: int = 23,
        preset: str = "veryfast",
    ) -> None:
        self.path = Path(path)
        # faststart puts the index first, so a recording can be streamed over HTTP and read
        # while it downloads (FFmpeg mis-reads an index-at-the-end MP4 over keep-alive HTTP).
        self.container = av.open(str(self.path), mode="w", options={"movflags": "+faststart"})
        rate = Fraction(fps).limit_denominator(1001)
        self.stream = self.container.add_stream("libx264", rate=rate)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"
        self.stream.time_base = 1 / rate
        self.stream.codec_context.thread_count = 1
        self.stream.options = {"crf": str(crf), "preset": preset, "g": str(int(2 * fps))}
        self.frames_written = 0

    def write(self, rgb: np.ndarray) -> None:
        """Encode one ``(H, W, 3)`` uint8 RGB frame."""
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = self.frames_written
        self.container.mux(self.stream.encode(frame))
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and close the file."""
        self.container.mux(self.stream.encode(None))
        self.container.close()

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

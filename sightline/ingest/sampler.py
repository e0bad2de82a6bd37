"""Keep frames by presentation timestamp so that a target frame rate comes out.

Works for any input rate, including variable frame rate: decisions use timestamps only.
"""

from __future__ import annotations

__all__ = ["FpsSampler"]


class FpsSampler:
    """Decide which frames to keep so that about ``fps`` frames per second come out.

    A frame is kept when its timestamp reaches the next slot of a ``1/fps`` grid, less a
    tolerance of ``tolerance`` periods, so a 10 fps file sampled at 10 fps keeps every
    frame despite rounding in its timestamps. The grid advances by one period per kept
    frame, which keeps the average rate at ``fps`` for inputs that are not a multiple of
    it (25 -> 10 fps keeps 10 frames a second, not 8.3). After a gap longer than a
    period (variable frame rate, lost frames) the grid restarts at the kept frame, and a
    timestamp that jumps backwards (a restarted stream) restarts it too.

    ``fps=None`` keeps every frame.
    """

    def __init__(self, fps: float | None, tolerance: float = 0.1) -> None:
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if not 0 <= tolerance < 1:
            raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
        self.fps = fps
        self.period = 0.0 if fps is None else 1.0 / fps
        self.slack = tolerance * self.period
        self._next: float | None = None
        self._last: float | None = None

    @property
    def last_kept(self) -> float | None:
        """Timestamp of the last kept frame (None before the first)."""
        return self._last

    @property
    def next_slot(self) -> float | None:
        """The grid's next slot, seconds (None before the first frame): with
        :attr:`last_kept` it is the whole state, for :meth:`resume`."""
        return self._next

    def resume(self, last_kept: float, next_slot: float | None = None) -> None:
        """Continue as if the frame at ``last_kept`` had just been kept, with the grid's
        next slot at ``next_slot`` (default: one period later), so a reader restarted
        after that frame keeps the same frames an uninterrupted one would have."""
        self._last = last_kept
        self._next = last_kept + self.period if next_slot is None else next_slot

    def reset(self) -> None:
        """Forget the past: the next frame is kept and starts a new grid."""
        self._next = None
        self._last = None

    def keep(self, t: float) -> bool:
        """Whether the frame at timestamp ``t`` (seconds) is kept; updates the state if so."""
        if self._next is None or self._last is None or t < self._last:
            self._start(t)
            return True
        if t < self._next - self.slack:
            return False
        # Advance on the grid while it keeps up; restart it after a gap.
        self._next = self._next + self.period if t < self._next + self.period else t + self.period
        self._last = t
        return True

    def _start(self, t: float) -> None:
        self._last = t
        self._next = t + self.period

"""The bounded hand-over queue between a decode thread and its consumer, and a rate meter."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["FrameQueue", "RateMeter"]

T = TypeVar("T")


class FrameQueue(Generic[T]):
    """A bounded FIFO with two ways to put (drop the oldest, or block) and two ways to end.

    :meth:`finish` lets the consumer drain what is queued and then get None;
    :meth:`abort` discards the queue and wakes everyone at once.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._finished = False
        self._aborted = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put_drop_oldest(self, item: T) -> bool:
        """Queue ``item`` without waiting; returns True when the oldest item was dropped."""
        with self._cond:
            dropped = len(self._items) >= self.maxsize
            if dropped:
                self._items.popleft()
            self._items.append(item)
            self._cond.notify_all()
            return dropped

    def put_wait(self, item: T) -> bool:
        """Queue ``item``, waiting for room; returns False (item not queued) once ended."""
        with self._cond:
            while len(self._items) >= self.maxsize and not self._ended:
                self._cond.wait()
            if self._ended:
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest item; None once ended and drained; :class:`TimeoutError` on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._ended, timeout):
                raise TimeoutError(f"no frame within {timeout} s")
            if self._aborted or not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    @property
    def _ended(self) -> bool:
        return self._finished or self._aborted

    def finish(self) -> None:
        """No more items will come: the consumer drains the queue, then gets None."""
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def abort(self) -> None:
        """Drop everything queued and wake all waiters now."""
        with self._cond:
            self._aborted = True
            self._items.clear()
            self._cond.notify_all()

    @property
    def drained(self) -> bool:
        """Ended and empty: nothing more will come out."""
        with self._cond:
            return self._ended and not self._items


class RateMeter:
    """Events per second over the last ``window_s`` seconds (or since start, if shorter)."""

    def __init__(self, clock: Callable[[], float], window_s: float = 5.0) -> None:
        self._clock = clock
        self.window_s = window_s
        self._times: deque[float] = deque()
        self._start = clock()
        self._lock = threading.Lock()

    def tick(self) -> None:
        """Record one event now."""
        now = self._clock()
        with self._lock:
            self._times.append(now)
            self._trim(now)

    def rate(self) -> float:
        """Recent events per second."""
        now = self._clock()
        with self._lock:
            self._trim(now)
            span = min(self.window_s, now - self._start)
            return len(self._times) / span if span > 0 else 0.0

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()

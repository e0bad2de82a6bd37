"""Exponential backoff with a cap and jitter, for reconnecting to a failing camera."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass
class Backoff:
    """Delays for successive retries: ``initial_s * multiplier**n``, capped at ``max_s``.

    Each delay is scaled by a random factor in ``[1 - jitter, 1 + jitter]`` drawn from
    ``rng`` (inject a seeded :class:`random.Random` for reproducible tests) so that many
    cameras behind one failed switch do not reconnect in lockstep. :meth:`reset` after a
    success starts again from ``initial_s``.
    """

    initial_s: float = 0.5
    max_s: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random, repr=False)
    attempts: int = 0

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.max_s < self.initial_s:
            raise ValueError(
                f"need 0 <= initial_s <= max_s, got initial_s={self.initial_s} max_s={self.max_s}"
            )
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")

    def next_delay(self) -> float:
        """The delay before the next attempt, in seconds; counts the attempt."""
        base = min(self.max_s, self.initial_s * self.multiplier ** min(self.attempts, 64))
        self.attempts += 1
        factor = 1.0 + self.jitter * (2.0 * self.rng.random() - 1.0)
        return min(self.max_s, base * factor)

    def reset(self) -> None:
        """A success: the next delay is ``initial_s`` again."""
        self.attempts = 0

"""Named clothing colours: the ground truth that attribute search is measured against.

Each name maps to a reference albedo (sRGB, 0-255). Simulated clothes are drawn near
these references with a small per-person variation, so a person listed as wearing
"red" looks red to a human under neutral light.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CLOTHING_COLOURS", "HAIR_COLOURS", "LOWER_WEIGHTS", "SKIN_TONES"]

CLOTHING_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (196, 32, 38),
    "orange": (232, 118, 26),
    "yellow": (232, 204, 44),
    "green": (42, 138, 62),
    "blue": (36, 78, 188),
    "purple": (118, 52, 150),
    "pink": (232, 128, 172),
    "brown": (112, 70, 40),
    "black": (26, 26, 30),
    "white": (232, 232, 226),
    "grey": (126, 126, 126),
}

# Trousers are mostly dark or blue in real crowds; tops are spread more evenly.
LOWER_WEIGHTS: dict[str, float] = {
    "blue": 4,
    "black": 4,
    "grey": 3,
    "brown": 2,
    "white": 1,
    "green": 1,
    "red": 0.5,
    "yellow": 0.5,
    "orange": 0.3,
    "purple": 0.3,
    "pink": 0.3,
}

SKIN_TONES: list[tuple[int, int, int]] = [
    (241, 194, 160),
    (224, 172, 128),
    (198, 134, 90),
    (141, 85, 50),
    (90, 56, 38),
]
HAIR_COLOURS: list[tuple[int, int, int]] = [
    (30, 24, 20),
    (82, 52, 32),
    (196, 160, 90),
    (150, 150, 150),
]


def vary(rgb: tuple[int, int, int], rng: np.random.Generator, amount: float = 0.08) -> np.ndarray:
    """A per-person shade of ``rgb``: brightness and channel jitter of about ``amount``."""
    base = np.asarray(rgb, dtype=np.float32)
    scale = 1.0 + rng.uniform(-amount, amount)
    jitter = rng.uniform(-amount, amount, size=3) * 40.0
    return np.clip(base * scale + jitter, 0, 255).astype(np.float32)

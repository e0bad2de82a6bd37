"""Appearance calibration: cosine similarity of two tracklets -> probability they match.

A one-feature logistic model ``P(same | s) = 1 / (1 + exp(-(a s + b)))`` fitted (maximum
likelihood, scipy) on cross-camera pairs of a site the re-ID model was *not* trained on
(the validation site). Fusion accepts an appearance match at probability
``min_match_probability``, so the threshold means something (the odds of a match) and
follows the model when the weights change, instead of a hand-picked cosine.

:func:`height_log_ratio` adds the tracklets' estimated heights as independent evidence:
the log likelihood ratio of a height difference for one person (two noisy estimates,
some of them outliers) against two people who look alike; fusion adds it to the
appearance log-odds.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

__all__ = ["DEFAULT_CALIBRATION", "AppearanceCalibration", "fit_calibration", "height_log_ratio"]

DEFAULT_CALIBRATION = (
    Path(__file__).resolve().parent.parent / "models" / "weights" / ("reid_calibration.json")
)


@dataclass(frozen=True)
class AppearanceCalibration:
    """Logistic map of cosine similarity to match probability, and where it came from."""

    slope: float
    intercept: float
    pairs_same: int = 0
    pairs_different: int = 0
    source: str = ""

    def probability(self, similarity: np.ndarray | float) -> np.ndarray:
        """Match probability of each cosine similarity."""
        return expit(self.slope * np.asarray(similarity, dtype=np.float64) + self.intercept)

    def log_odds(self, similarity: np.ndarray | float) -> np.ndarray:
        """Match log-odds of each cosine similarity (the logit of :meth:`probability`)."""
        return self.slope * np.asarray(similarity, dtype=np.float64) + self.intercept

    def similarity_at(self, probability: float) -> float:
        """The cosine similarity at which the match probability is ``probability``."""
        return float((np.log(probability / (1 - probability)) - self.intercept) / self.slope)

    def save(self, path: str | Path) -> None:
        """Write as JSON."""
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path = DEFAULT_CALIBRATION) -> AppearanceCalibration:
        """Read a calibration written by :meth:`save`; a clear error for a bad file."""
        try:
            data: dict[str, Any] = json.loads(Path(path).read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not an appearance calibration: {exc}") from None


def fit_calibration(
    similarities: np.ndarray, same: np.ndarray, source: str = ""
) -> AppearanceCalibration:
    """Maximum-likelihood logistic fit, classes weighted equally (pairs are unbalanced)."""
    s = np.asarray(similarities, dtype=np.float64)
    y = np.asarray(same, dtype=bool)
    if y.all() or not y.any():
        raise ValueError("calibration needs both matching and non-matching pairs")
    weight = np.where(y, 0.5 / y.sum(), 0.5 / (~y).sum())

    def loss(params: np.ndarray) -> float:
        z = params[0] * s + params[1]
        # log(1 + exp(-z)) for positives, log(1 + exp(z)) for negatives, stably
        return float(np.sum(weight * np.logaddexp(0.0, np.where(y, -z, z))))

    result = minimize(loss, x0=np.array([10.0, -5.0]), method="Nelder-Mead")
    slope, intercept = (float(v) for v in result.x)
    return AppearanceCalibration(slope, intercept, int(y.sum()), int((~y).sum()), source)


def height_log_ratio(
    height_a: np.ndarray | float,
    height_b: np.ndarray | float,
    noise_m: float,
    spread_m: float,
    outlier_probability: float,
) -> np.ndarray:
    """Log likelihood ratio, same person vs two people, of two height estimates.

    One person: the difference of two estimates is normal with variance ``2 noise²``,
    except for a share ``outlier_probability`` of estimates that are off and then differ
    as two people's do. Two people: normal with variance ``2 (noise² + spread²)``. The
    ratio is ``(1 - outlier) N_same / N_two + outlier``, so a large difference lowers the
    log-odds by at most ``-log(outlier_probability)``. Zero where a height is unknown.
    """
    diff = np.asarray(height_a, dtype=np.float64) - np.asarray(height_b, dtype=np.float64)
    same = 2 * noise_m**2
    two = same + 2 * spread_m**2
    with np.errstate(invalid="ignore"):
        ratio = np.sqrt(two / same) * np.exp(-0.5 * diff**2 * (1 / same - 1 / two))
        out = np.log((1 - outlier_probability) * ratio + outlier_probability)
    return np.where(np.isfinite(diff), out, 0.0)

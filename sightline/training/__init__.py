"""Training and evaluation data for the built-in models, read from synthetic sites.

Seeds: training sites use seeds >= 1000 (see :data:`TRAIN_SEEDS`, :data:`VALIDATION_SEED`);
evaluation (``sightline eval``) refuses any seed a model was trained or validated on.
"""

TRAIN_SEEDS = (1001, 1002, 1003, 1004, 1005, 1006, 1008, 1009, 1010, 1011)
"""Seeds of the ``small`` sites every built-in model trains on."""
VALIDATION_SEED = 1007
"""The ``small`` site that validates (and calibrates) them."""
REID_DEFAULT_SEEDS = (1012, 1013, 1014, 1015)
"""``default`` sites the re-ID model also trains on: more people per site, more
look-alikes and more cameras than the small sites."""

DEFAULT_VALIDATION_SEED = 1016
"""A ``default`` site no model trains on; with seed 1007 it validates the photo adapter
and fits the photo calibration."""

__all__ = ["DEFAULT_VALIDATION_SEED", "REID_DEFAULT_SEEDS", "TRAIN_SEEDS", "VALIDATION_SEED"]

"""Training and evaluation data for the built-in models, read from synthetic sites.

Seeds: training sites use seeds >= 1000 (see :data:`TRAIN_SEEDS`, :data:`VALIDATION_SEED`);
evaluation (``sightline eval``) refuses any seed a model was trained or validated on.
"""

TRAIN_SEEDS = (1001, 1002, 1003, 1004, 1005, 1006, 1008, 1009, 1010, 1011)
VALIDATION_SEED = 1007

__all__ = ["TRAIN_SEEDS", "VALIDATION_SEED"]

"""Person detector and re-ID embedder backends behind two small interfaces.

``build_detector(config)`` / ``build_embedder(config)`` pick the backend named by the
config's ``type``: ``builtin`` (our own small torch models, weights committed under
``sightline/models/weights``) or ``torchscript`` (a file you bring, with an output
adapter per format).
"""

from sightline.models.core import (
    Detections,
    DetectorBackend,
    EmbedderBackend,
    l2_normalise,
    select_device,
)
from sightline.models.registry import build_detector, build_embedder

__all__ = [
    "Detections",
    "DetectorBackend",
    "EmbedderBackend",
    "build_detector",
    "build_embedder",
    "l2_normalise",
    "select_device",
]

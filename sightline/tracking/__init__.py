"""Per-camera tracking: a ByteTrack-style tracker and the tracklets built from its tracks."""

from sightline.tracking.core import ByteTracker, IdCounter, TrackerStep

__all__ = ["ByteTracker", "IdCounter", "TrackerStep"]

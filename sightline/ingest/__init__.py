"""Camera ingestion without Ray: PyAV decoding, fps sampling, reconnects, health, sinks.

:class:`FrameReader` runs a decode loop in a background thread over a :class:`VideoSource`
and hands sampled, resized RGB frames to its consumer through a bounded queue, in ``live``
mode (drop the oldest frame when the consumer is behind) or ``forensic`` mode (never drop;
backpressure). Failures are counted and the source reopened with :class:`Backoff`.
"""

from sightline.ingest.backoff import Backoff
from sightline.ingest.reader import Frame, FrameReader, ReaderHealth, ReaderSettings
from sightline.ingest.sampler import FpsSampler
from sightline.ingest.sink import DETECTION_SCHEMA, DetectionSink, ParquetDetectionSink
from sightline.ingest.source import SourceError, VideoSource

__all__ = [
    "DETECTION_SCHEMA",
    "Backoff",
    "DetectionSink",
    "FpsSampler",
    "Frame",
    "FrameReader",
    "ParquetDetectionSink",
    "ReaderHealth",
    "ReaderSettings",
    "SourceError",
    "VideoSource",
]

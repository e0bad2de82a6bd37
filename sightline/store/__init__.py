"""The coordinator's durable state: a write-ahead log, Parquet tables and their queries.

:mod:`~sightline.store.wal` makes an ingested batch durable before it is acknowledged;
:mod:`~sightline.store.tables` writes the query-able store (tracklets, sightings,
identities, events, thumbnails) that plain polars can read; :mod:`~sightline.store.queries`
answers fused-track, sighting and route questions over it. See ``docs/store.md``.
"""

from sightline.store.queries import (
    export_slice,
    fused_tracks,
    identity_summary,
    latest_identities,
    route,
    scan,
    sightings,
)
from sightline.store.tables import StoreError, TrackStore
from sightline.store.wal import (
    WalDamage,
    WalError,
    WriteAheadLog,
    decode_tracklets,
    encode_tracklets,
)

__all__ = [
    "StoreError",
    "TrackStore",
    "WalDamage",
    "WalError",
    "WriteAheadLog",
    "decode_tracklets",
    "encode_tracklets",
    "export_slice",
    "fused_tracks",
    "identity_summary",
    "latest_identities",
    "route",
    "scan",
    "sightings",
]

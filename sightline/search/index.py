"""An in-memory appearance index: every stored sample of every tracklet, searched exactly.

A photo query compares the query vectors with every embedding sample of every tracklet
in the window. Read from Parquet and exploded per query, that is seconds at a million
samples; :class:`EmbeddingIndex` keeps the samples as one contiguous ``float32`` matrix
(128-d: 512 bytes a sample, 512 MB per million; ``float16`` halves that but converting
it back for the product cost more than the product itself) grouped by tracklet, with
each tracklet's time span and camera, and scores them with one matrix product per chunk.
A tracklet's score is the search's (:func:`~sightline.search.scoring.appearance_similarity`):
the mean of its two best samples, a sample's similarity being its best cosine over the
query vectors. The search is exact (no approximate neighbours); ``sightline bench
search`` checks its shortlist against a ``float64`` brute force.

:func:`~sightline.search.engine.search_store` takes an index to shortlist the
``shortlist`` best tracklets by appearance before reading their rows and applying the
full scoring, filters and routes; queries without vectors (description only) do not use
it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property

import numpy as np
import polars as pl

from sightline.store.queries import StoreLike, scan
from sightline.tracking.sink import latest_versions

__all__ = ["EmbeddingIndex"]

_CHUNK = 1 << 16  # samples per matrix product: bounds the float32 temporary to ~32 MB


def _epoch_us(value: datetime | None, default: int) -> int:
    if value is None:
        return default
    return int(value.timestamp() * 1_000_000)


@dataclass(frozen=True)
class EmbeddingIndex:
    """Samples ``vectors`` (N, D) float32, tracklet by tracklet (``starts``/``lengths``
    index into them), with each tracklet's id, time span (epoch us) and camera."""

    vectors: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    tracklet_ids: np.ndarray
    t_start: np.ndarray
    t_end: np.ndarray
    camera: np.ndarray  # codes into ``cameras``
    cameras: tuple[str, ...]
    rows: pl.DataFrame | None = None  # the tracklets' search columns, in index order

    @cached_property
    def _position(self) -> dict[str, int]:
        return {str(t): i for i, t in enumerate(self.tracklet_ids.tolist())}

    # ------------------------------------------------------------------ building

    @classmethod
    def from_arrays(
        cls,
        samples: Sequence[np.ndarray],
        tracklet_ids: Sequence[str],
        t_start_us: Sequence[int],
        t_end_us: Sequence[int],
        cameras: Sequence[str],
    ) -> EmbeddingIndex:
        """From per-tracklet sample matrices ``(k_i, D)`` and their tracklets' details."""
        if not (len(samples) == len(tracklet_ids) == len(t_start_us) == len(t_end_us)):
            raise ValueError("samples, tracklet_ids, t_start_us and t_end_us differ in length")
        if len(cameras) != len(samples):
            raise ValueError("cameras must give one camera per tracklet")
        lengths = np.array([len(s) for s in samples], dtype=np.int64)
        dims = {s.shape[1] for s in samples if len(s)}
        if len(dims) > 1:
            raise ValueError(f"samples have different lengths {sorted(dims)}")
        dim = dims.pop() if dims else 0
        vectors = (
            np.concatenate([np.asarray(s, np.float32).reshape(-1, dim) for s in samples])
            if len(samples)
            else np.zeros((0, dim), np.float32)
        )
        names, codes = np.unique(np.asarray(cameras, dtype=object), return_inverse=True)
        return cls(
            vectors=vectors,
            starts=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
            lengths=lengths,
            tracklet_ids=np.asarray(tracklet_ids, dtype=object),
            t_start=np.asarray(t_start_us, dtype=np.int64),
            t_end=np.asarray(t_end_us, dtype=np.int64),
            camera=codes.astype(np.int32),
            cameras=tuple(str(n) for n in names),
        )

    @classmethod
    def from_tracklets(cls, tracklets: pl.DataFrame) -> EmbeddingIndex:
        """From tracklet rows (any versions; the newest of each is indexed). With every
        column a search reads (the engine's ``REQUIRED_COLUMNS``), the index also keeps
        them (without the samples, which it holds already), so a search can be answered
        from memory (:meth:`rows_for`)."""
        from sightline.search.engine import REQUIRED_COLUMNS, with_optional_columns

        tracklets = with_optional_columns(tracklets)
        keep = all(c in tracklets.columns for c in REQUIRED_COLUMNS)
        light = ("tracklet_id", "camera_id", "version", "t_start", "t_end", "embeddings")
        rows = latest_versions(tracklets.select(REQUIRED_COLUMNS if keep else light))
        samples = [
            np.asarray(e, np.float32).reshape(len(e), -1) if e else np.zeros((0, 0), np.float32)
            for e in rows["embeddings"].to_list()
        ]
        dim = max((s.shape[1] for s in samples if len(s)), default=0)
        samples = [s if len(s) else np.zeros((0, dim), np.float32) for s in samples]
        index = cls.from_arrays(
            samples,
            rows["tracklet_id"].to_list(),
            rows["t_start"].dt.epoch("us").to_list(),
            rows["t_end"].dt.epoch("us").to_list(),
            rows["camera_id"].to_list(),
        )
        return replace(index, rows=rows.drop("embeddings")) if keep else index

    @classmethod
    def from_store(
        cls, store: StoreLike, start: datetime | None = None, end: datetime | None = None
    ) -> EmbeddingIndex:
        """The samples of the store's tracklets overlapping ``[start, end]`` (all if None)."""
        from sightline.search.engine import REQUIRED_COLUMNS

        lf = scan(store, "tracklets").select(REQUIRED_COLUMNS)
        if start is not None:
            lf = lf.filter(pl.col("t_end") >= start)
        if end is not None:
            lf = lf.filter(pl.col("t_start") <= end)
        return cls.from_tracklets(lf.collect())

    # ------------------------------------------------------------------ facts

    def __len__(self) -> int:
        return len(self.tracklet_ids)

    @property
    def samples(self) -> int:
        """Stored sample embeddings."""
        return len(self.vectors)

    @property
    def nbytes(self) -> int:
        """Memory held by the index's arrays (the ids' Python strings not counted)."""
        arrays = (self.vectors, self.starts, self.lengths, self.t_start, self.t_end, self.camera)
        return int(sum(a.nbytes for a in arrays))

    def rows_for(self, tracklet_ids: Sequence[str]) -> pl.DataFrame:
        """The search columns of these tracklets (unknown ids are skipped), samples
        included, as the store would give them; needs an index built with its rows."""
        if self.rows is None:
            raise ValueError("this index was built without the tracklets' rows")
        found = [self._position[t] for t in tracklet_ids if t in self._position]
        samples = [
            self.vectors[self.starts[i] : self.starts[i] + self.lengths[i]].tolist() for i in found
        ]
        embeddings = pl.Series("embeddings", samples, dtype=pl.List(pl.List(pl.Float32)))
        return self.rows[found].with_columns(embeddings)

    # ------------------------------------------------------------------ search

    def sample_similarity(self, query: np.ndarray) -> np.ndarray:
        """Each sample's best cosine over the query vectors ``(Q, D)`` (float32)."""
        q = np.asarray(query, np.float32)
        if q.ndim != 2 or (self.samples and q.shape[1] != self.vectors.shape[1]):
            raise ValueError(
                f"query vectors of shape {q.shape} do not fit samples of "
                f"{self.vectors.shape[1] if self.samples else '?'} values"
            )
        out = np.empty(self.samples, np.float32)
        for lo in range(0, self.samples, _CHUNK):
            chunk = self.vectors[lo : lo + _CHUNK]
            out[lo : lo + len(chunk)] = (chunk @ q.T).max(axis=1)
        return out

    def tracklet_similarity(self, query: np.ndarray, top_k: int = 2) -> np.ndarray:
        """Per tracklet: the mean of its ``top_k`` best sample similarities (nan without
        samples); ``top_k`` 1 or 2."""
        if top_k not in (1, 2):
            raise ValueError(f"top_k must be 1 or 2, got {top_k}")
        sims = self.sample_similarity(query)
        has = self.lengths > 0
        out = np.full(len(self), np.nan)
        if not has.any():
            return out
        starts = self.starts[has]
        best = np.maximum.reduceat(sims, starts)
        if top_k == 1:
            out[has] = best
            return out
        owner = np.repeat(np.arange(len(starts)), self.lengths[has])
        second = np.where(sims == best[owner], -np.inf, sims)
        runner = np.maximum.reduceat(second, starts)
        two = self.lengths[has] >= 2
        out[has] = np.where(two & np.isfinite(runner), (best + runner) / 2, best)
        return out

    def shortlist(
        self,
        query: np.ndarray,
        k: int,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        cameras: Sequence[str] | None = None,
        top_k: int = 2,
    ) -> pl.DataFrame:
        """The ``k`` tracklets most similar to ``query`` overlapping ``[start, end]`` (on
        ``cameras``): ``tracklet_id, appearance_similarity``, best first."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        score = self.tracklet_similarity(query, top_k)
        keep = np.isfinite(score)
        keep &= self.t_end >= _epoch_us(start, np.iinfo(np.int64).min)
        keep &= self.t_start <= _epoch_us(end, np.iinfo(np.int64).max)
        if cameras is not None:
            codes = [i for i, c in enumerate(self.cameras) if c in set(cameras)]
            keep &= np.isin(self.camera, codes)
        rows = np.flatnonzero(keep)
        if len(rows) > k:
            rows = rows[np.argpartition(-score[rows], k - 1)[:k]]
        rows = rows[np.argsort(-score[rows], kind="stable")]
        return pl.DataFrame(
            {
                "tracklet_id": self.tracklet_ids[rows].tolist(),
                "appearance_similarity": score[rows],
            },
            schema={"tracklet_id": pl.String, "appearance_similarity": pl.Float64},
        )

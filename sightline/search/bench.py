"""``sightline bench search``: photo-query latency over 10^5 and 10^6 stored embeddings.

Synthetic samples stand in for a store's: people are random unit vectors, each seen in
tracklets of ``samples_per_tracklet`` noisy samples (cosine to their person ~0.8, like
the built-in re-ID's same-person pairs), spread over 24 h and 20 cameras. For each size
the run reports: building the :class:`~sightline.search.index.EmbeddingIndex`, its
memory, the latency (p50/p99 over ``queries`` photo queries) of shortlisting the best
tracklets over the whole day and over one hour, the recall of the index's top 50
against a ``float64`` brute force (the index is exact), and, at each
size, whole :func:`~sightline.search.engine.search_store` photo queries on a
real store holding those tracklets, without the index (the baseline, measured in the
same run) and with it.
"""

from __future__ import annotations

import resource
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sightline.fusion.bench import _tracklet
from sightline.search.engine import search_store
from sightline.search.index import EmbeddingIndex
from sightline.search.query import SearchQuery
from sightline.store.tables import TrackStore

__all__ = ["TARGET_P50_S", "bench_search"]

TARGET_P50_S = 0.3
_DAY_US = 86_400_000_000
_START_US = 1_772_409_600_000_000  # 2026-03-02T00:00:00Z


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _synthetic(
    n_samples: int, per_tracklet: int, dim: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, EmbeddingIndex]:
    n_tracklets = n_samples // per_tracklet
    n_people = max(1, n_tracklets // 10)
    people = _unit(rng.normal(size=(n_people, dim))).astype(np.float32)
    owner = rng.integers(n_people, size=n_tracklets)
    noise = rng.normal(size=(n_tracklets, per_tracklet, dim)).astype(np.float32)
    samples = _unit(people[owner][:, None, :] + 0.75 * noise / np.sqrt(dim)).astype(np.float32)
    start = _START_US + rng.integers(0, _DAY_US - 60_000_000, size=n_tracklets)
    cameras = np.array([f"cam{k:02d}" for k in range(20)])[rng.integers(20, size=n_tracklets)]
    index = EmbeddingIndex.from_arrays(
        list(samples),
        [f"t{i}" for i in range(n_tracklets)],
        start.tolist(),
        (start + 20_000_000).tolist(),
        cameras.tolist(),
    )
    return people, owner, samples, index


def _latency(times: list[float]) -> dict[str, float]:
    return {
        "p50_s": round(float(np.percentile(times, 50)), 4),
        "p99_s": round(float(np.percentile(times, 99)), 4),
        "mean_s": round(float(np.mean(times)), 4),
    }


def _recall(index: EmbeddingIndex, samples: np.ndarray, query: np.ndarray, k: int) -> float:
    exact = samples.astype(np.float64) @ query[0].astype(np.float64)
    top2 = np.sort(exact, axis=1)[:, -2:].mean(axis=1)
    truth = set(np.argsort(-top2)[:k].tolist())
    got = index.shortlist(query, k)["tracklet_id"].to_list()
    return len(truth & {int(t[1:]) for t in got}) / k


def _store_search(
    index: EmbeddingIndex, samples: np.ndarray, photos: np.ndarray, root: Path
) -> dict[str, Any]:
    """Write the index's tracklets to a real store, then time whole ``search_store``
    photo queries with and without the index."""
    rng = np.random.default_rng(1)
    with TrackStore(root, durable=False, flush_rows=20_000) as store:
        for lo in range(0, len(index), 2000):
            batch = []
            for i in range(lo, min(lo + 2000, len(index))):
                ts = index.t_start[i] / 1e6 + np.linspace(0, 20, 20)
                xy = rng.uniform(0, 200, 2) + np.outer(np.linspace(0, 1, 20), [8, 0])
                batch.append(
                    replace(
                        _tracklet(
                            str(index.tracklet_ids[i]),
                            index.cameras[index.camera[i]],
                            ts,
                            xy,
                            samples[i][0],
                        ),
                        embeddings=samples[i],
                    )
                )
            store.write_tracklets(batch)
    window = {
        "start": datetime.fromtimestamp(_START_US / 1e6, UTC),
        "end": datetime.fromtimestamp((_START_US + _DAY_US) / 1e6, UTC),
    }
    timed: dict[str, list[float]] = {"without_index": [], "with_index": []}
    stored = EmbeddingIndex.from_store(root)
    for photo in photos:
        query = SearchQuery(
            case_id="bench", reason="latency", embeddings=[photo.tolist()], **window
        )
        for name, kwargs in (("without_index", {}), ("with_index", {"index": stored})):
            t = time.perf_counter()
            search_store(root, query, **kwargs)
            timed[name].append(time.perf_counter() - t)
    return {name: _latency(values) for name, values in timed.items()}


def bench_search(
    sizes: tuple[int, ...] = (100_000, 1_000_000),
    queries: int = 30,
    samples_per_tracklet: int = 8,
    dim: int = 128,
    shortlist: int = 500,
    seed: int = 0,
    store_queries: int = 5,
) -> dict[str, Any]:
    """Index build, memory, photo-query latency and recall per size (module docstring)."""
    rng = np.random.default_rng(seed)
    results = []
    for size in sizes:
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        people, owner, samples, index = _synthetic(size, samples_per_tracklet, dim, rng)
        built = time.perf_counter() - t
        picks = rng.integers(len(people), size=queries)
        photos = _unit(people[picks] + 0.75 * rng.normal(size=(queries, dim)) / np.sqrt(dim))
        photos = photos.astype(np.float32)
        day, hour = [], []
        hour_start = datetime.fromtimestamp((_START_US + _DAY_US // 2) / 1e6, UTC)
        hour_end = datetime.fromtimestamp((_START_US + _DAY_US // 2) / 1e6 + 3600, UTC)
        found = 0
        for q, person in zip(photos, picks, strict=True):
            t = time.perf_counter()
            best = index.shortlist(q[None, :], shortlist)
            day.append(time.perf_counter() - t)
            t = time.perf_counter()
            index.shortlist(q[None, :], shortlist, start=hour_start, end=hour_end)
            hour.append(time.perf_counter() - t)
            first = int(best["tracklet_id"][0][1:])
            found += int(owner[first] == person)
        entry: dict[str, Any] = {
            "embeddings": index.samples,
            "tracklets": len(index),
            "build_s": round(built, 2),
            "index_mib": round(index.nbytes / 2**20, 1),
            "peak_rss_growth_mib": round(
                (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024, 1
            ),
            "photo_query_24h": _latency(day),
            "photo_query_1h_window": _latency(hour),
            "recall_at_50_vs_float64": round(
                float(np.mean([_recall(index, samples, p[None, :], 50) for p in photos[:5]])),
                4,
            ),
            "top1_is_the_person": round(found / queries, 4),
        }
        if store_queries:
            with tempfile.TemporaryDirectory(prefix="sightline-bench-search-") as tmp:
                whole = _store_search(index, samples, photos[:store_queries], Path(tmp))
            entry["search_store"] = whole
            entry["search_store_speedup_p50"] = round(
                whole["without_index"]["p50_s"] / whole["with_index"]["p50_s"], 1
            )
        results.append(entry)
        del samples, index
    largest = results[-1].get("search_store", {}).get("with_index", {}).get("p50_s")
    shortlist_p50 = results[-1]["photo_query_24h"]["p50_s"]
    return {
        "benchmark": "search",
        "dim": dim,
        "samples_per_tracklet": samples_per_tracklet,
        "shortlist": shortlist,
        "queries": queries,
        "index": "exact (float32 samples, chunked matrix products); no approximate index",
        "sizes": results,
        "target": f"photo query p50 < {TARGET_P50_S} s at 10^6 embeddings",
        "passed_index_shortlist": bool(shortlist_p50 < TARGET_P50_S),
        "passed": largest is not None and bool(largest < TARGET_P50_S),
        "note": "passed judges the whole search_store query with the index; "
        "passed_index_shortlist only the appearance shortlist. The rest of a whole query "
        "is reading the shortlisted tracklets' rows from Parquet (a scan of the tracklets "
        "table: it grows with the store), their filters, and the routes",
    }

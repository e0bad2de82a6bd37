"""Answers of the API's store reads, cached per store version.

Dashboards poll the same density and track queries many times a second, and each
answer costs a Parquet scan (10-40 ms of CPU). The store changes only when the
coordinator flushes (or a retention purge runs), and both replace a marker file
(:func:`~sightline.store.tables.store_version`), so an answer computed for a query at one
version is exact until the marker changes. :class:`ReadCache` keeps the newest answers
(bytes, media type, headers) by ``(query, version)``; a store without the marker (a URL
store, or one written by an older Sightline) is never cached. Caching changes no
semantics: every request is still authenticated and audited before its answer leaves.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from fastapi.responses import Response

from sightline.store.tables import store_version

__all__ = ["CachedAnswer", "ReadCache"]


@dataclass(frozen=True)
class CachedAnswer:
    """A response's parts, enough to build it again."""

    body: bytes
    media_type: str | None
    headers: tuple[tuple[str, str], ...]

    def response(self) -> Response:
        return Response(self.body, media_type=self.media_type, headers=dict(self.headers))


class ReadCache:
    """The newest ``capacity`` answers of store reads by ``(key, store version)``;
    thread-safe. ``stats`` counts hits, misses and uncachable reads."""

    def __init__(self, store: str, capacity: int = 256) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.store = store
        self.capacity = capacity
        self._items: OrderedDict[tuple[Hashable, Hashable], CachedAnswer] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = {"hits": 0, "misses": 0, "uncached": 0}

    def answer(self, key: Hashable, compute: Callable[[], Response]) -> Response:
        """The cached answer to ``key`` at the store's current version, or ``compute()``'s
        (kept for the next caller). Errors raised by ``compute`` are not cached."""
        version = store_version(self.store)
        if version is None:
            self.stats["uncached"] += 1
            return compute()
        slot = (key, version)
        with self._lock:
            found = self._items.get(slot)
            if found is not None:
                self._items.move_to_end(slot)
                self.stats["hits"] += 1
                return found.response()
        response = compute()
        headers = tuple(
            (k, v) for k, v in response.headers.items() if k.lower() != "content-length"
        )
        answer = CachedAnswer(bytes(response.body), response.media_type, headers)
        with self._lock:
            self.stats["misses"] += 1
            self._items[slot] = answer
            self._items.move_to_end(slot)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return answer.response()

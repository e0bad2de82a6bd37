"""The HTTP API: a FastAPI app over the store, search and density queries, with API keys,
roles and the hash-chained audit log; and a thin Ray Serve ingress around it.

:func:`create_app` builds the app and needs no Ray: tests drive it with FastAPI's
``TestClient``. :func:`build_api_deployment` wraps it as a Serve deployment; the app is
built on each replica (a builder function), because the key store and audit log hold
locks that cannot be pickled and each replica should open its own files.

Every route authenticates (``Authorization: Bearer <key>`` or ``X-API-Key: <key>``) and
needs one role (:data:`sightline.security.ROLES`). Every search and every data read is
appended to the audit log before the answer leaves. Errors are JSON
``{"error": <short kind>, "detail": <what is wrong>}``. See ``docs/api.md``.

Searches run synchronously in the request (fine for one site's store; the Ray fan-out of
large searches is the coordinator's job) and their results are kept in memory by
``search_id`` (the newest :data:`MAX_SEARCHES`), so refining or reading one needs the
replica that ran it: with several replicas, route by ``search_id`` or keep one replica.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import polars as pl
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import AfterValidator, BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve.console import mount_console
from serve.live import Operations, PipelineUnavailableError
from serve.read_cache import ReadCache
from sightline.config import ConfigError, SiteConfig
from sightline.density.heatmap import render_site_png, site_geometry, site_occupancy
from sightline.density.queries import density_alerts, ground_points, zone_counts, zone_summary
from sightline.search import SearchQuery, SearchQueryError, SearchResult, refine, search_store
from sightline.search.photo_adapter import PhotoAdapter
from sightline.search.photos import MAX_PHOTOS, Detect, Embed, decode_photo, embed_query
from sightline.search.results import Candidate
from sightline.search.thumbnails import FrameDetections, tracklet_thumbnail
from sightline.security import (
    AuditLog,
    AuthenticationError,
    KeyStore,
    PermissionDenied,
    Principal,
    authorize,
    security_paths,
)
from sightline.store.queries import fused_tracks, route
from sightline.store.tables import StoreError
from sightline.times import to_utc

__all__ = ["MAX_SEARCHES", "PARQUET_MEDIA_TYPE", "ApiError", "build_api_deployment", "create_app"]

log = logging.getLogger(__name__)

EVENT_POLL_S = 1.0
"""How often the event stream asks the pipeline for new alerts."""

EVENT_KEEPALIVE_S = 15.0
"""A comment line is sent this often on a quiet event stream so proxies keep it open."""

MAX_SEARCHES = 1000
"""Search results kept in memory per replica; the oldest is dropped first. Raising it
keeps results readable longer at the cost of memory (a result is tens of KB)."""

PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"


class ApiError(Exception):
    """An error answered as ``status`` with ``{"error": error, "detail": detail}``."""

    def __init__(
        self, status: int, error: str, detail: Any, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


def _error(status: int, error: str, detail: Any, headers: dict[str, str] | None = None) -> Any:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


# --------------------------------------------------------------------------- state


class SearchBook:
    """Search queries (photos already embedded) and results by id, newest
    :data:`MAX_SEARCHES` kept; thread-safe (sync routes run in a thread pool). A search
    is readable only by the principal who ran it (another analyst gets the same 404 as
    for an unknown id: search ids are not a way to read someone else's case).

    A search job is kept here under its job id too (``job=True``): its newest merged
    result replaces the entry each time the job is read, until the analyst refines it
    (the refined result, computed here, is then the search's)."""

    def __init__(self, capacity: int = MAX_SEARCHES) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[SearchQuery, SearchResult | None, bool]] = OrderedDict()
        self._lock = threading.Lock()

    def put(
        self,
        search_id: str,
        query: SearchQuery,
        result: SearchResult | None,
        *,
        job: bool = False,
    ) -> None:
        with self._lock:
            self._items[search_id] = (query, result, job)
            self._items.move_to_end(search_id)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def update_job(self, job_id: str, result: SearchResult) -> None:
        """A job's newer merged result, unless the job is unknown here or was refined."""
        with self._lock:
            found = self._items.get(job_id)
            if found is not None and found[2]:
                self._items[job_id] = (found[0], result, True)

    def get(self, search_id: str, principal: str) -> tuple[SearchQuery, SearchResult]:
        with self._lock:
            found = self._items.get(search_id)
        if found is None or found[0].requested_by != principal:
            raise ApiError(404, "not found", f"no search {search_id!r} (unknown or expired)")
        if found[1] is None:
            raise ApiError(
                409,
                "no results yet",
                f"search job {search_id} has no results yet: read "
                f"/searches/jobs/{search_id} until it has candidates",
            )
        return found[0], found[1]


@dataclass
class _Context:
    site: SiteConfig
    store: str
    keys: KeyStore
    audit: AuditLog
    embed: Embed | None
    detect: Detect | None
    adapter: PhotoAdapter | None
    ops: Operations | None = None
    detections: FrameDetections | None = None
    searches: SearchBook = field(default_factory=SearchBook)
    reads: ReadCache = field(init=False)
    poll_s: float = EVENT_POLL_S

    def __post_init__(self) -> None:
        self.reads = ReadCache(self.store)

    def live(self) -> Operations:
        """The running pipeline, or a 503 saying it is not running."""
        if self.ops is None:
            raise ApiError(
                503,
                "pipeline not running",
                "this API serves the store only; live cameras, density, watches and "
                "operations need the pipeline (`sightline serve --config site.yaml`)",
            )
        return self.ops

    @property
    def max_upload_bytes(self) -> int:
        return int(self.site.security.max_upload_mb * 2**20)


# --------------------------------------------------------------------------- auth


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationError("Authorization header must read 'Bearer <key>'")
        return value.strip()
    return request.headers.get("x-api-key")


def _requires(ctx: _Context, role: str) -> Callable[[Request], Principal]:
    """A dependency that authenticates the request and checks ``role``."""

    def dependency(request: Request) -> Principal:
        principal = ctx.keys.authenticate(_token(request))
        authorize(principal, role)
        return principal

    return dependency


def _authenticated(ctx: _Context) -> Callable[[Request], Principal]:
    """A dependency that authenticates the request, any role."""

    def dependency(request: Request) -> Principal:
        return ctx.keys.authenticate(_token(request))

    return dependency


@contextmanager
def _invalid_on_value_error() -> Iterator[None]:
    """Our queries raise ``ValueError`` naming the bad argument: that is a 422."""
    try:
        yield
    except StoreError as exc:
        raise ApiError(503, "store unavailable", str(exc)) from None
    except ValueError as exc:
        raise ApiError(422, "invalid request", str(exc)) from None


# --------------------------------------------------------------------------- helpers


def _rows(frame: pl.DataFrame) -> Response:
    """A frame as a JSON list of row objects (polars writes ISO times, fast)."""
    return Response(frame.write_json(), media_type="application/json")


def _area(text: str | None) -> list[tuple[float, float]] | None:
    """``x1,y1;x2,y2;x3,y3`` (metres) as points; a 422 naming ``area`` otherwise."""
    if text is None:
        return None
    try:
        points = [tuple(float(v) for v in pair.split(",")) for pair in text.split(";")]
    except ValueError:
        points = []
    if len(points) < 3 or any(len(p) != 2 for p in points):
        raise ApiError(
            422,
            "invalid request",
            f"area: expected 'x1,y1;x2,y2;x3,y3...' (>= 3 points), got {text!r}",
        )
    return points  # type: ignore[return-value]


def _key(values: Sequence[Any] | None) -> tuple[Any, ...] | None:
    """A list argument as part of a cache key."""
    return None if values is None else tuple(values)


def _ids(values: list[str] | None) -> list[str] | None:
    """Repeated and/or comma-separated ids (``?cameras=a&cameras=b`` or ``?cameras=a,b``)."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _query_parameters(query: SearchQuery, photos: Sequence[bytes]) -> dict[str, Any]:
    """What the audit log records of a search: its fields, with photos as SHA-256 hashes
    and vectors as counts (the log must not hold biometric data)."""
    params = query.model_dump(
        mode="json",
        exclude={"photos", "embeddings", "expansion", "photo_warnings", "photo_child"},
    )
    params["photo_sha256"] = [hashlib.sha256(p).hexdigest() for p in photos]
    params["embeddings"] = len(query.embeddings)
    return params


def _public_source(source: str) -> str:
    """A camera source without the password of an ``rtsp://user:pass@host`` URL."""
    parts = urlsplit(source)
    if parts.password is None:
        return source
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


# --------------------------------------------------------------------------- schemas


class SearchCreated(BaseModel):
    search_id: str = Field(description="Id to read, refine or route this search.")
    result: dict[str, Any] = Field(description="The SearchResult (ranked candidates).")


class RefineRequest(BaseModel):
    confirmed: list[str] = Field(default_factory=list, description="Candidate keys confirmed.")
    rejected: list[str] = Field(default_factory=list, description="Candidate keys rejected.")


_SEARCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object", "description": "A SearchQuery."}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["query"],
                    "properties": {
                        "query": {"type": "string", "description": "The SearchQuery as JSON."},
                        "photos": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                        },
                    },
                }
            },
        },
    }
}


# --------------------------------------------------------------------------- searches


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _strict_json(text: str | bytes, field_name: str) -> Any:
    """Parse request JSON; NaN and Infinity (which Python's parser would accept) are a
    422 naming ``field_name``, like any other malformed body."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(422, "invalid request", f"{field_name}: not JSON ({exc})") from None


async def _read_search_request(request: Request, ctx: _Context) -> tuple[dict, list[bytes]]:
    """The query mapping and the uploaded photos' bytes of ``POST /searches``."""
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data"):
        return await _read_multipart(request, ctx)
    data = _strict_json(await request.body(), "body")
    if isinstance(data, dict) and "photos" in data:
        raise ApiError(
            422, "invalid request", "photos: upload photos as multipart files, not in JSON"
        )
    return data, []


async def _read_multipart(request: Request, ctx: _Context) -> tuple[dict, list[bytes]]:
    limit = ctx.max_upload_bytes
    form = await request.form(max_files=MAX_PHOTOS + 1, max_fields=10)
    try:
        text = form.get("query")
        if not isinstance(text, str):
            raise ApiError(422, "invalid request", "query: a form field with the query as JSON")
        data = _strict_json(text, "query")
        uploads = form.getlist("photos")
        if len(uploads) > MAX_PHOTOS:
            raise ApiError(422, "invalid request", f"photos: at most {MAX_PHOTOS} photos")
        photos = []
        for i, upload in enumerate(uploads):
            if isinstance(upload, str):
                raise ApiError(422, "invalid request", f"photos[{i}]: expected a file upload")
            if (upload.size or 0) > limit:
                raise ApiError(
                    413, "upload too large", f"photos[{i}]: {upload.size} bytes, limit {limit}"
                )
            photos.append(await upload.read(limit + 1))
            if len(photos[-1]) > limit:
                raise ApiError(413, "upload too large", f"photos[{i}]: more than {limit} bytes")
    finally:
        await form.close()
    for i, data_bytes in enumerate(photos):
        try:
            decode_photo(data_bytes, f"photos[{i}]")
        except ValueError as exc:
            raise ApiError(415, "unsupported media type", str(exc)) from None
    return data, photos


def _parse_query(data: Any, photos: list[bytes], principal: Principal) -> SearchQuery:
    if isinstance(data, dict):
        data = {**data, "photos": photos, "requested_by": principal.principal}
    try:
        return SearchQuery.parse(data, "search")
    except SearchQueryError as exc:
        raise ApiError(422, "invalid request", str(exc)) from None


def _run_search(ctx: _Context, query: SearchQuery) -> tuple[SearchQuery, SearchResult]:
    """Embed the photos once (kept in the stored query, so refining re-uses the vectors)
    and search the store."""
    if query.photos and ctx.embed is None:
        raise ApiError(
            503,
            "embedder unavailable",
            "this API has no embedder configured, so photos cannot be searched; "
            "send embeddings or a description instead",
        )
    with _invalid_on_value_error(), _models_unavailable():
        embedded = embed_query(query, ctx.embed, ctx.detect, ctx.adapter)
        return embedded, search_store(ctx.store, embedded)


@contextmanager
def _models_unavailable() -> Iterator[None]:
    try:
        yield
    except PipelineUnavailableError as exc:
        raise ApiError(503, "embedder unavailable", str(exc)) from None


def _audit_search(
    ctx: _Context, who: Principal, action: str, query: SearchQuery, extra: dict | None = None
) -> None:
    params = {**_query_parameters(query, query.photos), **(extra or {})}
    ctx.audit.append(
        who.principal,
        who.role,
        action,
        case_id=query.case_id,
        reason=query.reason,
        parameters={"key_id": who.key_id, **params},
    )


def _search_routes(app: FastAPI, ctx: _Context) -> None:
    analyst = Depends(_requires(ctx, "analyst"))

    @app.post(
        "/searches",
        status_code=201,
        response_model=SearchCreated,
        tags=["searches"],
        summary="Run a missing-person search",
        description="JSON body (a SearchQuery) or multipart: a `query` JSON field and up to "
        f"{MAX_PHOTOS} `photos` files. `case_id` and `reason` are required. Role: analyst.",
        openapi_extra=_SEARCH_BODY,
    )
    async def create_search(request: Request, who: Principal = analyst) -> Any:
        data, photos = await _read_search_request(request, ctx)
        query = _parse_query(data, photos, who)
        # audited before it runs: a search that fails half-way was still asked for
        _audit_search(ctx, who, "search.create", query)
        embedded, result = await _in_thread(_run_search, ctx, query)
        search_id = secrets.token_hex(8)
        ctx.searches.put(search_id, embedded, result)
        return {"search_id": search_id, "result": result.model_dump(mode="json")}

    @app.get(
        "/searches/{search_id}",
        tags=["searches"],
        summary="A search's result",
        description="The ranked candidates of a search run by this API. Role: analyst.",
    )
    def get_search(search_id: str, who: Principal = analyst) -> dict[str, Any]:
        query, result = ctx.searches.get(search_id, who.principal)
        _audit_search(ctx, who, "search.read", query, {"search_id": search_id})
        return {"search_id": search_id, "result": result.model_dump(mode="json")}

    @app.post(
        "/searches/{search_id}/refine",
        tags=["searches"],
        summary="Confirm or reject candidates and re-rank",
        description="Confirmed identities' samples join the query; rejected ones are left "
        "out. Returns the new result under the same id. Role: analyst.",
    )
    def refine_search(
        search_id: str, body: RefineRequest, who: Principal = analyst
    ) -> dict[str, Any]:
        query, _ = ctx.searches.get(search_id, who.principal)
        with _invalid_on_value_error():
            query = refine(query, body.confirmed, body.rejected)
        _audit_search(ctx, who, "search.refine", query, {"search_id": search_id})
        embedded, result = _run_search(ctx, query)
        ctx.searches.put(search_id, embedded, result)
        return {"search_id": search_id, "result": result.model_dump(mode="json")}

    @app.get(
        "/searches/{search_id}/candidates/{key}/route",
        tags=["searches"],
        summary="A candidate's route",
        description="Every sighting of the candidate in the search window, in time order. "
        "Role: analyst.",
    )
    def candidate_route(search_id: str, key: str, who: Principal = analyst) -> dict[str, Any]:
        query, result = ctx.searches.get(search_id, who.principal)
        found = _candidate(result, search_id, key)
        extra = {"search_id": search_id, "candidate": key}
        _audit_search(ctx, who, "search.route", query, extra)
        return {
            "search_id": search_id,
            "key": key,
            "global_id": found.global_id,
            "route": [s.model_dump(mode="json") for s in found.route],
        }

    @app.get(
        "/searches/{search_id}/candidates/{key}/thumbnail",
        tags=["searches"],
        summary="A candidate's thumbnail (JPEG)",
        description="The stored crop of the candidate's best sighting, or of `tracklet_id` "
        "(one of its sightings or route entries), with the head of everyone but the "
        "candidate blurred. 409 when the run's detections of that moment are gone, so "
        "bystanders could not be blurred; 404 when no thumbnail is stored. Works for "
        "search jobs too (their job id). Role: analyst.",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    def candidate_thumbnail(
        search_id: str,
        key: str,
        tracklet_id: str | None = Query(
            None, max_length=200, description="A sighting's tracklet (default: the best)."
        ),
        who: Principal = analyst,
    ) -> Response:
        return _thumbnail(ctx, who, search_id, key, tracklet_id)


def _candidate(result: SearchResult, search_id: str, key: str) -> Candidate:
    found = next((c for c in result.candidates if c.key == key), None)
    if found is None:
        raise ApiError(404, "not found", f"search {search_id} has no candidate {key!r}")
    return found


def _thumbnail(
    ctx: _Context, who: Principal, search_id: str, key: str, tracklet_id: str | None
) -> Response:
    """The candidate's (or one of its sightings') thumbnail with bystanders blurred."""
    query, result = ctx.searches.get(search_id, who.principal)
    found = _candidate(result, search_id, key)
    wanted = tracklet_id or found.best_tracklet_id
    own = {found.best_tracklet_id} | {s.tracklet_id for s in [*found.sightings, *found.route]}
    if wanted not in own:
        raise ApiError(
            404, "not found", f"tracklet_id: {wanted!r} is not a sighting of candidate {key}"
        )
    extra = {"search_id": search_id, "candidate": key, "tracklet_id": wanted}
    _audit_search(ctx, who, "search.thumbnail", query, extra)
    with _invalid_on_value_error():
        thumb = tracklet_thumbnail(ctx.store, ctx.site, wanted, ctx.detections)
    if thumb is None:
        raise ApiError(404, "not found", f"no thumbnail is stored for tracklet {wanted}")
    if not thumb.detections_known:
        raise ApiError(
            409,
            "thumbnail withheld",
            f"the detections of camera {thumb.camera_id} at tracklet {wanted}'s frames "
            "are not in the run folder, so other people's heads could not be blurred",
        )
    return Response(
        thumb.jpeg,
        media_type="image/jpeg",
        headers={
            "Cache-Control": "private, no-store",
            "X-Sightline-Exact-Frame": "true" if thumb.exact_frame else "false",
        },
    )


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run blocking work (polars scans, model calls) off the event loop."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)


# --------------------------------------------------------------------------- data


def _api_time(value: datetime) -> datetime:
    return to_utc(value, "time")


ApiTime = Annotated[datetime, AfterValidator(_api_time)]
"""A time parameter: ISO 8601 or epoch seconds, naive is UTC, within the supported range
(:mod:`sightline.times`; outside it a 422 naming the parameter)."""

_START = Query(description="Window start: ISO 8601 (naive is UTC) or epoch seconds.")
_END = Query(description="Window end (closed).")


def _audit_read(ctx: _Context, who: Principal, action: str, params: dict[str, Any]) -> None:
    ctx.audit.append(
        who.principal,
        who.role,
        action,
        case_id=params.pop("case_id", None),
        reason=params.pop("reason", None),
        parameters={"key_id": who.key_id, **params},
    )


_CASE = Query(None, max_length=200, description="Case this read serves (recorded).")
_REASON = Query(None, max_length=2000, description="Why (recorded).")


def _track_routes(app: FastAPI, ctx: _Context) -> None:
    data = Depends(_requires(ctx, "data"))

    @app.get(
        "/tracks",
        tags=["tracks"],
        summary="Fused tracks in a window",
        description="One row per observation (global_id, tracklet, camera, time, box, "
        "ground position). `format=parquet` returns a Parquet file. Role: data.",
    )
    def tracks(
        start: Annotated[ApiTime, _START],
        end: Annotated[ApiTime, _END],
        cameras: Annotated[
            list[str] | None, Query(description="Camera ids (repeat or a,b).")
        ] = None,
        area: Annotated[
            str | None, Query(description="Ground polygon 'x1,y1;x2,y2;x3,y3' (m).")
        ] = None,
        format: Annotated[
            Literal["json", "parquet"], Query(description="Response format.")
        ] = "json",
        case_id: str | None = _CASE,
        reason: str | None = _REASON,
        who: Principal = data,
    ) -> Response:
        ids, polygon = _ids(cameras), _area(area)
        params = {"start": start, "end": end, "cameras": ids, "area": polygon, "format": format}
        _audit_read(ctx, who, "tracks.read", {**params, "case_id": case_id, "reason": reason})

        def answer() -> Response:
            with _invalid_on_value_error():
                frame = fused_tracks(ctx.store, start, end, cameras=ids, area=polygon)
            if format == "parquet":
                buffer = io.BytesIO()
                frame.write_parquet(buffer)
                return Response(
                    buffer.getvalue(),
                    media_type=PARQUET_MEDIA_TYPE,
                    headers={"Content-Disposition": 'attachment; filename="tracks.parquet"'},
                )
            return _rows(frame)

        key = ("tracks", start, end, _key(ids), _key(polygon), format)
        return ctx.reads.answer(key, answer)

    @app.get(
        "/identities/{global_id}/route",
        tags=["tracks"],
        summary="An identity's route",
        description="Where a global identity was seen, one row per tracklet, in time order. "
        "Role: data.",
    )
    def identity_route(
        global_id: str,
        case_id: str | None = _CASE,
        reason: str | None = _REASON,
        who: Principal = data,
    ) -> Response:
        params = {"global_id": global_id, "case_id": case_id, "reason": reason}
        _audit_read(ctx, who, "tracks.route", params)

        def answer() -> Response:
            with _invalid_on_value_error():
                frame = route(ctx.store, global_id)
            if frame.is_empty():
                raise ApiError(404, "not found", f"no sightings of global id {global_id!r}")
            return _rows(frame)

        return ctx.reads.answer(("route", global_id), answer)


def _density_routes(app: FastAPI, ctx: _Context) -> None:
    data = Depends(_requires(ctx, "data"))
    zones_q = Query(None, description="Zone ids (repeat or a,b); default all.")

    def read(who: Principal, view: str, **params: Any) -> None:
        _audit_read(ctx, who, "density.read", {"view": view, **params})

    @app.get(
        "/density/zones",
        tags=["density"],
        summary="People per zone over time",
        description="Per zone and bucket: mean count, peak, density per m², coverage. Role: data.",
    )
    def zones(
        start: Annotated[ApiTime, _START],
        end: Annotated[ApiTime, _END],
        bucket_s: int = Query(1, ge=1, le=3600, description="Bucket length in seconds."),
        zones: list[str] | None = zones_q,
        who: Principal = data,
    ) -> Response:
        ids = _ids(zones)
        read(who, "zones", start=start, end=end, bucket_s=bucket_s, zones=ids)

        def answer() -> Response:
            with _invalid_on_value_error():
                return _rows(zone_counts(ctx.store, start, end, zones=ids, bucket_s=bucket_s))

        return ctx.reads.answer(("zones", start, end, _key(ids), bucket_s), answer)

    @app.get(
        "/density/summary",
        tags=["density"],
        summary="Per-zone summary of a window",
        description="Mean and peak count and density, the peak's time, lowest coverage. "
        "Role: data.",
    )
    def summary(
        start: Annotated[ApiTime, _START],
        end: Annotated[ApiTime, _END],
        zones: list[str] | None = zones_q,
        who: Principal = data,
    ) -> Response:
        ids = _ids(zones)
        read(who, "summary", start=start, end=end, zones=ids)

        def answer() -> Response:
            with _invalid_on_value_error():
                return _rows(zone_summary(ctx.store, start, end, zones=ids))

        return ctx.reads.answer(("summary", start, end, _key(ids)), answer)

    @app.get(
        "/density/alerts",
        tags=["density"],
        summary="Crowd alerts",
        description="Alerts overlapping the window (open ones run on); `open_only` keeps "
        "those not yet cleared. Role: data.",
    )
    def alerts(
        start: Annotated[ApiTime | None, Query(description="Window start (default: open).")] = None,
        end: Annotated[ApiTime | None, Query(description="Window end (default: open).")] = None,
        zones: list[str] | None = zones_q,
        open_only: Annotated[bool, Query(description="Only alerts still open.")] = False,
        who: Principal = data,
    ) -> Response:
        ids = _ids(zones)
        read(who, "alerts", start=start, end=end, zones=ids, open_only=open_only)

        def answer() -> Response:
            with _invalid_on_value_error():
                frame = density_alerts(ctx.store, start, end, zones=ids, open_only=open_only)
                return _rows(frame)

        return ctx.reads.answer(("alerts", start, end, _key(ids), open_only), answer)


def _density_now_and_heatmap_routes(app: FastAPI, ctx: _Context) -> None:
    data = Depends(_requires(ctx, "data"))

    def read(who: Principal, view: str, **params: Any) -> None:
        _audit_read(ctx, who, "density.read", {"view": view, **params})

    @app.get(
        "/density/now",
        tags=["density"],
        summary="Crowd density now",
        description="The newest counted second of each zone of the running pipeline: "
        "count, density per m², coverage, cameras. Role: data.",
    )
    def now(who: Principal = data) -> dict[str, dict[str, Any]]:
        read(who, "now")
        with _live_errors():
            return ctx.live().density_now()

    @app.get(
        "/density/heatmap.png",
        tags=["density"],
        summary="Occupancy heatmap of the site",
        description="Mean people per m² over the window on the site map, with zones and "
        "cameras (PNG). Role: data.",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    def heatmap(
        start: Annotated[ApiTime, _START], end: Annotated[ApiTime, _END], who: Principal = data
    ) -> Response:
        read(who, "heatmap", start=start, end=end)

        def answer() -> Response:
            with _invalid_on_value_error():
                if end < start:
                    raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
                points = ground_points(ctx.store, start, end)
                seconds = max((end - start).total_seconds(), 1.0)
                png = render_site_png(site_occupancy(points, ctx.site, seconds), ctx.site)
            return Response(png, media_type="image/png")

        return ctx.reads.answer(("heatmap", start, end), answer)


# --------------------------------------------------------------------------- ops, admin


def _public_camera(entry: dict[str, Any]) -> dict[str, Any]:
    return {**entry, "source": _public_source(str(entry.get("source", "")))}


def _audit_op(ctx: _Context, who: Principal, action: str, params: dict[str, Any]) -> None:
    ctx.audit.append(who.principal, who.role, action, parameters={"key_id": who.key_id, **params})


@contextmanager
def _live_errors() -> Iterator[None]:
    """The pipeline's refusals as HTTP: bad settings 422, unknown ids 404, down 503."""
    try:
        yield
    except PipelineUnavailableError as exc:
        raise ApiError(503, "pipeline unavailable", str(exc)) from None
    except ConfigError as exc:
        raise ApiError(422, "invalid request", str(exc)) from None
    except KeyError as exc:
        raise ApiError(404, "not found", str(exc.args[0]) if exc.args else str(exc)) from None


class CameraChange(BaseModel):
    """A camera's settings as in the ``cameras:`` list of ``site.yaml`` (validated there)."""

    model_config = {
        "extra": "allow",
        "json_schema_extra": {
            "example": {
                "id": "gate2",
                "source": "rtsp://10.0.0.7/stream1",
                "fps": 10,
                "resolution": [640, 360],
                "calibration": [
                    {"image": [0, 360], "ground": [0, 0]},
                    {"image": [640, 360], "ground": [8, 0]},
                    {"image": [640, 200], "ground": [8, 12]},
                    {"image": [0, 200], "ground": [0, 12]},
                ],
            }
        },
    }

    id: str = Field(min_length=1, max_length=100, description="Camera id.")


def _ops_routes(app: FastAPI, ctx: _Context) -> None:
    operator = Depends(_requires(ctx, "operator"))

    @app.get(
        "/cameras",
        tags=["operations"],
        summary="Cameras with health",
        description="Every camera of the running pipeline with its settings (passwords in "
        "stream URLs hidden) and health: state, fps in/out, lag, drops, decode errors, "
        "reconnects, last frame time. Without a running pipeline, the site file's cameras "
        "with `health: null`. Role: operator.",
    )
    def cameras(who: Principal = operator) -> list[dict[str, Any]]:
        if ctx.ops is None:
            return [
                {
                    "id": c.id,
                    "source": _public_source(str(c.source)),
                    "fps": c.fps,
                    "resolution": list(c.resolution),
                    "enabled": c.enabled,
                    "health": None,
                }
                for c in ctx.site.cameras
            ]
        with _live_errors():
            return [_public_camera(c) for c in ctx.ops.cameras()]

    @app.post(
        "/cameras",
        status_code=201,
        tags=["operations"],
        summary="Add a camera",
        description="Starts a camera actor for the new camera; the others keep running. "
        "The body is validated like the site file (422 naming the field). Role: operator.",
    )
    def add_camera(body: CameraChange, who: Principal = operator) -> dict[str, Any]:
        camera = body.model_dump(mode="json")
        _audit_op(ctx, who, "camera.add", {"camera": body.id})
        with _live_errors():
            return _public_camera(ctx.live().add_camera(camera))

    @app.put(
        "/cameras/{camera_id}",
        tags=["operations"],
        summary="Change a camera",
        description="Replaces the camera's settings and restarts only its actor. Role: operator.",
    )
    def change_camera(
        camera_id: str, body: CameraChange, who: Principal = operator
    ) -> dict[str, Any]:
        if body.id != camera_id:
            raise ApiError(
                422, "invalid request", f"id: {body.id!r} differs from the path's {camera_id!r}"
            )
        _audit_op(ctx, who, "camera.change", {"camera": camera_id})
        with _live_errors():
            return _public_camera(ctx.live().add_camera(body.model_dump(mode="json"), True))

    @app.delete(
        "/cameras/{camera_id}",
        tags=["operations"],
        summary="Remove a camera",
        description="Stops the camera's actor (its tracklets so far stay stored) and "
        "returns its final health. Role: operator.",
    )
    def remove_camera(camera_id: str, who: Principal = operator) -> dict[str, Any]:
        _audit_op(ctx, who, "camera.remove", {"camera": camera_id})
        with _live_errors():
            return ctx.live().remove_camera(camera_id)

    @app.get(
        "/deployments",
        tags=["operations"],
        summary="Model replicas and batching",
        description="Serve applications with replica counts per state, and the detector's "
        "and embedder's batch statistics (of the replica that answered). Role: operator.",
    )
    def deployments(who: Principal = operator) -> dict[str, Any]:
        with _live_errors():
            return ctx.live().deployments()

    @app.get(
        "/cluster",
        tags=["operations"],
        summary="Cluster resources",
        description="Ray cluster resources in total and available, and the live nodes. "
        "Role: operator.",
    )
    def cluster(who: Principal = operator) -> dict[str, Any]:
        with _live_errors():
            return ctx.live().cluster()


def _session_routes(app: FastAPI, ctx: _Context) -> None:
    """Who am I, the site map (any valid key) and the audit check (admin)."""
    admin, anyone = Depends(_requires(ctx, "admin")), Depends(_authenticated(ctx))

    @app.get(
        "/whoami",
        tags=["session"],
        summary="The key's principal and role",
        description="Who the key belongs to and its role, so a client can offer only what "
        "the role may do. Any valid key.",
    )
    def whoami(who: Principal = anyone) -> dict[str, Any]:
        return {"principal": who.principal, "role": who.role, "key_id": who.key_id}

    @app.get(
        "/site",
        tags=["session"],
        summary="The site map",
        description="Ground geometry for drawing the site, in metres: bounds, outline, zones "
        "(polygon, alert density) and cameras (position, view footprint). Any valid key.",
    )
    def site_map(who: Principal = anyone) -> dict[str, Any]:
        return site_geometry(ctx.site)

    @app.get(
        "/audit/verify",
        tags=["admin"],
        summary="Check the audit log's hash chain",
        description="`ok` is false, with the first bad entry, when an entry was edited, "
        "removed or reordered. The check itself is audited. Role: admin.",
    )
    def audit_verify(who: Principal = admin) -> dict[str, Any]:
        report = ctx.audit.verify().to_dict()
        _audit_read(ctx, who, "audit.verify", {"ok": report["ok"]})
        return report


# --------------------------------------------------------------------------- live


def _job_routes(app: FastAPI, ctx: _Context) -> None:
    analyst = Depends(_requires(ctx, "analyst"))

    def owned(job_id: str, who: Principal) -> dict[str, Any]:
        with _live_errors():
            status = ctx.live().job_status(job_id)
        if status.get("requested_by") != who.principal:  # another analyst's case
            raise ApiError(404, "not found", f"no search job {job_id!r}")
        return status

    def audit_job(who: Principal, action: str, status: dict[str, Any]) -> None:
        ctx.audit.append(
            who.principal,
            who.role,
            action,
            case_id=status.get("case_id"),
            reason=status.get("reason"),
            parameters={"key_id": who.key_id, "job_id": status["job_id"]},
        )

    @app.post(
        "/searches/jobs",
        status_code=202,
        tags=["searches"],
        summary="Start a search as a background job",
        description="For long windows: the search runs as Ray tasks over the store's "
        "partitions, after ingesting (unless `ingest=false`) the recorded footage of its "
        "cameras and window that the store lacks; read its progress and partial results at "
        "`GET /searches/jobs/{job_id}` "
        "and cancel it with `DELETE`. Once read with candidates, the job id also works as a "
        "search id (`/searches/{id}`, `/refine`, candidates' `/route` and `/thumbnail`). Body "
        "as for `POST /searches`. Role: analyst.",
        openapi_extra=_SEARCH_BODY,
    )
    async def create_job(
        request: Request,
        ingest: bool = Query(
            True,
            description="First ingest, in forensic mode, the recorded footage of the query's "
            "cameras and window that the store lacks (status state `ingesting`).",
        ),
        who: Principal = analyst,
    ) -> dict[str, Any]:
        data, photos = await _read_search_request(request, ctx)
        query = _parse_query(data, photos, who)
        _audit_search(ctx, who, "search.create", query, {"job": True, "ingest": ingest})
        live = ctx.live()
        if query.photos and ctx.embed is None:
            raise ApiError(503, "embedder unavailable", "photos cannot be embedded here")
        with _invalid_on_value_error(), _models_unavailable():
            embedded = await _in_thread(embed_query, query, ctx.embed, ctx.detect, ctx.adapter)
        with _live_errors(), _invalid_on_value_error():
            job_id = await _in_thread(live.submit_job, embedded, ctx.store, ingest)
            status = await _in_thread(live.job_status, job_id)
        ctx.searches.put(job_id, embedded, None, job=True)
        audit_job(who, "search.job", status)  # ties the job id to the audited search
        return {"job_id": job_id, "status": status}

    @app.get(
        "/searches/jobs/{job_id}",
        tags=["searches"],
        summary="A search job's progress and results",
        description="State, progress (0..1) and the candidates merged so far (marked "
        "partial until the job is done). Only the analyst who started it. Role: analyst.",
    )
    def read_job(job_id: str, who: Principal = analyst) -> dict[str, Any]:
        status = owned(job_id, who)
        audit_job(who, "search.read", status)
        with _live_errors():
            result = ctx.live().job_results(job_id)
        ctx.searches.update_job(job_id, result)
        return {"job_id": job_id, "status": status, "result": result.model_dump(mode="json")}

    @app.delete(
        "/searches/jobs/{job_id}",
        tags=["searches"],
        summary="Cancel a search job",
        description="Stops merging and cancels the job's outstanding tasks. Role: analyst.",
    )
    def cancel_job(job_id: str, who: Principal = analyst) -> dict[str, Any]:
        status = owned(job_id, who)
        audit_job(who, "search.cancel", status)
        with _live_errors():
            return {"job_id": job_id, "status": ctx.live().cancel_job(job_id)}


def _watch_routes(app: FastAPI, ctx: _Context) -> None:
    analyst = Depends(_requires(ctx, "analyst"))

    @app.post(
        "/watches",
        status_code=201,
        tags=["watches"],
        summary="Open a standing watch",
        description="Keeps a search open over live ingest: a new tracklet matching above "
        "`threshold` (default the query's `min_confidence`) raises an alert, readable at "
        "`/watches/alerts` and pushed on `/events`. Body as for `POST /searches` (JSON or "
        "multipart with photos) plus an optional `threshold`. Role: analyst.",
        openapi_extra=_SEARCH_BODY,
    )
    async def create_watch(request: Request, who: Principal = analyst) -> dict[str, Any]:
        data, photos = await _read_search_request(request, ctx)
        threshold = data.pop("threshold", None) if isinstance(data, dict) else None
        if threshold is not None and (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not 0.0 <= threshold <= 1.0
        ):
            raise ApiError(
                422, "invalid request", f"threshold: a number in [0, 1], got {threshold!r}"
            )
        query = _parse_query(data, photos, who)
        _audit_search(ctx, who, "watch.create", query, {"threshold": threshold})
        live = ctx.live()
        if query.photos and ctx.embed is None:
            raise ApiError(503, "embedder unavailable", "photos cannot be embedded here")
        with _invalid_on_value_error(), _models_unavailable():
            embedded = await _in_thread(embed_query, query, ctx.embed, ctx.detect, ctx.adapter)
        with _live_errors(), _invalid_on_value_error():
            watch_id = await _in_thread(live.add_watch, embedded, threshold)
        return {"watch_id": watch_id}

    @app.get(
        "/watches",
        tags=["watches"],
        summary="Open watches",
        description="Every open watch: id, case, reason, who opened it, threshold, alert "
        "count. Role: analyst.",
    )
    def list_watches(who: Principal = analyst) -> list[dict[str, Any]]:
        _audit_read(ctx, who, "watch.list", {})
        with _live_errors():
            return ctx.live().watches()

    @app.delete(
        "/watches/{watch_id}",
        tags=["watches"],
        summary="Close a watch",
        description="Its alerts so far stay readable. Role: analyst.",
    )
    def close_watch(watch_id: str, who: Principal = analyst) -> dict[str, Any]:
        _audit_read(ctx, who, "watch.close", {"watch_id": watch_id})
        with _live_errors():
            ctx.live().remove_watch(watch_id)
        return {"watch_id": watch_id, "closed": True}

    @app.get(
        "/watches/alerts",
        tags=["watches"],
        summary="Watch alerts",
        description="Alerts numbered after `since` (poll with the last `seq` seen), oldest "
        "first. Role: analyst.",
    )
    def watch_alerts(
        since: int = Query(0, ge=0, description="Last alert seq already seen."),
        who: Principal = analyst,
    ) -> list[dict[str, Any]]:
        _audit_read(ctx, who, "watch.alerts", {"since": since})
        with _live_errors():
            return ctx.live().watch_alerts(since)


EVENT_STREAMS = {"watch_alert": "analyst", "density_alert": "data"}
"""Event kinds of ``/events`` and the role that receives each (operators get crowd
alerts too)."""


def _event_kinds(role: str) -> list[str]:
    kinds = [k for k, r in EVENT_STREAMS.items() if r == role]
    if role == "operator":
        kinds.append("density_alert")
    return kinds


def _sse(kind: str, seq: int, payload: dict[str, Any]) -> str:
    data = json.dumps(payload, default=str, separators=(",", ":"))
    return f"id: {kind}-{seq}\nevent: {kind}\ndata: {data}\n\n"


async def _alert_stream(
    request: Request,
    ctx: _Context,
    cursors: dict[str, int],
    timeout_s: float | None,
) -> AsyncIterator[str]:
    """Server-sent events of the alerts of ``cursors``' kinds after each cursor, polled
    every ``ctx.poll_s``, until the client leaves or ``timeout_s`` passes."""
    live = ctx.live()
    readers = {"watch_alert": live.watch_alerts, "density_alert": live.density_alerts}
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    yield f"retry: {int(ctx.poll_s * 1000)}\n: streaming {', '.join(cursors)}\n\n"
    while deadline is None or time.monotonic() < deadline:
        if await request.is_disconnected():
            return
        for kind, after in list(cursors.items()):
            try:
                rows = await _in_thread(readers[kind], after)
            except PipelineUnavailableError as exc:
                yield f"event: error\ndata: {json.dumps(str(exc))}\n\n"
                continue
            for row in rows:
                cursors[kind] = max(cursors[kind], int(row["seq"]))
                quiet_since = time.monotonic()
                yield _sse(kind, int(row["seq"]), row)
        if time.monotonic() - quiet_since >= EVENT_KEEPALIVE_S:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        wait = ctx.poll_s
        if deadline is not None:
            wait = min(wait, max(deadline - time.monotonic(), 0.0))
        await asyncio.sleep(wait)


def _event_routes(app: FastAPI, ctx: _Context) -> None:
    authenticate = _authenticated(ctx)

    def any_role(request: Request) -> Principal:
        principal = authenticate(request)
        if not _event_kinds(principal.role):
            raise PermissionDenied(
                f"role {principal.role!r} receives no events: /events streams watch alerts "
                "to analysts and crowd alerts to data and operator keys"
            )
        return principal

    subscriber = Depends(any_role)

    @app.get(
        "/events",
        tags=["events"],
        summary="Live alerts (server-sent events)",
        description="A `text/event-stream` of the alerts your role may see: `watch_alert` "
        "(analyst) and `density_alert` (data, operator). Each event's id is "
        "`<kind>-<seq>`; reconnect with `since_watch`/`since_density` set to the last seq "
        "seen. `timeout_s` ends the stream (default: open until the client leaves).",
        response_class=Response,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    def events(
        request: Request,
        since_watch: int = Query(0, ge=0, description="Last watch alert seq seen."),
        since_density: int = Query(0, ge=0, description="Last crowd alert seq seen."),
        timeout_s: float | None = Query(
            None, gt=0, le=86400, description="Close the stream after this many seconds."
        ),
        who: Principal = subscriber,
    ) -> Response:
        kinds = _event_kinds(who.role)
        ctx.live()  # 503 before the stream starts, not inside it
        _audit_read(ctx, who, "events.subscribe", {"kinds": kinds})
        start = {"watch_alert": since_watch, "density_alert": since_density}
        cursors = {kind: start[kind] for kind in kinds}
        return StreamingResponse(
            _alert_stream(request, ctx, cursors, timeout_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


# --------------------------------------------------------------------------- app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Any:
        return _error(exc.status, exc.error, exc.detail, exc.headers)

    @app.exception_handler(AuthenticationError)
    async def unauthenticated(request: Request, exc: AuthenticationError) -> Any:
        headers = {"WWW-Authenticate": 'Bearer realm="sightline"'}
        return _error(401, "unauthenticated", str(exc), headers)

    @app.exception_handler(PermissionDenied)
    async def forbidden(request: Request, exc: PermissionDenied) -> Any:
        return _error(403, "forbidden", str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Any:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return _error(422, "invalid request", "; ".join(problems))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Any:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, "internal error", f"{type(exc).__name__}: {exc}"[:500])

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        return _error(exc.status_code, "http error", exc.detail, exc.headers)


def create_app(  # noqa: PLR0913 (keyword-only options, each with a default)
    site: SiteConfig,
    *,
    store_root: str | Path | None = None,
    keys_file: str | Path | None = None,
    audit_dir: str | Path | None = None,
    embed: Embed | None = None,
    detect: Detect | None = None,
    adapter: PhotoAdapter | None = None,
    ops: Operations | None = None,
    poll_s: float = EVENT_POLL_S,
    run_dir: str | Path | None = None,
) -> FastAPI:
    """The Sightline HTTP API for ``site``.

    ``store_root`` defaults to the site's ``storage.root``, ``keys_file`` and
    ``audit_dir`` to :func:`~sightline.security.security_paths`. A missing key file is
    allowed (every request is then 401 until ``sightline keys create`` writes one; the
    store re-reads it when it changes). ``embed``/``detect``/``adapter`` turn uploaded
    photos into query vectors; without ``embed`` a photo search is a 503, while searches
    by embeddings or description work. ``ops`` is the running pipeline
    (:class:`~serve.live.RayOperations`); without it the live routes (camera changes,
    density now, watches, events, deployments, cluster) answer 503. ``poll_s`` is how
    often ``/events`` asks it for new alerts. ``run_dir`` is the pipeline's run folder
    (default ``<store>/_run``, where ``sightline serve`` writes): its per-frame detections
    tell thumbnails whose heads to blur; without them thumbnails are withheld (409).
    """
    if keys_file is None or audit_dir is None:
        default_keys, default_audit = security_paths(site)
        keys_file = keys_file if keys_file is not None else default_keys
        audit_dir = audit_dir if audit_dir is not None else default_audit
    if not Path(keys_file).exists():
        log.warning("%s: no key file yet; every request is refused until keys exist", keys_file)
    store = str(store_root if store_root is not None else site.storage.root)
    if run_dir is None and "://" not in store:
        run_dir = Path(store) / "_run"
    ctx = _Context(
        site=site,
        store=store,
        detections=FrameDetections(run_dir) if run_dir is not None else None,
        keys=KeyStore(keys_file, create=True),
        audit=AuditLog(audit_dir),
        embed=embed,
        detect=detect,
        adapter=adapter,
        ops=ops,
        poll_s=poll_s,
    )
    app = FastAPI(
        title="Sightline API",
        version="0.1.0",
        description="Missing-person search, fused tracks and crowd density across a site's "
        "cameras. Every route needs an API key (`Authorization: Bearer <key>`) whose role "
        "allows it; every search and data read is audited.",
    )
    _install_error_handlers(app)
    _search_routes(app, ctx)
    _track_routes(app, ctx)
    _density_routes(app, ctx)
    _density_now_and_heatmap_routes(app, ctx)
    _ops_routes(app, ctx)
    _session_routes(app, ctx)
    mount_console(app)
    _watch_routes(app, ctx)
    _job_routes(app, ctx)
    _event_routes(app, ctx)
    app.state.sightline = ctx
    return app


# --------------------------------------------------------------------------- Ray Serve


def build_api_deployment(
    site: SiteConfig,
    *,
    store_root: str | Path | None = None,
    keys_file: str | Path | None = None,
    audit_dir: str | Path | None = None,
    app_prefix: str | None = None,
    models: Callable[[], tuple[Embed | None, Detect | None, PhotoAdapter | None]] | None = None,
    run_dir: str | Path | None = None,
    **deployment_options: Any,
) -> Any:
    """A Serve deployment (call ``.bind()`` on it) serving :func:`create_app`.

    The app is built in each replica by a builder function: the key store and audit log
    hold locks that cannot be pickled, and the model handles should be made where the
    requests are served. With ``app_prefix`` (the pipeline's, as ``sightline serve``
    runs it) the live routes reach the running pipeline
    (:class:`~serve.live.RayOperations`) and photos go through its model applications
    (:func:`~serve.live.handle_models`); ``models`` (a function returning ``(embed,
    detect, adapter)``) overrides the latter; ``run_dir`` is :func:`create_app`'s.
    ``deployment_options`` go to
    ``serve.deployment`` (default name ``SightlineAPI``). Ray is imported here, not at
    module import.
    """
    from ray import serve

    from serve.live import RayOperations, handle_models

    def build() -> FastAPI:
        if models is not None:
            embed, detect, adapter = models()
        elif app_prefix is not None:
            embed, detect, adapter = handle_models(app_prefix, site.models.embedder.type)
        else:
            embed = detect = adapter = None
        return create_app(
            site,
            store_root=store_root,
            keys_file=keys_file,
            audit_dir=audit_dir,
            embed=embed,
            detect=detect,
            adapter=adapter,
            ops=RayOperations(app_prefix) if app_prefix is not None else None,
            run_dir=run_dir,
        )

    options = {"name": "SightlineAPI", **deployment_options}

    @serve.deployment(**options)
    @serve.ingress(build)
    class SightlineAPI:
        """The HTTP API ingress; routes come from :func:`create_app`."""

    return SightlineAPI

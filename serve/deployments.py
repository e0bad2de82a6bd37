"""The model replicas: ``Detector`` and ``Embedder`` Serve deployments with dynamic batching.

Each replica builds its backend from a model config (``build_detector`` /
``build_embedder``: built-in or TorchScript) and batches requests from many callers into
one backend call with ``@serve.batch``:

- ``Detector.detect(frame)`` takes ONE frame ``(H, W, 3) uint8`` and returns its
  :class:`~sightline.models.Detections`; concurrent frames are stacked into one
  ``(N, H, W, 3)`` call (grouped by shape when cameras differ in resolution).
- ``Embedder.embed(crops)`` takes one request's crops and returns ``(len(crops), D)``
  vectors; the crops of concurrent requests are concatenated into one call and split back.
  Its ``max_batch_size`` counts crops, not requests; a request with more crops than that
  is split over several batches. ``Embedder.read_attributes(crops)`` reads the same
  crops' hat and bag (``(len(crops), 2)``) with the built-in attribute reader.

The model runs in a worker thread so the replica keeps accepting requests (and the next
batch keeps filling) while a batch runs. A bad request fails alone: items are validated
one by one, and when a batched backend call raises, its items are retried one at a time
so only the culprit gets the error. ``stats()`` reports the batches a replica formed.

Build and start them with :func:`deploy_models` (or :func:`build_model_apps` for
``serve.run`` / ``serve build`` yourself); callers use the returned handles:
``await detector.detect.remote(frame)``.

Placement: on a cluster that declares ``sightline_model`` (GPU nodes,
:mod:`sightline.placement`) each replica asks for one unit of it besides its GPUs, so
replicas run only there (:func:`model_resources`); on one machine nothing is added.
Health: Serve calls each replica's ``check_health`` every ``health_check_period_s``
(10 s); it fails when the model is not loaded, its CUDA device has gone, or the last
:data:`UNHEALTHY_AFTER_FAILED_BATCHES` batches failed entirely, and Serve replaces a
replica after three failed checks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import ray
import torch
from pydantic import TypeAdapter
from ray import serve
from ray.serve.handle import DeploymentHandle

from serve.options import deployment_options, parse_batch_user_config
from sightline.config import DetectorConfig, EmbedderConfig, ModelsConfig, ServingConfig
from sightline.models import Detections, DetectorBackend, EmbedderBackend
from sightline.models.builtin_attributes import builtin_attribute_reader
from sightline.models.core import check_crops, check_image
from sightline.models.registry import build_detector, build_embedder
from sightline.placement import placement_options

__all__ = [
    "DETECTOR_DEPLOYMENT",
    "EMBEDDER_DEPLOYMENT",
    "BatchStats",
    "Detector",
    "Embedder",
    "ModelHandles",
    "app_names",
    "build_detector_app",
    "build_embedder_app",
    "build_model_apps",
    "check_frame",
    "check_request_crops",
    "delete_models",
    "deploy_models",
    "get_model_handles",
    "model_resources",
    "run_detector",
    "run_embedder",
]

logger = logging.getLogger(__name__)

DETECTOR_DEPLOYMENT = "Detector"
EMBEDDER_DEPLOYMENT = "Embedder"
# (config, prefer_gpu) -> backend; the registry's build_* by default, a test double in tests.
DetectorFactory = Callable[..., DetectorBackend]
EmbedderFactory = Callable[..., EmbedderBackend]

UNHEALTHY_AFTER_FAILED_BATCHES = 5
"""A replica whose model failed every item of this many batches in a row reports itself
unhealthy (inputs are validated before batching, so these are model failures)."""

_DETECTOR_CONFIG: TypeAdapter[Any] = TypeAdapter(DetectorConfig)
_EMBEDDER_CONFIG: TypeAdapter[Any] = TypeAdapter(EmbedderConfig)


# --------------------------------------------------------------------------- stats


class BatchStats:
    """Counters of the batches one replica ran (kept on the replica's event loop)."""

    def __init__(self) -> None:
        self.batches = 0
        self.items = 0
        self.requests = 0
        self.failed_items = 0
        self.backend_calls = 0
        self.busy_s = 0.0
        self.model_s = 0.0
        self.sizes: Counter[int] = Counter()

    def record(
        self, size: int, requests: int, failed: int, calls: int, seconds: tuple[float, float]
    ) -> None:
        """Count one batch of ``size`` items from ``requests`` requests.

        ``seconds`` is (wall time of the batch, time spent inside the model thread).
        """
        self.batches += 1
        self.items += size
        self.requests += requests
        self.failed_items += failed
        self.backend_calls += calls
        self.busy_s += seconds[0]
        self.model_s += seconds[1]
        self.sizes[size] += 1

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary: counts, mean/max batch size and the batch-size histogram."""
        return {
            "batches": self.batches,
            "items": self.items,
            "requests": self.requests,
            "failed_items": self.failed_items,
            "backend_calls": self.backend_calls,
            "mean_batch_size": round(self.items / self.batches, 3) if self.batches else 0.0,
            "max_batch_size_seen": max(self.sizes, default=0),
            "batch_size_histogram": {str(k): v for k, v in sorted(self.sizes.items())},
            # busy: batch start to results (thread hop included); model: inside the thread
            "busy_s": round(self.busy_s, 4),
            "model_s": round(self.model_s, 4),
        }


def _replica_identity() -> dict[str, Any]:
    """Who and where this replica is: ids, node, and the resources Ray gave it."""
    ctx = serve.get_replica_context()
    runtime = ray.get_runtime_context()
    return {
        "app": ctx.app_name,
        "deployment": ctx.deployment,
        "replica_id": ctx.replica_id.unique_id,
        "actor_id": runtime.get_actor_id(),
        "node_id": runtime.get_node_id(),
        "pid": os.getpid(),
        "assigned_resources": runtime.get_assigned_resources(),
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
    }


class _BatchedReplica:
    """Shared by both deployments: batch parameters, ``reconfigure``, ``stats``."""

    kind = "model"

    def _setup(self, backend: Any, serving: ServingConfig) -> None:
        self._backend = backend
        self._stats = BatchStats()
        self._identity = _replica_identity()
        self._started = time.time()
        self._failed_in_a_row = 0
        self._last_batch_error: str | None = None
        self._apply_batching(serving.max_batch_size, serving.batch_wait_timeout_s)

    def _note_batch(self, results: list[Any]) -> None:
        """Count batches in which every item failed (for :meth:`check_health`)."""
        errors = [r for r in results if isinstance(r, BaseException)]
        if results and len(errors) == len(results):
            self._failed_in_a_row += 1
            self._last_batch_error = f"{type(errors[-1]).__name__}: {errors[-1]}"[:300]
        else:
            self._failed_in_a_row = 0

    def check_health(self) -> None:
        """Serve's periodic health check: raises when this replica cannot serve.

        Unhealthy: no model loaded, a CUDA model whose device is gone, or the last
        :data:`UNHEALTHY_AFTER_FAILED_BATCHES` batches all failed. After three failed
        checks Serve replaces the replica.
        """
        backend = getattr(self, "_backend", None)
        if backend is None:
            raise RuntimeError(f"{self.kind} replica has no model loaded")
        device = str(getattr(backend, "device", "cpu"))
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"{self.kind} model is on {device}, but CUDA is not available")
        if self._failed_in_a_row >= UNHEALTHY_AFTER_FAILED_BATCHES:
            raise RuntimeError(
                f"{self.kind} model failed its last {self._failed_in_a_row} batches: "
                f"{self._last_batch_error}"
            )

    def _batched(self) -> Any:
        """The ``@serve.batch`` method of the subclass (for its setters)."""
        raise NotImplementedError

    def _apply_batching(self, max_batch_size: int, batch_wait_timeout_s: float) -> None:
        self._max_batch_size = max_batch_size
        self._batch_wait_timeout_s = batch_wait_timeout_s
        batched = self._batched()
        batched.set_max_batch_size(max_batch_size)
        batched.set_batch_wait_timeout_s(batch_wait_timeout_s)

    def reconfigure(self, user_config: Mapping[str, Any]) -> None:
        """Apply batch parameters (``max_batch_size``, ``batch_wait_timeout_s``) at run time.

        Serve calls this after ``__init__`` with the deployment's ``user_config`` and again
        when only the ``user_config`` changes (a lightweight update from a Serve config
        file: replicas are not restarted). A missing key keeps its current value; a bad
        key or value raises ``ValueError``. Serve itself logs a warning if the new size
        exceeds ``max_ongoing_requests`` (which only a redeploy can change).
        """
        parse_batch_user_config(user_config)  # type, keys and ranges, before merging
        current = {
            "max_batch_size": self._max_batch_size,
            "batch_wait_timeout_s": self._batch_wait_timeout_s,
        }
        size, wait = parse_batch_user_config({**current, **user_config})
        self._apply_batching(size, wait)
        logger.info("%s batching: max_batch_size=%d batch_wait_timeout_s=%s", self.kind, size, wait)

    def stats(self) -> dict[str, Any]:
        """This replica's batching statistics, identity, device and batch parameters."""
        return {
            "kind": self.kind,
            **self._identity,
            "device": self._backend.device,
            "backend": type(self._backend).__name__,
            "torch_threads": torch.get_num_threads(),
            "max_batch_size": self._max_batch_size,
            "batch_wait_timeout_s": self._batch_wait_timeout_s,
            "uptime_s": round(time.time() - self._started, 3),
            "failed_batches_in_a_row": self._failed_in_a_row,
            **self._stats.as_dict(),
        }

    def reset_stats(self) -> None:
        """Zero the counters (benchmarks reset them between phases)."""
        self._stats = BatchStats()


async def _in_thread(fn: Callable[..., Any], *args: Any) -> tuple[Any, tuple[float, float]]:
    """``fn(*args)`` in a worker thread, so the event loop keeps taking requests meanwhile.

    Returns the result and (wall seconds here, seconds spent inside the thread).
    """

    def timed() -> tuple[Any, float]:
        started = time.perf_counter()
        return fn(*args), time.perf_counter() - started

    started = time.perf_counter()
    result, inside = await asyncio.to_thread(timed)
    return result, (time.perf_counter() - started, inside)


def _raise_if_error(result: Any) -> Any:
    if isinstance(result, BaseException):
        raise result
    return result


# --------------------------------------------------------------------------- detector


def check_frame(frame: Any) -> np.ndarray:
    """Validate one detector request: ``(H, W, 3) uint8`` with H, W >= 1."""
    return check_image(frame, "frame")


def _detect_one_by_one(backend: DetectorBackend, frames: list[np.ndarray]) -> list[Any]:
    out: list[Any] = []
    for frame in frames:
        try:
            out.append(backend.detect(frame[None].copy())[0])
        except Exception as exc:  # one bad frame: its caller gets this error
            out.append(exc)
    return out


def run_detector(backend: DetectorBackend, frames: list[np.ndarray]) -> tuple[list[Any], int]:
    """Detections (or the exception) for each frame, and the number of backend calls.

    Frames of equal shape are stacked into one call. If a stacked call fails, its frames
    are retried one at a time so that only the frame that caused it fails.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, frame in enumerate(frames):
        groups.setdefault(frame.shape, []).append(i)
    results: list[Any] = [None] * len(frames)
    calls = 0
    for idx in groups.values():
        members = [frames[i] for i in idx]
        calls += 1
        try:
            # np.stack copies: the arrays Serve hands us are read-only views of the
            # object store, which torch would refuse to wrap without a warning.
            out = backend.detect(np.stack(members))
            if len(out) != len(idx):
                raise RuntimeError(f"detector returned {len(out)} results for {len(idx)} frames")
        except Exception as exc:
            if len(idx) == 1:
                out = [exc]
            else:
                calls += len(idx)
                out = _detect_one_by_one(backend, members)
        for i, res in zip(idx, out, strict=True):
            results[i] = res
    return results, calls


@serve.deployment(name=DETECTOR_DEPLOYMENT)
class Detector(_BatchedReplica):
    """Person detector replica: one frame per request, frames batched across callers."""

    kind = "detector"

    def __init__(self, config: Any, backend_factory: DetectorFactory | None = None) -> None:
        """Build the backend of ``config`` (a detector config object or its dict).

        ``backend_factory(config, prefer_gpu=...)`` replaces ``build_detector`` (tests).
        The GPU is preferred only when the replica was given one.
        """
        self._config = _DETECTOR_CONFIG.validate_python(config)
        serving = self._config.serving
        factory = backend_factory or build_detector
        self._setup(factory(self._config, prefer_gpu=serving.num_gpus > 0), serving)

    def _batched(self) -> Any:
        return self._detect_batch

    async def detect(self, frame: np.ndarray) -> Detections:
        """Person boxes in one ``(H, W, 3) uint8`` RGB frame, in its own pixels.

        A malformed frame raises ``ValueError`` to this caller only.
        """
        check_frame(frame)
        return _raise_if_error(await self._detect_batch(frame))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _detect_batch(self, frames: list[np.ndarray]) -> list[Any]:
        (results, calls), seconds = await _in_thread(run_detector, self._backend, frames)
        failed = sum(isinstance(r, BaseException) for r in results)
        self._stats.record(len(frames), len(frames), failed, calls, seconds)
        self._note_batch(results)
        return results


# --------------------------------------------------------------------------- embedder


def _crop_count(requests: list[list[np.ndarray]]) -> int:
    """Batch size of the embedder: crops, not requests (what the model actually sees)."""
    return sum(len(r) for r in requests)


def check_request_crops(crops: Any) -> list[np.ndarray]:
    """Validate one embedder request: a list of ``(h, w, 3) uint8`` crops.

    Read-only crops (as received from the object store) are copied so torch can wrap them.
    """
    if not isinstance(crops, list | tuple):
        raise ValueError(f"crops must be a list of (h, w, 3) uint8 arrays, got {type(crops)}")
    check_crops(list(crops))
    return [c if c.flags.writeable else c.copy() for c in crops]


def _embed_one_by_one(backend: EmbedderBackend, requests: list[list[np.ndarray]]) -> list[Any]:
    out: list[Any] = []
    for crops in requests:
        try:
            out.append(_checked_vectors(backend.embed(crops), len(crops)))
        except Exception as exc:  # one bad request: its caller gets this error
            out.append(exc)
    return out


def _checked_vectors(vectors: np.ndarray, n: int) -> np.ndarray:
    if vectors.ndim != 2 or vectors.shape[0] != n:
        raise RuntimeError(f"embedder returned shape {vectors.shape} for {n} crops")
    return vectors


def run_embedder(
    backend: EmbedderBackend, requests: list[list[np.ndarray]]
) -> tuple[list[Any], int]:
    """Vectors (or the exception) for each request's crops, and the number of backend calls.

    All crops go into one call and are split back by request. If that call fails, the
    requests are retried one at a time so only the one that caused it fails.
    """
    flat = [c for crops in requests for c in crops]
    try:
        vectors = _checked_vectors(backend.embed(flat), len(flat))
    except Exception as exc:
        if len(requests) == 1:
            return [exc], 1
        return _embed_one_by_one(backend, requests), 1 + len(requests)
    bounds = np.cumsum([len(r) for r in requests])[:-1]
    return list(np.split(vectors, bounds)), 1


@serve.deployment(name=EMBEDDER_DEPLOYMENT)
class Embedder(_BatchedReplica):
    """Re-ID embedder replica: one list of crops per request, crops batched across callers."""

    kind = "embedder"

    def __init__(self, config: Any, backend_factory: EmbedderFactory | None = None) -> None:
        """Build the backend of ``config`` (an embedder config object or its dict).

        ``backend_factory(config, prefer_gpu=...)`` replaces ``build_embedder`` (tests).
        """
        self._config = _EMBEDDER_CONFIG.validate_python(config)
        serving = self._config.serving
        factory = backend_factory or build_embedder
        self._setup(factory(self._config, prefer_gpu=serving.num_gpus > 0), serving)

    def _batched(self) -> Any:
        return self._embed_batch

    async def embedding_dim(self) -> int:
        """Length of the vectors :meth:`embed` returns (for callers sizing their storage)."""
        return self._backend.dim

    async def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """``(len(crops), D) float32`` L2-normalised vectors for one request's crops.

        Malformed crops raise ``ValueError`` to this caller only; no crops give ``(0, D)``.
        """
        crops = check_request_crops(crops)
        if not crops:
            return np.zeros((0, self._backend.dim), np.float32)
        # A request larger than a batch is split: Serve refuses an item bigger than
        # max_batch_size when the batch size is counted in crops.
        step = self._max_batch_size
        chunks = [crops[i : i + step] for i in range(0, len(crops), step)]
        parts = await asyncio.gather(*(self._embed_batch(chunk) for chunk in chunks))
        return np.concatenate([_raise_if_error(p) for p in parts])

    async def read_attributes(self, crops: list[np.ndarray]) -> np.ndarray:
        """``(len(crops), 2)`` ``P(hat), P(bag)`` per crop, by the built-in hat-and-bag
        reader (:mod:`sightline.models.builtin_attributes`, loaded on first use; CPU,
        about 2 ms a crop on 2 cores). Not batched across callers: a request is already
        one emission's crops. Malformed crops raise ``ValueError`` to this caller only."""
        crops = check_request_crops(crops)
        if not crops:
            return np.zeros((0, 2))
        reader, _ = await _in_thread(builtin_attribute_reader)
        read, _ = await _in_thread(reader, crops)
        return read

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01, batch_size_fn=_crop_count)
    async def _embed_batch(self, requests: list[list[np.ndarray]]) -> list[Any]:
        (results, calls), seconds = await _in_thread(run_embedder, self._backend, requests)
        failed = sum(
            len(q) for q, r in zip(requests, results, strict=True) if isinstance(r, BaseException)
        )
        self._stats.record(_crop_count(requests), len(requests), failed, calls, seconds)
        self._note_batch(results)
        return results


# --------------------------------------------------------------------------- apps


class ModelHandles(NamedTuple):
    """Handles of the two model deployments: ``await handles.detector.detect.remote(f)``."""

    detector: DeploymentHandle
    embedder: DeploymentHandle


def model_resources(cluster_resources: Mapping[str, Any] | None = None) -> dict[str, float]:
    """The custom resources a model replica asks for: ``{"sightline_model": 1.0}`` when
    a node of the cluster declares it, else ``{}`` (one machine, or no Ray connected).
    ``cluster_resources`` defaults to ``ray.cluster_resources()``."""
    if cluster_resources is None:
        if not ray.is_initialized():
            return {}
        cluster_resources = ray.cluster_resources()
    return dict(placement_options("model", cluster_resources).get("resources", {}))


def _placed(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with the model resource merged into ``ray_actor_options`` (resources
    the caller already set win)."""
    resources = model_resources()
    if resources:
        actor = dict(options.get("ray_actor_options") or {})
        actor["resources"] = {**resources, **(actor.get("resources") or {})}
        options["ray_actor_options"] = actor
    return options


def app_names(app_prefix: str = "sightline") -> tuple[str, str]:
    """Serve application names of the detector and the embedder for ``app_prefix``."""
    return f"{app_prefix}-detector", f"{app_prefix}-embedder"


def build_detector_app(
    config: Any,
    *,
    backend_factory: DetectorFactory | None = None,
    max_ongoing_requests: int | None = None,
    autoscaling_overrides: Mapping[str, Any] | None = None,
    **serve_options: Any,
) -> serve.Application:
    """The Detector application for a detector config, with options from its ``serving``.

    Extra keyword arguments are Serve deployment options (see
    :func:`serve.options.deployment_options`). On a cluster declaring
    ``sightline_model`` the replicas ask for it (:func:`model_resources`).
    """
    config = _DETECTOR_CONFIG.validate_python(config)
    options = deployment_options(
        config.serving,
        max_ongoing_requests=max_ongoing_requests,
        autoscaling_overrides=autoscaling_overrides,
        **serve_options,
    )
    return Detector.options(**_placed(options)).bind(config, backend_factory)


def build_embedder_app(
    config: Any,
    *,
    backend_factory: EmbedderFactory | None = None,
    max_ongoing_requests: int | None = None,
    autoscaling_overrides: Mapping[str, Any] | None = None,
    **serve_options: Any,
) -> serve.Application:
    """The Embedder application for an embedder config, with options from its ``serving``."""
    config = _EMBEDDER_CONFIG.validate_python(config)
    options = deployment_options(
        config.serving,
        max_ongoing_requests=max_ongoing_requests,
        autoscaling_overrides=autoscaling_overrides,
        **serve_options,
    )
    return Embedder.options(**_placed(options)).bind(config, backend_factory)


def build_model_apps(
    models: ModelsConfig,
    detector_factory: DetectorFactory | None = None,
    embedder_factory: EmbedderFactory | None = None,
    **serve_options: Any,
) -> tuple[serve.Application, serve.Application]:
    """``(detector_app, embedder_app)`` for a site's models config, not yet running.

    ``serve_options`` (Serve deployment options) apply to both deployments.
    """
    return (
        build_detector_app(models.detector, backend_factory=detector_factory, **serve_options),
        build_embedder_app(models.embedder, backend_factory=embedder_factory, **serve_options),
    )


def deploy_models(
    models: ModelsConfig,
    app_prefix: str = "sightline",
    detector_factory: DetectorFactory | None = None,
    embedder_factory: EmbedderFactory | None = None,
    **serve_options: Any,
) -> ModelHandles:
    """Run the detector and the embedder as two Serve applications; return their handles.

    The applications are ``<app_prefix>-detector`` and ``<app_prefix>-embedder``, without
    HTTP routes (only handles reach them). Running it again with a changed config
    redeploys them (replicas restart). ``serve_options`` (Serve deployment options such as
    ``max_queued_requests``) apply to both. Needs a connected Ray; call ``serve.start``
    first to choose the proxy settings (else Serve starts its HTTP proxy on port 8000).
    """
    detector_app, embedder_app = build_model_apps(
        models, detector_factory, embedder_factory, **serve_options
    )
    det_name, emb_name = app_names(app_prefix)
    # run_many starts both applications' replicas at once (serve.run would wait for the
    # detector to be healthy before even creating the embedder).
    handles = serve.run_many(
        [
            serve.RunTarget(detector_app, name=det_name, route_prefix=None),
            serve.RunTarget(embedder_app, name=emb_name, route_prefix=None),
        ]
    )
    return ModelHandles(*handles)


def get_model_handles(app_prefix: str = "sightline") -> ModelHandles:
    """Handles to already-running model apps (from any process or actor of the cluster).

    It makes blocking calls to the Serve controller: create the handles once and keep them.
    """
    det_name, emb_name = app_names(app_prefix)
    return ModelHandles(
        serve.get_deployment_handle(DETECTOR_DEPLOYMENT, det_name),
        serve.get_deployment_handle(EMBEDDER_DEPLOYMENT, emb_name),
    )


def delete_models(app_prefix: str = "sightline", names: Sequence[str] | None = None) -> None:
    """Delete the model applications of ``app_prefix`` (those that exist) and wait."""
    existing = serve.status().applications
    for name in names or app_names(app_prefix):
        if name in existing:
            serve.delete(name)

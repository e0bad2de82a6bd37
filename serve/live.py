"""What the HTTP API needs from the running pipeline: cameras and their health, run-time
camera changes, search jobs, Serve replicas and batch statistics, cluster resources, live density,
standing watches and the alerts of both.

:class:`Operations` is the interface the API routes call (from FastAPI's thread pool, so
blocking calls are fine). :class:`RayOperations` implements it over the named actors of
a running pipeline (``sightline serve``): the supervisor
(:mod:`actors.supervisor`), the coordinator and the model applications. Without a
running pipeline the API still serves the store (searches, tracks, density history) and
answers these routes with 503.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from sightline.config import ConfigError
from sightline.search.query import SearchQuery

__all__ = [
    "CALL_TIMEOUT_S",
    "Operations",
    "PipelineUnavailableError",
    "RayOperations",
    "handle_models",
    "search_jobs_name",
]

CALL_TIMEOUT_S = 30.0


class PipelineUnavailableError(RuntimeError):
    """The running pipeline cannot be reached (not started, or restarting)."""


class Operations(Protocol):
    """The live pipeline as the API sees it."""

    def cameras(self) -> list[dict[str, Any]]:
        """Every camera now with its settings and health."""
        ...

    def add_camera(self, camera: dict[str, Any], replace: bool = False) -> dict[str, Any]:
        """Add (or with ``replace`` change) a camera; ``ConfigError`` for bad settings,
        ``KeyError`` for changing an unknown id."""
        ...

    def remove_camera(self, camera_id: str) -> dict[str, Any]:
        """Stop and forget a camera; ``KeyError`` if unknown, ``ConfigError`` if the last."""
        ...

    def deployments(self) -> dict[str, Any]:
        """Serve applications, replica counts per state, and the models' batch stats."""
        ...

    def cluster(self) -> dict[str, Any]:
        """Ray cluster resources: total, available, nodes."""
        ...

    def density_now(self) -> dict[str, dict[str, Any]]:
        """The newest counted second of each zone."""
        ...

    def density_alerts(self, since: int = 0) -> list[dict[str, Any]]:
        """Crowd alert rows numbered after ``since``."""
        ...

    def add_watch(self, query: SearchQuery, threshold: float | None = None) -> str:
        """Open a standing watch; returns its id."""
        ...

    def remove_watch(self, watch_id: str) -> None:
        """Close a watch; ``KeyError`` if unknown."""
        ...

    def watches(self) -> list[dict[str, Any]]:
        """The open watches."""
        ...

    def watch_alerts(self, since: int = 0) -> list[dict[str, Any]]:
        """Watch alerts numbered after ``since``."""
        ...

    def submit_job(self, query: SearchQuery, store_root: str, ingest: bool = False) -> str:
        """Start a search job (a query with embeddings); returns its id. With ``ingest``
        the job first ingests the query's recorded footage the store lacks (forensic
        mode, through the running pipeline): :class:`PipelineUnavailableError` when no
        pipeline runs, ``ValueError`` when it stores elsewhere than ``store_root``."""
        ...

    def ingest_plan(self, query: SearchQuery, store_root: str) -> dict[str, Any]:
        """What a job with ``ingest`` would ingest now (windows, skipped, failed, waits)."""
        ...

    def job_status(self, job_id: str) -> dict[str, Any]:
        """A job's state, progress and counts; ``KeyError`` if unknown."""
        ...

    def job_results(self, job_id: str) -> Any:
        """A job's result so far (a ``SearchResult``, partial until done)."""
        ...

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Stop a job; returns its status."""
        ...


def _name(value: Any) -> str:
    """An enum member's value, or the string Serve already gave."""
    return str(getattr(value, "value", value))


def _root_cause(exc: BaseException) -> BaseException:
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


class RayOperations:
    """:class:`Operations` over the named actors of the pipeline ``app_prefix``.

    Actor handles are looked up on first use and again after a failure, so an API
    started before the pipeline, or one whose coordinator restarted, recovers by itself.
    """

    def __init__(self, app_prefix: str = "sightline", timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.app_prefix = app_prefix
        self.timeout_s = timeout_s
        self._actors: dict[str, Any] = {}

    # ------------------------------------------------------------------ plumbing

    def _actor(self, role: str) -> Any:
        import ray

        if role not in self._actors:
            from actors.supervisor import supervisor_name

            name = {
                "supervisor": supervisor_name(self.app_prefix),
                "coordinator": f"{self.app_prefix}-coordinator",
                "jobs": search_jobs_name(self.app_prefix),
            }[role]
            try:
                self._actors[role] = ray.get_actor(name)
            except ValueError:
                raise PipelineUnavailableError(
                    f"the pipeline is not running (no Ray actor {name!r}); "
                    "start it with `sightline serve --config site.yaml`"
                ) from None
        return self._actors[role]

    def _call(self, role: str, method: str, *args: Any) -> Any:
        import ray

        actor = self._actor(role)
        try:
            return ray.get(getattr(actor, method).remote(*args), timeout=self.timeout_s)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
            self._actors.pop(role, None)
            raise PipelineUnavailableError(f"the pipeline's {role} did not answer: {exc}") from None
        except ray.exceptions.RayTaskError as exc:
            cause = _root_cause(exc)
            if isinstance(cause, ConfigError | KeyError | ValueError):
                raise cause from None
            raise

    # ------------------------------------------------------------------ operations

    def cameras(self) -> list[dict[str, Any]]:
        return self._call("supervisor", "cameras")

    def add_camera(self, camera: dict[str, Any], replace: bool = False) -> dict[str, Any]:
        return self._call("supervisor", "add_camera", camera, replace)

    def remove_camera(self, camera_id: str) -> dict[str, Any]:
        return self._call("supervisor", "remove_camera", camera_id)

    def deployments(self) -> dict[str, Any]:
        from ray import serve

        from serve.deployments import get_model_handles

        status = serve.status()
        apps = {
            name: {
                "status": _name(app.status),
                "deployments": {
                    dep_name: {
                        "status": _name(dep.status),
                        "replicas": {_name(k): v for k, v in dep.replica_states.items()},
                    }
                    for dep_name, dep in app.deployments.items()
                },
            }
            for name, app in status.applications.items()
        }
        batches: dict[str, Any] = {}
        try:
            handles = get_model_handles(self.app_prefix)
            for kind, handle in (("detector", handles.detector), ("embedder", handles.embedder)):
                batches[kind] = handle.stats.remote().result(timeout_s=self.timeout_s)
        except Exception as exc:  # the models may be redeploying; the counts still help
            batches["error"] = f"{type(exc).__name__}: {exc}"[:300]
        return {"applications": apps, "batches": batches}

    def cluster(self) -> dict[str, Any]:
        import ray

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        return {
            "resources": ray.cluster_resources(),
            "available": ray.available_resources(),
            "nodes": [
                {
                    "node_id": n["NodeID"],
                    "address": n.get("NodeManagerAddress"),
                    "resources": n.get("Resources", {}),
                }
                for n in nodes
            ],
        }

    def density_now(self) -> dict[str, dict[str, Any]]:
        return self._call("coordinator", "density")

    def density_alerts(self, since: int = 0) -> list[dict[str, Any]]:
        return self._call("coordinator", "density_alerts", since)

    def add_watch(self, query: SearchQuery, threshold: float | None = None) -> str:
        return self._call("coordinator", "add_watch", query, threshold)

    def remove_watch(self, watch_id: str) -> None:
        self._call("coordinator", "remove_watch", watch_id)

    def watches(self) -> list[dict[str, Any]]:
        return self._call("coordinator", "watches")

    def watch_alerts(self, since: int = 0) -> list[dict[str, Any]]:
        return self._call("coordinator", "watch_alerts", since)

    def submit_job(self, query: SearchQuery, store_root: str, ingest: bool = False) -> str:
        with _ingest_unavailable():
            return self._call("jobs", "submit", query, store_root, ingest)

    def ingest_plan(self, query: SearchQuery, store_root: str) -> dict[str, Any]:
        with _ingest_unavailable():
            return self._call("jobs", "ingest_plan", query, store_root)

    def job_status(self, job_id: str) -> dict[str, Any]:
        return self._call("jobs", "status", job_id)

    def job_results(self, job_id: str) -> Any:
        return self._call("jobs", "results", job_id)

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self._call("jobs", "cancel", job_id)


@contextmanager
def _ingest_unavailable() -> Iterator[None]:
    """A job that cannot ingest for want of a running pipeline is a
    :class:`PipelineUnavailableError` (503), not a bad request."""
    from sightline.search.forensic import IngestUnavailableError

    try:
        yield
    except IngestUnavailableError as exc:
        raise PipelineUnavailableError(str(exc)) from None


def search_jobs_name(app_prefix: str = "sightline") -> str:
    """The Ray actor name of the search-jobs actor of ``app_prefix``'s service."""
    return f"{app_prefix}-search-jobs"


def handle_models(app_prefix: str, embedder_type: str = "builtin") -> tuple[Any, Any, Any]:
    """``(embed, detect, adapter)`` for photo queries through the running model
    applications: reference photos are cropped by the Detector deployment and embedded
    by the Embedder deployment, like camera frames. The photo adapter is the built-in
    one when the embedder is the built-in model (it was fitted to that model's space).

    The handles are made on first use, so the API starts (and serves everything else)
    while the models are down; a photo query then raises
    :class:`PipelineUnavailableError`.
    """
    import numpy as np

    from sightline.search.photo_adapter import PhotoAdapter

    handles: list[Any] = []

    def models() -> Any:
        if not handles:
            from serve.deployments import get_model_handles

            try:
                handles.append(get_model_handles(app_prefix))
            except Exception as exc:  # KeyError, RayServeException: not deployed
                raise PipelineUnavailableError(
                    f"the model applications {app_prefix}-detector/-embedder are not "
                    f"running ({type(exc).__name__}: {exc})"
                ) from None
        return handles[0]

    def embed(crops: list[np.ndarray]) -> np.ndarray:
        return models().embedder.embed.remote(list(crops)).result(timeout_s=CALL_TIMEOUT_S)

    def detect(frames: np.ndarray) -> list[Any]:
        detector = models().detector
        responses = [detector.detect.remote(np.ascontiguousarray(f)) for f in frames]
        return [r.result(timeout_s=CALL_TIMEOUT_S) for r in responses]

    adapter = PhotoAdapter.builtin() if embedder_type == "builtin" else None
    return embed, detect, adapter

"""Map a model's :class:`~sightline.config.ServingConfig` to Ray Serve deployment options.

Our config is validated by pydantic (unknown keys fail); Ray 2.60 silently ignores
autoscaling keys it does not know, so everything handed to Serve is built here from the
validated config, and the few Ray-only knobs a caller may add (``look_back_period_s``,
``upscaling_factor``, ...) are checked against the installed Ray's own field names.

Batching parameters travel as the deployment's ``user_config``
(``{"max_batch_size": int, "batch_wait_timeout_s": float}``): Serve hands them to the
replica's ``reconfigure`` at start and again whenever only they change in a Serve
config file (``serve deploy``), without restarting replicas.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import ray
from ray.serve.config import AutoscalingConfig as RayAutoscalingConfig

from sightline.config import AutoscalingConfig, ServingConfig

__all__ = [
    "BATCH_KEYS",
    "RAY_AUTOSCALING_KEYS",
    "autoscaling_options",
    "batch_user_config",
    "default_max_ongoing_requests",
    "deployment_options",
    "parse_batch_user_config",
]

logger = logging.getLogger(__name__)

BATCH_KEYS = ("max_batch_size", "batch_wait_timeout_s")
# Field names of the installed Ray's autoscaling config: the only keys Serve acts on.
RAY_AUTOSCALING_KEYS = frozenset(RayAutoscalingConfig.model_fields)


def batch_user_config(serving: ServingConfig) -> dict[str, Any]:
    """The ``user_config`` carrying the batch parameters of ``serving``."""
    return {
        "max_batch_size": serving.max_batch_size,
        "batch_wait_timeout_s": serving.batch_wait_timeout_s,
    }


def parse_batch_user_config(user_config: Mapping[str, Any]) -> tuple[int, float]:
    """Validate a batching ``user_config``; return ``(max_batch_size, batch_wait_timeout_s)``.

    Both keys are optional (a missing one keeps :class:`ServingConfig`'s default);
    unknown keys and out-of-range values raise ``ValueError`` naming them, which makes
    Serve reject the update instead of running with a typo.
    """
    if not isinstance(user_config, Mapping):
        raise ValueError(
            f"user_config must be a mapping with keys {list(BATCH_KEYS)}, "
            f"got {type(user_config).__name__}"
        )
    unknown = sorted(set(user_config) - set(BATCH_KEYS))
    if unknown:
        raise ValueError(f"unknown user_config keys {unknown}; known: {list(BATCH_KEYS)}")
    # ServingConfig holds the bounds (1..1024, 0..10 s): reuse them, no second copy here.
    checked = ServingConfig.model_validate(dict(user_config))
    return checked.max_batch_size, checked.batch_wait_timeout_s


def default_max_ongoing_requests(max_batch_size: int) -> int:
    """Requests a replica accepts at once: room for the running batch and the next one.

    Serve never hands a replica more than ``max_ongoing_requests`` requests, so a value
    below ``max_batch_size`` means batches never fill (Serve's default is 5). Twice the
    batch size lets the next batch gather inside the replica while the current one runs
    on the model, so it is full the moment the model frees up.
    """
    return max(2 * max_batch_size, 4)


def autoscaling_options(
    auto: AutoscalingConfig, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Serve's ``autoscaling_config`` dict from our validated config plus Ray-only extras.

    ``overrides`` may set any other field of Ray's ``AutoscalingConfig`` (for example
    ``look_back_period_s``, the metric averaging window, default 30 s, which also delays
    scaling down once load stops); a key Ray does not know raises ``ValueError``.
    """
    options: dict[str, Any] = {
        "min_replicas": auto.min_replicas,
        "max_replicas": auto.max_replicas,
        "target_ongoing_requests": auto.target_ongoing_requests,
        "upscale_delay_s": auto.upscale_delay_s,
        "downscale_delay_s": auto.downscale_delay_s,
        "look_back_period_s": auto.look_back_period_s,
    }
    if auto.initial_replicas is not None:
        options["initial_replicas"] = auto.initial_replicas
    extra = dict(overrides or {})
    unknown = sorted(set(extra) - RAY_AUTOSCALING_KEYS)
    if unknown:
        raise ValueError(
            f"unknown autoscaling keys {unknown} (Ray {ray.__version__} would ignore them); "
            f"known: {sorted(RAY_AUTOSCALING_KEYS)}"
        )
    options.update(extra)
    RayAutoscalingConfig.model_validate(options)  # fail here, not in the Serve controller
    return options


def _is_fixed(auto: AutoscalingConfig) -> bool:
    """True when the replica count cannot change (no autoscaler needed)."""
    return auto.min_replicas == auto.max_replicas


def deployment_options(
    serving: ServingConfig,
    *,
    max_ongoing_requests: int | None = None,
    autoscaling_overrides: Mapping[str, Any] | None = None,
    **serve_options: Any,
) -> dict[str, Any]:
    """Keyword arguments for ``Deployment.options`` from a model's serving config.

    Sets ``ray_actor_options`` (CPUs, GPUs — fractions share one device), the replica
    count (fixed, or an ``autoscaling_config`` when ``max_replicas > min_replicas``),
    ``max_ongoing_requests`` (default: :func:`default_max_ongoing_requests`) and the
    batching ``user_config``. ``serve_options`` are passed through to Serve as they are
    (``max_queued_requests``, ``graceful_shutdown_timeout_s``, ``health_check_period_s``...).

    Raises ``ValueError`` when ``max_ongoing_requests`` is below ``max_batch_size``:
    such a replica could never form a full batch.
    """
    batch = serving.max_batch_size
    if max_ongoing_requests is None:
        max_ongoing_requests = default_max_ongoing_requests(batch)
    elif max_ongoing_requests < batch:
        raise ValueError(
            f"max_ongoing_requests {max_ongoing_requests} is below max_batch_size {batch}: "
            "Serve never gives a replica more requests than that, so batches would never "
            f"fill; raise it to at least {batch} (default {default_max_ongoing_requests(batch)})"
        )
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": serving.num_cpus, "num_gpus": serving.num_gpus},
        "max_ongoing_requests": max_ongoing_requests,
        "user_config": batch_user_config(serving),
    }
    auto = serving.autoscaling
    if _is_fixed(auto) and not autoscaling_overrides:
        options["num_replicas"] = auto.max_replicas
    else:
        options["autoscaling_config"] = autoscaling_options(auto, autoscaling_overrides)
        if auto.target_ongoing_requests < batch:
            # Not an error (it is the latency-versus-throughput dial), but say so: the
            # autoscaler adds replicas while each one still runs batches smaller than asked.
            logger.info(
                "target_ongoing_requests %s < max_batch_size %s: autoscaling scales out "
                "before batches fill (lower latency, smaller batches)",
                auto.target_ongoing_requests,
                batch,
            )
    options.update(serve_options)
    return options

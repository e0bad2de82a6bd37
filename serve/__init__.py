"""Ray Serve deployments: model replicas (detector, embedder) and the FastAPI ingress.

Model replicas (:mod:`serve.deployments`): ``Detector`` and ``Embedder`` wrap any backend
built from a model config, batch requests from many callers with ``@serve.batch``, and
report their batching in ``stats()``. :func:`deploy_models` runs them as two applications
(``<prefix>-detector``, ``<prefix>-embedder``) and returns their handles;
:mod:`serve.options` maps a model's ``serving`` config to Serve deployment options
(resources, fractional GPUs, autoscaling, batch parameters as ``user_config``).
``serve.bench.bench_serve`` measures what batching buys (``sightline bench serve``).

The HTTP API (:mod:`serve.api`): :func:`serve.api.create_app` builds the FastAPI app
(authentication, roles, audit, searches, tracks, density); ``build_api_deployment`` wraps
it as a Serve ingress. Everything is imported on demand (``from serve.api import create_app``).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Detector": "serve.deployments",
    "Embedder": "serve.deployments",
    "ModelHandles": "serve.deployments",
    "app_names": "serve.deployments",
    "build_detector_app": "serve.deployments",
    "build_embedder_app": "serve.deployments",
    "build_model_apps": "serve.deployments",
    "delete_models": "serve.deployments",
    "deploy_models": "serve.deployments",
    "get_model_handles": "serve.deployments",
    "deployment_options": "serve.options",
}

__all__ = [  # noqa: RUF022 (the order of _EXPORTS)
    "Detector",
    "Embedder",
    "ModelHandles",
    "app_names",
    "build_detector_app",
    "build_embedder_app",
    "build_model_apps",
    "delete_models",
    "deploy_models",
    "get_model_handles",
    "deployment_options",
]


def __getattr__(name: str) -> Any:
    # Imported on first use: Ray and torch take seconds to import, and the command line
    # imports this package's command modules for every command.
    if name not in _EXPORTS:
        raise AttributeError(f"module 'serve' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)

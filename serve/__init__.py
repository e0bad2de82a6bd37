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
it as a Serve ingress. It is imported on demand (``from serve.api import create_app``).
"""

from serve.deployments import (
    Detector,
    Embedder,
    ModelHandles,
    app_names,
    build_detector_app,
    build_embedder_app,
    build_model_apps,
    delete_models,
    deploy_models,
    get_model_handles,
)
from serve.options import deployment_options

__all__ = [
    "Detector",
    "Embedder",
    "ModelHandles",
    "app_names",
    "build_detector_app",
    "build_embedder_app",
    "build_model_apps",
    "delete_models",
    "deploy_models",
    "deployment_options",
    "get_model_handles",
]

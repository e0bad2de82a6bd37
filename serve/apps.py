"""Serve application builders named by the Serve config file (``serve deploy``).

``cluster/serve-config.yaml`` (written by ``sightline cluster serve-config``) names these
as ``import_path`` with ``args: {config: <site config path>}``:

- ``serve.apps:detector_app``: the Detector deployment of the site's ``models.detector``;
- ``serve.apps:embedder_app``: the Embedder deployment of ``models.embedder``;
- ``serve.apps:api_app``: the HTTP API ingress (:func:`serve.api.build_api_deployment`).

Each builder loads the site config from ``args["config"]`` on the node where Serve
builds the application, so the path must exist there (and on every node that runs a
replica): bake the config into the image, mount it, or copy it with the cluster
launcher's ``file_mounts``. The deployment options in code come from the same site
config as the file's, so the two agree; the file's ``deployments`` entries (replicas,
``user_config``, ``ray_actor_options`` with the custom resources) override them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray import serve

from serve.deployments import build_detector_app, build_embedder_app
from sightline.config import SiteConfig, load_site_config

__all__ = ["api_app", "detector_app", "embedder_app", "site_from_args"]


def site_from_args(args: Any) -> SiteConfig:
    """The site config named by ``args["config"]``.

    Raises ``ValueError`` naming ``config`` when ``args`` is not a mapping or lacks it,
    and :class:`~sightline.config.ConfigError` (a ``ValueError``) when the file is
    missing or invalid.
    """
    if not isinstance(args, Mapping):
        raise ValueError(
            "application args must be a mapping with 'config' (the site config path), "
            f"got {type(args).__name__}"
        )
    path = args.get("config")
    if not isinstance(path, str) or not path:
        raise ValueError(
            "application args need 'config': the path of the site config YAML on the "
            f"cluster's nodes (e.g. args: {{config: /opt/sightline/site.yaml}}), got {path!r}"
        )
    return load_site_config(path)


def detector_app(args: dict[str, Any]) -> serve.Application:
    """Serve builder: the Detector application of the site in ``args["config"]``."""
    site = site_from_args(args)
    return build_detector_app(site.models.detector)


def embedder_app(args: dict[str, Any]) -> serve.Application:
    """Serve builder: the Embedder application of the site in ``args["config"]``."""
    site = site_from_args(args)
    return build_embedder_app(site.models.embedder)


def api_app(args: dict[str, Any]) -> serve.Application:
    """Serve builder: the HTTP API ingress over the site in ``args["config"]``.

    Its live routes and photo searches reach the pipeline and model applications named
    ``args["prefix"]`` (default ``sightline``), as ``sightline serve`` runs them.
    """
    from serve.api import build_api_deployment

    site = site_from_args(args)
    prefix = args.get("prefix", "sightline")
    if not isinstance(prefix, str) or not prefix:
        raise ValueError(f"application args 'prefix': a non-empty name, got {prefix!r}")
    return build_api_deployment(site, app_prefix=prefix).bind()

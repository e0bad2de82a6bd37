"""Change a site's cameras at run time: a new :class:`SiteConfig` with a camera added,
replaced or removed, validated exactly like the site file.

The running pipeline keeps its site config in memory; an operator adding a camera sends
the camera's settings (as in the ``cameras:`` list of ``site.yaml``). Validating the
whole site again, rather than the camera alone, applies the site's ``camera_defaults``
and the same checks as loading the file (unique ids, calibration inside the frame,
topology links naming known cameras), and errors name the field the same way:
``cameras[3] (id=gate).fps: ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sightline.config import ConfigError, SiteConfig, parse_site_config

__all__ = ["with_camera", "without_camera"]


def _site_data(site: SiteConfig) -> dict[str, Any]:
    # Camera defaults were merged into each camera when the site was loaded; dropping
    # them keeps the dumped cameras' values and applies the defaults only to new cameras.
    data = site.model_dump(mode="json", exclude_none=True)
    data["camera_defaults"] = site.camera_defaults.model_dump(mode="json", exclude_none=True)
    return data


def with_camera(
    site: SiteConfig,
    camera: dict[str, Any],
    *,
    replace: bool = False,
    base_dir: str | Path | None = None,
) -> SiteConfig:
    """``site`` with ``camera`` (a mapping as in ``site.yaml``) added, or with the camera of
    the same id replaced when ``replace``.

    A relative ``source`` is resolved against ``base_dir`` (the site file's folder).
    Raises :class:`ConfigError` naming the field for an invalid camera or a duplicate id
    (without ``replace``), and ``KeyError`` for an unknown id (with ``replace``).
    """
    if not isinstance(camera, dict):
        raise ConfigError(f"camera: expected a mapping of settings, got {type(camera).__name__}")
    camera_id = camera.get("id")
    known = [c.id for c in site.cameras]
    if replace and camera_id not in known:
        raise KeyError(f"camera id {camera_id!r}: no such camera to change; known: {known}")
    if not replace and camera_id in known:
        raise ConfigError(f"camera id {camera_id!r}: a camera with this id already exists")
    data = _site_data(site)
    merged = {**data["camera_defaults"], **camera}
    if replace:  # the camera keeps its place in the list
        data["cameras"] = [merged if c["id"] == camera_id else c for c in data["cameras"]]
    else:
        data["cameras"] = [*data["cameras"], merged]
    return parse_site_config(data, source="camera change", base_dir=base_dir)


def without_camera(site: SiteConfig, camera_id: str) -> SiteConfig:
    """``site`` without camera ``camera_id``: ``KeyError`` if it is unknown,
    :class:`ConfigError` if it is the last camera or still named by a topology link."""
    known = [c.id for c in site.cameras]
    if camera_id not in known:
        raise KeyError(f"camera id {camera_id!r}: no such camera; known: {known}")
    if len(known) == 1:
        raise ConfigError(f"camera id {camera_id!r}: the last camera of a site cannot be removed")
    data = _site_data(site)
    data["cameras"] = [c for c in data["cameras"] if c["id"] != camera_id]
    return parse_site_config(data, source="camera removal")

"""Where Sightline's actors and replicas run on a cluster: custom Ray resources per role.

Nodes declare what they are for with custom resources (``ray start --resources``, the
``resources`` of a node type in the cluster launcher YAML, ``rayStartParams.resources``
in KubeRay); each role asks for a little of its resource, so Ray places it only on
nodes that declare it, and the autoscaler adds a node of a type that declares it when
none has room. No hostnames anywhere: a node's role is what it declares.

=======================  ==============================  ==============================
role                     resource (node declares)        request per actor / replica
=======================  ==============================  ==============================
camera actor             ``sightline_camera`` (CPU       1 unit: a node declaring 100
                         worker nodes, e.g. 100 each)    runs at most 100 cameras
model replica            ``sightline_model`` (GPU        1 unit (plus its GPUs): the
                         worker nodes, e.g. 100 each)    GPUs are the real limit
coordinator              ``sightline_coordinator``       1 unit: the head (or a
                         (the head, 1)                   dedicated node) declares 1
=======================  ==============================  ==============================

Camera actors never land on GPU nodes because GPU node types do not declare
``sightline_camera``; an operator who wants cameras there too declares it on the GPU
node type as well. This module imports no Ray: :func:`placement_options` takes the
cluster's resources (``ray.cluster_resources()``) as a plain dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

__all__ = [
    "CAMERA_RESOURCE",
    "COORDINATOR_RESOURCE",
    "MODEL_RESOURCE",
    "NODE_DECLARES",
    "RESOURCE_BY_ROLE",
    "ROLES",
    "ROLE_REQUEST",
    "Role",
    "declared_resources",
    "placement_options",
    "resource_request",
]

CAMERA_RESOURCE = "sightline_camera"
"""Declared by CPU worker nodes that run camera actors (decode, track); e.g. 100 per node.

Each camera actor asks for one unit, so the amount a node declares caps its cameras."""

MODEL_RESOURCE = "sightline_model"
"""Declared by GPU worker nodes that run the detector and embedder replicas; e.g. 100.

Each replica asks for one unit besides its ``num_gpus``: the GPUs limit how many fit,
this resource keeps replicas (including CPU-only ones) off the camera nodes."""

COORDINATOR_RESOURCE = "sightline_coordinator"
"""Declared (1 unit) by the node that runs the site's coordinator: the head or a
dedicated node. The coordinator asks for the one unit, so there is exactly one place
for it."""

Role = Literal["camera", "model", "coordinator"]
ROLES: tuple[str, ...] = ("camera", "model", "coordinator")

RESOURCE_BY_ROLE: dict[str, str] = {
    "camera": CAMERA_RESOURCE,
    "model": MODEL_RESOURCE,
    "coordinator": COORDINATOR_RESOURCE,
}
"""The custom resource each role asks for."""

ROLE_REQUEST: dict[str, float] = {"camera": 1.0, "model": 1.0, "coordinator": 1.0}
"""Units of its resource one actor or replica of each role asks for."""

NODE_DECLARES: dict[str, int] = {
    CAMERA_RESOURCE: 100,
    MODEL_RESOURCE: 100,
    COORDINATOR_RESOURCE: 1,
}
"""What the shipped cluster configs declare per node (integers: the cluster launcher
accepts only whole units)."""


def _check_role(role: str) -> str:
    if role not in RESOURCE_BY_ROLE:
        raise ValueError(f"unknown placement role {role!r}; known: {list(ROLES)}")
    return RESOURCE_BY_ROLE[role]


def resource_request(role: Role | str) -> dict[str, float]:
    """The custom resources one actor or replica of ``role`` asks for, e.g.
    ``{"sightline_camera": 1.0}``; ``ValueError`` naming the known roles otherwise."""
    name = _check_role(role)
    return {name: ROLE_REQUEST[role]}


def placement_options(role: Role | str, cluster_resources: Mapping[str, Any]) -> dict[str, Any]:
    """Ray options placing an actor of ``role``: ``{"resources": {...}}`` or ``{}``.

    ``cluster_resources`` is what the cluster declares (``ray.cluster_resources()``, or
    :func:`declared_resources` of the autoscaler config when the nodes of that role
    scale from zero and are not up yet). When the role's resource is declared, the
    request is returned, for ``Actor.options(**placement_options(...))``; when it is
    not (one machine, a plain ``ray.init()``), ``{}``, so the actor runs anywhere and
    one-machine runs keep working. A declared amount of 0 counts as not declared.
    """
    name = _check_role(role)
    try:
        declared = float(cluster_resources.get(name, 0) or 0)
    except (TypeError, ValueError):
        raise ValueError(
            f"cluster resource {name!r} must be a number, got {cluster_resources.get(name)!r}"
        ) from None
    if declared <= 0:
        return {}
    return {"resources": resource_request(role)}


def declared_resources(cluster_config: Mapping[str, Any]) -> dict[str, float]:
    """Every resource some node type of a cluster launcher config declares, with the
    largest amount one node of that type declares (a plain dict, no Ray).

    Pass it to :func:`placement_options` on an autoscaling cluster whose camera or GPU
    nodes start at zero workers: asking for the resource is what makes the autoscaler
    add such a node.
    """
    out: dict[str, float] = {}
    node_types = cluster_config.get("available_node_types") or {}
    for spec in node_types.values():
        for name, amount in ((spec or {}).get("resources") or {}).items():
            out[name] = max(out.get(name, 0.0), float(amount))
    return out

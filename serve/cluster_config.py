"""Cluster files from a site config, and checks that cluster files agree with it.

:func:`serve_config` builds the Serve config file (``serve deploy``-able, and the
``serveConfigV2`` of a KubeRay ``RayService``) of a site: three applications,
``<prefix>-detector``, ``<prefix>-embedder`` (handles only, no HTTP route) and
``<prefix>-api`` (the HTTP API on ``/``), whose deployment options come from
:func:`serve.options.deployment_options`, the same function :func:`serve.deployments.deploy_models`
uses, so a file and a ``sightline run`` of one site config ask Serve for the same
replicas, batching and GPUs. The model replicas also ask for
:data:`~sightline.placement.MODEL_RESOURCE`, so they land on the GPU node types.

:func:`check_cluster_file` validates one of the files under ``cluster/`` (a Ray cluster
launcher YAML, a ``fake_multinode`` one, a KubeRay ``RayService``, a Serve config)
against Ray's own schemas and against a site config: node types declare the custom
resources of :mod:`sightline.placement`, camera nodes have no GPUs, GPU nodes fit a
model replica, the workers at their maximum hold every enabled camera and every
replica at ``max_replicas``, and the Serve config is what :func:`serve_config` makes of
the site. Every problem is one line naming the file and the setting.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import ray
import ray.autoscaler
import yaml
from pydantic import BaseModel, ValidationError
from ray.serve.config import AutoscalingConfig as RayAutoscalingConfig
from ray.serve.schema import (
    DeploymentSchema,
    HTTPOptionsSchema,
    RayActorOptionsSchema,
    ServeApplicationSchema,
    ServeDeploySchema,
)

from serve.deployments import DETECTOR_DEPLOYMENT, EMBEDDER_DEPLOYMENT, app_names
from serve.options import deployment_options
from sightline.config import ServingConfig, SiteConfig
from sightline.placement import (
    CAMERA_RESOURCE,
    COORDINATOR_RESOURCE,
    MODEL_RESOURCE,
    ROLE_REQUEST,
    resource_request,
)

__all__ = [
    "API_DEPLOYMENT",
    "FAKE_MULTINODE_FLAGS",
    "NodeGroup",
    "check_cluster_file",
    "check_cluster_launcher",
    "check_cluster_path",
    "check_rayservice",
    "check_serve_config",
    "cluster_file_kind",
    "dump_serve_config",
    "kuberay_groups",
    "launcher_groups",
    "parse_kuberay_resources",
    "serve_config",
    "serve_schema_problems",
]

API_DEPLOYMENT = "SightlineAPI"
"""Name of the HTTP API deployment (:func:`serve.api.build_api_deployment`'s default)."""

FAKE_MULTINODE_FLAGS = {
    "use_node_id_as_ip": True,
    "disable_node_updaters": True,
    "disable_launch_config_check": True,
}
"""Provider flags a ``fake_multinode`` config needs to run on one machine (Ray 2.60)."""

_FAKE_HEAD_NODE_TYPE = "ray.head.default"  # the only head type fake_multinode knows
_ROLE_OF = {CAMERA_RESOURCE: "camera", MODEL_RESOURCE: "model", COORDINATOR_RESOURCE: "coordinator"}

# --------------------------------------------------------------------------- Serve config


def _model_deployment(name: str, serving: ServingConfig) -> dict[str, Any]:
    """One model deployment's entry: the options ``deploy_models`` uses, plus the resource."""
    options = deployment_options(serving)
    entry: dict[str, Any] = {"name": name}
    for key in ("num_replicas", "autoscaling_config"):
        if key in options:
            entry[key] = options[key]
    entry["max_ongoing_requests"] = options["max_ongoing_requests"]
    entry["user_config"] = dict(options["user_config"])
    actor = dict(options["ray_actor_options"])
    actor["resources"] = resource_request("model")
    entry["ray_actor_options"] = actor
    return entry


def serve_config(
    site: SiteConfig,
    site_path: str,
    *,
    app_prefix: str = "sightline",
    http_host: str = "0.0.0.0",
    http_port: int = 8000,
) -> dict[str, Any]:
    """The Serve config file (a dict) that runs ``site``'s models and HTTP API.

    ``site_path`` is the site config's path as the cluster's nodes see it: each
    application's builder (:mod:`serve.apps`) loads it from ``args.config``. The result
    validates with Ray's ``ServeDeploySchema``; write it with :func:`dump_serve_config`.
    """
    if not site_path:
        raise ValueError("site_path must name the site config file on the cluster's nodes")
    det_app, emb_app = app_names(app_prefix)
    args = {"config": str(site_path)}
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": http_host, "port": int(http_port)},
        "applications": [
            {
                "name": det_app,
                "import_path": "serve.apps:detector_app",
                "route_prefix": None,
                "args": dict(args),
                "deployments": [
                    _model_deployment(DETECTOR_DEPLOYMENT, site.models.detector.serving)
                ],
            },
            {
                "name": emb_app,
                "import_path": "serve.apps:embedder_app",
                "route_prefix": None,
                "args": dict(args),
                "deployments": [
                    _model_deployment(EMBEDDER_DEPLOYMENT, site.models.embedder.serving)
                ],
            },
            {
                "name": f"{app_prefix}-api",
                "import_path": "serve.apps:api_app",
                "route_prefix": "/",
                "args": dict(args),
                # One replica: search results are kept in the replica that ran them.
                "deployments": [{"name": API_DEPLOYMENT, "num_replicas": 1}],
            },
        ],
    }


def dump_serve_config(config: Mapping[str, Any], header: str | None = None) -> str:
    """``config`` as YAML (keys in the order built), after ``header`` as comment lines."""
    text = yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False, width=100)
    if not header:
        return text
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comments + text


# --------------------------------------------------------------------------- Serve checks


def _field_names(model: type[BaseModel]) -> set[str]:
    names = set(model.model_fields)
    names.update(f.alias for f in model.model_fields.values() if f.alias)
    return names


def _unknown_keys(data: Any, model: type[BaseModel], where: str) -> list[str]:
    if not isinstance(data, Mapping):
        return []
    unknown = sorted(set(data) - _field_names(model))
    if not unknown:
        return []
    return [f"{where}: unknown keys {unknown} (Ray {ray.__version__} would ignore them)"]


def _deployment_unknown_keys(dep: Any, where: str) -> list[str]:
    problems = _unknown_keys(dep, DeploymentSchema, where)
    if isinstance(dep, Mapping):
        problems += _unknown_keys(
            dep.get("ray_actor_options"), RayActorOptionsSchema, f"{where}.ray_actor_options"
        )
        problems += _unknown_keys(
            dep.get("autoscaling_config"), RayAutoscalingConfig, f"{where}.autoscaling_config"
        )
    return problems


def serve_schema_problems(doc: Any, source: str = "<serve config>") -> list[str]:
    """Problems of a Serve config file by Ray's ``ServeDeploySchema``, plus unknown keys.

    The schema ignores keys it does not know (a typo such as ``num_replica`` would
    silently do nothing), so those are reported here too.
    """
    if not isinstance(doc, Mapping):
        return [f"{source}: a Serve config must be a mapping, got {type(doc).__name__}"]
    problems: list[str] = []
    try:
        ServeDeploySchema.model_validate(dict(doc))
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            path = ".".join(str(p) for p in err["loc"]) or "(top level)"
            problems.append(f"{source}: {path}: {err['msg']}")
    problems += _unknown_keys(doc, ServeDeploySchema, source)
    problems += _unknown_keys(doc.get("http_options"), HTTPOptionsSchema, f"{source}: http_options")
    apps = doc.get("applications")
    for i, app in enumerate(apps if isinstance(apps, list) else []):
        name = app.get("name", i) if isinstance(app, Mapping) else i
        where = f"{source}: applications[{name}]"
        problems += _unknown_keys(app, ServeApplicationSchema, where)
        deps = app.get("deployments") if isinstance(app, Mapping) else None
        for j, dep in enumerate(deps if isinstance(deps, list) else []):
            dname = dep.get("name", j) if isinstance(dep, Mapping) else j
            problems += _deployment_unknown_keys(dep, f"{where}.deployments[{dname}]")
    return problems


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-12)
    return expected == actual


def _diff(expected: Any, actual: Any, where: str) -> list[str]:
    """Where ``actual`` departs from ``expected`` (keys only ``actual`` has are fine)."""
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return [f"{where}: expected a mapping, got {actual!r}"]
        out: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                out.append(f"{where}.{key}: missing (the site config gives {value!r})")
            else:
                out += _diff(value, actual[key], f"{where}.{key}")
        return out
    if not _same(expected, actual):
        return [f"{where}: {actual!r} in the file, {expected!r} from the site config"]
    return []


def _by_name(items: Any) -> dict[str, Any]:
    if not isinstance(items, list):
        return {}
    return {str(x.get("name")): x for x in items if isinstance(x, Mapping)}


def _infer_prefix(apps: Mapping[str, Any]) -> str | None:
    for name in apps:
        if name.endswith("-detector"):
            return name.removesuffix("-detector")
    return None


def check_serve_config(doc: Any, site: SiteConfig, source: str = "<serve config>") -> list[str]:
    """Problems of a Serve config: Ray's schema, then agreement with ``site``.

    The file's own site path (``args.config``), application prefix, host and port are
    kept; everything :func:`serve_config` derives from the site must match.
    """
    problems = serve_schema_problems(doc, source)
    if not isinstance(doc, Mapping):
        return problems
    apps = _by_name(doc.get("applications"))
    prefix = _infer_prefix(apps)
    if prefix is None:
        return [*problems, f"{source}: applications: no '<prefix>-detector' application"]
    args = apps[f"{prefix}-detector"].get("args")
    site_path = args.get("config") if isinstance(args, Mapping) else None
    if not isinstance(site_path, str) or not site_path:
        return [*problems, f"{source}: applications[{prefix}-detector].args.config: missing"]
    http = doc.get("http_options") if isinstance(doc.get("http_options"), Mapping) else {}
    expected = serve_config(
        site,
        site_path,
        app_prefix=prefix,
        http_host=http.get("host", "0.0.0.0"),
        http_port=http.get("port", 8000),
    )
    for app in expected["applications"]:
        problems += _app_drift(app, apps.get(app["name"]), f"{source}: applications[{app['name']}]")
    return problems


def _app_drift(app: Mapping[str, Any], actual: Any, where: str) -> list[str]:
    """Where one application of a file departs from the generated ``app``."""
    if not isinstance(actual, Mapping):
        return [f"{where}: missing"]
    problems = []
    for key in ("import_path", "route_prefix", "args"):
        problems += _diff(app[key], actual.get(key), f"{where}.{key}")
    deps = _by_name(actual.get("deployments"))
    for dep in app["deployments"]:
        dwhere = f"{where}.deployments[{dep['name']}]"
        have = deps.get(dep["name"])
        if have is None:
            problems.append(f"{dwhere}: missing")
            continue
        problems += _diff(dep, have, dwhere)
        for other in ("num_replicas", "autoscaling_config"):
            if other not in dep and have.get(other) is not None:
                gives = "autoscaling" if other == "num_replicas" else "a fixed count"
                problems.append(
                    f"{dwhere}.{other}: set in the file, but the site config gives {gives}"
                )
    return problems


# --------------------------------------------------------------------------- node groups


class NodeGroup(dict):
    """One node type (launcher) or worker group (KubeRay), normalised for the checks:
    ``name``, ``head``, ``min``, ``max`` (workers) and ``resources`` (CPU, GPU, custom)."""

    @property
    def gpus(self) -> float:
        """GPUs one node of this group declares."""
        return float(self["resources"].get("GPU", 0) or 0)

    def declares(self, resource: str) -> float:
        """Units of ``resource`` one node declares (0 if none)."""
        return float(self["resources"].get(resource, 0) or 0)


def _int_or(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def launcher_groups(doc: Mapping[str, Any]) -> list[NodeGroup]:
    """The node types of a cluster launcher config (the head with ``max`` 1)."""
    head = doc.get("head_node_type")
    groups = []
    for name, raw in (doc.get("available_node_types") or {}).items():
        spec = raw if isinstance(raw, Mapping) else {}
        is_head = name == head
        groups.append(
            NodeGroup(
                name=name,
                head=is_head,
                min=1 if is_head else _int_or(spec.get("min_workers", 0), 0),
                max=1 if is_head else _int_or(spec.get("max_workers", 0), 0),
                resources=dict(spec.get("resources") or {}),
            )
        )
    return groups


def parse_kuberay_resources(value: Any) -> dict[str, float]:
    """``rayStartParams.resources`` of KubeRay (``'"{\\"name\\": 1}"'``) as a dict.

    KubeRay passes the string to ``ray start --resources`` through a shell, so the JSON
    is quoted and its quotes escaped; plain JSON is accepted too.
    """
    if value is None:
        return {}
    text = str(value).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1].replace('\\"', '"')
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"resources {value!r} is not a JSON object: {exc.msg}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"resources {value!r} is not a JSON object")
    return {str(k): float(v) for k, v in parsed.items()}


_K8S_CPU = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")


def _k8s_cpu(value: Any) -> float | None:
    match = _K8S_CPU.match(str(value).strip()) if value is not None else None
    if not match:
        return None
    number = float(match.group(1))
    return number / 1000 if match.group(2) else number


def _container_limits(group: Mapping[str, Any]) -> Mapping[str, Any]:
    try:
        container = group["template"]["spec"]["containers"][0]
    except (KeyError, IndexError, TypeError):
        return {}
    resources = container.get("resources") or {}
    return resources.get("limits") or resources.get("requests") or {}


def _kuberay_group(spec: Mapping[str, Any], name: str, head: bool) -> NodeGroup:
    params = spec.get("rayStartParams") or {}
    try:
        resources = parse_kuberay_resources(params.get("resources"))
    except ValueError:  # reported by _kuberay_params_problems
        resources = {}
    limits = _container_limits(spec)
    cpu = params.get("num-cpus", limits.get("cpu"))
    gpu = params.get("num-gpus", limits.get("nvidia.com/gpu", 0))
    if _k8s_cpu(cpu) is not None:
        resources["CPU"] = _k8s_cpu(cpu)  # type: ignore[assignment]
    resources["GPU"] = float(gpu or 0)
    return NodeGroup(
        name=name,
        head=head,
        min=1 if head else _int_or(spec.get("minReplicas", 0), 0),
        max=1 if head else _int_or(spec.get("maxReplicas", 0), 0),
        resources=resources,
    )


def kuberay_groups(cluster: Mapping[str, Any]) -> list[NodeGroup]:
    """The head group and worker groups of a ``rayClusterConfig`` (or RayCluster spec)."""
    groups = [_kuberay_group(cluster.get("headGroupSpec") or {}, "head", True)]
    for i, raw in enumerate(cluster.get("workerGroupSpecs") or []):
        spec = raw if isinstance(raw, Mapping) else {}
        groups.append(_kuberay_group(spec, str(spec.get("groupName", i)), False))
    return groups


def _role_problems(groups: list[NodeGroup], where: str) -> list[str]:
    """Which nodes do what: the placement rules of :mod:`sightline.placement`."""
    problems = []
    for g in groups:
        gw = f"{where}[{g['name']}]"
        if g.declares(CAMERA_RESOURCE) and g.gpus > 0:
            problems.append(
                f"{gw}: declares {CAMERA_RESOURCE} and {g.gpus:g} GPUs: camera actors belong "
                "on CPU nodes (declare it on the GPU type only on purpose, and drop this check)"
            )
        if g.gpus > 0 and not g.declares(MODEL_RESOURCE):
            problems.append(
                f"{gw}: has {g.gpus:g} GPUs but does not declare {MODEL_RESOURCE}: no model "
                "replica would be placed there"
            )
        if not g["head"] and g["min"] > g["max"]:
            problems.append(f"{gw}: min workers {g['min']} exceed max workers {g['max']}")
        for res in (CAMERA_RESOURCE, MODEL_RESOURCE, COORDINATOR_RESOURCE):
            amount = g.declares(res)
            if 0 < amount < ROLE_REQUEST[_ROLE_OF[res]]:
                problems.append(f"{gw}: declares {amount:g} {res}, less than one actor needs")
    if not any(g.declares(CAMERA_RESOURCE) for g in groups):
        problems.append(f"{where}: no node type declares {CAMERA_RESOURCE} (camera actors)")
    if not any(g.declares(MODEL_RESOURCE) for g in groups):
        problems.append(f"{where}: no node type declares {MODEL_RESOURCE} (model replicas)")
    always_up = [g for g in groups if g.declares(COORDINATOR_RESOURCE) and g["min"] >= 1]
    if not always_up:
        problems.append(
            f"{where}: neither the head nor a node type with min workers >= 1 declares "
            f"{COORDINATOR_RESOURCE} (the coordinator)"
        )
    return problems


def _capacity(groups: Iterable[NodeGroup], resource: str) -> float:
    """Units of ``resource`` the cluster has with every group at its maximum."""
    return sum(g["max"] * g.declares(resource) for g in groups)


def _site_problems(groups: list[NodeGroup], site: SiteConfig, where: str) -> list[str]:
    """Does the cluster at its maximum hold the site: cameras, replicas, GPUs?"""
    problems = []
    cameras = sum(1 for c in site.cameras if c.enabled)
    need = cameras * ROLE_REQUEST["camera"]
    have = _capacity(groups, CAMERA_RESOURCE)
    if have < need:
        problems.append(
            f"{where}: room for {have:g} camera actors ({CAMERA_RESOURCE} x max workers), "
            f"the site has {cameras} enabled cameras; raise max workers of the camera nodes"
        )
    model_groups = [g for g in groups if g.declares(MODEL_RESOURCE)]
    replicas = gpus = 0.0
    for kind, model in (("detector", site.models.detector), ("embedder", site.models.embedder)):
        serving = model.serving
        most = serving.autoscaling.max_replicas
        replicas += most * ROLE_REQUEST["model"]
        gpus += most * serving.num_gpus
        fits = [
            g
            for g in model_groups
            if g.gpus >= serving.num_gpus
            and ("CPU" not in g["resources"] or float(g["resources"]["CPU"]) >= serving.num_cpus)
        ]
        if model_groups and not fits:
            problems.append(
                f"{where}: no node type declaring {MODEL_RESOURCE} fits one {kind} replica "
                f"({serving.num_gpus:g} GPUs, {serving.num_cpus:g} CPUs per replica)"
            )
    have_gpus = sum(g["max"] * g.gpus for g in model_groups)
    if gpus > have_gpus:
        problems.append(
            f"{where}: the models at max_replicas need {gpus:g} GPUs, the {MODEL_RESOURCE} "
            f"nodes at max workers have {have_gpus:g}; raise their max workers or lower "
            "max_replicas / num_gpus in the site config"
        )
    if replicas > _capacity(groups, MODEL_RESOURCE):
        problems.append(
            f"{where}: room for {_capacity(groups, MODEL_RESOURCE):g} model replicas "
            f"({MODEL_RESOURCE} x max workers), the models at max_replicas need {replicas:g}"
        )
    return problems


# --------------------------------------------------------------------------- launcher


def _ray_launcher_schema() -> dict[str, Any]:
    path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _launcher_schema_problems(doc: Mapping[str, Any], source: str) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft7Validator(_ray_launcher_schema())
    problems = []
    for err in sorted(validator.iter_errors(dict(doc)), key=lambda e: list(e.path)):
        path = ".".join(str(p) for p in err.path) or "(top level)"
        problems.append(f"{source}: {path}: {err.message} (Ray's cluster schema)")
    return problems


def _launcher_top_problems(doc: Mapping[str, Any], source: str) -> list[str]:
    """Required top-level settings, the idle timeout and the worker totals."""
    problems = [
        f"{source}: {key}: missing"
        for key in ("cluster_name", "max_workers", "idle_timeout_minutes", "head_node_type")
        if key not in doc
    ]
    timeout = doc.get("idle_timeout_minutes")
    if isinstance(timeout, int | float) and not timeout > 0:
        problems.append(f"{source}: idle_timeout_minutes: must be > 0, got {timeout}")
    types = doc.get("available_node_types") or {}
    if doc.get("head_node_type") not in types:
        problems.append(
            f"{source}: head_node_type {doc.get('head_node_type')!r} is not one of "
            f"available_node_types {sorted(types)}"
        )
    cap = doc.get("max_workers")
    mins = sum(g["min"] for g in launcher_groups(doc) if not g["head"])
    if isinstance(cap, int) and mins > cap:
        problems.append(f"{source}: max_workers {cap} is below the sum of min_workers ({mins})")
    return problems


def _fake_multinode_problems(doc: Mapping[str, Any], source: str) -> list[str]:
    provider = doc.get("provider") if isinstance(doc.get("provider"), Mapping) else {}
    if provider.get("type") != "fake_multinode":
        return []
    problems = [
        f"{source}: provider.{flag}: must be {value} for fake_multinode"
        for flag, value in FAKE_MULTINODE_FLAGS.items()
        if provider.get(flag) is not value
    ]
    if doc.get("head_node_type") != _FAKE_HEAD_NODE_TYPE:
        problems.append(f"{source}: head_node_type: fake_multinode needs {_FAKE_HEAD_NODE_TYPE!r}")
    return problems


def check_cluster_launcher(
    doc: Any, site: SiteConfig | None, source: str = "<cluster.yaml>"
) -> list[str]:
    """Problems of a Ray cluster launcher config (also ``fake_multinode`` ones)."""
    if not isinstance(doc, Mapping):
        return [f"{source}: a cluster config must be a mapping, got {type(doc).__name__}"]
    problems = _launcher_schema_problems(doc, source)
    types = doc.get("available_node_types")
    if not isinstance(types, Mapping) or not types:
        return [*problems, f"{source}: available_node_types: missing or empty"]
    problems += _launcher_top_problems(doc, source)
    problems += _fake_multinode_problems(doc, source)
    groups = launcher_groups(doc)
    problems += _role_problems(groups, f"{source}: available_node_types")
    if site is not None:
        problems += _site_problems(groups, site, f"{source}: available_node_types")
    return problems


# --------------------------------------------------------------------------- KubeRay


def _kuberay_params_problems(cluster: Mapping[str, Any], where: str) -> list[str]:
    problems = []
    specs = [("headGroupSpec", cluster.get("headGroupSpec") or {})]
    specs += [
        (f"workerGroupSpecs[{s.get('groupName', i)}]", s)
        for i, s in enumerate(cluster.get("workerGroupSpecs") or [])
        if isinstance(s, Mapping)
    ]
    for name, spec in specs:
        params = spec.get("rayStartParams") or {}
        for key, value in params.items():
            if not isinstance(value, str):
                problems.append(
                    f"{where}.{name}.rayStartParams.{key}: must be a string, got {value!r}"
                )
        try:
            parse_kuberay_resources(params.get("resources"))
        except ValueError as exc:
            problems.append(f"{where}.{name}.rayStartParams.resources: {exc}")
        try:
            spec["template"]["spec"]["containers"][0]["image"]
        except (KeyError, IndexError, TypeError):
            problems.append(f"{where}.{name}.template.spec.containers[0].image: missing")
    return problems


def _rayservice_head_problems(doc: Mapping[str, Any], source: str) -> list[str]:
    problems = []
    if doc.get("apiVersion") != "ray.io/v1":
        problems.append(
            f"{source}: apiVersion: expected 'ray.io/v1', got {doc.get('apiVersion')!r}"
        )
    if doc.get("kind") != "RayService":
        problems.append(f"{source}: kind: expected 'RayService', got {doc.get('kind')!r}")
    if not (doc.get("metadata") or {}).get("name"):
        problems.append(f"{source}: metadata.name: missing")
    return problems


def _ray_cluster_problems(
    cluster: Mapping[str, Any], site: SiteConfig | None, where: str
) -> list[str]:
    """A RayCluster spec: autoscaling on, Ray version, start params, roles, capacity."""
    problems = []
    if cluster.get("enableInTreeAutoscaling") is not True:
        problems.append(f"{where}.enableInTreeAutoscaling: must be true")
    idle = (cluster.get("autoscalerOptions") or {}).get("idleTimeoutSeconds")
    if not isinstance(idle, int | float) or idle <= 0:
        problems.append(f"{where}.autoscalerOptions.idleTimeoutSeconds: must be > 0, got {idle}")
    if str(cluster.get("rayVersion")) != ray.__version__:
        problems.append(
            f"{where}.rayVersion: {cluster.get('rayVersion')!r}, but Sightline runs Ray "
            f"{ray.__version__}"
        )
    problems += _kuberay_params_problems(cluster, where)
    groups = kuberay_groups(cluster)
    problems += _role_problems(groups, where)
    if site is not None:
        problems += _site_problems(groups, site, where)
    return problems


def _embedded_serve_problems(text: Any, site: SiteConfig | None, where: str) -> list[str]:
    if not isinstance(text, str):
        return [f"{where}: missing (a YAML string)"]
    try:
        serve_doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return [f"{where}: invalid YAML: {exc}"]
    if site is None:
        return serve_schema_problems(serve_doc, where)
    return check_serve_config(serve_doc, site, where)


def check_rayservice(doc: Any, site: SiteConfig | None, source: str = "<rayservice>") -> list[str]:
    """Problems of a KubeRay ``RayService``: structure, autoscaling, groups, Serve config."""
    if not isinstance(doc, Mapping):
        return [f"{source}: a RayService must be a mapping, got {type(doc).__name__}"]
    problems = _rayservice_head_problems(doc, source)
    spec = doc.get("spec") if isinstance(doc.get("spec"), Mapping) else {}
    cluster = spec.get("rayClusterConfig")
    if isinstance(cluster, Mapping):
        problems += _ray_cluster_problems(cluster, site, f"{source}: spec.rayClusterConfig")
    else:
        problems.append(f"{source}: spec.rayClusterConfig: missing")
    problems += _embedded_serve_problems(
        spec.get("serveConfigV2"), site, f"{source}: spec.serveConfigV2"
    )
    return problems


# --------------------------------------------------------------------------- files


def cluster_file_kind(doc: Any) -> str | None:
    """``"rayservice"``, ``"fake_multinode"``, ``"launcher"``, ``"serve"`` or None."""
    if not isinstance(doc, Mapping):
        return None
    if doc.get("kind") == "RayService":
        return "rayservice"
    if "applications" in doc:
        return "serve"
    provider = doc.get("provider")
    if isinstance(provider, Mapping) and "available_node_types" in doc:
        return "fake_multinode" if provider.get("type") == "fake_multinode" else "launcher"
    return None


def check_cluster_file(path: str | Path, site: SiteConfig | None) -> tuple[str | None, list[str]]:
    """``(kind, problems)`` of one cluster YAML file (kind None: not a cluster file)."""
    path = Path(path)
    source = str(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, [f"{source}: no such file"]
    except yaml.YAMLError as exc:
        return None, [f"{source}: invalid YAML: {exc}"]
    kind = cluster_file_kind(doc)
    if kind is None:
        return None, [
            f"{source}: not a cluster file (expected a Ray cluster launcher config, a KubeRay "
            "RayService or a Serve config)"
        ]
    return kind, _CHECKS[kind](doc, site, source)


def _check_serve_file(doc: Any, site: SiteConfig | None, source: str) -> list[str]:
    if site is None:
        return serve_schema_problems(doc, source)
    return check_serve_config(doc, site, source)


_CHECKS = {
    "rayservice": check_rayservice,
    "launcher": check_cluster_launcher,
    "fake_multinode": check_cluster_launcher,
    "serve": _check_serve_file,
}


def check_cluster_path(path: str | Path, site: SiteConfig | None) -> dict[str, dict[str, Any]]:
    """Check one file, or every ``*.yaml`` / ``*.yml`` in a folder: ``{file: {kind, problems}}``."""
    path = Path(path)
    if path.is_dir():
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
        if not files:
            return {str(path): {"kind": None, "problems": [f"{path}: no *.yaml files"]}}
    else:
        files = [path]
    out = {}
    for file in files:
        kind, problems = check_cluster_file(file, site)
        out[str(file)] = {"kind": kind, "problems": problems}
    return out

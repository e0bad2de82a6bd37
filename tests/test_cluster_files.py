"""The files under ``cluster/``: parsed, required fields present, consistent with the
example site config and with :mod:`sightline.placement`. No Ray is started."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import ray
import yaml
from ray.serve.schema import ServeDeploySchema

from serve.cluster_config import (
    FAKE_MULTINODE_FLAGS,
    check_cluster_file,
    check_cluster_launcher,
    check_cluster_path,
    check_rayservice,
    cluster_file_kind,
    kuberay_groups,
    parse_kuberay_resources,
    serve_config,
)
from sightline.config import SiteConfig, load_site_config
from sightline.placement import (
    CAMERA_RESOURCE,
    COORDINATOR_RESOURCE,
    MODEL_RESOURCE,
    NODE_DECLARES,
)

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
EXAMPLE = ROOT / "configs" / "example-site.yaml"
# Where the shipped cluster files put the site configs on every node / pod.
SITE_PATH = "/opt/sightline/configs/example-site.yaml"
LAUNCHERS = ["cluster.yaml", "fake-multinode.yaml"]


@pytest.fixture(scope="module")
def example() -> SiteConfig:
    return load_site_config(EXAMPLE)


def _load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text(encoding="utf-8"))


def test_every_yaml_parses_and_is_a_known_kind():
    kinds = {
        p.name: cluster_file_kind(yaml.safe_load(p.read_text())) for p in CLUSTER.glob("*.y*ml")
    }
    assert kinds == {
        "cluster.yaml": "launcher",
        "fake-multinode.yaml": "fake_multinode",
        "rayservice.yaml": "rayservice",
        "serve-config.yaml": "serve",
    }


def test_all_files_pass_the_checks(example):
    report = check_cluster_path(CLUSTER, example)
    assert {Path(f).name: v["problems"] for f, v in report.items()} == {
        "cluster.yaml": [],
        "fake-multinode.yaml": [],
        "rayservice.yaml": [],
        "serve-config.yaml": [],
    }


# --------------------------------------------------------------------------- launcher YAMLs


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_required_fields(name):
    doc = _load(name)
    for key in (
        "cluster_name",
        "max_workers",
        "idle_timeout_minutes",
        "provider",
        "head_node_type",
    ):
        assert key in doc, key
    assert doc["provider"]["type"]
    assert doc["head_node_type"] in doc["available_node_types"]
    assert 0 < doc["idle_timeout_minutes"] <= 60
    workers = [t for n, t in doc["available_node_types"].items() if n != doc["head_node_type"]]
    assert all(0 <= t["min_workers"] <= t["max_workers"] for t in workers)
    assert sum(t["min_workers"] for t in workers) <= doc["max_workers"]
    assert all(t["max_workers"] <= doc["max_workers"] for t in workers)


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_node_roles(name):
    doc = _load(name)
    types = doc["available_node_types"]
    head = types[doc["head_node_type"]]["resources"]
    assert head[COORDINATOR_RESOURCE] == NODE_DECLARES[COORDINATOR_RESOURCE]
    assert "GPU" not in head
    cpu, gpu = types["cpu-worker"]["resources"], types["gpu-worker"]["resources"]
    assert cpu[CAMERA_RESOURCE] == NODE_DECLARES[CAMERA_RESOURCE]
    assert "GPU" not in cpu and MODEL_RESOURCE not in cpu
    assert gpu["GPU"] >= 1 and gpu[MODEL_RESOURCE] == NODE_DECLARES[MODEL_RESOURCE]
    assert CAMERA_RESOURCE not in gpu and COORDINATOR_RESOURCE not in gpu
    # only our three custom resources, whole units (the launcher wants integers)
    for spec in types.values():
        for key, value in spec["resources"].items():
            assert key in {"CPU", "GPU", "object_store_memory", *NODE_DECLARES}, key
            assert isinstance(value, int), (key, value)
    assert types["cpu-worker"]["min_workers"] >= 1  # cameras never wait for a node


def test_launcher_uses_the_installed_ray(example):
    doc = _load("cluster.yaml")
    images = [
        doc["docker"]["image"],
        doc["available_node_types"]["gpu-worker"]["docker"]["worker_image"],
    ]
    assert all(f"rayproject/ray:{ray.__version__}-" in image for image in images)
    assert images[1].endswith("-gpu") and images[0].endswith("-cpu")
    # the site config path of the shipped Serve config is what file_mounts copies
    assert doc["file_mounts"]["/opt/sightline/configs"] == "./configs"
    assert SITE_PATH.startswith("/opt/sightline/configs/")


def test_fake_multinode_provider_flags():
    doc = _load("fake-multinode.yaml")
    provider = doc["provider"]
    assert provider["type"] == "fake_multinode"
    for flag, value in FAKE_MULTINODE_FLAGS.items():
        assert provider[flag] is value, flag
    assert doc["head_node_type"] == "ray.head.default"
    assert doc["idle_timeout_minutes"] <= 1  # idle fake nodes leave while you watch
    assert doc["available_node_types"]["gpu-worker"]["min_workers"] == 0  # scales from zero


def test_launcher_checks_catch_mistakes(example):
    base = _load("cluster.yaml")

    def problems_after(change) -> str:
        doc = copy.deepcopy(base)
        change(doc)
        return "\n".join(check_cluster_launcher(doc, example, "c.yaml"))

    types = "available_node_types"
    text = problems_after(lambda d: d[types]["cpu-worker"]["resources"].update(GPU=1))
    assert "cpu-worker]: declares sightline_camera and 1 GPUs" in text
    text = problems_after(lambda d: d[types]["gpu-worker"]["resources"].pop(MODEL_RESOURCE))
    assert "gpu-worker]: has 1 GPUs but does not declare sightline_model" in text
    text = problems_after(lambda d: d[types]["gpu-worker"].update(max_workers=1))
    assert "the models at max_replicas need 4 GPUs" in text
    text = problems_after(lambda d: d[types]["cpu-worker"].update(max_workers=0, min_workers=0))
    assert "room for 0 camera actors" in text
    text = problems_after(lambda d: d[types]["head"]["resources"].pop(COORDINATOR_RESOURCE))
    assert COORDINATOR_RESOURCE in text and "coordinator" in text
    text = problems_after(lambda d: d.pop("idle_timeout_minutes"))
    assert "idle_timeout_minutes: missing" in text
    text = problems_after(lambda d: d[types]["cpu-worker"]["resources"].update(CPU=1.5))
    assert "Ray's cluster schema" in text  # launcher resources are whole numbers
    text = problems_after(lambda d: d[types]["gpu-worker"].update(min_workers=5))
    assert "min workers 5 exceed max workers 4" in text
    fake = _load("fake-multinode.yaml")
    fake["provider"]["use_node_id_as_ip"] = False
    assert any("use_node_id_as_ip" in p for p in check_cluster_launcher(fake, example))


# --------------------------------------------------------------------------- RayService


def test_rayservice_structure():
    doc = _load("rayservice.yaml")
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["kind"] == "RayService"
    assert doc["metadata"]["name"] == "sightline"
    cluster = doc["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["autoscalerOptions"]["idleTimeoutSeconds"] > 0
    head = parse_kuberay_resources(cluster["headGroupSpec"]["rayStartParams"]["resources"])
    assert head == {COORDINATOR_RESOURCE: 1.0}
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert set(groups) == {"cpu-worker", "gpu-worker"}
    for group in groups.values():
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())
    gpu = groups["gpu-worker"]
    limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] >= 1
    assert parse_kuberay_resources(gpu["rayStartParams"]["resources"]) == {MODEL_RESOURCE: 100.0}
    cpu = groups["cpu-worker"]
    cpu_limits = cpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in cpu_limits
    assert parse_kuberay_resources(cpu["rayStartParams"]["resources"]) == {CAMERA_RESOURCE: 100.0}
    by_name = {g["name"]: g for g in kuberay_groups(cluster)}
    assert by_name["gpu-worker"].gpus == 1 and by_name["cpu-worker"].gpus == 0


def test_rayservice_mounts_the_site_config_in_every_pod():
    cluster = _load("rayservice.yaml")["spec"]["rayClusterConfig"]
    specs = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for spec in specs:
        mounts = spec["template"]["spec"]["containers"][0]["volumeMounts"]
        assert any(SITE_PATH.startswith(m["mountPath"] + "/") for m in mounts)


def test_rayservice_serve_config_is_the_generated_one(example):
    text = _load("rayservice.yaml")["spec"]["serveConfigV2"]
    assert isinstance(text, str)
    embedded = yaml.safe_load(text)
    ServeDeploySchema.model_validate(embedded)
    assert embedded == serve_config(example, SITE_PATH)


def test_rayservice_checks_catch_mistakes(example):
    base = _load("rayservice.yaml")
    doc = copy.deepcopy(base)
    cluster = doc["spec"]["rayClusterConfig"]
    cluster["enableInTreeAutoscaling"] = False
    cluster["workerGroupSpecs"][1]["rayStartParams"]["resources"] = "{not json"
    cluster["workerGroupSpecs"][0]["rayStartParams"]["num-cpus"] = 4
    serve_doc = yaml.safe_load(doc["spec"]["serveConfigV2"])
    serve_doc["applications"][0]["deployments"][0]["ray_actor_options"]["num_gpus"] = 1
    doc["spec"]["serveConfigV2"] = yaml.safe_dump(serve_doc)
    text = "\n".join(check_rayservice(doc, example, "rs.yaml"))
    assert "enableInTreeAutoscaling: must be true" in text
    assert "workerGroupSpecs[gpu-worker].rayStartParams.resources" in text
    assert "rayStartParams.num-cpus: must be a string" in text
    assert "serveConfigV2: applications[sightline-detector]" in text and "num_gpus" in text
    assert check_rayservice(base, example) == []


# --------------------------------------------------------------------------- Serve config


def test_serve_config_file_is_up_to_date(example):
    """cluster/serve-config.yaml is what the generator makes of the example site;
    regenerate with the command in its header when this fails."""
    doc = _load("serve-config.yaml")
    assert doc == serve_config(example, SITE_PATH)
    ServeDeploySchema.model_validate(doc)
    header = (CLUSTER / "serve-config.yaml").read_text().splitlines()[1]
    assert "sightline cluster serve-config --config configs/example-site.yaml" in header
    assert f"--site-path {SITE_PATH}" in header


def test_not_a_cluster_file(tmp_path, example):
    path = tmp_path / "x.yaml"
    path.write_text("a: [1\n")
    kind, problems = check_cluster_file(path, example)
    assert kind is None and "invalid YAML" in problems[0]
    path.write_text("a: 1\n")
    assert check_cluster_file(path, example)[0] is None


def test_readme_covers_each_file_and_resource():
    text = (CLUSTER / "README.md").read_text()
    for name in ("cluster.yaml", "rayservice.yaml", "serve-config.yaml", "fake-multinode.yaml"):
        assert name in text
    for resource in (CAMERA_RESOURCE, MODEL_RESOURCE, COORDINATOR_RESOURCE):
        assert resource in text

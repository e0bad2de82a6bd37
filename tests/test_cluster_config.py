"""Serve config generation, placement resources, Serve app builders and ``sightline cluster``.

No Ray is started: Ray's schemas validate without a running cluster, and Serve
applications are built (``bind``) without deploying them.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import pytest
import yaml
from ray.serve import Application
from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
from ray.serve.schema import ServeDeploySchema

from serve.apps import api_app, detector_app, embedder_app, site_from_args
from serve.cluster_commands import add_cluster_commands
from serve.cluster_config import (
    API_DEPLOYMENT,
    check_serve_config,
    serve_config,
    serve_schema_problems,
)
from serve.options import deployment_options
from sightline.config import ConfigError, SiteConfig, load_site_config
from sightline.placement import (
    CAMERA_RESOURCE,
    COORDINATOR_RESOURCE,
    MODEL_RESOURCE,
    declared_resources,
    placement_options,
    resource_request,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "configs" / "example-site.yaml"
SITE_PATH = "/opt/sightline/configs/example-site.yaml"


@pytest.fixture(scope="module")
def example() -> SiteConfig:
    return load_site_config(EXAMPLE)


def _site(example: SiteConfig, detector_serving: dict) -> SiteConfig:
    data = example.model_dump(mode="json")
    data["models"]["detector"]["serving"] = detector_serving
    return SiteConfig.model_validate(data)


def _apps(config: dict) -> dict:
    return {app["name"]: app for app in config["applications"]}


def _deployment(config: dict, app: str) -> dict:
    (dep,) = _apps(config)[app]["deployments"]
    return dep


# --------------------------------------------------------------------------- serve_config


def test_serve_config_validates_with_rays_schema(example):
    config = serve_config(example, SITE_PATH)
    schema = ServeDeploySchema.model_validate(config)
    assert [a.name for a in schema.applications] == [
        "sightline-detector",
        "sightline-embedder",
        "sightline-api",
    ]
    assert serve_schema_problems(config) == []
    assert check_serve_config(config, example) == []


def test_applications_import_paths_routes_and_args(example):
    apps = _apps(serve_config(example, SITE_PATH))
    assert apps["sightline-detector"]["import_path"] == "serve.apps:detector_app"
    assert apps["sightline-embedder"]["import_path"] == "serve.apps:embedder_app"
    assert apps["sightline-api"]["import_path"] == "serve.apps:api_app"
    assert apps["sightline-detector"]["route_prefix"] is None
    assert apps["sightline-embedder"]["route_prefix"] is None
    assert apps["sightline-api"]["route_prefix"] == "/"
    assert all(app["args"] == {"config": SITE_PATH} for app in apps.values())
    assert apps["sightline-api"]["deployments"] == [{"name": API_DEPLOYMENT, "num_replicas": 1}]


def test_model_deployments_follow_the_site_serving_config(example):
    config = serve_config(example, SITE_PATH)
    det = _deployment(config, "sightline-detector")
    serving = example.models.detector.serving
    assert det["name"] == "Detector"
    assert det["user_config"] == {"max_batch_size": 16, "batch_wait_timeout_s": 0.01}
    assert det["ray_actor_options"] == {
        "num_cpus": serving.num_cpus,
        "num_gpus": 0.5,
        "resources": {MODEL_RESOURCE: 1.0},
    }
    assert det["autoscaling_config"]["min_replicas"] == 1
    assert det["autoscaling_config"]["max_replicas"] == 4
    assert det["autoscaling_config"]["target_ongoing_requests"] == 2
    assert "num_replicas" not in det
    emb = _deployment(config, "sightline-embedder")
    assert emb["user_config"]["max_batch_size"] == 64
    assert emb["ray_actor_options"]["num_gpus"] == 0.5
    assert emb["ray_actor_options"]["resources"] == {MODEL_RESOURCE: 1.0}


def test_same_options_as_deploy_models(example):
    """The file asks Serve for what deployment_options (used by deploy_models) asks."""
    for app, model in (
        ("sightline-detector", example.models.detector),
        ("sightline-embedder", example.models.embedder),
    ):
        dep = _deployment(serve_config(example, SITE_PATH), app)
        options = deployment_options(model.serving)
        for key, value in options.items():
            if key == "ray_actor_options":
                assert {**value, "resources": {MODEL_RESOURCE: 1.0}} == dep[key]
            else:
                assert dep[key] == value, key


def test_fixed_replicas_and_batch_settings(example):
    site = _site(
        example,
        {
            "max_batch_size": 8,
            "batch_wait_timeout_s": 0.05,
            "num_gpus": 0.25,
            "num_cpus": 2,
            "autoscaling": {"min_replicas": 3, "max_replicas": 3},
        },
    )
    det = _deployment(serve_config(site, SITE_PATH), "sightline-detector")
    assert det["num_replicas"] == 3
    assert "autoscaling_config" not in det
    assert det["user_config"] == {"max_batch_size": 8, "batch_wait_timeout_s": 0.05}
    assert det["max_ongoing_requests"] == 16  # room for the running batch and the next
    assert det["ray_actor_options"]["num_gpus"] == 0.25
    assert det["ray_actor_options"]["num_cpus"] == 2
    ServeDeploySchema.model_validate(serve_config(site, SITE_PATH))


def test_prefix_host_port(example):
    config = serve_config(
        example, "site.yaml", app_prefix="gare", http_host="127.0.0.1", http_port=9000
    )
    assert config["http_options"] == {"host": "127.0.0.1", "port": 9000}
    assert set(_apps(config)) == {"gare-detector", "gare-embedder", "gare-api"}
    assert check_serve_config(config, example) == []
    with pytest.raises(ValueError, match="site_path"):
        serve_config(example, "")


def test_schema_problems_name_typos_and_bad_values(example):
    config = serve_config(example, SITE_PATH)
    det = config["applications"][0]["deployments"][0]
    det["num_replica"] = 2  # typo: Ray would ignore it
    det["autoscaling_config"]["target_num_ongoing_requests_per_replica"] = 1
    det["ray_actor_options"]["num_gpu"] = 1
    config["applications"][1]["deployments"][0]["max_ongoing_requests"] = 0
    problems = "\n".join(serve_schema_problems(config, "f.yaml"))
    assert "deployments[Detector]: unknown keys ['num_replica']" in problems
    assert "target_num_ongoing_requests_per_replica" in problems
    assert "ray_actor_options: unknown keys ['num_gpu']" in problems
    assert "max_ongoing_requests" in problems
    assert serve_schema_problems([1], "f.yaml") == [
        "f.yaml: a Serve config must be a mapping, got list"
    ]


def test_check_serve_config_finds_drift_from_the_site(example):
    config = serve_config(example, SITE_PATH)
    drifted = copy.deepcopy(config)
    det = drifted["applications"][0]["deployments"][0]
    det["user_config"]["max_batch_size"] = 32
    det["ray_actor_options"]["resources"] = {}
    del drifted["applications"][1]["deployments"][0]
    problems = check_serve_config(drifted, example, "f.yaml")
    text = "\n".join(problems)
    assert "user_config.max_batch_size: 32 in the file, 16 from the site config" in text
    assert f"ray_actor_options.resources.{MODEL_RESOURCE}: missing" in text
    assert "applications[sightline-embedder].deployments[Embedder]: missing" in text
    # the site changed, the file did not
    site = _site(example, {"max_batch_size": 4, "autoscaling": {"max_replicas": 2}})
    assert any("max_replicas" in p for p in check_serve_config(config, site))
    no_detector = {"applications": [config["applications"][2]]}
    assert any("no '<prefix>-detector'" in p for p in check_serve_config(no_detector, example))


# --------------------------------------------------------------------------- serve/apps.py


@pytest.mark.parametrize("builder", [detector_app, embedder_app, api_app])
def test_builders_need_config(builder):
    with pytest.raises(ValueError, match="'config'"):
        builder({})
    with pytest.raises(ValueError, match="'config'"):
        builder({"config": ""})
    with pytest.raises(ValueError, match="'config'"):
        builder(["configs/example-site.yaml"])


def test_builders_report_a_missing_site_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        detector_app({"config": str(tmp_path / "nope.yaml")})


def test_builders_build_applications_the_way_serve_calls_them():
    args = {"config": str(EXAMPLE)}
    assert site_from_args(args).name == "Riverside Station (example)"
    for builder in (detector_app, embedder_app, api_app):
        app = call_user_app_builder_with_args_if_necessary(builder, args)
        assert isinstance(app, Application)


# --------------------------------------------------------------------------- placement


def test_placement_options_only_when_the_cluster_declares_the_resource():
    cluster = {"CPU": 16.0, "GPU": 2.0, CAMERA_RESOURCE: 100.0, MODEL_RESOURCE: 0.0}
    assert placement_options("camera", cluster) == {"resources": {CAMERA_RESOURCE: 1.0}}
    assert placement_options("model", cluster) == {}  # declared as 0: not declared
    assert placement_options("coordinator", cluster) == {}
    assert placement_options("coordinator", {COORDINATOR_RESOURCE: 1}) == {
        "resources": {COORDINATOR_RESOURCE: 1.0}
    }
    assert placement_options("camera", {}) == {}  # one machine: run anywhere
    assert resource_request("model") == {MODEL_RESOURCE: 1.0}
    with pytest.raises(ValueError, match="unknown placement role 'gpu'"):
        placement_options("gpu", cluster)
    with pytest.raises(ValueError, match="must be a number"):
        placement_options("camera", {CAMERA_RESOURCE: "lots"})


def test_resource_names_are_distinct_and_prefixed():
    names = {CAMERA_RESOURCE, MODEL_RESOURCE, COORDINATOR_RESOURCE}
    assert len(names) == 3
    assert all(n.startswith("sightline_") for n in names)


def test_declared_resources_of_a_launcher_config():
    doc = yaml.safe_load((ROOT / "cluster" / "fake-multinode.yaml").read_text())
    declared = declared_resources(doc)
    assert declared[CAMERA_RESOURCE] == 100
    assert declared[MODEL_RESOURCE] == 100
    assert declared[COORDINATOR_RESOURCE] == 1
    assert placement_options("model", declared) == {"resources": {MODEL_RESOURCE: 1.0}}
    assert declared_resources({}) == {}


# --------------------------------------------------------------------------- CLI


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sightline")
    add_cluster_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_serve_config_to_stdout(capsys, example):
    assert _run(["cluster", "serve-config", "--config", str(EXAMPLE), "--port", "8080"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Serve config generated")
    assert yaml.safe_load(out) == serve_config(example, str(EXAMPLE), http_port=8080)


def test_cli_serve_config_to_file(tmp_path, capsys, example):
    out = tmp_path / "deep" / "serve.yaml"
    argv = ["cluster", "serve-config", "--config", str(EXAMPLE), "--site-path", SITE_PATH]
    assert _run([*argv, "--prefix", "x", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["applications"] == ["x-detector", "x-embedder", "x-api"]
    assert summary["site_path"] == SITE_PATH
    assert yaml.safe_load(out.read_text()) == serve_config(example, SITE_PATH, app_prefix="x")
    with pytest.raises(ValueError, match="--port"):
        _run([*argv, "--port", "70000"])


def test_cli_check_passes_on_the_shipped_files(capsys):
    assert _run(["cluster", "check", str(ROOT / "cluster"), "--config", str(EXAMPLE)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["problems"] == 0
    kinds = {Path(f).name: v["kind"] for f, v in report["files"].items()}
    assert kinds == {
        "cluster.yaml": "launcher",
        "fake-multinode.yaml": "fake_multinode",
        "rayservice.yaml": "rayservice",
        "serve-config.yaml": "serve",
    }


def test_cli_check_fails_with_the_problems(tmp_path, capsys):
    doc = yaml.safe_load((ROOT / "cluster" / "cluster.yaml").read_text())
    doc["available_node_types"]["cpu-worker"]["resources"]["GPU"] = 1
    bad = tmp_path / "cluster.yaml"
    bad.write_text(yaml.safe_dump(doc))
    (tmp_path / "notes.yaml").write_text("just: text\n")
    assert _run(["cluster", "check", str(tmp_path), "--config", str(EXAMPLE)]) == 1
    report = json.loads(capsys.readouterr().out)
    problems = report["files"][str(bad)]["problems"]
    assert any("cpu-worker" in p and "GPU" in p for p in problems)
    assert report["files"][str(tmp_path / "notes.yaml")]["kind"] is None
    with pytest.raises(FileNotFoundError):
        _run(["cluster", "check", str(tmp_path / "missing"), "--config", str(EXAMPLE)])

"""Unit tests of sightline.config: loading, defaults, paths, round-trip and error messages."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from sightline.config import ConfigError, dump_site_config, load_site_config, parse_site_config
from sightline.geometry import apply_homography

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
CONFIG_NAME = "station-site.yaml"

# Image points inside the 640x360 frame, no three on a line, with ground points in metres.
CAM1_CALIBRATION = [
    {"image": [100, 300], "ground": [0, 0]},
    {"image": [540, 300], "ground": [10, 0]},
    {"image": [500, 100], "ground": [10, 20]},
    {"image": [140, 100], "ground": [0, 20]},
]
CAM2_CALIBRATION = [
    {"image": [50, 350], "ground": [20, 0]},
    {"image": [600, 340], "ground": [30, 0]},
    {"image": [420, 120], "ground": [30, 15]},
    {"image": [200, 110], "ground": [20, 15]},
    {"image": [320, 200], "ground": [24.85, 6.05]},  # off the 4-point fit by ~1 cm
]


def _minimal_site():
    return {
        "version": 1,
        "name": "Test station",
        "camera_defaults": {"fps": 10, "resolution": [640, 360], "clock_offset_s": 1.5},
        "cameras": [
            {
                "id": "cam1",
                "source": "rtsp://10.0.0.11:554/stream1",
                "calibration": copy.deepcopy(CAM1_CALIBRATION),
            },
            {
                "id": "cam2",
                "source": "videos/cam2.mp4",
                "source_start": "2024-05-01T14:00:00+00:00",
                "fps": 5,
                "calibration": copy.deepcopy(CAM2_CALIBRATION),
            },
        ],
        "zones": [
            {
                "id": "concourse",
                "name": "Main concourse",
                "polygon": [[0, 0], [10, 0], [10, 10], [0, 10]],
                "alert_density": 2.0,
            }
        ],
        "topology": {"links": [{"cameras": ["cam1", "cam2"], "typical_transit_s": 30}]},
    }


@pytest.fixture
def site():
    """A valid minimal site config as a plain dict; tests mutate their own copy."""
    return _minimal_site()


def _write(tmp_path, data, name=CONFIG_NAME):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _load_error(path):
    with pytest.raises(ConfigError) as info:
        load_site_config(path)
    return str(info.value)


# --------------------------------------------------------------------------- valid configs


def test_valid_config_loads(tmp_path, site):
    config = load_site_config(_write(tmp_path, site))

    assert config.name == "Test station"
    assert [c.id for c in config.cameras] == ["cam1", "cam2"]
    assert config.camera("cam2").id == "cam2"
    assert config.zone("concourse").area_m2 == pytest.approx(100.0)
    assert config.zone("concourse").effective_clear_density == pytest.approx(1.6)
    assert config.topology is not None
    assert config.topology.links[0].cameras == ("cam1", "cam2")
    assert config.models.detector.type == "builtin"
    assert config.security.retention_days == 30


def test_lookup_of_unknown_ids_names_the_known_ones(tmp_path, site):
    config = load_site_config(_write(tmp_path, site))
    with pytest.raises(KeyError, match=r"unknown camera 'cam9'.*'cam1', 'cam2'"):
        config.camera("cam9")
    with pytest.raises(KeyError, match=r"unknown zone 'platform'.*'concourse'"):
        config.zone("platform")


def test_camera_defaults_are_merged_and_the_camera_wins(tmp_path, site):
    config = load_site_config(_write(tmp_path, site))
    cam1, cam2 = config.cameras

    assert cam1.fps == 10.0  # from camera_defaults
    assert cam2.fps == 5.0  # the camera's own value wins
    assert cam1.resolution == cam2.resolution == (640, 360)
    assert cam1.clock_offset_s == cam2.clock_offset_s == 1.5
    assert cam1.enabled and cam2.enabled  # model default, neither set it


def test_camera_defaults_do_not_leak_between_cameras(tmp_path, site):
    site["camera_defaults"]["resolution"] = [1280, 720]
    site["cameras"][0]["resolution"] = [640, 360]
    config = load_site_config(_write(tmp_path, site))
    assert config.cameras[0].resolution == (640, 360)
    assert config.cameras[1].resolution == (1280, 720)


def test_relative_sources_resolve_against_the_config_folder(tmp_path, site):
    elsewhere = tmp_path / "site-a"
    elsewhere.mkdir()
    site["cameras"].append(
        {"id": "cam3", "source": "/srv/video/cam3.mp4", "calibration": CAM1_CALIBRATION}
    )
    site["cameras"].append(
        {"id": "cam4", "source": "https://cams.example/cam4.m3u8", "calibration": CAM1_CALIBRATION}
    )

    config = load_site_config(_write(elsewhere, site))

    cam1, cam2, cam3, cam4 = config.cameras
    assert cam1.source == "rtsp://10.0.0.11:554/stream1"
    assert cam1.is_stream
    assert Path(cam2.source) == elsewhere.resolve() / "videos" / "cam2.mp4"
    assert not cam2.is_stream
    assert cam3.source == "/srv/video/cam3.mp4"
    assert cam4.source == "https://cams.example/cam4.m3u8"
    assert cam4.is_stream


def test_source_start_is_timezone_aware(tmp_path, site):
    site["cameras"][1]["source_start"] = "2024-05-01T16:00:00+02:00"
    cam2 = load_site_config(_write(tmp_path, site)).cameras[1]
    assert cam2.source_start is not None
    assert cam2.source_start.utcoffset() is not None
    assert cam2.source_start.timestamp() == pytest.approx(1714572000.0)  # 14:00 UTC


@pytest.mark.parametrize("index", [0, 1])
def test_homography_maps_calibration_image_points_to_ground(tmp_path, site, index):
    camera = load_site_config(_write(tmp_path, site)).cameras[index]
    image = np.array([p.image for p in camera.calibration])
    ground = np.array([p.ground for p in camera.calibration])

    np.testing.assert_allclose(apply_homography(camera.image_to_ground, image), ground, atol=0.05)
    np.testing.assert_allclose(apply_homography(camera.ground_to_image, ground), image, atol=1.0)
    assert camera.calibration_rmse_m < 0.05


def test_four_point_calibration_is_exact(tmp_path, site):
    camera = load_site_config(_write(tmp_path, site)).cameras[0]
    image = np.array([p["image"] for p in CAM1_CALIBRATION], dtype=float)
    ground = np.array([p["ground"] for p in CAM1_CALIBRATION], dtype=float)
    np.testing.assert_allclose(apply_homography(camera.image_to_ground, image), ground, atol=1e-9)
    assert camera.calibration_rmse_m < 1e-9


@pytest.mark.parametrize("storage", [None, {"root": "data/store"}], ids=["default", "explicit"])
def test_dump_then_load_round_trips(tmp_path, site, storage):
    if storage is not None:
        site["storage"] = storage
    site["models"] = {"detector": {"type": "builtin", "score_threshold": 0.4}}
    original = load_site_config(_write(tmp_path, site))
    dumped = tmp_path / "dumped.yaml"

    dump_site_config(original, dumped)
    reloaded = load_site_config(dumped)

    assert reloaded.model_dump() == original.model_dump()
    np.testing.assert_allclose(
        reloaded.cameras[1].image_to_ground, original.cameras[1].image_to_ground
    )
    # Paths under the config folder are written relative, so the folder can move.
    text = dumped.read_text(encoding="utf-8")
    assert str(tmp_path) not in text


@pytest.mark.parametrize("storage", [None, {"root": "data/store"}], ids=["default", "explicit"])
def test_storage_root_resolves_against_the_config_folder(tmp_path, site, storage):
    if storage is not None:
        site["storage"] = storage
    config = load_site_config(_write(tmp_path, site))
    expected = "store" if storage is None else storage["root"]
    assert Path(config.storage.root) == tmp_path.resolve() / expected


def test_parse_site_config_without_a_file(site):
    config = parse_site_config(site)
    assert config.cameras[1].source == "videos/cam2.mp4"  # no base dir: left as written
    with pytest.raises(ConfigError, match=r"^<config>: cameras\[1\] \(id=cam2\)\.fps"):
        parse_site_config(
            {**site, "cameras": [site["cameras"][0], {**site["cameras"][1], "fps": 0}]}
        )


# --------------------------------------------------------------------------- broken configs

DELETE = object()


def _set(data, dotted, value):
    """Set (or with DELETE, remove) ``data[a][b][0]...`` given ``'a.b.0'``."""
    *parents, last = [int(k) if k.isdigit() else k for k in dotted.split(".")]
    node = data
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value


BROKEN = [
    # (edits to the valid dict, field path right after "<file>: ", parts on that line)
    pytest.param(
        {"topolgy": {"links": []}},
        "topolgy",
        ["Extra inputs are not permitted", "(got {'links': []})"],
        id="unknown-top-level-key",
    ),
    pytest.param(
        {"cameras.1.frame_rate": 12},
        "cameras[1] (id=cam2).frame_rate",
        ["Extra inputs are not permitted", "(got 12)"],
        id="unknown-camera-key",
    ),
    pytest.param(
        {"camera_defaults.fsp": 12},
        "camera_defaults.fsp",
        ["Extra inputs are not permitted", "(got 12)"],
        id="unknown-camera-defaults-key",
    ),
    pytest.param(
        {"cameras.1.fps": -5},
        "cameras[1] (id=cam2).fps",
        ["greater than 0", "(got -5)"],
        id="negative-fps",
    ),
    pytest.param(
        {"cameras.1.fps": "fast"},
        "cameras[1] (id=cam2).fps",
        ["valid number", "(got 'fast')"],
        id="fps-not-a-number",
    ),
    pytest.param(
        {"cameras.0.fps": 500},
        "cameras[0] (id=cam1).fps",
        ["less than or equal to 120", "(got 500)"],
        id="fps-too-high",
    ),
    pytest.param(
        {"cameras.0.resolution": [640, 10000]},
        "cameras[0] (id=cam1).resolution[1]",
        ["less than or equal to 4320", "(got 10000)"],
        id="resolution-too-tall",
    ),
    pytest.param(
        {"camera_defaults.resolution": [8, 360]},
        "camera_defaults.resolution[0]",
        ["greater than or equal to 16", "(got 8)"],
        id="default-resolution-too-small",
    ),
    pytest.param(
        {"cameras.1.calibration": CAM2_CALIBRATION[:3]},
        "cameras[1] (id=cam2).calibration",
        ["at least 4", "got 3"],
        id="three-calibration-pairs",
    ),
    pytest.param(
        {
            "cameras.1.calibration": [
                {"image": [100, 100], "ground": [0, 0]},
                {"image": [200, 150], "ground": [5, 0]},
                {"image": [300, 200], "ground": [5, 5]},
                {"image": [400, 250], "ground": [0, 5]},
            ]
        },
        "cameras[1] (id=cam2)",
        ["degenerate", "image points", "collinear", "(0, 1, 2)"],
        id="collinear-image-points",
    ),
    pytest.param(
        {
            "cameras.0.calibration": [
                {"image": [100, 300], "ground": [0, 0]},
                {"image": [540, 300], "ground": [10, 0]},
                {"image": [500, 100], "ground": [20, 0]},
                {"image": [140, 100], "ground": [0, 20]},
            ]
        },
        "cameras[0] (id=cam1)",
        ["degenerate", "ground points", "collinear"],
        id="three-of-four-ground-points-collinear",
    ),
    pytest.param(
        {"cameras.1.calibration.0.image": [700, 10]},
        "cameras[1] (id=cam2)",
        ["calibration[0].image (700.0, 10.0) lies outside", "640x360 frame"],
        id="calibration-point-outside-frame",
    ),
    pytest.param(
        {"cameras.0.calibration.3.image": [140, -1]},
        "cameras[0] (id=cam1)",
        ["calibration[3].image (140.0, -1.0) lies outside", "640x360 frame"],
        id="calibration-point-above-frame",
    ),
    pytest.param(
        # "cameras" or, better, "cameras[1] (id=cam1).id": either names the field.
        {"cameras.1.id": "cam1"},
        "cameras",
        ["duplicate camera id 'cam1'"],
        id="duplicate-camera-id",
    ),
    pytest.param(
        {
            "zones": [
                {"id": "concourse", "polygon": [[0, 0], [10, 0], [10, 10]]},
                {"id": "concourse", "polygon": [[20, 0], [30, 0], [30, 5]]},
            ]
        },
        "zones",
        ["duplicate zone id 'concourse'"],
        id="duplicate-zone-id",
    ),
    pytest.param(
        {"cameras.1.id": "cam 2"},
        "cameras[1] (id=cam 2).id",
        ["String should match pattern", "(got 'cam 2')"],
        id="camera-id-with-space",
    ),
    pytest.param(
        {"zones.0.polygon": [[0, 0], [10, 0]]},
        "zones[0] (id=concourse).polygon",
        ["at least 3 items", "(got [[0, 0], [10, 0]])"],
        id="zone-polygon-two-points",
    ),
    pytest.param(
        {"zones.0.polygon": [[0, 0], [10, 10], [10, 0], [0, 10]]},
        "zones[0] (id=concourse).polygon",
        ["not simple", "Self-intersection", "(got [[0, 0], [10, 10], [10, 0], [0, 10]])"],
        id="zone-polygon-bow-tie",
    ),
    pytest.param(
        {"zones.0.clear_density": 3.0},
        "zones[0] (id=concourse)",
        ["clear_density 3.0 must not exceed alert_density 2.0"],
        id="clear-density-above-alert",
    ),
    pytest.param(
        {"zones.0.alert_density": 11},
        "zones[0] (id=concourse).alert_density",
        ["less than or equal to 10", "(got 11)"],
        id="alert-density-too-high",
    ),
    pytest.param(
        {"topology.links.0.cameras": ["cam1", "cam9"]},
        "topology",
        ["links[0]", "unknown camera 'cam9'", "'cam1', 'cam2'"],
        id="link-to-unknown-camera",
    ),
    pytest.param(
        {"topology.min_walking_speed_mps": 2.0, "topology.max_walking_speed_mps": 2.0},
        "topology",
        ["min_walking_speed_mps 2.0 must be below max_walking_speed_mps 2.0"],
        id="min-walking-speed-not-below-max",
    ),
    pytest.param(
        {"models": {"detector": {"type": "onnx"}}},
        "models.detector",
        ["'onnx'", "does not match any of the expected tags", "'builtin', 'torchscript'"],
        id="unknown-detector-type",
    ),
    pytest.param(
        # The path must be the one in the file; the union's tag is not a key there.
        {"models": {"detector": {"type": "torchscript", "format": "yolov8"}}},
        "models.detector.path",
        ["Field required"],
        id="torchscript-detector-without-path",
    ),
    pytest.param(
        {
            "models": {
                "detector": {
                    "type": "builtin",
                    "serving": {"autoscaling": {"min_replicas": 3, "max_replicas": 2}},
                }
            }
        },
        "models.detector.serving.autoscaling",
        ["min_replicas 3 exceeds max_replicas 2"],
        id="autoscaling-min-above-max",
    ),
    pytest.param(
        {"security": {"retention_days": 30, "audit_retention_days": 10}},
        "security",
        ["audit_retention_days 10 must be at least retention_days 30"],
        id="audit-retention-shorter-than-data",
    ),
    pytest.param(
        {"cameras.1.source_start": "2024-05-01 14:00:00"},
        "cameras[1] (id=cam2).source_start",
        ["timezone", "(got '2024-05-01 14:00:00')"],
        id="naive-source-start",
    ),
    pytest.param(
        {"cameras.0.source": DELETE},
        "cameras[0] (id=cam1).source",
        ["Field required"],
        id="camera-without-source",
    ),
    pytest.param(
        {"cameras": DELETE},
        "cameras",
        ["Field required"],
        id="missing-cameras",
    ),
    pytest.param(
        {"cameras": []},
        "cameras",
        ["List should have at least 1 item"],
        id="empty-cameras",
    ),
    pytest.param(
        {"version": 2},
        "version",
        ["Input should be 1", "(got 2)"],
        id="unsupported-version",
    ),
]


@pytest.mark.parametrize(("edits", "field", "parts"), BROKEN)
def test_broken_config_message_names_file_field_and_value(tmp_path, site, edits, field, parts):
    for dotted, value in edits.items():
        _set(site, dotted, value)
    path = _write(tmp_path, site)

    message = _load_error(path)

    # Every line is "<file>: <field path>: <problem> (got <value>)".
    lines = message.splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines), message
    matching = [line for line in lines if line.startswith(f"{path}: {field}")]
    assert matching, f"no line starts with {f'{path}: {field}'!r}:\n{message}"
    for part in parts:
        assert any(part in line for line in matching), f"{part!r} not in:\n{message}"


def test_every_problem_is_reported_on_its_own_line(tmp_path, site):
    site["cameras"][0]["fps"] = -1
    site["zones"][0]["alert_density"] = 0
    path = _write(tmp_path, site)

    lines = _load_error(path).splitlines()

    assert len(lines) == 2
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert "cameras[0] (id=cam1).fps" in lines[0]
    assert "zones[0] (id=concourse).alert_density" in lines[1]


def test_long_bad_values_are_shortened(tmp_path, site):
    site["zones"][0]["polygon"] = [[i, 0] for i in range(200)]
    message = _load_error(_write(tmp_path, site))
    assert "..." in message
    assert len(message) < 400


# --------------------------------------------------------------------------- unreadable files


@pytest.mark.parametrize(
    ("text", "where", "expected"),
    [
        ("name: x\ncameras:\n  - id: [cam1\n", ":4:1:", "invalid YAML"),
        ("name: x\n  bad_indent: 1\n", ":2:13:", "invalid YAML: mapping values are not allowed"),
        ("name: x\ncameras: [\n  {id: cam1,\n   source: 'unterminated\n", ":", "invalid YAML"),
    ],
    ids=["unclosed-bracket", "bad-indent", "unterminated-quote"],
)
def test_invalid_yaml_gives_file_line_and_column(tmp_path, text, where, expected):
    path = tmp_path / CONFIG_NAME
    path.write_text(text, encoding="utf-8")
    message = _load_error(path)
    assert message.startswith(f"{path}{where}"), message
    assert expected in message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    assert _load_error(path) == f"{path}: no such config file"


@pytest.mark.parametrize(
    ("text", "type_name"),
    [("- a\n- b\n", "list"), ("just a string\n", "str"), ("", "NoneType")],
    ids=["list", "scalar", "empty"],
)
def test_top_level_must_be_a_mapping(tmp_path, text, type_name):
    path = tmp_path / CONFIG_NAME
    path.write_text(text, encoding="utf-8")
    message = _load_error(path)
    assert message == f"{path}: the top level must be a mapping of settings, got {type_name}"


def test_unquoted_naive_yaml_timestamp_is_rejected(tmp_path, site):
    # YAML itself turns an unquoted timestamp into a datetime; without an offset it is naive.
    text = yaml.safe_dump(site, sort_keys=False).replace(
        "source_start: '2024-05-01T14:00:00+00:00'", "source_start: 2024-05-01 14:00:00"
    )
    assert "source_start: 2024-05-01 14:00:00\n" in text
    path = tmp_path / CONFIG_NAME
    path.write_text(text, encoding="utf-8")
    message = _load_error(path)
    assert "cameras[1] (id=cam2).source_start" in message
    assert "timezone" in message


def test_unquoted_aware_yaml_timestamp_is_accepted(tmp_path, site):
    text = yaml.safe_dump(site, sort_keys=False).replace(
        "source_start: '2024-05-01T14:00:00+00:00'", "source_start: 2024-05-01T14:00:00Z"
    )
    path = tmp_path / CONFIG_NAME
    path.write_text(text, encoding="utf-8")
    assert load_site_config(path).cameras[1].source_start.timestamp() == 1714572000.0


# --------------------------------------------------------------------------- shipped configs

SHIPPED = sorted(CONFIGS_DIR.glob("*.yaml"))


def test_example_site_config_is_shipped():
    assert CONFIGS_DIR / "example-site.yaml" in SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_config_loads(path):
    config = load_site_config(path)
    assert config.cameras
    for camera in config.cameras:
        assert camera.calibration_rmse_m < 0.5, camera.id


def test_example_site_config_contents():
    config = load_site_config(CONFIGS_DIR / "example-site.yaml")
    streams = [c for c in config.cameras if c.is_stream]
    files = [c for c in config.cameras if not c.is_stream]
    assert len(config.cameras) == 3
    assert len(streams) == 2
    assert [Path(c.source) for c in files] == [CONFIGS_DIR / "recordings" / "platform.mp4"]
    assert files[0].source_start is not None
    assert config.zones
    assert config.topology is not None
    assert config.topology.links

"""``sightline density ...`` on a store written by the density service."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from sightline.cli import main
from sightline.config import load_site_config
from sightline.density.counting import GroundFrame
from sightline.density.service import DensityService
from sightline.store.tables import TrackStore

T0 = 1_772_460_000.0  # 2026-03-02T14:00:00Z


@pytest.fixture
def site_and_store(tmp_path):
    corners = [(0, 0), (640, 0), (640, 480), (0, 480)]
    config = {
        "name": "cli",
        "cameras": [
            {
                "id": "a",
                "source": "videos/a.mp4",
                "fps": 10,
                "resolution": [640, 480],
                "calibration": [{"image": [u, v], "ground": [u / 64, v / 64]} for u, v in corners],
            }
        ],
        "zones": [
            {
                "id": "z",
                "polygon": [[0, 0], [10, 0], [10, 7.5], [0, 7.5]],
                "alert_density": 0.02,
                "alert_hold_s": 2,
            }
        ],
        "storage": {"root": "store"},
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    site = load_site_config(path)
    store = TrackStore(site.storage.root)
    service = DensityService(site, store, clock=lambda: 0.0)
    for k in range(100):  # 10 s; 3 people (0.04 /m2) from second 3 on, else 1
        people = 3 if k >= 30 else 1
        points = np.array([[2.0 + 2 * i, 3.0] for i in range(people)], np.float32)
        service.observe([GroundFrame("a", T0 + k / 10, points)])
    service.close()
    store.flush()
    return path


def _run(capsys, *argv: str):
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_counts_summary_and_alerts(capsys, site_and_store):
    window = ["--start", "2026-03-02T14:00:00Z", "--end", "2026-03-02T14:00:09Z"]
    status, out, _ = _run(
        capsys, "density", "counts", "--config", str(site_and_store), *window, "--bucket", "5"
    )
    assert status == 0
    rows = json.loads(out)
    assert [r["ts"][:19] for r in rows] == ["2026-03-02T14:00:00", "2026-03-02T14:00:05"]
    assert rows[0]["count"] == pytest.approx((1 + 1 + 1 + 3 + 3) / 5)
    assert rows[1]["count"] == pytest.approx(3.0)
    status, out, _ = _run(capsys, "density", "summary", "--config", str(site_and_store), *window)
    assert json.loads(out)[0]["peak_count"] == 3
    status, out, _ = _run(capsys, "density", "alerts", "--config", str(site_and_store), *window)
    alerts = json.loads(out)
    assert len(alerts) == 1 and alerts[0]["t_start"].startswith("2026-03-02T14:00:03")


def test_heatmap_png_and_grid(capsys, site_and_store, tmp_path):
    out_png, out_json = tmp_path / "map.png", tmp_path / "grid.json"
    status, out, _ = _run(
        capsys, "density", "heatmap", "--config", str(site_and_store),
        "--start", "2026-03-02T14:00:00Z", "--end", "2026-03-02T14:00:10Z",
        "--out", str(out_png), "--json", str(out_json),
    )  # fmt: skip
    assert status == 0
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(out)["person_seconds"] == pytest.approx(1 * 3 + 3 * 7)
    assert json.loads(out_json.read_text())["cell_m"] == 0.5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bucket", "0"], "bucket_s"),
        (["--start", "yesterday"], "start"),
    ],
)
def test_bad_arguments_are_named(capsys, site_and_store, argv, message):
    base = ["density", "counts", "--config", str(site_and_store), "--end", "2026-03-02T14:00:09Z"]
    if "--start" not in argv:
        base += ["--start", "2026-03-02T14:00:00Z"]
    status, _, err = _run(capsys, *base, *argv)
    assert status == 2
    assert message in err

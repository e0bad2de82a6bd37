"""``sightline search`` over a site's store: result JSON, the audit entry, clear errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import yaml

from sightline.cli import main
from sightline.security import AuditLog
from sightline.store import TrackStore
from tests.test_search_helpers import T0, make_tracklet


@pytest.fixture
def site(tmp_path):
    corners = [(0, 0), (640, 0), (640, 480), (0, 480)]
    config = {
        "name": "cli-search",
        "cameras": [
            {
                "id": cam,
                "source": f"videos/{cam}.mp4",
                "resolution": [640, 480],
                "calibration": [{"image": [u, v], "ground": [u / 64, v / 64]} for u, v in corners],
            }
            for cam in ("cam1", "cam2")
        ],
        "storage": {"root": "store"},
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    with TrackStore(tmp_path / "store", durable=False) as store:
        store.write_tracklets(
            [
                make_tracklet(1, "cam1", T0 + 10, person=1, upper="red", hat=0.1, bag=0.9),
                make_tracklet(2, "cam2", T0 + 20, person=2, upper="blue", hat=0.9, bag=0.1),
            ]
        )
    return path


def _window() -> list[str]:
    start = datetime.fromtimestamp(T0, UTC).isoformat()
    end = datetime.fromtimestamp(T0 + 600, UTC).isoformat()
    return ["--start", start, "--end", end]


def test_description_search_prints_candidates_and_is_audited(capsys, site):
    argv = ["search", "--config", str(site), "--case-id", "c-17", "--reason", "missing child"]
    status = main([*argv, *_window(), "--upper", "red"])
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    assert result["case_id"] == "c-17" and result["reason"] == "missing child"
    assert result["candidates"][0]["best_tracklet_id"] == "cam1-0-1"
    log = AuditLog(site.parent / "store" / "_security" / "audit")
    [entry] = list(log.entries())
    assert (entry["action"], entry["case_id"], entry["role"]) == (
        "search.create",
        "c-17",
        "analyst",
    )
    assert entry["principal"].startswith("cli:")
    assert log.verify().ok


@pytest.mark.parametrize(
    ("flags", "first"),
    [
        (["--hat"], "cam2-0-2"),
        (["--no-hat"], "cam1-0-1"),
        (["--bag"], "cam1-0-1"),
        (["--no-bag", "--hat"], "cam2-0-2"),
    ],
)
def test_hat_and_bag_flags_rank_who_fits_first(capsys, site, flags, first):
    argv = ["search", "--config", str(site), "--case-id", "c", "--reason", "r", *_window()]
    assert main([*argv, *flags]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["candidates"][0]["best_tracklet_id"] == first


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--upper", "mauve"], "unknown colour 'mauve'"),
        (["--photo", "/nonexistent.png"], "No such"),
    ],
)
def test_bad_input_is_named(capsys, site, extra, message):
    argv = ["search", "--config", str(site), "--case-id", "c", "--reason", "r", *_window()]
    assert main([*argv, *extra]) == 2
    assert message in capsys.readouterr().err


def test_case_id_and_reason_are_required(site):
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--config", str(site), *_window(), "--upper", "red"])
    assert exit_info.value.code == 2

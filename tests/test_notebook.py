"""notebooks/fused_tracks.ipynb runs top to bottom on a small synthetic store."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from sightline.store.tables import TrackStore
from tests.test_store import make_tracklet

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "fused_tracks.ipynb"
T0 = datetime(2024, 5, 1, 14, 0, 0, tzinfo=UTC).timestamp()


def _synthetic_store(root: Path) -> None:
    """Two cameras, three minutes, three people; g-000001 walks from cam1 into cam2.

    Read rules are exercised: cam1-0-1 has two versions, and cam2-0-2 was first a new
    person g-000004 and then merged into g-000001.
    """
    store = TrackStore(root, durable=False)
    store.write_tracklets(
        [
            make_tracklet("cam1-0-1", "cam1", T0, n=50, version=1),
            make_tracklet("cam1-0-1", "cam1", T0, n=90, version=2, final=True, step=(0.2, 0.05)),
            make_tracklet("cam2-0-2", "cam2", T0 + 80, n=90, start=(17, 4.5), step=(0.2, 0.1)),
            make_tracklet("cam1-0-3", "cam1", T0 + 30, n=100, start=(5, 10), step=(0.1, -0.05)),
            make_tracklet("cam2-0-4", "cam2", T0 + 10, n=60, start=(30, 0), step=(0, 0.2)),
        ],
        {"cam1-0-1": "g-000001", "cam2-0-2": "g-000004", "cam1-0-3": "g-000002"},
    )
    store.write_assignments(
        [
            {"tracklet_id": "cam1-0-1", "global_id": "g-000001", "seq": 1, "reason": "new"},
            {"tracklet_id": "cam2-0-4", "global_id": "g-000003", "seq": 2, "reason": "new"},
            {"tracklet_id": "cam1-0-3", "global_id": "g-000002", "seq": 3, "reason": "new"},
            {"tracklet_id": "cam2-0-2", "global_id": "g-000004", "seq": 4, "reason": "new"},
            {"tracklet_id": "cam2-0-2", "global_id": "g-000001", "seq": 5, "reason": "merge"},
        ],
        assigned_at=T0 + 170,
    )
    store.write_events(
        [
            {
                "seq": 5,
                "ts": T0 + 170,
                "kind": "merge",
                "global_ids": ["g-000001", "g-000004"],
                "tracklet_ids": ["cam2-0-2"],
                "reason": "appearance",
            }
        ]
    )
    store.flush()


def _kernel_for_this_interpreter(folder: Path) -> str:
    """A kernelspec that runs this very interpreter (the venv's), whatever else is installed."""
    spec = folder / "kernels" / "sightline-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "sightline test", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    return "sightline-test"


def _outputs_text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for output in cell.outputs:
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


def test_fused_tracks_notebook_runs(tmp_path, monkeypatch: pytest.MonkeyPatch):
    store = tmp_path / "store"
    figure = tmp_path / "route.png"
    _synthetic_store(store)
    monkeypatch.setenv("SIGHTLINE_STORE", str(store))
    monkeypatch.setenv("SIGHTLINE_FIGURE", str(figure))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    kernel = _kernel_for_this_interpreter(tmp_path / "jupyter")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name=kernel,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    cells = {c.metadata.get("tags", [""])[0]: c for c in nb.cells if c.cell_type == "code"}
    assert not any(o.output_type == "error" for c in cells.values() for o in c.outputs)
    assert figure.is_file() and figure.stat().st_size > 0

    counts = _outputs_text(cells["per-minute"])
    assert "cam1" in counts and "cam2" in counts and "14:02:00" in counts
    assert "g-000001 was seen by 2 cameras" in _outputs_text(cells["busiest-person"])
    route = _outputs_text(cells["route-table"])
    assert "cam1-0-1" in route and "cam2-0-2" in route and "cam1-0-3" not in route

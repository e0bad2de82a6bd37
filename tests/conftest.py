"""Shared fixtures: one tiny simulated site per test session (rendered once, ~5 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sightline.sim import simulate

TINY_SEED = 3


@pytest.fixture(scope="session")
def tiny_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of the 'tiny' preset rendered with seed 3 (two overlapping cameras)."""
    out = tmp_path_factory.mktemp("tiny_site")
    simulate("tiny", TINY_SEED, out, workers=2, show_progress=False)
    return out

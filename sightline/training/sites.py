"""Rendered synthetic sites for training and evaluation, cached by (preset, seed)."""

from __future__ import annotations

import sys
from pathlib import Path

from sightline.sim import simulate

__all__ = ["ensure_site"]


def ensure_site(cache: Path, preset: str, seed: int, workers: int | None = None) -> Path:
    """The folder of site (preset, seed) under ``cache``, rendering it first if missing."""
    folder = Path(cache) / f"{preset}-{seed}"
    if not (folder / "gt" / "boxes.parquet").is_file() or not (folder / "site.yaml").is_file():
        print(f"rendering synthetic site {preset} seed {seed} into {folder}", file=sys.stderr)
        simulate(preset, seed, folder, workers=workers, show_progress=True)
    return folder

"""The short training report: a loss-curve PNG and a JSON of settings and held-out metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_report"]


def write_report(folder: Path, name: str, losses: list[float], summary: dict[str, Any]) -> Path:
    """Write ``<name>-loss.png`` and ``<name>-report.json`` into ``folder``; returns the JSON."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    window = max(1, len(losses) // 50)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(losses, alpha=0.3, label="per step")
    ax.plot(np.arange(len(smooth)) + window - 1, smooth, label=f"mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.set_title(f"sightline train {name}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / f"{name}-loss.png")
    plt.close(fig)
    path = folder / f"{name}-report.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path

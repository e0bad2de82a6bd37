"""Making a write survive a crash: fsync of a file or a folder (its entries)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_path"]


def fsync_path(path: str | Path) -> None:
    """fsync ``path``: a file's data, or a folder's entries (a new or renamed name)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

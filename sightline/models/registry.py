"""Backend plugins: a config ``type`` names the class that implements it.

Adding a backend is adding a file that defines a :class:`DetectorBackend` or
:class:`EmbedderBackend` subclass with a ``from_config`` classmethod and decorating it
with :func:`register_detector` / :func:`register_embedder`; then listing the module in
``_BACKEND_MODULES`` so it is imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from sightline.models.core import DetectorBackend, EmbedderBackend

__all__ = ["build_detector", "build_embedder", "register_detector", "register_embedder"]

_BACKEND_MODULES = (
    "sightline.models.builtin_detector",
    "sightline.models.builtin_embedder",
    "sightline.models.torchscript",
)
_DETECTORS: dict[str, Any] = {}
_EMBEDDERS: dict[str, Any] = {}
T = TypeVar("T")


def register_detector(name: str) -> Callable[[T], T]:
    """Class decorator: the detector backend for config ``type: name``."""

    def deco(cls: T) -> T:
        _DETECTORS[name] = cls
        return cls

    return deco


def register_embedder(name: str) -> Callable[[T], T]:
    """Class decorator: the embedder backend for config ``type: name``."""

    def deco(cls: T) -> T:
        _EMBEDDERS[name] = cls
        return cls

    return deco


def _load_backends() -> None:
    for module in _BACKEND_MODULES:
        importlib.import_module(module)


def _build(kind: str, table: dict[str, Any], config: Any, prefer_gpu: bool) -> Any:
    _load_backends()
    cls = table.get(config.type)
    if cls is None:
        raise ValueError(f"unknown {kind} type {config.type!r}; known: {sorted(table)}")
    return cls.from_config(config, prefer_gpu=prefer_gpu)


def build_detector(config: Any, prefer_gpu: bool = True) -> DetectorBackend:
    """The detector backend for a detector config (``config.type`` selects the plugin)."""
    return _build("detector", _DETECTORS, config, prefer_gpu)


def build_embedder(config: Any, prefer_gpu: bool = True) -> EmbedderBackend:
    """The embedder backend for an embedder config (``config.type`` selects the plugin)."""
    return _build("embedder", _EMBEDDERS, config, prefer_gpu)

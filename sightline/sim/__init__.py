"""The synthetic multi-camera site: layout, people, rendering, video and ground truth."""

from sightline.sim.generate import SimulationError, simulate
from sightline.sim.presets import PRESETS, Preset, get_preset

__all__ = ["PRESETS", "Preset", "SimulationError", "get_preset", "simulate"]

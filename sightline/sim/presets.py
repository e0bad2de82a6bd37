"""Simulation presets: how big a synthetic site is and what happens in it."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PRESETS", "CrowdEventSpec", "Preset", "get_preset"]


@dataclass(frozen=True)
class CrowdEventSpec:
    """A scheduled gathering: ``n_people`` walk into ``zone`` and stand there for a while."""

    zone: str
    start_s: float
    end_s: float
    n_people: int


@dataclass(frozen=True)
class Preset:
    """Parameters of one synthetic site size.

    ``grid`` is the number of path junctions along x and y; ``overlap_pairs`` cameras come
    in pairs that look at the same junction from different sides, ``single_cameras`` look
    at junctions of their own (no shared view).
    """

    name: str
    site_size_m: tuple[float, float]
    grid: tuple[int, int]
    overlap_pairs: int
    single_cameras: int
    duration_s: float
    n_people: int
    fps: float = 10.0
    resolution: tuple[int, int] = (640, 360)
    plaza_size_m: float = 8.0
    crowd_events: tuple[CrowdEventSpec, ...] = field(default_factory=tuple)

    @property
    def n_cameras(self) -> int:
        """Total number of cameras."""
        return 2 * self.overlap_pairs + self.single_cameras


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        site_size_m=(30, 24),
        grid=(2, 2),
        overlap_pairs=1,
        single_cameras=0,
        duration_s=10,
        n_people=8,
        plaza_size_m=8,
    ),
    "small": Preset(
        name="small",
        site_size_m=(60, 40),
        grid=(3, 2),
        overlap_pairs=1,
        single_cameras=2,
        duration_s=60,
        n_people=20,
        plaza_size_m=8,
        crowd_events=(CrowdEventSpec("plaza", 22, 44, 14),),
    ),
    "default": Preset(
        name="default",
        site_size_m=(90, 60),
        grid=(4, 3),
        overlap_pairs=2,
        single_cameras=2,
        duration_s=300,
        n_people=80,
        plaza_size_m=10,
        crowd_events=(CrowdEventSpec("plaza", 120, 210, 36),),
    ),
    "large": Preset(
        name="large",
        site_size_m=(240, 160),
        grid=(8, 6),
        overlap_pairs=8,
        single_cameras=8,
        duration_s=300,
        n_people=320,
        plaza_size_m=10,
        crowd_events=(
            CrowdEventSpec("plaza", 60, 150, 36),
            CrowdEventSpec("plaza", 200, 270, 30),
        ),
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ValueError listing the valid names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None

"""Site layout: ground plane, walkable path graph, zones and camera placement.

The path network is a jittered grid of junctions joined by straight paths, with
entrances where boundary junctions meet the site edge. The junction nearest the
centre is the plaza. Cameras come in overlapping pairs (two cameras aimed at the
same junction from different sides) and singles aimed at junctions far from every
other camera, so people walk between some views through unseen space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path

from sightline.sim.camera import PinholeCamera
from sightline.sim.presets import Preset
from sightline.sim.render import Lighting

__all__ = ["CameraPlacement", "SiteLayout", "build_layout"]

PATH_HALF_WIDTH_M = 1.6


@dataclass(frozen=True)
class CameraPlacement:
    """A simulated camera: id, true geometry, the junction it watches, its lighting."""

    camera_id: str
    camera: PinholeCamera
    target_node: int
    group: int  # cameras sharing a group look at the same junction (overlapping views)
    lighting: Lighting


@dataclass
class SiteLayout:
    """Ground plane, path graph (nodes, edges, entrances), zones and cameras of a site."""

    size: tuple[float, float]
    nodes: np.ndarray  # (N, 2) metres
    is_entrance: np.ndarray  # (N,) bool
    edges: list[tuple[int, int]]
    plaza_node: int
    zones: dict[str, np.ndarray]
    cameras: list[CameraPlacement]
    texture_seed: int

    def __post_init__(self) -> None:
        n = len(self.nodes)
        i, j = np.array(self.edges).T
        lengths = np.linalg.norm(self.nodes[i] - self.nodes[j], axis=1)
        graph = csr_matrix((np.r_[lengths, lengths], (np.r_[i, j], np.r_[j, i])), shape=(n, n))
        self.distances, self.predecessors = shortest_path(graph, return_predecessors=True)

    @property
    def entrances(self) -> np.ndarray:
        """Indices of entrance nodes."""
        return np.flatnonzero(self.is_entrance)

    @property
    def junctions(self) -> np.ndarray:
        """Indices of junction (non-entrance) nodes."""
        return np.flatnonzero(~self.is_entrance)

    def route(self, start: int, end: int) -> list[int]:
        """Node indices of the shortest path from ``start`` to ``end`` (inclusive)."""
        path = [end]
        while path[-1] != start:
            path.append(int(self.predecessors[start, path[-1]]))
        return path[::-1]

    def ground_albedo(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Ground colour (N, 3) at world points: grass, paving stones, plaza bricks, asphalt."""
        path_d = self._distance_to_paths(x, y)
        fine = value_noise(x * 3.0, y * 3.0, self.texture_seed)
        coarse = value_noise(x * 0.4, y * 0.4, self.texture_seed + 1)
        grass = np.stack([62 + 25 * fine, 104 + 30 * fine, 48 + 14 * coarse], axis=1)
        tile = value_noise(
            np.floor(x / 0.6), np.floor(y / 0.6), self.texture_seed + 2, smooth=False
        )
        seam = (np.abs((x / 0.6) % 1.0 - 0.5) > 0.46) | (np.abs((y / 0.6) % 1.0 - 0.5) > 0.46)
        paving = (150 + 16 * tile - 38 * seam)[:, None] * np.array([1.0, 0.98, 0.93])
        albedo = np.where((path_d < PATH_HALF_WIDTH_M)[:, None], paving, grass)
        px, py = self.nodes[self.plaza_node]
        half = self.zone_half_size + 1.5
        in_plaza = (np.abs(x - px) < half) & (np.abs(y - py) < half)
        brick_row = np.floor(y / 0.2)
        brick_seam = (((x / 0.4 + 0.5 * brick_row) % 1.0) < 0.06) | (((y / 0.2) % 1.0) < 0.1)
        brick = (1.0 + 0.12 * tile - 0.3 * brick_seam)[:, None] * np.array([150.0, 92.0, 78.0])
        albedo = np.where(in_plaza[:, None], brick, albedo)
        outside = (x < 0) | (y < 0) | (x > self.size[0]) | (y > self.size[1])
        asphalt = (72 + 10 * fine)[:, None] * np.array([1.0, 1.0, 1.03])
        return np.where(outside[:, None], asphalt, albedo).astype(np.float32)

    @property
    def zone_half_size(self) -> float:
        """Half the side of the square plaza zone."""
        poly = self.zones["plaza"]
        return float((poly[:, 0].max() - poly[:, 0].min()) / 2.0)

    def _distance_to_paths(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        best = np.full(x.shape, np.inf)
        for i, j in self.edges:
            (ax, ay), (bx, by) = self.nodes[i], self.nodes[j]
            dx, dy = bx - ax, by - ay
            t = np.clip(((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
            best = np.minimum(best, np.hypot(x - ax - t * dx, y - ay - t * dy))
        return best


def _hash01(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic pseudo-random values in [0, 1) per integer lattice point."""
    h = ix.astype(np.int64) * 374761393 + iy.astype(np.int64) * 668265263 + seed * 2246822519
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFF).astype(np.float64) / 65536.0


def value_noise(x: np.ndarray, y: np.ndarray, seed: int, smooth: bool = True) -> np.ndarray:
    """Lattice value noise in [0, 1); bilinearly smoothed unless ``smooth`` is False."""
    ix, iy = np.floor(x), np.floor(y)
    if not smooth:
        return _hash01(ix, iy, seed)
    fx, fy = x - ix, y - iy
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    v00, v10 = _hash01(ix, iy, seed), _hash01(ix + 1, iy, seed)
    v01, v11 = _hash01(ix, iy + 1, seed), _hash01(ix + 1, iy + 1, seed)
    return (v00 * (1 - fx) + v10 * fx) * (1 - fy) + (v01 * (1 - fx) + v11 * fx) * fy


def _grid_graph(
    preset: Preset, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    width, depth = preset.site_size_m
    nx, ny = preset.grid
    sx, sy = width / (nx + 1), depth / (ny + 1)
    nodes, edges, index = [], [], {}
    for i in range(nx):
        for j in range(ny):
            jitter = rng.uniform(-0.12, 0.12, 2) * (sx, sy)
            index[i, j] = len(nodes)
            nodes.append(((i + 1) * sx + jitter[0], (j + 1) * sy + jitter[1]))
    for (i, j), k in index.items():
        if (i + 1, j) in index:
            edges.append((k, index[i + 1, j]))
        if (i, j + 1) in index:
            edges.append((k, index[i, j + 1]))
    is_entrance = [False] * len(nodes)
    for (i, j), k in list(index.items()):
        x, y = nodes[k]
        sides = [
            (i == 0, (0.0, y)),
            (i == nx - 1, (width, y)),
            (j == 0, (x, 0.0)),
            (j == ny - 1, (x, depth)),
        ]
        for on_edge, point in sides:
            if on_edge:
                edges.append((k, len(nodes)))
                nodes.append(point)
                is_entrance.append(True)
    return np.array(nodes, dtype=np.float64), np.array(is_entrance), edges


def _lighting(rng: np.random.Generator) -> Lighting:
    gain = rng.uniform(0.88, 1.12, 3)
    return Lighting(
        gain=(float(gain[0]), float(gain[1]), float(gain[2])),
        exposure=float(rng.uniform(0.82, 1.1)),
        noise_sigma=float(rng.uniform(1.5, 3.5)),
        vignette=float(rng.uniform(0.1, 0.35)),
        light_side=float(rng.uniform(-1.0, 1.0)),
    )


def _aim_camera(
    target: np.ndarray, azimuth: float, preset: Preset, rng: np.random.Generator
) -> PinholeCamera:
    distance = rng.uniform(12.0, 16.0)
    pos = target + distance * np.array([np.cos(azimuth), np.sin(azimuth)])
    pos = np.clip(pos, 0.5, np.array(preset.site_size_m) - 0.5)
    return PinholeCamera.looking_at(
        position=(float(pos[0]), float(pos[1])),
        height=float(rng.uniform(5.0, 7.0)),
        target=(float(target[0]), float(target[1])),
        hfov_deg=float(rng.uniform(40.0, 50.0)),
        resolution=preset.resolution,
    )


def _pick_far(candidates: np.ndarray, nodes: np.ndarray, taken: list[int]) -> int:
    """The candidate junction farthest from every junction already watched."""
    d = np.linalg.norm(nodes[candidates][:, None] - nodes[taken][None], axis=2).min(axis=1)
    return int(candidates[np.argmax(d)])


def _place_cameras(
    preset: Preset, nodes: np.ndarray, junctions: np.ndarray, plaza: int, rng: np.random.Generator
) -> list[CameraPlacement]:
    targets: list[int] = [plaza]
    free = [j for j in junctions if j != plaza]
    for _ in range(preset.overlap_pairs - 1 + preset.single_cameras):
        if not free:
            raise ValueError(f"preset {preset.name!r} has more camera targets than junctions")
        pick = _pick_far(np.array(free), nodes, targets)
        targets.append(pick)
        free.remove(pick)
    placements = []
    for group, target in enumerate(targets):
        n_cams = 2 if group < preset.overlap_pairs else 1
        azimuth = rng.uniform(0, 2 * np.pi)
        for c in range(n_cams):
            az = azimuth + c * rng.uniform(np.radians(100), np.radians(150))
            cam = _aim_camera(nodes[target], az, preset, rng)
            placements.append(
                CameraPlacement(
                    camera_id=f"cam{len(placements) + 1:02d}",
                    camera=cam,
                    target_node=target,
                    group=group,
                    lighting=_lighting(rng),
                )
            )
    return placements


def _square(centre: np.ndarray, half: float) -> np.ndarray:
    cx, cy = centre
    return np.array(
        [
            [cx - half, cy - half],
            [cx + half, cy - half],
            [cx + half, cy + half],
            [cx - half, cy + half],
        ]
    )


def build_layout(preset: Preset, seed: int) -> SiteLayout:
    """Generate the layout of ``preset`` deterministically from ``seed``."""
    rng = np.random.default_rng([seed, 1])
    nodes, is_entrance, edges = _grid_graph(preset, rng)
    junctions = np.flatnonzero(~is_entrance)
    centre = np.array(preset.site_size_m) / 2.0
    plaza = int(junctions[np.argmin(np.linalg.norm(nodes[junctions] - centre, axis=1))])
    cameras = _place_cameras(preset, nodes, junctions, plaza, rng)
    zones = {"plaza": _square(nodes[plaza], preset.plaza_size_m / 2.0)}
    for placement in cameras:
        if placement.target_node != plaza and f"area_{placement.group}" not in zones:
            zones[f"area_{placement.group}"] = _square(nodes[placement.target_node], 3.0)
    return SiteLayout(
        size=preset.site_size_m,
        nodes=nodes,
        is_entrance=is_entrance,
        edges=edges,
        plaza_node=plaza,
        zones=zones,
        cameras=cameras,
        texture_seed=seed,
    )

"""ByteTracker: association cases (crossing, occlusion, gaps), lifecycle and ids."""

from __future__ import annotations

import numpy as np
import pytest

from sightline.config import TrackerConfig
from sightline.models.core import Detections
from sightline.tracking import ByteTracker, IdCounter
from sightline.tracking.kalman_filter import KalmanBoxFilter, xywh_to_xyxy, xyxy_to_xywh
from sightline.tracking.matching import assign

FPS = 10.0


def person(cx: float, top: float = 100.0, w: float = 30.0, h: float = 80.0) -> list[float]:
    return [cx - w / 2, top, cx + w / 2, top + h]


def run(
    tracker: ByteTracker, frames: list[list[tuple[list[float], float]]], t0: float = 0.0
) -> list[dict]:
    """Feed frames of (box, score) from ``t0`` on; return {detection: track id} per frame."""
    out = []
    for f, dets in enumerate(frames):
        xyxy = np.array([b for b, _ in dets], dtype=np.float32).reshape(-1, 4)
        scores = np.array([s for _, s in dets], dtype=np.float32)
        step = tracker.update(Detections(xyxy, scores), t0 + f / FPS)
        out.append(dict(zip(step.detection_index.tolist(), step.track_ids.tolist(), strict=True)))
    return out


def walking(x0: float, speed: float, n: int, score: float = 0.9) -> list[tuple[list[float], float]]:
    return [(person(x0 + speed * f), score) for f in range(n)]


def test_one_person_keeps_one_id() -> None:
    frames = [[d] for d in walking(100, 5, 30)]
    ids = {i for frame in run(ByteTracker(fps=FPS), frames) for i in frame.values()}
    assert ids == {1}


@pytest.mark.parametrize(
    ("case", "expected_ids"),
    [
        ("crossing", {1, 2}),
        ("occlusion_low_score", {1, 2}),
        ("gap_then_reappear", {1}),
        ("gap_too_long", {1, 2}),
    ],
)
def test_association_cases(case: str, expected_ids: set[int]) -> None:
    n = 40
    if case == "crossing":
        # two people walk towards each other at different heights in the image and cross
        a = [(person(100 + 8 * f, top=100), 0.9) for f in range(n)]
        b = [(person(420 - 8 * f, top=112), 0.9) for f in range(n)]
        frames = [[a[f], b[f]] for f in range(n)]
    elif case == "occlusion_low_score":
        # b passes behind a: its score drops to 0.2 (only the low stage can keep it)
        a = [(person(260, top=110, h=90), 0.9) for _ in range(n)]
        b = [(person(160 + 5 * f, top=100), 0.2 if 15 <= f < 25 else 0.9) for f in range(n)]
        frames = [[a[f], b[f]] for f in range(n)]
    elif case == "gap_then_reappear":
        # 1.5 s without any detection (below max_lost_s = 3 s): same id afterwards
        frames = [[d] if not 10 <= f < 25 else [] for f, d in enumerate(walking(100, 3, n))]
    else:
        frames = [[d] if f < 5 or f >= 40 else [] for f, d in enumerate(walking(100, 1, 45))]
    result = run(ByteTracker(fps=FPS), frames)
    assert {i for frame in result for i in frame.values()} == expected_ids
    if case == "crossing":
        # identities follow the people through the crossing: detection 0 is always "a"
        first = result[1][0]
        assert all(frame[0] == first for frame in result[1:])
    if case == "occlusion_low_score":
        assert all(1 in frame for frame in result[1:])  # b tracked through the occlusion


def test_low_score_detection_never_starts_a_track() -> None:
    frames = [[(person(100 + 2 * f), 0.3)] for f in range(10)]
    assert all(frame == {} for frame in run(ByteTracker(fps=FPS), frames))


def test_one_frame_flicker_uses_no_id() -> None:
    counter = IdCounter()
    tracker = ByteTracker(fps=FPS, ids=counter)
    frames = [[d] for d in walking(100, 2, 5)]
    frames[2].append((person(500), 0.9))  # appears for one frame only
    run(tracker, frames)
    assert counter() == 2  # only the real person took an id


def test_trackers_have_independent_id_counters() -> None:
    frames = [[d] for d in walking(100, 2, 5)]
    a, b = ByteTracker(fps=FPS), ByteTracker(fps=FPS)
    assert run(a, frames)[-1] == run(b, frames)[-1] == {0: 1}


def test_ended_and_finish_report_track_ids() -> None:
    tracker = ByteTracker(TrackerConfig(max_lost_s=0.5), fps=FPS)
    run(tracker, [[d] for d in walking(100, 2, 5)])
    ended = [tracker.update(Detections.empty(), 0.5 + f / FPS).ended for f in range(8)]
    assert [i for step in ended for i in step] == [1]
    run(tracker, [[d] for d in walking(100, 2, 3)], t0=2.0)
    assert tracker.finish() == [2]
    assert tracker.active_ids == []


def test_dropped_frames_are_predicted_over() -> None:
    # a fast walker observed at 10 fps, then only every third frame: still one id
    tracker = ByteTracker(fps=FPS)
    for f in range(30):
        if f < 10 or f % 3 == 0:
            step = tracker.update(
                Detections.from_arrays(np.array([person(50 + 12 * f)]), np.array([0.9])), f / FPS
            )
    assert step.track_ids.tolist() == [1]


def test_appearance_cue_bridges_a_jump() -> None:
    # the box jumps (a camera hiccup) so IoU alone is 0; appearance re-associates it
    cfg = TrackerConfig(appearance_proximity_iou=0.0)
    emb = np.array([[1.0, 0.0]], dtype=np.float32)
    for use_appearance, expected in ((False, {1, 2}), (True, {1})):
        tracker = ByteTracker(cfg, fps=FPS)
        seen = set()
        for f in range(10):
            x = 100 + 2 * f + (200 if f >= 5 else 0)
            det = Detections.from_arrays(np.array([person(x)]), np.array([0.9]))
            step = tracker.update(det, f / FPS, emb if use_appearance else None)
            seen |= set(step.track_ids.tolist())
        assert seen == expected


def _walk_with_looks(looks: list[np.ndarray], config: TrackerConfig) -> list:
    """One walker whose detection embeddings are ``looks`` (one per frame); the steps."""
    tracker = ByteTracker(config, fps=FPS)
    steps = []
    for f, look in enumerate(looks):
        det = Detections.from_arrays(np.array([person(100 + 2 * f)]), np.array([0.9]))
        steps.append(tracker.update(det, f / FPS, look[None].astype(np.float32)))
    return steps


A_LOOK, B_LOOK = np.array([1.0, 0.0]), np.array([0.0, 1.0])


def test_a_track_that_switches_to_another_person_is_cut() -> None:
    # the same box goes on, but from frame 10 on it shows someone else (two people crossed)
    looks = [A_LOOK] * 10 + [B_LOOK] * 10
    steps = _walk_with_looks(looks, TrackerConfig(switch_cosine=0.5, switch_frames=3))
    ids = [step.track_ids.tolist() for step in steps]
    assert ids[:12] == [[1]] * 12  # the switch is only believed after 3 frames in a row
    assert ids[12:] == [[2]] * 8
    assert steps[12].ended == [1]  # the first person's track ends where the switch is seen
    assert all(step.ended == [] for i, step in enumerate(steps) if i != 12)


@pytest.mark.parametrize("cosine, frames", [(None, 3), (0.5, 20)])
def test_no_cut_when_off_or_the_switch_is_too_short(cosine: float | None, frames: int) -> None:
    looks = [A_LOOK] * 10 + [B_LOOK] * 10
    steps = _walk_with_looks(looks, TrackerConfig(switch_cosine=cosine, switch_frames=frames))
    assert {i for step in steps for i in step.track_ids.tolist()} == {1}


def test_brief_occlusions_do_not_cut_a_track() -> None:
    # two frames at a time look wrong (a passer-by covers the person): never 3 in a row
    rng = np.random.default_rng(0)
    looks = []
    for f in range(40):
        look = B_LOOK if f % 7 in (3, 4) else A_LOOK + 0.2 * rng.normal(size=2)
        looks.append(look / np.linalg.norm(look))
    steps = _walk_with_looks(looks, TrackerConfig(switch_cosine=0.5, switch_frames=3))
    assert {i for step in steps for i in step.track_ids.tolist()} == {1}


@pytest.mark.parametrize(
    "bad",
    [
        {"low_score": 0.7},  # above high_score
        {"new_track_score": 0.4},  # below high_score
    ],
)
def test_config_rejects_unordered_scores(bad: dict) -> None:
    with pytest.raises(ValueError, match="low_score <= high_score <= new_track_score"):
        TrackerConfig(**bad)


def test_rejects_time_going_backwards_and_bad_embeddings() -> None:
    tracker = ByteTracker(fps=FPS)
    tracker.update(Detections.empty(), 1.0)
    with pytest.raises(ValueError, match="backwards"):
        tracker.update(Detections.empty(), 0.5)
    det = Detections.from_arrays(np.array([person(100)]), np.array([0.9]))
    with pytest.raises(ValueError, match="2 embeddings for 1 detections"):
        tracker.update(det, 2.0, np.zeros((2, 4), np.float32))


def test_kalman_follows_constant_velocity() -> None:
    kf = KalmanBoxFilter()
    box = np.array([[100.0, 100.0, 130.0, 180.0]])
    mean, cov = kf.initiate(xyxy_to_xywh(box))
    for f in range(1, 20):
        mean, cov = kf.predict(mean, cov)
        mean, cov = kf.update(mean, cov, xyxy_to_xywh(box + np.array([5 * f, 0, 5 * f, 0])))
    mean, _ = kf.predict(mean, cov, 2.0)
    np.testing.assert_allclose(
        xywh_to_xyxy(mean[:, :4])[0], box[0] + np.array([105, 0, 105, 0]), atol=1.0
    )


def test_assign_respects_the_gate() -> None:
    cost = np.array([[0.1, 0.9], [0.95, 0.99]])
    result = assign(cost, max_cost=0.5)
    assert result.rows.tolist() == [0] and result.cols.tolist() == [0]
    assert result.unmatched_rows.tolist() == [1] and result.unmatched_cols.tolist() == [1]

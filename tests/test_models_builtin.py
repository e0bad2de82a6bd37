"""Built-in models, the detection/re-ID metrics and the training targets (no training here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sightline.config import BuiltinDetectorConfig, BuiltinEmbedderConfig
from sightline.evaluation import EvaluationError
from sightline.evaluation.commands import _check_held_out
from sightline.evaluation.detection import average_precision_50
from sightline.evaluation.reid import cross_camera_metrics
from sightline.models import Detections, build_detector, build_embedder
from sightline.models.builtin_detector import STRIDE, decode_heatmap, frames_to_input
from sightline.training.detector import build_targets, detector_loss
from sightline.training.reid import batch_hard_triplet


@pytest.mark.parametrize(
    ("xyxy", "scores", "message"),
    [
        (np.zeros((2, 3), np.float32), np.zeros(2, np.float32), r"\(K, 4\)"),
        (np.zeros((2, 4), np.float32), np.zeros(3, np.float32), r"\(2,\)"),
        (np.zeros((2, 4), np.float64), np.zeros(2, np.float32), "float32"),
    ],
)
def test_detections_validate_shapes(xyxy, scores, message):
    with pytest.raises(ValueError, match=message):
        Detections(xyxy, scores)


def test_detections_from_arrays_sorts_and_filters():
    det = Detections.from_arrays([[0, 0, 1, 1], [2, 2, 3, 3]], [0.2, 0.9])
    assert det.scores.tolist() == pytest.approx([0.9, 0.2])
    assert det.xyxy[0].tolist() == [2, 2, 3, 3]
    assert len(det.above(0.5)) == 1
    assert det.scaled(2, 3).xyxy[0].tolist() == [4, 6, 6, 9]


def test_builtin_detector_runs_on_frames_of_any_size():
    detector = build_detector(BuiltinDetectorConfig(), prefer_gpu=False)
    frames = np.full((3, 200, 300, 3), 90, np.uint8)
    out = detector.detect(frames)
    assert len(out) == 3
    for det in out:
        assert det.xyxy.dtype == np.float32
        assert np.all(det.xyxy[:, [0, 2]] <= 300) and np.all(det.xyxy[:, [1, 3]] <= 200)
    assert detector.detect(np.zeros((0, 200, 300, 3), np.uint8)) == []


@pytest.mark.parametrize(
    "bad", [np.zeros((2, 20, 20), np.uint8), np.zeros((1, 8, 8, 3), np.float32)]
)
def test_builtin_detector_rejects_bad_frames(bad):
    detector = build_detector(BuiltinDetectorConfig(), prefer_gpu=False)
    with pytest.raises(ValueError, match="frames must"):
        detector.detect(bad)


def test_builtin_embedder_vectors_are_unit_length():
    embedder = build_embedder(BuiltinEmbedderConfig(), prefer_gpu=False)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in [(90, 30), (40, 15)]]
    vectors = embedder.embed(crops)
    assert vectors.shape == (2, embedder.dim)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)


def test_missing_weights_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pt"):
        build_detector(BuiltinDetectorConfig(weights=str(tmp_path / "nope.pt")))


def test_frames_to_input_pads_to_multiple_of_16():
    x, scale = frames_to_input(np.zeros((1, 360, 640, 3), np.uint8), 320)
    assert scale == 0.5
    assert x.shape == (1, 3, 192, 320)


def test_targets_decode_back_to_the_boxes():
    """Encoding boxes as targets and decoding them as if the net predicted them is lossless."""
    boxes = np.array([[20.0, 10.0, 36.0, 70.0], [100.0, 30.0, 112.5, 66.0]], np.float32)
    h, w = 96 // STRIDE, 160 // STRIDE
    t = build_targets(boxes, np.array([1.0, 0.8]), h, w)
    out = torch.full((1, 5, h, w), -20.0)
    for (cy, cx), size, off in zip(t.centres, t.size, t.offset, strict=True):
        out[0, 0, cy, cx] = 20.0
        out[0, 1:3, cy, cx] = torch.as_tensor(size)
        out[0, 3:5, cy, cx] = torch.as_tensor(off)
    decoded, scores = decode_heatmap(out, 0.5)[0]
    order = np.argsort(decoded[:, 0])
    assert decoded[order] == pytest.approx(boxes, abs=1e-3)
    assert len(scores) == 2


def test_hidden_people_are_ignored_not_negatives():
    boxes = np.array([[40.0, 8.0, 56.0, 72.0]], np.float32)
    t = build_targets(boxes, np.array([0.1]), 24, 40)
    assert len(t.centres) == 0 and t.ignore.any()
    loss_ignored = detector_loss(torch.zeros(1, 5, 24, 40), [t])
    t_plain = build_targets(boxes[:0], np.zeros(0), 24, 40)
    assert float(loss_ignored) < float(detector_loss(torch.zeros(1, 5, 24, 40), [t_plain]))


def _frames_with_boxes(n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(1)
    boxes, vis = [], []
    for _ in range(n):
        xy = rng.uniform(0, 500, (3, 2))
        boxes.append(np.hstack([xy, xy + np.array([20, 70])]).astype(np.float32))
        vis.append(np.array([1.0, 0.9, 0.2]))
    return boxes, vis


def test_ap50_perfect_missing_and_ignored():
    boxes, vis = _frames_with_boxes(5)
    perfect = [Detections.from_arrays(b, [0.9, 0.8, 0.7]) for b in boxes]
    assert average_precision_50(perfect, boxes, vis)["ap50"] == pytest.approx(1.0)
    # the third person is only 20 % visible: missing it costs nothing
    visible_only = [Detections.from_arrays(b[:2], [0.9, 0.8]) for b in boxes]
    assert average_precision_50(visible_only, boxes, vis)["ap50"] == pytest.approx(1.0)
    # missing a visible person does
    half = [Detections.from_arrays(b[:1], [0.9]) for b in boxes]
    assert average_precision_50(half, boxes, vis)["ap50"] < 0.6
    # boxes shifted by half their width are not matches at IoU 0.5
    shifted = [Detections.from_arrays(b + np.array([12, 0, 12, 0]), [0.9, 0.8, 0.7]) for b in boxes]
    assert average_precision_50(shifted, boxes, vis)["ap50"] < 0.1


def test_cross_camera_metrics_perfect_and_confused():
    pid = np.array([1, 1, 2, 2, 3, 3])
    cams = np.array(["a", "b", "a", "b", "a", "b"])
    perfect = np.eye(3)[pid - 1].astype(np.float32)
    m = cross_camera_metrics(perfect, pid, cams)
    assert m["rank1"] == pytest.approx(1.0) and m["mAP"] == pytest.approx(1.0)
    assert m["queries"] == 6
    swapped = np.eye(3)[[0, 1, 1, 0, 2, 2]].astype(np.float32)  # persons 1 and 2 confused
    m = cross_camera_metrics(swapped, pid, cams)
    assert m["rank1"] == pytest.approx(2 / 6)


def test_batch_hard_triplet_is_zero_when_separated():
    emb = torch.tensor([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert float(batch_hard_triplet(emb, labels, 0.3)) == 0.0
    assert float(batch_hard_triplet(emb, torch.tensor([0, 1, 0, 1]), 0.3)) > 1.0


def test_eval_refuses_training_seeds():
    with pytest.raises(EvaluationError, match="seed 1003"):
        _check_held_out(1003, {"train_seeds": [1001, 1003], "validation_seed": 1007})
    _check_held_out(21, {"train_seeds": [1001, 1003], "validation_seed": 1007})
    # the site the photo calibration is fitted on is never a held-out site either
    with pytest.raises(EvaluationError, match="seed 1016"):
        _check_held_out(1016, {"train_seeds": [1001], "validation_seed": 1007})


def test_a_body_part_box_inside_a_taller_person_is_dropped():
    from sightline.models.builtin_detector import _part_of_a_larger_box

    boxes = torch.tensor(
        [
            [100.0, 50.0, 160.0, 250.0],  # a tall, near person
            [110.0, 60.0, 150.0, 140.0],  # a peak on their torso
            [150.0, 40.0, 190.0, 180.0],  # someone beside them, overlapping in part
        ]
    )
    part = _part_of_a_larger_box(boxes, torch.tensor([0.9, 0.5, 0.6]))
    assert part.tolist() == [False, True, False]
    # the same inner box scoring higher than the tall one is not a part of it
    assert not _part_of_a_larger_box(boxes[:2], torch.tensor([0.4, 0.5])).any()

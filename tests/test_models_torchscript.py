"""The bring-your-own TorchScript backends, with small scripted/traced stand-in models.

Each stand-in's output is known for its input, so the tests can assert exact boxes in
original-frame pixels (letterbox undone), thresholding, NMS and the embedder's
preprocessing, plus the errors a user sees for a wrong file or format.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sightline.config import ModelsConfig, TorchScriptDetectorConfig, TorchScriptEmbedderConfig
from sightline.models import adapters, torchscript
from sightline.models.adapters import box_iou, decode_yolov8_output, nms
from sightline.models.registry import build_detector, build_embedder
from sightline.models.torchscript import IMAGENET_MEAN, IMAGENET_STD

# TorchScript is deprecated upstream, but it is the format these backends exist to load.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning"
)

# ------------------------------------------------------------------ stand-in models


class FixedBoxes(nn.Module):
    """'boxes' format: the same boxes (model-input pixels) and scores for every image."""

    def __init__(self, boxes: list[list[float]], scores: list[float]) -> None:
        super().__init__()
        self.register_buffer("boxes", torch.tensor(boxes)[None])
        self.register_buffer("scores", torch.tensor(scores)[None])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        return self.boxes.expand(n, -1, -1), self.scores.expand(n, -1)


class PerImageBoxes(nn.Module):
    """'boxes' format as a list of per-image pairs: image i gets the first i + 1 boxes."""

    def __init__(self, boxes: list[list[float]]) -> None:
        super().__init__()
        self.register_buffer("boxes", torch.tensor(boxes))

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out: list[tuple[torch.Tensor, torch.Tensor]] = []
        for i in range(x.shape[0]):
            out.append((self.boxes[: i + 1], torch.full([i + 1], 0.9)))
        return out


class BrightBox(nn.Module):
    """'boxes' format: one box around the bright pixels of each image (score 1).

    Finds the bright rectangle in what the model actually sees, so it checks the letterbox
    (resize, centring, grey 114 padding) and its undoing end to end.
    """

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = x.amax(dim=1) > 0.72  # halfway between pad grey (114/255) and white
        h, w = mask.shape[1], mask.shape[2]
        cols, rows = mask.any(dim=1), mask.any(dim=2)
        xs = torch.arange(w, device=x.device)
        ys = torch.arange(h, device=x.device)
        x1 = torch.where(cols, xs, torch.full_like(xs, w)).amin(1)
        x2 = torch.where(cols, xs + 1, torch.zeros_like(xs)).amax(1)
        y1 = torch.where(rows, ys, torch.full_like(ys, h)).amin(1)
        y2 = torch.where(rows, ys + 1, torch.zeros_like(ys)).amax(1)
        boxes = torch.stack([x1, y1, x2, y2], dim=1).float()[:, None, :]
        return boxes, cols.any(dim=1).float()[:, None]


class FakeYoloHead(nn.Module):
    """'yolov8' format: a fixed raw head output (1, 4 + classes, anchors) for every image."""

    def __init__(self, rows: list[list[float]]) -> None:
        super().__init__()
        self.register_buffer("out", torch.tensor(rows).T[None].contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out.expand(x.shape[0], -1, -1)


class ChannelMean(nn.Module):
    """Embedder: per-channel mean of its (N, 3, 32, 16) input; fails on any other size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] != 32 or x.shape[3] != 16:
            raise RuntimeError("expected a (N, 3, 32, 16) input")
        return x.mean(dim=(2, 3))


class NoHalf(nn.Module):
    """'boxes' format: one fixed box, but fails on fp16 input as some traced models do."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dtype == torch.float16:
            raise RuntimeError("expected scalar type Float but found Half")
        n = x.shape[0]
        box = torch.tensor([0.0, 0.0, 8.0, 8.0], device=x.device)
        return box.expand(n, 1, 4), torch.ones(n, 1, device=x.device)


# anchors: cx, cy, w, h, then scores for classes person, car, dog (model input 64x64)
YOLO_ROWS = [
    [20, 30, 10, 20, 0.9, 0.1, 0.0],  # person -> xyxy (15, 20, 25, 40)
    [21, 31, 10, 20, 0.8, 0.0, 0.0],  # near-duplicate of the first: NMS drops it
    [44, 32, 8, 16, 0.6, 0.0, 0.0],  # person -> (40, 24, 48, 40)
    [10, 40, 6, 6, 0.7, 0.9, 0.0],  # a car (best class) with a fair person score: ignored
    [50, 20, 6, 6, 0.2, 0.0, 0.0],  # person below the 0.3 threshold
    [28, 30, 10, 20, 0.5, 0.0, 0.0],  # overlaps the first by IoU 0.11 only: kept
    [30, 40, 4, 8, 0.1, 0.0, 0.8],  # a dog -> (28, 36, 32, 44)
    [0, 0, 0, 0, 0.0, 0.0, 0.0],
    [0, 0, 0, 0, 0.0, 0.0, 0.0],
    [0, 0, 0, 0, 0.0, 0.0, 0.0],
]


def save_scripted(module: nn.Module, path: Path) -> str:
    """``torch.jit.script`` a module in eval mode into ``path``; returns the path."""
    torch.jit.script(module.eval()).save(str(path))
    return str(path)


def detector_config(path: str, fmt: str, **fields: object) -> TorchScriptDetectorConfig:
    """A torchscript detector config (defaults of the config class for the rest)."""
    return TorchScriptDetectorConfig(type="torchscript", path=path, format=fmt, **fields)


def frames_of(height: int, width: int, count: int = 1, value: int = 0) -> np.ndarray:
    """``count`` frames (H, W, 3) uint8 filled with ``value``."""
    return np.full((count, height, width, 3), value, np.uint8)


# ------------------------------------------------------------------ detector: 'boxes' format


def test_boxes_format_undoes_letterbox_clips_and_thresholds(tmp_path: Path) -> None:
    # 160x80 frames into a 64x48 input: scale 0.4, resized to 64x32, padded 8 rows on top.
    model = FixedBoxes(
        boxes=[
            [16, 16, 32, 40],  # -> (40, 20, 80, 80)
            [-4, 4, 8, 12],  # out of the image on the left and top: clipped to (0, 0, 20, 10)
            [10, 0, 20, 6],  # entirely in the top padding: empty after clipping, dropped
            [40, 30, 70, 47],  # into the bottom padding: clipped to (100, 55, 160, 80)
            [5, 10, 15, 20],  # scores below the threshold
        ],
        scores=[0.8, 0.9, 0.95, 0.6, 0.2],
    )
    path = save_scripted(model, tmp_path / "fixed.pt")
    detector = build_detector(
        detector_config(path, "boxes", input_size=(64, 48), score_threshold=0.3),
        prefer_gpu=False,
    )
    assert detector.device == "cpu"
    results = detector.detect(frames_of(80, 160, count=2))
    assert len(results) == 2
    for dets in results:
        np.testing.assert_allclose(
            dets.xyxy, [[0, 0, 20, 10], [40, 20, 80, 80], [100, 55, 160, 80]], atol=1e-4
        )
        np.testing.assert_allclose(dets.scores, [0.9, 0.8, 0.6], atol=1e-6)
        assert dets.xyxy.dtype == np.float32


def test_boxes_format_accepts_per_image_pairs(tmp_path: Path) -> None:
    path = save_scripted(PerImageBoxes([[0, 0, 32, 32], [32, 32, 64, 64]]), tmp_path / "p.pt")
    detector = build_detector(detector_config(path, "boxes", input_size=(64, 64)), prefer_gpu=False)
    first, second = detector.detect(frames_of(128, 128, count=2))
    np.testing.assert_allclose(first.xyxy, [[0, 0, 64, 64]])
    np.testing.assert_allclose(second.xyxy, [[0, 0, 64, 64], [64, 64, 128, 128]])


@pytest.mark.parametrize(
    ("height", "width", "input_size"),
    [(120, 100, (96, 64)), (50, 200, (64, 64)), (64, 64, (64, 64)), (30, 40, (96, 96))],
)
def test_letterbox_round_trip_finds_the_bright_rectangle(
    tmp_path: Path, height: int, width: int, input_size: tuple[int, int]
) -> None:
    path = save_scripted(BrightBox(), tmp_path / "bright.pt")
    detector = build_detector(
        detector_config(path, "boxes", input_size=input_size), prefer_gpu=False
    )
    frames = frames_of(height, width, count=2, value=114)
    rects = [
        (round(0.2 * width), round(0.3 * height), round(0.6 * width), round(0.8 * height)),
        (0, round(0.5 * height), width, height),  # touching three edges
    ]
    for frame, (x1, y1, x2, y2) in zip(frames, rects, strict=True):
        frame[y1:y2, x1:x2] = 255
    # A model-input pixel spans 1/scale frame pixels: the box is exact up to that blur.
    tolerance = 1.0 + max(width / input_size[0], height / input_size[1])
    for dets, rect in zip(detector.detect(frames), rects, strict=True):
        assert len(dets) == 1
        np.testing.assert_allclose(dets.xyxy[0], rect, atol=tolerance)


def test_read_only_frames_and_empty_batch(tmp_path: Path) -> None:
    path = save_scripted(BrightBox(), tmp_path / "bright.pt")
    detector = build_detector(detector_config(path, "boxes", input_size=(32, 32)), False)
    frames = frames_of(20, 30, count=1, value=114)
    frames.setflags(write=False)  # as frames from Ray's object store are
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(detector.detect(frames)[0]) == 0  # nothing bright: score 0
    assert detector.detect(frames_of(20, 30, count=0)) == []


# ------------------------------------------------------------------ detector: 'yolov8' format


@pytest.fixture(scope="module")
def yolo_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The fake YOLOv8 head, scripted."""
    return save_scripted(FakeYoloHead(YOLO_ROWS), tmp_path_factory.mktemp("yolo") / "y.pt")


def test_yolov8_keeps_people_applies_nms_and_undoes_letterbox(yolo_file: str) -> None:
    # 128x64 frames into 64x64: scale 0.5, resized to 64x32, padded 16 rows on top.
    detector = build_detector(
        detector_config(yolo_file, "yolov8", input_size=(64, 64), score_threshold=0.3),
        prefer_gpu=False,
    )
    results = detector.detect(frames_of(64, 128, count=3))
    assert len(results) == 3
    for dets in results:
        np.testing.assert_allclose(
            dets.xyxy, [[30, 8, 50, 48], [80, 16, 96, 48], [46, 8, 66, 48]], atol=1e-4
        )
        np.testing.assert_allclose(dets.scores, [0.9, 0.6, 0.5], atol=1e-6)


def test_yolov8_person_class_and_nms_iou_come_from_the_config(yolo_file: str) -> None:
    dogs = build_detector(
        detector_config(yolo_file, "yolov8", input_size=(64, 64), person_class=2), False
    )
    (dets,) = dogs.detect(frames_of(64, 128))
    np.testing.assert_allclose(dets.xyxy, [[56, 40, 64, 56]], atol=1e-4)
    np.testing.assert_allclose(dets.scores, [0.8], atol=1e-6)
    # IoU of the near-duplicate with the first box is 171/229 = 0.75: a looser NMS keeps it.
    loose = build_detector(
        detector_config(yolo_file, "yolov8", input_size=(64, 64), nms_iou=0.8), False
    )
    (dets,) = loose.detect(frames_of(64, 128))
    np.testing.assert_allclose(dets.scores, [0.9, 0.8, 0.6, 0.5], atol=1e-6)


def test_yolov8_adapter_accepts_a_tuple_and_caps_detections() -> None:
    head = FakeYoloHead(YOLO_ROWS)(torch.zeros(2, 3, 64, 64))
    per_image = decode_yolov8_output((head, [head]), 0, 0.3, 0.5, max_detections=2)
    assert len(per_image) == 2
    for boxes, scores in per_image:
        torch.testing.assert_close(boxes, torch.tensor([[15.0, 20, 25, 40], [40, 24, 48, 40]]))
        torch.testing.assert_close(scores, torch.tensor([0.9, 0.6]))


# ------------------------------------------------------------------ NMS against brute force


def brute_force_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """The textbook greedy loop, one pair at a time in float64."""

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union

    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if all(iou(boxes[i], boxes[k]) <= iou_threshold for k in kept):
            kept.append(int(i))
    return kept


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("vectorised_steps", [16, 0])  # 0: the sequential fallback only
def test_nms_matches_brute_force(
    seed: int, iou_threshold: float, vectorised_steps: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adapters, "NMS_VECTORISED_STEPS", vectorised_steps)
    rng = np.random.default_rng(seed)
    count = 80
    centres = rng.uniform(0, 100, (count, 2))
    sizes = rng.uniform(4, 40, (count, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
    scores = rng.permutation(count) / count + 0.001  # distinct: no tie-breaking differences
    kept = nms(torch.tensor(boxes, dtype=torch.float64), torch.tensor(scores), iou_threshold)
    assert kept.tolist() == brute_force_nms(boxes, scores, iou_threshold)


def test_nms_long_suppression_chain_matches_brute_force() -> None:
    # Boxes sliding 1 px at a time with falling scores: every 4th is kept, and each one's
    # fate depends on the previous kept one, a chain too long for the vectorised steps.
    count = 200
    x = np.arange(count, dtype=np.float64)
    boxes = np.stack([x, np.zeros(count), x + 10, np.full(count, 10.0)], axis=1)
    scores = np.linspace(1.0, 0.01, count)
    kept = nms(torch.tensor(boxes), torch.tensor(scores), 0.5)
    assert kept.tolist() == brute_force_nms(boxes, scores, 0.5) == list(range(0, count, 4))


def test_nms_edge_cases() -> None:
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []
    # A chain: 0 suppresses 1, so 1 does not suppress 2 although they overlap.
    boxes = torch.tensor([[0.0, 0, 10, 10], [2, 0, 12, 10], [4, 0, 14, 10]])
    assert nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist() == [0, 2]
    iou = box_iou(boxes[:1], boxes)
    torch.testing.assert_close(iou, torch.tensor([[1.0, 80 / 120, 60 / 140]]))


# ------------------------------------------------------------------ embedder


def test_embedder_resizes_and_normalises_like_imagenet(tmp_path: Path) -> None:
    path = save_scripted(ChannelMean(), tmp_path / "mean.pt")
    embedder = build_embedder(
        TorchScriptEmbedderConfig(type="torchscript", path=path, input_size=(16, 32)),
        prefer_gpu=False,
    )
    assert embedder.dim == 3
    colours = [(200, 30, 90), (0, 0, 0), (255, 255, 255)]
    crops = [
        np.full((h, w, 3), colour, np.uint8)
        for (h, w), colour in zip([(10, 5), (300, 100), (32, 16)], colours, strict=True)
    ]
    vectors = embedder.embed(crops)
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    expected = (np.array(colours) / 255.0 - mean) / std
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_traced_embedder_gives_unit_vectors_of_its_dim(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 24)
    ).eval()
    path = tmp_path / "reid.pt"
    torch.jit.trace(net, torch.rand(2, 3, 64, 32)).save(str(path))
    embedder = build_embedder(
        TorchScriptEmbedderConfig(type="torchscript", path=str(path), input_size=(32, 64)),
        prefer_gpu=False,
    )
    assert embedder.dim == 24
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(90, 40), (7, 3)]]
    vectors = embedder.embed(crops)
    assert vectors.shape == (2, 24)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(embedder.embed(crops), vectors)  # deterministic
    assert embedder.embed([]).shape == (0, 24)


# ------------------------------------------------------------------ fp16 (as on CUDA)


@pytest.fixture
def fp16_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the backends pick fp16 as on a GPU, but on the CPU (which runs fp16 too)."""
    monkeypatch.setattr(torchscript, "select_device", lambda prefer_gpu=True: ("cpu", True))


@pytest.mark.usefixtures("fp16_on_cpu")
def test_fp16_embedder_matches_float32(tmp_path: Path) -> None:
    path = save_scripted(ChannelMean(), tmp_path / "mean.pt")
    embedder = build_embedder(
        TorchScriptEmbedderConfig(type="torchscript", path=path, input_size=(16, 32))
    )
    assert embedder._model.half
    vectors = embedder.embed([np.full((40, 20, 3), (200, 30, 90), np.uint8)])
    assert vectors.dtype == np.float32
    expected = (np.array([200, 30, 90]) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(vectors[0], expected / np.linalg.norm(expected), atol=5e-3)


@pytest.mark.usefixtures("fp16_on_cpu")
def test_model_failing_in_fp16_falls_back_to_float32(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = save_scripted(NoHalf(), tmp_path / "nohalf.pt")
    detector = build_detector(detector_config(path, "boxes", input_size=(16, 16)))
    assert not detector._model.half
    assert "nohalf.pt fails in fp16" in caplog.text
    np.testing.assert_allclose(detector.detect(frames_of(32, 32))[0].xyxy, [[0, 0, 16, 16]])


# ------------------------------------------------------------------ configs and errors


def test_site_config_snippet_with_relative_paths(tmp_path: Path, yolo_file: str) -> None:
    (tmp_path / "models").mkdir()
    Path(tmp_path / "models" / "yolo.pt").write_bytes(Path(yolo_file).read_bytes())
    save_scripted(ChannelMean(), tmp_path / "models" / "osnet.pt")
    models = ModelsConfig.model_validate(
        {
            "detector": {
                "type": "torchscript",
                "path": "models/yolo.pt",
                "format": "yolov8",
                "input_size": [64, 64],
                "person_class": 0,
                "score_threshold": 0.3,
                "nms_iou": 0.5,
            },
            "embedder": {"type": "torchscript", "path": "models/osnet.pt", "input_size": [16, 32]},
        },
        context={"base_dir": tmp_path},
    )
    assert len(build_detector(models.detector, False).detect(frames_of(64, 64))[0]) == 3
    assert build_embedder(models.embedder, False).dim == 3


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope" / "model.torchscript")
    with pytest.raises(FileNotFoundError, match=r"nope/model\.torchscript"):
        build_detector(detector_config(missing, "yolov8"), prefer_gpu=False)
    with pytest.raises(FileNotFoundError, match=r"nope/model\.torchscript"):
        build_embedder(TorchScriptEmbedderConfig(type="torchscript", path=missing), False)


def test_not_torchscript_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, path)  # a state dict, not an export
    with pytest.raises(ValueError, match=r"weights\.pt is not a TorchScript file"):
        build_detector(detector_config(str(path), "boxes"), prefer_gpu=False)


def test_wrong_boxes_shape_names_expected_actual_and_file(tmp_path: Path) -> None:
    model = FixedBoxes([[0, 0, 1, 1, 0.5]] * 3, [0.5] * 3)  # five columns, not four
    path = save_scripted(model, tmp_path / "five.pt")
    with pytest.raises(ValueError, match=r"five\.pt") as info:
        build_detector(detector_config(path, "boxes", input_size=(32, 32)), False)
    assert "(N, K, 4)" in str(info.value)
    assert "(1, 3, 5)" in str(info.value)


@pytest.mark.parametrize(
    ("rows", "person_class", "expected"),
    [
        (YOLO_ROWS, 3, "num_classes > person_class=3"),  # only 3 classes
        ([r[:7] for r in YOLO_ROWS[:5]], 0, r"more anchors than rows, got \(1, 7, 5\)"),
    ],
)
def test_wrong_yolov8_shape_names_expected_actual_and_file(
    tmp_path: Path, rows: list[list[float]], person_class: int, expected: str
) -> None:
    path = save_scripted(FakeYoloHead(rows), tmp_path / "head.pt")
    config = detector_config(path, "yolov8", input_size=(64, 64), person_class=person_class)
    with pytest.raises(ValueError, match=expected) as info:
        build_detector(config, prefer_gpu=False)
    assert "head.pt" in str(info.value)


def test_yolov8_format_on_a_boxes_model_is_caught_on_load(tmp_path: Path) -> None:
    path = save_scripted(FixedBoxes([[0, 0, 1, 1]], [0.5]), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match=r"'yolov8' output: expected .* got tuple\(Tensor"):
        build_detector(detector_config(path, "yolov8", input_size=(32, 32)), False)


def test_input_size_the_model_cannot_take_is_caught_on_load(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)).eval()
    path = tmp_path / "fixed_size.pt"
    torch.jit.trace(net, torch.rand(1, 3, 8, 8)).save(str(path))
    config = TorchScriptEmbedderConfig(type="torchscript", path=str(path), input_size=(16, 16))
    with pytest.raises(ValueError, match=r"fixed_size\.pt: forward failed .* \(1, 3, 16, 16\)"):
        build_embedder(config, prefer_gpu=False)


def test_embedder_with_unpooled_output_names_the_shape(tmp_path: Path) -> None:
    net = nn.Conv2d(3, 4, 1).eval()
    path = tmp_path / "maps.pt"
    torch.jit.trace(net, torch.rand(1, 3, 8, 4)).save(str(path))
    config = TorchScriptEmbedderConfig(type="torchscript", path=str(path), input_size=(4, 8))
    with pytest.raises(ValueError, match=r"maps\.pt: expected embedder output \(N, D\)") as info:
        build_embedder(config, prefer_gpu=False)
    assert "Tensor(1, 4, 8, 4)" in str(info.value)

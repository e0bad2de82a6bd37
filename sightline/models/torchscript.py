"""Bring-your-own TorchScript backends (config ``type: torchscript``).

:class:`TorchScriptDetector` runs any TorchScript detector whose output one of the adapters
in :mod:`sightline.models.adapters` understands (``format: boxes`` or ``format: yolov8``);
:class:`TorchScriptEmbedder` runs any TorchScript re-identification model that maps a batch
of crops to ``(N, D)`` features. Both load the file with ``torch.jit.load``, run on CUDA in
fp16 when :func:`~sightline.models.core.select_device` picks it (falling back to float32 if
the model fails in fp16) and on CPU in float32 otherwise, and check the model's output once
on load with a blank batch, so a wrong ``format`` or ``input_size`` fails at startup with
the file named rather than on the first frame.

Preprocessing conventions (see ``docs/models-torchscript.md``):

- detector: frames are letterboxed to ``input_size`` as Ultralytics does (resized keeping
  aspect, centred, padded with grey 114), scaled to [0, 1], RGB, NCHW; the boxes are mapped
  back to frame pixels, clipped to the frame, and boxes left empty by clipping are dropped.
- embedder: crops are resized (stretched) to ``input_size``, scaled to [0, 1] and normalised
  with the ImageNet mean and std, RGB, NCHW: the convention of torchreid / OSNet models.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as nnf

from sightline.models.adapters import (
    PerImageBoxes,
    decode_boxes_output,
    decode_yolov8_output,
    describe_output,
)
from sightline.models.core import (
    Detections,
    DetectorBackend,
    EmbedderBackend,
    check_crops,
    check_frames,
    l2_normalise,
    select_device,
)
from sightline.models.registry import register_detector, register_embedder

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "TorchScriptDetector", "TorchScriptEmbedder"]

log = logging.getLogger(__name__)

LETTERBOX_PAD = 114
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FORMATS = ("boxes", "yolov8")


def _check_input_size(input_size: tuple[int, int]) -> tuple[int, int]:
    width, height = (int(v) for v in input_size)
    if width < 1 or height < 1:
        raise ValueError(f"input_size must be a positive (width, height), got {input_size}")
    return width, height


def _to_device_nchw(images: np.ndarray, device: str) -> torch.Tensor:
    """``(N, H, W, 3)`` or ``(H, W, 3)`` uint8 → ``(N, 3, H, W)`` float32 in [0, 1] on device."""
    with warnings.catch_warnings():
        # Frames from Ray's object store are read-only; they are only read (.float() copies).
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensor = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    if tensor.ndim == 3:
        tensor = tensor[None]
    return tensor.permute(0, 3, 1, 2).float().div_(255.0)


def _resize(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if images.shape[-2:] == (height, width):
        return images
    return nnf.interpolate(
        images, size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )


class _ScriptModel:
    """A loaded TorchScript module, its device and precision; errors name its file."""

    def __init__(self, path: str, prefer_gpu: bool, probe: Callable[[_ScriptModel], None]) -> None:
        """Load ``path`` and run ``probe`` on it (a dry run that checks the output).

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: it is not TorchScript, or fails on an input of the configured size.
        """
        self.path = str(path)
        if not Path(self.path).is_file():
            raise FileNotFoundError(f"TorchScript model file not found: {self.path}")
        self.device, self.half = select_device(prefer_gpu)
        try:
            with warnings.catch_warnings():
                # Deprecated upstream in favour of torch.export, but loading a user's
                # TorchScript file is the point of this backend; one warning per replica
                # start would be noise.
                warnings.filterwarnings("ignore", r"`torch\.jit\.load` is deprecated")
                self.module = torch.jit.load(self.path, map_location=self.device)
        except RuntimeError as e:
            raise ValueError(
                f"{self.path} is not a TorchScript file (export it with torch.jit.trace or "
                f"torch.jit.script, or Ultralytics' export(format='torchscript')): {e}"
            ) from e
        self.module.eval()
        if self.half:
            self.module.half()
            try:
                probe(self)
                return
            except RuntimeError as e:
                # Constants baked into a traced graph stay float32 under .half(), which some
                # models do not survive; float32 on the GPU is slower but correct.
                log.warning("%s fails in fp16 (%s); running it in float32", self.path, e)
                self.half = False
        self.module.float()
        try:
            probe(self)
        except RuntimeError as e:
            raise ValueError(str(e)) from e

    def __call__(self, batch: torch.Tensor) -> Any:
        """The module's output for a float32 ``(N, 3, H, W)`` batch, run in its precision."""
        batch = batch.half() if self.half else batch
        try:
            with torch.inference_mode():
                return self.module(batch)
        # An exception raised by the model's own code arrives as torch.jit.Error, which is
        # no RuntimeError; both become one RuntimeError naming the file.
        except (RuntimeError, torch.jit.Error) as e:
            raise RuntimeError(
                f"{self.path}: forward failed on an input of shape {tuple(batch.shape)} "
                f"(exported for another input_size, or for one batch size only?): {e}"
            ) from e


@dataclass(frozen=True)
class _Letterbox:
    """How frames of one size sit in the model input: resized to ``size``, at ``offset``."""

    frame_size: tuple[int, int]
    size: tuple[int, int]
    offset: tuple[int, int]

    @classmethod
    def fit(cls, frame_size: tuple[int, int], input_size: tuple[int, int]) -> _Letterbox:
        """The largest aspect-keeping fit of ``frame_size`` (w, h) in ``input_size``, centred."""
        (width, height), (in_w, in_h) = frame_size, input_size
        scale = min(in_w / width, in_h / height)
        new_w = min(in_w, max(1, round(width * scale)))
        new_h = min(in_h, max(1, round(height * scale)))
        return cls(frame_size, (new_w, new_h), ((in_w - new_w) // 2, (in_h - new_h) // 2))

    def apply(self, images: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
        """``(N, 3, H, W)`` frames in [0, 1] → ``(N, 3, in_h, in_w)`` letterboxed."""
        (new_w, new_h), (left, top), (in_w, in_h) = self.size, self.offset, input_size
        out = images.new_full((images.shape[0], 3, in_h, in_w), LETTERBOX_PAD / 255.0)
        out[:, :, top : top + new_h, left : left + new_w] = _resize(images, new_h, new_w)
        return out

    def undo(self, boxes: torch.Tensor) -> torch.Tensor:
        """Model-input xyxy boxes ``(K, 4)`` → frame pixels, clipped to the frame."""
        (width, height), (new_w, new_h), (left, top) = self.frame_size, self.size, self.offset
        shift = boxes.new_tensor([left, top, left, top])
        scale = boxes.new_tensor([width / new_w, height / new_h] * 2)
        bound = boxes.new_tensor([width, height] * 2)
        return torch.minimum((boxes - shift) * scale, bound).clamp(min=0)


class _ScriptBacked:
    """What both TorchScript backends expose about the file they run."""

    _model: _ScriptModel

    @property
    def device(self) -> str:
        """Where the model runs (``cpu`` or ``cuda``)."""
        return self._model.device

    @property
    def path(self) -> str:
        """The TorchScript file."""
        return self._model.path


@register_detector("torchscript")
class TorchScriptDetector(_ScriptBacked, DetectorBackend):
    """A user's TorchScript person detector, decoded by the adapter for its ``format``."""

    type = "torchscript"

    def __init__(
        self,
        path: str,
        format: str,
        input_size: tuple[int, int] = (640, 640),
        person_class: int = 0,
        score_threshold: float = 0.3,
        nms_iou: float = 0.5,
        prefer_gpu: bool = True,
    ) -> None:
        """Load the model at ``path`` and check its output on a blank ``input_size`` batch.

        Args:
            path: TorchScript file.
            format: ``boxes`` or ``yolov8`` (see :mod:`sightline.models.adapters`).
            input_size: (width, height) the frames are letterboxed to.
            person_class: class index of 'person' (``yolov8`` only).
            score_threshold: boxes scoring below it are dropped.
            nms_iou: IoU above which NMS drops the lower box (``yolov8`` only).
            prefer_gpu: run on CUDA (fp16) when one is visible.
        """
        if format not in FORMATS:
            raise ValueError(f"unknown detector format {format!r}; known: {list(FORMATS)}")
        self.format = format
        self.input_size = _check_input_size(input_size)
        self.person_class = person_class
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self._model = _ScriptModel(path, prefer_gpu, self._probe)

    @classmethod
    def from_config(cls, config: Any, prefer_gpu: bool = True) -> TorchScriptDetector:
        """From a :class:`~sightline.config.TorchScriptDetectorConfig`."""
        return cls(
            config.path,
            config.format,
            tuple(config.input_size),
            config.person_class,
            config.score_threshold,
            config.nms_iou,
            prefer_gpu=prefer_gpu,
        )

    def _probe(self, model: _ScriptModel) -> None:
        width, height = self.input_size
        blank = torch.full((1, 3, height, width), LETTERBOX_PAD / 255.0, device=model.device)
        self._decode(model, model(blank), 1)

    def _decode(self, model: _ScriptModel, output: Any, count: int) -> PerImageBoxes:
        try:
            if self.format == "yolov8":
                decoded = decode_yolov8_output(
                    output, self.person_class, self.score_threshold, self.nms_iou
                )
            else:
                decoded = decode_boxes_output(output)
        except ValueError as e:
            raise ValueError(f"{e} (model file {model.path}, format {self.format!r})") from e
        if len(decoded) != count:
            raise ValueError(
                f"{model.path}: expected output for {count} images (the batch size), got "
                f"{len(decoded)}: {describe_output(output)}"
            )
        return decoded

    def detect(self, frames: np.ndarray) -> list[Detections]:
        """One :class:`Detections` per frame of ``frames`` (N, H, W, 3) uint8 RGB."""
        frames = check_frames(frames)
        count, height, width, _ = frames.shape
        if count == 0:
            return []
        if height == 0 or width == 0:
            return [Detections.empty() for _ in range(count)]
        letterbox = _Letterbox.fit((width, height), self.input_size)
        batch = letterbox.apply(_to_device_nchw(frames, self.device), self.input_size)
        decoded = self._decode(self._model, self._model(batch), count)
        return [self._to_frame(boxes, scores, letterbox) for boxes, scores in decoded]

    def _to_frame(
        self, boxes: torch.Tensor, scores: torch.Tensor, letterbox: _Letterbox
    ) -> Detections:
        boxes = letterbox.undo(boxes.float())
        scores = scores.float()
        keep = (
            (scores >= self.score_threshold)
            & (boxes[:, 2] > boxes[:, 0])
            & (boxes[:, 3] > boxes[:, 1])
        )
        return Detections.from_arrays(boxes[keep].cpu().numpy(), scores[keep].cpu().numpy())


@register_embedder("torchscript")
class TorchScriptEmbedder(_ScriptBacked, EmbedderBackend):
    """A user's TorchScript re-identification model (e.g. an OSNet trace)."""

    type = "torchscript"

    def __init__(
        self, path: str, input_size: tuple[int, int] = (128, 256), prefer_gpu: bool = True
    ) -> None:
        """Load the model at ``path``; a dry run on one blank crop finds :attr:`dim`.

        Args:
            path: TorchScript file mapping ``(N, 3, h, w)`` ImageNet-normalised RGB to ``(N, D)``.
            input_size: (width, height) every crop is resized to.
            prefer_gpu: run on CUDA (fp16) when one is visible.
        """
        self.input_size = _check_input_size(input_size)
        self._mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self._dim = 0
        self._model = _ScriptModel(path, prefer_gpu, self._probe)
        self._mean = self._mean.to(self.device)
        self._std = self._std.to(self.device)

    @classmethod
    def from_config(cls, config: Any, prefer_gpu: bool = True) -> TorchScriptEmbedder:
        """From a :class:`~sightline.config.TorchScriptEmbedderConfig`."""
        return cls(config.path, tuple(config.input_size), prefer_gpu=prefer_gpu)

    @property
    def dim(self) -> int:
        """Length of the vectors :meth:`embed` returns (found by the dry run on load)."""
        return self._dim

    def _probe(self, model: _ScriptModel) -> None:
        width, height = self.input_size
        blank = torch.zeros(1, 3, height, width, device=model.device)
        self._dim = int(self._features(model, model(blank), 1).shape[1])

    @staticmethod
    def _features(model: _ScriptModel, output: Any, count: int) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.ndim != 2 or output.shape[0] != count:
            raise ValueError(
                f"{model.path}: expected embedder output (N, D) = ({count}, D), got "
                f"{describe_output(output)} (a model returning several outputs or un-pooled "
                "feature maps needs wrapping before export)"
            )
        return output

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """``(N, dim) float32`` L2-normalised vectors, one per crop (h, w, 3) uint8 RGB."""
        crops = check_crops(crops)
        if not crops:
            return np.zeros((0, self._dim), np.float32)
        width, height = self.input_size
        batch = torch.cat([_resize(_to_device_nchw(c, self.device), height, width) for c in crops])
        batch = (batch - self._mean) / self._std
        features = self._features(self._model, self._model(batch), len(crops))
        return l2_normalise(features.float().cpu().numpy())

"""Accuracy of the built-in models on held-out synthetic sites, with established metric code.

Detection AP comes from torchmetrics' ``MeanAveragePrecision`` (COCO evaluation by
pycocotools); re-ID rank-1 and mAP from torchmetrics' retrieval metrics.
"""


class EvaluationError(ValueError):
    """The evaluation cannot be run as asked (for example, a seed used in training)."""


__all__ = ["EvaluationError"]

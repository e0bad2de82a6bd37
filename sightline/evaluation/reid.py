"""Cross-camera re-ID rank-1 and mAP (Market-1501 protocol) with torchmetrics' retrieval metrics.

Every crop is a query; its gallery is every crop from *other* cameras (same-camera
matches are excluded, as they are trivially easy). Queries whose person is seen by no
other camera have nothing to find and are skipped.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.retrieval import RetrievalHitRate, RetrievalMAP

__all__ = ["cross_camera_metrics"]


def cross_camera_metrics(
    embeddings: np.ndarray, person_ids: np.ndarray, camera_ids: np.ndarray
) -> dict[str, float]:
    """Rank-1 and mAP of L2-normalised ``embeddings`` (N, D) across cameras."""
    sims = torch.as_tensor(embeddings @ embeddings.T, dtype=torch.float32)
    pid = torch.as_tensor(person_ids)
    cams = np.asarray(camera_ids)
    other_camera = torch.as_tensor(cams[:, None] != cams[None, :])
    query, gallery = torch.nonzero(other_camera, as_tuple=True)
    preds = sims[query, gallery]
    target = pid[query] == pid[gallery]
    rank1 = RetrievalHitRate(top_k=1, empty_target_action="skip")(preds, target, indexes=query)
    m_ap = RetrievalMAP(empty_target_action="skip")(preds, target, indexes=query)
    has_match = torch.zeros(len(pid), dtype=torch.bool)
    has_match[query[target]] = True
    return {
        "rank1": float(rank1),
        "mAP": float(m_ap),
        "queries": int(has_match.sum()),
        "crops": len(pid),
        "identities": len(np.unique(person_ids)),
        "cameras": len(np.unique(cams)),
    }

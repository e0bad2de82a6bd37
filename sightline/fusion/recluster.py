"""Global re-clustering: revisit the online fusion decisions of the active window at once.

Online fusion decides each tracklet when it arrives, greedily: a tracklet joined to the
wrong person stays there and then blocks the right merges (its conflicts veto them).
:func:`cluster` looks at all active tracklets together instead: constrained
average-linkage agglomerative clustering of the pairwise match log-odds (appearance,
height, and a bonus for being seen together by two cameras). Two groups are joined
while the mean log-odds between their tracklets is above a threshold and no pair of
their tracklets is a geometric conflict (two places at once, one camera seeing two
tracks at once, an impossible transition), so no cluster is ever impossible for one
person.

Only pairs above the threshold can ever bring two groups together, so the work splits
into the connected components of those pairs (each usually one person and a few
look-alikes); the cost follows the size of the components, not of the window.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

__all__ = ["cluster", "components"]


def cluster(log_odds: np.ndarray, conflict: np.ndarray, min_link: float) -> list[list[int]]:
    """Groups of indices: constrained average-linkage clustering.

    ``log_odds`` is a symmetric (N, N) matrix of pairwise match log-odds, ``conflict`` a
    symmetric boolean (N, N) matrix of pairs that cannot be one person. Groups are
    merged, best mean log-odds first, while that mean exceeds ``min_link`` and no
    pair across them conflicts. Deterministic: ties go to the lowest indices. Each
    group's indices are sorted; groups are ordered by their first index.
    """
    scores = np.asarray(log_odds, dtype=np.float64)
    conflicts = np.asarray(conflict, dtype=bool)
    n = len(scores)
    if scores.shape != (n, n) or conflicts.shape != (n, n):
        raise ValueError(f"log_odds {scores.shape} and conflict {conflicts.shape} must be (N, N)")
    if n == 0:
        return []
    edges = (scores > min_link) & ~conflicts
    np.fill_diagonal(edges, False)
    label = components(edges)
    groups: list[list[int]] = []
    for members in _members(label):
        if len(members) <= 2:  # one item, or one link that nothing blocks: one group
            groups.append([int(i) for i in members])
            continue
        sub = np.ix_(members, members)
        for part in _agglomerate(scores[sub], conflicts[sub], min_link):
            groups.append(sorted(int(members[i]) for i in part))
    return sorted(groups, key=lambda g: g[0])


def components(links: np.ndarray) -> np.ndarray:
    """Connected-component label of each item of a symmetric boolean (N, N) matrix."""
    if len(links) == 0:
        return np.zeros(0, np.int64)
    return connected_components(csr_matrix(links), directed=False)[1]


def _agglomerate(scores: np.ndarray, conflicts: np.ndarray, min_link: float) -> list[list[int]]:
    """Average linkage within one component: sums of log-odds and conflict flags are
    kept per pair of groups and updated on each merge (O(n) per merge, O(n²) to pick)."""
    n = len(scores)
    total = scores.copy()  # sum of pairwise log-odds between groups i and j
    blocked = conflicts.copy()
    size = np.ones(n)
    alive = np.ones(n, bool)
    members = [[i] for i in range(n)]
    while True:
        mean = total / np.outer(size, size)
        usable = ~blocked & np.outer(alive, alive)
        np.fill_diagonal(usable, False)
        mean = np.where(usable, mean, -np.inf)
        best = int(np.argmax(mean))  # first maximum: lowest row, then column
        a, b = divmod(best, n)
        if not mean[a, b] > min_link:
            break
        a, b = min(a, b), max(a, b)
        total[a] += total[b]
        total[:, a] = total[a]
        blocked[a] |= blocked[b]
        blocked[:, a] = blocked[a]
        size[a] += size[b]
        alive[b] = False
        members[a] += members[b]
        members[b] = []
    return [m for m in members if m]


def _members(label: np.ndarray) -> list[np.ndarray]:
    """Indices of each component, in order of their first index."""
    order = np.argsort(label, kind="stable")
    cuts = np.flatnonzero(np.diff(label[order])) + 1
    return sorted(np.split(order, cuts), key=lambda m: int(m[0]))

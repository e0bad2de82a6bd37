"""The training loop of the small crop readers: AdamW and binary cross-entropy by epoch."""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch

__all__ = ["fit_binary"]

Batch = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def fit_binary(
    net: torch.nn.Module,
    n: int,
    batch: Batch,
    epochs: int,
    gen: torch.Generator,
    *,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-3,
) -> list[float]:
    """Train ``net`` for ``epochs`` passes over ``n`` items in a random order (drawn from
    ``gen``); ``batch(indices)`` gives the (augmented) inputs and the 0/1 targets of
    those items. Prints each epoch's mean loss to stderr and returns them."""
    optimiser = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    history = []
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, batch_size):
            inputs, targets = batch(order[start : start + batch_size])
            optimiser.zero_grad()
            loss = loss_fn(net(inputs), targets)
            loss.backward()
            optimiser.step()
            total += loss.item() * len(targets)
        history.append(round(total / n, 4))
        print(f"epoch {epoch + 1}/{epochs}: loss {history[-1]}", file=sys.stderr, flush=True)
    return history

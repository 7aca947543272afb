"""A rollout's rows served as shuffled minibatches, epoch after epoch, each process taking its slice; and the
order in which prompts are drawn for rollouts."""

from __future__ import annotations

import numpy as np


def minibatches(rows: dict[str, np.ndarray], batch: int, epochs: int, rng: np.random.Generator,
                offset: int = 0, local: int | None = None) -> list[dict[str, np.ndarray]]:
    """``epochs`` passes over the N rows of ``rows`` in fresh random orders, ``batch`` rows (global) per
    minibatch; this process keeps rows ``[offset, offset + local)`` of each (default: all of them)."""
    n = len(next(iter(rows.values())))
    local = batch if local is None else local
    out = []
    for _ in range(epochs):
        order = rng.permutation(n)
        for i in range(0, n, batch):
            sel = order[i:i + batch][offset:offset + local]
            out.append({k: np.asarray(v[sel]) for k, v in rows.items()})
    return out


def next_prompts(items: list[int], n: int, seed: list[int], epoch: int, index: int) -> tuple[list[int], int, int]:
    """``n`` of ``items`` in seeded random orders, one permutation per pass (``seed + [epoch]``), picking up at
    ``(epoch, index)``; returns ``(picked, epoch, index)`` to resume from."""
    out = []
    while len(out) < n:
        order = np.random.default_rng([*seed, epoch]).permutation(len(items))
        take = order[index:index + n - len(out)]
        out += [items[i] for i in take]
        index += len(take)
        if index >= len(order):
            epoch, index = epoch + 1, 0
    return out, epoch, index

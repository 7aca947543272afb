"""A rollout's rows served as shuffled minibatches, epoch after epoch, each process taking its slice."""

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

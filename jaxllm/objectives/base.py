"""The objective interface: what the trainer loop needs from pretrain, SFT, reward, PPO...

An objective is a batch source plus a loss. The loss is pure:

    loss(params, batch, frozen, rng) -> (loss_sum, denominator, metrics)

``loss_sum`` and ``denominator`` are sums over the batch (tokens, sequences,
pairs...), so gradient accumulation and multi-host averages stay exact: the
step divides the summed loss by the summed denominator. ``metrics`` maps names
to ``(sum, count)`` pairs, averaged the same way. ``rng`` is None in
evaluation (dropout off).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

import numpy as np

LossFn = Callable[..., tuple[Any, Any, dict[str, tuple[Any, Any]]]]


class BatchSource(Protocol):
    """An iterator of per-process numpy batches with a resumable position."""

    def __next__(self) -> dict[str, np.ndarray]: ...

    def state(self) -> dict: ...

    def restore(self, state: dict) -> None: ...


@dataclasses.dataclass
class Objective:
    name: str
    loss: LossFn
    train_batches: BatchSource
    eval_batches: list[dict[str, np.ndarray]]
    tokens_per_step: int  # tokens the model processes per optimizer step (for tokens/s and MFU)
    frozen: Any = None    # frozen pytrees the loss reads (reference model, reward model); None for pretrain
    prompt: Callable[[str], list[int]] | None = None  # text -> prompt tokens for samples; None = BOS + text
    stop_ids: tuple[int, ...] = ()                     # tokens that end a sample (besides EOS)


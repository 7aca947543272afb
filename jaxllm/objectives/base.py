"""The objective interface: what the trainer loop needs from pretrain, SFT, reward, PPO...

An objective is a batch source plus a loss. The loss is pure:

    loss(params, batch, frozen, rng) -> (loss_sum, denominator, metrics)

``loss_sum`` and ``denominator`` are sums over the batch (tokens, sequences,
pairs...), so gradient accumulation and multi-host averages stay exact: the
step divides the summed loss by the summed denominator. ``metrics`` maps names
to ``(sum, count)`` pairs, averaged the same way. ``rng`` is None in
evaluation (dropout off).

Optional hooks let RLHF objectives use the same loop: ``init_params`` builds
the first parameters (a reward model takes its trunk from an SFT run; PPO its
policy and critic from two runs), ``evaluate`` replaces the loss-based eval,
``finish`` runs after the last step (the reward model saves its score
statistics), and a batch source with ``set_params`` is handed the current
parameters before each batch (PPO generates its rollouts with them).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

import numpy as np

from jaxllm.model.flops import train_flops_per_token

LossFn = Callable[..., tuple[Any, Any, dict[str, tuple[Any, Any]]]]


class BatchSource(Protocol):
    """An iterator of per-process numpy batches with a resumable position."""

    def __next__(self) -> dict[str, np.ndarray]: ...

    def state(self) -> dict: ...

    def restore(self, state: dict) -> None: ...


def _identity(params):
    return params


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
    init_params: Callable | None = None    # (fresh params, mesh, rules) -> first params; None = load init_from
    evaluate: Callable | None = None       # (params) -> {name: float}; None = the loss on eval_batches
    finish: Callable | None = None         # (params, run_dir, mesh, rules) -> a line to print, or None
    sample_params: Callable | None = _identity  # params -> language-model params for the end sample; None = no sample
    flops_per_token: Callable = train_flops_per_token  # (spec, seq_len) -> training FLOPs per token, for MFU


"""The KL coefficient beta of the per-token penalty: fixed, or adapted toward a target (Ziegler et al. 2019)."""

from __future__ import annotations

import dataclasses

from jaxllm.rl import math as rl_math


@dataclasses.dataclass
class KlController:
    """``beta``, moved after each rollout by `update` when ``target`` is set; its value is checkpointed."""

    beta: float
    target: float | None = None
    horizon: float = 10000.0

    def update(self, kl_mean: float, n_responses: int) -> None:
        if self.target is not None:
            self.beta = rl_math.adaptive_kl_beta(self.beta, kl_mean, n_responses, self.target, self.horizon)

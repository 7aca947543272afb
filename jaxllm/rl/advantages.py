"""Advantage estimators: rollout scores -> per-token advantages ``[N, T]`` (pure, jitted).

`gae_advantages` is PPO's: a normalised, clipped, EOS-penalised score, KL-shaped into per-token
rewards, then GAE against the critic's values and whitening. Group baselines (GRPO, RLOO) go
beside it: they read the same `Rollout` arrays and need no critic.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxllm.rl import math as rl_math
from jaxllm.rl.rollout import Settings


def gae_advantages(raw_score, has_eos, old_logp, ref_logp, values, resp_mask, beta, norm_mean, norm_std, s: Settings):
    """Score -> normalised, clipped, EOS-penalised score -> KL-shaped per-token rewards -> GAE -> whitened advantages.

    Returns ``{"advantages", "returns" [N, T], "score" [N], "kl" [N]}`` (``kl``: per-response sum of the
    estimator, what the adaptive controller reads).
    """
    score = (raw_score - norm_mean) / norm_std
    if s.score_clip:
        score = jnp.clip(score, -s.score_clip, s.score_clip)
    score = rl_math.penalize_missing_eos(score, has_eos, s.missing_eos_penalty)
    rewards = rl_math.shaped_rewards(score, old_logp, ref_logp, resp_mask, beta, s.kl_estimator)
    adv, returns = rl_math.gae(rewards, values, resp_mask, s.gamma, s.lam)
    if s.whiten:
        adv = rl_math.masked_whiten(adv, resp_mask)
    kl = jnp.sum(rl_math.kl_estimate(old_logp, ref_logp, s.kl_estimator) * resp_mask, axis=1)
    return {"advantages": adv, "returns": returns, "score": score, "kl": kl}


gae_advantages_jit = jax.jit(gae_advantages, static_argnames=("s",))

"""Critic-free RL with group baselines: advantages from the G answers to one prompt, and the clipped loss.

A rollout of ``N = groups * G`` responses keeps each prompt's G answers in consecutive rows. The
advantage of a response is its reward against its group's (`group_advantages`):

- ``group_norm`` (GRPO, Shao et al. 2024; DAPO): ``(r - mean_g) / (std_g + eps)``, std with Bessel's
  correction over the group's valid rows (as TRL computes it);
- ``group_mean`` (Dr. GRPO, Liu et al. 2025): ``r - mean_g``, no division by the std;
- ``rloo`` (Ahmadian et al. 2024): ``r - mean of the other G - 1 rewards`` = ``G / (G - 1) (r - mean_g)``.

The loss (`group_policy_loss`) is PPO's clipped ratio per token with a decoupled range
``[1 - clip_low, 1 + clip_high]`` (DAPO) against the sampling policy's log-probs, plus
``kl_coef`` times the k3 estimate of KL(pi || ref) per token (GRPO puts the KL in the loss, not in the
reward). Aggregation over a batch, in the objective interface's sums:

- ``sequence_mean`` (GRPO): mean over responses of each response's token mean;
- ``token_mean`` (DAPO): mean over every response token of the batch;
- ``constant`` (Dr. GRPO): token sum / (responses * max_new_tokens), no length normalisation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

ADVANTAGES = ("group_norm", "group_mean", "rloo")
AGGREGATIONS = ("sequence_mean", "token_mean", "constant")


def group_stats(rewards: jax.Array, group_size: int, valid: jax.Array | None = None):
    """``(mean, std, count)`` per group, each ``[groups]``, over the group's valid rows (std with ddof 1)."""
    r = rewards.reshape(-1, group_size)
    v = jnp.ones_like(r) if valid is None else valid.reshape(-1, group_size).astype(r.dtype)
    n = jnp.sum(v, axis=1)
    mean = jnp.sum(r * v, axis=1) / jnp.maximum(n, 1.0)
    var = jnp.sum((r - mean[:, None]) ** 2 * v, axis=1) / jnp.maximum(n - 1.0, 1.0)
    return mean, jnp.sqrt(var), n


def group_advantages(rewards: jax.Array, group_size: int, kind: str = "group_norm", eps: float = 1e-4,
                     valid: jax.Array | None = None) -> jax.Array:
    """``rewards [N] -> advantages [N]`` (0 on invalid rows), ``N = groups * group_size``."""
    mean, std, n = group_stats(rewards, group_size, valid)
    r = rewards.reshape(-1, group_size)
    centred = r - mean[:, None]
    if kind == "group_norm":
        adv = centred / (std[:, None] + eps)
    elif kind == "group_mean":
        adv = centred
    elif kind == "rloo":
        adv = centred * (n / jnp.maximum(n - 1.0, 1.0))[:, None]
    else:
        raise ValueError(f"unknown advantage {kind!r}: {', '.join(ADVANTAGES)}")
    adv = adv.reshape(-1)
    return adv if valid is None else adv * valid


def flat_groups(rewards, group_size: int, tol: float = 1e-6):
    """``[groups]`` bool: every reward in the group is the same (no learning signal: all advantages 0)."""
    r = jnp.asarray(rewards).reshape(-1, group_size)
    return (jnp.max(r, axis=1) - jnp.min(r, axis=1)) <= tol


def k3(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
    """Per-token k3 estimate of KL(pi || ref) from samples of pi: ``exp(ref - logp) - (ref - logp) - 1`` (>= 0)."""
    d = ref_logp - logp
    return jnp.expm1(d) - d


def group_policy_loss(logp, old_logp, ref_logp, advantages, mask, clip_low: float = 0.2, clip_high: float = 0.2,
                      kl_coef: float = 0.0, aggregation: str = "sequence_mean"):
    """The loss over a batch: ``logp, old_logp, ref_logp, mask [B, T]``, ``advantages [B]``.

    Returns ``(loss_sum, denominator, metric sums {name: (sum, count)})``: ``loss_sum / denominator`` is
    the batch's loss under ``aggregation``; sums over minibatches and processes stay exact.
    """
    t = mask.shape[1]
    adv = advantages[:, None]
    ratio = jnp.exp((logp - old_logp) * mask)
    clipped_ratio = jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
    pg = -jnp.minimum(ratio * adv, clipped_ratio * adv)
    kl = k3(logp, ref_logp) * mask
    per_token = (pg + kl_coef * kl) * mask
    lengths = jnp.sum(mask, axis=1)
    rows = jnp.sum(lengths > 0).astype(per_token.dtype)
    if aggregation == "token_mean":
        loss_sum, denom = jnp.sum(per_token), jnp.sum(mask)
    elif aggregation == "sequence_mean":
        loss_sum, denom = jnp.sum(jnp.sum(per_token, axis=1) / jnp.maximum(lengths, 1.0)), rows
    elif aggregation == "constant":
        loss_sum, denom = jnp.sum(per_token) / t, rows
    else:
        raise ValueError(f"unknown aggregation {aggregation!r}: {', '.join(AGGREGATIONS)}")
    n = jnp.sum(mask)
    low = (ratio < 1.0 - clip_low) & (adv < 0)    # tokens whose gradient the lower bound cut off
    high = (ratio > 1.0 + clip_high) & (adv > 0)
    metrics = {"policy_loss": (jnp.sum(pg * mask), n), "kl_k3": (jnp.sum(kl), n),
               "clip_low_frac": (jnp.sum(low * mask), n), "clip_high_frac": (jnp.sum(high * mask), n),
               "ratio": (jnp.sum(ratio * mask), n)}
    return loss_sum, denom, metrics

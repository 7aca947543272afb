"""The arithmetic of RLHF, as pure functions over ``[batch, response_len]`` arrays.

Reward-model ranking loss, per-token KL-shaped rewards, GAE, whitening, KL
estimators, the adaptive KL coefficient, clipped policy and value losses. Every
``mask`` is 1 on response tokens up to and including the first EOS, 0 after it
and on padding. Losses return sums plus counts (the objective interface's
convention), so the step normalises over the global batch.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp

from jaxllm.model.scalar import last_index  # noqa: F401 (where a sequence's reward is read)


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1e-8)


def masked_whiten(x: jax.Array, mask: jax.Array, shift_mean: bool = True) -> jax.Array:
    """``(x - mean) / std`` over masked entries (population variance); mean kept if not ``shift_mean``."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * jax.lax.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def ranking_loss(scores: jax.Array, n_ranked: jax.Array, margin: float = 0.0) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Reward-model loss for K responses per prompt ranked best first: ``scores [B, K]``, ``n_ranked [B]`` (<= K).

    Per prompt: the mean over its C(n, 2) ordered pairs (i better than j) of
    ``-log sigmoid(r_i - r_j - margin)``. Returns ``(sum over prompts, pairwise-correct sum, pair count)``;
    divide the first by the number of prompts.
    """
    k = scores.shape[1]
    pairs = list(itertools.combinations(range(k), 2))
    better = jnp.asarray([i for i, _ in pairs])
    worse = jnp.asarray([j for _, j in pairs])
    diff = scores[:, better] - scores[:, worse]                                 # [B, P]
    valid = (worse[None, :] < n_ranked[:, None]).astype(scores.dtype)           # both inside the ranking
    losses = -jax.nn.log_sigmoid(diff - margin) * valid
    per_prompt = jnp.sum(losses, axis=1) / jnp.maximum(jnp.sum(valid, axis=1), 1.0)
    correct = jnp.sum((diff > 0) * valid)
    return jnp.sum(per_prompt), correct, jnp.sum(valid)


def kl_estimate(logp: jax.Array, ref_logp: jax.Array, kind: str = "k1") -> jax.Array:
    """Per-token estimators of KL(pi || ref) from samples of pi (Schulman's k1, k2, k3; abs)."""
    d = logp - ref_logp
    if kind == "k1":
        return d
    if kind == "k2":
        return 0.5 * d ** 2
    if kind == "k3":
        return jnp.expm1(-d) + d
    if kind == "abs":
        return jnp.abs(d)
    raise ValueError(f"unknown KL estimator {kind!r}: k1, k2, k3 or abs")


def shaped_rewards(score: jax.Array, logp: jax.Array, ref_logp: jax.Array, mask: jax.Array, beta: float | jax.Array,
                   kind: str = "k1") -> jax.Array:
    """``[B, T]``: ``-beta * KL`` on every response token, plus the sequence ``score [B]`` on its last token."""
    r = -beta * kl_estimate(logp, ref_logp, kind) * mask
    last = last_index(mask)
    return r.at[jnp.arange(r.shape[0]), last].add(score)


def penalize_missing_eos(score: jax.Array, has_eos: jax.Array, penalty: float) -> jax.Array:
    """Responses that never emitted EOS lose ``penalty`` from their score."""
    return jnp.where(has_eos, score, score - penalty)


def gae(rewards: jax.Array, values: jax.Array, mask: jax.Array, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation over response tokens: ``(advantages, returns)``, each ``[B, T]``.

    The value after a sequence's last token is 0; advantages are 0 on masked positions.
    """
    rewards, values = rewards * mask, values * mask

    def step(carry, xs):
        next_adv, next_value = carry
        r, v, m = xs
        delta = r + gamma * next_value - v
        adv = (delta + gamma * lam * next_adv) * m
        return (adv, v * m), adv

    zeros = jnp.zeros(rewards.shape[0], rewards.dtype)
    _, adv = jax.lax.scan(step, (zeros, zeros), (rewards.T, values.T, mask.T), reverse=True)
    adv = adv.T
    return adv, (adv + values) * mask


def adaptive_kl_beta(beta: float, kl: float, n_steps: int, target: float, horizon: float) -> float:
    """Ziegler et al. (2019): ``beta *= 1 + clip(kl / target - 1, -0.2, 0.2) * n_steps / horizon``."""
    error = min(max(kl / target - 1.0, -0.2), 0.2)
    return beta * (1.0 + error * n_steps / horizon)


def policy_loss(logp: jax.Array, old_logp: jax.Array, advantages: jax.Array, mask: jax.Array,
                clip_eps: float = 0.2) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Clipped surrogate ``max(-A r, -A clip(r, 1-eps, 1+eps))`` summed over masked tokens, and metric sums
    (clip fraction, approximate KL ``0.5 (log r)^2``, ratio) over the same tokens."""
    log_ratio = (logp - old_logp) * mask
    ratio = jnp.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    loss = jnp.sum(jnp.maximum(unclipped, clipped) * mask)
    metrics = {"clip_frac": jnp.sum((clipped > unclipped) * mask), "approx_kl": jnp.sum(0.5 * log_ratio ** 2 * mask),
               "ratio": jnp.sum(ratio * mask)}
    return loss, metrics


def value_loss(values: jax.Array, old_values: jax.Array, returns: jax.Array, mask: jax.Array,
               clip: float = 0.2) -> jax.Array:
    """Clipped value loss ``0.5 max((v - R)^2, (clip(v, v_old +- c) - R)^2)`` summed over masked tokens."""
    clipped = old_values + jnp.clip(values - old_values, -clip, clip)
    return jnp.sum(0.5 * jnp.maximum((values - returns) ** 2, (clipped - returns) ** 2) * mask)

"""Direct preference losses on sequence log-probabilities: DPO and its family, pairwise and listwise.

Inputs per prompt are K responses ranked best first (``n_ranked [B]`` of them real, K >= 2):
``logp [B, K]`` (sum of log pi over each response's tokens), ``ref [B, K]`` (the same under the
frozen reference; unused by SimPO) and ``length [B, K]`` (response tokens). The implicit reward of a
response is ``r = beta * (logp - ref)`` (DPO, cDPO, IPO: mean log-probs, as TRL does) or
``r = beta * logp / length`` (SimPO, reference-free).

- ``sigmoid`` (DPO, Rafailov et al. 2023): ``-log sigmoid(r_w - r_l)``; with ``label_smoothing`` e
  (cDPO / robust DPO): ``-(1 - e) log sigmoid(d) - e log sigmoid(-d)``.
- ``ipo`` (Azar et al. 2023): ``(h - 1 / (2 beta))^2`` with ``h = (logp_w - ref_w) - (logp_l - ref_l)``
  on mean log-probs per token (the "reward" of IPO is that mean log-ratio, without beta).
- ``simpo`` (Meng et al. 2024): ``-log sigmoid(r_w - r_l - gamma)`` with length-normalised rewards.

Over a ranking, ``ranking``:
- ``all_pairs``: the mean of the pairwise loss over the C(n, 2) ordered pairs (i better than j);
- ``plackett_luce`` (DPO paper, appendix A.3): ``-sum_k [r_k - logsumexp(r_k, ..., r_{n-1})]`` over
  positions k < n - 1, the negative log-likelihood of the whole ranking under Plackett-Luce (for
  sigmoid and simpo rewards; label smoothing and SimPO's gamma do not apply; K = 2 is exactly DPO);
- ``best_worst``: the one pair (best, worst).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp

LOSS_TYPES = ("sigmoid", "ipo", "simpo")
RANKINGS = ("all_pairs", "plackett_luce", "best_worst")


def implicit_rewards(loss_type: str, logp, ref, length, beta: float):
    """``r [B, K]``: beta x log-ratio (sigmoid), mean log-ratio (ipo: no beta), beta x mean log-prob (simpo)."""
    n = jnp.maximum(length, 1.0)
    if loss_type == "sigmoid":
        return beta * (logp - ref)
    if loss_type == "ipo":
        return (logp - ref) / n
    if loss_type == "simpo":
        return beta * logp / n
    raise ValueError(f"unknown loss_type {loss_type!r}: {', '.join(LOSS_TYPES)}")


def pair_loss(loss_type: str, diff, beta: float, label_smoothing: float = 0.0, gamma: float = 0.0):
    """Loss of ``diff = r_better - r_worse`` (any shape) under ``loss_type``."""
    if loss_type == "ipo":
        return (diff - 1.0 / (2.0 * beta)) ** 2
    d = diff - (gamma if loss_type == "simpo" else 0.0)
    return -(1.0 - label_smoothing) * jax.nn.log_sigmoid(d) - label_smoothing * jax.nn.log_sigmoid(-d)


def _pairs(k: int, ranking: str):
    if ranking == "best_worst":
        return None
    return list(itertools.combinations(range(k), 2))


def ranking_loss(r, n_ranked, loss_type: str, ranking: str, beta: float, label_smoothing: float = 0.0,
                 gamma: float = 0.0):
    """Per-prompt losses ``[B]`` and the pairwise comparisons ``(correct sum, pair count, margin sum)``.

    ``r [B, K]`` implicit rewards ranked best first; positions >= ``n_ranked`` are padding.
    Accuracy and margins are over all C(n, 2) pairs whatever the loss.
    """
    b, k = r.shape
    pos = jnp.arange(k)[None, :]
    valid_item = pos < n_ranked[:, None]
    all_pairs = list(itertools.combinations(range(k), 2))
    better = jnp.asarray([i for i, _ in all_pairs])
    worse = jnp.asarray([j for _, j in all_pairs])
    diff = r[:, better] - r[:, worse]                                            # [B, P]
    valid = (worse[None, :] < n_ranked[:, None]).astype(r.dtype)
    if ranking == "all_pairs":
        losses = pair_loss(loss_type, diff, beta, label_smoothing, gamma) * valid
        per_prompt = jnp.sum(losses, axis=1) / jnp.maximum(jnp.sum(valid, axis=1), 1.0)
    elif ranking == "best_worst":
        worst = jnp.take_along_axis(r, (n_ranked - 1)[:, None], axis=1)[:, 0]
        per_prompt = pair_loss(loss_type, r[:, 0] - worst, beta, label_smoothing, gamma)
    elif ranking == "plackett_luce":
        if loss_type == "ipo":
            raise ValueError("plackett_luce needs sigmoid or simpo rewards (IPO is a squared pairwise loss)")
        masked = jnp.where(valid_item, r, -1e30)  # not -inf: logaddexp(-inf, -inf) is NaN
        # logsumexp over positions k..K-1 (the items still unranked at step k), as a reversed cumulative logsumexp
        tail = jax.lax.cumlogsumexp(masked[:, ::-1], axis=1)[:, ::-1]
        steps = (pos < (n_ranked - 1)[:, None])
        per_prompt = -jnp.sum(jnp.where(steps, r - tail, 0.0), axis=1)
    else:
        raise ValueError(f"unknown ranking {ranking!r}: {', '.join(RANKINGS)}")
    correct = jnp.sum((diff > 0) * valid)
    return per_prompt, (correct, jnp.sum(valid), jnp.sum(diff * valid))

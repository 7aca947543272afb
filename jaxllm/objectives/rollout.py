"""PPO rollouts: sample responses, score them with every model, turn scores into advantages.

Layout of a rollout batch of N sequences, ``L = P + T`` tokens each: the prompt
left-padded to ``P`` tokens, then the response (up to ``T`` new tokens, cut
after the first stop token) right-padded. ``mask [N, L]`` is 1 on real tokens,
``resp_mask [N, T]`` on response tokens (the stop token included). The logits
that predict response token ``t`` sit at position ``P - 1 + t``; so do the
critic's value of the state before it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxllm.model.decode import mask_vocab, token_logprobs
from jaxllm.model.scalar import ActorCritic, ScalarModel
from jaxllm.model.transformer import Transformer
from jaxllm.objectives.reward import layout, sequence_scores
from jaxllm.objectives import rl_math


@dataclasses.dataclass(frozen=True)
class Settings:
    """The numbers a rollout's scoring and advantages depend on (hashable: part of the jit cache key)."""

    temperature: float
    vocab_size: int
    gamma: float
    lam: float
    kl_estimator: str
    missing_eos_penalty: float
    score_clip: float
    whiten: bool


def rollout_arrays(prompts: list[list[int]], responses: list[list[int]], p: int, t: int, stop_ids: tuple[int, ...],
                   pad_id: int = 0) -> dict[str, np.ndarray]:
    """``inputs, mask [N, P+T]``, ``resp_mask [N, T]``, ``has_eos [N]`` from token lists (responses already cut
    after their first stop token; prompts longer than ``P`` keep their last ``P`` tokens)."""
    n = len(prompts)
    inputs = np.full((n, p + t), pad_id, np.int32)
    mask = np.zeros((n, p + t), np.float32)
    resp_mask = np.zeros((n, t), np.float32)
    has_eos = np.zeros((n,), bool)
    for i, (q, r) in enumerate(zip(prompts, responses)):
        q, r = q[-p:], r[:t]
        inputs[i, p - len(q):p] = q
        inputs[i, p:p + len(r)] = r
        mask[i, p - len(q):p + len(r)] = 1.0
        resp_mask[i, :len(r)] = 1.0
        has_eos[i] = bool(r) and r[-1] in stop_ids
    return {"inputs": inputs, "mask": mask, "resp_mask": resp_mask, "has_eos": has_eos}


def response_logits(logits: jax.Array, t: int) -> jax.Array:
    """``[N, P+T, V] -> [N, T, V]``: the logits that predict each response token."""
    length = logits.shape[1]
    return logits[:, length - t - 1:length - 1]


def policy_logprobs(model: Transformer, params, inputs, mask, t: int, s: Settings) -> tuple[jax.Array, jax.Array]:
    """``(log pi(response tokens) [N, T], entropy [N, T])`` under ``softmax(logits / temperature)``."""
    positions, segments = layout(mask)
    logits = response_logits(model.apply({"params": params}, inputs, positions, segments), t)
    targets = inputs[:, inputs.shape[1] - t:]
    logp = token_logprobs(logits, targets, s.vocab_size, s.temperature)
    lsm = jax.nn.log_softmax(mask_vocab(logits / s.temperature, s.vocab_size), axis=-1)
    entropy = -jnp.sum(jnp.where(jnp.isfinite(lsm), jnp.exp(lsm) * lsm, 0.0), axis=-1)
    return logp, entropy


def make_scorer(spec, t: int, s: Settings, with_reward_model: bool):
    """Jitted ``(params, ref_params, rm_params, inputs, mask) -> dict``: old log-probs, reference log-probs,
    values and entropy ``[N, T]``, and the reward model's raw score ``[N]`` (zeros without one)."""
    policy, critic = Transformer(spec), ScalarModel(spec)

    def score(params, ref_params, rm_params, inputs, mask):
        logp, entropy = policy_logprobs(policy, params["policy"], inputs, mask, t, s)
        ref_logp, _ = policy_logprobs(policy, ref_params, inputs, mask, t, s)
        positions, segments = layout(mask)
        values = response_logits(critic.apply({"params": params["critic"]}, inputs, positions, segments)[..., None], t)[..., 0]
        raw = sequence_scores(critic, rm_params, inputs, mask) if with_reward_model else jnp.zeros(inputs.shape[0])
        return {"old_logp": logp, "ref_logp": ref_logp, "old_values": values, "entropy": entropy, "raw_score": raw}

    return jax.jit(score)


def advantages(raw_score, has_eos, old_logp, ref_logp, values, resp_mask, beta, norm_mean, norm_std, s: Settings):
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


advantages_jit = jax.jit(advantages, static_argnames=("s",))


def ppo_loss(model: ActorCritic, t: int, s: Settings, clip: float, value_clip: float, vf_coef: float,
             ptx_coef: float = 0.0):
    """The PPO loss in the objective interface: token sums over the batch's response tokens.

    ``loss_sum = sum_tokens(clipped policy loss) + vf_coef * sum_tokens(clipped value loss)``, denominator
    = response tokens, so the step's division gives token means over the global batch. PPO-ptx adds
    ``ptx_coef`` times the mean pre-training NLL of the batch's ``ptx_*`` rows (scaled by the token count).
    """
    from jaxllm.objectives.pretrain import token_nll

    def loss(params, batch, frozen=None, rng=None):
        del frozen, rng  # dropout stays off in PPO: log-probs must match the rollout's
        positions, segments = layout(batch["mask"])
        logits, values = model.apply({"params": params}, batch["inputs"], positions, segments)
        targets = batch["inputs"][:, batch["inputs"].shape[1] - t:]
        logp = token_logprobs(response_logits(logits, t), targets, s.vocab_size, s.temperature)
        v = response_logits(values[..., None], t)[..., 0]
        m = batch["resp_mask"]
        pg, pm = rl_math.policy_loss(logp, batch["old_logp"], batch["advantages"], m, clip)
        vf = rl_math.value_loss(v, batch["old_values"], batch["returns"], m, value_clip)
        n = jnp.sum(m)
        loss_sum = pg + vf_coef * vf
        metrics = {"policy_loss": (pg, n), "value_loss": (vf, n), "clip_frac": (pm["clip_frac"], n),
                   "approx_kl": (pm["approx_kl"], n), "ratio": (pm["ratio"], n),
                   "value_error": (jnp.sum((v - batch["returns"]) ** 2 * m), n)}
        if ptx_coef:
            ptx_logits = model.apply({"params": params}, batch["ptx_inputs"], batch["ptx_positions"],
                                     batch["ptx_segment_ids"], method=lambda mdl, *a: mdl.policy(*a))
            nll = token_nll(ptx_logits, batch["ptx_targets"])
            ptx_n = jnp.maximum(jnp.sum(batch["ptx_loss_mask"]), 1.0)
            ptx = jnp.sum(nll * batch["ptx_loss_mask"]) / ptx_n
            loss_sum = loss_sum + ptx_coef * ptx * n
            metrics["ptx_loss"] = (ptx * n, n)
        return loss_sum, n, metrics

    return loss

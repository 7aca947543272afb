"""Rollouts shared by every on-policy objective: prompts -> responses on the sharded policy -> scores.

`RolloutEngine.run` generates with the KV-cache sampler on the trainer's mesh, then one jitted pass
(`make_scorer`) gives the policy's and the reference's log-probs, the critic's values and the reward
model's score; a reward function (``module:function`` over texts) can replace the reward model.

Layout of a rollout batch of N sequences, ``L = P + T`` tokens each: the prompt
left-padded to ``P`` tokens, then the response (up to ``T`` new tokens, cut
after the first stop token) right-padded. ``mask [N, L]`` is 1 on real tokens,
``resp_mask [N, T]`` on response tokens (the stop token included). The logits
that predict response token ``t`` sit at position ``P - 1 + t``; so do the
critic's value of the state before it.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxllm.model.decode import Sampling, generate, mask_vocab, token_logprobs
from jaxllm.model.scalar import ScalarModel, layout, sequence_scores
from jaxllm.model.transformer import Transformer


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


def make_scorer(spec, t: int, s: Settings, with_reward_model: bool, with_critic: bool = True):
    """Jitted ``(params, ref_params, rm_params, inputs, mask) -> dict``: old log-probs, reference log-probs,
    values and entropy ``[N, T]``, and the reward model's raw score ``[N]``. ``params`` is
    ``{"policy", "critic"}`` (``{"policy"}`` alone without a critic: values are zeros; so is the score
    without a reward model)."""
    policy, critic = Transformer(spec), ScalarModel(spec)

    def score(params, ref_params, rm_params, inputs, mask):
        logp, entropy = policy_logprobs(policy, params["policy"], inputs, mask, t, s)
        ref_logp, _ = policy_logprobs(policy, ref_params, inputs, mask, t, s)
        positions, segments = layout(mask)
        if with_critic:
            values = critic.apply({"params": params["critic"]}, inputs, positions, segments)
            values = response_logits(values[..., None], t)[..., 0]
        else:
            values = jnp.zeros_like(logp)
        raw = sequence_scores(critic, rm_params, inputs, mask) if with_reward_model else jnp.zeros(inputs.shape[0])
        return {"old_logp": logp, "ref_logp": ref_logp, "old_values": values, "entropy": entropy, "raw_score": raw}

    return jax.jit(score)


@dataclasses.dataclass
class Rollout:
    """One batch of N prompts answered: token lists, reply texts, the `rollout_arrays` and the scorer's output."""

    prompts: list[list[int]]
    responses: list[list[int]]
    texts: list[str]
    arrays: dict[str, np.ndarray]   # inputs, mask [N, P+T]; resp_mask [N, T]; has_eos [N]
    scored: dict[str, np.ndarray]   # old_logp, ref_logp, old_values, entropy [N, T]; raw_score [N]

    def kl_per_response(self) -> np.ndarray:
        """``[N]``: summed ``log pi - log ref`` over each response (a sample estimate of KL(pi || ref))."""
        return ((self.scored["old_logp"] - self.scored["ref_logp"]) * self.arrays["resp_mask"]).sum(1)


class RolloutEngine:
    """prompts -> responses sampled on the sharded policy -> log-probs, values and scores.

    ``prompt_len`` P and ``max_new`` T fix the rollout layout (see the module docstring); prompts longer
    than P must be left out by the caller. The reward is the reward model's score (``rm`` handed to
    `attach`) or ``reward_fn(prompt_texts, reply_texts) -> [N] floats``; with ``reward_model=False`` and
    no ``reward_fn`` the caller scores the answers itself (``raw_score`` is 0).
    """

    def __init__(self, spec, prompt_len: int, max_new: int, sampling: Sampling, settings: Settings, template,
                 reward_fn=None, critic: bool = True, reward_model: bool | None = None):
        self.spec, self.p, self.t = spec, prompt_len, max_new
        self.sampling, self.settings, self.template = sampling, settings, template
        self.tok = template.tok
        self.reward_fn = reward_fn
        with_rm = reward_fn is None if reward_model is None else reward_model
        self.scorer = make_scorer(spec, max_new, settings, with_reward_model=with_rm, with_critic=critic)
        self.layout = self.ref = self.rm = None
        self.last_score_s = 0.0  # seconds of the last run's scoring pass (the rest of it is generation)

    def attach(self, layout, ref, rm=None) -> None:
        """The mesh and the frozen reference (and reward model) parameters."""
        self.layout, self.ref, self.rm = layout, ref, rm

    def run(self, params, prompts: list[list[int]], key: jax.Array, sampling: Sampling | None = None) -> Rollout:
        """Answer ``prompts`` (token lists) with ``params["policy"]`` and score the answers."""
        stops, div = self.template.stop_ids, self.layout.batch_divisor
        gen = generate(Transformer(self.spec), params["policy"], prompts, key, sampling or self.sampling,
                       stop_ids=stops, pad_id=self.tok.pad_id, batch_multiple=div, vocab_size=self.tok.vocab_size)
        responses = [g["tokens"] for g in gen]
        arr = rollout_arrays(prompts, responses, self.p, self.t, stops, self.tok.pad_id)
        n = len(prompts)
        pad = -n % div  # the scorer's batch must split over the mesh: pad with copies, dropped below
        t0 = time.perf_counter()
        inputs, mask = (np.concatenate([arr[k], arr[k][:1].repeat(pad, 0)]) for k in ("inputs", "mask"))
        scored = {k: v[:n] for k, v in self.layout.to_host(self.scorer(params, self.ref, self.rm, inputs, mask)).items()}
        self.last_score_s = time.perf_counter() - t0
        texts = [self.template.reply_text(r) for r in responses]
        if self.reward_fn is not None:
            scored["raw_score"] = np.asarray(self.reward_fn([self.tok.decode(q) for q in prompts], texts), np.float32)
        return Rollout(prompts, responses, texts, arr, scored)

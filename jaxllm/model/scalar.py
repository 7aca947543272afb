"""Scalar heads on the transformer trunk: the reward model, the critic, and PPO's policy + critic pair.

``ScalarModel``: ``tokens [B, L] -> [B, L]`` float32, one number per position (the
trunk's final hidden state times a ``[embed, 1]`` head). The reward model reads
it at a sequence's last real token; the critic reads it at every response
position as the value of the state so far. Parameters ``{"trunk": <Transformer
without lm_head>, "head_kernel" [embed, 1], "head_bias" [1]}``: the trunk loads from an SFT
checkpoint (`trunk_params`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxllm.model.spec import ModelSpec
from jaxllm.model.transformer import Transformer


class ScalarModel(nn.Module):
    spec: ModelSpec

    @nn.compact
    def __call__(self, tokens, positions=None, segment_ids=None, *, deterministic: bool = True):
        s = self.spec
        h = Transformer(s, name="trunk")(tokens, positions, segment_ids, deterministic=deterministic, output="hidden")
        std = (s.d_model + 1) ** -0.5
        kernel = self.param("head_kernel", nn.with_logical_partitioning(nn.initializers.normal(std), ("embed", None)),
                            (s.d_model, 1), jnp.float32)
        bias = self.param("head_bias", nn.with_logical_partitioning(nn.initializers.zeros, (None,)), (1,), jnp.float32)
        return (jnp.einsum("bld,do->blo", h.astype(jnp.float32), kernel) + bias)[..., 0]


class ActorCritic(nn.Module):
    """PPO's trainable pair: ``{"policy": Transformer, "critic": ScalarModel}`` -> ``(logits [B,L,V], values [B,L])``."""

    spec: ModelSpec

    def setup(self):
        self.policy = Transformer(self.spec)
        self.critic = ScalarModel(self.spec)

    def __call__(self, tokens, positions=None, segment_ids=None, *, deterministic: bool = True):
        return (self.policy(tokens, positions, segment_ids, deterministic=deterministic),
                self.critic(tokens, positions, segment_ids, deterministic=deterministic))


def trunk_params(lm_params: dict) -> dict:
    """A language model's parameters as a trunk: everything but the output projection."""
    return {k: v for k, v in lm_params.items() if k != "lm_head"}


def layout(mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(positions, segment_ids)`` for rows padded anywhere: positions count real tokens, pads are segment 0."""
    m = mask.astype(jnp.int32)
    return jnp.maximum(jnp.cumsum(m, axis=-1) - 1, 0), m


def sequence_scores(model: ScalarModel, params, tokens: jax.Array, mask: jax.Array, rng=None) -> jax.Array:
    """``tokens, mask [N, L] -> [N]``: the head's output at each row's last real token."""
    positions, segments = layout(mask)
    out = model.apply({"params": params}, tokens, positions, segments, deterministic=rng is None,
                      rngs={"dropout": rng} if rng is not None else {})
    return jnp.take_along_axis(out, last_index(mask)[:, None], axis=1)[:, 0]


def last_index(mask: jax.Array) -> jax.Array:
    """Index of the last 1 in each row of ``mask [B, L]`` (where a reward is read: the EOS, never a pad)."""
    length = mask.shape[1]
    return length - 1 - jnp.argmax(mask[:, ::-1], axis=1)

"""Next-token cross-entropy from the model's last hidden states, optionally in chunks of positions.

With ``chunk`` = 0 the head's logits ``[B, L, V]`` (float32) are formed whole, as the model's own
``output="logits"`` does. With ``chunk`` = C the positions go through the head C at a time under
``jax.checkpoint``, so neither the forward nor the backward pass holds more than ``[B, C, V]``
logits: at GPT-2's vocabulary (50,304) and 16 x 1024 tokens the whole float32 logits are 3.3 GB,
and their gradient as much again.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxllm.model.spec import ModelSpec
from jaxllm.model.transformer import output_logits


def token_nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """``-log p(target)`` per position: ``logits [B, L, V]`` float32, ``targets [B, L]`` -> ``[B, L]``."""
    logz = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return logz - picked


def _nll_and_hits(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
    return token_nll(logits, targets), (jnp.argmax(logits, -1) == targets).astype(jnp.float32)


def token_nll_and_hits(spec: ModelSpec, params, hidden: jax.Array, targets: jax.Array,
                       chunk: int = 0) -> tuple[jax.Array, jax.Array]:
    """``-log p(target)`` and argmax == target, both ``[B, L]``, from ``hidden [B, L, D]``.

    ``chunk`` > 0 (a divisor of L, else the whole length is one chunk) bounds the logits held at once.
    """
    b, l, d = hidden.shape
    if not chunk or chunk >= l or l % chunk:
        return _nll_and_hits(output_logits(spec, params, hidden), targets)
    n = l // chunk

    @jax.checkpoint  # the backward pass recomputes each chunk's logits instead of storing them
    def one(h, t):
        return _nll_and_hits(output_logits(spec, params, h), t)

    hs = hidden.reshape(b, n, chunk, d).swapaxes(0, 1)  # [N, B, C, D]
    ts = targets.reshape(b, n, chunk).swapaxes(0, 1)
    nll, hits = jax.lax.map(lambda a: one(*a), (hs, ts))
    return nll.swapaxes(0, 1).reshape(b, l), hits.swapaxes(0, 1).reshape(b, l)

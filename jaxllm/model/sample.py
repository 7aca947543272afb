"""Simple sampling by full forward passes over a fixed-size buffer.

Enough for the text sample at the end of a pre-training run: one jitted
forward per new token, no KV cache (the cached decoder lives in its own module
once SFT needs fast generation).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxllm.model.transformer import Transformer


def _next_logits_fn(model: Transformer):
    """Jitted ``(params, buf [1, T], length) -> logits [vocab]`` at position ``length - 1``."""

    def next_logits(params, buf, length):
        logits = model.apply({"params": params}, buf)  # [1, T, V]
        return jax.lax.dynamic_index_in_dim(logits[0], length - 1, keepdims=False)

    return jax.jit(next_logits)


def sample_tokens(model: Transformer, params, prompt: list[int], n_new: int, key: jax.Array,
                  temperature: float = 0.8, eos_id: int | None = None, max_len: int | None = None) -> list[int]:
    """Extend ``prompt`` by up to ``n_new`` tokens (greedy when temperature == 0)."""
    max_len = max_len or model.spec.max_seq_len
    total = min(len(prompt) + n_new, max_len)
    buf = np.zeros((1, total), np.int32)
    buf[0, : len(prompt)] = prompt
    out = list(prompt)
    next_logits = _next_logits_fn(model)
    for pos in range(len(prompt), total):
        logits = next_logits(params, jnp.asarray(buf), pos)
        key, sub = jax.random.split(key)
        if temperature == 0:
            tok = int(jnp.argmax(logits))
        else:
            tok = int(jax.random.categorical(sub, logits / temperature))
        buf[0, pos] = tok
        out.append(tok)
        if eos_id is not None and tok == eos_id:
            break
    return out

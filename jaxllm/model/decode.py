"""Batched generation with a KV cache: prefill once, then one jitted loop over new tokens.

Prompts of different lengths are left-padded to a common length ``P``; pads are
segment 0, real tokens segment 1, and positions count real tokens only, so a
padded prompt decodes exactly as it would alone. The cache holds ``P +
max_new_tokens`` slots per sequence. The loop (`lax.while_loop`) stops as soon
as every sequence has emitted a stop token; a finished sequence emits padding
with log-probability 0.

Returned log-probabilities are those of the sampling temperature's
distribution over the tokenizer's vocabulary, ``log softmax(logits / T)``
(``T = 1`` for greedy), without top-k/top-p truncation; embedding rows beyond
the tokenizer's vocabulary (padding for fast matmuls) are never sampled. That
is what `token_logprobs` recomputes from a forward pass with the same ``T``,
as PPO does.

The same sharded parameters the trainer holds are used as they are: call
`generate` inside `mesh_context` and the cache follows the batch's sharding.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxllm.model.transformer import Transformer
from jaxllm.parallel.sharding import to_host


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How the next token is chosen: ``temperature == 0`` is greedy; ``top_k == 0`` and ``top_p == 1`` are off."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_new_tokens: int = 64

    def check(self, vocab_size: int | None = None) -> "Sampling":
        """Raise `UserError` naming the flag of a value that would fail deep in JAX or sample garbage."""
        import math

        from jaxllm.errors import UserError

        if self.max_new_tokens < 1:
            raise UserError(f"--max-new-tokens {self.max_new_tokens}: give at least 1 token to generate.")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise UserError(f"--temperature {self.temperature}: must be >= 0 (0 = greedy, 1 = the model's distribution).")
        if self.top_k < 0 or (vocab_size is not None and self.top_k > vocab_size):
            top = f" and at most the vocabulary size {vocab_size}" if vocab_size is not None else ""
            raise UserError(f"--top-k {self.top_k}: must be >= 0 (0 = off){top}.")
        if not (0 < self.top_p <= 1):
            raise UserError(f"--top-p {self.top_p}: must be in (0, 1] (1 = off).")
        return self


@dataclasses.dataclass
class Generated:
    tokens: jax.Array    # [B, N] int32; after a sequence stops: pad
    logprobs: jax.Array  # [B, N] float32, log softmax(logits / T)[token]; 0 after the stop
    lengths: jax.Array   # [B] int32, generated tokens including the stop token


def left_pad(prompts: list[list[int]], pad_id: int = 0, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens [B, P], lengths [B])`` with each prompt right-aligned; ``P`` = longest prompt unless given."""
    lengths = np.array([len(p) for p in prompts], np.int32)
    if (lengths == 0).any():
        raise ValueError("empty prompt: every prompt needs at least one token (e.g. BOS)")
    length = int(lengths.max()) if length is None else length
    out = np.full((len(prompts), length), pad_id, np.int32)
    for i, p in enumerate(prompts):
        out[i, length - len(p):] = p
    return out, lengths


def filter_logits(logits: jax.Array, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
    """Logits ``[B, V]`` with everything outside the top-k / nucleus set to -inf (at least one token survives)."""
    if top_k:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p < 1.0:
        sorted_desc = -jnp.sort(-logits, axis=-1)
        probs = jax.nn.softmax(sorted_desc, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly better tokens
        n_keep = jnp.maximum(jnp.sum(before < top_p, axis=-1, keepdims=True), 1)
        threshold = jnp.take_along_axis(sorted_desc, n_keep - 1, axis=-1)
        logits = jnp.where(logits < threshold, -jnp.inf, logits)
    return logits


def mask_vocab(logits: jax.Array, vocab_size: int | None) -> jax.Array:
    """-inf on padded embedding rows ``>= vocab_size`` (they are not tokens)."""
    if vocab_size is None or vocab_size >= logits.shape[-1]:
        return logits
    return jnp.where(jnp.arange(logits.shape[-1]) < vocab_size, logits, -jnp.inf)


def token_logprobs(logits: jax.Array, tokens: jax.Array, vocab_size: int | None = None,
                   temperature: float = 1.0) -> jax.Array:
    """``log p(tokens)`` under ``softmax(logits [..., V] / temperature)`` restricted to the real vocabulary:
    ``tokens [...]`` -> ``[...]``; temperature 0 counts as 1 (greedy has no sampling distribution)."""
    if temperature > 0:
        logits = logits / temperature
    logp = jax.nn.log_softmax(mask_vocab(logits, vocab_size), axis=-1)
    return jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0]


def choose(logits: jax.Array, key: jax.Array, sampling: Sampling) -> jax.Array:
    """Next tokens ``[B]`` from logits ``[B, V]``."""
    if sampling.temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = filter_logits(logits / sampling.temperature, sampling.top_k, sampling.top_p)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def init_cache(model: Transformer, batch: int, slots: int) -> dict:
    """Zeroed ``{"k", "v": [layers, B, slots, kv_heads, head_dim]}`` in the compute dtype, batch-sharded."""
    s = model.spec
    shape = (s.n_layers, batch, slots, s.n_kv_heads, s.head_dim)
    zeros = jnp.zeros(shape, s.jnp_dtype)
    zeros = nn.with_logical_constraint(zeros, (None, "act_batch", None, None, None))
    return {"k": zeros, "v": zeros}


def _generate(model: Transformer, sampling: Sampling, stop_ids: tuple[int, ...], pad_id: int, vocab_size: int | None,
              params, tokens, prompt_lens, key) -> Generated:
    b, p = tokens.shape
    n = sampling.max_new_tokens
    pad = p - prompt_lens
    col = jnp.arange(p, dtype=jnp.int32)[None]
    real = (col >= pad[:, None]).astype(jnp.int32)                                 # [B, P]
    positions = jnp.maximum(col - pad[:, None], 0)
    kv_segments = jnp.concatenate([real, jnp.ones((b, n), jnp.int32)], axis=1)     # [B, P + N]
    apply = functools.partial(model.apply, {"params": params}, kv_segments=kv_segments)

    logits, cache = apply(tokens, positions, real, cache=init_cache(model, b, p + n), cache_index=0, last_only=True)
    stops = jnp.asarray(stop_ids, jnp.int32)

    def cond(c):
        t, _, _, _, _, _, done, _ = c
        return (t < n) & ~jnp.all(done)

    def body(c):
        t, logits, cache, key, out, logp, done, lengths = c
        key, sub = jax.random.split(key)
        last = mask_vocab(logits[:, -1], vocab_size)
        tok = choose(last, sub, sampling)
        lp = token_logprobs(last, tok, temperature=sampling.temperature)
        tok = jnp.where(done, pad_id, tok)
        out = out.at[:, t].set(tok)
        logp = logp.at[:, t].set(jnp.where(done, 0.0, lp))
        lengths = lengths + (~done).astype(jnp.int32)
        done = done | jnp.isin(tok, stops)
        logits, cache = apply(tok[:, None], (prompt_lens + t)[:, None], jnp.ones((b, 1), jnp.int32),
                              cache=cache, cache_index=p + t)
        return t + 1, logits, cache, key, out, logp, done, lengths

    init = (jnp.int32(0), logits, cache, key, jnp.full((b, n), pad_id, jnp.int32), jnp.zeros((b, n), jnp.float32),
            jnp.zeros((b,), bool), jnp.zeros((b,), jnp.int32))
    _, _, _, _, out, logp, _, lengths = jax.lax.while_loop(cond, body, init)
    return Generated(out, logp, lengths)


jax.tree_util.register_dataclass(Generated, data_fields=["tokens", "logprobs", "lengths"], meta_fields=[])


def decoder(model: Transformer, sampling: Sampling, stop_ids: tuple[int, ...], pad_id: int = 0,
            vocab_size: int | None = None):
    """Jitted ``(params, tokens [B, P], prompt_lens [B], key) -> Generated``; one compile per shape and setting."""
    return _decoder(model.spec, sampling, tuple(stop_ids), pad_id, vocab_size)


@functools.lru_cache(maxsize=32)
def _decoder(spec, sampling: Sampling, stop_ids: tuple[int, ...], pad_id: int, vocab_size: int | None):
    return jax.jit(functools.partial(_generate, Transformer(spec), sampling, stop_ids, pad_id, vocab_size))


def generate(model: Transformer, params, prompts: list[list[int]], key: jax.Array, sampling: Sampling,
             stop_ids: tuple[int, ...] = (), pad_id: int = 0, batch_multiple: int = 1,
             vocab_size: int | None = None, length_multiple: int = 32) -> list[dict]:
    """Generate for a list of token prompts; returns per prompt ``{"tokens", "logprobs"}`` (numpy, without padding).

    ``vocab_size``: the tokenizer's (ids at or beyond it are never sampled). Prompts are left-padded to a
    multiple of ``length_multiple`` so that a chat or an evaluation reuses a few compiled shapes.

    ``batch_multiple``: pad the batch with copies of the first prompt to a multiple of it
    (the number of batch shards on the mesh); the copies are dropped from the result.
    """
    n = len(prompts)
    padded_n = -(-n // batch_multiple) * batch_multiple
    longest = max(len(p) for p in prompts)
    if model.spec.positions == "learned" and longest + sampling.max_new_tokens > model.spec.max_seq_len:
        raise ValueError(f"a {longest}-token prompt plus {sampling.max_new_tokens} new tokens exceeds the learned "
                         f"position table (max_seq_len {model.spec.max_seq_len}); shorten the prompt or max_new_tokens")
    tokens, lens = left_pad(list(prompts) + [prompts[0]] * (padded_n - n), pad_id,
                            -(-longest // length_multiple) * length_multiple)
    out = decoder(model, sampling, tuple(stop_ids), pad_id, vocab_size)(params, tokens, lens, key)
    toks, logps, lengths = to_host((out.tokens, out.logprobs, out.lengths))
    return [{"tokens": toks[i, :lengths[i]].tolist(), "logprobs": logps[i, :lengths[i]]} for i in range(n)]

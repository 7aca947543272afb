"""Causal self-attention with grouped-query heads and packed-segment masking.

Two kernels behind one signature: ``xla`` (einsum + float32 softmax; any
backend) and ``cudnn`` (`jax.nn.dot_product_attention`'s fused GPU kernel).
A query attends to key ``j`` only if ``j <= i`` and both belong to the same
segment, so packed documents never see each other; with a sliding window
(Mistral, Gemma's local layers) also only if ``j > i - window``.

With a KV cache (decoding) the layer writes its new keys/values into the cache
at ``cache_index`` and attends over the whole cache: key slot ``j`` is visible
to query ``i`` when ``j <= cache_index + i`` and the slot's segment equals the
query's (left padding is segment 0, so real tokens never see it).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxllm.model.layers import Dense, Norm, constrain, rope, rope_frequencies
from jaxllm.model.spec import ModelSpec

_NEG = -1e30  # finite, so a row never becomes NaN


def _window(mask: jax.Array, q_at: jax.Array, k_at: jax.Array, window) -> jax.Array:
    """``mask`` with keys at or beyond ``window`` places before their query dropped (as Hugging Face's
    ``kv_idx > q_idx - sliding_window``); ``window`` is an int or a traced scalar, 0 = no window."""
    if isinstance(window, int) and not window:
        return mask
    near = k_at[None, :] > q_at[:, None] - window
    return mask & (near | (window <= 0))


def attention_mask(segment_ids: jax.Array | None, q_len: int, kv_len: int, window=0) -> jax.Array:
    """Boolean ``[B|1, 1, Lq, Lk]``: causal, and same segment when ``segment_ids [B, L]`` is given; keys
    ``window`` or more places back hidden when ``window`` (an int or traced scalar) is non-zero."""
    q_at = jnp.arange(q_len) + (kv_len - q_len)
    causal = jnp.arange(kv_len)[None, :] <= q_at[:, None]
    mask = _window(causal, q_at, jnp.arange(kv_len), window)[None, None]
    if segment_ids is not None:
        same = segment_ids[:, None, :, None] == segment_ids[:, None, None, :]
        mask = mask & same
    return mask


def cache_mask(q_segments: jax.Array, kv_segments: jax.Array, index: jax.Array, window=0) -> jax.Array:
    """Boolean ``[B, 1, Lq, S]`` for queries at cache slots ``index + i`` over all ``S`` slots. Left padding
    is contiguous, so slot distance equals position distance and the window applies to slots."""
    q_len, kv_len = q_segments.shape[1], kv_segments.shape[1]
    q_at = jnp.arange(q_len) + index
    causal = jnp.arange(kv_len)[None, :] <= q_at[:, None]
    causal = _window(causal, q_at, jnp.arange(kv_len), window)
    same = q_segments[:, :, None] == kv_segments[:, None, :]
    return (causal[None] & same)[:, None]


def xla_attention(q, k, v, mask, scale: float | None = None, softcap: float = 0.0) -> jax.Array:
    """``q [B,L,H,D]``, ``k/v [B,S,K,D]`` with ``H % K == 0``; ``mask [B|1,1,L,S]`` -> ``[B,L,H,D]``.
    Scores are scaled by ``scale`` (default ``D**-0.5``) and, with ``softcap``, capped at ``c * tanh(s / c)``."""
    b, l, h, d = q.shape
    kv_heads = k.shape[2]
    q = q.reshape(b, l, kv_heads, h // kv_heads, d)  # group query heads per kv head
    scores = jnp.einsum("blkgd,bskd->bkgls", q, k, preferred_element_type=jnp.float32) * (d ** -0.5 if scale is None else scale)
    if softcap:
        scores = jnp.tanh(scores / softcap) * softcap
    scores = jnp.where(mask[:, :, None], scores, _NEG)  # mask [B,1,1,L,S]
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgls,bskd->blkgd", probs, v)
    return out.reshape(b, l, h, d)


def causal_blocked_attention(q, k, v, segment_ids, blocks: int, window=0, scale: float | None = None,
                             softcap: float = 0.0) -> jax.Array:
    """`xla_attention` for causal self-attention (``L == S``), with the queries split into ``blocks`` equal runs:
    run ``i`` attends to keys ``[0, end_i)`` only, so the all-masked upper blocks of the score matrix are never
    formed ((blocks + 1) / (2 blocks) of the work: 62.5% at 4). ``segment_ids [B, L]`` or None. ``[B, L, H, D]``."""
    l = q.shape[1]
    if blocks <= 1 or l % blocks:
        return xla_attention(q, k, v, attention_mask(segment_ids, l, l, window), scale, softcap)
    c = l // blocks
    outs = []
    for i in range(blocks):
        lo, hi = i * c, (i + 1) * c
        seg = None if segment_ids is None else segment_ids[:, :hi]
        mask = attention_mask(seg, hi, hi, window)[:, :, lo:]  # [B|1, 1, c, hi]
        outs.append(xla_attention(q[:, lo:hi], k[:, :hi], v[:, :hi], mask, scale, softcap))
    return jnp.concatenate(outs, axis=1)


def cudnn_attention(q, k, v, segment_ids, window=0, scale: float | None = None) -> jax.Array:
    """cuDNN fused attention (GPU only); segments enter as an explicit mask. A fixed window is cuDNN's own
    ``local_window_size``; a per-layer (traced) one enters the mask."""
    mask = None
    if segment_ids is not None:
        mask = segment_ids[:, None, :, None] == segment_ids[:, None, None, :]
    local = None
    if isinstance(window, int):
        local = (window - 1, 0) if window else None
    else:
        l = q.shape[1]
        win = attention_mask(None, l, l, window)
        mask = win if mask is None else mask & win
    return jax.nn.dot_product_attention(q, k, v, mask=mask, scale=scale, is_causal=True, local_window_size=local,
                                        implementation="cudnn")


class Attention(nn.Module):
    """Multi-head / grouped-query causal self-attention: ``[B, L, embed] -> [B, L, embed]``."""

    spec: ModelSpec

    @nn.compact
    def __call__(self, x, positions, segment_ids, cache=None, kv_segments=None, cache_index=None, layer=0):
        """Without ``cache``: ``out [B, L, embed]``. With the model's whole cache
        ``{"k", "v": [layers, B, S, kv_heads, head_dim]}``, ``kv_segments [B, S]``, a scalar ``cache_index`` and
        this block's ``layer``: ``(out, cache)``, the new keys/values written in place at ``[layer, :, cache_index]``."""
        s = self.spec
        b, l, _ = x.shape
        qkv_bias, out_bias = s.bias("qkv"), s.bias("out")
        q = Dense(s.n_heads * s.head_dim, ("embed", "heads"), s, bias=qkv_bias, name="q")(x)
        k = Dense(s.n_kv_heads * s.head_dim, ("embed", "kv_heads"), s, bias=qkv_bias, name="k")(x)
        v = Dense(s.n_kv_heads * s.head_dim, ("embed", "kv_heads"), s, bias=qkv_bias, name="v")(x)
        q = q.reshape(b, l, s.n_heads, s.head_dim)
        k = k.reshape(b, l, s.n_kv_heads, s.head_dim)
        v = v.reshape(b, l, s.n_kv_heads, s.head_dim)
        if s.qk_norm:  # Qwen3: each head's q and k normalised before RoPE
            q = Norm(s, name="q_norm")(q)
            k = Norm(s, name="k_norm")(k)
        if s.positions == "rope":
            inv_freq = rope_frequencies(s.head_dim, s.rope_theta, s.rope_scaling)
            q = rope(q, positions, inv_freq)
            k = rope(k, positions, inv_freq)
        q = constrain(q, ("act_batch", "act_length", "act_heads", "act_kv"))
        window = s.layer_window(layer)
        o_proj = Dense(s.d_model, ("heads", "embed"), s, std=s.init_std / (2 * s.n_layers) ** 0.5, bias=out_bias, name="o")
        if cache is not None:
            at = (layer, 0, cache_index, 0, 0)
            cache = {"k": jax.lax.dynamic_update_slice(cache["k"], k[None].astype(cache["k"].dtype), at),
                     "v": jax.lax.dynamic_update_slice(cache["v"], v[None].astype(cache["v"].dtype), at)}
            k_all = jax.lax.dynamic_index_in_dim(cache["k"], layer, keepdims=False).astype(q.dtype)
            v_all = jax.lax.dynamic_index_in_dim(cache["v"], layer, keepdims=False).astype(q.dtype)
            out = xla_attention(q, k_all, v_all, cache_mask(segment_ids, kv_segments, cache_index, window),
                                s.attn_scale, s.attn_softcap)
            return o_proj(out.reshape(b, l, s.n_heads * s.head_dim)), cache
        if s.attention == "cudnn":
            out = cudnn_attention(q, k, v, segment_ids, window, s.attn_scale)
        else:
            out = causal_blocked_attention(q, k, v, segment_ids, s.attention_blocks, window, s.attn_scale, s.attn_softcap)
        out = constrain(out, ("act_batch", "act_length", "act_heads", "act_kv"))
        return o_proj(out.reshape(b, l, s.n_heads * s.head_dim))

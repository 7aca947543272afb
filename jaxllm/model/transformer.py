"""Decoder-only Transformer; the family's choices (norm, positions, MLP: `families.py`) come in the `ModelSpec`.

Notable features:
- returns logits ``[B, L, vocab]`` (float32) or final hidden states; never a loss,
  so pre-training, SFT, reward and PPO heads reuse the same trunk;
- packed sequences: ``positions`` restart per document and ``segment_ids`` stop
  attention across documents;
- blocks stacked with ``nn.scan`` (one compiled block, params get a leading
  ``layers`` axis) or unrolled; rematerialisation policy by config;
- every parameter and large activation carries logical axis names;
- decoding: given a KV cache (``{"k", "v": [layers, B, S, kv_heads, head_dim]}``),
  the new tokens' keys/values are written at ``cache_index`` and the call returns
  ``(logits, cache)``; the same parameters serve training and generation.

Usage: ``Transformer(spec).apply({"params": params}, tokens)``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxllm.model.attention import Attention
from jaxllm.model.layers import Dense, Mlp, Norm, constrain
from jaxllm.model.lora import embed_adapters, kernel_value
from jaxllm.model.spec import ModelSpec

_REMAT_POLICIES = {
    "full": None,  # save nothing, recompute the whole block in the backward pass
    "save_dots": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


class Block(nn.Module):
    """Pre-norm residual block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``; with ``spec.post_norms``
    (Gemma 2) each branch's output is normed again before the add. ``[B, L, embed]``."""

    spec: ModelSpec
    deterministic: bool = True

    @nn.compact
    def __call__(self, x, positions, segment_ids, cache=None, decode=None, layer=0):
        """``[B, L, embed] -> ([B, L, embed], cache)``; ``decode = (kv_segments, cache_index)`` with the whole
        ``cache``, of which this block updates ``layer``. Without a cache the second output is None."""
        s = self.spec
        drop = nn.Dropout(s.dropout, deterministic=self.deterministic)
        attn = Attention(s, name="attn")
        h = Norm(s, name="attn_norm")(x)
        if cache is None:
            h = attn(h, positions, segment_ids, layer=layer)
        else:
            h, cache = attn(h, positions, segment_ids, cache, *decode, layer)
        if s.post_norms:
            h = Norm(s, name="attn_post_norm")(h)
        x = x + drop(h)
        h = Mlp(s, name="mlp")(Norm(s, name="mlp_norm")(x))
        if s.post_norms:
            h = Norm(s, name="mlp_post_norm")(h)
        x = x + drop(h)
        return constrain(x, ("act_batch", "act_length", "act_embed")), cache


class _DecodeBlock(Block):
    """`Block` for scanning while decoding: the carry is ``(x, whole cache)``, the scanned input the layer index,
    so each layer writes its slot of the cache in place instead of the scan copying the cache per step."""

    @nn.compact
    def __call__(self, carry, layer, positions, segment_ids, decode):  # noqa: D102
        x, cache = carry
        return super().__call__(x, positions, segment_ids, cache, decode, layer), None


def _scan(block_cls, spec: ModelSpec, deterministic: bool, in_axes: tuple):
    return nn.scan(
        block_cls,
        variable_axes={"params": 0},
        split_rngs={"params": True, "dropout": True},
        in_axes=in_axes,
        length=spec.n_layers,
        unroll=min(spec.scan_unroll, spec.n_layers),
        metadata_params={nn.PARTITION_NAME: "layers"},
    )(spec, deterministic, name="blocks")


def _stack(spec: ModelSpec, deterministic: bool, decoding: bool):
    """The n_layers blocks as one callable ``(x, positions, segment_ids, cache, decode) -> (x, cache)``."""
    if spec.scan_layers and decoding:  # no remat: nothing is differentiated while decoding
        scanned = _scan(_DecodeBlock, spec, deterministic, (0, nn.broadcast, nn.broadcast, nn.broadcast))
        return lambda x, p, s, cache, decode: scanned((x, cache), jnp.arange(spec.n_layers), p, s, decode)[0]
    if spec.scan_layers:
        block_cls = Block
        if spec.remat != "none":
            block_cls = nn.remat(block_cls, policy=_REMAT_POLICIES[spec.remat], prevent_cse=False)
        if spec.mixed_windows:  # the layer index is scanned over, so each layer finds its own window
            scanned = _scan(block_cls, spec, deterministic, (nn.broadcast,) * 4 + (0,))
            return lambda x, p, s, cache, decode: scanned(x, p, s, None, None, jnp.arange(spec.n_layers))
        scanned = _scan(block_cls, spec, deterministic, (nn.broadcast, nn.broadcast))
        return lambda x, p, s, cache, decode: scanned(x, p, s)

    block_cls = Block
    if spec.remat != "none" and not decoding:
        block_cls = nn.remat(block_cls, policy=_REMAT_POLICIES[spec.remat])
    blocks = [block_cls(spec, deterministic, name=f"block_{i}") for i in range(spec.n_layers)]

    def run(x, p, s, cache, decode):
        for i, blk in enumerate(blocks):
            x, cache = blk(x, p, s, cache, decode, i)
        return x, cache

    return run


class Transformer(nn.Module):
    """``tokens [B, L] -> logits [B, L, vocab]`` (or hidden states ``[B, L, embed]``)."""

    spec: ModelSpec

    @nn.compact
    def __call__(self, tokens, positions=None, segment_ids=None, *, deterministic: bool = True,
                 output: str = "logits", cache=None, kv_segments=None, cache_index=None, last_only: bool = False):
        """``cache``/``kv_segments [B, S]``/``cache_index`` for decoding (see the module doc);
        ``last_only`` computes the head for the last position only (``[B, 1, vocab]``)."""
        s = self.spec
        b, l = tokens.shape
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(l, dtype=jnp.int32)[None], (b, l))
        embedding = self.param("embed", nn.with_logical_partitioning(nn.initializers.normal(s.init_std), ("vocab", "embed")),
                               (s.vocab_size, s.d_model), s.jnp_param_dtype)
        x = jnp.take(embedding, tokens, axis=0).astype(s.jnp_dtype)
        adapters = embed_adapters(self)
        if adapters is not None:
            x = x + _embed_delta(s, adapters, tokens)
        if s.embed_scale:
            x = x * jnp.asarray(s.d_model ** 0.5, s.jnp_dtype)
        if s.positions == "learned":
            pos_table = self.param("pos_embed", nn.with_logical_partitioning(nn.initializers.normal(s.init_std / 2), ("positions", "embed")),
                                   (s.max_seq_len, s.d_model), s.jnp_param_dtype)
            x = x + jnp.take(pos_table, positions, axis=0).astype(s.jnp_dtype)
        x = nn.Dropout(s.dropout, deterministic=deterministic)(x)
        x = constrain(x, ("act_batch", "act_length", "act_embed"))

        decode = None if cache is None else (kv_segments, cache_index)
        x, cache = _stack(s, deterministic, cache is not None)(x, positions, segment_ids, cache, decode)
        if last_only:
            x = x[:, -1:]
        x = Norm(s, name="final_norm")(x)
        if output == "hidden":
            return x if cache is None else (x, cache)
        if s.tie_embeddings:
            logits = _tied_logits(s, x, embedding, adapters)
        else:
            logits = Dense(s.vocab_size, ("embed", "vocab"), s, bias=s.head_bias, name="lm_head")(x)
        logits = softcap_logits(s, constrain(logits, ("act_batch", "act_length", "act_vocab")).astype(jnp.float32))
        return logits if cache is None else (logits, cache)


def _embed_delta(spec: ModelSpec, adapters, tokens):
    """The embedding adapters' rows ``scale * A[tokens] B`` ``[B, L, embed]``."""
    a, b = adapters
    rows = jnp.take(a, tokens, axis=0).astype(spec.jnp_dtype)
    return (rows @ b.astype(spec.jnp_dtype)) * jnp.asarray(spec.lora_scale, spec.jnp_dtype)


def _tied_logits(spec: ModelSpec, x, embedding, adapters):
    """``x [B, L, D] @ (E + scale A B)^T``, the adapters (if any) applied without forming the sum."""
    logits = jnp.einsum("bld,vd->blv", x, embedding.astype(spec.jnp_dtype))
    if adapters is not None:
        a, b = (t.astype(spec.jnp_dtype) for t in adapters)
        logits = logits + jnp.einsum("blr,vr->blv", jnp.einsum("bld,rd->blr", x, b), a) * spec.lora_scale
    return logits


def softcap_logits(spec: ModelSpec, logits: jax.Array) -> jax.Array:
    """Gemma 2's final soft-cap ``c * tanh(z / c)`` (float32), or ``logits`` unchanged."""
    c = spec.final_softcap
    return jnp.tanh(logits / c) * c if c else logits


def output_logits(spec: ModelSpec, params, x: jax.Array) -> jax.Array:
    """The output head from the parameter tree, for losses that run it themselves (in chunks):
    ``x [B, C, D]`` (final-normed hidden states) -> float32 logits ``[B, C, V]``, as `Transformer` computes them."""
    if spec.tie_embeddings:
        adapters = (params["embed_lora_a"], params["embed_lora_b"]) if "embed_lora_a" in params else None
        logits = _tied_logits(spec, x.astype(spec.jnp_dtype), params["embed"], adapters)
    else:
        head = params["lm_head"]
        xd = x.astype(spec.jnp_dtype)
        logits = jnp.einsum("bld,dv->blv", xd, kernel_value(head["kernel"]).astype(spec.jnp_dtype))
        if "lora_a" in head:
            h = jnp.einsum("bld,dr->blr", xd, head["lora_a"].astype(spec.jnp_dtype))
            logits = logits + jnp.einsum("blr,rv->blv", h, head["lora_b"].astype(spec.jnp_dtype)) * spec.lora_scale
        if "bias" in head:
            logits = logits + head["bias"].astype(spec.jnp_dtype)
    logits = constrain(logits, ("act_batch", "act_length", "act_vocab"))
    return softcap_logits(spec, logits.astype(jnp.float32))


def param_count(params) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(params))

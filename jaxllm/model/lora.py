"""LoRA adapters and the frozen (optionally quantized) base they sit on.

A targeted ``Dense`` (`layers.py`, by module name: q, k, v, o, gate, up, proj, fc, lm_head) owns two
more parameters beside its kernel ``W [in, out]``: ``lora_a [in, r]`` (uniform +-1/sqrt(in), as PEFT)
and ``lora_b [r, out]`` (zeros), and computes ``x W + (alpha / r) * dropout(x) A B``; with ``embed``
targeted the embedding owns ``embed_lora_a [vocab, r]`` (zeros) and ``embed_lora_b [r, embed]``
(normal), as PEFT's embedding adapters. Adapters are *off* where they are absent from the parameter
tree: the same module applied to the base tree alone is the base model (DPO/PPO/GRPO's reference,
with no second copy of the weights).

The trainer keeps the trainable part (adapters + ``lora.train`` leaves) in its state and the rest as
a frozen base (`split`, `overlay`); `merge` folds the adapters into the kernels (export, inference).
Quantized base kernels (QLoRA) are qwix `QArray`s, dequantized where the kernel is read (`kernel_value`).
"""

from __future__ import annotations

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

ADAPTERS = ("lora_a", "lora_b", "embed_lora_a", "embed_lora_b")


@flax.struct.dataclass
class Packed4:
    """A 4-bit (NF4) quantized kernel with its codes two to a byte: ``codes [..., in/2, out]`` uint8 (rows 2k and
    2k+1 in the low and high nibble), ``scale`` as qwix made it. qwix stores the codes as uint4, which XLA:CPU
    keeps unpacked on a multi-device mesh while the compiled step expects them packed; bytes work everywhere."""

    codes: jax.Array
    scale: jax.Array
    qtype: str = flax.struct.field(pytree_node=False, default="nf4")

    def qarray(self):
        import qwix

        low, high = self.codes & 0xF, self.codes >> 4
        codes = jnp.stack([low, high], axis=-2)  # [..., in/2, 2, out]
        codes = codes.reshape(*self.codes.shape[:-2], 2 * self.codes.shape[-2], self.codes.shape[-1])
        return qwix.QArray(codes.astype(jnp.uint4), self.scale, None, self.qtype)


def is_quantized(w) -> bool:
    """A quantized kernel: `Packed4` or a qwix ``QArray`` (which has ``qvalue``)."""
    return isinstance(w, Packed4) or hasattr(w, "qvalue")


def kernel_value(w):
    """A kernel as an array: a quantized one (qwix ``QArray``, `Packed4`) is dequantized (in its scale's dtype)."""
    if not is_quantized(w):
        return w
    import qwix
    return qwix.dequantize(w.qarray() if isinstance(w, Packed4) else w)


def dense_adapter(module: nn.Module, x2d: jax.Array, axes: tuple[str, str], features: int) -> jax.Array | None:
    """``(alpha / r) * dropout(x) A B`` for a targeted Dense (``x2d [N, in]``), or None with adapters off."""
    s = module.spec
    if not (module.is_initializing() or module.has_variable("params", "lora_a")):
        return None
    d_in, r = x2d.shape[-1], s.lora_rank
    bound = d_in ** -0.5
    a = module.param("lora_a", nn.with_logical_partitioning(
        lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -bound, bound), (axes[0], "lora")),
        (d_in, r), s.jnp_param_dtype)
    b = module.param("lora_b", nn.with_logical_partitioning(nn.initializers.zeros, ("lora", axes[1])),
                     (r, features), s.jnp_param_dtype)
    if s.lora_dropout and module.has_rng("dropout"):
        x2d = nn.Dropout(s.lora_dropout, deterministic=False)(x2d)
    h = x2d.astype(s.jnp_dtype) @ a.astype(s.jnp_dtype)
    return (h @ b.astype(s.jnp_dtype)) * jnp.asarray(s.lora_scale, s.jnp_dtype)


def embed_adapters(module: nn.Module) -> tuple[jax.Array, jax.Array] | None:
    """The embedding's ``(A [vocab, r], B [r, embed])``, or None (not targeted, or adapters off)."""
    s = module.spec
    if not s.lora("embed") or not (module.is_initializing() or module.has_variable("params", "embed_lora_a")):
        return None
    a = module.param("embed_lora_a", nn.with_logical_partitioning(nn.initializers.zeros, ("vocab", "lora")),
                     (s.vocab_size, s.lora_rank), s.jnp_param_dtype)
    b = module.param("embed_lora_b", nn.with_logical_partitioning(nn.initializers.normal(1.0), ("lora", "embed")),
                     (s.lora_rank, s.d_model), s.jnp_param_dtype)
    return a, b


def _flat(tree) -> dict:
    return traverse_util.flatten_dict(tree) if tree else {}


def is_adapter(path: tuple) -> bool:
    return path[-1] in ADAPTERS


def has_adapters(tree) -> bool:
    return any(is_adapter(k) for k in _flat(tree))


def split(params, train: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """``(trainable, base)``: adapters and leaves named in ``train`` vs the rest. ``train`` leaves stay in the
    base too (their initial values: the reference model's, e.g. a reward model's head)."""
    flat = _flat(params)
    trainable = {k: v for k, v in flat.items() if is_adapter(k) or k[-1] in train}
    base = {k: v for k, v in flat.items() if not is_adapter(k)}
    return traverse_util.unflatten_dict(trainable), traverse_util.unflatten_dict(base)


def overlay(base, trainable) -> dict:
    """The whole parameter tree: ``base`` with ``trainable``'s leaves added or replacing (no copies)."""
    flat = _flat(base)
    flat.update(_flat(trainable))
    return traverse_util.unflatten_dict(flat)


def without_adapters(tree) -> dict:
    return traverse_util.unflatten_dict({k: v for k, v in _flat(tree).items() if not is_adapter(k)})


def merge(params, scale: float, dtype=None) -> dict:
    """Fold every adapter into its kernel: ``W + scale * A B`` (embedding: ``E + scale * A B``), in float32,
    stored in the kernel's dtype (``dtype`` for a quantized kernel: default float32). Returns the tree
    without adapters (a plain model: export, fast decoding). Works on stacked (``[layers, ...]``) leaves."""
    flat = _flat(params)
    out = {k: v for k, v in flat.items() if not is_adapter(k)}
    for k, a in flat.items():
        if k[-1] == "lora_a":
            w, b = k[:-1] + ("kernel",), flat[k[:-1] + ("lora_b",)]
        elif k[-1] == "embed_lora_a":
            w, b = k[:-1] + ("embed",), flat[k[:-1] + ("embed_lora_b",)]
        else:
            continue
        base = kernel_value(out[w])
        delta = jnp.einsum("...ir,...ro->...io", jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
        target = (dtype or jnp.float32) if is_quantized(out[w]) else base.dtype
        out[w] = (jnp.asarray(base, jnp.float32) + scale * delta).astype(target)
    return traverse_util.unflatten_dict(out)


def quantize_kernels(base, qtype: str, block: int) -> dict:
    """The base's 2-D (or stacked 3-D) ``kernel`` leaves as qwix QArrays: ``qtype`` int8 or nf4, one scale per
    ``block`` inputs of each output (per output where ``block`` does not divide the input size), bfloat16
    scales. Embeddings, norms, biases and the output head stay as they are (QLoRA quantizes the blocks' linear layers)."""
    import qwix

    qt = jnp.int8 if qtype == "int8" else qtype
    out = {}
    for k, v in _flat(base).items():
        if k[-1] == "kernel" and "lm_head" not in k:
            d_in = v.shape[-2]
            tiles = {v.ndim - 2: block} if d_in % block == 0 else {}
            channels = (*range(v.ndim - 2), v.ndim - 1)
            if qtype == "nf4" and d_in % 2:
                out[k] = v  # an odd input size cannot pack two codes to a byte: left as it is
                continue
            v = qwix.quantize(jnp.asarray(v, jnp.float32), qt, channelwise_axes=channels, tiled_axes=tiles,
                              scale_dtype=jnp.bfloat16)
            if qtype == "nf4":
                c = v.qvalue.astype(jnp.uint8)
                c = c.reshape(*c.shape[:-2], c.shape[-2] // 2, 2, c.shape[-1])
                v = Packed4(c[..., 0, :] | (c[..., 1, :] << 4), v.scale)
        out[k] = v
    return traverse_util.unflatten_dict(out)


def logical_size(tree) -> int:
    """Parameters in ``tree`` counted as the model's weights (a quantized kernel counts its weights, not its scales)."""
    n = 0
    for leaf in jax.tree.leaves(tree, is_leaf=is_quantized):
        if isinstance(leaf, Packed4):
            n += 2 * int(np.prod(leaf.codes.shape))
        elif is_quantized(leaf):
            n += int(np.prod(leaf.qvalue.shape))
        else:
            n += int(np.prod(leaf.shape))
    return n


def cast(tree, dtype) -> dict:
    """Floating leaves in ``dtype`` (the frozen base stored in bf16)."""
    def one(x):
        return x.astype(dtype) if isinstance(x, (jax.Array, np.ndarray)) and jnp.issubdtype(x.dtype, jnp.floating) else x
    return jax.tree.map(one, tree)

"""Building blocks: dense, norms, MLPs and RoPE, each parameter named by logical axes.

Kernels are 2-D (`[in, out]`) on purpose: logically partitioned >2-D kernels
break under `jax.set_mesh` in Flax 0.12 (see shared STACK_NOTES), and 2-D
kernels map one-to-one onto Hugging Face weights.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxllm.model.lora import dense_adapter, is_quantized, kernel_value
from jaxllm.model.spec import ModelSpec

Axes = tuple[str | None, ...]


def constrain(x: jax.Array, names: Axes) -> jax.Array:
    """Pin an activation's sharding by logical names (a no-op without rules/mesh)."""
    return nn.with_logical_constraint(x, names)


class Dense(nn.Module):
    """``y = x @ W (+ b)`` with ``W: [in, out]`` named ``axes``; computes in ``spec.dtype``. A module named in
    ``spec.lora_targets`` adds its LoRA update when its adapters are in the tree (`model/lora.py`); a quantized
    kernel (QLoRA's frozen base) is dequantized here."""

    features: int
    axes: tuple[str, str]
    spec: ModelSpec
    std: float | None = None
    bias: bool | None = None  # None = spec.use_bias

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        std = self.spec.init_std if self.std is None else self.std
        kernel = self.get_variable("params", "kernel") if self.has_variable("params", "kernel") else None
        if kernel is None or not is_quantized(kernel):  # flax's shape check would read a packed kernel's codes
            kernel = self.param("kernel", nn.with_logical_partitioning(nn.initializers.normal(std), self.axes),
                                (x.shape[-1], self.features), self.spec.jnp_param_dtype)
        # a 2-D matmul over the flattened leading axes: XLA:CPU lays the batched form's backward out with
        # transposed copies (2x slower MLP gradient); on accelerators the reshape is free
        lead = x.shape[:-1]
        x2d = x.reshape(-1, x.shape[-1])
        y = x2d.astype(self.spec.jnp_dtype) @ kernel_value(kernel).astype(self.spec.jnp_dtype)
        if self.spec.lora(self.name):
            delta = dense_adapter(self, x2d, self.axes, self.features)
            y = y if delta is None else y + delta
        y = y.reshape(*lead, self.features)
        if self.spec.use_bias if self.bias is None else self.bias:
            bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, (self.axes[1],)),
                              (self.features,), self.spec.jnp_param_dtype)
            y = y + bias.astype(self.spec.jnp_dtype)
        return y


class Norm(nn.Module):
    """LayerNorm or RMSNorm (``spec.norm``), statistics in float32, over the last axis (``[..., embed]``, or
    ``[..., head_dim]`` for Qwen3's q/k norms, whose scale is named ``axis``)."""

    spec: ModelSpec
    axis: str = "norm"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = x.shape[-1]
        xf = x.astype(jnp.float32)
        offset = self.spec.norm_offset  # Gemma: y * (1 + w), w initialised at 0
        init = nn.initializers.zeros if offset else nn.initializers.ones
        scale = self.param("scale", nn.with_logical_partitioning(init, (self.axis,)), (d,), self.spec.jnp_param_dtype)
        layernorm = self.spec.norm == "layernorm"
        if layernorm:
            xf = xf - jnp.mean(xf, axis=-1, keepdims=True)
        y = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.spec.norm_eps)
        y = y * (scale.astype(jnp.float32) + offset) if offset else y * scale.astype(jnp.float32)
        if layernorm and self.spec.use_bias:
            bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, (self.axis,)),
                              (d,), self.spec.jnp_param_dtype)
            y = y + bias.astype(jnp.float32)
        return y.astype(self.spec.jnp_dtype)


class Mlp(nn.Module):
    """GELU MLP, SwiGLU or GeGLU (``spec.mlp``): ``[B, L, embed] -> [B, L, embed]``."""

    spec: ModelSpec

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        s = self.spec
        out_std = s.init_std / (2 * s.n_layers) ** 0.5
        bias = s.bias("mlp")
        if s.mlp == "gelu":
            h = jax.nn.gelu(Dense(s.d_ff, ("embed", "mlp"), s, bias=bias, name="fc")(x), approximate=True)
        else:
            gate = Dense(s.d_ff, ("embed", "mlp"), s, bias=bias, name="gate")(x)
            up = Dense(s.d_ff, ("embed", "mlp"), s, bias=bias, name="up")(x)
            act = jax.nn.silu(gate) if s.mlp == "swiglu" else jax.nn.gelu(gate, approximate=True)
            h = act * up
        h = constrain(h, ("act_batch", "act_length", "act_mlp"))
        return Dense(s.d_model, ("mlp", "embed"), s, std=out_std, bias=bias, name="proj")(h)


def rope_frequencies(head_dim: int, theta: float, scaling: tuple = ()) -> np.ndarray:
    """Inverse frequencies ``[head_dim / 2]`` (float32), scaled as Hugging Face's rope_type does:
    ``scaling = (type, factor, low_freq_factor, high_freq_factor, original_max_len)`` or ``()``."""
    inv = (1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))).astype(np.float32)
    if not scaling:
        return inv
    kind, factor, low, high, original = scaling
    if kind == "linear":
        return (inv / factor).astype(np.float32)
    # llama3: long wavelengths divided by factor, short ones kept, a smooth blend between
    low_wavelen, high_wavelen = original / low, original / high
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (original / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(medium, blended, scaled).astype(np.float32)


def rope(x: jax.Array, positions: jax.Array, inv_freq: np.ndarray) -> jax.Array:
    """Rotary embedding, rotate-half layout (as Llama/HF). ``x: [B, L, H, D]``, ``positions: [B, L]``,
    ``inv_freq [D/2]`` from `rope_frequencies`."""
    d = x.shape[-1]
    angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)  # [B, L, D/2]
    cos = jnp.cos(angles)[:, :, None, :]
    sin = jnp.sin(angles)[:, :, None, :]
    xf = x.astype(jnp.float32)
    x1, x2 = xf[..., : d // 2], xf[..., d // 2:]
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)

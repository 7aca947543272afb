"""Building blocks: dense, norms, MLPs and RoPE, each parameter named by logical axes.

Kernels are 2-D (`[in, out]`) on purpose: logically partitioned >2-D kernels
break under `jax.set_mesh` in Flax 0.12 (see shared STACK_NOTES), and 2-D
kernels map one-to-one onto Hugging Face weights.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxllm.model.spec import ModelSpec

Axes = tuple[str | None, ...]


def constrain(x: jax.Array, names: Axes) -> jax.Array:
    """Pin an activation's sharding by logical names (a no-op without rules/mesh)."""
    return nn.with_logical_constraint(x, names)


class Dense(nn.Module):
    """``y = x @ W (+ b)`` with ``W: [in, out]`` named ``axes``; computes in ``spec.dtype``."""

    features: int
    axes: tuple[str, str]
    spec: ModelSpec
    std: float | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        std = self.spec.init_std if self.std is None else self.std
        kernel = self.param("kernel", nn.with_logical_partitioning(nn.initializers.normal(std), self.axes),
                            (x.shape[-1], self.features), self.spec.jnp_param_dtype)
        # a 2-D matmul over the flattened leading axes: XLA:CPU lays the batched form's backward out with
        # transposed copies (2x slower MLP gradient); on accelerators the reshape is free
        lead = x.shape[:-1]
        y = x.reshape(-1, x.shape[-1]).astype(self.spec.jnp_dtype) @ kernel.astype(self.spec.jnp_dtype)
        y = y.reshape(*lead, self.features)
        if self.spec.use_bias:
            bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, (self.axes[1],)),
                              (self.features,), self.spec.jnp_param_dtype)
            y = y + bias.astype(self.spec.jnp_dtype)
        return y


class Norm(nn.Module):
    """LayerNorm (gpt2) or RMSNorm (llama), statistics in float32. ``[..., embed]``."""

    spec: ModelSpec

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = x.shape[-1]
        xf = x.astype(jnp.float32)
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
                           (d,), self.spec.jnp_param_dtype)
        if self.spec.family == "gpt2":
            xf = xf - jnp.mean(xf, axis=-1, keepdims=True)
        y = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.spec.norm_eps)
        y = y * scale.astype(jnp.float32)
        if self.spec.family == "gpt2" and self.spec.use_bias:
            bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)),
                              (d,), self.spec.jnp_param_dtype)
            y = y + bias.astype(jnp.float32)
        return y.astype(self.spec.jnp_dtype)


class Mlp(nn.Module):
    """GELU MLP (gpt2) or SwiGLU (llama): ``[B, L, embed] -> [B, L, embed]``."""

    spec: ModelSpec

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        s = self.spec
        out_std = s.init_std / (2 * s.n_layers) ** 0.5
        if s.family == "gpt2":
            h = jax.nn.gelu(Dense(s.d_ff, ("embed", "mlp"), s, name="fc")(x), approximate=True)
        else:
            gate = Dense(s.d_ff, ("embed", "mlp"), s, name="gate")(x)
            up = Dense(s.d_ff, ("embed", "mlp"), s, name="up")(x)
            h = jax.nn.silu(gate) * up
        h = constrain(h, ("act_batch", "act_length", "act_mlp"))
        return Dense(s.d_model, ("mlp", "embed"), s, std=out_std, name="proj")(h)


def rope(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
    """Rotary embedding, rotate-half layout (as Llama/HF). ``x: [B, L, H, D]``, ``positions: [B, L]``."""
    d = x.shape[-1]
    inv_freq = 1.0 / (theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))  # [D/2]
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, L, D/2]
    cos = jnp.cos(angles)[:, :, None, :]
    sin = jnp.sin(angles)[:, :, None, :]
    xf = x.astype(jnp.float32)
    x1, x2 = xf[..., : d // 2], xf[..., d // 2:]
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)

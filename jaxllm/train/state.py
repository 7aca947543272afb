"""The train state pytree and its sharded initialisation.

The sharded set-up follows Flax's lm1b in four moves: abstract init
(``eval_shape``) -> logical partition specs -> mesh shardings via the rules
table -> ``jit(init, out_shardings=...)``, so parameters are born sharded and
never exist whole on one device.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from jaxllm.model.lora import split
from jaxllm.parallel.layout import Layout
from jaxllm.parallel.sharding import logical_to_shardings


@flax.struct.dataclass
class TrainState:
    step: jax.Array       # [] int32, optimizer steps taken
    params: Any
    opt_state: Any
    rng: jax.Array        # [2] uint32 raw key, split every step for dropout


def init_fn(model: nn.Module, tx: optax.GradientTransformation, seq_len: int, lora_train: tuple | None = None):
    """``rng -> boxed TrainState`` (boxes carry logical axis names; unboxed after sharding). With ``lora_train``
    (LoRA: the names trained beside the adapters) ``rng -> (TrainState of the trainable part, frozen base)``."""

    def init(rng):
        init_rng, state_rng = jax.random.split(rng)
        tokens = jnp.zeros((1, min(seq_len, 8)), jnp.int32)
        params = model.init({"params": init_rng}, tokens)["params"]
        base = None
        if lora_train is not None:
            params, base = split(params, lora_train)
        state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=state_rng)
        return state if base is None else (state, base)

    return init


def abstract_params(model: nn.Module, mesh: Mesh, rules: list):
    """Parameter shapes with their mesh shardings (`Layout.abstract_params`), for restoring onto a mesh."""
    return Layout(mesh, rules).abstract_params(model)


def sharded_init(model: nn.Module, tx: optax.GradientTransformation, seq_len: int, mesh: Mesh, rules: list,
                 lora_train: tuple | None = None):
    """Returns ``(init(rng) -> TrainState on the mesh, state shardings, abstract state)``; with ``lora_train``
    each of the three is a pair ``(state's, base's)`` (see `init_fn`)."""
    init = init_fn(model, tx, seq_len, lora_train)
    with nn.logical_axis_rules(()):  # shapes only: activation constraints are irrelevant here
        abstract_boxed = jax.eval_shape(init, jax.random.PRNGKey(0))
        abstract = nn.meta.unbox(abstract_boxed)
    shardings = logical_to_shardings(abstract_boxed, mesh, rules)
    abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
    jitted = jax.jit(lambda rng: nn.meta.unbox(init(rng)), out_shardings=shardings)
    return jitted, shardings, abstract

"""The pure train and eval steps, and the one helper that builds their jit signature.

``train_step(state, batch, frozen) -> (state, metrics)``: gradient accumulation over
``grad_accum`` micro-batches with ``lax.scan``, exact because losses are
(sum, denominator) pairs: the gradient is d(sum of loss sums)/d(params)
divided by the summed denominator, whatever the split. ``frozen`` holds the parameters of
models the loss reads but never trains (a reference policy): an argument of the jitted step with
its own shardings, never a closed-over constant.

A step whose loss or gradient norm is not finite changes nothing: parameters and optimizer
state stay as they were (a select on device, no host sync) and the metric ``nonfinite`` is 1.
The loop reads that flag with the other metrics and stops or skips (``train.nonfinite``).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxllm.parallel.sharding import batch_sharding
from jaxllm.train.state import TrainState

# (params, batch, frozen, rng) -> (loss_sum, denominator, {name: (sum, count)}): see objectives/base.py
LossFn = Callable[..., tuple[Any, Any, dict[str, tuple[Any, Any]]]]


def _split_micro(batch: dict, n: int) -> dict:
    """``[B, ...] -> [n, B/n, ...]`` taking every n-th row, so each micro-batch keeps every device's share."""
    return jax.tree.map(lambda x: x.reshape(x.shape[0] // n, n, *x.shape[1:]).swapaxes(0, 1), batch)


def _sums(loss_fn: LossFn, params, batch, frozen, rng):
    """Loss sum, denominator and metric sums with the gradient of the loss sum."""

    def f(p):
        loss_sum, denom, metrics = loss_fn(p, batch, frozen, rng)
        return loss_sum, (denom, metrics)

    (loss_sum, (denom, metrics)), grads = jax.value_and_grad(f, has_aux=True)(params)
    return loss_sum, denom, metrics, grads


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation, schedule, grad_accum: int = 1,
                    dropout: bool = False):
    def step(state: TrainState, batch: dict, frozen=None):
        rng, step_rng = jax.random.split(state.rng)
        if grad_accum == 1:
            loss_sum, denom, metrics, grads = _sums(loss_fn, state.params, batch, frozen, step_rng if dropout else None)
        else:
            micro = _split_micro(batch, grad_accum)

            def body(carry, xs):
                i, mb = xs
                r = jax.random.fold_in(step_rng, i) if dropout else None
                out = _sums(loss_fn, state.params, mb, frozen, r)
                return jax.tree.map(jnp.add, carry, out), None

            zero = jax.tree.map(jnp.zeros_like, jax.eval_shape(lambda: _sums(loss_fn, state.params,
                                                                              jax.tree.map(lambda x: x[0], micro), frozen, None)))
            (loss_sum, denom, metrics, grads), _ = jax.lax.scan(body, zero, (jnp.arange(grad_accum), micro))
        denom = jnp.maximum(denom, 1e-9)
        grads = jax.tree.map(lambda g: g / denom, grads)
        loss, grad_norm = loss_sum / denom, optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
        params, opt_state = jax.tree.map(keep, params, state.params), jax.tree.map(keep, opt_state, state.opt_state)
        out = {
            "loss": loss,
            "grad_norm": grad_norm,
            "lr": schedule(state.step),
            "nonfinite": 1.0 - finite.astype(jnp.float32),
            "denominator": denom,
        }
        out.update({k: s / jnp.maximum(c, 1e-9) for k, (s, c) in metrics.items()})
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state, rng=rng), out

    return step


def make_eval_step(loss_fn: LossFn):
    """``(params, batch, frozen) -> (loss_sum, denominator, metric sums)`` with dropout off."""

    def step(params, batch, frozen=None):
        return loss_fn(params, batch, frozen, None)

    return step


def _frozen_shardings(frozen) -> tuple:
    """The placed frozen arrays' formats (sharding and memory layout: a 4-bit quantized base is laid out
    unpacked on CPU, which a sharding alone would compile against as packed)."""
    return () if frozen is None else (jax.tree.map(lambda x: x.format, frozen),)


def jit_train_step(step, mesh: Mesh, rules: list, state_shardings, example_batch: dict, frozen=None):
    """jit with explicit shardings (this is pjit): state in/out as the rules say, batch over
    ``act_batch``'s axes, ``frozen`` (placed arrays, or None: not passed) as placed, metrics
    replicated; the old state's buffers are donated."""
    batch_sh = {k: batch_sharding(mesh, rules, v.ndim) for k, v in example_batch.items()}
    return jax.jit(step, in_shardings=(state_shardings, batch_sh, *_frozen_shardings(frozen)),
                   out_shardings=(state_shardings, NamedSharding(mesh, P())), donate_argnums=(0,))


def jit_eval_step(step, mesh: Mesh, rules: list, param_shardings, example_batch: dict, frozen=None):
    batch_sh = {k: batch_sharding(mesh, rules, v.ndim) for k, v in example_batch.items()}
    return jax.jit(step, in_shardings=(param_shardings, batch_sh, *_frozen_shardings(frozen)),
                   out_shardings=NamedSharding(mesh, P()))

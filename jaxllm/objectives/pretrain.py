"""Pre-training: next-token cross-entropy over packed sequences.

Batch: ``inputs, targets, positions, segment_ids [B, L]`` int32 and
``loss_mask [B, L]`` float32 (0 where a target crosses a document boundary or
is padding).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxllm.config.schema import Config
from jaxllm.data.packing import BatchIterator, eval_batches
from jaxllm.data.prepare import PretrainData
from jaxllm.model.transformer import Transformer
from jaxllm.objectives.base import Objective


def token_nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """``-log p(target)`` per position: ``logits [B, L, V]`` float32, ``targets [B, L]`` -> ``[B, L]``."""
    logz = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return logz - picked


def make_lm_loss(model: Transformer):
    """Masked next-token loss as (sum, token count, metrics); also the SFT loss with a response mask."""

    def loss(params, batch, frozen=None, rng=None):
        del frozen
        logits = model.apply(
            {"params": params}, batch["inputs"], batch["positions"], batch["segment_ids"],
            deterministic=rng is None, rngs={"dropout": rng} if rng is not None else {},
        )
        mask = batch["loss_mask"]
        nll = token_nll(logits, batch["targets"])
        loss_sum = jnp.sum(nll * mask)
        n = jnp.sum(mask)
        correct = (jnp.argmax(logits, -1) == batch["targets"]).astype(jnp.float32)
        return loss_sum, n, {"accuracy": (jnp.sum(correct * mask), n)}

    return loss


def build_pretrain(cfg: Config, model: Transformer, data: PretrainData,
                   process_index: int = 0, process_count: int = 1) -> Objective:
    t = cfg.train
    train_stream = data.streams["train"]
    eval_stream = data.streams.get("eval", train_stream)
    source = BatchIterator(train_stream, t.seq_len, t.batch_size, seed=cfg.seed, shuffle=cfg.data.shuffle,
                           process_index=process_index, process_count=process_count)
    evals = eval_batches(eval_stream, t.seq_len, t.batch_size, t.eval_batches, process_index, process_count)
    return Objective("pretrain", make_lm_loss(model), source, evals, tokens_per_step=t.batch_size * t.seq_len)

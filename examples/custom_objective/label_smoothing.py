"""Label-smoothed next-token loss: a worked example of an objective that lives outside jaxllm.

The whole objective is this file. ``objective.name: label_smoothing:SPEC`` (with this folder on
PYTHONPATH) or ``objective.name: examples/custom_objective/label_smoothing.py:SPEC`` selects it; its
options are read from ``objective.label_smoothing`` and checked like every built-in option.

Loss per target position, with eps = ``smoothing`` and V the tokenizer's vocabulary (padded embedding
rows beyond it get no mass):

    (1 - eps) * -log p(target) + eps * mean_v(-log p(v))

summed over real targets, with the target count as the denominator (the interface's convention:
gradient accumulation and multi-host averages stay exact). ``nll`` is logged beside it, so runs
compare with plain pre-training.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from jaxllm.config.schema import option
from jaxllm.data.packing import BatchIterator, eval_batches
from jaxllm.data.prepare import load_pretrain_data
from jaxllm.data.report import data_lines
from jaxllm.errors import ConfigError
from jaxllm.objectives.base import Objective, ObjectiveSpec


@dataclass
class LabelSmoothingConfig:
    smoothing: float = option(0.1, min=0.0, max=1.0, doc="eps: the share of each target's mass spread over the vocabulary.")


def make_loss(model, smoothing: float, vocab: int):
    """``loss(params, batch, frozen, rng)`` over packed rows ``inputs, targets, positions, segment_ids, loss_mask [B, L]``."""

    def loss(params, batch, frozen=None, rng=None):
        logits = model.apply({"params": params}, batch["inputs"], batch["positions"], batch["segment_ids"],
                             deterministic=rng is None, rngs={"dropout": rng} if rng is not None else {})
        logp = jax.nn.log_softmax(logits[..., :vocab], axis=-1)                       # [B, L, V]
        nll = -jnp.take_along_axis(logp, batch["targets"][..., None], axis=-1)[..., 0]  # [B, L]
        uniform = -jnp.mean(logp, axis=-1)                                            # [B, L]
        mask = batch["loss_mask"]
        n = jnp.sum(mask)
        per_token = (1.0 - smoothing) * nll + smoothing * uniform
        return jnp.sum(per_token * mask), n, {"nll": (jnp.sum(nll * mask), n)}

    return loss


def build(cfg, model, data, process_index: int = 0, process_count: int = 1) -> Objective:
    t, opts = cfg.train, cfg.objective.label_smoothing
    train = data.streams["train"]
    source = BatchIterator(train, t.seq_len, t.batch_size, seed=cfg.seed, shuffle=cfg.data.shuffle,
                           process_index=process_index, process_count=process_count)
    evals = eval_batches(data.streams.get("eval", train), t.seq_len, t.batch_size, t.eval_batches,
                         process_index, process_count)
    return Objective("label_smoothing", make_loss(model, opts.smoothing, data.tokenizer.vocab_size), source, evals,
                     tokens_per_step=t.batch_size * t.seq_len)


def validate(cfg) -> None:
    if cfg.objective.label_smoothing.smoothing == 1.0:
        raise ConfigError("objective.label_smoothing.smoothing = 1.0 ignores the targets entirely; use a value below 1.")


SPEC = ObjectiveSpec("label_smoothing", load=load_pretrain_data, build=build, config=LabelSmoothingConfig,
                     validate=validate, report=data_lines, chat=False,
                     doc="next-token loss with label smoothing (an example plugin)")

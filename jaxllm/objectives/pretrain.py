"""Pre-training: next-token cross-entropy over packed sequences.

Batch: ``inputs, targets, positions, segment_ids [B, L]`` int32 and
``loss_mask [B, L]`` float32 (0 where a target crosses a document boundary or
is padding).
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxllm.config.schema import Config
from jaxllm.data.packing import BatchIterator, eval_batches
from jaxllm.data.prepare import PretrainData, load_pretrain_data
from jaxllm.data.report import data_lines
from jaxllm.model.transformer import Transformer
from jaxllm.objectives.base import Objective, ObjectiveSpec
from jaxllm.objectives.lm_head import token_nll_and_hits


def make_lm_loss(model: Transformer, chunk: int = 0):
    """Masked next-token loss as (sum, token count, metrics); also the SFT loss with a response mask.

    ``chunk`` > 0 runs the output head and cross-entropy ``chunk`` positions at a time
    (`lm_head.token_nll_and_hits`), so the whole float32 logits ``[B, L, V]`` are never held.
    """

    def loss(params, batch, frozen=None, rng=None):
        del frozen
        hidden = model.apply(
            {"params": params}, batch["inputs"], batch["positions"], batch["segment_ids"],
            deterministic=rng is None, rngs={"dropout": rng} if rng is not None else {}, output="hidden",
        )
        nll, correct = token_nll_and_hits(model.spec, params, hidden, batch["targets"], chunk)
        mask = batch["loss_mask"]
        n = jnp.sum(mask)
        return jnp.sum(nll * mask), n, {"accuracy": (jnp.sum(correct * mask), n)}

    return loss


def build_pretrain(cfg: Config, model: Transformer, data: PretrainData,
                   process_index: int = 0, process_count: int = 1) -> Objective:
    t = cfg.train
    train_stream = data.streams["train"]
    eval_stream = data.streams.get("eval", train_stream)
    source = BatchIterator(train_stream, t.seq_len, t.batch_size, seed=cfg.seed, shuffle=cfg.data.shuffle,
                           process_index=process_index, process_count=process_count)
    evals = eval_batches(eval_stream, t.seq_len, t.batch_size, t.eval_batches, process_index, process_count)
    return Objective("pretrain", make_lm_loss(model, t.loss_chunk), source, evals, tokens_per_step=t.batch_size * t.seq_len,
                     eval_split="held-out" if "eval" in data.streams else "train")


SPEC = ObjectiveSpec("pretrain", load=load_pretrain_data, build=build_pretrain, report=data_lines, chat=False,
                     doc="next-token prediction on packed documents")

"""Supervised fine-tuning: next-token loss on assistant tokens of packed chats.

Same batch layout and loss as pre-training (`make_lm_loss`); only the mask
differs: ``loss_mask`` is 1 on assistant content and its ``<|end|>``, so the
reported loss is the mean NLL per response token. Conversations share rows
but never attend to each other (segment ids).
"""

from __future__ import annotations

from jaxllm.config.schema import Config
from jaxllm.data.chat import user
from jaxllm.data.packing import RowBatches, fixed_batches, take_rows
from jaxllm.data.sft_data import SftData
from jaxllm.model.transformer import Transformer
from jaxllm.objectives.base import Objective
from jaxllm.objectives.pretrain import make_lm_loss


def build_sft(cfg: Config, model: Transformer, data: SftData,
              process_index: int = 0, process_count: int = 1) -> Objective:
    t = cfg.train
    n_train = len(data.train["inputs"])
    source = RowBatches(n_train, lambda rows: take_rows(data.train, rows), t.batch_size, seed=cfg.seed,
                        shuffle=cfg.data.shuffle, process_index=process_index, process_count=process_count,
                        what=f"rows of {t.seq_len} tokens (packed conversations)")
    held = data.eval if len(data.eval["inputs"]) else data.train
    evals = fixed_batches(len(held["inputs"]), lambda rows: take_rows(held, rows), t.batch_size, t.eval_batches,
                          process_index, process_count)
    tpl = data.template
    return Objective("sft", make_lm_loss(model, t.loss_chunk), source, evals, tokens_per_step=t.batch_size * t.seq_len,
                     prompt=lambda text: tpl.prompt([user(text)]), stop_ids=tpl.stop_ids)

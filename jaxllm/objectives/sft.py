"""Supervised fine-tuning: next-token loss on assistant tokens of packed chats.

Same batch layout and loss as pre-training (`make_lm_loss`); only the mask
differs: ``loss_mask`` is 1 on assistant content and its ``<|end|>``, so the
reported loss is the mean NLL per response token. Conversations share rows
but never attend to each other (segment ids).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jaxllm.config.schema import Config, option
from jaxllm.data.chat import user
from jaxllm.data.packing import RowBatches, fixed_batches, take_rows
from jaxllm.data.report import data_lines
from jaxllm.data.sft_data import SftData, load_sft_data
from jaxllm.errors import ConfigError
from jaxllm.model.transformer import Transformer
from jaxllm.objectives.base import Objective, ObjectiveSpec
from jaxllm.objectives.pretrain import make_lm_loss


@dataclass
class SftConfig:
    train_on: str = option("all_assistant", choices=("all_assistant", "last_assistant"),
                           doc="Which assistant turns are targets: every one, or only each conversation's last.")


def load(cfg: Config, run_dir: Path | None) -> SftData:
    return load_sft_data(cfg, run_dir, cfg.objective.sft.train_on)


def validate(cfg: Config) -> None:
    if cfg.data.source not in ("builtin", "jsonl"):
        raise ConfigError(f"data.source = {cfg.data.source!r} with objective.name = 'sft': SFT reads chats from "
                          "data.source=builtin (the built-in world) or data.source=jsonl (data.paths, data.chat_format).")


def report(stats: dict) -> list[str]:
    p, c = stats["packing"], stats["conversations"]
    return [*data_lines(stats), f"packed {c['train']} conversations into {p['rows']} rows ({p['fill']:.0%} filled, "
            f"{p['target_tokens']:,} target tokens, {p['truncated']} cut at train.seq_len); {c['eval']} held out for evaluation"]


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


SPEC = ObjectiveSpec("sft", load=load, build=build_sft, config=SftConfig, validate=validate, report=report,
                     doc="chats; loss on the assistant's tokens only")

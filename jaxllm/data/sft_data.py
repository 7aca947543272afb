"""From config to packed SFT rows: conversations -> held-out split -> chat template -> rows.

Sources: the built-in world's chats (``data.source=builtin``) or chat files in
``data.paths`` (``data.source=jsonl``, any format of `chat_sources`). The
tokenizer is the one the initial checkpoint was trained with (``init_from``),
so the chat pieces and every token id match the pre-trained model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxllm.config.schema import Config
from jaxllm.data.chat import ChatTemplate, chat_template, Conversation
from jaxllm.data.packing import pack_examples
from jaxllm.data.prepare import get_tokenizer
from jaxllm.data.sources import open_source, train_and_held_out
from jaxllm.data.tokenizer import Tokenizer


@dataclasses.dataclass
class SftData:
    tokenizer: Tokenizer
    template: ChatTemplate
    train: dict[str, np.ndarray]  # packed rows [R, L]: inputs, targets, positions, segment_ids, loss_mask
    eval: dict[str, np.ndarray]   # the same for held-out conversations (maybe zero rows)
    stats: dict


def load_conversations(cfg: Config) -> tuple[list[Conversation], dict]:
    return open_source(cfg.data).conversations()


def last_turn_only(targets: list[int], tokens: list[int], template: ChatTemplate) -> list[int]:
    """Keep the target flags of the final assistant message only (the last run of flagged tokens)."""
    del tokens, template
    start = max((i for i, f in enumerate(targets) if f), default=0)
    while start > 0 and targets[start - 1]:
        start -= 1
    return [0] * start + targets[start:]


def encode_all(template: ChatTemplate, convs: list[Conversation], train_on: str) -> list[tuple[list[int], list[int]]]:
    out = []
    for c in convs:
        toks, flags = template.encode(c)
        if train_on == "last_assistant":
            flags = last_turn_only(flags, toks, template)
        out.append((toks, flags))
    return out


def load_sft_data(cfg: Config, run_dir: Path | None, train_on: str = "all_assistant") -> SftData:
    convs, report = load_conversations(cfg)
    train, held = train_and_held_out(cfg.data, convs, lambda src: src.conversations())
    tok = get_tokenizer(cfg, run_dir, [m.content for c in train for m in c])
    template = chat_template(tok)
    rows, pack_stats = pack_examples(encode_all(template, train, train_on), cfg.train.seq_len)
    eval_rows, _ = pack_examples(encode_all(template, held, train_on), cfg.train.seq_len)
    stats = {**report, "conversations": {"train": len(train), "eval": len(held)}, "packing": pack_stats}
    return SftData(tok, template, rows, eval_rows, stats)

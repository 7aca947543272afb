"""Prompts for rollouts (PPO, GRPO): from the configured source (the built-in world's carry what its judge
needs), with the tokenizer and chat template."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from jaxllm.config.schema import Config
from jaxllm.data.chat import ChatTemplate, chat_template, Conversation, Message
from jaxllm.data.chat_sources import BadChat, parse_hh
from jaxllm.data.prepare import get_tokenizer
from jaxllm.data.readers import read_records
from jaxllm.data.sources import open_source
from jaxllm.data.tokenizer import Tokenizer


@dataclasses.dataclass(frozen=True)
class RlPrompt:
    conversation: Conversation
    item: Any = None   # built-in prompts carry what the world's judge needs (a `world.prompts.Prompt`)


@dataclasses.dataclass
class PromptData:
    tokenizer: Tokenizer
    template: ChatTemplate
    train: list[RlPrompt]
    eval: list[RlPrompt]
    stats: dict


def _record_to_prompt(rec: dict) -> list[RlPrompt]:
    if isinstance(rec.get("prompt"), str):
        return [RlPrompt([Message("user", rec["prompt"])])]
    if isinstance(rec.get("chosen"), str):
        conv = parse_hh(rec["chosen"])
        return [RlPrompt(conv[:-1] if conv[-1].role == "assistant" else conv)]
    raise BadChat(f"keys {sorted(rec)}: expected 'prompt' (or an HH-RLHF 'chosen' dialogue)")


def read_prompt_files(paths: list[str], on_error: str) -> tuple[list[RlPrompt], dict]:
    """``{"prompt": str}`` records, or HH-RLHF dialogues (``chosen``: the history before the last reply)."""
    return read_records(paths, on_error, _record_to_prompt, "prompts")


def load_prompt_data(cfg: Config, run_dir: Path | None, eval_prompts: int) -> PromptData:
    """Train and held-out prompts (``eval_prompts`` of them; the built-in ones balanced over their kinds)."""
    if cfg.data.eval_paths:  # every prompt of the source for rollouts, the eval files' held out
        train, _, report = open_source(cfg.data).prompts(0)
        held = read_prompt_files(cfg.data.eval_paths, cfg.data.on_error)[0][:eval_prompts]
    else:
        train, held, report = open_source(cfg.data).prompts(eval_prompts)
    tok = get_tokenizer(cfg, run_dir, [m.content for p in train for m in p.conversation])
    return PromptData(tok, chat_template(tok), train, held, {**report, "prompts": {"train": len(train), "eval": len(held)}})


def prompt_lines(stats: dict) -> list[str]:
    return [f"{stats['prompts']['train']} prompts for rollouts, {stats['prompts']['eval']} held out for evaluation"]

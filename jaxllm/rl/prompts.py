"""Prompts for rollouts: the built-in world's (with what its judge needs) or the user's JSONL files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from jaxllm.config.schema import Config
from jaxllm.data.chat import ChatTemplate, Conversation, Message
from jaxllm.data.chat_sources import BadChat, parse_hh
from jaxllm.data.prepare import get_tokenizer
from jaxllm.data.pref_world import KINDS, Prompt, balanced, builtin_prompts
from jaxllm.data.sources import read_records
from jaxllm.data.tokenizer import Tokenizer


@dataclasses.dataclass(frozen=True)
class RlPrompt:
    conversation: Conversation
    item: Prompt | None = None   # built-in prompts carry what the judge needs


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
    d = cfg.data
    if d.source == "builtin":
        split = builtin_prompts(d.builtin_seed, sft_heldout=d.builtin_heldout)
        per_kind = min(sum(p.kind == k for p in split.train) for k in KINDS)  # every kind equally often
        train = [RlPrompt([Message("user", p.text)], p) for p in balanced(split.train, per_kind * len(KINDS), d.builtin_seed)]
        held = [RlPrompt([Message("user", p.text)], p) for p in balanced(split.heldout, eval_prompts, d.builtin_seed)]
        report = {}
    else:
        prompts, report = read_prompt_files(d.paths, d.on_error)
        n_eval = min(eval_prompts, len(prompts) // 5)
        train, held = prompts[n_eval:], prompts[:n_eval]
    tok = get_tokenizer(cfg, run_dir, [m.content for p in train for m in p.conversation])
    return PromptData(tok, ChatTemplate(tok), train, held, {**report, "prompts": {"train": len(train), "eval": len(held)}})


def prompt_lines(stats: dict) -> list[str]:
    return [f"{stats['prompts']['train']} prompts for rollouts, {stats['prompts']['eval']} held out for evaluation"]

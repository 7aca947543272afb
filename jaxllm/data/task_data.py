"""Prompts with checkable answers, for RL with verifiable rewards (GRPO and kin).

A task record is ``{"question": str, "answer": str, ...}``: GSM8K's files as they are (the answer's
worked solution ends with ``#### N``), or ``{"prompt": ..., "answer": "72"}`` with a bare number. The
built-in source gives the world's arithmetic task (`world.arithmetic`). The whole record travels with
its prompt to the reward functions.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from jaxllm.config.schema import Config
from jaxllm.data.chat import ChatTemplate, chat_template, Conversation, Message
from jaxllm.data.chat_sources import BadChat
from jaxllm.data.prepare import get_tokenizer
from jaxllm.data.readers import read_records
from jaxllm.data.tokenizer import Tokenizer
from jaxllm.data.numbers import parse_number


@dataclasses.dataclass(frozen=True)
class TaskPrompt:
    conversation: Conversation
    record: dict          # "answer" (the reference), and whatever else the record had


@dataclasses.dataclass
class TaskData:
    tokenizer: Tokenizer
    template: ChatTemplate
    train: list[TaskPrompt]
    eval: list[TaskPrompt]
    stats: dict


def task_prompt(rec: dict, instruction: str = "") -> TaskPrompt:
    question = rec["question"] + (f" {instruction}" if instruction else "")
    return TaskPrompt([Message("user", question)], rec)


def parse_task(rec: dict) -> list[dict]:
    """A file's record -> ``[{"question", "answer", ...}]``; a record without a usable answer is rejected."""
    question = rec.get("question", rec.get("prompt"))
    if not isinstance(question, str) or not question.strip():
        raise BadChat(f"keys {sorted(rec)}: expected 'question' (or 'prompt') with text, and 'answer'")
    answer = rec.get("answer")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    if not isinstance(answer, str):
        raise BadChat(f"'answer' is {type(answer).__name__}, not text or a number")
    if "####" in answer:
        if parse_number(answer.rsplit("####", 1)[1]) is None:
            raise BadChat(f"answer {answer[-50:]!r}: no number after its last '####'")
    elif len(answer.split()) != 1 or parse_number(answer) is None:
        raise BadChat(f"answer {answer[:50]!r}: no '#### N' final answer (GSM8K's convention) and not a bare number")
    return [{**rec, "question": question, "answer": answer}]


def read_task_files(paths: list[str], on_error: str) -> tuple[list[dict], dict]:
    return read_records(paths, on_error, parse_task, "task records (question and answer)")


def load_task_data(cfg: Config, run_dir: Path | None, eval_prompts: int, instruction: str = "") -> TaskData:
    """Train and held-out task prompts: the built-in arithmetic task, or ``data.paths`` (held out: the
    first ``eval_prompts``, at most a fifth, or ``data.eval_paths``)."""
    from jaxllm.data.sources import open_source

    if cfg.data.eval_paths:
        train, _, report = open_source(cfg.data).tasks(0)
        held = read_task_files(cfg.data.eval_paths, cfg.data.on_error)[0][:eval_prompts]
    else:
        train, held, report = open_source(cfg.data).tasks(eval_prompts)
    train = [task_prompt(r, instruction) for r in train]
    held = [task_prompt(r, instruction) for r in held]
    tok = get_tokenizer(cfg, run_dir, [m.content for p in train for m in p.conversation])
    return TaskData(tok, chat_template(tok), train, held,
                    {**report, "tasks": {"train": len(train), "eval": len(held)}})


def task_lines(stats: dict) -> list[str]:
    return [f"{stats['tasks']['train']} task prompts for rollouts, {stats['tasks']['eval']} held out for evaluation"]

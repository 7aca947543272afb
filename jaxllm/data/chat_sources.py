"""Instruction/chat datasets to conversations: Alpaca, OpenAI messages, ShareGPT, HH-RLHF.

Formats (``data.chat_format``; ``auto`` decides per record by its keys):
- ``alpaca``: ``{"instruction", "input", "output"}``, or ``{"instruction", "instances": [{"input", "output"}]}``
  (one conversation per instance, as in the self-instruct seed tasks);
- ``messages``: ``{"messages": [{"role": "system"|"user"|"assistant", "content"}]}`` (OpenAI);
- ``sharegpt``: ``{"conversations": [{"from": "system"|"human"|"gpt", "value"}]}``;
- ``hh``: a ``"\\n\\nHuman: ... \\n\\nAssistant: ..."`` dialogue in ``data.field`` (default for HH-RLHF
  files: ``chosen``).
A record that cannot be read is a bad record named by file and line (``data.on_error``).
"""

from __future__ import annotations

import re

from jaxllm.data.chat import ROLES, Conversation, Message
from jaxllm.data.readers import read_records

_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")
_SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


class BadChat(ValueError):
    """A record that is not a usable conversation; the message says why."""


def _text(rec: dict, key: str) -> str:
    v = rec.get(key, "")
    if v is None:
        return ""
    if not isinstance(v, str):
        raise BadChat(f"field {key!r} is {type(v).__name__}, expected a string")
    return v


def from_alpaca(rec: dict) -> list[Conversation]:
    instruction = _text(rec, "instruction").strip()
    if not instruction:
        raise BadChat("empty or missing 'instruction'")
    instances = rec["instances"] if "instances" in rec else [rec]
    if not isinstance(instances, list) or not instances:
        raise BadChat("'instances' must be a non-empty list of {input, output}")
    out = []
    for inst in instances:
        if not isinstance(inst, dict):
            raise BadChat("an element of 'instances' is not an object")
        extra, answer = _text(inst, "input").strip(), _text(inst, "output").strip()
        if not answer:
            raise BadChat("empty or missing 'output'")
        prompt = f"{instruction}\n\n{extra}" if extra else instruction
        out.append([Message("user", prompt), Message("assistant", answer)])
    return out


def _check(conv: Conversation) -> Conversation:
    if not any(m.role == "assistant" and m.content.strip() for m in conv):
        raise BadChat("no assistant message with text (nothing to learn from)")
    return conv


def from_messages(rec: dict, key: str = "messages", role_key: str = "role", text_key: str = "content",
                  role_map: dict | None = None) -> list[Conversation]:
    msgs = rec.get(key)
    if not isinstance(msgs, list) or not msgs:
        raise BadChat(f"{key!r} must be a non-empty list")
    conv = []
    for j, m in enumerate(msgs):
        if not isinstance(m, dict) or role_key not in m:
            raise BadChat(f"{key}[{j}] has no {role_key!r}")
        role = m[role_key] if role_map is None else role_map.get(m[role_key])
        if role not in ROLES:
            allowed = ROLES if role_map is None else tuple(role_map)
            raise BadChat(f"{key}[{j}].{role_key} = {m[role_key]!r}; expected one of {', '.join(allowed)}")
        conv.append(Message(role, _text(m, text_key)))
    return [_check(conv)]


def from_sharegpt(rec: dict) -> list[Conversation]:
    return from_messages(rec, "conversations", "from", "value", _SHAREGPT_ROLES)


def parse_hh(text: str) -> Conversation:
    """``"\\n\\nHuman: a\\n\\nAssistant: b ..."`` -> messages; text before the first turn is dropped."""
    parts = _HH_TURN.split(text)
    if len(parts) < 3:
        raise BadChat("no '\\n\\nHuman:' / '\\n\\nAssistant:' turns found")
    conv = [Message("user" if who == "Human" else "assistant", body.strip())
            for who, body in zip(parts[1::2], parts[2::2])]
    return conv


def from_hh(rec: dict, field: str) -> list[Conversation]:
    key = field if field in rec else "chosen"
    if key not in rec:
        raise BadChat(f"no field {field!r} or 'chosen' with an HH dialogue")
    return [_check(parse_hh(_text(rec, key)))]


def detect(rec: dict, field: str) -> str:
    if "messages" in rec:
        return "messages"
    if "conversations" in rec:
        return "sharegpt"
    if "instruction" in rec:
        return "alpaca"
    if isinstance(rec.get(field if field in rec else "chosen"), str):
        return "hh"
    raise BadChat(f"unknown record shape (keys: {', '.join(rec)}); set data.chat_format "
                  "to alpaca, messages, sharegpt or hh")


def record_to_conversations(rec: dict, fmt: str, field: str) -> list[Conversation]:
    fmt = detect(rec, field) if fmt == "auto" else fmt
    if fmt == "alpaca":
        return from_alpaca(rec)
    if fmt == "messages":
        return from_messages(rec)
    if fmt == "sharegpt":
        return from_sharegpt(rec)
    return from_hh(rec, field)


def read_chat_files(paths: list[str], fmt: str, field: str, on_error: str) -> tuple[list[Conversation], dict]:
    """Conversations from JSONL(.gz) files, in file order, and a report of skipped records."""
    return read_records(paths, on_error, lambda rec: record_to_conversations(rec, fmt, field), "conversations")

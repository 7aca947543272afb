"""The chat template: conversations to tokens with a per-token loss mask.

A conversation is ``BOS`` then, per message, ``<|role|> content <|end|>``:

    BOS <|system|> You are ... <|end|> <|user|> Hi <|end|> <|assistant|> Hello! <|end|> ...

Role markers and ``<|end|>`` are reserved tokenizer pieces, inserted by id, so
they cannot be confused with text. Only assistant content and its closing
``<|end|>`` are targets: the model learns to answer and to end its turn, and
never learns to write the user's side. A generation prompt is the
conversation so far plus ``<|assistant|>``; decoding stops at ``<|end|>``
(or EOS).
"""

from __future__ import annotations

import dataclasses

from jaxllm.data.tokenizer import BOS, EOS, UNK, Tokenizer
from jaxllm.errors import UserError

ROLES = ("system", "user", "assistant")
END = "<|end|>"


@dataclasses.dataclass(frozen=True)
class Message:
    role: str     # system | user | assistant
    content: str


Conversation = list[Message]


class ChatTemplate:
    """Encodes conversations with a tokenizer that has the reserved chat pieces."""

    def __init__(self, tokenizer: Tokenizer):
        self.tok = tokenizer
        self.role_ids = {r: tokenizer.piece_id(f"<|{r}|>") for r in ROLES}
        self.end_id = tokenizer.piece_id(END)
        missing = [p for p, i in [*((f"<|{r}|>", i) for r, i in self.role_ids.items()), (END, self.end_id)] if i == UNK]
        if missing:
            raise UserError(f"tokenizer {tokenizer.name} lacks the chat pieces {', '.join(missing)}; use a tokenizer "
                            "trained by jaxllm (they are reserved there) or add them as user-defined symbols.")

    @property
    def stop_ids(self) -> tuple[int, int]:
        return (self.end_id, EOS)

    def encode(self, conversation: Conversation, generation_prompt: bool = False) -> tuple[list[int], list[int]]:
        """``(tokens, targets)``: ``targets[i] = 1`` where token ``i`` is assistant content or its ``<|end|>``.

        With ``generation_prompt`` the tokens end with ``<|assistant|>``, ready for the model's reply.
        """
        tokens, targets = [BOS], [0]
        for m in conversation:
            body = self.tok.encode(m.content) + [self.end_id]
            train = int(m.role == "assistant")
            tokens += [self.role_ids[m.role], *body]
            targets += [0] + [train] * len(body)
        if generation_prompt:
            tokens.append(self.role_ids["assistant"])
            targets.append(0)
        return tokens, targets

    def prompt(self, conversation: Conversation) -> list[int]:
        """Tokens for generating the next assistant message."""
        return self.encode(conversation, generation_prompt=True)[0]

    def reply_text(self, tokens: list[int]) -> str:
        """Text of generated tokens, up to (without) the first stop token."""
        out = []
        for t in tokens:
            if t in self.stop_ids:
                break
            out.append(t)
        return self.tok.decode(out)


def user(text: str) -> Message:
    return Message("user", text)


def assistant(text: str) -> Message:
    return Message("assistant", text)

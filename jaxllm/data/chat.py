"""The chat template: conversations to tokens with a per-token loss mask.

A tokenizer without the reserved pieces (a pretrained model's, e.g. Llama's
``tokenizer.model``) gets the same layout in text: each role marker is the text
``<|role|>`` plus a newline, tokenized, and a turn ends with the tokenizer's EOS.

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

from jaxllm.data.tokenizer import Tokenizer

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
        ids = {r: tokenizer.piece_id(f"<|{r}|>") for r in ROLES}
        end = tokenizer.piece_id(END)
        self.reserved = all(i != tokenizer.unk_id for i in (*ids.values(), end))
        self.role_ids = ids if self.reserved else {}  # single marker ids (reserved pieces only)
        if self.reserved:
            self.role_tokens = {r: [i] for r, i in ids.items()}
            self.end_id = end
        else:  # text markers, EOS ends a turn
            self.role_tokens = {r: tokenizer.encode(f"<|{r}|>\n") for r in ROLES}
            self.end_id = tokenizer.eos_id

    @property
    def stop_ids(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys((self.end_id, self.tok.eos_id)))

    def encode(self, conversation: Conversation, generation_prompt: bool = False) -> tuple[list[int], list[int]]:
        """``(tokens, targets)``: ``targets[i] = 1`` where token ``i`` is assistant content or its ``<|end|>``.

        With ``generation_prompt`` the tokens end with ``<|assistant|>``, ready for the model's reply.
        """
        tokens, targets = [self.tok.bos_id], [0]
        for m in conversation:
            body = self.tok.encode(m.content) + [self.end_id]
            train = int(m.role == "assistant")
            head = self.role_tokens[m.role]
            tokens += [*head, *body]
            targets += [0] * len(head) + [train] * len(body)
        if generation_prompt:
            head = self.role_tokens["assistant"]
            tokens += head
            targets += [0] * len(head)
        return tokens, targets

    def prompt(self, conversation: Conversation) -> list[int]:
        """Tokens for generating the next assistant message."""
        return self.encode(conversation, generation_prompt=True)[0]

    def reply_text(self, tokens: list[int]) -> str:
        """Text of generated tokens, up to (without) the first stop token."""
        return text_until_stop(self.tok, tokens, self.stop_ids)


def text_until_stop(tok, tokens: list[int], stop_ids) -> str:
    """``tokens`` decoded up to (without) the first of ``stop_ids``."""
    out = []
    for t in tokens:
        if t in stop_ids:
            break
        out.append(t)
    return tok.decode(out)


def user(text: str) -> Message:
    return Message("user", text)


def assistant(text: str) -> Message:
    return Message("assistant", text)


def jinja_template() -> str:
    """jaxllm's template (with reserved pieces) as a Hugging Face ``chat_template``, for exports:
    ``apply_chat_template`` gives `ChatTemplate.encode`'s tokens, and its ``{% generation %}`` markers its targets."""
    return ("{{ bos_token }}{% for m in messages %}{{ '<|' + m['role'] + '|>' }}{% if m['role'] == 'assistant' %}"
            "{% generation %}{{ m['content'] + '" + END + "' }}{% endgeneration %}{% else %}{{ m['content'] + '" + END
            + "' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}")


def chat_template(tokenizer):
    """The model's own template when its tokenizer brings one (``chat_template`` in ``tokenizer_config.json``),
    else jaxllm's `ChatTemplate`."""
    if getattr(tokenizer, "chat_template", None):
        from jaxllm.data.model_template import ModelChatTemplate
        return ModelChatTemplate(tokenizer)
    return ChatTemplate(tokenizer)

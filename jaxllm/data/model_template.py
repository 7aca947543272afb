"""A model's own chat template (``chat_template`` in ``tokenizer_config.json``), rendered with Jinja2 in a
sandbox, with the assistant-only loss mask; the interface of `chat.ChatTemplate`.

The mask comes from the rendered text's assistant spans, found one of two ways:
- ``{% generation %} ... {% endgeneration %}`` markers in the template (as ``transformers``'
  ``return_assistant_tokens_mask`` reads them): each marked span is a target;
- otherwise, prefix by prefix: for assistant message ``i``, the span is what rendering messages ``[:i + 1]``
  adds to rendering ``[:i]`` with the generation prompt. A template whose renders are not prefixes of one
  another (one that rewrites earlier turns) is refused with that message, naming the turn.

Tokens are marked as ``transformers`` marks them: from the token holding a span's first character to the
token holding its last. Rendering is ``transformers``' environment: ``trim_blocks``, ``lstrip_blocks``, loop
controls, ``raise_exception``, ``strftime_now`` and a non-escaping ``tojson``.
"""

from __future__ import annotations

import datetime
import json

from jaxllm.data.chat import Conversation, Message, text_until_stop
from jaxllm.errors import UserError

_OPEN, _CLOSE = "\ue000", "\ue001"  # private-use characters bracketing {% generation %} output while rendering


def _environment():
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(jinja2.ext.Extension):
        """``{% generation %}...{% endgeneration %}``: brackets its output so the spans can be found."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_mark"), [], [], body).set_lineno(lineno)

        def _mark(self, caller):
            return _OPEN + caller() + _CLOSE

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    return env


class ModelChatTemplate:
    """Conversations -> ``(tokens, targets)`` with the model's template and a Hugging Face tokenizer."""

    def __init__(self, tokenizer, source: str | None = None):
        import jinja2

        self.tok = tokenizer
        self.source = source or tokenizer.config.get("chat_template")
        where = tokenizer.name
        if isinstance(self.source, list):  # several named templates: the default one
            named = {t.get("name"): t.get("template") for t in self.source}
            self.source = named.get("default") or next(iter(named.values()))
        if not self.source:
            raise UserError(f"{where}: tokenizer_config.json has no chat_template.")
        try:
            self.template = _environment().from_string(self.source)
        except jinja2.TemplateSyntaxError as e:
            raise UserError(f"{where}: the chat_template does not parse: {e.message} (template line {e.lineno}).") from None
        self.marked = "generation" in self.source and "endgeneration" in self.source
        self.how = "its {% generation %} markers" if self.marked else "rendering prefix by prefix"
        probe_tokens, probe_targets = self.encode([Message("user", "hi"), Message("assistant", "hello")])
        if not any(probe_targets):
            raise UserError(f"{where}: the chat_template marks no assistant tokens (found by {self.how}); it cannot "
                            "train a model. Add {% generation %}...{% endgeneration %} around the assistant turns.")
        self.stop_ids = self._stop_ids(probe_tokens, probe_targets)

    def render(self, conversation: Conversation, generation_prompt: bool = False) -> str:
        import jinja2

        messages = [{"role": m.role, "content": m.content} for m in conversation]
        specials = {f"{k}_token": _text(self.tok.config.get(f"{k}_token")) for k in ("bos", "eos", "pad", "unk")}
        try:
            return self.template.render(messages=messages, add_generation_prompt=generation_prompt, **specials)
        except jinja2.TemplateError as e:
            raise UserError(f"{self.tok.name}: the chat_template failed to render: {str(e)[:200]}") from None

    def _spans(self, conversation: Conversation, generation_prompt: bool) -> tuple[str, list[tuple[int, int]]]:
        """The rendered text and its assistant character spans ``[start, end)``."""
        text = self.render(conversation, generation_prompt)
        if self.marked:
            plain, spans, start, at = [], [], 0, 0
            for ch in text:
                if ch == _OPEN:
                    start = at
                elif ch == _CLOSE:
                    spans.append((start, at))
                else:
                    plain.append(ch)
                    at += 1
            return "".join(plain), [s for s in spans if s[1] > s[0]]
        spans = []
        for i, m in enumerate(conversation):
            if m.role != "assistant":
                continue
            before = self.render(conversation[:i], True)
            upto = self.render(conversation[:i + 1], False)
            if not upto.startswith(before) or not text.startswith(upto):
                raise UserError(f"{self.tok.name}: the chat_template has no {{% generation %}} markers, and rendering "
                                f"prefix by prefix does not work for it (the render up to message {i} is not a prefix "
                                "of the next): jaxllm cannot find the assistant turns. Add {% generation %}..."
                                "{% endgeneration %} around them.")
            spans.append((len(before), len(upto)))
        return text, spans

    def encode(self, conversation: Conversation, generation_prompt: bool = False) -> tuple[list[int], list[int]]:
        """``(tokens, targets)``: ``targets[i] = 1`` on the assistant spans' tokens."""
        text, spans = self._spans(conversation, generation_prompt)
        enc = self.tok.encode_with_offsets(text)
        targets = [0] * len(enc.ids)
        for start, end in spans:
            first, last = enc.char_to_token(start), enc.char_to_token(end - 1)
            if first is None or last is None:
                continue
            for j in range(first, last + 1):
                targets[j] = 1
        return list(enc.ids), targets

    def prompt(self, conversation: Conversation) -> list[int]:
        return self.encode(conversation, generation_prompt=True)[0]

    def _stop_ids(self, tokens: list[int], targets: list[int]) -> tuple[int, ...]:
        """EOS and the special tokens that close an assistant turn (``<|im_end|>``, ``<|eot_id|>``, ...)."""
        special = self.tok.special_ids()
        closing = [t for t, f in zip(tokens, targets) if f and t in special]
        return tuple(dict.fromkeys([*closing, self.tok.eos_id]))

    def reply_text(self, tokens: list[int]) -> str:
        return text_until_stop(self.tok, tokens, self.stop_ids)


def _text(value):
    return value.get("content") if isinstance(value, dict) else value

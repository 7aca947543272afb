"""Load a run's checkpoint for inference: config, tokenizer and sharded parameters.

A run dir is self-contained (``config.yaml``, ``tokenizer.model``,
``checkpoints/<step>``); any of the three paths into it works. Parameters are
restored straight onto the mesh's shardings, the same layout the trainer used.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax

from jaxllm.config import load_config
from jaxllm.config.schema import Config
from jaxllm.data.chat import ChatTemplate, Conversation, Message, chat_template
from jaxllm.data.tokenizer import Tokenizer, tokenizer_file
from jaxllm.errors import ConfigError, UserError
from jaxllm.model import Transformer, resolve_spec
from jaxllm.model.decode import Sampling, generate
from jaxllm.objectives.registry import get_spec
from jaxllm.parallel.layout import Layout
from jaxllm.parallel.mesh import make_mesh
from jaxllm.run_dir import find_run_dir
from jaxllm.pretrained import load_params


@dataclasses.dataclass
class Loaded:
    """A checkpoint ready to generate: call its methods inside nothing; they enter the mesh themselves."""

    cfg: Config
    model: Transformer
    params: object
    tokenizer: Tokenizer
    mesh: object
    path: Path

    @functools.cached_property
    def layout(self) -> Layout:
        return Layout(self.mesh, self.cfg.mesh.rules)

    @functools.cached_property
    def chat_template(self) -> ChatTemplate:
        return chat_template(self.tokenizer)

    @property
    def is_chat_model(self) -> bool:
        return get_spec(self.cfg.objective.name).chat

    def max_new_tokens(self, prompts: list[list[int]], wanted: int) -> int:
        room = self.model.spec.max_seq_len - max(len(p) for p in prompts)
        if room < 1:
            raise UserError(f"the prompt ({max(len(p) for p in prompts)} tokens) fills the model's max_seq_len "
                            f"{self.model.spec.max_seq_len}; shorten it (or /reset the chat).")
        return min(wanted, room)

    def generate_tokens(self, prompts: list[list[int]], sampling: Sampling, key: jax.Array,
                        stop_ids: tuple[int, ...] = (), batch_size: int = 64) -> list[dict]:
        """Token prompts -> ``[{"tokens", "logprobs"}]``, in batches of ``batch_size``."""
        sampling.check(self.tokenizer.vocab_size)
        sampling = dataclasses.replace(sampling, max_new_tokens=self.max_new_tokens(prompts, sampling.max_new_tokens))
        out = []
        with self.layout.context():
            div = self.layout.batch_divisor
            for i in range(0, len(prompts), batch_size):
                key, sub = jax.random.split(key)
                out += generate(self.model, self.params, prompts[i:i + batch_size], sub, sampling,
                                stop_ids=(*stop_ids, self.tokenizer.eos_id), pad_id=self.tokenizer.pad_id,
                                batch_multiple=div, vocab_size=self.tokenizer.vocab_size)
        return out

    def complete(self, texts: list[str], sampling: Sampling, key: jax.Array) -> list[str]:
        """Plain continuation of each text (no chat template), as the tokenizer decodes it after the text:
        decoding the new tokens alone would drop the space a piece like "▁Paris" starts with."""
        tok = self.tokenizer
        prompts = [tok.encode(t) for t in texts]
        outs = self.generate_tokens([[tok.bos_id] + p for p in prompts], sampling, key)
        res = []
        for p, o in zip(prompts, outs):
            new = [i for i in o["tokens"] if i != tok.eos_id]
            head, whole = tok.decode(p), tok.decode(p + new)
            res.append(whole[len(head):] if whole.startswith(head) else tok.decode(new))
        return res

    def reply(self, conversations: list[Conversation], sampling: Sampling, key: jax.Array) -> list[dict]:
        """The next assistant message of each conversation: ``{"text", "stopped", "tokens", "logprobs"}``."""
        tpl = self.chat_template
        outs = self.generate_tokens([tpl.prompt(c) for c in conversations], sampling, key, tpl.stop_ids)
        return [{"text": tpl.reply_text(o["tokens"]).strip(), "stopped": bool(o["tokens"]) and o["tokens"][-1] in tpl.stop_ids,
                 **o} for o in outs]

    def fit_history(self, history: Conversation, room: int) -> Conversation:
        """Drop the oldest exchanges (never the system message or the new question) until a reply of
        ``room`` tokens (at most a quarter of max_seq_len) fits."""
        limit = self.model.spec.max_seq_len - min(room, self.model.spec.max_seq_len // 4)
        first = 1 if history and history[0].role == "system" else 0
        while len(self.chat_template.prompt(history)) > limit and len(history) - first > 1:
            history = history[:first] + history[first + 1:]
        return history

    def ask(self, question: str, sampling: Sampling, key: jax.Array, system: str | None = None) -> str:
        conv = ([Message("system", system)] if system else []) + [Message("user", question)]
        return self.reply([conv], sampling, key)[0]["text"]


def load_checkpoint(path: str | Path, overrides: list[str] = (), devices=None) -> Loaded:
    """The checkpoint at ``path`` on a mesh of ``devices`` (default all): the run's own mesh config when it
    fits the devices, else plain data parallelism."""
    run_dir = find_run_dir(path)
    cfg = load_config(run_dir / "config.yaml", list(overrides))
    tok_path = tokenizer_file(run_dir)  # every run dir gets one; older runs may only name data.tokenizer.path
    tokenizer = Tokenizer.load(tok_path or cfg.data.tokenizer.path or run_dir / "tokenizer.model")
    spec = resolve_spec(cfg.model, tokenizer.vocab_size)
    model = Transformer(spec)
    ospec = get_spec(cfg.objective.name)
    part = ospec.lm_part()
    if part is None:
        raise UserError(f"{run_dir} is a {ospec.name} model run: it holds no language model ({', '.join(ospec.parts)}) and "
                        "does not generate; give an SFT or PPO run.")
    try:
        mesh = make_mesh(cfg.mesh, devices)
    except ConfigError:  # trained on another device count: fall back to replicated weights, sharded batch
        cfg = load_config(run_dir / "config.yaml", [*overrides, "mesh.data=-1", "mesh.fsdp=1", "mesh.tensor=1"])
        mesh = make_mesh(cfg.mesh, devices)
    layout = Layout(mesh, cfg.mesh.rules)
    with layout.context():  # a run of several models (PPO: policy + critic) is read whole, then its LM taken
        params = load_params(str(path), layout.abstract_params(ospec.model(spec) if part.subtree else model))
        if part.subtree:
            params = params[part.subtree]
    return Loaded(cfg, model, params, tokenizer, mesh, run_dir)

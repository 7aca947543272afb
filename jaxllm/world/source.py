"""The built-in world as a data source (``data.source: builtin``, settings in ``data.builtin.*``):
the same four kinds of record as the user's files, generated and deterministic from ``seed``."""

from __future__ import annotations

import numpy as np

from jaxllm.config.schema import BuiltinConfig
from jaxllm.data.chat import Message
from jaxllm.data.prompt_data import RlPrompt


class BuiltinSource:
    def __init__(self, cfg: BuiltinConfig):
        from jaxllm.world.options import world_options
        self.cfg, self.opts = cfg, world_options(cfg)
        self._prompt_split = None

    def documents(self) -> tuple[list[str], dict]:
        """The pre-training corpus: every fact in many phrasings, plus planted noise for the cleaner."""
        from jaxllm.world.corpus import generate_documents
        from jaxllm.world.noise import add_noise

        c = self.cfg
        return add_noise(generate_documents(c.chars, c.seed, opts=self.opts), c.noise, c.seed), {}

    def conversations(self) -> tuple[list, dict]:
        """SFT chats about the trained facts, plus mixed-quality chats on the three behaviour kinds."""
        from jaxllm.world.chats import builtin_conversations
        from jaxllm.world.prompts import sft_behaviour_chats, trained_families

        c = self.cfg
        convs = builtin_conversations(c.conversations, c.seed, c.heldout, families=trained_families(c.seed, self.opts))
        convs += sft_behaviour_chats(c.behaviour_chats, c.seed, c.heldout, opts=self.opts)
        if c.task_chats:  # demonstrations of the arithmetic task's answer format, on its training questions only
            from jaxllm.world.arithmetic import arithmetic_task, demonstration
            train, _ = arithmetic_task(c.task_chats, 0, c.seed, c.task_heldout, c.task_max_operand)
            convs += [[Message("user", r["question"]), Message("assistant", demonstration(r))]
                      for r in (train * -(-c.task_chats // len(train)))[:c.task_chats]]  # cycled when there are fewer
        order = np.random.default_rng(c.seed + 5).permutation(len(convs))
        return [convs[i] for i in order], {}

    def rankings(self) -> tuple[list, dict]:
        from jaxllm.world.rankings import builtin_rankings

        return builtin_rankings(self.cfg.rankings, self.cfg.seed, self.cfg.heldout, self.opts), {}

    def prompts(self, n_eval: int) -> tuple[list[RlPrompt], list[RlPrompt], dict]:
        """Train prompts, every kind equally often, and ``n_eval`` of the held-out prompt instances
        (balanced over the kinds) that no reward model or policy trains on."""
        from jaxllm.world.prompts import balanced

        c, kinds = self.cfg, self.opts.kinds
        split = self._split()
        per_kind = min(sum(p.kind == k for p in split.train) for k in kinds)
        train = [RlPrompt([Message("user", p.text)], p) for p in balanced(split.train, per_kind * len(kinds), c.seed)]
        held = [RlPrompt([Message("user", p.text)], p) for p in balanced(split.heldout, n_eval, c.seed)]
        return train, held, {}

    def _split(self):
        """The preference world's prompt split (`prompts.builtin_prompts`), computed once per source."""
        if self._prompt_split is None:
            from jaxllm.world.prompts import builtin_prompts
            self._prompt_split = builtin_prompts(self.cfg.seed, sft_heldout=self.cfg.heldout, opts=self.opts)
        return self._prompt_split

    def unseen_prompts(self, n_eval: int) -> list[RlPrompt]:
        """``n_eval`` held-out prompt instances in the seed's held-out template families (`phrasings`): wordings no
        training data uses, balanced over the kinds."""
        from jaxllm.world.prompts import balanced

        c, split = self.cfg, self._split()
        return [RlPrompt([Message("user", p.text)], p) for p in balanced(split.unseen, n_eval, c.seed)]

    def tasks(self, n_eval: int) -> tuple[list[dict], list[dict], dict]:
        """The arithmetic task (`world.arithmetic`): ``task_questions`` train questions and ``n_eval`` held out."""
        from jaxllm.world.arithmetic import arithmetic_task

        c = self.cfg
        train, held = arithmetic_task(c.task_questions, n_eval, c.seed, c.task_heldout, c.task_max_operand)
        return train, held, {}

"""Objectives: each a data loader, a batch source and a pure loss, looked up by `objective.name`.

An entry has ``load(cfg, run_dir) -> data`` (anything with a ``.tokenizer``; runs
before the model exists, since the vocab comes from the tokenizer),
``build(cfg, model, data, process_index, process_count) -> Objective`` and
``model(spec)``, the module the loop trains (a Transformer, or a scalar model
for the reward model, or policy + critic for PPO).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from jaxllm.data.prepare import load_pretrain_data
from jaxllm.data.sft_data import load_sft_data
from jaxllm.data.pref_data import load_pref_data
from jaxllm.errors import ConfigError
from jaxllm.model import Transformer
from jaxllm.model.scalar import ActorCritic, ScalarModel
from jaxllm.objectives.base import Objective
from jaxllm.objectives.ppo import build_ppo, load_ppo_data
from jaxllm.objectives.pretrain import build_pretrain
from jaxllm.objectives.reward import build_reward
from jaxllm.objectives.sft import build_sft


@dataclasses.dataclass(frozen=True)
class Entry:
    load: Callable
    build: Callable[..., Objective]
    model: Callable = Transformer  # spec -> the flax module whose parameters the loop trains


REGISTRY = {
    "pretrain": Entry(load_pretrain_data, build_pretrain),
    "sft": Entry(load_sft_data, build_sft),
    "reward": Entry(load_pref_data, build_reward, ScalarModel),
    "ppo": Entry(load_ppo_data, build_ppo, ActorCritic),
}


def objective_entry(name: str) -> Entry:
    if name not in REGISTRY:
        raise ConfigError(f"objective.name = {name!r}: unknown objective. Known: {', '.join(sorted(REGISTRY))}.")
    return REGISTRY[name]

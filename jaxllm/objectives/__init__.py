"""Objectives: each a batch source plus a pure loss, looked up by `objective.name`."""

from __future__ import annotations

from jaxllm.errors import ConfigError
from jaxllm.objectives.base import Objective
from jaxllm.objectives.pretrain import build_pretrain

REGISTRY = {"pretrain": build_pretrain}


def build_objective(name: str, *args, **kwargs) -> Objective:
    if name not in REGISTRY:
        raise ConfigError(f"objective.name = {name!r}: unknown objective. Known: {', '.join(sorted(REGISTRY))}.")
    return REGISTRY[name](*args, **kwargs)

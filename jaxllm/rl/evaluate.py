"""One evaluation of a policy on held-out prompts, shared by PPO's in-training eval and the pipeline report.

Greedy answers give the behaviour (the world's judge, when the prompts carry its items), the reward
model's score, the stop rate and length; answers sampled with the engine's sampling give the KL to the
reference (mean over responses of the summed ``log pi - log ref``, at the engine's temperature).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jaxllm.data.prompt_data import RlPrompt
from jaxllm.world.judge import judge_summary
from jaxllm.rl.rollout import Rollout, RolloutEngine


def evaluate_policy(engine: RolloutEngine, params, prompts: list[RlPrompt], key_seed: int = 7,
                    with_rm: bool = True) -> tuple[dict[str, float], Rollout | None, list[RlPrompt]]:
    """``(metrics, the greedy rollout, the prompts it answered)``; prompts longer than the engine's prompt
    length are left out. ``params`` holds ``"policy"``; ``with_rm`` = report the reward model's score."""
    tpl = engine.template
    prompts = [p for p in prompts if len(tpl.prompt(p.conversation)) <= engine.p]
    if not prompts:
        return {}, None, []
    toks = [tpl.prompt(p.conversation) for p in prompts]
    key = jax.random.PRNGKey(key_seed)
    greedy = engine.run(params, toks, key, dataclasses.replace(engine.sampling, temperature=0.0))
    sampled = engine.run(params, toks, key)
    stopped = greedy.arrays["has_eos"]
    out = {"kl": float(sampled.kl_per_response().mean()), "stop": float(stopped.mean()),
           "response_len": float(greedy.arrays["resp_mask"].sum(1).mean()),
           "words": float(np.mean([len(t.split()) for t in greedy.texts]))}
    if with_rm:
        out["rm_score"] = float(np.mean(greedy.scored["raw_score"]))
    if all(p.item is not None for p in prompts):
        out.update(judge_summary([p.item for p in prompts], [t.strip() for t in greedy.texts], list(stopped)))
    return out, greedy, prompts

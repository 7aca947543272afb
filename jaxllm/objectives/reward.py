"""Reward model: a scalar head on the SFT trunk learns K-wise rankings.

Batch: ``tokens, mask [B, K, L]`` (any padding, left or right), ``n_ranked [B]``.
All K responses of a prompt sit in one batch element and go through the model
once each (``[B*K, L]``), not once per pair; the loss per prompt is the mean
over its C(K, 2) ordered pairs of ``-log sigmoid(r_better - r_worse - margin)``
(`rl_math.ranking_loss`), summed over prompts with the prompt count as the
denominator. The score of a response is the head's output at its last real
token (the ``<|end|>`` that closes it), never at a pad.

At the end of training, the score mean and std over the training responses are
saved to ``<run_dir>/reward_stats.json``; PPO normalises scores with them.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxllm.config.schema import Config, option
from jaxllm.data.chat import user
from jaxllm.data.packing import RowBatches, fixed_batches, take_rows
from jaxllm.data.pref_data import PrefData, load_pref_data
from jaxllm.data.report import data_lines
from jaxllm.errors import ConfigError
from jaxllm.model import Transformer
from jaxllm.model.flops import train_flops_per_token
from jaxllm.model.scalar import ScalarModel, sequence_scores, trunk_params
from jaxllm.objectives.base import Objective, ObjectiveSpec, Params, Part
from jaxllm.rl.math import ranking_loss

STATS_FILE = "reward_stats.json"


@dataclass
class RewardConfig:
    margin: float = option(0.0, doc="Ranking loss -log sigmoid(r_better - r_worse - margin); 0 = the usual loss.")
    max_responses: int = option(4, min=2, doc="K: responses per prompt in a batch element (rankings longer than this "
                                              "are cut to their best K; shorter ones are padded and masked).")


def make_reward_loss(model: ScalarModel, margin: float = 0.0):
    def loss(params, batch, frozen=None, rng=None):
        del frozen
        b, k, length = batch["tokens"].shape
        scores = sequence_scores(model, params, batch["tokens"].reshape(b * k, length),
                                 batch["mask"].reshape(b * k, length), rng).reshape(b, k)
        n = batch["n_ranked"]
        loss_sum, correct, pairs = ranking_loss(scores, n, margin)
        valid = (jnp.arange(k)[None, :] < n[:, None]).astype(jnp.float32)
        best_minus_worst = scores[:, 0] - jnp.take_along_axis(scores, (n - 1)[:, None], axis=1)[:, 0]
        metrics = {"accuracy": (correct, pairs), "margin": (jnp.sum(best_minus_worst), jnp.float32(b)),
                   "score": (jnp.sum(scores * valid), jnp.sum(valid))}
        return loss_sum, jnp.float32(b), metrics

    return loss


def score_stats(model: ScalarModel, params, arrays: dict, batch: int, layout, limit: int = 2048) -> dict:
    """Mean and std of the scores of up to ``limit`` ranked responses (for PPO's normalisation)."""
    fn = jax.jit(lambda p, t, m: sequence_scores(model, p, t, m))
    n, k, length = arrays["tokens"].shape
    tokens = arrays["tokens"].reshape(n * k, length)
    mask = arrays["mask"].reshape(n * k, length)
    keep = (np.arange(k)[None, :] < arrays["n_ranked"][:, None]).reshape(-1)
    tokens, mask = tokens[keep][:limit], mask[keep][:limit]
    div = layout.batch_divisor
    step = max(batch // div, 1) * div
    scores = []
    for i in range(0, len(tokens) - step + 1, step):
        g = layout.global_batch({"t": tokens[i:i + step], "m": mask[i:i + step]})
        scores.append(layout.to_host(fn(params, g["t"], g["m"])))
    s = np.concatenate(scores) if scores else np.zeros(1)
    return {"mean": float(s.mean()), "std": float(max(s.std(), 1e-6)), "responses": int(len(s))}


def read_stats(run_dir: str | Path) -> dict | None:
    p = Path(run_dir) / STATS_FILE
    return json.loads(p.read_text()) if p.is_file() else None


def build_reward(cfg: Config, model: ScalarModel, data: PrefData, process_index: int = 0,
                 process_count: int = 1) -> Objective:
    t = cfg.train
    n_train = len(data.train["tokens"])
    source = RowBatches(n_train, lambda rows: take_rows(data.train, rows), t.batch_size, seed=cfg.seed,
                        shuffle=cfg.data.shuffle, process_index=process_index, process_count=process_count,
                        what="rankings")
    held = data.eval if len(data.eval["tokens"]) else data.train
    n_eval = math.ceil(len(held["tokens"]) / t.batch_size)
    evals = fixed_batches(len(held["tokens"]), lambda rows: take_rows(held, rows), t.batch_size, n_eval,
                          process_index, process_count)
    k = data.train["tokens"].shape[1]

    # the trunk from an LM run (its lm_head, if any, dropped); the head starts fresh
    init = {"trunk": Params(Transformer(model.spec), cfg.init_from, select=trunk_params)} if cfg.init_from else {}

    def finish(params, run_dir, layout):
        stats = score_stats(model, params, data.train, t.batch_size * k, layout)
        if jax.process_index() == 0:
            (Path(run_dir) / STATS_FILE).write_text(json.dumps(stats, indent=1) + "\n")
        return f"reward scores over {stats['responses']} training responses: mean {stats['mean']:.3f}, std {stats['std']:.3f}"

    tpl = data.template
    return Objective("reward", make_reward_loss(model, cfg.objective.reward.margin), source, evals,
                     tokens_per_step=t.batch_size * k * t.seq_len, prompt=lambda text: tpl.prompt([user(text)]),
                     stop_ids=tpl.stop_ids, init=init, finish=finish, sample_params=None,
                     flops_per_token=functools.partial(train_flops_per_token, lm_head=False))


def load(cfg: Config, run_dir: Path | None) -> PrefData:
    rc = cfg.objective.reward
    return load_pref_data(cfg, run_dir, rc.max_responses)


def validate(cfg: Config) -> None:
    if cfg.data.source not in ("builtin", "jsonl"):
        raise ConfigError(f"data.source = {cfg.data.source!r} with objective.name = 'reward': it reads rankings or pairs "
                          "from data.source=builtin (the preference world) or data.source=jsonl (data.paths).")


def report(stats: dict) -> list[str]:
    rk = stats["rankings"]
    return [*data_lines(stats), f"{rk['train']} rankings of up to {rk['k']} responses for training, {rk['eval']} held out; "
            f"{rk['cut']} responses cut at train.seq_len (oldest prompt tokens dropped)"]


SPEC = ObjectiveSpec("reward", load=load, build=build_reward, model=ScalarModel, config=RewardConfig, validate=validate,
                     report=report, parts={"reward": Part(None, "scalar")},
                     doc="a scalar head on the SFT trunk learns K-wise rankings")

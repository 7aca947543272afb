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
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxllm.config.schema import Config
from jaxllm.data.chat import user
from jaxllm.data.packing import RowBatches, fixed_batches, take_rows
from jaxllm.data.pref_data import PrefData
from jaxllm.model import Transformer
from jaxllm.model.flops import train_flops_per_token
from jaxllm.model.scalar import ScalarModel, trunk_params
from jaxllm.objectives.base import Objective
from jaxllm.objectives.rl_math import last_index, ranking_loss
from jaxllm.parallel.sharding import to_host
from jaxllm.train.checkpoint import load_params
from jaxllm.train.state import abstract_params

STATS_FILE = "reward_stats.json"


def layout(mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(positions, segment_ids)`` for rows padded anywhere: positions count real tokens, pads are segment 0."""
    m = mask.astype(jnp.int32)
    return jnp.maximum(jnp.cumsum(m, axis=-1) - 1, 0), m


def sequence_scores(model: ScalarModel, params, tokens: jax.Array, mask: jax.Array, rng=None) -> jax.Array:
    """``tokens, mask [N, L] -> [N]``: the head's output at each row's last real token."""
    positions, segments = layout(mask)
    out = model.apply({"params": params}, tokens, positions, segments, deterministic=rng is None,
                      rngs={"dropout": rng} if rng is not None else {})
    return jnp.take_along_axis(out, last_index(mask)[:, None], axis=1)[:, 0]


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


def load_trunk(init_from: str, spec, mesh, rules) -> dict:
    """An LM checkpoint's parameters as a scalar model's trunk (its lm_head, if any, dropped)."""
    return trunk_params(load_params(init_from, abstract_params(Transformer(spec), mesh, rules)))


def score_stats(model: ScalarModel, params, arrays: dict, batch: int, mesh, rules, limit: int = 2048) -> dict:
    """Mean and std of the scores of up to ``limit`` ranked responses (for PPO's normalisation)."""
    from jaxllm.parallel.sharding import batch_divisor, global_batch
    fn = jax.jit(lambda p, t, m: sequence_scores(model, p, t, m))
    n, k, length = arrays["tokens"].shape
    tokens = arrays["tokens"].reshape(n * k, length)
    mask = arrays["mask"].reshape(n * k, length)
    keep = (np.arange(k)[None, :] < arrays["n_ranked"][:, None]).reshape(-1)
    tokens, mask = tokens[keep][:limit], mask[keep][:limit]
    step = max(batch // batch_divisor(mesh, rules), 1) * batch_divisor(mesh, rules)
    scores = []
    for i in range(0, len(tokens) - step + 1, step):
        g = global_batch({"t": tokens[i:i + step], "m": mask[i:i + step]}, mesh, rules)
        scores.append(to_host(fn(params, g["t"], g["m"])))
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

    def init_params(fresh, mesh, rules):
        if not cfg.init_from:
            return fresh
        return {**fresh, "trunk": load_trunk(cfg.init_from, model.spec, mesh, rules)}

    def finish(params, run_dir, mesh, rules):
        stats = score_stats(model, params, data.train, t.batch_size * k, mesh, rules)
        if jax.process_index() == 0:
            (Path(run_dir) / STATS_FILE).write_text(json.dumps(stats, indent=1) + "\n")
        return f"reward scores over {stats['responses']} training responses: mean {stats['mean']:.3f}, std {stats['std']:.3f}"

    tpl = data.template
    return Objective("reward", make_reward_loss(model, cfg.objective.reward.margin), source, evals,
                     tokens_per_step=t.batch_size * k * t.seq_len, prompt=lambda text: tpl.prompt([user(text)]),
                     stop_ids=tpl.stop_ids, init_params=init_params, finish=finish, sample_params=None,
                     flops_per_token=functools.partial(train_flops_per_token, lm_head=False))

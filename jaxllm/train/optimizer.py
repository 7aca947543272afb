"""AdamW with warm-up + decay, global-norm clipping and a weight-decay mask."""

from __future__ import annotations

import jax
import optax

from jaxllm.config.schema import OptimizerConfig

_EMBEDDINGS = ("embed", "pos_embed")


def lr_schedule(cfg: OptimizerConfig, total_steps: int) -> optax.Schedule:
    """Linear warm-up to ``lr``, then cosine/linear decay to ``lr * min_lr_ratio`` at ``total_steps``."""
    end = cfg.lr * cfg.min_lr_ratio
    decay_steps = max(total_steps - cfg.warmup_steps, 1)
    if cfg.schedule == "cosine":
        decay = optax.cosine_decay_schedule(cfg.lr, decay_steps, alpha=cfg.min_lr_ratio)
    elif cfg.schedule == "linear":
        decay = optax.linear_schedule(cfg.lr, end, decay_steps)
    else:
        decay = optax.constant_schedule(cfg.lr)
    if cfg.warmup_steps == 0:
        return decay
    warm = optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps)
    return optax.join_schedules([warm, decay], [cfg.warmup_steps])


def decay_mask(cfg: OptimizerConfig, params):
    """True for parameters that get weight decay: kernels always; embeddings, norms, biases by config."""

    def wants_decay(path, _):
        names = [getattr(k, "key", str(k)) for k in path]
        leaf = names[-1]
        if leaf in _EMBEDDINGS:
            return cfg.decay_embeddings
        if leaf in ("scale", "bias"):
            return cfg.decay_norms_and_biases
        return True

    return jax.tree_util.tree_map_with_path(wants_decay, params)


def make_optimizer(cfg: OptimizerConfig, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    schedule = lr_schedule(cfg, total_steps)
    parts = [optax.clip_by_global_norm(cfg.grad_clip)] if cfg.grad_clip > 0 else []
    parts.append(optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                             mask=lambda p: decay_mask(cfg, p)))
    return optax.chain(*parts), schedule

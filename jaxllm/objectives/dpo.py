"""Direct preference optimisation without a reward model: DPO, cDPO, IPO, SimPO, pairwise or listwise.

Data: the reward model's rankings (`data/pref_data.py`: built-in ranked candidates, ranking files,
pairs, HH-RLHF), ``tokens, mask, response [B, K, L]`` and ``n_ranked [B]``: K responses of a prompt,
best first, each the whole chat, scored on its response tokens only (the prompt never is). All K
go through the policy in one forward (``[B*K, L]``). The losses are in `preference_losses.py`.

The reference is the starting model (``init_from``, the SFT run), frozen: ``live`` runs it in the step
(sharded like the policy); ``precomputed`` (the default, ``auto``) scores every response once before
training and stores the sums with the data, which drops the reference's forward from every step and
its parameters from device memory. SimPO needs none.
"""

from __future__ import annotations

import functools
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
from jaxllm.data.prepare import init_from_tokenizer
from jaxllm.data.tokenizer import Tokenizer
from jaxllm.errors import ConfigError, UserError
from jaxllm.model import Transformer
from jaxllm.model.flops import train_flops_per_token
from jaxllm.model.scalar import layout as row_layout
from jaxllm.objectives.base import Objective, ObjectiveSpec, Params
from jaxllm.objectives.lm_head import token_nll_and_hits
from jaxllm.objectives.preference_losses import LOSS_TYPES, RANKINGS, implicit_rewards, ranking_loss
from jaxllm.objectives.reward import report


@dataclass
class DpoConfig:
    loss_type: str = option("sigmoid", choices=LOSS_TYPES, doc="sigmoid = DPO (with label_smoothing: cDPO), ipo = IPO "
                            "(mean log-probs), simpo = SimPO (reference-free, length-normalised, margin gamma).")
    ranking: str = option("all_pairs", choices=RANKINGS, doc="Over K ranked responses: all_pairs = mean pairwise loss "
                          "over the C(K,2) pairs, plackett_luce = the listwise DPO loss (K=2: DPO), best_worst = one pair.")
    beta: float = option(0.1, min=0.0, doc="Inverse temperature of the implicit reward (SimPO: its scale, ~2).")
    label_smoothing: float = option(0.0, min=0.0, max=0.5, doc="cDPO / robust DPO: the share of labels taken as flipped.")
    gamma: float = option(0.5, min=0.0, doc="SimPO's target reward margin.")
    sft_coef: float = option(0.0, min=0.0, doc="Add this x the chosen (best) response's mean NLL per token (RPO, TRL's "
                             "sft term).")
    reference: str = option("auto", choices=("auto", "live", "precomputed"), doc="The frozen reference's log-probs: "
                            "computed in every step (live) or once before training (precomputed; auto = precomputed).")
    max_responses: int = option(4, min=2, doc="K: responses per prompt in a batch element (longer rankings keep their "
                                "best K; shorter ones are padded and masked).")


def sequence_logps(model: Transformer, params, tokens, mask, response, rng=None, chunk: int = 0):
    """``tokens, mask, response [M, L]`` -> ``(sum of log p over response tokens [M], their count [M])``."""
    positions, segments = row_layout(mask)
    hidden = model.apply({"params": params}, tokens[:, :-1], positions[:, :-1], segments[:, :-1],
                         deterministic=rng is None, rngs={"dropout": rng} if rng is not None else {}, output="hidden")
    nll, _ = token_nll_and_hits(model.spec, params, hidden, tokens[:, 1:], chunk)
    m = response[:, 1:]
    return -jnp.sum(nll * m, axis=1), jnp.sum(m, axis=1)


def make_dpo_loss(model: Transformer, c: DpoConfig, live_reference: bool, chunk: int = 0):
    """``(params, batch, frozen, rng) -> (sum of per-prompt losses, prompts, metrics)``."""

    def loss(params, batch, frozen=None, rng=None):
        b, k, length = batch["tokens"].shape
        flat = [batch[n].reshape(b * k, length) for n in ("tokens", "mask", "response")]
        logp, count = sequence_logps(model, params, *flat, rng, chunk)
        logp, count = logp.reshape(b, k), count.reshape(b, k)
        if c.loss_type == "simpo":
            ref = jnp.zeros_like(logp)
        elif live_reference:
            ref = jax.lax.stop_gradient(sequence_logps(model, frozen["reference"], *flat, None, chunk)[0].reshape(b, k))
        else:
            ref = batch["ref_logp"]
        n = batch["n_ranked"]
        r = implicit_rewards(c.loss_type, logp, ref, count, c.beta)
        per_prompt, (correct, pairs, margin_sum) = ranking_loss(r, n, c.loss_type, c.ranking, c.beta,
                                                                c.label_smoothing, c.gamma)
        per_token = logp / jnp.maximum(count, 1.0)
        if c.sft_coef:
            per_prompt = per_prompt - c.sft_coef * per_token[:, 0]
        worst = lambda x: jnp.take_along_axis(x, (n - 1)[:, None], axis=1)[:, 0]  # noqa: E731
        valid = (jnp.arange(k)[None, :] < n[:, None]).astype(jnp.float32)
        prompts = jnp.float32(b)
        metrics = {
            "accuracy": (correct, pairs), "margin": (margin_sum, pairs),
            "reward_chosen": (jnp.sum(r[:, 0]), prompts), "reward_rejected": (jnp.sum(worst(r)), prompts),
            "logp_chosen": (jnp.sum(per_token[:, 0]), prompts), "logp_rejected": (jnp.sum(worst(per_token)), prompts),
        }
        if c.loss_type != "simpo":  # log pi - log ref per response token, on the data's responses
            metrics["ref_logratio"] = (jnp.sum((logp - ref) * valid), jnp.sum(count * valid))
        return jnp.sum(per_prompt), prompts, metrics

    return loss


def map_responses(fn, arrays: dict, rows_per_call: int, layout) -> np.ndarray:
    """``fn(tokens, mask, response) -> [M]`` over every response of ``arrays`` (``[N, K, L]``) -> ``[N, K]``,
    in global batches on ``layout`` (each process computes all of them)."""
    n, k, length = arrays["tokens"].shape
    flat = {name: arrays[name].reshape(n * k, length) for name in ("tokens", "mask", "response")}
    pc, pi = jax.process_count(), jax.process_index()
    step = max(rows_per_call // (layout.batch_divisor * pc), 1) * layout.batch_divisor * pc
    total = math.ceil(n * k / step) * step
    rows = np.arange(total) % (n * k)  # the last call wraps around; those rows are dropped below
    out = []
    for s in range(0, total, step):
        local = rows[s:s + step][pi * step // pc:(pi + 1) * step // pc]
        g = layout.global_batch({name: v[local] for name, v in flat.items()})
        out.append(layout.to_host(fn(g["tokens"], g["mask"], g["response"])))
    return np.concatenate(out)[:n * k].reshape(n, k).astype(np.float32)


def reference_logps(model: Transformer, params, arrays: dict, rows_per_call: int, layout, chunk: int = 0) -> np.ndarray:
    """``[N, K]`` log-prob sums of every response in ``arrays`` under ``params`` (the reference)."""
    fn = jax.jit(lambda p, t, m, r: sequence_logps(model, p, t, m, r, None, chunk)[0])
    return map_responses(functools.partial(fn, params), arrays, rows_per_call, layout)


def build_dpo(cfg: Config, model: Transformer, data: PrefData, process_index: int = 0, process_count: int = 1) -> Objective:
    t, c = cfg.train, cfg.objective.dpo
    needs_ref = c.loss_type != "simpo"
    live = needs_ref and c.reference == "live"
    source = RowBatches(len(data.train["tokens"]), lambda rows: take_rows(data.train, rows), t.batch_size, seed=cfg.seed,
                        shuffle=cfg.data.shuffle, process_index=process_index, process_count=process_count,
                        what="rankings")
    held = data.eval if len(data.eval["tokens"]) else data.train
    n_eval = math.ceil(len(held["tokens"]) / t.batch_size)

    def eval_batches():
        return fixed_batches(len(held["tokens"]), lambda rows: take_rows(held, rows), t.batch_size, n_eval,
                             process_index, process_count)

    evals = eval_batches()
    k = data.train["tokens"].shape[1]

    def prepare(layout, frozen):
        """Precomputed reference: score every response once, then drop the reference from the step."""
        if live or not needs_ref:
            return None, frozen
        for arrays in {id(data.train): data.train, id(held): held}.values():
            arrays["ref_logp"] = reference_logps(model, frozen["reference"], arrays, t.batch_size * k, layout,
                                                 t.loss_chunk)
        evals[:] = eval_batches()
        n = len(data.train["tokens"]) + (len(held["tokens"]) if held is not data.train else 0)
        return f"reference log-probs precomputed for {n * k:,} responses ({n:,} rankings x {k})", {}

    frozen = {"reference": Params(model, cfg.init_from)} if needs_ref else {}
    fwd = 1.0 / 3.0 if live else 0.0  # the reference's forward is a third of a trained token's FLOPs
    tpl = data.template
    return Objective("dpo", make_dpo_loss(model, c, live, t.loss_chunk), source, evals,
                     tokens_per_step=t.batch_size * k * t.seq_len, frozen=frozen, prepare=prepare,
                     prompt=lambda text: tpl.prompt([user(text)]), stop_ids=tpl.stop_ids,
                     flops_per_token=lambda s, n: train_flops_per_token(s, n) * (1.0 + fwd),
                     progress_metrics=("accuracy", "margin"))


def load(cfg: Config, run_dir: Path | None) -> PrefData:
    data = load_pref_data(cfg, run_dir, cfg.objective.dpo.max_responses, response_mask=True)
    ref_tok = init_from_tokenizer(cfg.init_from)
    if ref_tok is not None and Tokenizer.load(ref_tok).model_proto != data.tokenizer.model_proto:
        raise UserError(f"data.tokenizer.path = {cfg.data.tokenizer.path!r} differs from the tokenizer of init_from = "
                        f"{cfg.init_from!r} ({ref_tok}), the policy's start and DPO's reference; drop "
                        "data.tokenizer.path so both read the same token ids.")
    return data


def validate(cfg: Config) -> None:
    c = cfg.objective.dpo
    if cfg.data.source not in ("builtin", "jsonl"):
        raise ConfigError(f"data.source = {cfg.data.source!r} with objective.name = 'dpo': it reads rankings or pairs "
                          "from data.source=builtin (the preference world) or data.source=jsonl (data.paths).")
    if c.ranking == "plackett_luce" and c.loss_type == "ipo":
        raise ConfigError("objective.dpo.ranking = 'plackett_luce' with loss_type = 'ipo': the listwise loss is a "
                          "likelihood of rewards (sigmoid or simpo); use ranking=all_pairs for IPO.")
    if c.beta <= 0:
        raise ConfigError(f"objective.dpo.beta = {c.beta}: must be > 0.")


SPEC = ObjectiveSpec("dpo", load=load, build=build_dpo, config=DpoConfig, validate=validate, report=report,
                     doc="preference optimisation from rankings or pairs, no reward model (DPO, cDPO, IPO, SimPO; "
                         "pairwise or Plackett-Luce)")

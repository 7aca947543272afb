"""PPO (RLHF step 3): its options, its loss, and its batch source over the shared rollout engine.

Trainable: ``{"policy": Transformer, "critic": ScalarModel}`` (`ActorCritic`), the policy from
``init_from`` (the SFT run), the critic from the reward model run (``objective.ppo.reward_from``).
Frozen, declared for the loop to place on the mesh: the reference policy (``init_from`` again) and
the reward model (unless ``reward_fn`` replaces it).

The batch source (`PpoRollouts`) is handed the current parameters before each batch. When its
buffer is empty it samples ``rollout_prompts`` responses (`rl.rollout.RolloutEngine`), computes GAE
advantages (`rl.advantages`), adapts the KL coefficient (`rl.kl`), and then yields ``ppo_epochs``
passes of shuffled minibatches of ``train.batch_size`` sequences (`rl.buffer`) to the same jitted
step as every other objective. ``train.grad_accum`` splits each minibatch as usual.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxllm.config.schema import Config, option
from jaxllm.data.chat import Message
from jaxllm.data.report import data_lines
from jaxllm.errors import ConfigError, UserError
from jaxllm.model import Transformer
from jaxllm.model.decode import Sampling, token_logprobs
from jaxllm.model.flops import train_flops_per_token
from jaxllm.model.scalar import ActorCritic, ScalarModel, layout
from jaxllm.objectives.base import Objective, ObjectiveSpec, OnPolicySource, Params, Part
from jaxllm.objectives.reward import read_stats
from jaxllm.rl import math as rl_math
from jaxllm.rl.advantages import gae_advantages_jit
from jaxllm.rl.verdicts import read_rows, rl_verdicts, write_verdicts
from jaxllm.rl.buffer import minibatches, next_prompts
from jaxllm.rl.evaluate import evaluate_policy
from jaxllm.rl.kl import KlController
from jaxllm.data.prompt_data import PromptData, load_prompt_data, prompt_lines
from jaxllm.rl.rollout import RolloutEngine, Settings, response_logits


@dataclass
class PtxConfig:
    source: str = option("builtin", choices=("builtin", "text", "jsonl"), prefixes=("tfds:",),
                         doc="PPO-ptx documents: builtin (the generated world corpus), text or jsonl files "
                             "(objective.ppo.ptx.paths), or tfds:NAME (data.data_dir, data.tfds_split).")
    paths: list = option(factory=list, doc="Files or globs for a text/jsonl PPO-ptx source.")
    field: str = option("text", doc="Text field of JSONL records and TFDS examples.")


@dataclass
class PpoConfig:
    reward_from: Optional[str] = option(None, doc="Reward model run dir (objective.name=reward); the critic starts from it.")
    reward_fn: Optional[str] = option(None, doc="Instead of a reward model: 'module:function' taking (prompts, responses) "
                                            "as lists of str and returning one float per response.")
    rollout_prompts: int = option(64, min=1, doc="Prompts sampled per rollout (a multiple of train.batch_size); each "
                                             "rollout gives ppo_epochs * rollout_prompts / batch_size optimizer steps.")
    ppo_epochs: int = option(2, min=1, doc="Passes over each rollout batch, in freshly shuffled minibatches.")
    max_new_tokens: int = option(32, min=1, doc="Response length limit; the prompt may use train.seq_len minus this.")
    temperature: float = option(1.0, min=0.05, doc="Sampling temperature; every log-prob divides logits by it.")
    top_k: int = option(0, min=0, doc="Rollout top-k (0 = off).")
    top_p: float = option(1.0, min=0.0, max=1.0, doc="Rollout nucleus sampling (1 = off).")
    clip: float = option(0.2, min=0.0, doc="Policy ratio clip epsilon.")
    value_clip: float = option(0.2, min=0.0, doc="Value clip around the rollout's values.")
    vf_coef: float = option(0.1, min=0.0, doc="Weight of the value loss in the summed loss.")
    gamma: float = option(1.0, min=0.0, max=1.0, doc="GAE discount.")
    lam: float = option(0.95, min=0.0, max=1.0, doc="GAE lambda.")
    kl_coef: float = option(0.05, min=0.0, doc="beta of the per-token penalty -beta * (log pi_old - log pi_ref); the "
                                           "initial value when kl_target is set.")
    kl_target: Optional[float] = option(None, min=0.0, doc="Adaptive KL controller: target KL per response (nats); "
                                                       "null = fixed kl_coef.")
    kl_horizon: float = option(10000.0, min=1.0, doc="Adaptive KL horizon in responses.")
    kl_estimator: str = option("k1", choices=("k1", "k2", "k3", "abs"), doc="Per-token KL estimator in the reward.")
    missing_eos_penalty: float = option(1.0, min=0.0, doc="Subtracted from the score of a response that never ends its turn.")
    normalize_score: bool = option(True, doc="(score - mean) / std with the reward model's saved statistics.")
    score_clip: float = option(5.0, min=0.0, doc="Clip the (normalised) score to [-c, c]; 0 = no clip.")
    whiten_advantages: bool = option(True, doc="Whiten advantages over each rollout batch (population variance).")
    ptx_coef: float = option(0.0, min=0.0, doc="PPO-ptx: add this times the pre-training loss on a batch of "
                                                "objective.ppo.ptx's documents per step (0 = off).")
    ptx: PtxConfig = option(factory=PtxConfig)
    eval_prompts: int = option(64, min=0, doc="Held-out prompts answered (greedy) at each evaluation: reward score, "
                                          "judge score and KL to the reference.")


def _reward_fn(spec: str):
    mod, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as e:
        raise UserError(f"objective.ppo.reward_fn = {spec!r}: cannot import it ({e}); give 'module:function'.") from e


def engine_settings(pc: PpoConfig, vocab_size: int) -> Settings:
    return Settings(pc.temperature, vocab_size, pc.gamma, pc.lam, pc.kl_estimator, pc.missing_eos_penalty,
                    pc.score_clip, pc.whiten_advantages)


class PpoRollouts(OnPolicySource):
    """PPO's batch source: rollouts from the current policy, served as shuffled minibatches."""

    def __init__(self, cfg: Config, spec, data: PromptData, process_index: int = 0, process_count: int = 1):
        self.cfg, self.seed, self.data = cfg.objective.ppo, cfg.seed, data
        self.reference_from = cfg.init_from
        t, pc = cfg.train, cfg.objective.ppo
        self.batch, self.local = t.batch_size, t.batch_size // process_count
        self.offset = process_index * self.local
        p = t.seq_len - pc.max_new_tokens
        tokens = [data.template.prompt(q.conversation) for q in data.train]
        self.fits = [i for i, q in enumerate(tokens) if len(q) <= p]  # longer prompts would be cut: skipped
        if not self.fits:
            raise UserError(f"no prompt fits in train.seq_len - objective.ppo.max_new_tokens = {p} tokens "
                            f"(shortest: {min(len(q) for q in tokens)}); raise train.seq_len.")
        self.skipped_prompts = len(tokens) - len(self.fits)
        self.prompt_tokens = tokens
        reward_fn = _reward_fn(pc.reward_fn) if pc.reward_fn else None
        self.engine = RolloutEngine(spec, p, pc.max_new_tokens, Sampling(pc.temperature, pc.top_k, pc.top_p, pc.max_new_tokens),
                                    engine_settings(pc, data.tokenizer.vocab_size), data.template, reward_fn)
        self.kl = KlController(pc.kl_coef, pc.kl_target, pc.kl_horizon)
        self.rollouts, self.prompt_epoch, self.prompt_index = 0, 0, 0
        self.buffer: list[dict] = []
        self.params = None
        self.norm = (0.0, 1.0)
        self.last: dict = {}
        self.generate_s = 0.0
        self.ptx = None  # a pre-training batch iterator for PPO-ptx

    @property
    def settings(self) -> Settings:
        return self.engine.settings

    def attach(self, layout, frozen: dict) -> str:
        self.engine.attach(layout, frozen["reference"], frozen.get("reward_model"))
        lines = [f"reference policy: {self.reference_from or 'the initial policy'}"]
        if self.skipped_prompts:
            lines.append(f"{self.skipped_prompts} prompts longer than {self.engine.p} tokens skipped")
        if self.engine.reward_fn is None:
            stats = read_stats(self.cfg.reward_from)
            if self.cfg.normalize_score and stats:
                self.norm = (stats["mean"], stats["std"])
            lines.append(f"reward model: {self.cfg.reward_from}" + (f" (scores normalised by mean {self.norm[0]:.3f}, "
                         f"std {self.norm[1]:.3f})" if self.norm != (0.0, 1.0) else " (raw scores)"))
        else:
            lines.append(f"reward function: {self.cfg.reward_fn}")
        return "; ".join(lines)

    def set_params(self, params) -> None:
        self.params = params

    def _next_prompts(self, n: int) -> list[int]:
        ids, self.prompt_epoch, self.prompt_index = next_prompts(self.fits, n, [self.seed, 17], self.prompt_epoch,
                                                                 self.prompt_index)
        return ids

    def _rollout(self) -> None:
        t0 = time.perf_counter()
        ids = self._next_prompts(self.cfg.rollout_prompts)
        key = jax.random.fold_in(jax.random.PRNGKey(self.seed + 101), self.rollouts)
        ro = self.engine.run(self.params, [self.prompt_tokens[i] for i in ids], key)
        arr, scored, raw = ro.arrays, ro.scored, ro.scored["raw_score"]
        out = self.engine.layout.to_host(gae_advantages_jit(
            raw, arr["has_eos"], scored["old_logp"], scored["ref_logp"], scored["old_values"], arr["resp_mask"],
            self.kl.beta, *self.norm, s=self.settings))
        m = arr["resp_mask"]
        kl_mean = float(np.mean(out["kl"]))
        self.last = {"rm_score": float(np.mean(raw)), "score": float(np.mean(out["score"])), "kl": kl_mean,
                     "entropy": float((scored["entropy"] * m).sum() / max(m.sum(), 1)),
                     "response_len": float(m.sum(1).mean()), "eos_frac": float(arr["has_eos"].mean()),
                     "beta": float(self.kl.beta)}
        items = [self.data.train[i].item for i in ids]
        if all(it is not None for it in items):
            from jaxllm.world.judge import judge
            self.last["judge"] = float(np.mean([judge(it, x, bool(e))["score"]
                                                for it, x, e in zip(items, ro.texts, arr["has_eos"])]))
        self.kl.update(kl_mean, len(ids))
        rows = {"inputs": arr["inputs"], "mask": arr["mask"], "resp_mask": m, "old_logp": scored["old_logp"],
                "old_values": scored["old_values"], "advantages": out["advantages"], "returns": out["returns"]}
        rng = np.random.default_rng([self.seed, 29, self.rollouts])
        self.buffer += minibatches(rows, self.batch, self.cfg.ppo_epochs, rng, self.offset, self.local)
        self.rollouts += 1
        self.generate_s += time.perf_counter() - t0

    def __next__(self) -> dict[str, np.ndarray]:
        if not self.buffer:
            self._rollout()
        batch = self.buffer.pop(0)
        if self.ptx is not None:
            batch.update({f"ptx_{k}": v for k, v in next(self.ptx).items()})
        return batch

    def metrics(self) -> dict:
        out = {**self.last, "generate_s": self.generate_s}
        self.generate_s = 0.0
        return out

    def state(self) -> dict:
        """A resumed run starts a fresh rollout (with the restored policy) after the last finished one."""
        return {"rollouts": self.rollouts, "beta": self.kl.beta, "prompt_epoch": self.prompt_epoch,
                "prompt_index": self.prompt_index}

    def restore(self, state: dict) -> None:
        self.rollouts, self.kl.beta = state["rollouts"], state["beta"]
        self.prompt_epoch, self.prompt_index = state["prompt_epoch"], state["prompt_index"]
        self.buffer = []


def ppo_loss(model: ActorCritic, t: int, s: Settings, clip: float, value_clip: float, vf_coef: float,
             ptx_coef: float = 0.0):
    """The PPO loss in the objective interface: token sums over the batch's response tokens.

    ``loss_sum = sum_tokens(clipped policy loss) + vf_coef * sum_tokens(clipped value loss)``, denominator
    = response tokens, so the step's division gives token means over the global batch. PPO-ptx adds
    ``ptx_coef`` times the mean pre-training NLL of the batch's ``ptx_*`` rows (scaled by the token count).
    """
    from jaxllm.objectives.lm_head import token_nll

    def loss(params, batch, frozen=None, rng=None):
        del frozen, rng  # dropout stays off in PPO: log-probs must match the rollout's
        positions, segments = layout(batch["mask"])
        logits, values = model.apply({"params": params}, batch["inputs"], positions, segments)
        targets = batch["inputs"][:, batch["inputs"].shape[1] - t:]
        logp = token_logprobs(response_logits(logits, t), targets, s.vocab_size, s.temperature)
        v = response_logits(values[..., None], t)[..., 0]
        m = batch["resp_mask"]
        pg, pm = rl_math.policy_loss(logp, batch["old_logp"], batch["advantages"], m, clip)
        vf = rl_math.value_loss(v, batch["old_values"], batch["returns"], m, value_clip)
        n = jnp.sum(m)
        loss_sum = pg + vf_coef * vf
        metrics = {"policy_loss": (pg, n), "value_loss": (vf, n), "clip_frac": (pm["clip_frac"], n),
                   "approx_kl": (pm["approx_kl"], n), "ratio": (pm["ratio"], n),
                   "value_error": (jnp.sum((v - batch["returns"]) ** 2 * m), n)}
        if ptx_coef:
            ptx_logits = model.apply({"params": params}, batch["ptx_inputs"], batch["ptx_positions"],
                                     batch["ptx_segment_ids"], method=lambda mdl, *a: mdl.policy(*a))
            nll = token_nll(ptx_logits, batch["ptx_targets"])
            ptx_n = jnp.maximum(jnp.sum(batch["ptx_loss_mask"]), 1.0)
            ptx = jnp.sum(nll * batch["ptx_loss_mask"]) / ptx_n
            loss_sum = loss_sum + ptx_coef * ptx * n
            metrics["ptx_loss"] = (ptx * n, n)
        return loss_sum, n, metrics

    return loss


def _ptx_batches(cfg: Config, tokenizer, process_index: int, process_count: int):
    """PPO-ptx's pre-training rows from ``objective.ppo.ptx`` (the built-in corpus by default)."""
    from jaxllm.data.packing import BatchIterator
    from jaxllm.data.prepare import tokenize
    from jaxllm.data.sources import load_documents

    ptx, t = cfg.objective.ppo.ptx, cfg.train
    docs, _ = load_documents(dataclasses.replace(cfg.data, source=ptx.source, paths=ptx.paths, field=ptx.field))
    return BatchIterator(tokenize(tokenizer, docs), t.seq_len, t.batch_size, seed=cfg.seed,
                         process_index=process_index, process_count=process_count)


def ppo_verdicts(rows: list[dict]):
    """The reward model's score on the rollouts against the world's judge on held-out prompts."""
    return rl_verdicts(rows, "rm_score", "eval_judge", "held-out judge")


def build_ppo(cfg: Config, model: ActorCritic, data: PromptData, process_index: int = 0, process_count: int = 1) -> Objective:
    pc, t = cfg.objective.ppo, cfg.train
    source = PpoRollouts(cfg, model.spec, data, process_index, process_count)
    if pc.ptx_coef:
        source.ptx = _ptx_batches(cfg, data.tokenizer, process_index, process_count)
    policy, critic = Transformer(model.spec), ScalarModel(model.spec)
    init = {}
    if cfg.init_from:
        init["policy"] = Params(policy, cfg.init_from)
    if pc.reward_from:
        init["critic"] = Params(critic, pc.reward_from)
    # from scratch (tests), the reference is a copy of the initial policy
    frozen = {"reference": Params(policy, cfg.init_from, copy=None if cfg.init_from else "policy")}
    if not pc.reward_fn:
        frozen["reward_model"] = Params(critic, pc.reward_from)

    def evaluate(params, frozen_params):
        metrics, _, _ = evaluate_policy(source.engine, params, data.eval, with_rm=source.engine.reward_fn is None)
        return {f"eval_{k}": v for k, v in metrics.items()}

    def finish(params, run_dir, layout_):
        if jax.process_index() != 0:
            return None
        return write_verdicts(run_dir, ppo_verdicts(read_rows(run_dir)))

    loss = ppo_loss(model, pc.max_new_tokens, source.settings, pc.clip, pc.value_clip, pc.vf_coef, pc.ptx_coef)
    tpl = data.template
    return Objective("ppo", loss, source, [], tokens_per_step=t.batch_size * t.seq_len,
                     init=init, frozen=frozen, prompt=lambda text: tpl.prompt([Message("user", text)]),
                     stop_ids=tpl.stop_ids, evaluate=evaluate, finish=finish, sample_params=lambda params: params["policy"],
                     flops_per_token=functools.partial(train_flops_per_token, trunks=2),  # policy + critic (PPO-ptx
                     # rows, when on, are not counted)
                     progress_metrics=("score", "kl", "judge", "eos_frac"))


def load(cfg: Config, run_dir: Path | None) -> PromptData:
    return load_prompt_data(cfg, run_dir, cfg.objective.ppo.eval_prompts)


def validate(cfg: Config) -> None:
    pc, t = cfg.objective.ppo, cfg.train
    if cfg.data.source not in ("builtin", "jsonl"):
        raise ConfigError(f"data.source = {cfg.data.source!r} with objective.name = 'ppo': it reads prompts from "
                          "data.source=builtin (the preference world) or data.source=jsonl (data.paths).")
    if not (pc.reward_from or pc.reward_fn):
        raise ConfigError("objective.name = 'ppo' needs objective.ppo.reward_from (a reward model run dir) or "
                          "objective.ppo.reward_fn ('module:function').")
    if pc.max_new_tokens >= t.seq_len:
        raise ConfigError(f"objective.ppo.max_new_tokens = {pc.max_new_tokens} leaves no room for the prompt in "
                          f"train.seq_len = {t.seq_len}; raise train.seq_len or lower max_new_tokens.")
    if pc.rollout_prompts % t.batch_size:
        raise ConfigError(f"objective.ppo.rollout_prompts = {pc.rollout_prompts} is not a multiple of "
                          f"train.batch_size = {t.batch_size} (the PPO minibatch); make it one.")
    if pc.ptx_coef and pc.ptx.source in ("text", "jsonl") and not pc.ptx.paths:
        raise ConfigError(f"objective.ppo.ptx.source = {pc.ptx.source!r} needs objective.ppo.ptx.paths (files or globs).")


SPEC = ObjectiveSpec("ppo", load=load, build=build_ppo, model=ActorCritic, config=PpoConfig, validate=validate,
                     report=lambda stats: [*data_lines(stats), *prompt_lines(stats)],
                     parts={"policy": Part("policy", "lm"), "critic": Part("critic", "scalar")},
                     doc="RLHF: the policy from init_from learns from a reward model, with a KL leash")

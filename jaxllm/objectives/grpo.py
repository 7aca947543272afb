"""RL with verifiable rewards and group baselines: GRPO, Dr. GRPO, DAPO and RLOO, on the shared rollout engine.

Trainable: the policy alone (a `Transformer`, from ``init_from``), no critic. Frozen: the reference
(``init_from`` again) and, when the reward has a ``model`` component, the reward model. Each rollout
samples ``group_size`` answers to each of ``prompts_per_rollout`` task prompts on the sharded policy
(`rl.rollout.RolloutEngine`: the KV-cache sampler and one scoring pass for the policy's and the
reference's log-probs), scores them with the reward components (`rl.rewards`), turns the rewards into
group advantages (`rl.group`) and serves ``epochs`` passes of shuffled minibatches of
``train.batch_size`` responses to the same jitted step as every other objective. The loss is the
clipped ratio against the sampling policy's log-probs plus the k3 KL to the reference
(`rl.group.group_policy_loss`).

``loss_type`` sets the algorithm's defaults; ``advantage``, ``aggregation``, ``clip_high``,
``kl_coef`` and ``dynamic_sampling`` override them one by one:

=========  ===========  ==============  =========  =======  ================
loss_type  advantage    aggregation     clip_high  kl_coef  dynamic_sampling
=========  ===========  ==============  =========  =======  ================
grpo       group_norm   sequence_mean   clip_low   0.04     no
dr_grpo    group_mean   constant        clip_low   0        no
dapo       group_norm   token_mean      0.28       0        yes
rloo       rloo         constant        clip_low   0.04     no
=========  ===========  ==============  =========  =======  ================

Dynamic sampling (DAPO) drops the groups whose rewards are all equal and samples more prompts, up to
``max_refills`` more rounds; a batch still short is filled with flat groups (advantage 0: only the KL
term moves them), and the count is logged. At the end of a run the verdicts (`rl.verdicts`) are
printed and written to the run dir.
"""

from __future__ import annotations

import dataclasses
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
from jaxllm.data.task_data import TaskData, load_task_data, task_lines
from jaxllm.errors import ConfigError, UserError
from jaxllm.model import Transformer
from jaxllm.model.decode import Sampling, token_logprobs
from jaxllm.model.scalar import ScalarModel, layout
from jaxllm.objectives.base import Objective, ObjectiveSpec, OnPolicySource, Params
from jaxllm.objectives.reward import read_stats
from jaxllm.rl import rewards as rw
from jaxllm.rl.buffer import minibatches, next_prompts
from jaxllm.rl.group import ADVANTAGES, AGGREGATIONS, flat_groups, group_advantages, group_policy_loss
from jaxllm.rl.rollout import RolloutEngine, Settings, response_logits
from jaxllm.rl.verdicts import read_rows, rl_verdicts, write_verdicts

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "rloo")
PRESETS = {
    "grpo": dict(advantage="group_norm", aggregation="sequence_mean", clip_high=None, kl_coef=0.04, dynamic_sampling=False),
    "dr_grpo": dict(advantage="group_mean", aggregation="constant", clip_high=None, kl_coef=0.0, dynamic_sampling=False),
    "dapo": dict(advantage="group_norm", aggregation="token_mean", clip_high=0.28, kl_coef=0.0, dynamic_sampling=True),
    "rloo": dict(advantage="rloo", aggregation="constant", clip_high=None, kl_coef=0.04, dynamic_sampling=False),
}


@dataclass
class RewardConfig:
    """Weights of the reward's components (0 = off); the reward is their weighted sum."""

    answer: float = option(1.0, doc="The final number equals the task's answer (1) or not (0); see docs/RLHF.md for "
                           "the extraction rule.")
    closeness: float = option(0.0, doc="Partial credit for a near answer: 1 - |got - want| / max(|want|, 1), at least 0.")
    format: float = option(0.0, doc="The response ends its turn stating its answer as '#### N', '= N' or 'answer is N' (1/0).")
    length: float = option(0.0, doc="-(response tokens) / max_new_tokens, in [-1, 0].")
    overlong: float = option(0.0, doc="DAPO's soft overlong penalty: 0 up to max_new_tokens - overlong_buffer tokens, "
                             "then down to -1 at max_new_tokens.")
    overlong_buffer: int = option(0, min=0, doc="The overlong penalty's ramp, in tokens.")
    model: float = option(0.0, doc="The reward model's score (objective.grpo.reward.model_from), normalised by its saved "
                          "statistics.")
    model_from: Optional[str] = option(None, doc="A reward model run dir (the reward stage), for the model component.")
    functions: list = option(factory=list, doc="Your own components: 'module:function' or 'module:function * weight'; "
                             "fn(prompts, responses, records) -> one float per response.")


@dataclass
class GrpoConfig:
    loss_type: str = option("grpo", choices=LOSS_TYPES, doc="The algorithm's defaults (the table in "
                            "objectives/grpo.py): grpo, dr_grpo, dapo, rloo.")
    advantage: Optional[str] = option(None, choices=ADVANTAGES, doc="group_norm (r - mean) / (std + eps), group_mean "
                                      "r - mean, rloo (leave-one-out mean); null = loss_type's.")
    aggregation: Optional[str] = option(None, choices=AGGREGATIONS, doc="sequence_mean, token_mean, constant (token sum "
                                        "/ (responses * max_new_tokens)); null = loss_type's.")
    group_size: int = option(8, min=1, doc="G: responses sampled per prompt (at least 2).")
    prompts_per_rollout: int = option(16, min=1, doc="Prompts per rollout batch: prompts_per_rollout * group_size "
                                      "responses, a multiple of train.batch_size.")
    epochs: int = option(1, min=1, doc="Passes of minibatch updates over each rollout batch (the ratio is against the "
                         "sampling policy; 1 = on-policy).")
    clip_low: float = option(0.2, min=0.0, max=1.0, doc="The ratio's lower clip: 1 - clip_low.")
    clip_high: Optional[float] = option(None, min=0.0, doc="The ratio's upper clip: 1 + clip_high; null = loss_type's "
                                        "(dapo 0.28, else clip_low).")
    kl_coef: Optional[float] = option(None, min=0.0, doc="Weight of the k3 KL to the reference in the loss (the KL "
                                      "is logged either way); null = loss_type's.")
    eps: float = option(1e-4, min=0.0, doc="Added to the group's std (group_norm).")
    dynamic_sampling: Optional[bool] = option(None, doc="Drop groups whose rewards are all equal and sample more "
                                              "prompts (DAPO); null = loss_type's.")
    max_refills: int = option(4, min=0, doc="Dynamic sampling: at most this many extra rounds per rollout batch.")
    max_new_tokens: int = option(16, min=1, doc="Response length limit in tokens.")
    temperature: float = option(1.0, min=0.0, doc="Sampling temperature (log-probs are taken at it too).")
    top_k: int = option(0, min=0, doc="Sample among the k most likely tokens (0 = all).")
    top_p: float = option(1.0, min=0.0, max=1.0, doc="Nucleus sampling mass (1 = off).")
    instruction: str = option("", doc="Appended to every question (e.g. how to state the final answer).")
    reward: RewardConfig = option(factory=RewardConfig)
    eval_prompts: int = option(128, min=0, doc="Held-out task prompts answered greedily at each evaluation: the "
                               "verifier's accuracy, the reward, the format and stop rates.")


def resolved(c: GrpoConfig) -> dict:
    """The algorithm's settings after loss_type's defaults: advantage, aggregation, clip_high, kl_coef,
    dynamic_sampling."""
    out = dict(PRESETS[c.loss_type])
    for k in out:
        if getattr(c, k) is not None:
            out[k] = getattr(c, k)
    if out["clip_high"] is None:
        out["clip_high"] = c.clip_low
    return out


def engine_settings(c: GrpoConfig, vocab_size: int) -> Settings:
    return Settings(c.temperature, vocab_size, 1.0, 1.0, "k1", 0.0, 0.0, False)


class Rewards:
    """The configured components over a rollout: ``{name: [N]}`` and their weighted sum."""

    def __init__(self, rc: RewardConfig, max_new: int):
        self.rc, self.max_new = rc, max_new
        self.weights = {k: getattr(rc, k) for k in ("answer", "closeness", "format", "length", "overlong", "model") if getattr(rc, k)}
        self.functions = {}
        for entry in rc.functions:
            spec, w = rw.parse_weighted(str(entry))
            fn = rw.import_function(spec, "objective.grpo.reward.functions")
            name = spec.rpartition(":")[2]
            self.functions[name] = fn
            self.weights[name] = w

    def __call__(self, prompts: list[str], texts: list[str], records: list[dict], lengths: np.ndarray,
                 stopped: np.ndarray, model_scores: np.ndarray | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        recs = [{**r, "_stopped": bool(s)} for r, s in zip(records, stopped)]
        comps = {"answer": np.asarray(rw.answer_reward(prompts, texts, recs), np.float64)}  # accuracy: always
        if "closeness" in self.weights:
            comps["closeness"] = np.asarray(rw.closeness_reward(prompts, texts, recs), np.float64)
        if "format" in self.weights:
            comps["format"] = np.asarray(rw.format_reward(prompts, texts, recs), np.float64)
        if "length" in self.weights:
            comps["length"] = rw.length_penalty(lengths, self.max_new)
        if "overlong" in self.weights:
            comps["overlong"] = rw.overlong_penalty(lengths, self.max_new, self.rc.overlong_buffer)
        if "model" in self.weights:
            comps["model"] = np.asarray(model_scores, np.float64)
        for name, fn in self.functions.items():
            comps[name] = rw.check_scores(name, fn, prompts, texts, recs)
        return rw.combine(comps, self.weights), comps


class GroupRollouts(OnPolicySource):
    """GRPO's batch source: groups of answers from the current policy, scored, as shuffled minibatches."""

    def __init__(self, cfg: Config, spec, data: TaskData, process_index: int = 0, process_count: int = 1):
        self.cfg, self.seed, self.data = cfg.objective.grpo, cfg.seed, data
        c, t = cfg.objective.grpo, cfg.train
        self.algo = resolved(c)
        self.g = c.group_size
        self.batch, self.local = t.batch_size, t.batch_size // process_count
        self.offset = process_index * self.local
        p = t.seq_len - c.max_new_tokens
        tokens = [data.template.prompt(q.conversation) for q in data.train]
        self.fits = [i for i, q in enumerate(tokens) if len(q) <= p]
        if not self.fits:
            raise UserError(f"no task prompt fits in train.seq_len - objective.grpo.max_new_tokens = {p} tokens "
                            f"(shortest: {min(len(q) for q in tokens)}); raise train.seq_len.")
        self.skipped = len(tokens) - len(self.fits)
        self.first_skipped = next((data.train[i].record["question"][:60] for i, q in enumerate(tokens) if len(q) > p), "")
        self.prompt_tokens = tokens
        self.rewards = Rewards(c.reward, c.max_new_tokens)
        self.engine = RolloutEngine(spec, p, c.max_new_tokens, Sampling(c.temperature, c.top_k, c.top_p, c.max_new_tokens),
                                    engine_settings(c, data.tokenizer.vocab_size), data.template, critic=False,
                                    reward_model=bool(c.reward.model))
        self.norm = (0.0, 1.0)
        self.rollouts, self.rounds, self.prompt_epoch, self.prompt_index = 0, 0, 0, 0
        self.buffer: list[dict] = []
        self.params = None
        self.stats: list[dict] = []
        self.timing = {"generate_s": 0.0, "rollout_sample_s": 0.0, "rollout_score_s": 0.0, "rollout_reward_s": 0.0}

    def attach(self, layout, frozen: dict) -> str:
        self.engine.attach(layout, frozen["reference"], frozen.get("reward_model"))
        a = self.algo
        lines = [f"{self.cfg.loss_type}: advantage {a['advantage']}, aggregation {a['aggregation']}, clip "
                 f"[{1 - self.cfg.clip_low:g}, {1 + a['clip_high']:g}], kl_coef {a['kl_coef']:g}"
                 + (", dynamic sampling" if a["dynamic_sampling"] else "")
                 + f"; {self.cfg.prompts_per_rollout} prompts x {self.g} responses per rollout",
                 "reward: " + " + ".join(f"{w:g} {k}" for k, w in self.rewards.weights.items())]
        if self.skipped:
            lines.append(f"{self.skipped} task prompts longer than {self.engine.p} tokens skipped (e.g. "
                         f"{self.first_skipped!r})")
        if self.cfg.reward.model:
            stats = read_stats(self.cfg.reward.model_from)
            if stats:
                self.norm = (stats["mean"], stats["std"])
        return "; ".join(lines)

    def set_params(self, params) -> None:
        self.params = params

    def _next_prompts(self, n: int) -> list[int]:
        ids, self.prompt_epoch, self.prompt_index = next_prompts(self.fits, n, [self.seed, 19], self.prompt_epoch,
                                                                 self.prompt_index)
        return ids

    def _round(self) -> dict:
        """One generation round: prompts_per_rollout prompts x G answers, scored."""
        t0 = time.perf_counter()
        ids = np.repeat(self._next_prompts(self.cfg.prompts_per_rollout), self.g)
        key = jax.random.fold_in(jax.random.PRNGKey(self.seed + 211), self.rounds)
        self.rounds += 1
        ro = self.engine.run({"policy": self.params}, [self.prompt_tokens[i] for i in ids], key)
        t1 = time.perf_counter()
        self.timing["rollout_score_s"] += self.engine.last_score_s
        arr, sc = ro.arrays, ro.scored
        lengths = arr["resp_mask"].sum(1)
        model = (sc["raw_score"] - self.norm[0]) / self.norm[1] if self.cfg.reward.model else None
        prompts = [self.data.train[i].conversation[-1].content for i in ids]
        total, comps = self.rewards(prompts, [x.strip() for x in ro.texts], [self.data.train[i].record for i in ids],
                                    lengths, arr["has_eos"], model)
        self.timing["rollout_reward_s"] += time.perf_counter() - t1
        self.timing["rollout_sample_s"] += t1 - t0 - self.engine.last_score_s
        self.timing["generate_s"] += time.perf_counter() - t0  # the whole rollout (the loop's train_s excludes it)
        return {"ids": ids, "reward": total, "comps": comps, "lengths": lengths, "arrays": arr, "scored": sc,
                "texts": ro.texts}

    def _rollout(self) -> None:
        rounds = [self._round()]
        flat = np.asarray(flat_groups(rounds[0]["reward"], self.g))
        keep = [(0, gi) for gi in range(len(flat)) if not flat[gi]]
        n_groups = self.cfg.prompts_per_rollout
        refills = 0
        if self.algo["dynamic_sampling"]:
            while len(keep) < n_groups and refills < self.cfg.max_refills:
                rounds.append(self._round())
                refills += 1
                more = np.asarray(flat_groups(rounds[-1]["reward"], self.g))
                keep += [(len(rounds) - 1, gi) for gi in range(len(more)) if not more[gi]]
            keep = keep[:n_groups]
            filled = n_groups - len(keep)
            kept = set(keep)
            keep += [(0, gi) for gi in range(n_groups) if (0, gi) not in kept][:filled]
        else:
            keep, filled = [(0, gi) for gi in range(n_groups)], 0
        g = self.g

        def pick(get):  # the kept groups' rows, in order
            return np.concatenate([get(rounds[ri])[gi * g:(gi + 1) * g] for ri, gi in keep])

        arr = {k: pick(lambda r, k=k: r["arrays"][k]) for k in ("inputs", "mask", "resp_mask", "has_eos")}
        sc = {k: pick(lambda r, k=k: r["scored"][k]) for k in ("old_logp", "ref_logp", "entropy")}
        reward = pick(lambda r: r["reward"])
        adv = np.asarray(group_advantages(jnp.asarray(reward, jnp.float32), self.g, self.algo["advantage"],
                                          self.cfg.eps))
        m = arr["resp_mask"]
        first = rounds[0]
        stat = {"reward": float(first["reward"].mean()), "zero_var_groups": float(flat.mean()),
                "accuracy": float(first["comps"]["answer"].mean()),
                "response_len": float(first["lengths"].mean()),
                "len_reward_corr": rw.pearson(first["lengths"], first["reward"]),
                "eos_frac": float(first["arrays"]["has_eos"].mean()),
                "entropy": float((sc["entropy"] * m).sum() / max(m.sum(), 1)),
                "kl": float(((sc["old_logp"] - sc["ref_logp"]) * m).sum(1).mean()),
                "adv_abs": float(np.abs(adv).mean())}
        stat.update({f"reward_{k}": float(v.mean()) for k, v in first["comps"].items()})
        if self.algo["dynamic_sampling"]:
            stat.update({"refills": float(refills), "flat_filled": float(filled / n_groups)})
        self.stats.append(stat)
        batch_rows = {"inputs": arr["inputs"], "mask": arr["mask"], "resp_mask": m, "old_logp": sc["old_logp"],
                      "ref_logp": sc["ref_logp"], "advantages": adv.astype(np.float32)}
        rng = np.random.default_rng([self.seed, 31, self.rollouts])
        self.buffer += minibatches(batch_rows, self.batch, self.cfg.epochs, rng, self.offset, self.local)
        self.rollouts += 1

    def __next__(self) -> dict[str, np.ndarray]:
        if not self.buffer:
            self._rollout()
        return self.buffer.pop(0)

    def drop_timing(self) -> None:
        self.timing = {k: 0.0 for k in self.timing}

    def metrics(self) -> dict:
        """Means over the rollout batches made since the last call, and the time spent making them."""
        out = {k: float(np.mean([s[k] for s in self.stats if k in s])) for k in {k for s in self.stats for k in s}}
        out.update(self.timing)
        self.stats, self.timing = [], {k: 0.0 for k in self.timing}
        return out

    def state(self) -> dict:
        return {"rollouts": self.rollouts, "rounds": self.rounds, "prompt_epoch": self.prompt_epoch,
                "prompt_index": self.prompt_index}

    def restore(self, state: dict) -> None:
        self.rollouts, self.rounds = state["rollouts"], state["rounds"]
        self.prompt_epoch, self.prompt_index = state["prompt_epoch"], state["prompt_index"]
        self.buffer = []


def grpo_loss(model: Transformer, t: int, s: Settings, clip_low: float, clip_high: float, kl_coef: float,
              aggregation: str):
    """The objective interface's loss over a minibatch of rollout rows (`rl.group.group_policy_loss`)."""

    def loss(params, batch, frozen=None, rng=None):
        del frozen, rng  # no dropout: the ratio must be 1 where the policy has not moved
        positions, segments = layout(batch["mask"])
        logits = model.apply({"params": params}, batch["inputs"], positions, segments)
        targets = batch["inputs"][:, batch["inputs"].shape[1] - t:]
        logp = token_logprobs(response_logits(logits, t), targets, s.vocab_size, s.temperature)
        return group_policy_loss(logp, batch["old_logp"], batch["ref_logp"], batch["advantages"], batch["resp_mask"],
                                 clip_low, clip_high, kl_coef, aggregation)

    return loss


def evaluate_tasks(engine: RolloutEngine, params, prompts, rewards: Rewards | None = None, key_seed: int = 7) -> dict:
    """Greedy answers to held-out task prompts: the verifier's ``accuracy`` (and per operation when the
    records have ``op``), ``format``, ``stop``, ``response_len`` and (with ``rewards``) the training
    ``reward``. Prompts longer than the engine's prompt length are left out."""
    tpl = engine.template
    prompts = [p for p in prompts if len(tpl.prompt(p.conversation)) <= engine.p]
    if not prompts:
        return {}
    ro = engine.run({"policy": params}, [tpl.prompt(p.conversation) for p in prompts], jax.random.PRNGKey(key_seed),
                    dataclasses.replace(engine.sampling, temperature=0.0))
    texts = [x.strip() for x in ro.texts]
    stopped = ro.arrays["has_eos"]
    correct = np.array([rw.answer_correct(x, p.record["answer"]) for x, p in zip(texts, prompts)], np.float64)
    out = {"accuracy": float(correct.mean()), "stop": float(stopped.mean()),
           "format": float(np.mean([s and rw.strict_answer(x) for x, s in zip(texts, stopped)])),
           "response_len": float(ro.arrays["resp_mask"].sum(1).mean())}
    ops = sorted({p.record.get("op") for p in prompts} - {None})
    for op in ops:
        sel = np.array([p.record.get("op") == op for p in prompts])
        out[f"accuracy_{ {'+': 'add', '-': 'sub', '*': 'mul'}.get(op, op) }"] = float(correct[sel].mean())
    if rewards is not None and "model" not in rewards.weights:
        total, _ = rewards([p.conversation[-1].content for p in prompts], texts, [p.record for p in prompts],
                           ro.arrays["resp_mask"].sum(1), stopped, None)
        out["reward"] = float(total.mean())
    return out


def grpo_verdicts(rows: list[dict]):
    return rl_verdicts(rows, "reward", "eval_accuracy", "held-out verifier", flat="zero_var_groups")


def build_grpo(cfg: Config, model: Transformer, data: TaskData, process_index: int = 0, process_count: int = 1) -> Objective:
    c, t = cfg.objective.grpo, cfg.train
    source = GroupRollouts(cfg, model.spec, data, process_index, process_count)
    a = source.algo
    frozen = {"reference": Params(model, cfg.init_from)}  # from scratch (tests): a copy of the initial policy
    if c.reward.model:
        frozen["reward_model"] = Params(ScalarModel(model.spec), c.reward.model_from)

    def evaluate(params, frozen_params):  # {} without held-out prompts (eval_prompts: 0)
        if not c.eval_prompts or not data.eval:
            return {}
        return {f"eval_{k}": v for k, v in evaluate_tasks(source.engine, params, data.eval[:c.eval_prompts],
                                                              source.rewards).items()}

    def finish(params, run_dir, layout_):
        if jax.process_index() != 0:
            return None
        return write_verdicts(run_dir, grpo_verdicts(read_rows(run_dir)))

    tpl = data.template
    loss = grpo_loss(model, c.max_new_tokens, source.engine.settings, c.clip_low, a["clip_high"], a["kl_coef"],
                     a["aggregation"])
    return Objective("grpo", loss, source, [], tokens_per_step=t.batch_size * t.seq_len, frozen=frozen,
                     prompt=lambda text: tpl.prompt([Message("user", text)]), stop_ids=tpl.stop_ids,
                     evaluate=evaluate, finish=finish,
                     progress_metrics=("reward", "accuracy", "zero_var_groups", "kl"))


def load(cfg: Config, run_dir: Path | None) -> TaskData:
    return load_task_data(cfg, run_dir, cfg.objective.grpo.eval_prompts, cfg.objective.grpo.instruction)


def validate(cfg: Config) -> None:
    c, t = cfg.objective.grpo, cfg.train
    if cfg.data.source not in ("builtin", "jsonl"):
        raise ConfigError(f"data.source = {cfg.data.source!r} with objective.name = 'grpo': it reads task records from "
                          "data.source=builtin (the arithmetic task) or data.source=jsonl (question/answer records, "
                          "e.g. GSM8K).")
    if c.group_size < 2:
        raise ConfigError(f"objective.grpo.group_size = {c.group_size}: a group baseline needs at least 2 responses per "
                          "prompt (the advantage of a lone response is 0); set it to 2 or more (8 is usual).")
    n = c.prompts_per_rollout * c.group_size
    if n % t.batch_size:
        raise ConfigError(f"objective.grpo.prompts_per_rollout x group_size = {c.prompts_per_rollout} x {c.group_size} "
                          f"= {n} responses per rollout is not a multiple of train.batch_size = {t.batch_size} (the "
                          "minibatch); change one of them.")
    if c.max_new_tokens >= t.seq_len:
        raise ConfigError(f"objective.grpo.max_new_tokens = {c.max_new_tokens} leaves no room for the prompt in "
                          f"train.seq_len = {t.seq_len}; raise train.seq_len or lower max_new_tokens.")
    r = c.reward
    if r.model and not r.model_from:
        raise ConfigError("objective.grpo.reward.model is set but objective.grpo.reward.model_from is not: give the "
                          "reward model's run dir.")
    if r.overlong and not r.overlong_buffer:
        raise ConfigError("objective.grpo.reward.overlong is set but overlong_buffer = 0: give the penalty's ramp in "
                          "tokens (DAPO: a quarter of max_new_tokens, say).")
    if r.overlong_buffer > c.max_new_tokens:
        raise ConfigError(f"objective.grpo.reward.overlong_buffer = {r.overlong_buffer} exceeds max_new_tokens = "
                          f"{c.max_new_tokens}.")
    if not any([r.answer, r.closeness, r.format, r.length, r.overlong, r.model, r.functions]):
        raise ConfigError("objective.grpo.reward: every component's weight is 0; give at least one (answer: 1.0).")


SPEC = ObjectiveSpec("grpo", load=load, build=build_grpo, config=GrpoConfig, validate=validate,
                     report=lambda stats: [*data_lines(stats), *task_lines(stats)],
                     doc="RL with verifiable rewards and group baselines (GRPO, Dr. GRPO, DAPO, RLOO): the policy "
                         "from init_from, no critic")

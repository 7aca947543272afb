"""PPO (RLHF step 3) as an objective of the one trainer loop.

Trainable: ``{"policy": Transformer, "critic": ScalarModel}`` (`ActorCritic`), the
policy from ``init_from`` (the SFT run), the critic from the reward model run
(``objective.ppo.reward_from``). Frozen, loaded onto the same mesh: the
reference policy (``init_from`` again) and the reward model.

The batch source (`Rollouts`) is handed the current parameters before each
batch. When its buffer is empty it samples ``rollout_prompts`` responses with
the KV-cache generator, scores them (`rollout.make_scorer`), computes
advantages, adapts the KL coefficient, and then yields ``ppo_epochs`` passes of
shuffled minibatches of ``train.batch_size`` sequences to the same jitted step
as every other objective. ``train.grad_accum`` splits each minibatch as usual.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxllm.config.schema import Config
from jaxllm.data.chat import ChatTemplate, Conversation, Message
from jaxllm.data.chat_sources import BadChat, parse_hh
from jaxllm.data.pref_world import KINDS, Prompt, balanced, builtin_prompts, judge
from jaxllm.data.prepare import get_tokenizer
from jaxllm.data.sources import read_records
from jaxllm.data.tokenizer import Tokenizer
from jaxllm.errors import UserError
from jaxllm.model import Transformer
from jaxllm.model.decode import Sampling, generate
from jaxllm.model.flops import train_flops_per_token
from jaxllm.model.scalar import ActorCritic, ScalarModel
from jaxllm.objectives import rl_math
from jaxllm.objectives.base import Objective
from jaxllm.objectives.reward import read_stats
from jaxllm.objectives.rollout import Settings, advantages_jit, make_scorer, ppo_loss, rollout_arrays
from jaxllm.parallel.sharding import batch_divisor, to_host
from jaxllm.train.checkpoint import load_params
from jaxllm.train.state import abstract_params


@dataclasses.dataclass(frozen=True)
class RlPrompt:
    conversation: Conversation
    item: Prompt | None = None   # built-in prompts carry what the judge needs


@dataclasses.dataclass
class PpoData:
    tokenizer: Tokenizer
    template: ChatTemplate
    train: list[RlPrompt]
    eval: list[RlPrompt]
    stats: dict


def _record_to_prompt(rec: dict) -> list[RlPrompt]:
    if isinstance(rec.get("prompt"), str):
        return [RlPrompt([Message("user", rec["prompt"])])]
    if isinstance(rec.get("chosen"), str):
        conv = parse_hh(rec["chosen"])
        return [RlPrompt(conv[:-1] if conv[-1].role == "assistant" else conv)]
    raise BadChat(f"keys {sorted(rec)}: expected 'prompt' (or an HH-RLHF 'chosen' dialogue)")


def read_prompt_files(paths: list[str], on_error: str) -> tuple[list[RlPrompt], dict]:
    """``{"prompt": str}`` records, or HH-RLHF dialogues (``chosen``: the history before the last reply)."""
    return read_records(paths, on_error, _record_to_prompt, "prompts")


def load_ppo_data(cfg: Config, run_dir: Path | None) -> PpoData:
    d = cfg.data
    if d.source == "builtin":
        split = builtin_prompts(d.builtin_seed, sft_heldout=d.builtin_heldout)
        per_kind = min(sum(p.kind == k for p in split.train) for k in KINDS)  # every kind equally often
        train = [RlPrompt([Message("user", p.text)], p) for p in balanced(split.train, per_kind * len(KINDS), d.builtin_seed)]
        held = [RlPrompt([Message("user", p.text)], p) for p in balanced(split.heldout, cfg.objective.ppo.eval_prompts, d.builtin_seed)]
        report = {}
    else:
        prompts, report = read_prompt_files(d.paths, d.on_error)
        n_eval = min(cfg.objective.ppo.eval_prompts, len(prompts) // 5)
        train, held = prompts[n_eval:], prompts[:n_eval]
    tok = get_tokenizer(cfg, run_dir, [m.content for p in train for m in p.conversation])
    return PpoData(tok, ChatTemplate(tok), train, held, {**report, "prompts": {"train": len(train), "eval": len(held)}})


def _reward_fn(spec: str):
    mod, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as e:
        raise UserError(f"objective.ppo.reward_fn = {spec!r}: cannot import it ({e}); give 'module:function'.") from e


class Rollouts:
    """PPO's batch source: rollouts from the current policy, served as shuffled minibatches."""

    def __init__(self, cfg: Config, spec, data: PpoData, process_index: int = 0, process_count: int = 1):
        self.cfg, self.pc, self.spec, self.data = cfg.objective.ppo, cfg, spec, data
        t = cfg.train
        self.batch, self.t = t.batch_size, self.cfg.max_new_tokens
        self.p = t.seq_len - self.t
        self.local = t.batch_size // process_count
        self.offset = process_index * self.local
        tok = data.tokenizer
        self.stop_ids = (*data.template.stop_ids,)
        self.settings = Settings(self.cfg.temperature, tok.vocab_size, self.cfg.gamma, self.cfg.lam,
                                 self.cfg.kl_estimator, self.cfg.missing_eos_penalty, self.cfg.score_clip,
                                 self.cfg.whiten_advantages)
        self.sampling = Sampling(self.cfg.temperature, self.cfg.top_k, self.cfg.top_p, self.t)
        tokens = [data.template.prompt(p.conversation) for p in data.train]
        self.fits = [i for i, t in enumerate(tokens) if len(t) <= self.p]  # longer prompts would be cut: skipped
        if not self.fits:
            raise UserError(f"no prompt fits in train.seq_len - objective.ppo.max_new_tokens = {self.p} tokens "
                            f"(shortest: {min(len(t) for t in tokens)}); raise train.seq_len.")
        self.skipped_prompts = len(tokens) - len(self.fits)
        self.prompt_tokens = tokens
        self.reward_fn = _reward_fn(self.cfg.reward_fn) if self.cfg.reward_fn else None
        self.scorer = make_scorer(spec, self.t, self.settings, with_reward_model=self.reward_fn is None)
        self.beta = self.cfg.kl_coef
        self.rollouts, self.prompt_epoch, self.prompt_index = 0, 0, 0
        self.buffer: list[dict] = []
        self.params = self.ref = self.rm = None
        self.norm = (0.0, 1.0)
        self.last: dict = {}
        self.generate_s = 0.0
        self.ptx = None

    # -- set-up by the loop ------------------------------------------------------------------------------------------
    def attach(self, mesh, rules, params) -> str:
        """Load the frozen reference and reward model onto the mesh (fresh start and resume alike)."""
        self.mesh, self.rules = mesh, rules
        init_from = self.pc.init_from
        if init_from:
            self.ref = load_params(init_from, abstract_params(Transformer(self.spec), mesh, rules))
        else:  # from scratch (tests): the reference is the initial policy
            self.ref = jax.tree.map(jnp.copy, params["policy"])
        lines = [f"reference policy: {init_from or 'the initial policy'}"]
        if self.skipped_prompts:
            lines.append(f"{self.skipped_prompts} prompts longer than {self.p} tokens skipped")
        if self.reward_fn is None:
            self.rm = load_params(self.cfg.reward_from, abstract_params(ScalarModel(self.spec), mesh, rules))
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

    # -- the iterator ------------------------------------------------------------------------------------------------
    def _next_prompts(self, n: int) -> list[int]:
        out = []
        while len(out) < n:
            order = np.random.default_rng([self.pc.seed, 17, self.prompt_epoch]).permutation(len(self.fits))
            take = order[self.prompt_index:self.prompt_index + n - len(out)]
            out += [self.fits[i] for i in take]
            self.prompt_index += len(take)
            if self.prompt_index >= len(order):
                self.prompt_epoch, self.prompt_index = self.prompt_epoch + 1, 0
        return out

    def _rollout(self) -> None:
        t0 = time.perf_counter()
        ids = self._next_prompts(self.cfg.rollout_prompts)
        key = jax.random.fold_in(jax.random.PRNGKey(self.pc.seed + 101), self.rollouts)
        prompts = [self.prompt_tokens[i] for i in ids]
        tok = self.data.tokenizer
        gen = generate(Transformer(self.spec), self.params["policy"], prompts, key, self.sampling,
                       stop_ids=self.stop_ids, pad_id=tok.pad_id, batch_multiple=batch_divisor(self.mesh, self.rules),
                       vocab_size=tok.vocab_size)
        responses = [g["tokens"] for g in gen]
        arr = rollout_arrays(prompts, responses, self.p, self.t, self.stop_ids, tok.pad_id)
        scored = to_host(self.scorer(self.params, self.ref, self.rm, arr["inputs"], arr["mask"]))
        texts = [self.data.template.reply_text(r) for r in responses]
        raw = scored["raw_score"]
        if self.reward_fn is not None:
            raw = np.asarray(self.reward_fn([tok.decode(p) for p in prompts], texts), np.float32)
        out = to_host(advantages_jit(raw, arr["has_eos"], scored["old_logp"], scored["ref_logp"],
                                            scored["old_values"], arr["resp_mask"], self.beta, *self.norm,
                                            s=self.settings))
        m = arr["resp_mask"]
        kl_mean = float(np.mean(out["kl"]))
        self.last = {"rm_score": float(np.mean(raw)), "score": float(np.mean(out["score"])), "kl": kl_mean,
                     "entropy": float((scored["entropy"] * m).sum() / max(m.sum(), 1)),
                     "response_len": float(m.sum(1).mean()), "eos_frac": float(arr["has_eos"].mean()),
                     "beta": float(self.beta)}
        items = [self.data.train[i].item for i in ids]
        if all(it is not None for it in items):
            self.last["judge"] = float(np.mean([judge(it, x, bool(e))["score"]
                                                for it, x, e in zip(items, texts, arr["has_eos"])]))
        if self.cfg.kl_target is not None:
            self.beta = rl_math.adaptive_kl_beta(self.beta, kl_mean, len(ids), self.cfg.kl_target, self.cfg.kl_horizon)
        rows = {"inputs": arr["inputs"], "mask": arr["mask"], "resp_mask": m, "old_logp": scored["old_logp"],
                "old_values": scored["old_values"], "advantages": out["advantages"], "returns": out["returns"]}
        rng = np.random.default_rng([self.pc.seed, 29, self.rollouts])
        for _ in range(self.cfg.ppo_epochs):
            order = rng.permutation(len(ids))
            for i in range(0, len(ids), self.batch):
                sel = order[i:i + self.batch][self.offset:self.offset + self.local]
                self.buffer.append({k: np.asarray(v[sel]) for k, v in rows.items()})
        self.rollouts += 1
        self.generate_s += time.perf_counter() - t0

    def __next__(self) -> dict[str, np.ndarray]:
        if not self.buffer:
            self._rollout()
        batch = self.buffer.pop(0)
        if self.ptx is not None:
            batch.update({f"ptx_{k}": v for k, v in next(self.ptx).items()})
        return batch

    def __iter__(self):
        return self

    def log_metrics(self) -> dict:
        out = {**self.last, "generate_s": self.generate_s}
        self.generate_s = 0.0
        return out

    def state(self) -> dict:
        """A resumed run starts a fresh rollout (with the restored policy) after the last finished one."""
        return {"rollouts": self.rollouts, "beta": self.beta, "prompt_epoch": self.prompt_epoch,
                "prompt_index": self.prompt_index}

    def restore(self, state: dict) -> None:
        self.rollouts, self.beta = state["rollouts"], state["beta"]
        self.prompt_epoch, self.prompt_index = state["prompt_epoch"], state["prompt_index"]
        self.buffer = []


def evaluate_policy(source: Rollouts, params, prompts: list[RlPrompt], key_seed: int = 7) -> dict[str, float]:
    """Held-out prompts: greedy answers (judge, reward model score, stop rate), plus KL(policy || reference)
    estimated from responses sampled at the rollout temperature (mean per-response sum of log pi - log ref)."""
    if not prompts:
        return {}
    tok, tpl = source.data.tokenizer, source.data.template
    prompts = [p for p in prompts if len(tpl.prompt(p.conversation)) <= source.p]
    if not prompts:
        return {}
    toks = [tpl.prompt(p.conversation) for p in prompts]
    div = batch_divisor(source.mesh, source.rules)
    out = {}
    for name, sampling in (("greedy", dataclasses.replace(source.sampling, temperature=0.0)), ("sampled", source.sampling)):
        gen = generate(Transformer(source.spec), params["policy"], toks, jax.random.PRNGKey(key_seed), sampling,
                       stop_ids=source.stop_ids, pad_id=tok.pad_id, batch_multiple=div, vocab_size=tok.vocab_size)
        resp = [g["tokens"] for g in gen]
        arr = rollout_arrays(toks, resp, source.p, source.t, source.stop_ids, tok.pad_id)
        n = len(toks)
        pad = (-n) % div
        inputs = np.concatenate([arr["inputs"], arr["inputs"][:1].repeat(pad, 0)])
        mask = np.concatenate([arr["mask"], arr["mask"][:1].repeat(pad, 0)])
        scored = to_host(source.scorer(params, source.ref, source.rm, inputs, mask))
        m = arr["resp_mask"]
        if name == "sampled":
            out["eval_kl"] = float(((scored["old_logp"][:n] - scored["ref_logp"][:n]) * m).sum(1).mean())
            continue
        texts = [tpl.reply_text(r) for r in resp]
        if source.reward_fn is None:
            out["eval_rm_score"] = float(np.mean(scored["raw_score"][:n]))
        out["eval_stop"] = float(arr["has_eos"].mean())
        out["eval_response_len"] = float(m.sum(1).mean())
        if all(p.item is not None for p in prompts):
            js = [judge(p.item, x, bool(e)) for p, x, e in zip(prompts, texts, arr["has_eos"])]
            out["eval_judge"] = float(np.mean([j["score"] for j in js]))
    return out


def build_ppo(cfg: Config, model: ActorCritic, data: PpoData, process_index: int = 0, process_count: int = 1) -> Objective:
    pc, t = cfg.objective.ppo, cfg.train
    source = Rollouts(cfg, model.spec, data, process_index, process_count)
    if pc.ptx_coef:
        from jaxllm.data.packing import BatchIterator
        from jaxllm.data.prepare import tokenize
        from jaxllm.data.sources import load_documents
        docs, _ = load_documents(dataclasses.replace(cfg.data, source="builtin"))
        source.ptx = BatchIterator(tokenize(data.tokenizer, docs), t.seq_len, t.batch_size, seed=cfg.seed,
                                   process_index=process_index, process_count=process_count)

    def init_params(fresh, mesh, rules):
        out = dict(fresh)
        if cfg.init_from:
            out["policy"] = load_params(cfg.init_from, abstract_params(Transformer(model.spec), mesh, rules))
        if pc.reward_from:
            out["critic"] = load_params(pc.reward_from, abstract_params(ScalarModel(model.spec), mesh, rules))
        return out

    loss = ppo_loss(model, source.t, source.settings, pc.clip, pc.value_clip, pc.vf_coef, pc.ptx_coef)
    tpl = data.template
    return Objective("ppo", loss, source, [], tokens_per_step=t.batch_size * t.seq_len,
                     prompt=lambda text: tpl.prompt([Message("user", text)]), stop_ids=tpl.stop_ids,
                     init_params=init_params, evaluate=lambda params: evaluate_policy(source, params, data.eval),
                     sample_params=lambda params: params["policy"],
                     flops_per_token=functools.partial(train_flops_per_token, trunks=2))  # policy + critic (PPO-ptx
                     # rows, when on, are not counted)

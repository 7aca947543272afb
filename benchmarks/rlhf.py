"""Time of one PPO iteration split into generation, scoring passes, advantages and optimisation.

    python benchmarks/rlhf.py --preset small --prompts 64 --prompt 96 --new 32 --batch 16 --epochs 2
    python benchmarks/rlhf.py --preset gpt2-124m --prompts 256 --prompt 128 --new 128 --batch 32   (a GPU)

One iteration is what `jaxllm train` with the PPO objective does per rollout (objectives/ppo.py over rl/): sample
``--new`` tokens for each of ``--prompts`` prompts with the KV-cache decoder (temperature 1, every sequence
runs to the end), score the rollout with the policy (old log-probs), the frozen reference, the critic
(values) and the reward model, compute advantages, then ``--epochs`` passes of PPO steps over minibatches
of ``--batch``. Random weights and prompts (the split does not depend on them). Each scoring pass is timed
alone here; the trainer runs the four in one jitted call (the "fused scoring" row). Every part is compiled
before timing; the figures are medians of ``--repeats`` iterations.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxllm.config import load_config  # noqa: E402
from jaxllm.model import Transformer, param_count, resolve_spec  # noqa: E402
from jaxllm.model.decode import Sampling, decoder, left_pad  # noqa: E402
from jaxllm.model.scalar import ActorCritic, ScalarModel  # noqa: E402
from jaxllm.model.scalar import layout, sequence_scores  # noqa: E402
from jaxllm.objectives.ppo import ppo_loss  # noqa: E402
from jaxllm.rl.advantages import gae_advantages_jit as advantages_jit  # noqa: E402
from jaxllm.rl.rollout import Settings, make_scorer, policy_logprobs, response_logits, rollout_arrays  # noqa: E402
from jaxllm.parallel.mesh import make_mesh  # noqa: E402
from jaxllm.parallel.sharding import global_batch  # noqa: E402
from jaxllm.train.optimizer import make_optimizer  # noqa: E402
from jaxllm.train.state import sharded_init  # noqa: E402
from jaxllm.parallel.layout import mesh_context  # noqa: E402
from jaxllm.train.step import jit_train_step, make_train_step  # noqa: E402


def timed(fn, *args, **kw):
    t = time.perf_counter()
    out = jax.block_until_ready(fn(*args, **kw))
    return out, time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="small")
    for k, v in [("prompts", 64), ("prompt", 96), ("new", 32), ("batch", 16), ("epochs", 2), ("repeats", 3)]:
        p.add_argument(f"--{k}", type=int, default=v)
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. model.dtype=bfloat16 mesh.fsdp=-1")
    a = p.parse_args()
    seq = a.prompt + a.new
    cfg = load_config(ROOT / "configs" / "model" / f"{a.preset}.yaml",
                      [f"model.max_seq_len={seq}", f"train.seq_len={seq}", f"train.batch_size={a.batch}",
                       "optimizer.warmup_steps=0", *a.overrides])
    spec = resolve_spec(cfg.model, tokenizer_vocab=cfg.model.vocab_size or 2048)
    mesh, rules = make_mesh(cfg.mesh), cfg.mesh.rules
    settings = Settings(1.0, spec.vocab_size, 1.0, 0.95, "k1", 0.0, 5.0, True)
    model = ActorCritic(spec)
    tx, schedule = make_optimizer(cfg.optimizer, 1000)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(4, spec.vocab_size, n).tolist() for n in rng.integers(a.prompt // 2, a.prompt + 1, a.prompts)]
    times: dict[str, list[float]] = {}
    with mesh_context(mesh, rules):
        init, shardings, _ = sharded_init(model, tx, seq, mesh, rules)
        state = init(jax.random.PRNGKey(0))
        with nn.logical_axis_rules(()):
            ref = jax.tree.map(jnp.copy, state.params["policy"])
            rm = jax.tree.map(jnp.copy, state.params["critic"])
        gen = decoder(Transformer(spec), Sampling(1.0, 0, 1.0, a.new), stop_ids=(), vocab_size=spec.vocab_size)
        toks, lens = left_pad(prompts, length=a.prompt)
        lm, critic = Transformer(spec), ScalarModel(spec)
        passes = {
            "policy log-probs": jax.jit(lambda pp, x, m: policy_logprobs(lm, pp["policy"], x, m, a.new, settings)[0]),
            "reference log-probs": jax.jit(lambda pp, x, m: policy_logprobs(lm, ref, x, m, a.new, settings)[0]),
            "critic values": jax.jit(lambda pp, x, m: response_logits(
                critic.apply({"params": pp["critic"]}, x, *layout(m))[..., None], a.new)[..., 0]),
            "reward model score": jax.jit(lambda pp, x, m: sequence_scores(critic, rm, x, m)),
        }
        fused = make_scorer(spec, a.new, settings, with_reward_model=True)
        step = None
        for r in range(a.repeats + 1):  # iteration 0 compiles
            out, t = timed(gen, state.params["policy"], toks, lens, jax.random.PRNGKey(r))
            times.setdefault("generation", []).append(t)
            resp = np.asarray(out.tokens).tolist()
            arr = rollout_arrays(prompts, resp, a.prompt, a.new, ())
            x, m = jnp.asarray(arr["inputs"]), jnp.asarray(arr["mask"])
            for name, fn in passes.items():
                times.setdefault(name, []).append(timed(fn, state.params, x, m)[1])
            scored, t = timed(fused, state.params, ref, rm, x, m)
            times.setdefault("fused scoring (as the trainer runs it)", []).append(t)
            adv, t = timed(advantages_jit, scored["raw_score"], jnp.asarray(arr["has_eos"]), scored["old_logp"],
                           scored["ref_logp"], scored["old_values"], jnp.asarray(arr["resp_mask"]), 0.05, 0.0, 1.0,
                           s=settings)
            times.setdefault("advantages (GAE, whitening)", []).append(t)
            rows = {"inputs": arr["inputs"], "mask": arr["mask"], "resp_mask": arr["resp_mask"],
                    "old_logp": np.asarray(scored["old_logp"]), "old_values": np.asarray(scored["old_values"]),
                    "advantages": np.asarray(adv["advantages"]), "returns": np.asarray(adv["returns"])}
            mbs = [{k: v[i:i + a.batch] for k, v in rows.items()} for i in range(0, a.prompts, a.batch)] * a.epochs
            if step is None:
                loss = ppo_loss(model, a.new, settings, 0.2, 0.2, 0.1)
                step = jit_train_step(make_train_step(loss, tx, schedule), mesh, rules, shardings, mbs[0])
            t0 = time.perf_counter()
            for mb in mbs:
                state, metrics = step(state, global_batch(mb, mesh, rules))
            jax.block_until_ready(metrics)
            times.setdefault(f"optimisation ({len(mbs)} PPO steps)", []).append(time.perf_counter() - t0)
    med = {k: statistics.median(v[1:]) for k, v in times.items()}
    total = sum(v for k, v in med.items() if not k.startswith("fused")) - sum(
        v for k, v in med.items() if k in passes) + med["fused scoring (as the trainer runs it)"]
    print(f"jax {jax.__version__}, {jax.device_count()} x {jax.devices()[0].device_kind}; preset {a.preset} "
          f"({param_count(state.params['policy']) / 1e6:.1f}M policy, {spec.dtype}); {a.prompts} prompts x "
          f"(prompt {a.prompt} + {a.new} new), minibatch {a.batch}, {a.epochs} epochs; median of {a.repeats}")
    print(f"{'part':<42}{'ms':>10}{'share':>8}")
    for k, v in med.items():
        share = "" if k in passes else f"{v / total:>8.1%}"
        print(f"{('  ' if k in passes else '') + k:<42}{v * 1e3:>10.1f}{share}")
    print(f"{'iteration (rows with a share)':<42}{total * 1e3:>10.1f}  = {a.prompts * a.new / total:,.0f} response tokens/s")


if __name__ == "__main__":
    main()

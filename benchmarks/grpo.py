"""Time of one GRPO iteration split into generation, scoring (the reward), the log-prob pass and optimisation.

    python benchmarks/grpo.py                                     # the demo preset (configs/grpo/demo.yaml)
    python benchmarks/grpo.py --config grpo/demo model.n_layers=12 model.d_model=768 model.n_heads=12 \
        model.max_seq_len=1024 train.seq_len=640 objective.grpo.max_new_tokens=128   (gpt2-124m sized; a GPU)

One iteration is exactly what `jaxllm train` runs per rollout batch (objectives/grpo.py): the trainer's own
batch source samples ``group_size`` answers to each of ``prompts_per_rollout`` prompts with the KV-cache
sampler ("generation"), runs the jitted pass that gives the policy's and the reference's log-probs ("log-prob
pass": the reference's forward is half of it), computes the reward components on the host ("scoring"), then
the compiled train step runs over the minibatches ("optimisation"). The policy is a fresh init (no init_from):
the split does not depend on the weights, only on lengths, and sampling at temperature 1 from random weights
runs most responses to max_new_tokens (the worst case). Iteration 0 compiles; the figures are medians of
``--repeats`` more. It also counts compilations in each timed iteration: 0 means the sampler's compiled loop
and the scoring pass were reused.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.monitoring as monitoring

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxllm.config import load_config  # noqa: E402
from jaxllm.model import param_count  # noqa: E402
from jaxllm.train.loop import _compile, _initial_state, _prepare  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="grpo/demo")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. objective.grpo.group_size=16")
    a = p.parse_args()
    cfg = load_config(a.config, ["init_from=null", "run.dir=/tmp/jaxllm-bench-grpo", "checkpoint.enabled=false",
                                 "log.tensorboard=false", "objective.grpo.eval_prompts=0", *a.overrides])
    compiles = []
    monitoring.register_event_duration_secs_listener(
        lambda name, *x, **k: compiles.append(name) if name.endswith("backend_compile_duration") else None)
    r = _prepare(cfg, None)
    times: dict[str, list[float]] = {}
    with r.layout.context():
        state, frozen, shardings, abstract, _ = _initial_state(r)
        src = r.objective.train_batches
        src.set_params(state.params)
        first = next(src)
        step, _, _ = _compile(r, state, frozen, shardings, abstract, first)
        src.buffer.insert(0, first)
        per_rollout = len(src.buffer)
        counts = []
        for it in range(a.repeats + 1):
            src.drop_timing()
            before = len(compiles)
            if it:
                src.set_params(state.params)
                src._rollout()
            t0 = time.perf_counter()
            for _ in range(per_rollout):
                state, metrics = step(state, r.layout.global_batch(src.buffer.pop(0)), frozen)
            jax.block_until_ready(metrics)
            if not it:
                continue
            counts.append(len(compiles) - before)
            timing = src.metrics()
            times.setdefault("generation (KV-cache sampler)", []).append(timing["rollout_sample_s"])
            times.setdefault("log-prob pass (policy + reference)", []).append(timing["rollout_score_s"])
            times.setdefault("scoring (reward components, host)", []).append(timing["rollout_reward_s"])
            times.setdefault(f"optimisation ({per_rollout} steps)", []).append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    total = sum(med.values())
    c = cfg.objective.grpo
    n = c.prompts_per_rollout * c.group_size
    print(f"jax {jax.__version__}, {jax.device_count()} x {jax.devices()[0].device_kind}; {a.config} "
          f"({param_count(state.params) / 1e6:.2f}M policy, {r.spec.dtype}); {c.prompts_per_rollout} prompts x "
          f"{c.group_size} = {n} responses of up to {c.max_new_tokens} tokens, minibatch {cfg.train.batch_size}; "
          f"median of {a.repeats}")
    print(f"{'part':<42}{'ms':>10}{'share':>8}")
    for k, v in med.items():
        print(f"{k:<42}{v * 1e3:>10.1f}{v / total:>8.1%}")
    print(f"{'iteration':<42}{total * 1e3:>10.1f}  = {n * c.max_new_tokens / total:,.0f} response tokens/s (at most)")
    print(f"compilations in the timed iterations: {counts} (0 = the sampler and the scoring pass were reused)")


if __name__ == "__main__":
    main()

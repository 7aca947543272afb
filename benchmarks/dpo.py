"""DPO step time and tokens/s with the reference computed live in the step or precomputed before training.

    python benchmarks/dpo.py --preset small --batch 8 --k 4 --seq-len 96
    python benchmarks/dpo.py --preset gpt2-124m --batch 16 --k 2 --seq-len 512     (a GPU)

One step is what `jaxllm train` with objective.name=dpo runs (objectives/dpo.py through train/step.py):
the policy's forward and backward over ``batch x k`` responses of ``seq-len`` tokens, plus, live, the frozen
reference's forward over the same responses. Precomputed, the reference runs once per response before
training (its cost is reported per response, to weigh against the steps saved). Random weights and
tokens (the time does not depend on them); every program compiled before timing; medians of --repeats.
MFU counts the reference's forward where it runs (a third of a trained token's FLOPs).
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
from jaxllm.model.flops import train_flops_per_token  # noqa: E402
from jaxllm.objectives.dpo import DpoConfig, make_dpo_loss, sequence_logps  # noqa: E402
from jaxllm.train.metrics import peak_flops_per_device  # noqa: E402
from jaxllm.train.optimizer import make_optimizer  # noqa: E402
from jaxllm.train.state import TrainState  # noqa: E402
from jaxllm.train.step import make_train_step  # noqa: E402


def _median_time(fn, repeats: int) -> float:
    fn()  # compile / warm up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch", type=int, default=8, help="prompts per step")
    ap.add_argument("--k", type=int, default=4, help="ranked responses per prompt")
    ap.add_argument("--seq-len", type=int, default=96)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=10)
    a = ap.parse_args()

    cfg = load_config(ROOT / "configs" / "model" / f"{a.preset}.yaml", [f"model.vocab_size={a.vocab}"])
    spec = resolve_spec(cfg.model)
    model = Transformer(spec)
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"])
    ref = jax.tree.map(jnp.copy, params)
    tx, schedule = make_optimizer(cfg.optimizer, 1000)
    rng = np.random.default_rng(0)
    b, k, length = a.batch, a.k, a.seq_len
    prompt = length // 3
    batch = {"tokens": jnp.asarray(rng.integers(0, a.vocab, (b, k, length)), jnp.int32),
             "mask": jnp.ones((b, k, length), jnp.float32),
             "response": jnp.asarray(np.broadcast_to(np.arange(length) >= prompt, (b, k, length)), jnp.float32),
             "n_ranked": jnp.full((b,), k, jnp.int32), "ref_logp": jnp.zeros((b, k), jnp.float32)}
    tokens = b * k * length
    peak, peak_src = peak_flops_per_device()
    per_token = train_flops_per_token(spec, length)
    print(f"{a.preset}: {param_count(params) / 1e6:.2f}M parameters; {b} prompts x {k} responses x {length} tokens "
          f"= {tokens:,} tokens per step; {jax.devices()[0].device_kind}, JAX {jax.__version__}; peak {peak / 1e12:.3g} "
          f"TFLOP/s ({peak_src})")
    for mode in ("precomputed", "live"):
        live = mode == "live"
        step = jax.jit(make_train_step(make_dpo_loss(model, DpoConfig(), live), tx, schedule), donate_argnums=(0,))
        state = [TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), jax.random.PRNGKey(0))]
        frozen = {"reference": ref} if live else {}

        def run():
            state[0], m = step(jax.tree.map(jnp.copy, state[0]), batch, frozen)
            jax.block_until_ready(m["loss"])

        dt = _median_time(run, a.repeats)
        flops = per_token * (1 + (1 / 3 if live else 0)) * tokens
        print(f"  reference {mode:<12} step {dt * 1e3:8.1f} ms  {tokens / dt:10,.0f} tok/s  mfu {flops / dt / peak:6.1%}")
    score = jax.jit(lambda p, t, m, r: sequence_logps(model, p, t, m, r)[0])
    flat = [batch[n].reshape(b * k, length) for n in ("tokens", "mask", "response")]
    dt = _median_time(lambda: jax.block_until_ready(score(ref, *flat)), a.repeats)
    print(f"  precomputing: {dt / (b * k) * 1e3:.2f} ms per response, once per response before training")


if __name__ == "__main__":
    main()

"""Decode throughput of the KV-cache generator: new tokens per second.

    python benchmarks/decode.py --preset gpt2-124m --batch 64 --prompt 128 --new 128
    python benchmarks/decode.py --preset tiny small gpt2-124m --batch 8 --repeats 3

Random parameters and prompts through `jaxllm.model.decode` (the code the CLI,
the trainer's samples and RL rollouts use), parameters sharded by the default
rules over all devices. Every sequence decodes the full ``--new`` tokens (no
stop token), greedy unless ``--temperature`` is given. Time = prefill plus the
decode loop, after one untimed compile call; the figure is the median of
``--repeats``. ``new tokens/s = batch * new / time``; ``ms/step`` divides the
time by ``new``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxllm.config import load_config  # noqa: E402
from jaxllm.model import Transformer, param_count, resolve_spec  # noqa: E402
from jaxllm.model.decode import Sampling, decoder, left_pad  # noqa: E402
from jaxllm.parallel.mesh import make_mesh  # noqa: E402
from jaxllm.train.state import abstract_params  # noqa: E402
from jaxllm.train.step import mesh_context  # noqa: E402


def measure(preset: str, batch: int, prompt: int, new: int, repeats: int, temperature: float,
            overrides: list[str]) -> dict:
    cfg = load_config(ROOT / "configs" / "model" / f"{preset}.yaml",
                      [f"model.max_seq_len={max(prompt + new, 8)}", f"train.seq_len={max(prompt + new, 8)}", *overrides])
    spec = resolve_spec(cfg.model, tokenizer_vocab=cfg.model.vocab_size or 2048)
    model = Transformer(spec)
    mesh = make_mesh(cfg.mesh)
    rules = cfg.mesh.rules
    rng = np.random.default_rng(0)
    lens = rng.integers(prompt // 2, prompt + 1, batch)
    lens[0] = prompt
    prompts = [rng.integers(4, spec.vocab_size, n).tolist() for n in lens]
    tokens, lengths = left_pad(prompts)
    with mesh_context(mesh, rules):
        shapes = abstract_params(model, mesh, rules)
        init = jax.jit(lambda k: model.init(k, tokens[:1, :4])["params"], out_shardings=jax.tree.map(lambda a: a.sharding, shapes))
        import flax.linen as nn
        with nn.logical_axis_rules(()):
            params = nn.meta.unbox(init(jax.random.PRNGKey(0)))
        run = decoder(model, Sampling(temperature=temperature, max_new_tokens=new), stop_ids=())
        t0 = time.perf_counter()
        jax.block_until_ready(run(params, tokens, lengths, jax.random.PRNGKey(0)))
        compile_s = time.perf_counter() - t0
        times = []
        for r in range(repeats):
            t0 = time.perf_counter()
            out = jax.block_until_ready(run(params, tokens, lengths, jax.random.PRNGKey(r + 1)))
            times.append(time.perf_counter() - t0)
    assert int(np.asarray(out.lengths).min()) == new
    t = statistics.median(times)
    return {"preset": preset, "params_M": round(param_count(params) / 1e6, 1), "dtype": spec.dtype,
            "batch": batch, "prompt": prompt, "new": new, "devices": mesh.devices.size,
            "device": jax.devices()[0].device_kind, "backend": jax.default_backend(), "jax": jax.__version__,
            "seconds": round(t, 4), "ms_per_step": round(1000 * t / new, 3),
            "new_tokens_per_s": round(batch * new / t, 1), "compile_s": round(compile_s, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", nargs="+", default=["gpt2-124m"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--set", nargs="*", default=[], help="config overrides (model.dtype=bfloat16 ...)")
    ap.add_argument("--json", help="append results as JSON lines to this file")
    args = ap.parse_args()
    for preset in args.preset:
        res = measure(preset, args.batch, args.prompt, args.new, args.repeats, args.temperature, args.set)
        print(f"{preset:<11} {res['params_M']:>7.1f}M {res['dtype']:<8} batch {res['batch']:>3} prompt {res['prompt']} "
              f"new {res['new']}: {res['new_tokens_per_s']:>10,.0f} new tok/s  {res['ms_per_step']:.2f} ms/step  "
              f"(compile {res['compile_s']}s, {res['device']})", flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()

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

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxllm.config import load_config  # noqa: E402
from jaxllm.model import Transformer, param_count, resolve_spec  # noqa: E402
from jaxllm.model.decode import Sampling, decoder, left_pad  # noqa: E402
from jaxllm.parallel.mesh import make_mesh  # noqa: E402
from jaxllm.train.state import abstract_params  # noqa: E402
from jaxllm.parallel.layout import mesh_context  # noqa: E402


def measure(preset: str, batch: int, prompt: int, new: int, repeats: int, temperature: float,
            overrides: list[str], top_k: int = 0, top_p: float = 1.0) -> dict:
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
        with nn.logical_axis_rules(()):  # unbox outside the rules (see train/state.py)
            params = nn.meta.unbox(init(jax.random.PRNGKey(0)))
        run = decoder(model, Sampling(temperature=temperature, top_k=top_k, top_p=top_p, max_new_tokens=new), stop_ids=())
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
            "sampling": {"temperature": temperature, "top_k": top_k, "top_p": top_p},
            "batch": batch, "prompt": prompt, "new": new, "devices": mesh.devices.size,
            "device": jax.devices()[0].device_kind, "backend": jax.default_backend(), "jax": jax.__version__,
            "seconds": round(t, 4), "ms_per_step": round(1000 * t / new, 3),
            "new_tokens_per_s": round(batch * new / t, 1), "compile_s": round(compile_s, 1)}


def no_cache_baseline(preset: str, batch: int, prompt: int, new: int, overrides: list[str]) -> dict:
    """Greedy decoding by a full forward pass over a fixed buffer per new token (what the KV cache avoids),
    checked to give the same tokens as the cached decoder."""
    cfg = load_config(ROOT / "configs" / "model" / f"{preset}.yaml",
                      [f"model.max_seq_len={prompt + new}", f"train.seq_len={prompt + new}", *overrides])
    spec = resolve_spec(cfg.model, tokenizer_vocab=cfg.model.vocab_size or 2048)
    model = Transformer(spec)
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"])
    toks = np.random.default_rng(0).integers(4, spec.vocab_size, (batch, prompt)).astype(np.int32)
    def step(p, buf, t):
        logits = jax.lax.dynamic_index_in_dim(model.apply({"params": p}, buf), t - 1, axis=1, keepdims=False)
        tok = logits.argmax(-1).astype(jnp.int32)
        return tok, jnp.take_along_axis(jax.nn.log_softmax(logits, -1), tok[:, None], -1)[:, 0]

    fwd = jax.jit(step)
    buf = jnp.zeros((batch, prompt + new), jnp.int32).at[:, :prompt].set(toks)
    jax.block_until_ready(fwd(params, buf, prompt))
    logps = []
    t0 = time.perf_counter()
    for t in range(prompt, prompt + new):
        tok, lp = fwd(params, buf, t)
        buf = buf.at[:, t].set(tok)
        logps.append(lp)
    buf.block_until_ready()
    t_full = time.perf_counter() - t0
    run = decoder(model, Sampling(temperature=0.0, max_new_tokens=new), stop_ids=())
    lens = jnp.full((batch,), prompt, jnp.int32)
    jax.block_until_ready(run(params, toks, lens, jax.random.PRNGKey(0)))
    t0 = time.perf_counter()
    out = jax.block_until_ready(run(params, toks, lens, jax.random.PRNGKey(0)))
    t_cache = time.perf_counter() - t0
    return {"preset": preset, "batch": batch, "full_forward_tokens_per_s": round(batch * new / t_full, 1),
            "kv_cache_tokens_per_s": round(batch * new / t_cache, 1), "speedup": round(t_full / t_cache, 1),
            "same_tokens": bool(np.array_equal(np.asarray(out.tokens), np.asarray(buf[:, prompt:]))),
            "max_logprob_error": float(np.abs(np.asarray(out.logprobs) - np.stack([np.asarray(x) for x in logps], 1)).max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", nargs="+", default=["gpt2-124m"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--set", nargs="*", default=[], help="config overrides (model.dtype=bfloat16 ...)")
    ap.add_argument("--json", help="append results as JSON lines to this file")
    ap.add_argument("--no-cache-baseline", action="store_true",
                    help="instead: compare with a full forward pass per new token (single device)")
    args = ap.parse_args()
    if args.no_cache_baseline:
        for preset in args.preset:
            print(no_cache_baseline(preset, args.batch, args.prompt, args.new, args.set), flush=True)
        return
    for preset in args.preset:
        res = measure(preset, args.batch, args.prompt, args.new, args.repeats, args.temperature, args.set,
                      args.top_k, args.top_p)
        print(f"{preset:<11} {res['params_M']:>7.1f}M {res['dtype']:<8} batch {res['batch']:>3} prompt {res['prompt']} "
              f"new {res['new']}: {res['new_tokens_per_s']:>10,.0f} new tok/s  {res['ms_per_step']:.2f} ms/step  "
              f"(compile {res['compile_s']}s, {res['device']})", flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()

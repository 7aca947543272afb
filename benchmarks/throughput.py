"""Training throughput of a model preset: step time, tokens/s, tokens/s/device and MFU.

    python benchmarks/throughput.py --preset gpt2-124m --batch 16 --seq 1024 --steps 20
    python benchmarks/throughput.py --preset tiny --batch 16 --seq 256 --attention xla cudnn

Random tokens (no data pipeline) through the same sharded init and jitted step
the trainer uses. FLOPs per token: 6N (N = matmul parameters, output head
included) + 6 * n_layers * seq * n_heads * head_dim (attention, halved for
causal masking as MaxText counts it), see jaxllm/model/flops.py. Peak FLOP/s:
the per-device table in jaxllm/train/metrics.py (CPU: a measured f32 matmul)
or --peak-tflops. The first step (compile) is excluded; the figure is the
median over timed steps.
"""

from __future__ import annotations

import argparse
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
from jaxllm.model.flops import train_flops_per_token  # noqa: E402
from jaxllm.objectives.pretrain import make_lm_loss  # noqa: E402
from jaxllm.parallel.mesh import make_mesh  # noqa: E402
from jaxllm.parallel.sharding import global_batch  # noqa: E402
from jaxllm.train.metrics import peak_flops_per_device  # noqa: E402
from jaxllm.train.optimizer import make_optimizer  # noqa: E402
from jaxllm.train.state import sharded_init  # noqa: E402
from jaxllm.parallel.layout import mesh_context  # noqa: E402
from jaxllm.train.step import jit_train_step, make_train_step  # noqa: E402


def random_batch(vocab: int, batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    toks = rng.integers(0, vocab, (batch, seq + 1)).astype(np.int32)
    return {"inputs": toks[:, :-1], "targets": toks[:, 1:], "loss_mask": np.ones((batch, seq), np.float32),
            "positions": np.broadcast_to(np.arange(seq), (batch, seq)).astype(np.int32),
            "segment_ids": np.ones((batch, seq), np.int32)}


def measure(preset: str, batch: int, seq: int, steps: int, attention: str, overrides: list[str], peak: float | None) -> dict:
    cfg = load_config(ROOT / "configs" / "model" / f"{preset}.yaml",
                      [f"train.batch_size={batch}", f"train.seq_len={seq}", f"model.attention={attention}",
                       "optimizer.warmup_steps=0", f"model.max_seq_len={max(seq, 8)}", *overrides])
    spec = resolve_spec(cfg.model, tokenizer_vocab=cfg.model.vocab_size or 2048)
    model = Transformer(spec)
    mesh = make_mesh(cfg.mesh)
    tx, schedule = make_optimizer(cfg.optimizer, 1000)
    rules = cfg.mesh.rules
    with mesh_context(mesh, rules):
        init, shardings, abstract = sharded_init(model, tx, seq, mesh, rules)
        state = init(jax.random.PRNGKey(0))
        local = random_batch(spec.vocab_size, batch, seq)
        step = jit_train_step(make_train_step(make_lm_loss(model, cfg.train.loss_chunk), tx, schedule, cfg.train.grad_accum), mesh, rules,
                              shardings, local)
        b = global_batch(local, mesh, rules)
        t0 = time.perf_counter()
        compiled = step.lower(state, b).compile()
        compile_s = time.perf_counter() - t0
        state, m = compiled(state, b)
        jax.block_until_ready(m)
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            state, m = compiled(state, b)
            jax.block_until_ready(m)
            times.append(time.perf_counter() - t)
    peak_dev, peak_src = peak_flops_per_device(peak)
    dt = statistics.median(times)
    n_dev = mesh.devices.size
    tok_s = batch * seq / dt
    return {
        "preset": preset, "params_M": param_count(abstract.params) / 1e6, "batch": batch, "seq": seq,
        "attention": spec.attention, "dtype": spec.dtype, "devices": n_dev, "compile_s": compile_s,
        "step_ms": dt * 1e3, "tokens_per_s": tok_s, "tokens_per_s_per_device": tok_s / n_dev,
        "mfu": tok_s * train_flops_per_token(spec, seq) / (peak_dev * n_dev), "peak": peak_src,
        "loss": float(m["loss"]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", nargs="+", default=["tiny"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--attention", nargs="+", default=["auto"])
    p.add_argument("--peak-tflops", type=float, default=None, help="override the peak FLOP/s table (per device)")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. model.remat=full mesh.fsdp=-1")
    a = p.parse_args()
    peak = a.peak_tflops * 1e12 if a.peak_tflops else None
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {jax.device_count()} x {jax.devices()[0].device_kind}")
    head = f"{'preset':<12}{'params':>9}{'batch':>6}{'seq':>6}{'attn':>7}{'dtype':>10}{'step ms':>10}{'tok/s':>12}{'tok/s/dev':>12}{'MFU':>8}"
    print(head)
    for preset in a.preset:
        for attn in a.attention:
            r = measure(preset, a.batch, a.seq, a.steps, attn, a.overrides, peak)
            print(f"{r['preset']:<12}{r['params_M']:>8.1f}M{r['batch']:>6}{r['seq']:>6}{r['attention']:>7}{r['dtype']:>10}"
                  f"{r['step_ms']:>10.1f}{r['tokens_per_s']:>12,.0f}{r['tokens_per_s_per_device']:>12,.0f}{r['mfu']:>8.1%}")
            print(f"    compile {r['compile_s']:.1f}s, loss {r['loss']:.3f}, peak: {r['peak']}")


if __name__ == "__main__":
    main()

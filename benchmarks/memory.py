"""Per-device memory of the compiled train step over meshes, on 8 fake CPU devices (no accelerator needed).

    python benchmarks/memory.py --preset gpt2-124m --batch 16 --seq 1024
    python benchmarks/memory.py --preset llama-1b --batch 8 --seq 2048 --mesh 1,1,1 1,8,1 --set model.remat=full

Per mesh (data, fsdp, tensor): the train state (parameters + AdamW moments + step) each device holds,
summed from every array's shard shape, and XLA's memory analysis of the compiled step per device:
arguments (state + batch), temporaries (activations, gradients, workspace) and the total live at once.
Nothing runs: the step is only compiled. The target: with FSDP over 8 devices the state per device is
at most 1/8 of the one-device figure plus 10%.
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.throughput import random_batch  # noqa: E402
from jaxllm.config import load_config  # noqa: E402
from jaxllm.model import Transformer, param_count, resolve_spec  # noqa: E402
from jaxllm.objectives.pretrain import make_lm_loss  # noqa: E402
from jaxllm.parallel.mesh import make_mesh  # noqa: E402
from jaxllm.parallel.sharding import global_batch  # noqa: E402
from jaxllm.train.optimizer import make_optimizer  # noqa: E402
from jaxllm.train.state import sharded_init  # noqa: E402
from jaxllm.parallel.layout import mesh_context  # noqa: E402
from jaxllm.train.step import jit_train_step, make_train_step  # noqa: E402

MESHES = ("1,1,1", "8,1,1", "1,8,1", "2,2,2", "1,1,8")
MiB = 2 ** 20


def state_bytes_per_device(abstract, shardings) -> int:
    """Bytes of the train state on one device: every leaf's shard (the largest, where shards differ)."""
    total = 0
    for a, s in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings)):
        total += math.prod(s.shard_shape(a.shape)) * np.dtype(a.dtype).itemsize
    return total


def measure(preset: str, batch: int, seq: int, mesh_sizes: tuple[int, int, int], overrides: list[str]) -> dict:
    data, fsdp, tensor = mesh_sizes
    cfg = load_config(ROOT / "configs" / "model" / f"{preset}.yaml",
                      [f"train.batch_size={batch}", f"train.seq_len={seq}", "optimizer.warmup_steps=0",
                       f"model.max_seq_len={max(seq, 8)}", f"mesh.data={data}", f"mesh.fsdp={fsdp}",
                       f"mesh.tensor={tensor}", *overrides])
    spec = resolve_spec(cfg.model, tokenizer_vocab=cfg.model.vocab_size or 2048)
    model = Transformer(spec)
    n = data * fsdp * tensor
    mesh = make_mesh(cfg.mesh, jax.devices()[:n])
    tx, schedule = make_optimizer(cfg.optimizer, 1000)
    rules = cfg.mesh.rules
    with mesh_context(mesh, rules):
        _, shardings, abstract = sharded_init(model, tx, seq, mesh, rules)
        local = random_batch(spec.vocab_size, batch, seq)
        step = jit_train_step(make_train_step(make_lm_loss(model, cfg.train.loss_chunk), tx, schedule, cfg.train.grad_accum), mesh, rules,
                              shardings, local)
        t0 = time.perf_counter()
        compiled = step.lower(abstract, global_batch(local, mesh, rules)).compile()
        compile_s = time.perf_counter() - t0
    m = compiled.memory_analysis()
    return {"mesh": mesh_sizes, "devices": n, "params_M": param_count(abstract.params) / 1e6,
            "state": state_bytes_per_device(abstract, shardings), "arguments": m.argument_size_in_bytes,
            "temporaries": m.temp_size_in_bytes,
            "total": m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes,
            "compile_s": compile_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="gpt2-124m")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--mesh", nargs="+", default=list(MESHES), help="data,fsdp,tensor sizes")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="key=value",
                   help="config overrides, e.g. model.remat=full train.loss_chunk=256")
    a = p.parse_args()
    print(f"jax {jax.__version__}, {jax.device_count()} x {jax.devices()[0].device_kind}; {a.preset}, "
          f"batch {a.batch} x seq {a.seq}, float32 state, AdamW {' '.join(a.overrides)}")
    print(f"{'mesh (d,f,t)':<14}{'state/dev MiB':>15}{'x 1-dev':>9}{'arguments':>11}{'temps':>10}{'total':>10}"
          f"{'compile':>9}")
    base = None
    for text in a.mesh:
        sizes = tuple(int(x) for x in text.split(","))
        r = measure(a.preset, a.batch, a.seq, sizes, a.overrides)
        base = base or r["state"]
        print(f"{str(sizes):<14}{r['state'] / MiB:>15.1f}{r['state'] / base:>9.3f}{r['arguments'] / MiB:>11.1f}"
              f"{r['temporaries'] / MiB:>10.1f}{r['total'] / MiB:>10.1f}{r['compile_s']:>8.1f}s", flush=True)


if __name__ == "__main__":
    main()

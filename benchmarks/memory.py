"""Per-device memory of the compiled train step over meshes, on 8 fake CPU devices (no accelerator needed).

    python benchmarks/memory.py --preset gpt2-124m --batch 16 --seq 1024
    python benchmarks/memory.py --preset llama-1b --batch 8 --seq 2048 --mesh 1,1,1 1,8,1 --set model.remat=full

Per mesh (data, fsdp, tensor): the train state (parameters + AdamW moments + step) each device holds,
summed from every array's shard shape, and XLA's memory analysis of the compiled step per device:
arguments (state + batch), temporaries (activations, gradients, workspace) and the total live at once.
Nothing runs: the step is only compiled. The target: with FSDP over 8 devices the state per device is
at most 1/8 of the one-device figure plus 10%.

    python benchmarks/memory.py --lora --preset llama-7b --batch 8 --seq 1024 --mesh 1,8,1 --set model.remat=full

``--lora``: full fine-tuning against LoRA (rank ``--rank``, every linear layer; bf16 base) and QLoRA (int8 and
NF4 base) on one mesh: the optimizer state, the frozen base, and the compiled SFT step's arguments, temporaries
and total per device; then what DPO and PPO hold per device with a reference copy (full fine-tuning: policy,
reference; PPO also critic and reward model) and with LoRA (the reference is the base with adapters off; PPO's
reward model is the critic's base). Targets: LoRA optimizer state below 2% of full fine-tuning's; QLoRA base
at most 0.3 of the bf16 base.
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


def _setup(preset: str, batch: int, seq: int, mesh_sizes: tuple[int, int, int], overrides: list[str]):
    """``(cfg, spec, model, mesh, n devices, tx, schedule)`` for one measurement."""
    data, fsdp, tensor = mesh_sizes
    cfg = load_config(ROOT / "configs" / "model" / f"{preset}.yaml",
                      [f"train.batch_size={batch}", f"train.seq_len={seq}", "optimizer.warmup_steps=0",
                       f"model.max_seq_len={max(seq, 8)}", f"mesh.data={data}", f"mesh.fsdp={fsdp}",
                       f"mesh.tensor={tensor}", *overrides])
    spec = resolve_spec(cfg.model, tokenizer_vocab=cfg.model.vocab_size or 2048)
    n = data * fsdp * tensor
    tx, schedule = make_optimizer(cfg.optimizer, 1000)
    return cfg, spec, Transformer(spec), make_mesh(cfg.mesh, jax.devices()[:n]), n, tx, schedule


def measure(preset: str, batch: int, seq: int, mesh_sizes: tuple[int, int, int], overrides: list[str]) -> dict:
    cfg, spec, model, mesh, n, tx, schedule = _setup(preset, batch, seq, mesh_sizes, overrides)
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


def measure_lora(preset: str, batch: int, seq: int, mesh_sizes: tuple[int, int, int], overrides: list[str],
                 rank: int, quantize: str) -> dict:
    """One LoRA row: the trainable state, the stored base (bf16, or quantized) and the compiled SFT step."""
    from jaxllm.model.lora import logical_size
    from jaxllm.train.adapters import BASE, LoraRun, storage, wrap_loss

    cfg, spec, model, mesh, _, tx, schedule = _setup(preset, batch, seq, mesh_sizes, [
        f"model.lora.rank={rank}", "init_from=base-not-read", *overrides])
    rules = cfg.mesh.rules
    with mesh_context(mesh, rules):
        _, (state_sh, _), (abstract, base_abs) = sharded_init(model, tx, seq, mesh, rules, lora_train=())
        fn, stored_sh = storage(base_abs, "bfloat16", quantize, cfg.model.lora.quantize_block)
        stored = jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                              jax.eval_shape(fn, base_abs), stored_sh)
        run = LoraRun(None, {})
        local = random_batch(spec.vocab_size, batch, seq)
        frozen = {BASE: stored}
        step = jax.jit(make_train_step(wrap_loss(make_lm_loss(model, cfg.train.loss_chunk), run), tx, schedule,
                                       cfg.train.grad_accum),
                       in_shardings=(state_sh, {k: jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(
                           ("data", "fsdp"))) for k in local}, jax.tree.map(lambda x: x.sharding, frozen)),
                       out_shardings=(state_sh, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())),
                       donate_argnums=(0,))
        compiled = step.lower(abstract, global_batch(local, mesh, rules), frozen).compile()
    m = compiled.memory_analysis()
    base_bytes = state_bytes_per_device(stored, jax.tree.map(lambda a: a.sharding, stored))  # NF4: uint8, 2 codes a byte
    return {"trainable_M": param_count(abstract.params) / 1e6, "base_M": logical_size(stored) / 1e6,
            "params": state_bytes_per_device(abstract.params, state_sh.params),
            "opt": state_bytes_per_device(abstract.opt_state, state_sh.opt_state),
            "base": base_bytes, "arguments": m.argument_size_in_bytes, "temporaries": m.temp_size_in_bytes,
            "total": m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes}


def lora_table(a) -> None:
    sizes = tuple(int(x) for x in a.mesh[0].split(","))
    full = measure(a.preset, a.batch, a.seq, sizes, a.overrides)
    params_full = full["state"] * 1 / 3  # float32 parameters + AdamW's two float32 moments
    opt_full = full["state"] - params_full
    print(f"{'':<18}{'trained M':>10}{'params':>10}{'opt state':>11}{'frozen base':>12}{'arguments':>11}"
          f"{'temps':>9}{'total':>9}   (MiB per device, mesh {sizes})")
    print(f"{'full fine-tuning':<18}{full['params_M']:>10.2f}{params_full / MiB:>10.1f}{opt_full / MiB:>11.1f}"
          f"{0:>12.1f}{full['arguments'] / MiB:>11.1f}{full['temporaries'] / MiB:>9.1f}{full['total'] / MiB:>9.1f}")
    rows = {}
    for q in ("none", "int8", "nf4"):
        r = measure_lora(a.preset, a.batch, a.seq, sizes, a.overrides, a.rank, q)
        rows[q] = r
        name = f"LoRA r={a.rank}" if q == "none" else f"QLoRA {q}"
        print(f"{name:<18}{r['trainable_M']:>10.2f}{r['params'] / MiB:>10.1f}{r['opt'] / MiB:>11.1f}"
              f"{r['base'] / MiB:>12.1f}{r['arguments'] / MiB:>11.1f}{r['temporaries'] / MiB:>9.1f}"
              f"{r['total'] / MiB:>9.1f}", flush=True)
    lo = rows["none"]
    print(f"LoRA optimizer state / full: {lo['opt'] / opt_full:.4f} (target < 0.02); "
          f"QLoRA base / bf16 base: int8 {rows['int8']['base'] / lo['base']:.3f}, nf4 {rows['nf4']['base'] / lo['base']:.3f} "
          "(target <= 0.3)")
    # what the RL objectives hold per device (state + frozen models), from the same shard shapes
    ref_f32 = params_full  # a frozen copy of the policy as loaded (float32)
    lora_state = lo["params"] + lo["opt"]
    print(f"{'held per device':<18}{'full FT':>12}{'LoRA':>12}{'QLoRA nf4':>12}   (MiB: trained state + frozen models)")
    for name, full_b, lora_b, q_b in (
            ("DPO (live ref)", full["state"] + ref_f32, lora_state + lo["base"], lora_state + rows["nf4"]["base"]),
            ("PPO", 2 * full["state"] + 2 * ref_f32, 2 * lora_state + 2 * lo["base"],
             2 * lora_state + 2 * rows["nf4"]["base"])):
        print(f"{name:<18}{full_b / MiB:>12.1f}{lora_b / MiB:>12.1f}{q_b / MiB:>12.1f}   "
              f"(LoRA {lora_b / full_b:.3f} of full, no reference copy)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="gpt2-124m")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--mesh", nargs="+", default=list(MESHES), help="data,fsdp,tensor sizes")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="key=value",
                   help="config overrides, e.g. model.remat=full train.loss_chunk=256")
    p.add_argument("--lora", action="store_true", help="full vs LoRA vs QLoRA on the first --mesh (see above)")
    p.add_argument("--rank", type=int, default=16)
    a = p.parse_args()
    if a.lora:
        print(f"jax {jax.__version__}, {jax.device_count()} x {jax.devices()[0].device_kind}; {a.preset}, "
              f"batch {a.batch} x seq {a.seq}, AdamW {' '.join(a.overrides)}")
        lora_table(a)
        return
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

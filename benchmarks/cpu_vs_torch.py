"""jaxllm against PyTorch on the same CPU, same shape, measured side by side.

    python benchmarks/cpu_vs_torch.py                      (the performance issue's shape, 2 rounds)
    python benchmarks/cpu_vs_torch.py --rounds 3 --layers 4 --width 256 --heads 4 --vocab 4096 --seq 256 --batch 16

The shape: GPT-2 blocks (LayerNorm, biases, GELU MLP 4x, tied head), float32, AdamW. The PyTorch side is
benchmarks/torch_reference.py (nanoGPT's model, `scaled_dot_product_attention`) in its own process;
the jaxllm side is benchmarks/throughput.py's measurement with and without the CPU settings
(`model.scan_unroll`, `model.attention_blocks`). The runs alternate, so drift of this shared machine
hits both; each figure is the median step of its run, the table the best run of each. Needs PyTorch
(`pip install 'torch==2.13.0+cpu'`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def torch_run(a) -> dict:
    cmd = [sys.executable, str(HERE / "torch_reference.py"), "--layers", str(a.layers), "--width", str(a.width),
           "--heads", str(a.heads), "--vocab", str(a.vocab), "--seq", str(a.seq), "--batch", str(a.batch),
           "--steps", str(a.steps)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"the PyTorch side failed (is torch installed? pip install 'torch==2.13.0+cpu'):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def jax_run(a, extra: list[str]) -> dict:
    code = ("import json, sys; sys.path.insert(0, %r); from throughput import measure; "
            "r = measure('tiny', %d, %d, %d, 'xla', %r, None); print(json.dumps(r))"
            % (str(HERE), a.batch, a.seq, a.steps,
               [f"model.n_layers={a.layers}", f"model.d_model={a.width}", f"model.n_heads={a.heads}",
                f"model.vocab_size={a.vocab}", *extra]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"the jaxllm side failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for k, v in [("layers", 4), ("width", 256), ("heads", 4), ("vocab", 4096), ("seq", 256), ("batch", 16),
                 ("steps", 8), ("rounds", 2)]:
        p.add_argument(f"--{k}", type=int, default=v)
    a = p.parse_args()
    variants = {
        "jaxllm, defaults (scanned layers, whole attention)": [],
        "jaxllm, scan_unroll=n_layers attention_blocks=4": [f"model.scan_unroll={a.layers}", "model.attention_blocks=4"],
    }
    best: dict[str, float] = {}
    runs: dict[str, list[float]] = {}
    for _ in range(a.rounds):
        t = torch_run(a)
        name = f"PyTorch {t['torch']} ({t['threads']} threads)"
        runs.setdefault(name, []).append(t["tokens_per_s"])
        for label, extra in variants.items():
            runs.setdefault(label, []).append(jax_run(a, extra)["tokens_per_s"])
    best = {k: max(v) for k, v in runs.items()}
    ref = next(v for k, v in best.items() if k.startswith("PyTorch"))
    print(f"shape: {a.layers} layers x {a.width}, {a.heads} heads, vocab {a.vocab}, batch {a.batch} x seq {a.seq}, "
          f"float32, AdamW; {a.rounds} alternating rounds of {a.steps} timed steps")
    print(f"{'':<52}{'tokens/s (best)':>16}{'all runs':>28}{'x PyTorch':>11}")
    for k, v in best.items():
        print(f"{k:<52}{v:>16,.0f}{', '.join(f'{x:,.0f}' for x in runs[k]):>28}{v / ref:>11.2f}")


if __name__ == "__main__":
    main()

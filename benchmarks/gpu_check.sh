#!/usr/bin/env bash
# One short GPU session for the decoder (issue 4): correctness on the GPU, then the throughput goal.
#   bash benchmarks/gpu_check.sh            (results appended to ${OUT:-.}/decode.jsonl)
# 1. float32 with highest matmul precision: the cached decoder must give the same greedy tokens and
#    log-probs as a full forward pass per token (tiny-llama and the demo's small model).
# 2. gpt2-124m, batch 64, prompt 128, 128 new tokens, bf16 (GPU default): the goal is >= 48,500 new tok/s
#    on an H200 (5x the 9,700 measured for Hugging Face generate); greedy, then temperature 1 + top-p 0.9.
set -u
out="${OUT:-.}/decode.jsonl"
python3 -c "import jax; print(jax.__version__, jax.devices())"
JAX_DEFAULT_MATMUL_PRECISION=highest python3 benchmarks/decode.py --no-cache-baseline --preset tiny-llama small \
  --batch 8 --new 64 --set model.dtype=float32
python3 benchmarks/decode.py --preset gpt2-124m --batch 64 --prompt 128 --new 128 --repeats 5 --json "$out"
python3 benchmarks/decode.py --preset gpt2-124m --batch 64 --prompt 128 --new 128 --repeats 5 --temperature 1.0 --top-p 0.9 --json "$out"
python3 benchmarks/decode.py --preset llama-1b --batch 64 --prompt 128 --new 128 --repeats 3 --json "$out"

#!/usr/bin/env bash
# One short GPU session for training throughput (the performance issue). Prints tables; about 6 minutes.
#   bash benchmarks/gpu_perf.sh
# 1. GPT-2 124M shape, batch 16 x seq 1024, bf16, AdamW: cuDNN vs XLA attention (whole and in 4 causal query
#    blocks), whole vs chunked cross-entropy (goal: >= 570k tokens/s on an H200, 1.2x nanoGPT + torch.compile).
# 2. GPT-2 ~1.3B shape, batch 8 x seq 2048 (goal: >= 69k tokens/s) and the Llama-1B preset.
# 3. One PPO iteration split (generation, scoring, optimisation) for gpt2-124m.
set -u
python3 -c "import jax; print(jax.__version__, jax.devices())"
b() { timeout 150 python3 "$@" 2>&1 | grep -v -e Involuntary -e "^ *$"; }
b benchmarks/throughput.py --preset gpt2-124m --batch 16 --seq 1024 --steps 20 --attention cudnn xla
b benchmarks/throughput.py --preset gpt2-124m --batch 16 --seq 1024 --steps 20 --attention xla model.attention_blocks=4
b benchmarks/throughput.py --preset gpt2-124m --batch 16 --seq 1024 --steps 20 --attention cudnn train.loss_chunk=256
b benchmarks/throughput.py --preset gpt2-1.3b --batch 8 --seq 2048 --steps 10 --attention cudnn
b benchmarks/throughput.py --preset gpt2-1.3b --batch 8 --seq 2048 --steps 10 --attention cudnn train.loss_chunk=512
b benchmarks/throughput.py --preset llama-1b --batch 8 --seq 2048 --steps 10 --attention cudnn
b benchmarks/rlhf.py --preset gpt2-124m --prompts 256 --prompt 128 --new 128 --batch 32 --repeats 2

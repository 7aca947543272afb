#!/usr/bin/env bash
# One short GPU session for training throughput (the performance issue). Prints tables; JSON lines are not kept.
#   bash benchmarks/gpu_perf.sh
# 1. GPT-2 124M shape, batch 16 x seq 1024, bf16, AdamW: cuDNN vs XLA attention, whole vs chunked
#    cross-entropy (goal: >= 570k tokens/s on an H200, 1.2x nanoGPT + torch.compile).
# 2. GPT-2 ~1.3B shape, batch 8 x seq 2048 (goal: >= 69k tokens/s) and the Llama-1B preset.
# 3. Memory per device of the compiled step (no accelerator needed; also runs on CPU).
set -u
python3 -c "import jax; print(jax.__version__, jax.devices())"
python3 benchmarks/throughput.py --preset gpt2-124m --batch 16 --seq 1024 --steps 20 --attention cudnn xla
python3 benchmarks/throughput.py --preset gpt2-124m --batch 16 --seq 1024 --steps 20 --attention cudnn train.loss_chunk=256
python3 benchmarks/throughput.py --preset gpt2-1.3b --batch 8 --seq 2048 --steps 10 --attention cudnn
python3 benchmarks/throughput.py --preset gpt2-1.3b --batch 8 --seq 2048 --steps 10 --attention cudnn train.loss_chunk=512
python3 benchmarks/throughput.py --preset llama-1b --batch 8 --seq 2048 --steps 10 --attention cudnn

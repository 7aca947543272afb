#!/usr/bin/env bash
# One GPU session for RLHF (issue 5) and the decoder's float32 check (issue 4).
#   bash benchmarks/gpu_rlhf.sh        (report, per-stage metrics and timings under ${OUT:-.})
# 1. float32, highest matmul precision: cached decoder == full forward pass per token (greedy tokens, log-probs).
# 2. the main job, `jaxllm pipeline` (pipeline/demo), on the GPU; datatrove is not installed there, so the
#    pre-training corpus is not cleaned (the only difference from the CPU run).
set -u
out="${OUT:-.}"
export PYTHONUNBUFFERED=1
python3 -c "import jax; print(jax.__version__, jax.devices())"
JAX_DEFAULT_MATMUL_PRECISION=highest timeout 150 python3 benchmarks/decode.py --no-cache-baseline \
  --preset tiny-llama small --batch 8 --new 64 --set model.dtype=float32
start=$(date +%s)
timeout 420 python3 -m jaxllm.cli pipeline pipeline/demo dir=/tmp/pl pretrain.data.clean.enabled=false \
  pretrain.log.tensorboard=false sft.log.tensorboard=false reward.log.tensorboard=false ppo.log.tensorboard=false \
  2>&1 | grep -v -e Involuntary -e "^ *$" > "$out/pipeline.log"
echo "pipeline exit ${PIPESTATUS[0]}, $(( $(date +%s) - start )) s"
tail -30 "$out/pipeline.log"
cp /tmp/pl/report.md /tmp/pl/ppo_curves.svg "$out/" 2>/dev/null
cp /tmp/pl/ppo/metrics.jsonl "$out/ppo_metrics.jsonl" 2>/dev/null
cp /tmp/pl/reward/metrics.jsonl "$out/reward_metrics.jsonl" 2>/dev/null

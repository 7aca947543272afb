#!/usr/bin/env bash
# N processes on this machine, each with its own fake CPU devices, joined by jax.distributed
# through a coordinator on 127.0.0.1 (a free port): a multi-host job on one machine.
#
#   usage: launch/local.sh N CONFIG [key=value ...]
#
#   launch/local.sh 2 pretrain/demo train.steps=50        # 2 processes x 4 devices
#   DEVICES_PER_PROCESS=1 launch/local.sh 4 pretrain/demo  # 4 processes x 1 device
#   JAXLLM_CMD=pipeline launch/local.sh 2 pipeline/demo    # another jaxllm command (default: train)
#
# Output lines are prefixed [i] with the process index. Same as `jaxllm launch --local N train CONFIG ...`.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: launch/local.sh N CONFIG [key=value ...]" >&2
  exit 2
fi
N=$1
shift
ARGS=(--local "$N")
if [ -n "${DEVICES_PER_PROCESS:-}" ]; then
  ARGS+=(--devices-per-process "$DEVICES_PER_PROCESS")
fi
exec "${PYTHON:-python3}" -m jaxllm launch "${ARGS[@]}" "${JAXLLM_CMD:-train}" "$@"

#!/usr/bin/env bash
# Cloud TPU VM slices (v4, v5e, v5p, v6e): create a slice, copy this checkout to every worker and
# install it, then run the same jaxllm command on all workers at once (--worker=all). JAX finds the
# coordinator, process count and ids from the TPU metadata server (distributed.initialize=always).
#
#   usage: launch/tpu_pod.sh create NAME ZONE ACCELERATOR_TYPE
#          launch/tpu_pod.sh setup NAME ZONE
#          launch/tpu_pod.sh run NAME ZONE CONFIG [key=value ...]
#          launch/tpu_pod.sh delete NAME ZONE
#
#   launch/tpu_pod.sh create my-tpu us-central2-b v4-32          # 4 hosts x 4 chips
#   launch/tpu_pod.sh create my-tpu us-west4-a v5litepod-16       # 4 hosts x 4 chips (v5e)
#   launch/tpu_pod.sh create my-tpu us-east5-a v5p-32             # 4 hosts x 4 chips
#   launch/tpu_pod.sh setup my-tpu us-central2-b
#   launch/tpu_pod.sh run my-tpu us-central2-b pretrain/demo run.dir=/mnt/shared/runs/demo mesh.fsdp=-1 mesh.data=1
#
# run.dir must be on storage every worker sees at the same path (a Filestore NFS share or a
# gcsfuse-mounted bucket). DETACH=1 runs detached (nohup, log in ~/jaxllm.log on each worker);
# JAXLLM_CMD=pipeline runs another jaxllm command (default: train).
set -euo pipefail
usage() { sed -n 's/^#   usage: /  /p; s/^#          launch/  launch/p' "$0" >&2; exit 2; }
[ $# -ge 3 ] || usage
ACTION=$1 NAME=$2 ZONE=$3
shift 3

runtime_version() {  # the TPU software version for JAX on each generation (cloud.google.com/tpu/docs/runtimes)
  case "$1" in
    v6e-*) echo v2-alpha-tpuv6e ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v5litepod-*) echo v2-alpha-tpuv5-lite ;;
    v4-* | v3-* | v2-*) echo tpu-ubuntu2204-base ;;
    *) echo "unknown accelerator type $1 (v4-32, v5litepod-16, v5p-32, v6e-16, ...)" >&2; exit 2 ;;
  esac
}

on_all() { gcloud compute tpus tpu-vm ssh "$NAME" --zone "$ZONE" --worker=all --command "$1"; }

case "$ACTION" in
  create)
    TYPE=${1:?usage: launch/tpu_pod.sh create NAME ZONE ACCELERATOR_TYPE}
    VERSION=$(runtime_version "$TYPE")
    gcloud compute tpus tpu-vm create "$NAME" --zone "$ZONE" --accelerator-type "$TYPE" --version "$VERSION"
    ;;
  setup)
    # the committed tree (git archive), unpacked into ~/jaxllm on every worker; Python 3.11 (the images ship 3.10)
    ARCHIVE=$(mktemp -d)/jaxllm.tgz
    git -C "$(dirname "$0")/.." archive --format=tar.gz -o "$ARCHIVE" HEAD
    gcloud compute tpus tpu-vm scp "$ARCHIVE" "$NAME":jaxllm.tgz --zone "$ZONE" --worker=all
    on_all "set -e; sudo apt-get update -qq && sudo apt-get install -y -qq python3.11 python3.11-venv; \
      rm -rf ~/jaxllm && mkdir ~/jaxllm && tar xzf ~/jaxllm.tgz -C ~/jaxllm && cd ~/jaxllm && \
      python3.11 -m venv .venv && .venv/bin/pip install -q -e '.[tpu]' && \
      .venv/bin/jaxllm config show pretrain/demo > /dev/null && echo \$(hostname): jaxllm installed"
    ;;
  run)
    [ $# -ge 1 ] || usage
    ARGS=$(printf ' %q' "$@")
    CMD="cd ~/jaxllm && .venv/bin/jaxllm ${JAXLLM_CMD:-train}$ARGS distributed.initialize=always"
    if [ -n "${DETACH:-}" ]; then
      on_all "nohup bash -c $(printf %q "$CMD") > ~/jaxllm.log 2>&1 &"
    else
      on_all "$CMD"
    fi
    ;;
  delete)
    gcloud compute tpus tpu-vm delete "$NAME" --zone "$ZONE" --quiet
    ;;
  *) usage ;;
esac

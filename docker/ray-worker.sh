#!/usr/bin/env bash
# Start one Ray worker of the compose stack on GPUs that no other worker holds.
#
# Docker hands every replica of a scaled service the same devices (a reservation of
# `count: 1` is GPU 0 for all of them), so each worker container reserves every GPU
# of the host and claims RAY_WORKER_GPUS of them itself (default 1; `all` takes every
# free one): one exclusive lock per GPU in GPU_LOCK_DIR, a volume that all workers on
# the host share. `ray start --block` inherits the locks and holds them for as long as
# the worker lives; the kernel drops them when it exits, so a restarted worker claims
# a GPU again. CUDA_VISIBLE_DEVICES then shows Ray only the claimed GPUs.
#
#   RAY_HEAD_ADDRESS   host:port of the head's GCS (required)
#   RAY_WORKER_GPUS    GPUs per worker: a number (default 1), 0, or all
#   RAY_WORKER_CPUS    CPUs Ray may schedule on this worker (default: all it detects)
#   GPU_LOCK_DIR       the shared lock folder (default /data/gpu-locks)
#
# Extra arguments go to `ray start`.
set -euo pipefail

head="${RAY_HEAD_ADDRESS:?RAY_HEAD_ADDRESS (host:port of the Ray head) is not set}"
want="${RAY_WORKER_GPUS:-1}"
locks="${GPU_LOCK_DIR:-/data/gpu-locks}"

if [[ "$want" != all && ! "$want" =~ ^[0-9]+$ ]]; then
    echo "ray-worker: RAY_WORKER_GPUS=$want; allowed: a whole number or all" >&2
    exit 2
fi

claimed=()
if [[ "$want" != 0 ]]; then
    if ! command -v nvidia-smi > /dev/null; then
        echo "ray-worker: no nvidia-smi: is the NVIDIA Container Toolkit installed and" \
            "the GPU reservation in effect? (RAY_WORKER_GPUS=0 starts a CPU-only worker)" >&2
        exit 1
    fi
    mkdir -p "$locks"
    gpus=()
    while IFS=' ,' read -r index; do
        [[ -n "$index" ]] && gpus+=("$index")
    done < <(nvidia-smi --query-gpu=index --format=csv,noheader)
    for gpu in "${gpus[@]}"; do
        if [[ "$want" != all ]] && ((${#claimed[@]} >= want)); then
            break
        fi
        exec {fd}>>"$locks/gpu$gpu.lock"
        if flock --nonblock "$fd"; then
            claimed+=("$gpu")
        else
            exec {fd}>&-
        fi
    done
    if ((${#claimed[@]} == 0)) || { [[ "$want" != all ]] && ((${#claimed[@]} < want)); }; then
        echo "ray-worker: wanted $want free GPU(s), found ${#claimed[@]} of ${#gpus[@]}" \
            "(the other workers on this host hold the rest); scale down or lower" \
            "RAY_WORKER_GPUS" >&2
        exit 1
    fi
fi

export CUDA_VISIBLE_DEVICES
CUDA_VISIBLE_DEVICES="$(IFS=,; echo "${claimed[*]}")"
args=(--address="$head" --num-gpus="${#claimed[@]}" --block)
if [[ -n "${RAY_WORKER_CPUS:-}" ]]; then
    args+=(--num-cpus="$RAY_WORKER_CPUS")
fi
echo "ray-worker: GPUs [${CUDA_VISIBLE_DEVICES}] of this host; ray start ${args[*]} $*"
exec ray start "${args[@]}" "$@"

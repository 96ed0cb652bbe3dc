#!/usr/bin/env bash
# One prepared command for a machine with an NVIDIA GPU: does the `cuda` build link and pass
# the tests there, and what do the CPU configurations train per second on that machine.
# CUDA training itself is not implemented yet (README, "Run on a GPU"); this checks the
# build against the real driver, which a GPU-less builder cannot link.
#
#   bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== GPU"
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv
cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')"
if ! command -v nvcc >/dev/null 2>&1; then
  bash scripts/install_cuda_toolkit.sh "$HOME/.cache/opencarbon/cuda"
  # shellcheck disable=SC1091
  source "$HOME/.cache/opencarbon/cuda/env.sh"
fi
export CUDA_COMPUTE_CAP="$cap"

echo "== cargo build --release --features cuda (compute capability $cap)"
time cargo build --release --features cuda
echo "== cargo test --release --features cuda"
time cargo test --release --features cuda

echo "== CPU throughput on this machine"
cargo bench --bench epoch -- --epochs 2
cargo bench --bench epoch -- --config configs/models/opencarbon_paper.yaml --image-size 256 --tiles 64 --epochs 1

echo "== device: cuda (refused until CUDA training exists)"
if ./target/release/opencarbon run --device cuda experiments/quick.yaml; then
  echo "unexpected: a CUDA run succeeded" >&2
  exit 1
fi
echo "gpu_check: done"

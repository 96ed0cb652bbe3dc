#!/usr/bin/env bash
# One prepared command for a machine with an NVIDIA GPU: the `cuda` build against the real
# driver, every test with the CUDA kernel checks required to find the GPU (CPU vs GPU on
# the same inputs), a short experiment trained on the CPU and on the GPU from the same seeds
# with their metrics side by side, and training throughput (tiles/s) of the CPU
# configuration and of the 256 px ResNet-18 (paper) configuration on both devices.
#
#   bash scripts/gpu_check.sh            # about 10 min on 16 cores + one H100/H200
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
time cargo build --release --features cuda --all-targets
echo "== cargo test --release --features cuda (CUDA checks must find the GPU)"
time OPENCARBON_REQUIRE_GPU=1 cargo test --release --features cuda -- --nocapture cuda gpu
time cargo test --release --features cuda

echo "== experiments/quick.yaml on the CPU and on the GPU, same seeds"
tmp="$(mktemp -d)"
for dev in cpu cuda; do
  { cat experiments/quick.yaml; echo "results_dir: $tmp/$dev"; echo "cache_dir: $tmp/cache"; } \
    > "$tmp/quick_$dev.yaml"
  start=$SECONDS
  ./target/release/opencarbon -q run --device "$dev" "$tmp/quick_$dev.yaml"
  echo "$dev: $((SECONDS - start)) s wall"
done
python3 - "$tmp" <<'PY'
import json, pathlib, sys
tmp = pathlib.Path(sys.argv[1])
def runs(dev):
    out = {}
    for m in sorted((tmp / dev).glob("*/*/metrics.json")):
        man = json.loads((m.parent / "manifest.json").read_text())
        out[m.parent.name] = (json.loads(m.read_text()), man.get("device"), man["wall_seconds"])
    return out
cpu, gpu = runs("cpu"), runs("cuda")
print(f"{'run':<40} {'test R² cpu':>12} {'test R² gpu':>12} {'s cpu':>8} {'s gpu':>8}  device")
for run in sorted(cpu):
    (mc, _, sc), (mg, dg, sg) = cpu[run], gpu[run]
    print(f"{run:<40} {mc['test']['r2']:>12.4f} {mg['test']['r2']:>12.4f} {sc:>8.1f} {sg:>8.1f}  {dg}")
PY

echo "== training throughput (cargo bench --bench epoch)"
bench="cargo bench --features cuda --bench epoch --"
$bench --epochs 2
$bench --epochs 3 --device cuda
$bench --config configs/models/opencarbon_paper.yaml --image-size 256 --tiles 64 --epochs 1
$bench --config configs/models/opencarbon_paper.yaml --image-size 256 --epochs 2 --device cuda
echo "gpu_check: done"

#!/usr/bin/env bash
# Install a CUDA toolkit without root and without a GPU, from NVIDIA's CUDA 13 wheels on PyPI
# (the CUDA 12 `-cu12` wheels ship no nvcc), and assemble the folder dfdx/cudarc's build
# expects: CUDA_ROOT with bin/nvcc, include/, and unversioned lib/*.so links.
#
#   bash scripts/install_cuda_toolkit.sh [PREFIX]      # default ~/.cache/opencarbon/cuda
#   source PREFIX/env.sh
#   cargo build --release --features cuda
#
# env.sh sets CUDA_ROOT/CUDA_PATH, PATH (nvcc, and an `nvidia-smi` stand-in that reports
# compute capability 9.0 when the real one is missing: dfdx's build script calls it even
# with CUDA_COMPUTE_CAP set) and CUDA_COMPUTE_CAP=90 (H100/H200) unless already set.
# Linking also needs the driver library libcuda.so: present on a GPU machine (the NVIDIA
# driver). On a machine without one, scripts/make_cuda_driver_stub.sh builds a stand-in
# driver that reports "no device", and env.sh puts it on LD_LIBRARY_PATH, so that a cuda
# build links and its tests run (CUDA tests then report that no device was found).
set -euo pipefail
prefix="${1:-$HOME/.cache/opencarbon/cuda}"
mkdir -p "$prefix"
if [ ! -x "$prefix/venv/bin/python" ]; then
  python3 -m venv "$prefix/venv"
fi
"$prefix/venv/bin/pip" install -q \
  nvidia-cuda-nvcc nvidia-nvvm nvidia-cuda-crt nvidia-cuda-runtime nvidia-cublas \
  nvidia-curand nvidia-cuda-nvrtc nvidia-cuda-cccl
site="$("$prefix/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
root="$site/nvidia/cu13"
[ -x "$root/bin/nvcc" ] || { echo "no nvcc under $root" >&2; exit 1; }
# Unversioned names for the linker (libcublas.so -> libcublas.so.13, ...).
for lib in "$root"/lib/lib*.so.*; do
  base="${lib%%.so.*}.so"
  [ -e "$base" ] || ln -s "$(basename "$lib")" "$base"
done
mkdir -p "$prefix/bin"
if ! command -v nvidia-smi >/dev/null 2>&1; then
  cat > "$prefix/bin/nvidia-smi" <<'SMI'
#!/bin/sh
# Stand-in for dfdx's build script on a machine without a GPU: compute capability 9.0.
echo "compute_cap"
echo "9.0"
SMI
  chmod +x "$prefix/bin/nvidia-smi"
fi
stub_path=""
if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; then
  bash "$(dirname "$0")/make_cuda_driver_stub.sh" "$root"
  stub_path="$root/driver-stub:"
fi
cat > "$prefix/env.sh" <<ENV
export CUDA_ROOT="$root"
export CUDA_PATH="$root"
export PATH="$root/bin:$prefix/bin:\$PATH"
export LD_LIBRARY_PATH="$stub_path$root/lib:\${LD_LIBRARY_PATH:-}"
export CUDA_COMPUTE_CAP="\${CUDA_COMPUTE_CAP:-90}"
ENV
"$root/bin/nvcc" --version | tail -2
echo "CUDA toolkit ready: source $prefix/env.sh"

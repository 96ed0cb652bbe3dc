// Host-C++ stand-ins for the CUDA constructs used by src/nn/cuda/kernels.cu, force-included
// (g++ -include) by scripts/emulate_cuda_kernels.py, which compiles the kernels into a plain
// shared library and runs them sequentially on the CPU. Each call of a kernel function is
// one CUDA thread: the caller sets blockIdx/threadIdx/blockDim/gridDim (exported with C
// linkage, also settable through emu_set_launch) before each call. Kernels that use
// __syncthreads (block_sum) are only exact with blockDim.x == 1, where the block-wide
// reduction of one thread returns its input.
#pragma once
#include <cmath>
#include <math.h>

using std::isnan;
using std::sqrt;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __syncthreads() ((void)0)

struct emu_dim3 {
    unsigned int x, y, z;
};

extern "C" {
emu_dim3 threadIdx = {0, 0, 0};
emu_dim3 blockIdx = {0, 0, 0};
emu_dim3 blockDim = {1, 1, 1};
emu_dim3 gridDim = {1, 1, 1};

void emu_set_launch(unsigned int block_idx, unsigned int thread_idx, unsigned int block_dim,
                    unsigned int grid_dim) {
    blockIdx.x = block_idx;
    threadIdx.x = thread_idx;
    blockDim.x = block_dim;
    gridDim.x = grid_dim;
}
}

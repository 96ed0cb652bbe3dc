// CUDA kernels of our own layers (src/nn/cuda/mod.rs compiles this file with NVRTC at run
// time and launches it on dfdx's CUDA tensors). Each kernel mirrors a CPU kernel in
// src/nn/{conv,pool,norm,aggregate}.rs and sums in the same order where the CPU result is
// order-dependent, so that CPU and GPU agree to rounding. No atomics: every output value is
// written by exactly one thread, so results do not depend on scheduling.

// Geometry of one convolution or pooling call, and the images [n0, n0 + nc) of the batch
// handled by this launch (convolutions run in chunks of images to bound the im2col buffer).
struct Dims {
    int batch, c, h, w, o, k, stride, pad, oh, ow, n0, nc;
};

#define GRID_STRIDE(i, n) \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

// col[kk][q], kk = (c·k + i)·k + j over the patch, q = image·P + p over the chunk's output
// pixels (P = oh·ow): the layout [patch][chunk pixels] makes one GEMM per chunk.
extern "C" __global__ void im2col(const float *x, float *col, Dims d) {
    const long long P = (long long)d.oh * d.ow, Q = d.nc * P;
    const long long total = (long long)d.c * d.k * d.k * Q;
    GRID_STRIDE(idx, total) {
        const long long kk = idx / Q, q = idx % Q;
        const int img = (int)(q / P), p = (int)(q % P);
        const int oy = p / d.ow, ox = p % d.ow;
        const int c = (int)(kk / (d.k * d.k)), i = (int)(kk / d.k) % d.k, j = (int)(kk % d.k);
        const int iy = oy * d.stride - d.pad + i, ix = ox * d.stride - d.pad + j;
        float v = 0.0f;
        if (iy >= 0 && iy < d.h && ix >= 0 && ix < d.w) {
            v = x[(((long long)(d.n0 + img) * d.c + c) * d.h + iy) * d.w + ix];
        }
        col[idx] = v;
    }
}

// Input gradient of im2col for the chunk: every input value gathers the column entries it
// was copied to (no scatter, no atomics). Writes gx of images [n0, n0 + nc).
extern "C" __global__ void col2im(const float *gcol, float *gx, Dims d) {
    const long long P = (long long)d.oh * d.ow, Q = d.nc * P;
    const long long total = (long long)d.nc * d.c * d.h * d.w;
    GRID_STRIDE(idx, total) {
        const int x = (int)(idx % d.w), y = (int)((idx / d.w) % d.h);
        const int c = (int)((idx / ((long long)d.w * d.h)) % d.c);
        const int img = (int)(idx / ((long long)d.w * d.h * d.c));
        float sum = 0.0f;
        for (int i = 0; i < d.k; ++i) {
            const int ty = y + d.pad - i;
            if (ty < 0 || ty % d.stride != 0 || ty / d.stride >= d.oh) continue;
            for (int j = 0; j < d.k; ++j) {
                const int tx = x + d.pad - j;
                if (tx < 0 || tx % d.stride != 0 || tx / d.stride >= d.ow) continue;
                const long long kk = ((long long)c * d.k + i) * d.k + j;
                sum += gcol[kk * Q + img * P + (ty / d.stride) * d.ow + tx / d.stride];
            }
        }
        gx[(long long)d.n0 * d.c * d.h * d.w + idx] = sum;
    }
}

// NCHW output gradient of images [n0, n0 + nc) → [o][chunk pixels] (the GEMM's layout).
extern "C" __global__ void to_channel_major(const float *y, float *g, Dims d) {
    const long long P = (long long)d.oh * d.ow, Q = d.nc * P;
    GRID_STRIDE(idx, (long long)d.o * Q) {
        const long long o = idx / Q, q = idx % Q;
        const long long img = q / P, p = q % P;
        g[idx] = y[((d.n0 + img) * d.o + o) * P + p];
    }
}

// [o][chunk pixels] → NCHW output of images [n0, n0 + nc), plus the bias (may be null).
extern "C" __global__ void from_channel_major(const float *g, float *y, const float *bias,
                                              Dims d) {
    const long long P = (long long)d.oh * d.ow, Q = d.nc * P;
    GRID_STRIDE(idx, (long long)d.o * Q) {
        const long long o = idx / Q, q = idx % Q;
        const long long img = q / P, p = q % P;
        y[((d.n0 + img) * d.o + o) * P + p] = g[idx] + (bias ? bias[o] : 0.0f);
    }
}

// Block-wide sum of one value per thread (blockDim.x a power of two, at most 1024), in a
// fixed tree order; the result is valid in thread 0.
template <typename T> __device__ T block_sum(T v) {
    __shared__ T buf[1024];
    buf[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
        __syncthreads();
    }
    T r = buf[0];
    __syncthreads();
    return r;
}

// out[r] += Σ_q m[r][q] for a row-major [rows][cols] matrix: one block per row (bias
// gradients of a convolution chunk).
extern "C" __global__ void add_row_sums(const float *m, float *out, long long cols) {
    const long long r = blockIdx.x;
    double s = 0.0;
    for (long long q = threadIdx.x; q < cols; q += blockDim.x) s += m[r * cols + q];
    s = block_sum(s);
    if (threadIdx.x == 0) out[r] += (float)s;
}

// Sparse POI raster entries (linear NCHW index, value) into a zeroed dense batch.
extern "C" __global__ void scatter_entries(const unsigned long long *index, const float *value,
                                           float *dense, long long n) {
    GRID_STRIDE(e, n) { dense[index[e]] = value[e]; }
}

// The input position (within its plane) that wins output (oy, ox)'s window: the first
// maximum in row-major window order, padding never wins, NaN wins and stops the search
// (src/nn/pool.rs).
__device__ int pool_winner(const float *plane, int oy, int ox, const Dims &d) {
    float best = 0.0f;
    int at = -1;
    for (int ky = 0; ky < d.k; ++ky) {
        const int iy = oy * d.stride + ky - d.pad;
        if (iy < 0 || iy >= d.h) continue;
        for (int kx = 0; kx < d.k; ++kx) {
            const int ix = ox * d.stride + kx - d.pad;
            if (ix < 0 || ix >= d.w) continue;
            const float v = plane[iy * d.w + ix];
            if (at < 0 || v > best || isnan(v)) {
                best = v;
                at = iy * d.w + ix;
                if (isnan(v)) return at;
            }
        }
    }
    return at;
}

extern "C" __global__ void max_pool_forward(const float *x, float *y, Dims d) {
    const long long hw = (long long)d.h * d.w, ohw = (long long)d.oh * d.ow;
    GRID_STRIDE(idx, (long long)d.batch * d.c * ohw) {
        const long long plane = idx / ohw;
        const int p = (int)(idx % ohw);
        const float *xp = x + plane * hw;
        y[idx] = xp[pool_winner(xp, p / d.ow, p % d.ow, d)];
    }
}

// Each input value gathers the gradients of the windows it wins, in increasing output order
// (the CPU kernel's order of additions).
extern "C" __global__ void max_pool_backward(const float *x, const float *gy, float *gx,
                                             Dims d) {
    const long long hw = (long long)d.h * d.w, ohw = (long long)d.oh * d.ow;
    GRID_STRIDE(idx, (long long)d.batch * d.c * hw) {
        const long long plane = idx / hw;
        const int at = (int)(idx % hw), iy = at / d.w, ix = at % d.w;
        const float *xp = x + plane * hw;
        float sum = 0.0f;
        // Windows whose rows cover iy: oy·stride − pad ≤ iy ≤ oy·stride − pad + k − 1.
        for (int oy = 0; oy < d.oh; ++oy) {
            const int top = oy * d.stride - d.pad;
            if (iy < top || iy >= top + d.k) continue;
            for (int ox = 0; ox < d.ow; ++ox) {
                const int left = ox * d.stride - d.pad;
                if (ix < left || ix >= left + d.k) continue;
                if (pool_winner(xp, oy, ox, d) == at) sum += gy[plane * ohw + oy * d.ow + ox];
            }
        }
        gx[idx] = sum;
    }
}

// Batch statistics per channel (one block per channel): mean and biased variance, summed
// in double in two passes like the CPU kernel.
extern "C" __global__ void bn_batch_stats(const float *x, float *mean, float *var, int n,
                                          int c, long long hw) {
    const int ch = blockIdx.x;
    const long long count = (long long)n * hw;
    double s = 0.0;
    for (long long e = threadIdx.x; e < count; e += blockDim.x)
        s += x[((e / hw) * c + ch) * hw + e % hw];
    const double m = block_sum(s) / (double)count;
    double sq = 0.0;
    for (long long e = threadIdx.x; e < count; e += blockDim.x) {
        const double dv = (double)x[((e / hw) * c + ch) * hw + e % hw] - m;
        sq += dv * dv;
    }
    const double v = block_sum(sq) / (double)count;
    if (threadIdx.x == 0) {
        mean[ch] = (float)m;
        var[ch] = (float)v;
    }
}

// y = γ·x̂ + β, x̂ = (x − μ)/σ; saved = [x̂ (n·c·hw values), 1/σ (c values)].
extern "C" __global__ void bn_apply(const float *x, const float *mean, const float *var,
                                    const float *gamma, const float *beta, float *y,
                                    float *saved, int n, int c, long long hw, float eps) {
    const long long total = (long long)n * c * hw;
    GRID_STRIDE(idx, total) {
        const int ch = (int)((idx / hw) % c);
        const float inv_std = (float)(1.0 / sqrt((double)var[ch] + (double)eps));
        const float xh = (x[idx] - mean[ch]) * inv_std;
        saved[idx] = xh;
        y[idx] = gamma[ch] * xh + beta[ch];
        if (idx % hw == 0 && idx / hw < c) saved[total + ch] = inv_std;
    }
}

// Per channel (one block each): Σ dy and Σ dy·x̂ in double → sums[2c] (for dx) and the
// γ and β gradients.
extern "C" __global__ void bn_backward_sums(const float *gy, const float *saved, double *sums,
                                            float *g_gamma, float *g_beta, int n, int c,
                                            long long hw) {
    const int ch = blockIdx.x;
    const long long count = (long long)n * hw;
    double s_dy = 0.0, s_dyx = 0.0;
    for (long long e = threadIdx.x; e < count; e += blockDim.x) {
        const long long at = ((e / hw) * c + ch) * hw + e % hw;
        s_dy += gy[at];
        s_dyx += (double)gy[at] * (double)saved[at];
    }
    s_dy = block_sum(s_dy);
    s_dyx = block_sum(s_dyx);
    if (threadIdx.x == 0) {
        sums[ch] = s_dy;
        sums[c + ch] = s_dyx;
        g_beta[ch] = (float)s_dy;
        g_gamma[ch] = (float)s_dyx;
    }
}

// dx = γ/σ · (dy − mean(dy) − x̂·mean(dy·x̂)) in training, γ/σ · dy in evaluation.
extern "C" __global__ void bn_backward_input(const float *gy, const float *saved,
                                             const double *sums, const float *gamma, float *gx,
                                             int n, int c, long long hw, int train) {
    const long long total = (long long)n * c * hw;
    const double count = (double)n * (double)hw;
    GRID_STRIDE(idx, total) {
        const int ch = (int)((idx / hw) % c);
        const float scale = gamma[ch] * saved[total + ch];
        const float mean_dy = train ? (float)(sums[ch] / count) : 0.0f;
        const float mean_dyx = train ? (float)(sums[c + ch] / count) : 0.0f;
        gx[idx] = scale * (gy[idx] - mean_dy - saved[idx] * mean_dyx);
    }
}

// The neighbour of node i that wins feature f's maximum (first in list order), or −1.
__device__ long long agg_winner(const float *h, const long long *offsets,
                                const long long *targets, long long i, long long f,
                                long long width) {
    long long at = -1;
    float best = 0.0f;
    for (long long e = offsets[i]; e < offsets[i + 1]; ++e) {
        const float v = h[targets[e] * width + f];
        if (at < 0 || v > best) {
            best = v;
            at = targets[e];
        }
    }
    return at;
}

// how: 0 mean, 1 max. Nodes without neighbours get zeros.
extern "C" __global__ void aggregate_forward(const float *h, const long long *offsets,
                                             const long long *targets, float *y,
                                             long long nodes, long long width, int how) {
    GRID_STRIDE(idx, nodes * width) {
        const long long i = idx / width, f = idx % width;
        const long long deg = offsets[i + 1] - offsets[i];
        float out = 0.0f;
        if (deg > 0 && how == 0) {
            for (long long e = offsets[i]; e < offsets[i + 1]; ++e) out += h[targets[e] * width + f];
            out *= 1.0f / (float)deg;
        } else if (deg > 0) {
            out = h[agg_winner(h, offsets, targets, i, f, width) * width + f];
        }
        y[idx] = out;
    }
}

// Gradient for node j from the nodes i that list it (`rev_*`: the transposed lists, sources
// in increasing order, one entry per listing, the CPU kernel's order of additions).
extern "C" __global__ void aggregate_backward(const float *h, const float *gy,
                                              const long long *offsets,
                                              const long long *targets,
                                              const long long *rev_offsets,
                                              const long long *rev_sources, float *gh,
                                              long long nodes, long long width, int how) {
    GRID_STRIDE(idx, nodes * width) {
        const long long j = idx / width, f = idx % width;
        float sum = 0.0f;
        for (long long e = rev_offsets[j]; e < rev_offsets[j + 1]; ++e) {
            const long long i = rev_sources[e];
            if (how == 0) {
                sum += gy[i * width + f] * (1.0f / (float)(offsets[i + 1] - offsets[i]));
            } else if (e == rev_offsets[j] || rev_sources[e - 1] != i) {
                // A node listed twice by i still wins i's maximum once.
                if (agg_winner(h, offsets, targets, i, f, width) == j) sum += gy[i * width + f];
            }
        }
        gh[idx] = sum;
    }
}

extern "C" __global__ void accumulate(float *dst, const float *src, long long n) {
    GRID_STRIDE(i, n) { dst[i] += src[i]; }
}

// Adam (src/nn/params.rs, AdamStep::apply): one update of w in place.
struct AdamStep {
    float lr, beta1, beta2, correction1, correction2, eps, weight_decay, grad_scale;
};

extern "C" __global__ void adam_update(float *w, const float *g, float *m, float *v,
                                       long long n, AdamStep s) {
    GRID_STRIDE(i, n) {
        const float gi = s.grad_scale * g[i] + s.weight_decay * w[i];
        m[i] = s.beta1 * m[i] + (1.0f - s.beta1) * gi;
        v[i] = s.beta2 * v[i] + (1.0f - s.beta2) * gi * gi;
        w[i] -= s.lr * (m[i] / s.correction1) / (sqrtf(v[i] / s.correction2) + s.eps);
    }
}

// out[0] = Σ g² in double, one block (a gradient norm, asked for once per epoch).
extern "C" __global__ void sum_squares(const float *g, double *out, long long n) {
    double s = 0.0;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) s += (double)g[i] * (double)g[i];
    s = block_sum(s);
    if (threadIdx.x == 0) out[0] = s;
}

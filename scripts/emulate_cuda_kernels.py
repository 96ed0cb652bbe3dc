#!/usr/bin/env python3
"""CPU emulation of our CUDA layer kernels and their launcher, checked against PyTorch.

src/nn/cuda/kernels.cu is compiled as host C++ by g++ into a shared library (in a temp
dir), with scripts/cuda_host_shim.h force-included (-include): __global__/__device__ vanish,
__shared__ becomes static, __syncthreads() a no-op, and threadIdx/blockIdx/blockDim/gridDim
are exported globals that this script sets before each "thread" call. The library is
loaded with ctypes and driven by a literal Python port of src/nn/cuda/{mod,conv}.rs:

* every launch goes through `launch(name, cfg, args)`: the argument list is the one mod.rs
  passes, with the Rust-side types (CudaSlice<f32>, i32, i64, a raw u64 pointer, Dims,
  AdamStep), and is checked against the kernel's C signature parsed from kernels.cu (a
  type or arity mismatch is an error). Grid-stride launches (`elementwise`) run in two
  modes: one thread covering everything (blockDim = gridDim = 1), and a small emulated grid
  (3 blocks × 4 threads, every thread called in turn) that exercises the grid-stride start
  and step. Block-reduction launches (`per_row`: add_row_sums, bn_batch_stats,
  bn_backward_sums, sum_squares) run each blockIdx.x in range(grid) with blockDim.x = 1,
  where block_sum of one thread is exact.
* device buffers are numpy arrays with guard zones on both sides (checked after every
  launch: any out-of-bounds write is a failure); `alloc_out` (uninitialised) buffers are
  filled with NaN so that a value the kernels forget to write shows up.
* cuBLAS sgemm is emulated with its column-major semantics on the flat buffers
  (C = alpha·op(A)·op(B) + beta·C with m, n, k, lda, ldb, ldc, transa, transb exactly as
  mod.rs's `gemm(...)` fills GemmConfig, including cuBLAS's leading-dimension validity
  rules and a bounds check of every element it touches), so a wrong transpose or leading
  dimension in mod.rs shows up as a wrong result or an error.
* convolutions also run with a small column budget (several im2col chunks per batch, the
  last one short), as mod.rs's col_budget() lowered by the Rust tests.

Each output and gradient is compared with PyTorch on the CPU (conv2d with autograd,
max_pool2d, batch_norm in training and evaluation mode, torch.optim.Adam) or with a numpy
port of the CPU kernels' semantics (src/nn/aggregate.rs, src/nn/pool.rs, AdamStep::apply):
one line per check (name, max abs error, ok/FAIL); the exit status is non-zero on any
failure. Tolerance: |got − want| ≤ 1e-4·(1 + |want|) per value.

Run (no GPU, no cargo needed; g++, numpy and torch):
    python3 -m venv /tmp/emu
    /tmp/emu/bin/pip install numpy torch --index-url https://download.pytorch.org/whl/cpu
    /tmp/emu/bin/python scripts/emulate_cuda_kernels.py
(or `pip install -r scripts/requirements-torch.txt` from plain PyPI). Options:
    --kernels PATH   kernels.cu to check (default src/nn/cuda/kernels.cu)
    --quick          serial mode only (skip the 3×4 emulated grid)
"""

import argparse
import ctypes
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIM = os.path.join(REPO, "scripts", "cuda_host_shim.h")
TOL = 1e-4

# ---------------------------------------------------------------------------------------
# Building and loading the kernels


class Dims(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_int32)
        for name in "batch c h w o k stride pad oh ow n0 nc".split()
    ]


class AdamStep(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_float)
        for name in "lr beta1 beta2 correction1 correction2 eps weight_decay grad_scale".split()
    ]


def build_library(kernels_cu, tmp):
    so = os.path.join(tmp, "kernels_emu.so")
    cmd = [
        "g++", "-O1", "-g", "-std=c++17", "-shared", "-fPIC", "-Wall", "-Wextra",
        "-x", "c++", "-include", SHIM, kernels_cu, "-o", so,
    ]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("g++ failed:\n" + r.stderr)
    if r.stderr.strip():
        print("g++ warnings:\n" + r.stderr)
    return ctypes.CDLL(so)


C_TYPES = {
    "float*": "ptr:f32",
    "double*": "ptr:f64",
    "longlong*": "ptr:i64",
    "unsignedlonglong*": "ptr:u64",
    "int": "i32",
    "longlong": "i64",
    "float": "f32",
    "Dims": "Dims",
    "AdamStep": "AdamStep",
}


def parse_signatures(src):
    """{kernel: [param kind]} from the `extern "C" __global__ void name(...)` lines."""
    sigs = {}
    pat = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', re.S)
    for name, params in pat.findall(src):
        kinds = []
        for p in params.split(","):
            p = p.strip()
            m = re.match(r"(.*?)(\w+)$", p, re.S)
            ty = re.sub(r"\bconst\b", "", m.group(1))
            ty = re.sub(r"\s+", "", ty)
            if ty not in C_TYPES:
                raise SystemExit(f"{name}: parameter type `{ty}` not understood")
            kinds.append(C_TYPES[ty])
        sigs[name] = kinds
    return sigs


CTYPE_OF = {
    "i32": ctypes.c_int32,
    "i64": ctypes.c_int64,
    "f32": ctypes.c_float,
    "Dims": Dims,
    "AdamStep": AdamStep,
}

# ---------------------------------------------------------------------------------------
# Device memory: numpy buffers with guard zones

GUARD = 64
_SENTINEL = {np.float32: np.float32(-7.25e30), np.float64: -7.25e300, np.int64: -0x5A5A5A5A,
             np.uint64: 0xA5A5A5A5A5A5A5A5}
RUST_NAME = {np.float32: "f32", np.float64: "f64", np.int64: "i64", np.uint64: "u64"}


class Buf:
    """A CudaSlice<T> of `n` values (plus guard zones)."""

    def __init__(self, dtype, n, init="nan", data=None):
        self.dtype, self.n = dtype, n
        self.arr = np.full(n + 2 * GUARD, _SENTINEL[dtype], dtype=dtype)
        if data is not None:
            data = np.asarray(data, dtype=dtype).ravel()
            assert data.size == n, (data.size, n)
            self.view[:] = data
        elif init == "zeros":
            self.view[:] = 0
        elif init == "nan":
            self.view[:] = np.nan if np.issubdtype(dtype, np.floating) else 0x3C3C3C3C
        self.ptr = self.arr.ctypes.data + GUARD * self.arr.itemsize

    @property
    def view(self):
        return self.arr[GUARD:GUARD + self.n]

    def guards_intact(self):
        g = _SENTINEL[self.dtype]
        return bool(np.all(self.arr[:GUARD] == g) and np.all(self.arr[GUARD + self.n:] == g))

    def copy(self):
        return self.view.copy()


def htod(values, dtype=np.float32):
    values = np.asarray(values, dtype=dtype).ravel()
    return Buf(dtype, values.size, data=values)


def alloc_out(n):  # mod.rs alloc_out: uninitialised (NaN here)
    return Buf(np.float32, n, "nan")


def alloc_zeros(n, dtype=np.float32):
    return Buf(dtype, n, "zeros")


class RawPtr:
    """A raw device pointer passed as u64 (mod.rs's bias_ptr)."""

    def __init__(self, buf_or_none):
        self.buf = buf_or_none
        self.value = 0 if buf_or_none is None else buf_or_none.ptr


def I32(v):
    assert -2**31 <= v < 2**31
    return ("i32", int(v))


def I64(v):
    return ("i64", int(v))


def F32(v):
    return ("f32", float(v))


# ---------------------------------------------------------------------------------------
# Launching (LaunchConfig as mod.rs builds it, then the emulation)

THREADS = 256  # mod.rs THREADS


def elementwise(n):  # mod.rs elementwise()
    blocks = min(max(-(-n // THREADS), 1), 1 << 20)
    return ("elementwise", blocks, THREADS)


def per_row(rows):  # mod.rs per_row()
    return ("per_row", rows, THREADS)


class Emulator:
    def __init__(self, lib, sigs, grid_mode):
        self.lib, self.sigs = lib, sigs
        self.grid_mode = grid_mode  # "serial" or "grid"
        self.emu_grid, self.emu_block = 3, 4
        self.set_launch = lib.emu_set_launch
        self.set_launch.argtypes = [ctypes.c_uint] * 4
        self.set_launch.restype = None
        self.fns = {}
        for name, kinds in sigs.items():
            fn = getattr(lib, name)
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p if k.startswith("ptr:") else CTYPE_OF[k] for k in kinds]
            self.fns[name] = fn

    def launch(self, name, cfg, args):
        kinds = self.sigs[name]
        if len(kinds) != len(args):
            raise LaunchError(f"{name}: {len(args)} arguments passed, kernel takes {len(kinds)}")
        cargs, bufs = [], []
        for i, (kind, a) in enumerate(zip(kinds, args)):
            if isinstance(a, Buf):
                rust = "slice<" + RUST_NAME[a.dtype] + ">"
                if kind != "ptr:" + RUST_NAME[a.dtype]:
                    raise LaunchError(f"{name} arg {i}: {rust} passed for a {kind}")
                cargs.append(ctypes.c_void_p(a.ptr))
                bufs.append(a)
            elif isinstance(a, RawPtr):
                if not kind.startswith("ptr:"):
                    raise LaunchError(f"{name} arg {i}: u64 pointer passed for a {kind}")
                cargs.append(ctypes.c_void_p(a.value or None))
                if a.buf is not None:
                    bufs.append(a.buf)
            elif isinstance(a, (Dims, AdamStep)):
                if kind != type(a).__name__:
                    raise LaunchError(f"{name} arg {i}: {type(a).__name__} passed for a {kind}")
                cargs.append(a)
            else:
                rust, v = a
                if kind != rust:
                    raise LaunchError(f"{name} arg {i}: {rust} passed for a {kind}")
                cargs.append(CTYPE_OF[kind](v))
        fn = self.fns[name]
        how, grid, block = cfg
        if grid < 1 or block < 1:
            raise LaunchError(f"{name}: empty launch {cfg}")
        if how == "per_row":
            # One block per row; blockDim.x = 1 makes block_sum exact sequentially.
            for b in range(grid):
                self.set_launch(b, 0, 1, grid)
                fn(*cargs)
        elif self.grid_mode == "serial":
            self.set_launch(0, 0, 1, 1)
            fn(*cargs)
        else:
            for b in range(self.emu_grid):
                for t in range(self.emu_block):
                    self.set_launch(b, t, self.emu_block, self.emu_grid)
                    fn(*cargs)
        for b in bufs:
            if not b.guards_intact():
                raise LaunchError(f"{name}: wrote outside a buffer of {b.n} values")


class LaunchError(Exception):
    pass


# ---------------------------------------------------------------------------------------
# cuBLAS sgemm, column-major, on flat buffers


def _colmajor_index(rows, cols, ld, n_avail, what):
    if rows == 0 or cols == 0:
        return np.zeros((rows, cols), dtype=np.int64)
    idx = np.arange(rows)[:, None] + np.arange(cols)[None, :] * ld
    if idx.max() >= n_avail:
        raise LaunchError(f"sgemm reads/writes {what} up to [{idx.max()}], buffer has {n_avail}")
    return idx


def sgemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """cublasSgemm: C(m×n) = alpha·op(A)·op(B) + beta·C, all column-major."""
    if min(m, n, k) < 0:
        raise LaunchError("sgemm: negative size")
    # cuBLAS returns CUBLAS_STATUS_INVALID_VALUE for these.
    if lda < max(1, k if transa else m):
        raise LaunchError(f"sgemm: lda={lda} < {'k' if transa else 'm'}={k if transa else m}")
    if ldb < max(1, n if transb else k):
        raise LaunchError(f"sgemm: ldb={ldb} < {'n' if transb else 'k'}={n if transb else k}")
    if ldc < max(1, m):
        raise LaunchError(f"sgemm: ldc={ldc} < m={m}")
    if transa:  # A stored k×m
        A = a.view[_colmajor_index(k, m, lda, a.n, "A")].T
    else:
        A = a.view[_colmajor_index(m, k, lda, a.n, "A")]
    if transb:  # B stored n×k
        B = b.view[_colmajor_index(n, k, ldb, b.n, "B")].T
    else:
        B = b.view[_colmajor_index(k, n, ldb, b.n, "B")]
    ci = _colmajor_index(m, n, ldc, c.n, "C")
    out = alpha * (A.astype(np.float64) @ B.astype(np.float64))
    if beta != 0:  # cuBLAS does not read C when beta == 0
        out = out + beta * c.view[ci].astype(np.float64)
    c.view[ci] = out.astype(np.float32)


def gemm(trans, mnk, a, lda, b, ldb, c, ldc, accumulate):
    """mod.rs gemm(): fills GemmConfig exactly like this and calls cublasSgemm."""
    (trans_a, trans_b), (m, n, k) = trans, mnk
    for v in (m, n, k, lda, ldb, ldc):
        assert 0 <= v < 2**31, "GEMM size exceeds i32"
    sgemm(trans_a, trans_b, m, n, k, 1.0, a, lda, b, ldb, 1.0 if accumulate else 0.0, c, ldc)


# ---------------------------------------------------------------------------------------
# Port of src/nn/cuda/{mod,conv}.rs


@dataclass
class Geometry:  # src/nn/conv.rs Conv2dGeometry
    batch: int
    in_channels: int
    height: int
    width: int
    out_channels: int
    kernel: int
    stride: int
    padding: int

    def out_height(self):
        return (self.height + 2 * self.padding - self.kernel) // self.stride + 1

    def out_width(self):
        return (self.width + 2 * self.padding - self.kernel) // self.stride + 1

    def input_len(self):
        return self.batch * self.in_channels * self.height * self.width

    def patch_len(self):
        return self.in_channels * self.kernel * self.kernel


COL_BUDGET = 64 << 20


class Port:
    def __init__(self, emu, col_budget=COL_BUDGET):
        self.emu, self.budget = emu, col_budget

    def launch(self, name, cfg, args):
        self.emu.launch(name, cfg, args)

    # -- geometry helpers --------------------------------------------------------------
    @staticmethod
    def dims(g, n0, nc):
        return Dims(g.batch, g.in_channels, g.height, g.width, g.out_channels, g.kernel,
                    g.stride, g.padding, g.out_height(), g.out_width(), n0, nc)

    def chunk_images(self, g):
        per_image = g.patch_len() * g.out_height() * g.out_width()
        return min(max(self.budget // max(per_image, 1), 1), max(g.batch, 1))

    def chunks(self, g):
        step = self.chunk_images(g)
        return [(n0, min(step, g.batch - n0)) for n0 in range(0, g.batch, step)]

    # -- convolutions ------------------------------------------------------------------
    def conv_forward_buffer(self, g, x, w, bias):
        k, p = g.patch_len(), g.out_height() * g.out_width()
        y = alloc_out(g.batch * g.out_channels * p)
        max_q = self.chunk_images(g) * p
        col = alloc_out(k * max_q)
        yt = alloc_out(g.out_channels * max_q)
        bias_ptr = RawPtr(bias)
        for n0, nc in self.chunks(g):
            d, q = self.dims(g, n0, nc), nc * p
            self.launch("im2col", elementwise(k * q), (x, col, d))
            gemm((False, False), (q, g.out_channels, k), col, q, w, k, yt, q, False)
            self.launch("from_channel_major", elementwise(g.out_channels * q),
                        (yt, y, bias_ptr, d))
        return y

    def conv_backward_buffer(self, g, x, w, has_bias, need_x, grad_out):
        k, p, o = g.patch_len(), g.out_height() * g.out_width(), g.out_channels
        max_q = self.chunk_images(g) * p
        col = alloc_out(k * max_q)
        gt = alloc_out(o * max_q)
        gcol = alloc_out(k * max_q) if need_x else None
        gx = alloc_out(g.input_len()) if need_x else None
        gw = alloc_zeros(o * k)
        gb = alloc_zeros(o) if has_bias else None
        for n0, nc in self.chunks(g):
            d, q = self.dims(g, n0, nc), nc * p
            self.launch("im2col", elementwise(k * q), (x, col, d))
            self.launch("to_channel_major", elementwise(o * q), (grad_out, gt, d))
            gemm((True, False), (k, o, q), col, q, gt, q, gw, k, True)
            if gb is not None:
                self.launch("add_row_sums", per_row(o), (gt, gb, I64(q)))
            if gcol is not None and gx is not None:
                assert w is not None, "the input gradient needs the weights"
                gemm((False, True), (q, k, o), gt, q, w, k, gcol, q, False)
                self.launch("col2im", elementwise(nc * g.in_channels * g.height * g.width),
                            (gcol, gx, d))
        return gx, gw, gb

    def densify(self, sb):
        hw = sb.size * sb.size
        index = [((n * sb.channels + c) * hw + r * sb.size + col) for (n, c, r, col, v) in sb.entries]
        value = [v for (*_, v) in sb.entries]
        dense = alloc_zeros(max(sb.batch * sb.channels * hw, 1))
        entries = len(index)
        if entries > 0:
            index_b, value_b = htod(index, np.uint64), htod(value, np.float32)
            self.launch("scatter_entries", elementwise(entries),
                        (index_b, value_b, dense, I64(entries)))
        return dense

    def conv2d_forward(self, g, x, w, bias):
        return self.conv_forward_buffer(g, x, w, bias)

    def conv2d_backward(self, g, x, w, has_bias, need_x, grad_out):
        return self.conv_backward_buffer(g, x, w, has_bias, need_x, grad_out)

    def sparse_conv2d_forward(self, g, sb, w, bias):
        return self.conv_forward_buffer(g, self.densify(sb), w, bias)

    def sparse_conv2d_backward(self, g, sb, has_bias, grad_out):
        dense = self.densify(sb)
        return self.conv_backward_buffer(g, dense, None, has_bias, False, grad_out)

    # -- pooling -----------------------------------------------------------------------
    def pool_dims(self, g):
        return self.dims(g, 0, g.batch)

    def max_pool2d_forward(self, g, x):
        n = g.batch * g.in_channels * g.out_height() * g.out_width()
        y = alloc_out(n)
        self.launch("max_pool_forward", elementwise(n), (x, y, self.pool_dims(g)))
        return y

    def max_pool2d_backward(self, g, x, grad_out):
        gx = alloc_out(g.input_len())
        self.launch("max_pool_backward", elementwise(g.input_len()),
                    (x, grad_out, gx, self.pool_dims(g)))
        return gx

    # -- batch norm --------------------------------------------------------------------
    def batch_norm_forward(self, shape, x, gamma, beta, running, eps):
        n, c, h, w = shape
        length, hw = n * c * h * w, h * w
        batch = None
        if running is None:
            m, v = alloc_out(c), alloc_out(c)
            self.launch("bn_batch_stats", per_row(c), (x, m, v, I32(n), I32(c), I64(hw)))
            batch = (m, v)
        mean, var = batch if batch is not None else running
        y = alloc_out(length)
        saved = alloc_out(length + c)
        self.launch("bn_apply", elementwise(length),
                    (x, mean, var, gamma, beta, y, saved, I32(n), I32(c), I64(hw), F32(eps)))
        return y, saved, batch

    def batch_norm_backward(self, shape, saved, gamma, train, grad_out):
        n, c, h, w = shape
        length, hw = n * c * h * w, h * w
        sums = alloc_zeros(2 * c, np.float64)
        g_gamma, g_beta = alloc_out(c), alloc_out(c)
        self.launch("bn_backward_sums", per_row(c),
                    (grad_out, saved, sums, g_gamma, g_beta, I32(n), I32(c), I64(hw)))
        gx = alloc_out(length)
        self.launch("bn_backward_input", elementwise(length),
                    (grad_out, saved, sums, gamma, gx, I32(n), I32(c), I64(hw),
                     I32(int(train))))
        return gx, g_gamma, g_beta

    # -- aggregation -------------------------------------------------------------------
    @staticmethod
    def upload_lists(offsets, targets, reverse):
        nodes = len(offsets) - 1
        if reverse:
            counts = [0] * (nodes + 1)
            for t in targets:
                counts[t + 1] += 1
            for i in range(nodes):
                counts[i + 1] += counts[i]
            fill = list(counts)
            sources = [0] * len(targets)
            for i in range(nodes):
                for t in targets[offsets[i]:offsets[i + 1]]:
                    sources[fill[t]] = i
                    fill[t] += 1
            rev_offsets, rev_sources = counts, sources
        else:
            rev_offsets, rev_sources = [0], [0]

        def up(v):
            return htod(v if len(v) else [0], np.int64)

        return up(offsets), up(targets), up(rev_offsets), up(rev_sources)

    def aggregate_forward(self, lists, h, shape, how_max):
        off, tgt, _, _ = self.upload_lists(*lists, False)
        y = alloc_out(shape[0] * shape[1])
        self.launch("aggregate_forward", elementwise(shape[0] * shape[1]),
                    (h, off, tgt, y, I64(shape[0]), I64(shape[1]), I32(int(how_max))))
        saved = h if how_max else None
        return y, saved

    def aggregate_backward(self, lists, saved_h, shape, how_max, grad_out):
        off, tgt, roff, rsrc = self.upload_lists(*lists, True)
        gh = alloc_out(shape[0] * shape[1])
        h = grad_out if saved_h is None else saved_h
        self.launch("aggregate_backward", elementwise(shape[0] * shape[1]),
                    (h, grad_out, off, tgt, roff, rsrc, gh, I64(shape[0]), I64(shape[1]),
                     I32(int(how_max))))
        return gh

    # -- optimiser ---------------------------------------------------------------------
    def accumulate(self, dst, src):
        n = src.n
        self.launch("accumulate", elementwise(n), (dst, src, I64(n)))

    def adam_update(self, w, g, m, v, step, norm2):
        n = g.n
        if norm2 is not None:
            out = alloc_zeros(1, np.float64)
            self.launch("sum_squares", per_row(1), (g, out, I64(n)))
            norm2[0] += float(out.view[0])
        self.launch("adam_update", elementwise(n), (w, g, m, v, I64(n), step))


# ---------------------------------------------------------------------------------------
# Checks

RESULTS = []


def check(name, got, want, tol=TOL, info=False):
    got = np.asarray(got, dtype=np.float64).ravel()
    want = np.asarray(want, dtype=np.float64).ravel()
    if got.shape != want.shape:
        ok, err = False, float("inf")
        detail = f" (shape {got.shape} vs {want.shape})"
    else:
        both_nan = np.isnan(got) & np.isnan(want)
        diff = np.where(both_nan, 0.0, np.abs(got - want))
        diff = np.where(np.isnan(diff), np.inf, diff)
        err = float(diff.max()) if diff.size else 0.0
        bad = diff > tol * (1.0 + np.where(np.isnan(want), 0.0, np.abs(want)))
        ok = not bad.any()
        detail = ""
        if not ok:
            i = int(np.argmax(bad))
            detail = f" (first bad [{i}]: got {got[i]:.6g}, want {want[i]:.6g}; {int(bad.sum())} bad of {bad.size})"
    status = "ok" if ok else ("DIFF (info only)" if info else "FAIL")
    print(f"{name:<62} max_abs_err={err:<11.3e} {status}{detail}")
    if not info:
        RESULTS.append(ok)


def fail(name, why):
    print(f"{name:<62} {'':<23} FAIL ({why})")
    RESULTS.append(False)


def run(name, fn):
    try:
        fn()
    except LaunchError as e:
        fail(name, f"launch error: {e}")


def rng_array(rng, shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


def conv_checks(port, tag, rng):
    cases = [
        # (x shape, w shape, stride, pad, bias)
        ((3, 2, 9, 8), (4, 2, 3, 3), 1, 1, True),
        ((3, 2, 9, 8), (4, 2, 3, 3), 2, 1, False),
        ((5, 3, 10, 11), (2, 3, 3, 3), 2, 0, True),
        ((3, 3, 16, 14), (5, 3, 7, 7), 2, 3, True),
        ((2, 2, 12, 12), (3, 2, 7, 7), 1, 3, False),
        ((4, 3, 6, 6), (6, 3, 1, 1), 1, 0, True),
    ]
    for xs, ws, s, pd, has_bias in cases:
        g = Geometry(xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], s, pd)
        x, w = rng_array(rng, xs), rng_array(rng, ws)
        b = rng_array(rng, (ws[0],)) if has_bias else None
        xt = torch.tensor(x, requires_grad=True)
        wt = torch.tensor(w, requires_grad=True)
        bt = torch.tensor(b, requires_grad=True) if has_bias else None
        yt = F.conv2d(xt, wt, bt, stride=s, padding=pd)
        up = rng_array(rng, tuple(yt.shape))
        (yt * torch.tensor(up)).sum().backward()
        per_image = g.patch_len() * g.out_height() * g.out_width()
        for budget_name, budget in [("1 chunk", COL_BUDGET), ("chunks of 2", 2 * per_image + 1),
                                    ("chunks of 1", per_image)]:
            p = Port(port.emu, budget)
            nchunks = len(p.chunks(g))
            name = f"[{tag}] conv x{xs} w{ws} s{s} p{pd} {'bias' if has_bias else 'nobias'} {budget_name}({nchunks})"

            def body():
                y = p.conv2d_forward(g, htod(x), htod(w), htod(b) if has_bias else None)
                check(name + " y", y.view, yt.detach().numpy())
                gx, gw, gb = p.conv2d_backward(g, htod(x), htod(w), has_bias, True, htod(up))
                check(name + " gx", gx.view, xt.grad.numpy())
                check(name + " gw", gw.view, wt.grad.numpy())
                if has_bias:
                    check(name + " gb", gb.view, bt.grad.numpy())
            run(name, body)


@dataclass
class SparseBatch:
    batch: int
    channels: int
    size: int
    entries: list


def sparse_conv_checks(port, tag, rng):
    n, c, size = 3, 4, 10
    cells = rng.choice(n * c * size * size, size=37, replace=False)
    entries = []
    dense = np.zeros((n, c, size, size), np.float32)
    for cell in cells:
        bn, rem = divmod(int(cell), c * size * size)
        ch, rem = divmod(rem, size * size)
        r, col = divmod(rem, size)
        v = float(np.float32(rng.uniform(0.1, 3.0)))
        entries.append((bn, ch, r, col, v))
        dense[bn, ch, r, col] = v
    sb = SparseBatch(n, c, size, entries)
    for (k, s, pd, has_bias) in [(3, 1, 1, True), (7, 2, 3, False)]:
        o = 5
        g = Geometry(n, c, size, size, o, k, s, pd)
        w = rng_array(rng, (o, c, k, k))
        b = rng_array(rng, (o,)) if has_bias else None
        wt = torch.tensor(w, requires_grad=True)
        bt = torch.tensor(b, requires_grad=True) if has_bias else None
        yt = F.conv2d(torch.tensor(dense), wt, bt, stride=s, padding=pd)
        up = rng_array(rng, tuple(yt.shape))
        (yt * torch.tensor(up)).sum().backward()
        per_image = g.patch_len() * g.out_height() * g.out_width()
        for budget_name, budget in [("1 chunk", COL_BUDGET), ("chunks of 1", per_image)]:
            p = Port(port.emu, budget)
            name = f"[{tag}] sparse conv k{k} s{s} p{pd} {'bias' if has_bias else 'nobias'} {budget_name}"

            def body():
                y = p.sparse_conv2d_forward(g, sb, htod(w), htod(b) if has_bias else None)
                check(name + " y", y.view, yt.detach().numpy())
                gx, gw, gb = p.sparse_conv2d_backward(g, sb, has_bias, htod(up))
                if gx is not None:
                    fail(name, "sparse backward returned an input gradient")
                check(name + " gw", gw.view, wt.grad.numpy())
                if has_bias:
                    check(name + " gb", gb.view, bt.grad.numpy())
            run(name, body)


def pool_reference(g, x, gy):
    """Numpy port of src/nn/pool.rs for_each_winner (forward and backward)."""
    h, w, oh, ow = g.height, g.width, g.out_height(), g.out_width()
    xf = x.reshape(-1, h * w)
    y = np.zeros((xf.shape[0], oh * ow), np.float32)
    gx = np.zeros_like(xf)
    gyf = gy.reshape(-1, oh * ow) if gy is not None else None
    for plane in range(xf.shape[0]):
        for oy in range(oh):
            for ox in range(ow):
                best_v, best_at = -np.inf, None
                for ky in range(g.kernel):
                    iy = oy * g.stride + ky - g.padding
                    if iy < 0 or iy >= h:
                        continue
                    for kx in range(g.kernel):
                        ix = ox * g.stride + kx - g.padding
                        if ix < 0 or ix >= w:
                            continue
                        v = xf[plane, iy * w + ix]
                        if v > best_v or best_at is None or np.isnan(v):
                            best_v, best_at = v, iy * w + ix
                            if np.isnan(v):
                                break  # pool.rs: leaves the kx loop only
                y[plane, oy * ow + ox] = xf[plane, best_at]
                if gyf is not None:
                    gx[plane, best_at] += gyf[plane, oy * ow + ox]
    return y.ravel(), gx.ravel()


def pool_checks(port, tag, rng):
    for shape in [(2, 3, 9, 8), (1, 2, 7, 10)]:
        g = Geometry(shape[0], shape[1], shape[2], shape[3], shape[1], 3, 2, 1)
        # Small integers: many ties within windows.
        x = rng.integers(-3, 4, size=shape).astype(np.float32)
        x[0, 0, 0:3, 0:3] = 2.0  # an explicit tie inside a window
        xt = torch.tensor(x, requires_grad=True)
        yt = F.max_pool2d(xt, kernel_size=3, stride=2, padding=1)
        up = rng_array(rng, tuple(yt.shape))
        (yt * torch.tensor(up)).sum().backward()
        ref_y, ref_gx = pool_reference(g, x, up)
        name = f"[{tag}] max_pool k3 s2 p1 x{shape} (ties)"

        def body():
            y = port.max_pool2d_forward(g, htod(x))
            check(name + " y vs torch", y.view, yt.detach().numpy())
            check(name + " y vs pool.rs", y.view, ref_y)
            gx = port.max_pool2d_backward(g, htod(x), htod(up))
            check(name + " gx vs torch", gx.view, xt.grad.numpy())
            check(name + " gx vs pool.rs", gx.view, ref_gx)
        run(name, body)
    # NaN in a window: a single NaN per window (all implementations agree on the winner).
    g = Geometry(1, 1, 6, 6, 1, 3, 2, 1)
    x = rng_array(rng, (1, 1, 6, 6))
    x[0, 0, 2, 3] = np.nan
    up = rng_array(rng, (1, 1, g.out_height(), g.out_width()))
    ref_y, ref_gx = pool_reference(g, x, up)

    def body_nan():
        y = port.max_pool2d_forward(g, htod(x))
        check(f"[{tag}] max_pool one NaN y vs pool.rs", y.view, ref_y)
        gx = port.max_pool2d_backward(g, htod(x), htod(up))
        check(f"[{tag}] max_pool one NaN gx vs pool.rs", gx.view, ref_gx)
    run("max_pool NaN", body_nan)
    # Two NaNs in different rows of one window: pool.rs's `break` leaves only the kx loop
    # (so a later row's NaN wins), the CUDA pool_winner returns at the first NaN.
    x2 = x.copy()
    x2[0, 0, 0, 0] = np.nan
    x2[0, 0, 1, 1] = np.nan
    x2[0, 0, 2, 3] = 0.5
    ref_y, ref_gx = pool_reference(g, x2, up)

    def body_nan2():
        gx = port.max_pool2d_backward(g, htod(x2), htod(up))
        check(f"[{tag}] max_pool NaNs in 2 rows of a window gx vs pool.rs", gx.view, ref_gx,
              info=True)
    run("max_pool NaN2", body_nan2)


def bn_checks(port, tag, rng):
    eps = 1e-5
    for shape in [(4, 3, 5, 6), (2, 5, 3, 1), (1, 2, 4, 4)]:
        n, c, h, w = shape
        x = (rng_array(rng, shape) * 2 + 0.5).astype(np.float32)
        gamma, beta = rng_array(rng, (c,), 0.5, 1.5), rng_array(rng, (c,))
        up = rng_array(rng, shape)
        # Training.
        xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        gt = torch.tensor(gamma, dtype=torch.float64, requires_grad=True)
        btt = torch.tensor(beta, dtype=torch.float64, requires_grad=True)
        yt = F.batch_norm(xt, None, None, gt, btt, training=True, eps=eps)
        (yt * torch.tensor(up, dtype=torch.float64)).sum().backward()
        name = f"[{tag}] batch_norm train x{shape}"

        def check_output_and_grads(name, y, saved, train, yt, xt, gt, btt):
            """Output against torch, then the backward pass's x, γ and β gradients."""
            check(name + " y", y.view, yt.detach().numpy())
            gx, gg, gb = port.batch_norm_backward(shape, saved, htod(gamma), train, htod(up))
            check(name + " gx", gx.view, xt.grad.numpy())
            check(name + " ggamma", gg.view, gt.grad.numpy())
            check(name + " gbeta", gb.view, btt.grad.numpy())

        def body_train():
            y, saved, stats = port.batch_norm_forward(shape, htod(x), htod(gamma), htod(beta),
                                                      None, eps)
            x64 = x.astype(np.float64)
            check(name + " batch mean", stats[0].view, x64.mean(axis=(0, 2, 3)))
            check(name + " batch var (biased)", stats[1].view, x64.var(axis=(0, 2, 3)))
            check_output_and_grads(name, y, saved, True, yt, xt, gt, btt)
        run(name, body_train)
        # Evaluation with running statistics.
        rm, rv = rng_array(rng, (c,)), rng_array(rng, (c,), 0.3, 2.0)
        xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        gt = torch.tensor(gamma, dtype=torch.float64, requires_grad=True)
        btt = torch.tensor(beta, dtype=torch.float64, requires_grad=True)
        yt = F.batch_norm(xt, torch.tensor(rm, dtype=torch.float64),
                          torch.tensor(rv, dtype=torch.float64), gt, btt, training=False, eps=eps)
        (yt * torch.tensor(up, dtype=torch.float64)).sum().backward()
        name = f"[{tag}] batch_norm eval x{shape}"

        def body_eval():
            y, saved, stats = port.batch_norm_forward(shape, htod(x), htod(gamma), htod(beta),
                                                      (htod(rm), htod(rv)), eps)
            if stats is not None:
                fail(name, "evaluation returned batch statistics")
            check_output_and_grads(name, y, saved, False, yt, xt, gt, btt)
        run(name, body_eval)


def aggregate_reference(offsets, targets, h, gy, how_max):
    """Numpy port of src/nn/aggregate.rs."""
    nodes, width = h.shape
    y = np.zeros_like(h)
    gh = np.zeros_like(h)
    for i in range(nodes):
        nb = targets[offsets[i]:offsets[i + 1]]
        if not nb:
            continue
        if not how_max:
            inv = np.float32(1.0) / np.float32(len(nb))
            for j in nb:
                y[i] += h[j]
                gh[j] += gy[i] * inv
            y[i] *= inv
        else:
            for f in range(width):
                best = None
                for j in nb:
                    if best is None or h[j, f] > best[0]:
                        best = (h[j, f], j)
                y[i, f] = h[best[1], f]
                gh[best[1], f] += gy[i, f]
    return y, gh


def aggregate_checks(port, tag, rng):
    graphs = {
        # path 0-1-2, 2 also linked to 0, node 3 isolated (aggregate.rs's test graph)
        "small": ([0, 2, 4, 6, 6], [1, 2, 0, 2, 0, 1]),
        # node 0 lists node 2 twice, node 4 isolated, unsorted list, self loop, sink node 5
        "dup+unsorted": ([0, 4, 6, 6, 9, 9, 11], [2, 1, 2, 5, 0, 0, 3, 1, 0, 3, 2]),
        "no edges": ([0, 0, 0, 0], []),
    }
    width = 5
    for gname, (offsets, targets) in graphs.items():
        nodes = len(offsets) - 1
        for how_max in (False, True):
            for values in ("random", "ties"):
                if values == "ties":
                    h = rng.integers(-2, 3, size=(nodes, width)).astype(np.float32)
                else:
                    h = rng_array(rng, (nodes, width))
                gy = rng_array(rng, (nodes, width))
                ref_y, ref_gh = aggregate_reference(offsets, targets, h, gy, how_max)
                name = f"[{tag}] aggregate {'max' if how_max else 'mean'} {gname} {values}"
                shape = (nodes, width)

                def body():
                    y, saved = port.aggregate_forward((offsets, targets), htod(h), shape, how_max)
                    check(name + " y", y.view, ref_y)
                    gh = port.aggregate_backward((offsets, targets), saved, shape, how_max, htod(gy))
                    check(name + " gh", gh.view, ref_gh)
                run(name, body)
    # Mean against torch autograd as well (index_add based), on the dup+unsorted graph.
    offsets, targets = graphs["dup+unsorted"]
    nodes = len(offsets) - 1
    h = rng_array(rng, (nodes, width))
    gy = rng_array(rng, (nodes, width))
    ht = torch.tensor(h, dtype=torch.float64, requires_grad=True)
    rows = []
    for i in range(nodes):
        nb = targets[offsets[i]:offsets[i + 1]]
        rows.append(ht[nb].mean(0) if nb else torch.zeros(width, dtype=torch.float64))
    yt = torch.stack(rows)
    (yt * torch.tensor(gy, dtype=torch.float64)).sum().backward()

    def body_t():
        y, saved = port.aggregate_forward((offsets, targets), htod(h), (nodes, width), False)
        check(f"[{tag}] aggregate mean dup+unsorted y vs torch", y.view, yt.detach().numpy())
        gh = port.aggregate_backward((offsets, targets), saved, (nodes, width), False, htod(gy))
        check(f"[{tag}] aggregate mean dup+unsorted gh vs torch", gh.view, ht.grad.numpy())
    run("aggregate torch", body_t)


def adam_reference_step(w, g, m, v, s):
    """Numpy port of AdamStep::apply (f32 arithmetic)."""
    f = np.float32
    gi = f(s.grad_scale) * g + f(s.weight_decay) * w
    m[:] = f(s.beta1) * m + (f(1) - f(s.beta1)) * gi
    v[:] = f(s.beta2) * v + (f(1) - f(s.beta2)) * gi * gi
    w[:] = w - f(s.lr) * (m / f(s.correction1)) / (np.sqrt(v / f(s.correction2)) + f(s.eps))


def adam_checks(port, tag, rng):
    n = 1000
    lr, b1, b2, eps, wd = 1e-2, 0.9, 0.999, 1e-8, 1e-2
    w0 = rng_array(rng, (n,))
    grads = [rng_array(rng, (n,)) for _ in range(5)]
    wt = torch.tensor(w0.copy(), requires_grad=True)
    opt = torch.optim.Adam([wt], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    w, m, v = htod(w0), alloc_zeros(n), alloc_zeros(n)  # moments: try_alloc_len, zeroed
    rw, rm, rv = w0.copy(), np.zeros(n, np.float32), np.zeros(n, np.float32)
    name = f"[{tag}] adam"

    def body():
        for step, gnp in enumerate(grads, start=1):
            f = np.float32
            s = AdamStep(lr, b1, b2, f(1) - f(b1) ** step, f(1) - f(b2) ** step, eps, wd, 1.0)
            norm2 = [0.0]
            port.adam_update(w, htod(gnp), m, v, s, norm2)
            adam_reference_step(rw, gnp, rm, rv, s)
            opt.zero_grad()
            wt.grad = torch.tensor(gnp)
            opt.step()
            check(f"{name} step {step} w vs torch.optim.Adam", w.view, wt.detach().numpy())
            check(f"{name} step {step} w vs AdamStep::apply", w.view, rw)
            check(f"{name} step {step} sum_squares", [norm2[0]],
                  [np.sum(gnp.astype(np.float64) ** 2)])
    run(name, body)

    def body_acc():
        a, b = rng_array(rng, (777,)), rng_array(rng, (777,))
        dst = htod(a)
        port.accumulate(dst, htod(b))
        check(f"[{tag}] accumulate", dst.view, a + b)
    run("accumulate", body_acc)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kernels", default=os.path.join(REPO, "src", "nn", "cuda", "kernels.cu"))
    ap.add_argument("--quick", action="store_true", help="serial mode only")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with open(args.kernels) as f:
        sigs = parse_signatures(f.read())
    with tempfile.TemporaryDirectory(prefix="emulate_cuda_") as tmp:
        lib = build_library(args.kernels, tmp)
        print(f"compiled {os.path.relpath(args.kernels, REPO)} with g++ ({len(sigs)} kernels)")
        modes = ["serial"] if args.quick else ["serial", "grid"]
        for mode in modes:
            emu = Emulator(lib, sigs, mode)
            port = Port(emu)
            tag = "1 thread" if mode == "serial" else "3x4 grid"
            rng = np.random.default_rng(2024)
            conv_checks(port, tag, rng)
            sparse_conv_checks(port, tag, rng)
            pool_checks(port, tag, rng)
            bn_checks(port, tag, rng)
            aggregate_checks(port, tag, rng)
            adam_checks(port, tag, rng)
    failed = RESULTS.count(False)
    print(f"{len(RESULTS) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

//! `LayerKernels` for dfdx's `Cuda` device: our layers' kernels (kernels.cu, compiled with
//! NVRTC when a device is first used) and cuBLAS GEMMs, launched on the device buffers of
//! dfdx's tensors (made reachable by the vendored dfdx patch, vendor/README.md), so that a
//! training step's forward and backward passes stay on the GPU.
//!
//! Convolutions are im2col + one GEMM per chunk of images; the chunk is sized so that the
//! column buffer stays under `COL_BUDGET` values (the 256 px ResNet stem would need 2.8 GB
//! for a whole batch at once). The host still sees: POI rasters (uploaded per batch, they
//! are input data), graph neighbour lists (uploaded per call, a few kB), and batch norm's
//! per-channel batch statistics (2·C values copied back per layer for the running
//! averages, which live on the host with the checkpoint code).

pub(super) mod conv;
#[cfg(test)]
pub(crate) mod tests;

use std::sync::{Arc, OnceLock};

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{Gemm, GemmConfig};
use cudarc::driver::{
    CudaDevice, CudaFunction, CudaSlice, DevicePtr, DeviceRepr, DeviceSlice, LaunchAsync,
    LaunchConfig,
};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};
use dfdx::prelude::{Cuda, CudaError, HasShape, Tensor};

use super::layers::Tensor2;
use super::params::AdamStep;
use super::{
    Aggregation, BatchNormForward, BatchNormGrads, Conv2dGeometry, ConvGrads, LayerKernels,
    RunningStats, Shape4, SparseBatch, Tensor1, Tensor4,
};
use crate::data::graph::NeighbourLists;
use conv::{conv_backward_buffer, conv_forward_buffer, densify, pool_dims};

/// The CUDA C source of our kernels.
pub const KERNEL_SOURCE: &str = include_str!("kernels.cu");

const MODULE: &str = "opencarbon_layers";

const KERNEL_NAMES: &[&str] = &[
    "im2col",
    "col2im",
    "to_channel_major",
    "from_channel_major",
    "add_row_sums",
    "scatter_entries",
    "max_pool_forward",
    "max_pool_backward",
    "bn_batch_stats",
    "bn_apply",
    "bn_backward_sums",
    "bn_backward_input",
    "aggregate_forward",
    "aggregate_backward",
    "accumulate",
    "adam_update",
    "sum_squares",
];

/// Threads per block; per-channel reductions need a power of two (block_sum).
const THREADS: u32 = 256;

/// Compile the kernels to PTX for `arch` (e.g. "compute_90"; None: NVRTC's default, which
/// the driver JIT-compiles for the GPU at hand). Fails with NVRTC's log.
pub fn compile_kernels(arch: Option<&'static str>) -> Result<String, String> {
    let opts = CompileOptions {
        arch,
        ..Default::default()
    };
    compile_ptx_with_opts(KERNEL_SOURCE, opts)
        .map(|ptx| ptx.to_src())
        .map_err(|e| format!("NVRTC could not compile src/nn/cuda/kernels.cu: {e:?}"))
}

/// Load our kernels into `dev` once (compiled once per process).
fn ensure_loaded(dev: &Arc<CudaDevice>) -> Result<(), String> {
    static PTX: OnceLock<Result<String, String>> = OnceLock::new();
    if dev.has_func(MODULE, KERNEL_NAMES[0]) {
        return Ok(());
    }
    let ptx = PTX.get_or_init(|| compile_kernels(None)).clone()?;
    dev.load_ptx(Ptx::from_src(ptx), MODULE, KERNEL_NAMES)
        .map_err(|e| format!("loading the layer kernels into the CUDA device: {e:?}"))
}

/// Open CUDA device `ordinal` with dfdx's generator seeded by `seed`, and load our kernels.
pub fn open(ordinal: usize, seed: u64) -> Result<Cuda, String> {
    // cudarc's CudaDevice::new and ::count unwrap cuInit and cuDeviceGet: check both here
    // first, so that a machine without a GPU gets an error instead of a panic.
    cudarc::driver::result::init().map_err(|e| format!("no usable CUDA driver: {e:?}"))?;
    let count = CudaDevice::count().map_err(|e| format!("no usable CUDA driver: {e:?}"))?;
    if ordinal >= count.max(0) as usize {
        return Err(format!(
            "CUDA device {ordinal} requested, this machine has {count}"
        ));
    }
    let cuda = Cuda::try_build(ordinal, seed)
        .map_err(|e| format!("opening CUDA device {ordinal}: {e:?}"))?;
    ensure_loaded(cuda.cuda_device())?;
    Ok(cuda)
}

// SAFETY: a plain #[repr(C)] struct of f32s, laid out as `struct AdamStep` in kernels.cu.
unsafe impl DeviceRepr for AdamStep {}

/// A layer input kept for the backward pass: the tensor itself (shared, not copied), or a
/// buffer the forward pass made (batch norm's x̂ and 1/σ).
pub enum CudaSaved {
    Image(Tensor4<Cuda>),
    Rows(Tensor2<Cuda>),
    Buffer(CudaSlice<f32>),
    Nothing,
}

impl CudaSaved {
    fn slice(&self) -> &CudaSlice<f32> {
        match self {
            CudaSaved::Image(t) => t.storage(),
            CudaSaved::Rows(t) => t.storage(),
            CudaSaved::Buffer(b) => b,
            CudaSaved::Nothing => panic!("backward pass needs an input the forward did not keep"),
        }
    }
}

fn func(dev: &Arc<CudaDevice>, name: &str) -> CudaFunction {
    if let Err(e) = ensure_loaded(dev) {
        panic!("{e}");
    }
    dev.get_func(MODULE, name)
        .unwrap_or_else(|| panic!("kernel {name} missing from module {MODULE}"))
}

/// A grid-stride launch over `n` values.
fn elementwise(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(THREADS as usize).clamp(1, 1 << 20) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per row (channel) for the reductions.
fn per_row(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn ptr<T>(s: &CudaSlice<T>) -> u64 {
    *s.device_ptr()
}

/// Uninitialised device buffer for values a kernel writes in full.
fn alloc_out(dev: &Arc<CudaDevice>, len: usize) -> Result<CudaSlice<f32>, CudaError> {
    // SAFETY: every caller launches a kernel that writes all `len` values before any read.
    Ok(unsafe { dev.alloc::<f32>(len) }?)
}

/// Row-major `c[m×n] = op(a) · op(b) (+ c when accumulate)` expressed for column-major cuBLAS
/// by the caller; this only fills in the call.
#[allow(clippy::too_many_arguments)]
fn gemm(
    cuda: &Cuda,
    (trans_a, trans_b): (bool, bool),
    (m, n, k): (usize, usize, usize),
    a: &CudaSlice<f32>,
    lda: usize,
    b: &CudaSlice<f32>,
    ldb: usize,
    c: &mut CudaSlice<f32>,
    ldc: usize,
    accumulate: bool,
) -> Result<(), CudaError> {
    let op = |t: bool| {
        if t {
            cublasOperation_t::CUBLAS_OP_T
        } else {
            cublasOperation_t::CUBLAS_OP_N
        }
    };
    let i = |v: usize| i32::try_from(v).expect("GEMM size exceeds i32");
    let cfg = GemmConfig {
        transa: op(trans_a),
        transb: op(trans_b),
        m: i(m),
        n: i(n),
        k: i(k),
        alpha: 1.0f32,
        lda: i(lda),
        ldb: i(ldb),
        beta: if accumulate { 1.0 } else { 0.0 },
        ldc: i(ldc),
    };
    // SAFETY: the callers size a, b and c for these dimensions and leading dimensions.
    unsafe { cuda.cublas().gemm(cfg, a, b, c) }?;
    Ok(())
}

/// The neighbour lists and their transpose on the device, as 64-bit indices.
struct DeviceLists {
    offsets: CudaSlice<i64>,
    targets: CudaSlice<i64>,
    rev_offsets: CudaSlice<i64>,
    rev_sources: CudaSlice<i64>,
}

fn upload_lists(
    dev: &Arc<CudaDevice>,
    lists: &NeighbourLists,
    reverse: bool,
) -> Result<DeviceLists, CudaError> {
    let to_i64 = |v: &[usize]| v.iter().map(|&x| x as i64).collect::<Vec<_>>();
    let (rev_offsets, rev_sources) = if reverse {
        // Sources of each target in increasing order: the CPU kernel's order of additions.
        let n = lists.nodes();
        let mut counts = vec![0usize; n + 1];
        for &t in &lists.targets {
            counts[t + 1] += 1;
        }
        for i in 0..n {
            counts[i + 1] += counts[i];
        }
        let mut fill = counts.clone();
        let mut sources = vec![0usize; lists.targets.len()];
        for i in 0..n {
            for &t in lists.of(i) {
                sources[fill[t]] = i;
                fill[t] += 1;
            }
        }
        (to_i64(&counts), to_i64(&sources))
    } else {
        (vec![0], vec![0])
    };
    let up = |v: Vec<i64>| {
        let v = if v.is_empty() { vec![0] } else { v };
        dev.htod_sync_copy(&v)
    };
    Ok(DeviceLists {
        offsets: up(to_i64(&lists.offsets))?,
        targets: up(to_i64(&lists.targets))?,
        rev_offsets: up(rev_offsets)?,
        rev_sources: up(rev_sources)?,
    })
}

impl LayerKernels for Cuda {
    type Saved = CudaSaved;

    fn conv2d_forward(
        &self,
        g: &Conv2dGeometry,
        x: &Tensor4<Self>,
        w: &Tensor4<Self>,
        bias: Option<&Tensor1<Self>>,
    ) -> Result<(Tensor4<Self>, CudaSaved), CudaError> {
        let y = conv_forward_buffer(self, g, x.storage(), w, bias)?;
        Ok((y, CudaSaved::Image(x.clone())))
    }

    fn conv2d_backward(
        &self,
        g: &Conv2dGeometry,
        x: &CudaSaved,
        w: &Tensor4<Self>,
        has_bias: bool,
        need_x: bool,
        grad_out: &Self::Vec,
    ) -> Result<ConvGrads<Self>, CudaError> {
        conv_backward_buffer(self, g, x.slice(), Some(w), has_bias, need_x, grad_out)
    }

    fn sparse_conv2d_forward(
        &self,
        g: &Conv2dGeometry,
        x: &SparseBatch,
        w: &Tensor4<Self>,
        bias: Option<&Tensor1<Self>>,
    ) -> Result<Tensor4<Self>, CudaError> {
        let dense = densify(self, x)?;
        conv_forward_buffer(self, g, &dense, w, bias)
    }

    fn sparse_conv2d_backward(
        &self,
        g: &Conv2dGeometry,
        x: &SparseBatch,
        has_bias: bool,
        grad_out: &Self::Vec,
    ) -> Result<ConvGrads<Self>, CudaError> {
        // The weight gradient needs the input columns; the dense input is rebuilt rather
        // than kept between the passes (it is mostly zeros, and cheap to scatter again).
        let dense = densify(self, x)?;
        conv_backward_buffer(self, g, &dense, None, has_bias, false, grad_out)
    }

    fn max_pool2d_forward(
        &self,
        g: &Conv2dGeometry,
        x: &Tensor4<Self>,
    ) -> Result<(Tensor4<Self>, CudaSaved), CudaError> {
        let dev = self.cuda_device();
        let len = g.batch * g.in_channels * g.out_height() * g.out_width();
        let mut y = alloc_out(dev, len)?;
        unsafe {
            func(dev, "max_pool_forward")
                .launch(elementwise(len), (x.storage(), &mut y, pool_dims(g)))
        }?;
        let shape = (g.batch, g.in_channels, g.out_height(), g.out_width());
        Ok((
            self.tensor_from_cuda_slice(y, shape),
            CudaSaved::Image(x.clone()),
        ))
    }

    fn max_pool2d_backward(
        &self,
        g: &Conv2dGeometry,
        x: &CudaSaved,
        grad_out: &Self::Vec,
    ) -> Result<Tensor4<Self>, CudaError> {
        let dev = self.cuda_device();
        let mut gx = alloc_out(dev, g.input_len())?;
        unsafe {
            func(dev, "max_pool_backward").launch(
                elementwise(g.input_len()),
                (x.slice(), &**grad_out, &mut gx, pool_dims(g)),
            )
        }?;
        Ok(self.tensor_from_cuda_slice(gx, (g.batch, g.in_channels, g.height, g.width)))
    }

    fn batch_norm_forward(
        &self,
        x: &Tensor4<Self>,
        gamma: &Tensor1<Self>,
        beta: &Tensor1<Self>,
        running: RunningStats<'_, Self>,
        eps: f32,
    ) -> Result<BatchNormForward<Self>, CudaError> {
        let dev = self.cuda_device();
        let shape: Shape4 = *x.shape();
        let (n, c, h, w) = shape;
        let (len, hw) = (n * c * h * w, (h * w) as i64);
        // Training: this batch's statistics, computed here; evaluation: the running ones.
        let batch = match running {
            Some(_) => None,
            None => {
                let (mut m, mut v) = (alloc_out(dev, c)?, alloc_out(dev, c)?);
                unsafe {
                    func(dev, "bn_batch_stats").launch(
                        per_row(c),
                        (x.storage(), &mut m, &mut v, n as i32, c as i32, hw),
                    )
                }?;
                Some((m, v))
            }
        };
        let (mean, var): (&CudaSlice<f32>, &CudaSlice<f32>) = match (&batch, running) {
            (Some((m, v)), _) => (m, v),
            (None, Some((m, v))) => (m.storage(), v.storage()),
            (None, None) => unreachable!("batch statistics are computed without running ones"),
        };
        let mut y = alloc_out(dev, len)?;
        let mut saved = alloc_out(dev, len + c)?;
        unsafe {
            func(dev, "bn_apply").launch(
                elementwise(len),
                (
                    x.storage(),
                    mean,
                    var,
                    gamma.storage(),
                    beta.storage(),
                    &mut y,
                    &mut saved,
                    n as i32,
                    c as i32,
                    hw,
                    eps,
                ),
            )
        }?;
        let stats = batch.map(|(m, v)| {
            (
                self.tensor_from_cuda_slice(m, (c,)),
                self.tensor_from_cuda_slice(v, (c,)),
            )
        });
        Ok((
            self.tensor_from_cuda_slice(y, shape),
            CudaSaved::Buffer(saved),
            stats,
        ))
    }

    fn batch_norm_backward(
        &self,
        shape: Shape4,
        saved: &CudaSaved,
        gamma: &Tensor1<Self>,
        train: bool,
        grad_out: &Self::Vec,
    ) -> Result<BatchNormGrads<Self>, CudaError> {
        let dev = self.cuda_device();
        let (n, c, h, w) = shape;
        let (len, hw) = (n * c * h * w, (h * w) as i64);
        let mut sums = dev.alloc_zeros::<f64>(2 * c)?;
        let (mut g_gamma, mut g_beta) = (alloc_out(dev, c)?, alloc_out(dev, c)?);
        let saved = saved.slice();
        unsafe {
            func(dev, "bn_backward_sums").launch(
                per_row(c),
                (
                    &**grad_out,
                    saved,
                    &mut sums,
                    &mut g_gamma,
                    &mut g_beta,
                    n as i32,
                    c as i32,
                    hw,
                ),
            )
        }?;
        let mut gx = alloc_out(dev, len)?;
        unsafe {
            func(dev, "bn_backward_input").launch(
                elementwise(len),
                (
                    &**grad_out,
                    saved,
                    &sums,
                    gamma.storage(),
                    &mut gx,
                    n as i32,
                    c as i32,
                    hw,
                    train as i32,
                ),
            )
        }?;
        Ok((
            self.tensor_from_cuda_slice(gx, shape),
            self.tensor_from_cuda_slice(g_gamma, (c,)),
            self.tensor_from_cuda_slice(g_beta, (c,)),
        ))
    }

    fn aggregate_forward(
        &self,
        lists: &NeighbourLists,
        h: &Tensor2<Self>,
        how: Aggregation,
    ) -> Result<(Tensor2<Self>, CudaSaved), CudaError> {
        let dev = self.cuda_device();
        let shape = *h.shape();
        let dl = upload_lists(dev, lists, false)?;
        let mut y = alloc_out(dev, shape.0 * shape.1)?;
        unsafe {
            func(dev, "aggregate_forward").launch(
                elementwise(shape.0 * shape.1),
                (
                    h.storage(),
                    &dl.offsets,
                    &dl.targets,
                    &mut y,
                    shape.0 as i64,
                    shape.1 as i64,
                    (how == Aggregation::Max) as i32,
                ),
            )
        }?;
        // The mean's backward pass does not read h.
        let saved = if how == Aggregation::Max {
            CudaSaved::Rows(h.clone())
        } else {
            CudaSaved::Nothing
        };
        Ok((self.tensor_from_cuda_slice(y, shape), saved))
    }

    fn aggregate_backward(
        &self,
        lists: &NeighbourLists,
        h: &CudaSaved,
        shape: (usize, usize),
        how: Aggregation,
        grad_out: &Self::Vec,
    ) -> Result<Tensor2<Self>, CudaError> {
        let dev = self.cuda_device();
        let dl = upload_lists(dev, lists, true)?;
        let mut gh = alloc_out(dev, shape.0 * shape.1)?;
        // The mean does not read h; any valid buffer stands in.
        let h = match h {
            CudaSaved::Nothing => &**grad_out,
            saved => saved.slice(),
        };
        unsafe {
            func(dev, "aggregate_backward").launch(
                elementwise(shape.0 * shape.1),
                (
                    h,
                    &**grad_out,
                    &dl.offsets,
                    &dl.targets,
                    &dl.rev_offsets,
                    &dl.rev_sources,
                    &mut gh,
                    shape.0 as i64,
                    shape.1 as i64,
                    (how == Aggregation::Max) as i32,
                ),
            )
        }?;
        Ok(self.tensor_from_cuda_slice(gh, shape))
    }

    fn accumulate<S: dfdx::shapes::Shape>(&self, dst: &mut Self::Vec, src: &Tensor<S, f32, Self>) {
        let dev = self.cuda_device();
        let n = src.shape().num_elements();
        let launched = unsafe {
            func(dev, "accumulate").launch(elementwise(n), (&mut **dst, src.storage(), n as i64))
        };
        if let Err(e) = launched {
            panic!("CUDA accumulate failed: {e:?}");
        }
    }

    fn adam_update(
        &self,
        w: &mut Self::Vec,
        g: &Self::Vec,
        m: &mut Self::Vec,
        v: &mut Self::Vec,
        step: &AdamStep,
        norm2: Option<&mut f64>,
    ) -> Result<(), CudaError> {
        let dev = self.cuda_device();
        let n = g.len();
        if let Some(norm2) = norm2 {
            let mut out = dev.alloc_zeros::<f64>(1)?;
            unsafe { func(dev, "sum_squares").launch(per_row(1), (&**g, &mut out, n as i64)) }?;
            *norm2 += dev.dtoh_sync_copy(&out)?[0];
        }
        unsafe {
            func(dev, "adam_update").launch(
                elementwise(n),
                (&mut **w, &**g, &mut **m, &mut **v, n as i64, *step),
            )
        }?;
        Ok(())
    }
}

//! Convolution on the device: im2col + one cuBLAS GEMM per chunk of images (forward), and
//! the two GEMMs + col2im of the backward pass. The chunk is sized so that the column buffer
//! stays under `COL_BUDGET` values; `Dims` is the geometry as kernels.cu reads it.

use cudarc::driver::{CudaSlice, DeviceRepr, LaunchAsync};
use dfdx::prelude::{Cuda, CudaError};

use super::{alloc_out, elementwise, func, gemm, per_row, ptr};
use crate::nn::{Conv2dGeometry, ConvGrads, SparseBatch, Tensor1, Tensor4};

/// Largest im2col buffer of one convolution chunk, in values (256 MB of f32).
pub(super) const COL_BUDGET: usize = 64 << 20;

/// Convolution and pooling geometry as the kernels read it (`Dims` in kernels.cu).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(super) struct Dims {
    batch: i32,
    c: i32,
    h: i32,
    w: i32,
    o: i32,
    k: i32,
    stride: i32,
    pad: i32,
    oh: i32,
    ow: i32,
    n0: i32,
    nc: i32,
}

// SAFETY: a plain #[repr(C)] struct of i32s, laid out as `struct Dims` in kernels.cu.
unsafe impl DeviceRepr for Dims {}

pub(super) fn dims(g: &Conv2dGeometry, n0: usize, nc: usize) -> Dims {
    let i = |v: usize| i32::try_from(v).expect("convolution size exceeds i32");
    Dims {
        batch: i(g.batch),
        c: i(g.in_channels),
        h: i(g.height),
        w: i(g.width),
        o: i(g.out_channels),
        k: i(g.kernel),
        stride: i(g.stride),
        pad: i(g.padding),
        oh: i(g.out_height()),
        ow: i(g.out_width()),
        n0: i(n0),
        nc: i(nc),
    }
}

/// The column buffer budget (tests lower it to exercise chunking).
fn col_budget() -> usize {
    #[cfg(test)]
    return super::tests::col_budget();
    #[cfg(not(test))]
    COL_BUDGET
}

/// Images per convolution chunk so that the column buffer stays within the budget.
pub(super) fn chunk_images(g: &Conv2dGeometry) -> usize {
    let per_image = g.patch_len() * g.out_height() * g.out_width();
    (col_budget() / per_image.max(1)).clamp(1, g.batch.max(1))
}

/// `(first image, images)` of each chunk.
pub(super) fn chunks(g: &Conv2dGeometry) -> impl Iterator<Item = (usize, usize)> {
    let step = chunk_images(g);
    let batch = g.batch;
    (0..batch)
        .step_by(step)
        .map(move |n0| (n0, step.min(batch - n0)))
}

pub(super) fn conv_grads(
    cuda: &Cuda,
    g: &Conv2dGeometry,
    gx: Option<CudaSlice<f32>>,
    gw: CudaSlice<f32>,
    gb: Option<CudaSlice<f32>>,
) -> ConvGrads<Cuda> {
    ConvGrads {
        x: gx.map(|s| cuda.tensor_from_cuda_slice(s, (g.batch, g.in_channels, g.height, g.width))),
        w: cuda.tensor_from_cuda_slice(gw, (g.out_channels, g.in_channels, g.kernel, g.kernel)),
        bias: gb.map(|s| cuda.tensor_from_cuda_slice(s, (g.out_channels,))),
    }
}

/// Dense convolution of the NCHW buffer `x` (see conv2d_forward).
pub(super) fn conv_forward_buffer(
    cuda: &Cuda,
    g: &Conv2dGeometry,
    x: &CudaSlice<f32>,
    w: &Tensor4<Cuda>,
    bias: Option<&Tensor1<Cuda>>,
) -> Result<Tensor4<Cuda>, CudaError> {
    let dev = cuda.cuda_device();
    let (k, p) = (g.patch_len(), g.out_height() * g.out_width());
    let mut y = alloc_out(dev, g.batch * g.out_channels * p)?;
    let max_q = chunk_images(g) * p;
    let mut col = alloc_out(dev, k * max_q)?;
    let mut yt = alloc_out(dev, g.out_channels * max_q)?;
    let bias_ptr = bias.map_or(0, |b| ptr(b.storage()));
    for (n0, nc) in chunks(g) {
        let (d, q) = (dims(g, n0, nc), nc * p);
        // SAFETY (launches here and below): argument lists match the kernels' signatures
        // in kernels.cu, and buffers are sized from the same geometry.
        unsafe { func(dev, "im2col").launch(elementwise(k * q), (x, &mut col, d)) }?;
        // yt[o][q] = Σ_kk w[o][kk]·col[kk][q]; column-major: ytᵀ(q×o) = colᵀ(q×kk)·wᵀ(kk×o).
        gemm(
            cuda,
            (false, false),
            (q, g.out_channels, k),
            &col,
            q,
            w.storage(),
            k,
            &mut yt,
            q,
            false,
        )?;
        unsafe {
            func(dev, "from_channel_major")
                .launch(elementwise(g.out_channels * q), (&yt, &mut y, bias_ptr, d))
        }?;
    }
    let shape = (g.batch, g.out_channels, g.out_height(), g.out_width());
    Ok(cuda.tensor_from_cuda_slice(y, shape))
}

/// Gradients of a dense convolution of the NCHW buffer `x` (see conv2d_backward); `w` is
/// read only for the input gradient (`need_x`).
pub(super) fn conv_backward_buffer(
    cuda: &Cuda,
    g: &Conv2dGeometry,
    x: &CudaSlice<f32>,
    w: Option<&Tensor4<Cuda>>,
    has_bias: bool,
    need_x: bool,
    grad_out: &CudaSlice<f32>,
) -> Result<ConvGrads<Cuda>, CudaError> {
    let dev = cuda.cuda_device();
    let (k, p, o) = (
        g.patch_len(),
        g.out_height() * g.out_width(),
        g.out_channels,
    );
    let max_q = chunk_images(g) * p;
    let mut col = alloc_out(dev, k * max_q)?;
    let mut gt = alloc_out(dev, o * max_q)?;
    let mut gcol = if need_x {
        Some(alloc_out(dev, k * max_q)?)
    } else {
        None
    };
    let mut gx = if need_x {
        Some(alloc_out(dev, g.input_len())?)
    } else {
        None
    };
    let mut gw = dev.alloc_zeros::<f32>(o * k)?;
    let mut gb = if has_bias {
        Some(dev.alloc_zeros::<f32>(o)?)
    } else {
        None
    };
    for (n0, nc) in chunks(g) {
        let (d, q) = (dims(g, n0, nc), nc * p);
        unsafe { func(dev, "im2col").launch(elementwise(k * q), (x, &mut col, d)) }?;
        unsafe {
            func(dev, "to_channel_major").launch(elementwise(o * q), (grad_out, &mut gt, d))
        }?;
        // gw[o][kk] += Σ_q gt[o][q]·col[kk][q]; column-major: gwᵀ(kk×o) = col(kk×q)·gtᵀ(q×o).
        gemm(
            cuda,
            (true, false),
            (k, o, q),
            &col,
            q,
            &gt,
            q,
            &mut gw,
            k,
            true,
        )?;
        if let Some(gb) = gb.as_mut() {
            unsafe { func(dev, "add_row_sums").launch(per_row(o), (&gt, gb, q as i64)) }?;
        }
        if let (Some(gcol), Some(gx)) = (gcol.as_mut(), gx.as_mut()) {
            // gcol[kk][q] = Σ_o w[o][kk]·gt[o][q]; column-major: gcolᵀ(q×kk) = gtᵀ(q×o)·w(o×kk).
            gemm(
                cuda,
                (false, true),
                (q, k, o),
                &gt,
                q,
                w.expect("the input gradient needs the weights").storage(),
                k,
                gcol,
                q,
                false,
            )?;
            unsafe {
                func(dev, "col2im").launch(
                    elementwise(nc * g.in_channels * g.height * g.width),
                    (&*gcol, gx, d),
                )
            }?;
        }
    }
    Ok(conv_grads(cuda, g, gx, gw, gb))
}

/// A sparse batch as a dense NCHW buffer on the device (it is input data: uploaded once
/// per call, as a list of (index, value) entries).
pub(super) fn densify(cuda: &Cuda, x: &SparseBatch) -> Result<CudaSlice<f32>, CudaError> {
    let dev = cuda.cuda_device();
    let hw = x.size * x.size;
    let (index, value): (Vec<u64>, Vec<f32>) = x
        .entries
        .iter()
        .map(|&(n, c, r, col, v)| {
            let at =
                (n as usize * x.channels + c as usize) * hw + r as usize * x.size + col as usize;
            (at as u64, v)
        })
        .unzip();
    let mut dense = dev.alloc_zeros::<f32>((x.batch * x.channels * hw).max(1))?;
    let entries = index.len();
    if entries > 0 {
        let (index, value) = (dev.htod_sync_copy(&index)?, dev.htod_sync_copy(&value)?);
        unsafe {
            func(dev, "scatter_entries").launch(
                elementwise(entries),
                (&index, &value, &mut dense, entries as i64),
            )
        }?;
    }
    Ok(dense)
}

pub(super) fn pool_dims(g: &Conv2dGeometry) -> Dims {
    dims(g, 0, g.batch)
}

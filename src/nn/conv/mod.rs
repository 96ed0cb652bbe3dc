//! 2-D convolution with its own kernels (issue: OpenCarbon in dfdx). dfdx 0.13's `conv2d`
//! only compiles with its `nightly` feature, and a convolution composed of dfdx's generic
//! ops (pad, slices, concat, matmul) measured 12.6× slower than PyTorch on this machine, so
//! the forward pass is im2col + one GEMM and the backward pass is two GEMMs + col2im.
//!
//! Layout: input NCHW, weight [out, in, k, k] (PyTorch's), bias [out], zero padding.
//! The batch is cut into fixed chunks whose im2col buffer fits in a core's L2 cache, so the
//! GEMM reads it from cache; chunks run on all cores, each with single-threaded GEMMs
//! (matrixmultiply, which has AVX-512 kernels). The chunking does not depend on the number
//! of threads, and per-chunk weight gradients are summed in chunk order, so results are
//! identical whatever the core count. On x86-64 with AVX-512F, pictures with at least as
//! many output pixels as output channels take the kernels of `direct.rs` and `broadcast.rs`
//! instead, which need no whole column matrix (see `Gemms`).

use std::mem::MaybeUninit;

mod broadcast;
mod columns;
mod direct;
mod picture;
#[cfg(test)]
mod tests;

use super::parallel::{for_each_chunk, scratch, zeroed};
use columns::{col2im, im2col};
use picture::Layout;

/// The sizes of one convolution call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dGeometry {
    pub batch: usize,
    pub in_channels: usize,
    pub height: usize,
    pub width: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

/// Target size of one chunk's im2col buffer, in floats (768 KiB, within a 1 MiB L2).
const CHUNK_COLS: usize = 192 << 10;

/// Chunks a batch is cut into at least: the neighbourhood CNN's 3×3 pictures fit one chunk
/// of CHUNK_COLS, which then ran on one thread while the others waited.
const MIN_CHUNKS: usize = 4;

/// Below this many multiply-adds a call runs on the calling thread (spawning costs more).
const PARALLEL_MIN_MACS: usize = 4 << 20;

impl Conv2dGeometry {
    pub fn out_height(&self) -> usize {
        (self.height + 2 * self.padding - self.kernel) / self.stride + 1
    }

    pub fn out_width(&self) -> usize {
        (self.width + 2 * self.padding - self.kernel) / self.stride + 1
    }

    pub fn input_len(&self) -> usize {
        self.batch * self.in_channels * self.height * self.width
    }

    pub fn weight_len(&self) -> usize {
        self.out_channels * self.patch_len()
    }

    pub fn output_len(&self) -> usize {
        self.batch * self.out_channels * self.out_pixels()
    }

    /// Values in one receptive field: in_channels · k · k.
    pub(crate) fn patch_len(&self) -> usize {
        self.in_channels * self.kernel * self.kernel
    }

    fn out_pixels(&self) -> usize {
        self.out_height() * self.out_width()
    }

    /// Samples per chunk so that the im2col buffer stays near CHUNK_COLS floats, and the
    /// batch makes at least MIN_CHUNKS chunks where it has that many samples (at least one
    /// sample). Fixed by the shape alone, so the weight gradient's per-chunk sums, added in
    /// chunk order, do not depend on the number of threads.
    fn chunk(&self) -> usize {
        (CHUNK_COLS / (self.patch_len() * self.out_pixels()).max(1))
            .min(self.batch.div_ceil(MIN_CHUNKS))
            .clamp(1, self.batch.max(1))
    }

    /// Multiply-adds of the forward pass.
    pub fn macs(&self) -> usize {
        self.batch * self.out_pixels() * self.patch_len() * self.out_channels
    }

    /// Why this geometry cannot be computed, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.kernel == 0 || self.stride == 0 {
            return Err("kernel and stride must be >= 1".into());
        }
        if self.height + 2 * self.padding < self.kernel
            || self.width + 2 * self.padding < self.kernel
        {
            return Err(format!(
                "kernel {} does not fit a {}×{} input with padding {}",
                self.kernel, self.height, self.width, self.padding
            ));
        }
        Ok(())
    }
}

/// A strided matrix operand: element (i, j) is at `data[i·rows + j·cols]`.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
}

impl<'a> Mat<'a> {
    fn row_major(data: &'a [f32], width: usize) -> Self {
        Mat {
            data,
            rows: width,
            cols: 1,
        }
    }

    fn transposed(data: &'a [f32], width: usize) -> Self {
        Mat {
            data,
            rows: 1,
            cols: width,
        }
    }

    /// Whether an r×c matrix with these strides lies inside `data`.
    fn covers(&self, r: usize, c: usize) -> bool {
        r == 0 || c == 0 || (r - 1) * self.rows + (c - 1) * self.cols < self.data.len()
    }
}

/// How a call lays out its GEMMs. Each output value is the same sum over the same terms in
/// the same order on every path (the GEMM's blocking splits rows and columns, never a value's
/// sum, and `direct` repeats matrixmultiply's operations), so results do not depend on
/// the path; the tests check the bits. The exception is `broadcast`, taken by `Direct` for
/// layers whose channels come in pairs of vectors: its own fixed order, checked against the
/// GEMM path within rounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gemms {
    /// One GEMM per chunk of samples through a copy in chunk layout. Wins for the
    /// neighbourhood CNN's 3×3 pictures, where W is 8-16 times a sample's columns and a GEMM
    /// per sample would pack W once per sample.
    PerChunk,
    /// One GEMM per sample, reading and writing the sample's own rows in place (large
    /// pictures: the chunk-layout copies were about 8 % of the convolution layer's time).
    PerSample,
    /// Per sample, with the AVX-512 kernels of `direct` and `broadcast`, which read the
    /// padded picture (no im2col buffer). Forward: `broadcast` where the output channels
    /// come in pairs of vectors, else `direct`'s tiles. Weight gradient: `direct::taps3` for
    /// 3×3 kernels, `broadcast` for others with output channels in pairs of vectors, else
    /// im2col and the GEMM as `PerSample`. Input gradient: `broadcast` where the input
    /// channels come in pairs of vectors, else 16 column rows at a time by `direct`'s tiles,
    /// added back by col2im. Only where `direct::available()`. `broadcast` sums in its own
    /// order; the others give the GEMM path's bits.
    Direct,
}

/// The path for this geometry on this machine.
fn gemms(g: &Conv2dGeometry) -> Gemms {
    // Without channels there is nothing to multiply: matrixmultiply handles the empty
    // products, the direct kernels do not.
    if g.out_pixels() < g.out_channels || g.in_channels == 0 || g.out_channels == 0 {
        Gemms::PerChunk
    } else if direct::available() {
        Gemms::Direct
    } else {
        Gemms::PerSample
    }
}

/// C (m×n, row stride `rsc`) = A·B, or C += A·B when `accumulate`; single-threaded (the
/// callers parallelise over chunks of the batch; matrixmultiply's own threading is off).
#[allow(clippy::too_many_arguments)]
fn gemm(m: usize, k: usize, n: usize, a: Mat, b: Mat, c: &mut [f32], rsc: usize, accumulate: bool) {
    let c_mat = Mat::row_major(c, rsc);
    assert!(
        a.covers(m, k) && b.covers(k, n) && c_mat.covers(m, n),
        "gemm operand bounds"
    );
    // SAFETY: `covers` checked that every element the strides reach lies inside its slice;
    // C is borrowed mutably, so it cannot alias A or B.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr(),
            a.rows as isize,
            a.cols as isize,
            b.data.as_ptr(),
            b.rows as isize,
            b.cols as isize,
            if accumulate { 1.0 } else { 0.0 },
            c.as_mut_ptr(),
            rsc as isize,
            1,
        );
    }
}

/// Forward pass: returns y [N, out, OH, OW].
pub fn conv2d_forward(g: &Conv2dGeometry, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    forward_by(g, x, w, bias, gemms(g))
}

/// `conv2d_forward` with the GEMM layout chosen by the caller (the tests run each).
fn forward_by(
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    path: Gemms,
) -> Vec<f32> {
    assert_eq!(x.len(), g.input_len(), "conv2d input length");
    assert!(
        path != Gemms::Direct || direct::available(),
        "no AVX-512F here"
    );
    assert_eq!(w.len(), g.weight_len(), "conv2d weight length");
    let (p, ckk, co) = (g.out_pixels(), g.patch_len(), g.out_channels);
    let mut y: Vec<f32> = Vec::with_capacity(g.output_len());
    let chunk = g.chunk();
    let items: Vec<&mut [MaybeUninit<f32>]> = y.spare_capacity_mut()[..g.output_len()]
        .chunks_mut(chunk * co * p)
        .collect();
    // W in the direct kernel's panels, or Wᵀ for the broadcast kernel, packed once per call.
    let by_channels = path == Gemms::Direct && broadcast::fits(g);
    let layout = (path == Gemms::Direct).then(|| Layout::new(g));
    let w_panels = match path {
        Gemms::Direct if by_channels => broadcast::pack_wt(g, w),
        Gemms::Direct => direct::pack_panels(w, (co, ckk), (ckk, 1)),
        _ => Vec::new(),
    };
    let add_bias = |y_s: &mut [f32]| {
        if let Some(b) = bias {
            for (o, plane) in y_s.chunks_mut(p).enumerate() {
                plane.iter_mut().for_each(|v| *v += b[o]);
            }
        }
    };
    for_each_chunk(
        items,
        g.macs() >= PARALLEL_MIN_MACS,
        || match path {
            Gemms::Direct => (
                scratch(picture::padded_len(g)),
                scratch(if by_channels {
                    broadcast::scratch_len(g)
                } else {
                    direct::strip_len(g)
                }),
            ),
            Gemms::PerSample => (scratch(ckk * chunk * p), scratch(0)),
            Gemms::PerChunk => (scratch(ckk * chunk * p), scratch(co * chunk * p)),
        },
        |(cols, out), ci, y_chunk| {
            let y_chunk = zeroed(y_chunk);
            let (n0, s) = (ci * chunk, y_chunk.len() / (co * p));
            let np = s * p;
            match path {
                Gemms::Direct => {
                    let layout = layout.as_ref().expect("the direct path's layout");
                    for (si, y_s) in y_chunk.chunks_mut(co * p).enumerate() {
                        let xp = picture::padded(g, x, n0 + si, cols);
                        if by_channels {
                            broadcast::forward_sample(g, layout, &xp, &w_panels, bias, y_s, out);
                        } else {
                            direct::forward_sample(g, &layout.origins, &xp, &w_panels, y_s, out);
                            add_bias(y_s);
                        }
                    }
                    return;
                }
                Gemms::PerSample => {
                    im2col(g, x, n0, s, cols);
                    // Straight into each sample's output [co, p] = W [co, ckk] · its columns.
                    for (si, y_s) in y_chunk.chunks_mut(co * p).enumerate() {
                        let cols_s = Mat::row_major(&cols[si * p..], np);
                        gemm(co, ckk, p, Mat::row_major(w, ckk), cols_s, y_s, p, false);
                        add_bias(y_s);
                    }
                    return;
                }
                Gemms::PerChunk => im2col(g, x, n0, s, cols),
            }
            // One GEMM for the whole chunk: out [co, s·p] = W [co, ckk] · columns [ckk, s·p],
            // then each sample's rows copied out.
            let out = &mut out[..co * np];
            gemm(
                co,
                ckk,
                np,
                Mat::row_major(w, ckk),
                Mat::row_major(cols, np),
                out,
                np,
                false,
            );
            for si in 0..s {
                for o in 0..co {
                    let src = &out[o * np + si * p..][..p];
                    let dst = &mut y_chunk[(si * co + o) * p..][..p];
                    match bias {
                        Some(b) => dst.iter_mut().zip(src).for_each(|(d, v)| *d = v + b[o]),
                        None => dst.copy_from_slice(src),
                    }
                }
            }
        },
    );
    // SAFETY: the chunks cover the whole output, and each was initialised by `zeroed`.
    unsafe { y.set_len(g.output_len()) };
    y
}

/// Where an input gradient goes.
pub enum InputGrad<'a> {
    /// Added (+=) to these values.
    AddTo(&'a mut [f32]),
    /// Written into new memory (every value), each chunk zeroed by the thread that fills it.
    New(&'a mut [MaybeUninit<f32>]),
}

impl<'a> InputGrad<'a> {
    /// Values it holds.
    pub fn len(&self) -> usize {
        match self {
            InputGrad::AddTo(gx) => gx.len(),
            InputGrad::New(gx) => gx.len(),
        }
    }

    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cut into consecutive parts of `len` values (the last may be shorter), of its kind.
    fn split(self, len: usize) -> Vec<InputGrad<'a>> {
        match self {
            InputGrad::AddTo(gx) => gx.chunks_mut(len).map(InputGrad::AddTo).collect(),
            InputGrad::New(gx) => gx.chunks_mut(len).map(InputGrad::New).collect(),
        }
    }
}

/// Gradients of a convolution, the weight's and bias's accumulated (+=) into their buffers.
pub struct Conv2dGrads<'a> {
    pub x: Option<InputGrad<'a>>,
    pub w: &'a mut [f32],
    pub bias: Option<&'a mut [f32]>,
}

/// Backward pass from the output gradient `gy` [N, out, OH, OW].
pub fn conv2d_backward(
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    gy: &[f32],
    grads: Conv2dGrads<'_>,
) {
    backward_by(g, x, w, gy, grads, gemms(g))
}

/// `conv2d_backward` with the GEMM layout chosen by the caller (the tests run each).
fn backward_by(
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    gy: &[f32],
    mut grads: Conv2dGrads<'_>,
    path: Gemms,
) {
    assert_eq!(gy.len(), g.output_len(), "conv2d output-gradient length");
    assert_eq!(x.len(), g.input_len(), "conv2d input length");
    assert_eq!(w.len(), g.weight_len(), "conv2d weight length");
    assert_eq!(
        grads.w.len(),
        g.weight_len(),
        "conv2d weight-gradient length"
    );
    if let Some(bias) = &grads.bias {
        assert_eq!(bias.len(), g.out_channels, "conv2d bias-gradient length");
    }
    if let Some(gx) = &grads.x {
        assert_eq!(gx.len(), g.input_len(), "conv2d input-gradient length");
    }
    assert!(
        path != Gemms::Direct || direct::available(),
        "no AVX-512F here"
    );
    let (p, ckk, co) = (g.out_pixels(), g.patch_len(), g.out_channels);
    let chunk = g.chunk();
    let n_chunks = g.batch.div_ceil(chunk);
    let in_len = g.in_channels * g.height * g.width;
    let input_grad = grads.x.is_some();
    // The transposed output gradient is only needed for the input gradient.
    let gy_t_len = if input_grad && path == Gemms::PerChunk {
        co * chunk * p
    } else {
        0
    };
    // The direct weight gradient (3×3 kernels) and its scratch: the transposed output
    // gradient, the transposed weight gradient and the padded picture.
    // The weight gradient without columns: `direct::taps3` for 3×3 kernels, `broadcast` for
    // others whose output channels it takes.
    let direct_gw = path == Gemms::Direct && (g.kernel == 3 || broadcast::fits(g));
    let (direct_gy_t, direct_gw_t, direct_padded) = if direct_gw {
        let (t, pn) = picture::weight_grad_scratch(g);
        (t, pn, picture::padded_len(g))
    } else {
        (0, 0, 0)
    };
    // The input gradient by channels (`broadcast`) where the input channels come in pairs
    // of vectors, else by `direct`'s tiles and col2im; its weights packed once per call.
    let gx_by_channels = path == Gemms::Direct && input_grad && broadcast::input_grad_fits(g);
    let wt_panels = if gx_by_channels {
        broadcast::pack_taps(g, w)
    } else if path == Gemms::Direct && input_grad {
        direct::pack_panels(w, (ckk, co), (1, ckk))
    } else {
        Vec::new()
    };
    // The offsets of the channel-vector kernels, where they run.
    let layout = (gx_by_channels || (direct_gw && g.kernel != 3)).then(|| Layout::new(g));
    // Each chunk owns its samples' slice of the input gradient, when there is one.
    let gx_parts: Vec<Option<InputGrad<'_>>> = match grads.x.take() {
        Some(gx) => gx.split(chunk * in_len).into_iter().map(Some).collect(),
        None => (0..n_chunks).map(|_| None).collect(),
    };
    // Each chunk's gW and bias gradient, summed into grads.w and grads.bias in chunk order
    // below (the bias's sums ran on the calling thread alone, while the others waited). One
    // buffer from the calling thread: allocated by the workers, they came from their own
    // glibc arenas, whose heaps are unmapped when empty and faulted in again by the next call.
    let gw_len = co * ckk;
    let part_len = gw_len + if grads.bias.is_some() { co } else { 0 };
    let mut partial_gw: Vec<f32> = Vec::with_capacity(n_chunks * part_len);
    let items: Vec<_> = gx_parts
        .into_iter()
        .zip(partial_gw.spare_capacity_mut()[..n_chunks * part_len].chunks_mut(part_len))
        .collect();
    for_each_chunk(
        items,
        g.macs() >= PARALLEL_MIN_MACS,
        || {
            let direct = (
                scratch(direct_gy_t),
                scratch(direct_gw_t),
                scratch(direct_padded),
            );
            // The columns, for gW and gcols, unless gW is direct (then so is the input
            // gradient); the direct input gradient reuses the buffer (after gW) for its rows
            // or its padded gradient.
            let gx_scratch = if gx_by_channels {
                broadcast::input_grad_scratch(g)
            } else {
                direct::input_grad_scratch(g)
            };
            let cols_len = match (!direct_gw, path == Gemms::Direct && input_grad) {
                (true, true) => (ckk * chunk * p).max(gx_scratch),
                (true, false) => ckk * chunk * p,
                (false, true) => gx_scratch,
                (false, false) => 0,
            };
            (scratch(cols_len), scratch(gy_t_len), direct)
        },
        |(cols, gy_t, (d_gy_t, d_gw_t, d_padded)), ci, (gx_chunk, gw)| {
            let n0 = ci * chunk;
            let s = chunk.min(g.batch - n0);
            let np = s * p;
            let (gw, gb) = zeroed(gw).split_at_mut(gw_len);
            for si in 0..s {
                let gy_s = &gy[(n0 + si) * co * p..][..co * p];
                for (b, plane) in gb.iter_mut().zip(gy_s.chunks_exact(p)) {
                    *b += lane_sum(plane);
                }
            }
            // Per sample, so that each sample's contribution to gW is summed on its own and
            // added in sample order (the order every earlier result was computed in).
            if direct_gw {
                picture::weight_grad_begin(g, d_gw_t);
                for si in 0..s {
                    let gy_s = &gy[(n0 + si) * co * p..][..co * p];
                    let xp = picture::padded(g, x, n0 + si, d_padded);
                    let gy_t = picture::transpose_output_grad(g, gy_s, d_gy_t);
                    if g.kernel == 3 {
                        direct::weight_grad_sample(g, &xp, gy_t, d_gw_t);
                    } else {
                        let layout = layout.as_ref().expect("the channel-vector kernels' layout");
                        broadcast::weight_grad_sample(g, layout, &xp, gy_t, d_gw_t);
                    }
                }
                picture::weight_grad_end(g, d_gw_t, gw);
            } else {
                im2col(g, x, n0, s, cols);
                for si in 0..s {
                    let gy_s = Mat::row_major(&gy[(n0 + si) * co * p..][..co * p], p);
                    // gW [co, ckk] += gy [co, p] · (this sample's columns)ᵀ [p, ckk]
                    let cols_t = Mat::transposed(&cols[si * p..], np);
                    gemm(co, p, ckk, gy_s, cols_t, gw, ckk, true);
                }
            }
            if let Some(gx) = gx_chunk {
                if gx_by_channels {
                    let layout = layout.as_ref().expect("the channel-vector kernels' layout");
                    for (si, gx_s) in gx.split(in_len).into_iter().enumerate() {
                        let gy_s = &gy[(n0 + si) * co * p..][..co * p];
                        broadcast::input_grad_sample(g, layout, &wt_panels, gy_s, gx_s, cols);
                    }
                    return;
                }
                let gx = match gx {
                    InputGrad::AddTo(gx) => gx,
                    InputGrad::New(gx) => zeroed(gx),
                };
                if path == Gemms::Direct {
                    for (si, gx_s) in gx.chunks_exact_mut(in_len).enumerate() {
                        let gy_s = &gy[(n0 + si) * co * p..][..co * p];
                        direct::input_grad_sample(g, &wt_panels, gy_s, gx_s, cols);
                    }
                    return;
                }
                // The chunk's output gradient as [co, s·p], then one GEMM for all its
                // samples: gcols [ckk, s·p] = Wᵀ [ckk, co] · gy [co, s·p], in place of the
                // columns (each value the same sum over co as per sample).
                if path == Gemms::PerSample {
                    // Each sample's gcols [ckk, p] = Wᵀ [ckk, co] · its gy [co, p], straight
                    // from the output gradient into the sample's columns.
                    for si in 0..s {
                        let gy_s = Mat::row_major(&gy[(n0 + si) * co * p..][..co * p], p);
                        let w_t = Mat::transposed(w, ckk);
                        gemm(ckk, co, p, w_t, gy_s, &mut cols[si * p..], np, false);
                    }
                } else {
                    let gy_t = &mut gy_t[..co * np];
                    for si in 0..s {
                        for o in 0..co {
                            gy_t[o * np + si * p..][..p]
                                .copy_from_slice(&gy[((n0 + si) * co + o) * p..][..p]);
                        }
                    }
                    let gy_t = Mat::row_major(gy_t, np);
                    gemm(ckk, co, np, Mat::transposed(w, ckk), gy_t, cols, np, false);
                }
                col2im(g, 0..ckk, cols, 0, s, gx);
            }
        },
    );
    // SAFETY: every chunk's part was initialised by `zeroed` above.
    unsafe { partial_gw.set_len(n_chunks * part_len) };
    // Each value gets its chunks' parts in chunk order; pieces of the weight gradient run on
    // the pool (the POI encoder's 7×7 layer adds 84 parts of 50 000 values per call, which
    // ran on the calling thread alone while the others waited).
    let pieces: Vec<(usize, &mut [f32])> = grads
        .w
        .chunks_mut(REDUCE_PIECE)
        .enumerate()
        .map(|(i, piece)| (i * REDUCE_PIECE, piece))
        .collect();
    for_each_chunk(
        pieces,
        n_chunks * gw_len >= REDUCE_PARALLEL_MIN,
        || (),
        |_, _, (start, piece)| {
            for part in partial_gw.chunks(part_len) {
                let part = &part[start..][..piece.len()];
                piece.iter_mut().zip(part).for_each(|(d, v)| *d += v);
            }
        },
    );
    if let Some(bias) = grads.bias.as_deref_mut() {
        for part in partial_gw.chunks(part_len) {
            bias.iter_mut()
                .zip(&part[gw_len..])
                .for_each(|(d, v)| *d += v);
        }
    }
}

/// Values of the weight gradient one thread sums over the chunks' parts at a time.
const REDUCE_PIECE: usize = 4096;

/// Below this many additions the chunks' parts are summed on the calling thread.
const REDUCE_PARALLEL_MIN: usize = 1 << 18;

/// Σ values in 16 partial sums (value k to sum k mod 16), added in order at the end:
/// independent chains the compiler keeps in vector registers, where one running sum waited
/// for each addition. The order depends on the length alone.
fn lane_sum(values: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let lanes = values.chunks_exact(LANES);
    let rest = lanes.remainder();
    for c in lanes {
        for k in 0..LANES {
            acc[k] += c[k];
        }
    }
    for (a, v) in acc.iter_mut().zip(rest) {
        *a += v;
    }
    acc.iter().sum()
}

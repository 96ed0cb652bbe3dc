//! The convolution's three GEMMs without the whole column matrix, on AVX-512:
//! - forward: each 16-pixel panel of columns is packed straight from the padded picture and
//!   multiplied by a 16×16 tile kernel ([`tile`]);
//! - weight gradient (3×3 kernels): [`taps3`] broadcasts the picture's values straight from
//!   the padded picture, with no columns at all;
//! - input gradient: 16 column rows of gcols = Wᵀ · gy at a time by [`tile`], each added back
//!   by col2im while they are in L2.
//!
//! Why: im2col wrote every column (k² times the input) and matrixmultiply then read them back
//! to pack its own panels; at the convolution benchmark's shape the two passes and their
//! memcpy/memset were a third of the layer's time, and a 256 px ResNet layer's gcols is 9 MB
//! per sample.
//!
//! The results are bit for bit those of the im2col + matrixmultiply path (checked by
//! `conv`'s tests): matrixmultiply's f32 AVX-512 kernel computes each output as a chain of
//! fused multiply-adds starting from +0 over blocks of [`KC`] along the reduction, then writes
//! the first block's chain (`C = 1·ab`) or adds it to C (`C = fma(1, ab, C)`, which rounds as
//! `C + ab`), the blocks in order. The kernels here do the same operations in the same order,
//! the padding's zeros included as terms. So results are unchanged and do not depend on which
//! path a machine takes.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::columns::{col2im, copy_strided};
use super::picture::{channels_padded, Padded, W};
use super::Conv2dGeometry;

/// matrixmultiply's block length along the reduction for f32 (`S_KC` in 0.3.11, pinned in
/// Cargo.toml; its build reads `MATMUL_SGEMM_KC`, which must stay unset).
const KC: usize = 256;

/// Whether this machine runs the kernels here (x86-64 with AVX-512F). Elsewhere the caller
/// keeps im2col + matrixmultiply.
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The m×k matrix whose element (i, kk) is `a[i·rs + kk·ks]`, as panels of 16 rows: panel
/// r holds, for each kk, rows 16r…16r+15 (zeros past m). The tile kernel broadcasts from
/// these: W itself (rs = ckk, ks = 1) for the forward pass, Wᵀ (rs = 1, ks = ckk) for the
/// input gradient.
pub(super) fn pack_panels(a: &[f32], (m, k): (usize, usize), (rs, ks): (usize, usize)) -> Vec<f32> {
    let mut out = vec![0.0; m.div_ceil(W) * k * W];
    for (r, panel) in out.chunks_mut(k * W).enumerate() {
        for (kk, group) in panel.chunks_mut(W).enumerate() {
            for (i, v) in group.iter_mut().enumerate().take(m.saturating_sub(r * W)) {
                *v = a[(r * W + i) * rs + kk * ks];
            }
        }
    }
    out
}

/// Length of the column strip `forward_sample` packs.
pub(super) fn strip_len(g: &Conv2dGeometry) -> usize {
    g.patch_len() * W
}

/// Forward pass of one sample: y_s [co, OH·OW] = W · columns, without bias. `origins` are the
/// column rows' (`picture::Layout`); `w_panels` is W from `pack_panels`; `strip` holds
/// `g.patch_len() · 16` values of scratch.
pub(super) fn forward_sample(
    g: &Conv2dGeometry,
    origins: &[usize],
    x: &Padded,
    w_panels: &[f32],
    y_s: &mut [f32],
    strip: &mut [f32],
) {
    let (oh, ow, s) = (g.out_height(), g.out_width(), g.stride);
    let (ckk, co, p) = (g.patch_len(), g.out_channels, oh * ow);
    let strip = &mut strip[..ckk * W];
    for j0 in (0..p).step_by(W) {
        // Lanes past n are never read (the tile kernel masks them), so stay unwritten.
        let n = W.min(p - j0);
        let (oy, ox) = (j0 / ow, j0 % ow);
        if n == W && ox + W <= ow {
            // The 16 pixels lie in one output row: one run of the picture per column row
            // (its own branch: a run of constant length compiles to vector moves).
            let at = oy * s * x.pw + ox * s;
            for (dst, &o) in strip.chunks_exact_mut(W).zip(origins) {
                copy_strided(&x.data[o + at..], dst, s);
            }
        } else {
            // The strip's pixels as runs along output rows: (first lane, lanes, picture
            // offset of the run's first pixel); at most one run per lane.
            let mut runs = [(0, 0, 0); W];
            let (mut lane, mut count) = (0, 0);
            while lane < n {
                let (oy, ox) = ((j0 + lane) / ow, (j0 + lane) % ow);
                let len = (ow - ox).min(n - lane);
                runs[count] = (lane, len, (oy * x.pw + ox) * s);
                count += 1;
                lane += len;
            }
            for (dst, &o) in strip.chunks_exact_mut(W).zip(origins) {
                for &(lane, len, at) in &runs[..count] {
                    copy_strided(&x.data[o + at..], &mut dst[lane..][..len], s);
                }
            }
        }
        for (r, panel) in w_panels.chunks(ckk * W).enumerate() {
            let rows = W.min(co - r * W);
            let c = &mut y_s[r * W * p + j0..];
            tile_checked(ckk, panel, (strip, W), c, p, rows, n);
        }
    }
}

/// gwᵀ [ckk, co] += (this sample's columns) [ckk, p] · gy_sᵀ [p, co] for a 3×3 kernel, from
/// the transposed output gradient `gy_t` [p, co (padded)] (`picture::transpose_output_grad`).
///
/// Each accumulator vector holds 16 output channels of one column row, so the picture's
/// values are broadcast straight from the padded picture (three row pointers, the taps at
/// fixed offsets) and the column matrix is never formed. Per value: FMA chains from +0 over
/// blocks of KC pixels, each added to gwᵀ, as matrixmultiply does for gW += gy_s · columnsᵀ.
pub(super) fn weight_grad_sample(g: &Conv2dGeometry, x: &Padded, gy_t: &[f32], gw_t: &mut [f32]) {
    assert!(g.kernel == 3, "3×3 kernels only");
    let (oh, ow) = (g.out_height(), g.out_width());
    let (p, cop) = (oh * ow, channels_padded(g));
    let gy_t = &gy_t[..p * cop];
    let gw_t = &mut gw_t[..g.patch_len() * cop];
    let plane = x.ph * x.pw;
    // The last value the kernel reads: tap (2, 2) at the last output pixel.
    let last = ((oh - 1) * x.pw + (ow - 1)) * g.stride + 2 * x.pw + 2;
    assert!(last < plane, "padded picture bounds");
    for c in 0..g.in_channels {
        let picture = &x.data[c * plane..][..plane];
        let out = &mut gw_t[c * 9 * cop..][..9 * cop];
        let mut v0 = 0;
        while v0 < cop {
            let pair = cop - v0 >= 2 * W;
            // SAFETY: the channel's picture covers `last`, gy_t has p rows of cop values and
            // `out` 9 rows of cop, and the vectors read and written end at v0 + 16·NV ≤ cop
            // (checked by the slicing and asserts above); AVX-512F is present wherever this
            // path is chosen (`available`, asserted by the callers).
            #[cfg(target_arch = "x86_64")]
            unsafe {
                let args = Taps3 {
                    picture: picture.as_ptr(),
                    pw: x.pw,
                    stride: g.stride,
                    out_size: (oh, ow),
                    gy_t: gy_t.as_ptr().add(v0),
                    ld: cop,
                    gw_t: out.as_mut_ptr().add(v0),
                };
                if pair {
                    taps3::<2>(&args)
                } else {
                    taps3::<1>(&args)
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("conv::direct is used only on x86-64 with AVX-512F");
            v0 += if pair { 2 * W } else { W };
        }
    }
}

/// Where `taps3` reads and writes for one input channel and NV vectors of output channels.
#[cfg(target_arch = "x86_64")]
struct Taps3 {
    /// The channel's padded picture.
    picture: *const f32,
    /// Its padded width.
    pw: usize,
    stride: usize,
    /// (OH, OW).
    out_size: (usize, usize),
    /// The transposed output gradient at the first output channel of the vectors.
    gy_t: *const f32,
    /// Row length of gy_t and of gwᵀ.
    ld: usize,
    /// gwᵀ at row c·9 and the same output channel.
    gw_t: *mut f32,
}

/// The 3×3 weight-gradient kernel for NV vectors of 16 output channels: 9·NV accumulators,
/// one per tap and vector, flushed into gwᵀ every KC pixels and at the end.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn taps3<const NV: usize>(args: &Taps3) {
    let Taps3 {
        picture,
        pw,
        stride: s,
        out_size: (oh, ow),
        gy_t,
        ld,
        gw_t: out,
    } = *args;
    let mut acc = [[_mm512_setzero_ps(); NV]; 9];
    let flush = |acc: &mut [[__m512; NV]; 9]| {
        for (t, tap) in acc.iter_mut().enumerate() {
            for (v, a) in tap.iter_mut().enumerate() {
                let cp = out.add(t * ld + v * W);
                _mm512_storeu_ps(cp, _mm512_add_ps(_mm512_loadu_ps(cp), *a));
                *a = _mm512_setzero_ps();
            }
        }
    };
    let mut px = 0;
    for oy in 0..oh {
        let r0 = picture.add(oy * s * pw);
        let rows = [r0, r0.add(pw), r0.add(2 * pw)];
        for ox in 0..ow {
            let mut gv = [_mm512_setzero_ps(); NV];
            for (v, g) in gv.iter_mut().enumerate() {
                *g = _mm512_loadu_ps(gy_t.add(px * ld + v * W));
            }
            for (ki, row) in rows.iter().enumerate() {
                let at = row.add(ox * s);
                for kj in 0..3 {
                    let xv = _mm512_set1_ps(*at.add(kj));
                    for v in 0..NV {
                        acc[ki * 3 + kj][v] = _mm512_fmadd_ps(xv, gv[v], acc[ki * 3 + kj][v]);
                    }
                }
            }
            px += 1;
            if px % KC == 0 {
                flush(&mut acc);
            }
        }
    }
    if px % KC != 0 {
        flush(&mut acc);
    }
}

/// Length of the scratch `input_grad_sample` needs: one panel of 16 column rows.
pub(super) fn input_grad_scratch(g: &Conv2dGeometry) -> usize {
    W * g.out_height() * g.out_width()
}

/// The input gradient of one sample, 16 column rows at a time: gcols rows [16, p] = (those
/// rows of Wᵀ) · gy_s, each added back onto gx_s by col2im before the next 16. The values
/// and the order of the additions are those of the whole gcols = Wᵀ · gy_s followed by
/// col2im (each gx value receives its rows in ascending order either way), but the rows stay
/// in L2: the whole gcols of a 256 px ResNet layer is 9 MB per sample.
pub(super) fn input_grad_sample(
    g: &Conv2dGeometry,
    wt_panels: &[f32],
    gy_s: &[f32],
    gx_s: &mut [f32],
    rows_buf: &mut [f32],
) {
    let (co, ckk, p) = (
        g.out_channels,
        g.patch_len(),
        g.out_height() * g.out_width(),
    );
    let rows_buf = &mut rows_buf[..W * p];
    for (r, a) in wt_panels.chunks(co * W).enumerate() {
        let rows = W.min(ckk - r * W);
        for j0 in (0..p).step_by(W) {
            let n = W.min(p - j0);
            tile_checked(co, a, (&gy_s[j0..], p), &mut rows_buf[j0..], p, rows, n);
        }
        col2im(g, r * W..r * W + rows, rows_buf, 0, 1, gx_s);
    }
}

/// `tile` after checking that every operand covers what it reads or writes.
#[allow(clippy::too_many_arguments)]
fn tile_checked(
    k: usize,
    a: &[f32],
    (b, ldb): (&[f32], usize),
    c: &mut [f32],
    rsc: usize,
    rows: usize,
    cols: usize,
) {
    assert!(
        a.len() >= k * W
            && b.len() >= (k - 1) * ldb + cols
            && (1..=W).contains(&rows)
            && (1..=W).contains(&cols)
            && c.len() >= (rows - 1) * rsc + cols,
        "tile operand bounds"
    );
    // SAFETY: bounds checked above; `available()` is true wherever this module is used (the
    // caller chooses this path only then), so AVX-512F is present.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        tile(
            k,
            a.as_ptr(),
            (b.as_ptr(), ldb),
            c.as_mut_ptr(),
            rsc,
            rows,
            cols,
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("conv::direct is used only on x86-64 with AVX-512F");
}

/// C[i][j] (i < rows, j < cols; row stride `rsc`) = Σ_k a[k][i]·b[k][j], a packed as k
/// groups of 16, b's row k at b + k·ldb. Per output: an FMA chain from +0 over each block of
/// KC terms; the first block's chain is stored, later blocks' chains added to C, in block
/// order: matrixmultiply's operations for C = A·B (beta 0) in its order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    k: usize,
    a: *const f32,
    (b, ldb): (*const f32, usize),
    c: *mut f32,
    rsc: usize,
    rows: usize,
    cols: usize,
) {
    let mask: __mmask16 = if cols >= W {
        0xffff
    } else {
        ((1u32 << cols) - 1) as __mmask16
    };
    let mut k0 = 0;
    while k0 < k {
        let kb = KC.min(k - k0);
        let mut acc = [_mm512_setzero_ps(); W];
        for kk in k0..k0 + kb {
            // Lanes past `cols` are neither read nor used.
            let bv = _mm512_maskz_loadu_ps(mask, b.add(kk * ldb));
            let ak = a.add(kk * W);
            for (i, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_fmadd_ps(_mm512_set1_ps(*ak.add(i)), bv, *acc);
            }
        }
        for (i, acc) in acc.iter().enumerate().take(rows) {
            let cp = c.add(i * rsc);
            let v = if k0 == 0 {
                *acc
            } else {
                _mm512_add_ps(_mm512_maskz_loadu_ps(mask, cp), *acc)
            };
            _mm512_mask_storeu_ps(cp, mask, v);
        }
        k0 += kb;
    }
}

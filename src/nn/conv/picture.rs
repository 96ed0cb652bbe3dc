//! Where a convolution's values lie, shared by its AVX-512 kernels (`direct`, `broadcast`):
//! the picture with its zero border, where each column row starts in it, and the transposed
//! layouts of the weight gradient.

use super::Conv2dGeometry;

/// Lanes of one AVX-512 vector of f32.
pub(super) const W: usize = 16;

/// The picture with its zero border, and the geometry to index it.
pub(super) struct Padded<'a> {
    pub(super) data: &'a [f32],
    /// Padded height and width.
    pub(super) ph: usize,
    pub(super) pw: usize,
}

/// Sample `n` of `x` with `g.padding` zeros on every side, written into `buf` (or `x` itself
/// when there is no padding).
pub(super) fn padded<'a>(
    g: &Conv2dGeometry,
    x: &'a [f32],
    n: usize,
    buf: &'a mut [f32],
) -> Padded<'a> {
    let plane = g.height * g.width;
    let sample = &x[n * g.in_channels * plane..][..g.in_channels * plane];
    let (ph, pw) = (g.height + 2 * g.padding, g.width + 2 * g.padding);
    if g.padding == 0 {
        return Padded {
            data: sample,
            ph,
            pw,
        };
    }
    let buf = &mut buf[..g.in_channels * ph * pw];
    buf.fill(0.0);
    for (c, src) in sample.chunks(plane).enumerate() {
        for (y, row) in src.chunks(g.width).enumerate() {
            buf[(c * ph + y + g.padding) * pw + g.padding..][..g.width].copy_from_slice(row);
        }
    }
    Padded { data: buf, ph, pw }
}

/// Length of the buffer `padded` needs (none without padding: the input is used as it is).
pub(super) fn padded_len(g: &Conv2dGeometry) -> usize {
    match g.padding {
        0 => 0,
        pad => g.in_channels * (g.height + 2 * pad) * (g.width + 2 * pad),
    }
}

/// Where column row j = (c·k + ki)·k + kj starts in the padded picture: its value at output
/// pixel (oy, ox) is at that offset + oy·stride·pw + ox·stride.
pub(super) fn column_origin(g: &Conv2dGeometry, p: &Padded, j: usize) -> usize {
    let k = g.kernel;
    let (c, ki, kj) = (j / (k * k), j / k % k, j % k);
    (c * p.ph + ki) * p.pw + kj
}

/// Output channels rounded up to whole vectors of 16: the row length of the transposed
/// output gradient and of the transposed weight gradient.
pub(super) fn channels_padded(g: &Conv2dGeometry) -> usize {
    g.out_channels.div_ceil(W) * W
}

/// Scratch lengths the weight gradient needs: (transposed output gradient of one sample,
/// transposed weight gradient of one chunk).
pub(super) fn weight_grad_scratch(g: &Conv2dGeometry) -> (usize, usize) {
    let p = g.out_height() * g.out_width();
    (p * channels_padded(g), g.patch_len() * channels_padded(g))
}

/// Start a chunk's weight gradient: zero its transposed accumulator gwᵀ [ckk, co (padded)].
pub(super) fn weight_grad_begin(g: &Conv2dGeometry, gw_t: &mut [f32]) {
    gw_t[..weight_grad_scratch(g).1].fill(0.0);
}

/// gy_s [co, p] transposed into `gy_t` [p, co rounded up to 16] (the padding columns zero):
/// the layout the weight-gradient kernels read, each pixel's row of output channels.
pub(super) fn transpose_output_grad<'a>(
    g: &Conv2dGeometry,
    gy_s: &[f32],
    gy_t: &'a mut [f32],
) -> &'a [f32] {
    let (co, p, cop) = (
        g.out_channels,
        g.out_height() * g.out_width(),
        channels_padded(g),
    );
    let gy_t = &mut gy_t[..p * cop];
    if co < cop {
        gy_t.fill(0.0);
    }
    // Read along the planes, write across: each pixel's row of cop values stays in L1.
    for (o, plane) in gy_s.chunks_exact(p).enumerate() {
        for (v, row) in plane.iter().zip(gy_t[o..].iter_mut().step_by(cop)) {
            *row = *v;
        }
    }
    gy_t
}

/// Finish a chunk's weight gradient: gw [co, ckk] = gwᵀ (gw held zeros, so each value is
/// the one accumulated in gwᵀ).
pub(super) fn weight_grad_end(g: &Conv2dGeometry, gw_t: &[f32], gw: &mut [f32]) {
    let (ckk, cop) = (g.patch_len(), channels_padded(g));
    for (o, row) in gw.chunks_exact_mut(ckk).enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = gw_t[j * cop + o];
        }
    }
}

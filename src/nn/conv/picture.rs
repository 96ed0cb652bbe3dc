//! Where a convolution's values lie, shared by its AVX-512 kernels (`direct`, `broadcast`):
//! the picture with its zero border, the offsets of column rows and output pixels in it, and
//! the transposed layouts of the weight gradient.

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
    let (ph, pw) = padded_size(g);
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

/// Height and width of the picture with its zero border.
pub(super) fn padded_size(g: &Conv2dGeometry) -> (usize, usize) {
    (g.height + 2 * g.padding, g.width + 2 * g.padding)
}

/// Length of the buffer `padded` needs (none without padding: the input is used as it is).
pub(super) fn padded_len(g: &Conv2dGeometry) -> usize {
    match g.padding {
        0 => 0,
        _ => {
            let (ph, pw) = padded_size(g);
            g.in_channels * ph * pw
        }
    }
}

/// Offsets fixed by the geometry, computed once per call: in the padded picture, and in a
/// sample's output gradient [co, OH·OW] (which the channel-vector input gradient reads).
pub(super) struct Layout {
    /// Column row j = (c·k + ki)·k + kj starts at origins[j] (its value at the first output
    /// pixel).
    pub(super) origins: Vec<usize>,
    /// Output pixel p reads column rows at origin + pixels[p].
    pub(super) pixels: Vec<usize>,
    /// Padded width.
    pub(super) pw: usize,
    /// Output channel o's plane starts at planes[o] = o·OH·OW in the output gradient.
    pub(super) planes: Vec<usize>,
    /// Output pixel p is at pixel_index[p] = p within a plane.
    pub(super) pixel_index: Vec<usize>,
}

impl Layout {
    pub(super) fn new(g: &Conv2dGeometry) -> Self {
        let (ph, pw) = padded_size(g);
        let (k, ow) = (g.kernel, g.out_width());
        let p = g.out_height() * ow;
        Layout {
            origins: (0..g.patch_len())
                .map(|j| {
                    let (c, ki, kj) = (j / (k * k), j / k % k, j % k);
                    (c * ph + ki) * pw + kj
                })
                .collect(),
            pixels: (0..p)
                .map(|px| (px / ow * pw + px % ow) * g.stride)
                .collect(),
            pw,
            planes: (0..g.out_channels).map(|o| o * p).collect(),
            pixel_index: (0..p).collect(),
        }
    }
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

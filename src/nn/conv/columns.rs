//! im2col and its adjoint col2im: the column matrix of a convolution, whose rows are the
//! (channel, tap) pairs of the kernel and whose columns are the output pixels.

use super::Conv2dGeometry;

/// The output positions `o` along an axis of `len` input values whose input position
/// `o·stride − pad + tap` lies inside it.
pub(super) fn valid_range_along(
    len: usize,
    stride: usize,
    pad: usize,
    tap: usize,
    out_len: usize,
) -> std::ops::Range<usize> {
    let (s, p) = (stride as isize, pad as isize);
    let lo = (p - tap as isize).max(0);
    let lo = ((lo + s - 1) / s) as usize;
    let hi = (len as isize - 1 + p - tap as isize).div_euclid(s) + 1;
    lo.min(out_len)..(hi.max(0) as usize).min(out_len).max(lo.min(out_len))
}

/// The output columns `ox` whose input column `ox·stride − pad + kj` lies inside the picture.
fn valid_range(g: &Conv2dGeometry, kj: usize, out_len: usize) -> std::ops::Range<usize> {
    valid_range_along(g.width, g.stride, g.padding, kj, out_len)
}

/// cols[(c·k + ki)·k + kj][s·P + oy·OW + ox]
///     = x[n0 + s][c][oy·stride − pad + ki][ox·stride − pad + kj]
pub(super) fn im2col(g: &Conv2dGeometry, x: &[f32], n0: usize, samples: usize, cols: &mut [f32]) {
    let (oh, ow, k) = (g.out_height(), g.out_width(), g.kernel);
    let np = samples * oh * ow;
    // The padding's zeros in one pass over the buffer: zeroing each row's few padded values
    // on its own made a memset call per row, a tenth of an epoch on small pictures.
    if g.padding > 0 {
        cols[..g.patch_len() * np].fill(0.0);
    }
    for c in 0..g.in_channels {
        for ki in 0..k {
            // The output rows whose input row oy·stride − pad + ki lies inside the picture.
            let rows = valid_range_along(g.height, g.stride, g.padding, ki, oh);
            for kj in 0..k {
                let row = &mut cols[((c * k + ki) * k + kj) * np..][..np];
                let valid = valid_range(g, kj, ow);
                if valid.is_empty() {
                    continue;
                }
                // First input column of the valid range.
                let ix0 = (valid.start * g.stride + kj) - g.padding;
                for s in 0..samples {
                    let plane = &x[((n0 + s) * g.in_channels + c) * g.height * g.width..]
                        [..g.height * g.width];
                    for oy in rows.clone() {
                        let iy = oy * g.stride + ki - g.padding;
                        let src = &plane[iy * g.width..][..g.width];
                        let out = &mut row[(s * oh + oy) * ow..][..ow][valid.clone()];
                        copy_strided(&src[ix0..], out, g.stride);
                    }
                }
            }
        }
    }
}

/// out[i] = src[stride·i].
pub(super) fn copy_strided(src: &[f32], out: &mut [f32], stride: usize) {
    match stride {
        1 => out.copy_from_slice(&src[..out.len()]),
        2 => copy_every_second(src, out),
        _ => out
            .iter_mut()
            .zip(src.iter().step_by(stride))
            .for_each(|(d, v)| *d = *v),
    }
}

/// out[i] = src[2·i]. In pairs, so that the compiler vectorises it (a `step_by(2)` loop
/// stayed scalar: half of im2col's time in a 64 px epoch, whose encoder has three stride-2
/// stages).
fn copy_every_second(src: &[f32], out: &mut [f32]) {
    let Some((last, head)) = out.split_last_mut() else {
        return;
    };
    for (d, pair) in head.iter_mut().zip(src.chunks_exact(2)) {
        *d = pair[0];
    }
    *last = src[2 * head.len()];
}

/// The adjoint of `im2col` for the column rows `rows` (`cols` holds those rows, from the
/// first): adds every entry back onto the input pixel it came from, row after row.
pub(super) fn col2im(
    g: &Conv2dGeometry,
    rows: std::ops::Range<usize>,
    cols: &[f32],
    n0: usize,
    samples: usize,
    gx: &mut [f32],
) {
    let (oh, ow, k) = (g.out_height(), g.out_width(), g.kernel);
    let np = samples * oh * ow;
    for (r, j) in rows.enumerate() {
        let (c, ki, kj) = (j / (k * k), j / k % k, j % k);
        let row = &cols[r * np..][..np];
        let valid = valid_range(g, kj, ow);
        if valid.is_empty() {
            continue;
        }
        let ix0 = ((valid.start * g.stride + kj) as isize - g.padding as isize) as usize;
        for s in 0..samples {
            let base = ((n0 + s) * g.in_channels + c) * g.height * g.width;
            for oy in 0..oh {
                let iy = (oy * g.stride + ki) as isize - g.padding as isize;
                if iy < 0 || iy >= g.height as isize {
                    continue;
                }
                let src = &row[(s * oh + oy) * ow..][..ow][valid.clone()];
                let dst = &mut gx[base + iy as usize * g.width..][..g.width];
                if g.stride == 1 {
                    // Contiguous: lets the compiler vectorise the adds.
                    for (d, v) in dst[ix0..][..src.len()].iter_mut().zip(src) {
                        *d += v;
                    }
                } else {
                    let taps = dst[ix0..].iter_mut().step_by(g.stride);
                    for (d, v) in taps.zip(src) {
                        *d += v;
                    }
                }
            }
        }
    }
}

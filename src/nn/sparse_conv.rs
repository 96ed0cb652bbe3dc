//! Convolution of sparse input pictures (POI rasters: most cells are empty). Each non-zero
//! input value adds its weights to the outputs it reaches, so the cost follows the number of
//! non-zeros rather than the picture size; the dense kernels in conv/ are the reference.

use super::conv::Conv2dGeometry;

/// A batch of sparse input pictures (POI rasters: most cells are empty), as (sample, channel,
/// row, col, value) entries with no repeated cell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseBatch {
    pub batch: usize,
    pub channels: usize,
    pub size: usize,
    pub entries: Vec<(u32, u16, u16, u16, f32)>,
}

impl SparseBatch {
    pub fn to_dense(&self) -> Vec<f32> {
        let hw = self.size * self.size;
        let mut out = vec![0.0; self.batch * self.channels * hw];
        for &(n, c, r, col, v) in &self.entries {
            out[(n as usize * self.channels + c as usize) * hw
                + r as usize * self.size
                + col as usize] += v;
        }
        out
    }
}

/// For an input pixel at `i` along one axis, every (kernel tap, output position) it feeds.
fn taps(i: usize, g: &Conv2dGeometry, out_len: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    (0..g.kernel).filter_map(move |k| {
        let pos = i as isize + g.padding as isize - k as isize;
        (pos >= 0 && (pos as usize).is_multiple_of(g.stride) && (pos as usize / g.stride) < out_len)
            .then(|| (k, pos as usize / g.stride))
    })
}

/// Forward pass of a convolution whose input is sparse: each non-zero input value adds its
/// weights to the outputs it reaches, so the cost follows the number of non-zeros, not the
/// picture size. Same result as `conv2d_forward` on `x.to_dense()`.
pub fn sparse_conv2d_forward(
    g: &Conv2dGeometry,
    x: &SparseBatch,
    w: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (oh, ow, k, co) = (g.out_height(), g.out_width(), g.kernel, g.out_channels);
    let p = oh * ow;
    let mut y = vec![0.0f32; g.output_len()];
    if let Some(b) = bias {
        for n in 0..g.batch {
            for o in 0..co {
                y[(n * co + o) * p..][..p].fill(b[o]);
            }
        }
    }
    for &(n, c, r, col, v) in &x.entries {
        for (ki, oy) in taps(r as usize, g, oh) {
            for (kj, ox) in taps(col as usize, g, ow) {
                let out = (n as usize * co) * p + oy * ow + ox;
                let wi = (c as usize * k + ki) * k + kj;
                let wstride = g.in_channels * k * k;
                for o in 0..co {
                    y[out + o * p] += v * w[o * wstride + wi];
                }
            }
        }
    }
    y
}

/// Weight and bias gradients of `sparse_conv2d_forward` (the input is data: no gradient).
pub fn sparse_conv2d_backward(
    g: &Conv2dGeometry,
    x: &SparseBatch,
    gy: &[f32],
    gw: &mut [f32],
    gb: Option<&mut [f32]>,
) {
    let (oh, ow, k, co) = (g.out_height(), g.out_width(), g.kernel, g.out_channels);
    let p = oh * ow;
    if let Some(gb) = gb {
        for n in 0..g.batch {
            for (o, b) in gb.iter_mut().enumerate() {
                *b += gy[(n * co + o) * p..][..p].iter().sum::<f32>();
            }
        }
    }
    let wstride = g.in_channels * k * k;
    for &(n, c, r, col, v) in &x.entries {
        for (ki, oy) in taps(r as usize, g, oh) {
            for (kj, ox) in taps(col as usize, g, ow) {
                let out = (n as usize * co) * p + oy * ow + ox;
                let wi = (c as usize * k + ki) * k + kj;
                for o in 0..co {
                    gw[o * wstride + wi] += v * gy[out + o * p];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::conv::{conv2d_backward, conv2d_forward, Conv2dGrads};
    use rand::{Rng, SeedableRng};

    #[test]
    fn sparse_convolution_equals_the_dense_one() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for (size, k, s, p) in [(20, 7, 3, 3), (9, 3, 2, 1), (8, 3, 1, 0)] {
            let g = Conv2dGeometry {
                batch: 3,
                in_channels: 4,
                height: size,
                width: size,
                out_channels: 5,
                kernel: k,
                stride: s,
                padding: p,
            };
            let mut x = SparseBatch {
                batch: 3,
                channels: 4,
                size,
                entries: vec![],
            };
            let mut seen = std::collections::HashSet::new();
            for _ in 0..25 {
                let e = (
                    rng.gen_range(0..3u32),
                    rng.gen_range(0..4u16),
                    rng.gen_range(0..size as u16),
                    rng.gen_range(0..size as u16),
                );
                if seen.insert(e) {
                    x.entries
                        .push((e.0, e.1, e.2, e.3, rng.gen_range(0.1..2.0)));
                }
            }
            let w: Vec<f32> = (0..g.weight_len())
                .map(|_| rng.gen_range(-1.0..1.0))
                .collect();
            let b: Vec<f32> = (0..5).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let dense = x.to_dense();
            let yd = conv2d_forward(&g, &dense, &w, Some(&b));
            let ys = sparse_conv2d_forward(&g, &x, &w, Some(&b));
            for (a, e) in ys.iter().zip(&yd) {
                assert!((a - e).abs() < 1e-4, "{a} vs {e}");
            }
            let gy: Vec<f32> = (0..g.output_len())
                .map(|_| rng.gen_range(-1.0..1.0))
                .collect();
            let (mut gw_d, mut gb_d) = (vec![0.0; w.len()], vec![0.0; 5]);
            conv2d_backward(
                &g,
                &dense,
                &w,
                &gy,
                Conv2dGrads {
                    x: None,
                    w: &mut gw_d,
                    bias: Some(&mut gb_d),
                },
            );
            let (mut gw_s, mut gb_s) = (vec![0.0; w.len()], vec![0.0; 5]);
            sparse_conv2d_backward(&g, &x, &gy, &mut gw_s, Some(&mut gb_s));
            for (a, e) in gw_s.iter().zip(&gw_d).chain(gb_s.iter().zip(&gb_d)) {
                assert!((a - e).abs() < 1e-3, "{a} vs {e}");
            }
        }
    }
}

//! Convolution of sparse input pictures (POI rasters: most cells are empty). Each non-zero
//! input value adds its weights to the outputs it reaches, so the cost follows the number of
//! non-zeros rather than the picture size; the dense kernels in conv/ are the reference.

use super::conv::Conv2dGeometry;
use super::parallel::for_each_chunk;

/// A batch of sparse input pictures (POI rasters: most cells are empty), as (sample, channel,
/// row, col, value) entries with no repeated cell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseBatch {
    pub batch: usize,
    pub channels: usize,
    pub size: usize,
    pub entries: Vec<SparseEntry>,
}

/// One non-zero input value: (sample, channel, row, col, value).
pub type SparseEntry = (u32, u16, u16, u16, f32);

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

/// Samples per piece of work: fixed, so that the weight gradient's per-piece sums (added in
/// piece order) do not depend on the number of threads.
const SAMPLES_PER_PIECE: usize = 16;

/// The batch's entries cut at every `SAMPLES_PER_PIECE`-th sample: (samples, entries) per
/// piece. Entries come sorted by sample (`opencarbon::inputs` builds them tile by tile);
/// otherwise one piece holds them all.
fn pieces(x: &SparseBatch) -> Vec<(std::ops::Range<usize>, &[SparseEntry])> {
    let sorted = x.entries.windows(2).all(|w| w[0].0 <= w[1].0);
    if !sorted {
        return vec![(0..x.batch, &x.entries[..])];
    }
    let mut out = Vec::new();
    let mut rest = &x.entries[..];
    for n0 in (0..x.batch.max(1)).step_by(SAMPLES_PER_PIECE) {
        let n1 = (n0 + SAMPLES_PER_PIECE).min(x.batch);
        let end = rest.partition_point(|e| (e.0 as usize) < n1);
        let (here, later) = rest.split_at(end);
        out.push((n0..n1, here));
        rest = later;
    }
    out
}

/// Below this many entries the work stays on the calling thread.
const PARALLEL_MIN_ENTRIES: usize = 2048;

/// Forward pass of a convolution whose input is sparse: each non-zero input value adds its
/// weights to the outputs it reaches, so the cost follows the number of non-zeros, not the
/// picture size. Same result as `conv2d_forward` on `x.to_dense()`. Pieces of samples run on
/// the pool; each output value receives its terms in entry order, as on one thread.
pub fn sparse_conv2d_forward(
    g: &Conv2dGeometry,
    x: &SparseBatch,
    w: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (oh, ow, k, co) = (g.out_height(), g.out_width(), g.kernel, g.out_channels);
    let p = oh * ow;
    let mut y = vec![0.0f32; g.output_len()];
    let sample = co * p;
    // Each piece's slice of the output: its samples' rows.
    let mut parts = Vec::new();
    let mut rest = &mut y[..];
    for (samples, entries) in pieces(x) {
        let (here, later) = std::mem::take(&mut rest).split_at_mut(samples.len() * sample);
        parts.push((samples.start, entries, here));
        rest = later;
    }
    let wstride = g.in_channels * k * k;
    for_each_chunk(
        parts,
        x.entries.len() >= PARALLEL_MIN_ENTRIES,
        || (),
        |_, _, (n0, entries, y)| {
            if let Some(b) = bias {
                for (o, plane) in y.chunks_mut(p).enumerate() {
                    plane.fill(b[o % co]);
                }
            }
            for &(n, c, r, col, v) in entries {
                for (ki, oy) in taps(r as usize, g, oh) {
                    for (kj, ox) in taps(col as usize, g, ow) {
                        let out = (n as usize - n0) * sample + oy * ow + ox;
                        let wi = (c as usize * k + ki) * k + kj;
                        for o in 0..co {
                            y[out + o * p] += v * w[o * wstride + wi];
                        }
                    }
                }
            }
        },
    );
    y
}

/// Weight and bias gradients of `sparse_conv2d_forward` (the input is data: no gradient),
/// accumulated (+=) into `gw` and `gb`. Each piece of samples sums its own gradients on the
/// pool; the pieces' sums are added in piece order.
pub fn sparse_conv2d_backward(
    g: &Conv2dGeometry,
    x: &SparseBatch,
    gy: &[f32],
    gw: &mut [f32],
    gb: Option<&mut [f32]>,
) {
    let (oh, ow, k, co) = (g.out_height(), g.out_width(), g.kernel, g.out_channels);
    let (p, sample) = (oh * ow, co * oh * ow);
    let wstride = g.in_channels * k * k;
    let with_bias = gb.is_some();
    let partial = for_each_chunk(
        pieces(x),
        x.entries.len() >= PARALLEL_MIN_ENTRIES,
        || (),
        |_, _, (samples, entries)| {
            let mut pw = vec![0.0f32; gw.len()];
            let mut pb = vec![0.0f32; if with_bias { co } else { 0 }];
            for n in samples {
                for (b, plane) in pb.iter_mut().zip(gy[n * sample..][..sample].chunks(p)) {
                    *b += plane.iter().sum::<f32>();
                }
            }
            for &(n, c, r, col, v) in entries {
                for (ki, oy) in taps(r as usize, g, oh) {
                    for (kj, ox) in taps(col as usize, g, ow) {
                        let out = n as usize * sample + oy * ow + ox;
                        let wi = (c as usize * k + ki) * k + kj;
                        for o in 0..co {
                            pw[o * wstride + wi] += v * gy[out + o * p];
                        }
                    }
                }
            }
            (pw, pb)
        },
    );
    let mut gb = gb;
    for (pw, pb) in partial {
        gw.iter_mut().zip(&pw).for_each(|(d, v)| *d += v);
        if let Some(gb) = gb.as_deref_mut() {
            gb.iter_mut().zip(&pb).for_each(|(d, v)| *d += v);
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
        // The last geometry has 40 samples in 3 pieces and enough entries to go parallel.
        for (batch, count, (size, k, s, p)) in [
            (3, 25, (20, 7, 3, 3)),
            (3, 25, (9, 3, 2, 1)),
            (3, 25, (8, 3, 1, 0)),
            (40, 6000, (20, 7, 3, 3)),
        ] {
            let g = Conv2dGeometry {
                batch,
                in_channels: 4,
                height: size,
                width: size,
                out_channels: 5,
                kernel: k,
                stride: s,
                padding: p,
            };
            let mut x = SparseBatch {
                batch,
                channels: 4,
                size,
                entries: vec![],
            };
            let mut seen = std::collections::HashSet::new();
            for _ in 0..count {
                let e = (
                    rng.gen_range(0..batch as u32),
                    rng.gen_range(0..4u16),
                    rng.gen_range(0..size as u16),
                    rng.gen_range(0..size as u16),
                );
                if seen.insert(e) {
                    x.entries
                        .push((e.0, e.1, e.2, e.3, rng.gen_range(0.1..2.0)));
                }
            }
            x.entries.sort_by_key(|e| e.0);
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

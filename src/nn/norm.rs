//! Batch normalisation over the channel axis of NCHW data, CPU kernels. One fused pass per
//! direction instead of dfdx's composition of mean, broadcast, subtract, square, divide,
//! multiply and add (each with its own buffer and backward op): in the OpenCarbon epoch
//! profile those broadcast binary ops were a quarter of the time.

use std::mem::MaybeUninit;

use super::parallel::for_each_chunk;
use super::Shape4;

/// A batch's mean and biased variance per channel.
pub type BatchStats = (Vec<f32>, Vec<f32>);

/// What the forward pass keeps for the backward pass: x̂ = (x − μ)/σ for every value, then
/// 1/σ per channel.
pub fn saved_len(shape: Shape4) -> usize {
    let (n, c, h, w) = shape;
    n * c * h * w + c
}

/// Visit channel `c`'s values: `f(range)` for each sample's H×W plane of that channel.
fn planes(shape: Shape4, c: usize, mut f: impl FnMut(std::ops::Range<usize>)) {
    let (n, ch, h, w) = shape;
    let hw = h * w;
    for i in 0..n {
        let start = (i * ch + c) * hw;
        f(start..start + hw);
    }
}

/// Partial sums per channel plane: value k of a plane goes to partial sum k mod LANES, and
/// the partial sums are added in order at the end. Independent chains, which the compiler
/// keeps in vector registers: with one running sum every f64 addition waited for the one
/// before (about 4 cycles per value), and the statistics passes were 9 % of a two-thread
/// 64 px epoch. The order depends on the data's shape alone, so results stay the same at any
/// thread count.
const LANES: usize = 8;

/// Σ f(a_k, b_k) over two planes of equal length, in f64, in the `LANES` order; with
/// AVX-512 where the machine has it (the same operations per lane, so the same bits).
fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f64, f64) -> f64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is present (checked on the line above).
        return unsafe { lane_sum_avx512(a, b, f) };
    }
    lane_sum_portable(a, b, f)
}

/// `lane_sum_portable` compiled for AVX-512: its 8 partial sums fill one register.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn lane_sum_avx512(a: &[f32], b: &[f32], f: impl Fn(f64, f64) -> f64) -> f64 {
    lane_sum_portable(a, b, f)
}

#[inline(always)]
fn lane_sum_portable(a: &[f32], b: &[f32], f: impl Fn(f64, f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let (a8, b8) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (a8.remainder(), b8.remainder());
    for (ca, cb) in a8.zip(b8) {
        for k in 0..LANES {
            acc[k] += f(ca[k] as f64, cb[k] as f64);
        }
    }
    for (k, (&va, &vb)) in ra.iter().zip(rb).enumerate() {
        acc[k] += f(va as f64, vb as f64);
    }
    acc.iter().sum()
}

/// Below this many values a batch norm runs on the calling thread (spawning costs more).
const PARALLEL_MIN_VALUES: usize = 1 << 16;

/// `f(c)` for every channel, on several threads for large tensors; results in channel order.
/// Each channel's sums are computed by one thread in sample order: identical on any count.
fn per_channel<R: Send>(shape: Shape4, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let (n, ch, h, w) = shape;
    let parallel = n * ch * h * w >= PARALLEL_MIN_VALUES;
    for_each_chunk((0..ch).collect(), parallel, || (), |_, _, c| f(c))
}

/// `f(sample, parts)` for every sample's block of C×H×W values in each of `bufs` (all laid
/// out like the input), on several threads for large tensors.
fn per_sample<T: Send, const B: usize>(
    shape: Shape4,
    bufs: [&mut [T]; B],
    f: impl Fn(usize, [&mut [T]; B]) + Sync,
) {
    let (n, ch, h, w) = shape;
    let block = ch * h * w;
    let parallel = n * block >= PARALLEL_MIN_VALUES;
    // Samples per item: about PARALLEL_MIN_VALUES values, fixed by the shape alone.
    let per_item = (PARALLEL_MIN_VALUES / block.max(1)).max(1);
    let mut chunked = bufs.map(|b| b[..n * block].chunks_mut(per_item * block));
    let items: Vec<[&mut [T]; B]> = (0..n.div_ceil(per_item))
        .map(|_| std::array::from_fn(|k| chunked[k].next().expect("one chunk per item")))
        .collect();
    for_each_chunk(
        items,
        parallel,
        || (),
        |_, item, parts| {
            let samples = parts[0].len() / block.max(1);
            let mut blocks = parts.map(|p| p.chunks_mut(block));
            for s in 0..samples {
                let one = std::array::from_fn(|k| blocks[k].next().expect("one block per sample"));
                f(item * per_item + s, one);
            }
        },
    );
}

/// `per_sample` into `B` new buffers laid out like the input (each with room for `extra[k]`
/// more values after it), which `f` must fill completely: each thread writes its samples'
/// values straight into the new memory. (Zeroing a new buffer first, `vec![0.0; n]`, was a
/// tenth of a two-thread epoch at 64 px, on the calling thread while the other waited.)
fn per_sample_new<const B: usize>(
    shape: Shape4,
    extra: [usize; B],
    f: impl Fn(usize, [&mut [MaybeUninit<f32>]; B]) + Sync,
) -> [Vec<f32>; B] {
    let (n, ch, h, w) = shape;
    let len = n * ch * h * w;
    let mut bufs: [Vec<f32>; B] = std::array::from_fn(|k| Vec::with_capacity(len + extra[k]));
    let parts: [&mut [MaybeUninit<f32>]; B] =
        bufs.each_mut().map(|b| &mut b.spare_capacity_mut()[..len]);
    per_sample(shape, parts, f);
    for b in &mut bufs {
        // SAFETY: `per_sample` hands every sample's block of the `len` values to `f`, and
        // every `f` below writes each value of its blocks.
        unsafe { b.set_len(len) };
    }
    bufs
}

/// y = γ·x̂ + β with x̂ normalised by the batch statistics (`running` = None, training: also
/// returns the batch mean and biased variance per channel) or by the running statistics
/// (`running` = Some((mean, var)), evaluation). Sums in f64.
pub fn batch_norm_forward(
    shape: Shape4,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    running: Option<(&[f32], &[f32])>,
    eps: f32,
) -> (Vec<f32>, Vec<f32>, Option<BatchStats>) {
    let (n, ch, h, w) = shape;
    let hw = h * w;
    let count = (n * h * w) as f64;
    let stats: Vec<(f64, f64)> = match running {
        Some((m, v)) => (0..ch).map(|c| (m[c] as f64, v[c] as f64)).collect(),
        None => per_channel(shape, |c| {
            let mut sum = 0.0f64;
            planes(shape, c, |r| {
                sum += lane_sum(&x[r.clone()], &x[r], |v, _| v)
            });
            let mean = sum / count;
            let mut sq = 0.0f64;
            planes(shape, c, |r| {
                sq += lane_sum(&x[r.clone()], &x[r], |v, _| (v - mean) * (v - mean))
            });
            (mean, sq / count)
        }),
    };
    let batch_stats = running.is_none().then(|| {
        stats
            .iter()
            .map(|&(m, v)| (m as f32, v as f32))
            .unzip::<f32, f32, Vec<f32>, Vec<f32>>()
    });
    let inv_std: Vec<f32> = stats
        .iter()
        .map(|&(_, var)| (1.0 / (var + eps as f64).sqrt()) as f32)
        .collect();
    let [y, mut saved] = per_sample_new(shape, [0, ch], |i, [y, xhat]| {
        for c in 0..ch {
            let r = c * hw..(c + 1) * hw;
            let (mean, is, g, b) = (stats[c].0 as f32, inv_std[c], gamma[c], beta[c]);
            let src = &x[(i * ch + c) * hw..][..hw];
            for ((xh, yv), &xv) in xhat[r.clone()].iter_mut().zip(&mut y[r]).zip(src) {
                let normed = (xv - mean) * is;
                xh.write(normed);
                yv.write(g * normed + b);
            }
        }
    });
    saved.extend_from_slice(&inv_std);
    (y, saved, batch_stats)
}

/// Gradients (x, γ, β) from the output gradient `gy`. In training mode the statistics depend
/// on x, which adds the batch terms: dx = γ/σ · (dy − mean(dy) − x̂·mean(dy·x̂)).
pub fn batch_norm_backward(
    shape: Shape4,
    saved: &[f32],
    gamma: &[f32],
    train: bool,
    gy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (n, ch, h, w) = shape;
    let (hw, len) = (h * w, n * ch * h * w);
    let count = (n * h * w) as f64;
    let (xhat, inv_std) = saved.split_at(len);
    let sums: Vec<(f64, f64)> = per_channel(shape, |c| {
        let (mut sum_dy, mut sum_dy_xhat) = (0.0f64, 0.0f64);
        planes(shape, c, |r| {
            sum_dy += lane_sum(&gy[r.clone()], &xhat[r.clone()], |d, _| d);
            sum_dy_xhat += lane_sum(&gy[r.clone()], &xhat[r], |d, xh| d * xh);
        });
        (sum_dy, sum_dy_xhat)
    });
    let g_gamma = sums.iter().map(|&(_, sdx)| sdx as f32).collect();
    let g_beta = sums.iter().map(|&(sd, _)| sd as f32).collect();
    // Per channel: scale, mean(dy), mean(dy·x̂).
    let terms: Vec<(f32, f32, f32)> = (0..ch)
        .map(|c| {
            let (sd, sdx) = sums[c];
            let scale = gamma[c] * inv_std[c];
            if train {
                (scale, (sd / count) as f32, (sdx / count) as f32)
            } else {
                (scale, 0.0, 0.0)
            }
        })
        .collect();
    let [gx] = per_sample_new(shape, [0], |i, [gx]| {
        for (c, &(scale, mean_dy, mean_dy_xhat)) in terms.iter().enumerate() {
            let at = (i * ch + c) * hw;
            let (d, xh) = (&gy[at..][..hw], &xhat[at..][..hw]);
            for ((g, &d), &xh) in gx[c * hw..][..hw].iter_mut().zip(d).zip(xh) {
                g.write(scale * (d - mean_dy - xh * mean_dy_xhat));
            }
        }
    });
    (gx, g_gamma, g_beta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn lane_sums_are_the_same_bits_on_both_paths_and_near_the_exact_sum() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        // 1031: a length with a remainder after the lanes.
        let a: Vec<f32> = (0..1031).map(|_| rng.gen_range(-2.0..2.0)).collect();
        let b: Vec<f32> = (0..1031).map(|_| rng.gen_range(-2.0..2.0)).collect();
        let f = |x: f64, y: f64| x * y - 0.25;
        let portable = lane_sum_portable(&a, &b, f);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is present.
            let wide = unsafe { lane_sum_avx512(&a, &b, f) };
            assert_eq!(wide.to_bits(), portable.to_bits());
        }
        // The lanes by hand: value k in partial sum k mod LANES, the partial sums in order.
        let mut lanes = [0.0f64; LANES];
        for (k, (x, y)) in a.iter().zip(&b).enumerate() {
            lanes[k % LANES] += f(*x as f64, *y as f64);
        }
        let by_hand = lanes.iter().fold(0.0f64, |s, v| s + v);
        assert_eq!(portable.to_bits(), by_hand.to_bits());
        let sequential: f64 = a.iter().zip(&b).map(|(x, y)| f(*x as f64, *y as f64)).sum();
        assert!((portable - sequential).abs() < 1e-9 * (1.0 + sequential.abs()));
    }

    #[test]
    fn gradients_match_finite_differences_in_both_modes() {
        let shape = (3, 2, 2, 3);
        let len = 3 * 2 * 2 * 3;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut r = |k: usize| -> Vec<f32> { (0..k).map(|_| rng.gen_range(-1.0..1.0)).collect() };
        let (x, gamma, beta, up) = (r(len), r(2), r(2), r(len));
        let running = (vec![0.1f32, -0.2], vec![0.8f32, 1.3]);
        for train in [true, false] {
            let stats = (!train).then_some((running.0.as_slice(), running.1.as_slice()));
            let loss = |x: &[f32], g: &[f32], b: &[f32]| -> f64 {
                let (y, _, _) = batch_norm_forward(shape, x, g, b, stats, 1e-5);
                y.iter().zip(&up).map(|(a, b)| *a as f64 * *b as f64).sum()
            };
            let (_, saved, _) = batch_norm_forward(shape, &x, &gamma, &beta, stats, 1e-5);
            let (gx, gg, gb) = batch_norm_backward(shape, &saved, &gamma, train, &up);
            let eps = 1e-2f32;
            let numeric = |which: usize, i: usize| {
                let (mut xp, mut gp, mut bp) = (x.clone(), gamma.clone(), beta.clone());
                let (mut xm, mut gm, mut bm) = (x.clone(), gamma.clone(), beta.clone());
                match which {
                    0 => (xp[i] += eps, xm[i] -= eps),
                    1 => (gp[i] += eps, gm[i] -= eps),
                    _ => (bp[i] += eps, bm[i] -= eps),
                };
                (loss(&xp, &gp, &bp) - loss(&xm, &gm, &bm)) / (2.0 * eps as f64)
            };
            for (which, analytic) in [(0, &gx), (1, &gg), (2, &gb)] {
                for (i, a) in analytic.iter().enumerate() {
                    let num = numeric(which, i);
                    assert!(
                        (num - *a as f64).abs() < 3e-3 * (1.0 + num.abs()),
                        "train={train} grad {which}[{i}]: analytic {a} numeric {num}"
                    );
                }
            }
        }
    }
}

//! dfdx's element-wise ops and trailing-axis sums, which the vendored copy splits across
//! rayon's pool (vendor/dfdx/src/tensor/cpu/pieces.rs), give the bits of the serial loops
//! they replaced at 1 and 2 threads: each value is the same expression, and each sum the same
//! terms from zero in row-major order. The shapes are those of the POI encoder's squeeze and
//! excitation at 64 px, large enough to be split.

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};

type Shape4 = (usize, usize, usize, usize);

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The op's output and its gradients, all as bits, on a pool of `threads`.
struct Run {
    out: Vec<u32>,
    grads: Vec<Vec<u32>>,
}

fn on_threads(threads: usize, f: impl Fn() -> Run + Send + Sync) -> Run {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(f)
}

const SHAPE: Shape4 = (48, 32, 16, 16);

/// x · gate broadcast over H and W (squeeze and excitation), weighted by r and summed.
fn channel_scale(x: &[f32], gate: &[f32], r: &[f32]) -> Run {
    let dev = Cpu::default();
    let (n, c, _, _) = SHAPE;
    let xt: Tensor<Shape4, f32, Cpu> = dev.tensor_from_vec(x.to_vec(), SHAPE);
    let gt: Tensor<(usize, usize), f32, Cpu> = dev.tensor_from_vec(gate.to_vec(), (n, c));
    let rt: Tensor<Shape4, f32, Cpu> = dev.tensor_from_vec(r.to_vec(), SHAPE);
    let y = xt.clone().leaky_traced()
        * gt.clone()
            .leaky_traced()
            .broadcast_like::<_, Axes2<2, 3>>(&SHAPE);
    let out = y.retaped::<NoneTape>().as_vec();
    let g = (y * rt).sum().backward();
    Run {
        out: bits(&out),
        grads: vec![bits(&g.get(&xt).as_vec()), bits(&g.get(&gt).as_vec())],
    }
}

/// relu(x + x2), its sum over H and W weighted by w, summed.
fn add_relu_pool(x: &[f32], x2: &[f32], w: &[f32]) -> Run {
    let dev = Cpu::default();
    let (n, c, _, _) = SHAPE;
    let xt: Tensor<Shape4, f32, Cpu> = dev.tensor_from_vec(x.to_vec(), SHAPE);
    let x2t: Tensor<Shape4, f32, Cpu> = dev.tensor_from_vec(x2.to_vec(), SHAPE);
    let wt: Tensor<(usize, usize), f32, Cpu> = dev.tensor_from_vec(w.to_vec(), (n, c));
    let pooled = (xt.clone().leaky_traced() + x2t.clone().leaky_traced())
        .relu()
        .sum::<(usize, usize), Axes2<2, 3>>();
    let out = pooled.retaped::<NoneTape>().as_vec();
    let g = (pooled * wt).sum().backward();
    Run {
        out: bits(&out),
        grads: vec![bits(&g.get(&xt).as_vec()), bits(&g.get(&x2t).as_vec())],
    }
}

fn same_at_one_and_two_threads(f: impl Fn() -> Run + Send + Sync + Copy) -> Run {
    let (one, two) = (on_threads(1, f), on_threads(2, f));
    assert_eq!(one.out, two.out);
    assert_eq!(one.grads, two.grads);
    one
}

#[test]
fn broadcast_products_give_the_serial_bits_at_any_thread_count() {
    let (n, c, h, w) = SHAPE;
    let block = h * w;
    let (x, gate, r) = (
        values(n * c * block, 1),
        values(n * c, 2),
        values(n * c * block, 3),
    );
    let run = same_at_one_and_two_threads(|| channel_scale(&x, &gate, &r));
    // dfdx's serial loops: y_i = x_i · g_j; ∂x_i = 0 + g_j · r_i; ∂g_j = Σ_t x_i · r_i from 0
    // in row-major order (j = i / block).
    let y: Vec<f32> = (0..x.len()).map(|i| x[i] * gate[i / block]).collect();
    let gx: Vec<f32> = (0..x.len()).map(|i| 0.0 + gate[i / block] * r[i]).collect();
    let gg: Vec<f32> = (0..gate.len())
        .map(|j| (0..block).fold(0.0f32, |s, t| s + x[j * block + t] * r[j * block + t]))
        .collect();
    assert_eq!(run.out, bits(&y));
    assert_eq!(run.grads, vec![bits(&gx), bits(&gg)]);
}

#[test]
fn dense_ops_and_trailing_sums_give_the_serial_bits_at_any_thread_count() {
    let (n, c, h, w) = SHAPE;
    let block = h * w;
    let (x, x2, wt) = (
        values(n * c * block, 4),
        values(n * c * block, 5),
        values(n * c, 6),
    );
    let run = same_at_one_and_two_threads(|| add_relu_pool(&x, &x2, &wt));
    let a: Vec<f32> = x.iter().zip(&x2).map(|(p, q)| (p + q).max(0.0)).collect();
    let pooled: Vec<f32> = (0..n * c)
        .map(|j| a[j * block..][..block].iter().fold(0.0f32, |s, v| s + v))
        .collect();
    // ∂a_i = 0 + w_j; relu's: 0 + (a_i > 0) · ∂a_i; the sum's: 0 + 1 · that, for both terms.
    let gx: Vec<f32> = (0..x.len())
        .map(|i| {
            let da = 0.0 + wt[i / block];
            let dr = 0.0 + if x[i] + x2[i] > 0.0 { 1.0 } else { 0.0 } * da;
            0.0 + 1.0 * dr
        })
        .collect();
    assert_eq!(run.out, bits(&pooled));
    assert_eq!(run.grads, vec![bits(&gx), bits(&gx)]);
}

#[test]
fn a_large_sum_to_a_scalar_is_the_same_at_any_thread_count() {
    let (n, c, h, w) = SHAPE;
    let x = values(n * c * h * w, 7);
    let run = same_at_one_and_two_threads(|| {
        let dev = Cpu::default();
        let xt: Tensor<Shape4, f32, Cpu> = dev.tensor_from_vec(x.clone(), SHAPE);
        let total = (xt.clone().leaky_traced() * 3.0).sum();
        let out = vec![total.array()];
        let g = total.backward();
        Run {
            out: bits(&out),
            grads: vec![bits(&g.get(&xt).as_vec())],
        }
    });
    // One running sum per piece of 2^14 values, the pieces' sums added in order; each
    // gradient value 0 + 1 · 3 (the product's backward after the sum's).
    let pieces: Vec<f32> = x
        .chunks(1 << 14)
        .map(|p| p.iter().fold(0.0f32, |s, v| s + v * 3.0))
        .collect();
    let total = pieces.iter().fold(0.0f32, |s, v| s + v);
    assert_eq!(run.out, bits(&[total]));
    assert_eq!(run.grads, vec![bits(&vec![3.0f32; x.len()])]);
}

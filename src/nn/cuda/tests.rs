//! The CUDA kernels against the CPU kernels (themselves checked against PyTorch and finite
//! differences): the same op on the same random inputs on both devices, outputs and
//! gradients within a relative tolerance. Without a usable GPU each test says so and passes
//! (cuda builds on GPU-less machines run with scripts/make_cuda_driver_stub.sh); the NVRTC
//! compile check needs no GPU and always runs.

use std::cell::Cell;

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};

use super::*;
use crate::nn::device::ModelDevice;
use crate::nn::{self, Shape4};

/// The GPU, or None (with the reason printed) when there is none; with
/// OPENCARBON_REQUIRE_GPU=1 (scripts/gpu_check.sh) a missing GPU fails the test instead.
pub(crate) fn gpu_or_skip() -> Option<Cuda> {
    match open(0, 0) {
        Ok(c) => Some(c),
        Err(e) if std::env::var_os("OPENCARBON_REQUIRE_GPU").is_some() => {
            panic!("OPENCARBON_REQUIRE_GPU is set and no GPU could be used: {e}")
        }
        Err(e) => {
            eprintln!("CUDA test skipped: {e}");
            None
        }
    }
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

pub(crate) fn assert_close(name: &str, cpu: &[f32], gpu: &[f32], tol: f32) {
    assert_eq!(cpu.len(), gpu.len(), "{name}: lengths differ");
    for (i, (a, b)) in cpu.iter().zip(gpu).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + a.abs()),
            "{name}[{i}]: CPU {a} vs GPU {b}"
        );
    }
}

fn len4(s: Shape4) -> usize {
    s.0 * s.1 * s.2 * s.3
}

/// Output and gradients (input, weight, bias) of one convolution with upstream gradient
/// `up`; `budget` (values) forces several im2col chunks on the GPU.
fn conv_case<D: ModelDevice>(
    dev: &D,
    xs: Shape4,
    ws: Shape4,
    stride: usize,
    pad: usize,
) -> Vec<Vec<f32>> {
    let x = dev.tensor_from_vec(random(len4(xs), 1), xs);
    let w = dev.tensor_from_vec(random(len4(ws), 2), ws);
    let b = dev.tensor_from_vec(random(ws.0, 3), (ws.0,));
    let y = nn::conv2d(x.leaky_trace(), &w, Some(&b), stride, pad, true).unwrap();
    let up = dev.tensor_from_vec(random(y.shape().num_elements(), 4), *y.shape());
    let out = y.retaped::<NoneTape>().as_vec();
    let grads = (y * up).sum().backward();
    vec![
        out,
        grads.get(&x).as_vec(),
        grads.get(&w).as_vec(),
        grads.get(&b).as_vec(),
    ]
}

thread_local! {
    static BUDGET: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The column budget in force (tests lower it to force chunking).
pub(super) fn col_budget() -> usize {
    BUDGET.with(|b| b.get()).unwrap_or(conv::COL_BUDGET)
}

#[test]
fn kernels_compile_for_hopper() {
    // NVRTC only: no GPU needed. compute_90 = H100/H200.
    let ptx = compile_kernels(Some("compute_90")).unwrap();
    for name in KERNEL_NAMES {
        assert!(
            ptx.contains(&format!(".entry {name}(")),
            "kernel {name} missing from the PTX"
        );
    }
}

#[test]
fn convolution_matches_cpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    let cpu = Cpu::default();
    for (xs, ws, stride, pad, budget) in [
        ((2, 3, 9, 9), (4, 3, 3, 3), 1, 1, None),
        ((3, 4, 11, 10), (5, 4, 3, 3), 2, 1, None),
        ((2, 3, 16, 16), (6, 3, 7, 7), 2, 3, None),
        // Chunks of one image (the column buffer of one image is 27·81 values).
        ((3, 3, 9, 9), (4, 3, 3, 3), 1, 1, Some(27 * 81)),
    ] {
        BUDGET.with(|b| b.set(budget));
        let (c, g) = (
            conv_case(&cpu, xs, ws, stride, pad),
            conv_case(&gpu, xs, ws, stride, pad),
        );
        BUDGET.with(|b| b.set(None));
        for (i, name) in ["y", "grad x", "grad w", "grad b"].iter().enumerate() {
            assert_close(&format!("conv {xs:?} {ws:?} {name}"), &c[i], &g[i], 1e-4);
        }
    }
}

fn sparse_case<D: ModelDevice>(dev: &D, x: &SparseBatch) -> Vec<Vec<f32>> {
    let ws = (4, x.channels, 3, 3);
    let w = dev.tensor_from_vec(random(len4(ws), 5), ws);
    let b = dev.tensor_from_vec(random(4, 6), (4,));
    let y: Tensor4<D, OwnedTape<f32, D>> = nn::sparse_conv2d(x, &w, Some(&b), 2, 1).unwrap();
    let up = dev.tensor_from_vec(random(y.shape().num_elements(), 7), *y.shape());
    let out = y.retaped::<NoneTape>().as_vec();
    let grads = (y * up).sum().backward();
    vec![out, grads.get(&w).as_vec(), grads.get(&b).as_vec()]
}

#[test]
fn sparse_convolution_matches_cpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    let x = SparseBatch {
        batch: 3,
        channels: 5,
        size: 8,
        entries: vec![
            (0, 0, 0, 0, 1.5),
            (0, 4, 7, 7, 0.5),
            (1, 2, 3, 4, 2.0),
            (2, 1, 6, 1, -1.0),
            (2, 3, 0, 7, 0.25),
        ],
    };
    let (c, g) = (sparse_case(&Cpu::default(), &x), sparse_case(&gpu, &x));
    for (i, name) in ["y", "grad w", "grad b"].iter().enumerate() {
        assert_close(&format!("sparse conv {name}"), &c[i], &g[i], 1e-4);
    }
}

fn pool_case<D: ModelDevice>(dev: &D, xs: Shape4) -> Vec<Vec<f32>> {
    let mut values = random(len4(xs), 8);
    values[5] = values[6]; // a tie inside a window: the first position must win on both
    let x = dev.tensor_from_vec(values, xs);
    let y = nn::max_pool2d(x.leaky_trace(), 3, 2, 1).unwrap();
    let up = dev.tensor_from_vec(random(y.shape().num_elements(), 9), *y.shape());
    let out = y.retaped::<NoneTape>().as_vec();
    let grads = (y * up).sum().backward();
    vec![out, grads.get(&x).as_vec()]
}

#[test]
fn max_pooling_matches_cpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    let xs = (2, 3, 9, 8);
    let (c, g) = (pool_case(&Cpu::default(), xs), pool_case(&gpu, xs));
    assert_close("max pool y", &c[0], &g[0], 0.0);
    assert_close("max pool grad x", &c[1], &g[1], 1e-6);
}

fn batch_norm_case<D: ModelDevice>(dev: &D, train: bool) -> Vec<Vec<f32>> {
    let xs = (4, 3, 5, 6);
    let x = dev.tensor_from_vec(
        random(len4(xs), 10).iter().map(|v| v * 3.0 + 1.0).collect(),
        xs,
    );
    let gamma = dev.tensor_from_vec(random(3, 11), (3,));
    let beta = dev.tensor_from_vec(random(3, 12), (3,));
    let running = (
        dev.tensor_from_vec(vec![0.5, -0.2, 0.1], (3,)),
        dev.tensor_from_vec(vec![1.5, 0.7, 2.0], (3,)),
    );
    let run = (!train).then_some((&running.0, &running.1));
    let (y, stats) = nn::batch_norm(x.leaky_trace(), &gamma, &beta, run, 1e-5).unwrap();
    let up = dev.tensor_from_vec(random(len4(xs), 13), xs);
    let out = y.retaped::<NoneTape>().as_vec();
    let grads = (y * up).sum().backward();
    let (mean, var) = stats.map_or_else(Default::default, |(m, v)| (m.as_vec(), v.as_vec()));
    vec![
        out,
        grads.get(&x).as_vec(),
        grads.get(&gamma).as_vec(),
        grads.get(&beta).as_vec(),
        mean,
        var,
    ]
}

#[test]
fn batch_norm_matches_cpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    for train in [true, false] {
        let (c, g) = (
            batch_norm_case(&Cpu::default(), train),
            batch_norm_case(&gpu, train),
        );
        for (i, name) in ["y", "grad x", "grad γ", "grad β", "mean", "var"]
            .iter()
            .enumerate()
        {
            assert_close(
                &format!("batch norm (train {train}) {name}"),
                &c[i],
                &g[i],
                1e-4,
            );
        }
    }
}

fn aggregate_case<D: ModelDevice>(dev: &D, how: Aggregation) -> Vec<Vec<f32>> {
    // 0-1-2 path, 2 also linked to 0, node 3 isolated, node 4 lists node 1 twice.
    let lists = Arc::new(NeighbourLists {
        offsets: vec![0, 2, 4, 6, 6, 8],
        targets: vec![1, 2, 0, 2, 0, 1, 1, 1],
    });
    let h = dev.tensor_from_vec(random(5 * 3, 14), (5, 3));
    let y = nn::aggregate(h.leaky_trace(), &lists, how).unwrap();
    let up = dev.tensor_from_vec(random(5 * 3, 15), (5, 3));
    let out = y.retaped::<NoneTape>().as_vec();
    let grads = (y * up).sum().backward();
    vec![out, grads.get(&h).as_vec()]
}

#[test]
fn neighbour_aggregation_matches_cpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    for how in [Aggregation::Mean, Aggregation::Max] {
        let (c, g) = (
            aggregate_case(&Cpu::default(), how),
            aggregate_case(&gpu, how),
        );
        assert_close(&format!("aggregate {how:?} y"), &c[0], &g[0], 1e-6);
        assert_close(&format!("aggregate {how:?} grad h"), &c[1], &g[1], 1e-6);
    }
}

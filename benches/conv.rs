//! Convolution layer forward + backward at the shape of the OpenCarbon issue (batch 288,
//! 16×16, 32→32 channels, 3×3, stride 1, padding 1), through the dfdx op with its tape.
//! Run: `cargo bench --bench conv`; compare with `scripts/bench_conv_torch.py` (PyTorch CPU,
//! same shape, same thread count), which prints its own time and, given ours, the ratio.

use std::time::Instant;

use dfdx::prelude::*;
use opencarbon::nn::conv2d;

fn main() {
    opencarbon::nn::reuse_large_allocations();
    opencarbon::nn::use_thread_setting().expect("OPENCARBON_THREADS");
    let dev = Cpu::seed_from_u64(0);
    let (n, c, h, o) = (288, 32, 16, 32);
    let x: Tensor<(usize, usize, usize, usize), f32, Cpu> = dev.sample_normal_like(&(n, c, h, h));
    let w: Tensor<(usize, usize, usize, usize), f32, Cpu> = dev.sample_normal_like(&(o, c, 3, 3));
    let b: Tensor<(usize,), f32, Cpu> = dev.sample_normal_like(&(o,));
    let step = || {
        let y = conv2d(x.leaky_trace(), &w, Some(&b), 1, 1, true).unwrap();
        let g = y.sum().backward();
        g.get(&w).as_vec()[0]
    };
    step(); // warm-up
            // Median and minimum of single steps: a shared machine's noise moves the mean.
    let mut ms: Vec<f64> = (0..20)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(step());
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "conv2d 3x3 32->32, batch 288, 16x16, forward+backward: median {:.1} ms, min {:.1} ms per step ({} steps)",
        ms[ms.len() / 2],
        ms[0],
        ms.len()
    );
}

//! Convolution layer forward + backward at the shape of the OpenCarbon issue (batch 288,
//! 16×16, 32→32 channels, 3×3, stride 1, padding 1), through the dfdx op with its tape.
//! Run: `cargo bench --bench conv`; compare with `scripts/bench_conv_torch.py` (PyTorch CPU,
//! same shape, same thread count), which prints its own time and, given ours, the ratio.
//! Also prints the forward pass alone in GFLOP/s against this machine's f32 FMA peak at the
//! same thread count, measured by a small loop of independent vector FMAs (issue 25).
//! `--shape N,C,H,O,K,S,P` times another layer (batch, input channels, picture side, output
//! channels, kernel, stride, padding), e.g. the POI encoder's second layer
//! `--shape 256,32,22,32,7,3,1`; `--no-peak` skips the FMA loop.

use std::time::Instant;

use dfdx::prelude::*;
use opencarbon::nn::conv::Conv2dGeometry;
use opencarbon::nn::conv2d;

mod common;
use common::arg;

fn main() {
    opencarbon::nn::reuse_large_allocations();
    opencarbon::nn::use_thread_setting().expect("OPENCARBON_THREADS");
    let dev = Cpu::seed_from_u64(0);
    let shape: Vec<usize> = arg("--shape")
        .unwrap_or("288,32,16,32,3,1,1".into())
        .split(',')
        .map(|v| v.parse().expect("--shape: N,C,H,O,K,S,P, whole numbers"))
        .collect();
    let [n, c, h, o, k, stride, pad] = shape[..] else {
        panic!("--shape: N,C,H,O,K,S,P (7 numbers)");
    };
    let geometry = Conv2dGeometry {
        batch: n,
        in_channels: c,
        height: h,
        width: h,
        out_channels: o,
        kernel: k,
        stride,
        padding: pad,
    };
    geometry.check().expect("--shape");
    let x: Tensor<(usize, usize, usize, usize), f32, Cpu> = dev.sample_normal_like(&(n, c, h, h));
    let w: Tensor<(usize, usize, usize, usize), f32, Cpu> = dev.sample_normal_like(&(o, c, k, k));
    let b: Tensor<(usize,), f32, Cpu> = dev.sample_normal_like(&(o,));
    let step = || {
        let y = conv2d(x.leaky_trace(), &w, Some(&b), stride, pad, true).unwrap();
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
        "conv2d {k}x{k} {c}->{o}, stride {stride}, padding {pad}, batch {n}, {h}x{h}, forward+backward: median {:.1} ms, min {:.1} ms per step ({} steps)",
        ms[ms.len() / 2],
        ms[0],
        ms.len()
    );

    // The forward pass alone, without a tape, against the FMA peak.
    let forward = || {
        conv2d(x.clone(), &w, Some(&b), stride, pad, true)
            .unwrap()
            .as_vec()[0]
    };
    forward();
    let mut fwd: Vec<f64> = (0..20)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(forward());
            t.elapsed().as_secs_f64()
        })
        .collect();
    fwd.sort_by(f64::total_cmp);
    let flops = 2.0 * geometry.macs() as f64;
    let threads = rayon::current_num_threads();
    let achieved = flops / fwd[fwd.len() / 2] / 1e9;
    if std::env::args().any(|a| a == "--no-peak") {
        println!(
            "forward only: median {:.2} ms = {achieved:.1} GFLOP/s",
            fwd[fwd.len() / 2] * 1000.0
        );
        return;
    }
    let peak = fma_peak_gflops(threads);
    println!(
        "forward only: median {:.1} ms = {achieved:.1} GFLOP/s; f32 FMA peak at {threads} thread(s) {peak:.1} GFLOP/s; share {:.0} %",
        fwd[fwd.len() / 2] * 1000.0,
        100.0 * achieved / peak
    );
}

/// This machine's f32 FMA throughput on `threads` threads, each running 12 independent chains
/// of the widest FMA it has (AVX-512, else AVX2 + FMA, else scalar `mul_add`) for 0.3 s; the
/// best of 3 runs. Counted as 2 FLOP per lane per FMA.
fn fma_peak_gflops(threads: usize) -> f64 {
    let run = || -> f64 {
        let start = std::sync::Barrier::new(threads);
        let per_thread: Vec<f64> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        start.wait();
                        let t = Instant::now();
                        let flops = fma_loop(0.3);
                        flops / t.elapsed().as_secs_f64()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        per_thread.iter().sum::<f64>() / 1e9
    };
    (0..3).map(|_| run()).fold(0.0, f64::max)
}

/// FMAs for about `seconds`; returns the FLOPs done.
fn fma_loop(seconds: f64) -> f64 {
    const CHAINS: usize = 12;
    const ROUNDS: usize = 1 << 16;
    let started = Instant::now();
    let mut flops = 0.0;
    while started.elapsed().as_secs_f64() < seconds {
        flops += fma_rounds::<CHAINS>(ROUNDS);
    }
    flops
}

#[cfg(target_arch = "x86_64")]
fn fma_rounds<const CHAINS: usize>(rounds: usize) -> f64 {
    use std::arch::x86_64::*;
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked above).
        unsafe {
            #[target_feature(enable = "avx512f")]
            unsafe fn run<const K: usize>(rounds: usize) -> f32 {
                let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
                let mut acc = [_mm512_set1_ps(1.0); K];
                for _ in 0..rounds {
                    for v in acc.iter_mut() {
                        *v = _mm512_fmadd_ps(*v, a, b);
                    }
                }
                acc.iter().map(|v| _mm512_reduce_add_ps(*v)).sum()
            }
            std::hint::black_box(run::<CHAINS>(rounds));
        }
        return (rounds * CHAINS * 16 * 2) as f64;
    }
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        unsafe {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn run<const K: usize>(rounds: usize) -> f32 {
                let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
                let mut acc = [_mm256_set1_ps(1.0); K];
                for _ in 0..rounds {
                    for v in acc.iter_mut() {
                        *v = _mm256_fmadd_ps(*v, a, b);
                    }
                }
                let mut out = [0f32; 8];
                let mut total = 0.0;
                for v in acc {
                    _mm256_storeu_ps(out.as_mut_ptr(), v);
                    total += out.iter().sum::<f32>();
                }
                total
            }
            std::hint::black_box(run::<CHAINS>(rounds));
        }
        return (rounds * CHAINS * 8 * 2) as f64;
    }
    scalar_rounds::<CHAINS>(rounds)
}

#[cfg(not(target_arch = "x86_64"))]
fn fma_rounds<const CHAINS: usize>(rounds: usize) -> f64 {
    scalar_rounds::<CHAINS>(rounds)
}

fn scalar_rounds<const CHAINS: usize>(rounds: usize) -> f64 {
    let mut acc = [1.0f32; CHAINS];
    for _ in 0..rounds {
        for v in acc.iter_mut() {
            *v = v.mul_add(0.999_999, 1e-7);
        }
    }
    std::hint::black_box(acc);
    (rounds * CHAINS * 2) as f64
}

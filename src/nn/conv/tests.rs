//! The convolution's tests: every GEMM layout against the others bit for bit (the
//! channel-vector kernels within rounding), against the definition, and against finite
//! differences.

use super::*;
use rand::{Rng, SeedableRng};

fn random(n: usize, rng: &mut rand_chacha::ChaCha8Rng) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

/// Every term of the convolution's definition, as (output index, input index, weight index):
/// for each output value in order, its taps (c, ki, kj) in order that land inside the
/// picture.
fn for_each_term(g: &Conv2dGeometry, mut term: impl FnMut(usize, usize, usize)) {
    let (oh, ow, k) = (g.out_height(), g.out_width(), g.kernel);
    for n in 0..g.batch {
        for o in 0..g.out_channels {
            for oy in 0..oh {
                for ox in 0..ow {
                    let yi = ((n * g.out_channels + o) * oh + oy) * ow + ox;
                    for c in 0..g.in_channels {
                        for ki in 0..k {
                            for kj in 0..k {
                                let iy = (oy * g.stride + ki) as isize - g.padding as isize;
                                let ix = (ox * g.stride + kj) as isize - g.padding as isize;
                                if iy >= 0
                                    && ix >= 0
                                    && (iy as usize) < g.height
                                    && (ix as usize) < g.width
                                {
                                    let xi = ((n * g.in_channels + c) * g.height + iy as usize)
                                        * g.width
                                        + ix as usize;
                                    term(yi, xi, ((o * g.in_channels + c) * k + ki) * k + kj);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The definition, written as directly as possible: each output from its bias, its terms
/// added in f64.
fn naive(g: &Conv2dGeometry, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let plane = g.out_height() * g.out_width();
    let mut y: Vec<f64> = (0..g.output_len())
        .map(|i| b[i / plane % g.out_channels] as f64)
        .collect();
    for_each_term(g, |yi, xi, wi| y[yi] += (x[xi] * w[wi]) as f64);
    y.into_iter().map(|v| v as f32).collect()
}

/// One layer's passes on `path`: the output, the input gradient added onto values `gx0`,
/// the input gradient written into new memory, the weight and bias gradients, and the weight
/// gradient of a pass without an input gradient (a first layer).
struct Passes {
    y: Vec<f32>,
    gx: Vec<f32>,
    gx_new: Vec<f32>,
    gw: Vec<f32>,
    gb: Vec<f32>,
    gw_alone: Vec<f32>,
}

fn passes(
    g: &Conv2dGeometry,
    (x, w, b): (&[f32], &[f32], &[f32]),
    gy: &[f32],
    gx0: f32,
    path: Gemms,
) -> Passes {
    let y = forward_by(g, x, w, Some(b), path);
    let (mut gx, mut gw, mut gb) = (vec![gx0; x.len()], vec![0.0; w.len()], vec![0.0; b.len()]);
    let grads = Conv2dGrads {
        x: Some(InputGrad::AddTo(&mut gx)),
        w: &mut gw,
        bias: Some(&mut gb),
    };
    backward_by(g, x, w, gy, grads, path);
    let mut gx_new: Vec<f32> = Vec::with_capacity(x.len());
    let mut gw2 = vec![0.0; w.len()];
    let grads = Conv2dGrads {
        x: Some(InputGrad::New(&mut gx_new.spare_capacity_mut()[..x.len()])),
        w: &mut gw2,
        bias: None,
    };
    backward_by(g, x, w, gy, grads, path);
    // SAFETY: `InputGrad::New` has every value written.
    unsafe { gx_new.set_len(x.len()) };
    let mut gw_alone = vec![0.0; w.len()];
    let grads = Conv2dGrads {
        x: None,
        w: &mut gw_alone,
        bias: None,
    };
    backward_by(g, x, w, gy, grads, path);
    Passes {
        y,
        gx,
        gx_new,
        gw,
        gb,
        gw_alone,
    }
}

/// The last two are wider, with one and two padded positions per row and whole padded
/// rows.
const CASES: [Conv2dGeometry; 5] = [
    Conv2dGeometry {
        batch: 2,
        in_channels: 3,
        height: 9,
        width: 9,
        out_channels: 4,
        kernel: 3,
        stride: 2,
        padding: 1,
    },
    Conv2dGeometry {
        batch: 1,
        in_channels: 5,
        height: 20,
        width: 17,
        out_channels: 6,
        kernel: 7,
        stride: 3,
        padding: 3,
    },
    Conv2dGeometry {
        batch: 3,
        in_channels: 2,
        height: 6,
        width: 6,
        out_channels: 3,
        kernel: 3,
        stride: 1,
        padding: 0,
    },
    Conv2dGeometry {
        batch: 2,
        in_channels: 3,
        height: 10,
        width: 11,
        out_channels: 4,
        kernel: 3,
        stride: 1,
        padding: 1,
    },
    Conv2dGeometry {
        batch: 2,
        in_channels: 2,
        height: 20,
        width: 18,
        out_channels: 3,
        kernel: 5,
        stride: 2,
        padding: 2,
    },
];

/// Every GEMM layout (one per chunk, one per sample, the direct kernels where this
/// machine has them; none of these geometries has channels in pairs of vectors, which take
/// `broadcast`, tested below) gives the same bits, forward and backward, on every test geometry,
/// on one with a large batch (several chunks, partial last one), on ones whose reductions
/// span several of matrixmultiply's blocks, and on the branches of the direct kernels
/// (listed below); an input gradient written into new memory is the one added to zeros,
/// and the weight gradient is the same without an input gradient.
#[test]
fn every_gemm_layout_gives_the_same_bits() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let many = Conv2dGeometry {
        batch: 70,
        in_channels: 5,
        height: 9,
        width: 9,
        out_channels: 7,
        kernel: 3,
        stride: 1,
        padding: 1,
    };
    // 40·9 = 360 terms per output (two blocks of the forward reduction), 24×24 = 576
    // pixels (three blocks of the weight gradient's); 20 output channels (a partial
    // panel of 16).
    let long = Conv2dGeometry {
        batch: 2,
        in_channels: 40,
        height: 24,
        width: 24,
        out_channels: 20,
        kernel: 3,
        stride: 1,
        padding: 1,
    };
    let long_strided = Conv2dGeometry {
        stride: 2,
        height: 33,
        width: 34,
        ..long
    };
    let small = Conv2dGeometry {
        batch: 1,
        in_channels: 2,
        height: 8,
        width: 8,
        out_channels: 3,
        kernel: 3,
        stride: 1,
        padding: 1,
    };
    let more = [
        // 272 output channels: the input gradient's reduction spans two blocks of 256.
        Conv2dGeometry {
            out_channels: 272,
            ..small
        },
        // 40 output channels: the weight-gradient kernel on two vectors, then one.
        Conv2dGeometry {
            out_channels: 40,
            height: 10,
            width: 10,
            ..small
        },
        // 16×16 outputs: 256 pixels, exactly one block of the weight gradient's reduction.
        Conv2dGeometry {
            height: 16,
            width: 16,
            ..small
        },
        // Stride 3 with 17 outputs per row: whole strips of 16 in one row.
        Conv2dGeometry {
            height: 50,
            width: 50,
            stride: 3,
            ..small
        },
        // ResNet's shortcut: 1×1, stride 2, no padding.
        Conv2dGeometry {
            batch: 2,
            in_channels: 3,
            height: 9,
            width: 9,
            out_channels: 5,
            kernel: 1,
            stride: 2,
            padding: 0,
        },
    ];
    for g in CASES
        .iter()
        .copied()
        .chain([many, long, long_strided])
        .chain(more)
    {
        let (x, w, b) = (
            random(g.input_len(), &mut rng),
            random(g.weight_len(), &mut rng),
            random(g.out_channels, &mut rng),
        );
        let gy = random(g.output_len(), &mut rng);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
        let run = |path: Gemms| {
            let Passes {
                y,
                gx,
                gx_new,
                gw,
                gb,
                gw_alone,
            } = passes(&g, (&x, &w, &b), &gy, 0.0, path);
            // Into new memory: the same values as added to zeros.
            assert_eq!(bits(&gx_new), bits(&gx), "{g:?}: new memory");
            // Without an input gradient (a first layer): the same weight gradient.
            assert_eq!(bits(&gw_alone), bits(&gw), "{g:?}: no input gradient");
            (bits(&y), bits(&gx), bits(&gw), bits(&gb))
        };
        let reference = run(Gemms::PerChunk);
        assert_eq!(run(Gemms::PerSample), reference, "{g:?}: per sample");
        if direct::available() {
            assert_eq!(run(Gemms::Direct), reference, "{g:?}: direct");
        } else {
            eprintln!("no AVX-512F here: the direct kernels are not tested");
        }
    }
}

/// The column buffers are reused between calls without being cleared: values left in
/// them (NaN here) must never reach an output or a gradient.
#[test]
fn values_left_in_scratch_buffers_change_nothing() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
    for g in CASES {
        assert!(g.macs() < PARALLEL_MIN_MACS, "runs on the calling thread");
        let (x, w, b) = (
            random(g.input_len(), &mut rng),
            random(g.weight_len(), &mut rng),
            random(g.out_channels, &mut rng),
        );
        let gy = random(g.output_len(), &mut rng);
        let run = || {
            let y = conv2d_forward(&g, &x, &w, Some(&b));
            let (mut gx, mut gw) = (vec![0.0; x.len()], vec![0.0; w.len()]);
            let grads = Conv2dGrads {
                x: Some(InputGrad::AddTo(&mut gx)),
                w: &mut gw,
                bias: None,
            };
            conv2d_backward(&g, &x, &w, &gy, grads);
            [y, gx, gw].map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>())
        };
        // A new thread starts with no scratch buffers, so its buffers are new zeros.
        let clean = std::thread::scope(|s| s.spawn(run).join().unwrap());
        let poisoned: Vec<_> = (0..4).map(|_| scratch(1 << 16)).collect();
        for mut buf in poisoned {
            buf.fill(f32::NAN);
        }
        assert_eq!(run(), clean, "{g:?}");
    }
}

#[test]
fn forward_matches_the_definition() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    for g in CASES {
        let (x, w, b) = (
            random(g.input_len(), &mut rng),
            random(g.weight_len(), &mut rng),
            random(g.out_channels, &mut rng),
        );
        let got = conv2d_forward(&g, &x, &w, Some(&b));
        let want = naive(&g, &x, &w, &b);
        for (a, e) in got.iter().zip(&want) {
            assert!((a - e).abs() < 1e-4, "{g:?}: {a} vs {e}");
        }
    }
}

#[test]
fn gradients_match_finite_differences() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    for g in CASES {
        let (x, w, b) = (
            random(g.input_len(), &mut rng),
            random(g.weight_len(), &mut rng),
            random(g.out_channels, &mut rng),
        );
        let r = random(g.output_len(), &mut rng);
        // loss = Σ y·r, computed in f64 through the naive definition for the differences.
        let loss = |x: &[f32], w: &[f32], b: &[f32]| -> f64 {
            naive(&g, x, w, b)
                .iter()
                .zip(&r)
                .map(|(y, r)| (*y as f64) * (*r as f64))
                .sum()
        };
        let (mut gx, mut gw, mut gb) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; b.len()]);
        conv2d_backward(
            &g,
            &x,
            &w,
            &r,
            Conv2dGrads {
                x: Some(InputGrad::AddTo(&mut gx)),
                w: &mut gw,
                bias: Some(&mut gb),
            },
        );
        let eps = 1e-2f32;
        let check = |analytic: &[f32], which: usize| {
            for i in (0..analytic.len()).step_by(analytic.len() / 7 + 1) {
                let (mut xp, mut wp, mut bp) = (x.clone(), w.clone(), b.clone());
                let (mut xm, mut wm, mut bm) = (x.clone(), w.clone(), b.clone());
                match which {
                    0 => (xp[i] += eps, xm[i] -= eps),
                    1 => (wp[i] += eps, wm[i] -= eps),
                    _ => (bp[i] += eps, bm[i] -= eps),
                };
                let numeric = (loss(&xp, &wp, &bp) - loss(&xm, &wm, &bm)) / (2.0 * eps as f64);
                assert!(
                    (numeric - analytic[i] as f64).abs() < 2e-3 * (1.0 + numeric.abs()),
                    "{g:?} grad {which}[{i}]: analytic {} numeric {numeric}",
                    analytic[i]
                );
            }
        };
        check(&gx, 0);
        check(&gw, 1);
        check(&gb, 2);
    }
}

#[test]
fn chunked_batches_give_the_same_result() {
    // A batch large enough to need several chunks.
    let g = Conv2dGeometry {
        batch: 40,
        in_channels: 16,
        height: 64,
        width: 64,
        out_channels: 4,
        kernel: 7,
        stride: 1,
        padding: 3,
    };
    assert!(g.chunk() < g.batch);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let (x, w) = (
        random(g.input_len(), &mut rng),
        random(g.weight_len(), &mut rng),
    );
    let y = conv2d_forward(&g, &x, &w, None);
    let one = Conv2dGeometry { batch: 1, ..g };
    let last = conv2d_forward(&one, &x[39 * one.input_len()..], &w, None);
    assert_eq!(&y[39 * one.output_len()..], &last[..]);
}

/// The kernels with channels along the vector (`broadcast`: forward and weight gradient
/// where the output channels come in pairs of vectors, input gradient where the input
/// channels do) against the GEMM path, within rounding (they sum in another order), and the
/// forward pass against the definition: the POI encoder's 7×7 stride-3 layer (36 pixels:
/// blocks of 8 and a tail of 4), the residual layers, stride 2 with 25 pixels (a tail of 1),
/// a 1×1 shortcut, a picture wider than high, 16 input or output channels (one pass here,
/// the other on the tiles), a batch of several chunks on the pool, 3 input channels (the
/// weight gradient's tails of 2 and 1 column rows) and 16 output channels with 5×5 taps (the
/// input gradient here beside im2col's weight gradient); with and without an input gradient.
/// Also the weight gradient against the definition. Scratch buffers are poisoned first: no
/// value left in them may reach a result.
#[test]
fn channel_vector_kernels_match_the_gemm_path() {
    if !direct::available() {
        eprintln!("no AVX-512F here: the channel-vector kernels are not tested");
        return;
    }
    let poi = Conv2dGeometry {
        batch: 3,
        in_channels: 32,
        height: 22,
        width: 22,
        out_channels: 32,
        kernel: 7,
        stride: 3,
        padding: 1,
    };
    let cases = [
        poi,
        Conv2dGeometry {
            in_channels: 64,
            out_channels: 64,
            height: 8,
            width: 8,
            kernel: 3,
            stride: 1,
            ..poi
        },
        Conv2dGeometry {
            height: 9,
            width: 9,
            kernel: 3,
            stride: 2,
            ..poi
        },
        Conv2dGeometry {
            out_channels: 64,
            height: 9,
            width: 9,
            kernel: 1,
            stride: 2,
            padding: 0,
            ..poi
        },
        Conv2dGeometry {
            height: 7,
            width: 10,
            kernel: 5,
            stride: 1,
            padding: 2,
            ..poi
        },
        Conv2dGeometry {
            in_channels: 16,
            height: 12,
            width: 12,
            kernel: 3,
            stride: 2,
            ..poi
        },
        Conv2dGeometry {
            out_channels: 16,
            height: 12,
            width: 12,
            kernel: 3,
            stride: 1,
            ..poi
        },
        Conv2dGeometry { batch: 40, ..poi },
        // 3 input channels, 7×7: 147 column rows, so the weight gradient's blocks end in
        // tails of 2 and 1.
        Conv2dGeometry {
            in_channels: 3,
            height: 20,
            width: 20,
            stride: 2,
            padding: 3,
            ..poi
        },
        // 16 output channels, 5×5: the input gradient here, the weight gradient by im2col
        // (whose columns share the scratch buffer with the padded input gradient).
        Conv2dGeometry {
            out_channels: 16,
            height: 12,
            width: 12,
            kernel: 5,
            stride: 1,
            padding: 2,
            ..poi
        },
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for g in cases {
        assert!(
            broadcast::fits(&g) || broadcast::input_grad_fits(&g),
            "{g:?} takes the kernels under test"
        );
        let (x, w, b) = (
            random(g.input_len(), &mut rng),
            random(g.weight_len(), &mut rng),
            random(g.out_channels, &mut rng),
        );
        let gy = random(g.output_len(), &mut rng);
        let run = |path: Gemms| {
            let p = passes(&g, (&x, &w, &b), &gy, 0.5, path);
            [p.y, p.gx, p.gx_new, p.gw, p.gb, p.gw_alone]
        };
        for mut buf in (0..4).map(|_| scratch(1 << 18)).collect::<Vec<_>>() {
            buf.fill(f32::NAN);
        }
        let got = run(Gemms::Direct);
        let want = run(Gemms::PerChunk);
        let names = ["y", "gx added", "gx new", "gw", "gb", "gw alone"];
        for ((got, want), name) in got.iter().zip(&want).zip(names) {
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (i, (a, e)) in got.iter().zip(want).enumerate() {
                assert!(
                    (a - e).abs() <= 1e-5 * scale,
                    "{g:?} {name}[{i}]: {a} against {e} (scale {scale})"
                );
            }
        }
        let reference = naive(&g, &x, &w, &b);
        for (a, e) in got[0].iter().zip(&reference) {
            assert!(
                (a - e).abs() < 1e-4 * (1.0 + e.abs()),
                "{g:?} y: {a} vs {e}"
            );
        }
        // The weight gradient against the definition, in f64: independent of the chunks'
        // parts and of their summation in pieces (the POI layer's 50 176 values, in several
        // chunks at batch 40).
        let reference = naive_weight_grad(&g, &x, &gy);
        let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (i, (a, e)) in got[3].iter().zip(&reference).enumerate() {
            assert!(
                (*a as f64 - e).abs() <= 1e-5 * scale,
                "{g:?} gw[{i}]: {a} vs {e}"
            );
        }
    }
}

/// gW[o][c][ki][kj] = Σ over samples and output pixels of gy · x at the tap, in f64.
fn naive_weight_grad(g: &Conv2dGeometry, x: &[f32], gy: &[f32]) -> Vec<f64> {
    let mut gw = vec![0.0f64; g.weight_len()];
    for_each_term(g, |yi, xi, wi| gw[wi] += gy[yi] as f64 * x[xi] as f64);
    gw
}

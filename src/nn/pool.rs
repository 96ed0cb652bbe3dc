//! 2-D max pooling (the ResNet stem's 3×3, stride-2 pool), CPU kernels. Padding positions
//! never win (they count as −∞, as in PyTorch); ties go to the first position in row-major
//! window order, in the forward pass and in the backward pass alike, because the backward
//! pass recomputes the winner instead of storing indices (nothing device-specific to keep).

use rayon::prelude::*;

use super::Conv2dGeometry;

/// For every output value of one channel plane (`xin`, H×W), call `f(out_index, in_index)`
/// with the input position that holds the window's maximum, both indices within the plane.
fn plane_winners(g: &Conv2dGeometry, xin: &[f32], mut f: impl FnMut(usize, usize)) {
    let (h, w, oh, ow) = (g.height, g.width, g.out_height(), g.out_width());
    for oy in 0..oh {
        for ox in 0..ow {
            let mut best = (f32::NEG_INFINITY, usize::MAX);
            'window: for ky in 0..g.kernel {
                let iy = (oy * g.stride + ky).wrapping_sub(g.padding);
                if iy >= h {
                    continue;
                }
                for kx in 0..g.kernel {
                    let ix = (ox * g.stride + kx).wrapping_sub(g.padding);
                    if ix >= w {
                        continue;
                    }
                    let v = xin[iy * w + ix];
                    // `>` keeps the first maximum; NaN propagates like PyTorch's.
                    if v > best.0 || best.1 == usize::MAX || v.is_nan() {
                        best = (v, iy * w + ix);
                        if v.is_nan() {
                            break 'window; // the first NaN wins (as on the GPU)
                        }
                    }
                }
            }
            f(oy * ow + ox, best.1);
        }
    }
}

/// Max pooling of NCHW `x`; `g.out_channels` must equal `g.in_channels`. Channel planes are
/// independent, so they are split across threads with no effect on the result.
pub fn max_pool2d_forward(g: &Conv2dGeometry, x: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), g.input_len());
    let (hw, ohw) = (g.height * g.width, g.out_height() * g.out_width());
    let mut y = vec![0.0; g.batch * g.in_channels * ohw];
    if y.is_empty() {
        return y;
    }
    y.par_chunks_mut(ohw)
        .zip(x.par_chunks(hw))
        .for_each(|(yp, xp)| plane_winners(g, xp, |o, i| yp[o] = xp[i]));
    y
}

/// Input gradient of `max_pool2d_forward`: each output gradient goes to its window's winner,
/// added in output order within each channel plane (planes split across threads).
pub fn max_pool2d_backward(g: &Conv2dGeometry, x: &[f32], grad_out: &[f32]) -> Vec<f32> {
    let (hw, ohw) = (g.height * g.width, g.out_height() * g.out_width());
    assert_eq!(x.len(), g.input_len());
    assert_eq!(grad_out.len(), g.batch * g.in_channels * ohw);
    let mut gx = vec![0.0; x.len()];
    if gx.is_empty() || ohw == 0 {
        return gx;
    }
    gx.par_chunks_mut(hw)
        .zip(x.par_chunks(hw))
        .zip(grad_out.par_chunks(ohw))
        .for_each(|((gp, xp), gop)| plane_winners(g, xp, |o, i| gp[i] += gop[o]));
    gx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::torch_fixture::{array, assert_close, load};
    use dfdx::prelude::*;
    use rand::{Rng, SeedableRng};

    fn geometry(shape: &[usize], kernel: usize, stride: usize, padding: usize) -> Conv2dGeometry {
        Conv2dGeometry {
            batch: shape[0],
            in_channels: shape[1],
            height: shape[2],
            width: shape[3],
            out_channels: shape[1],
            kernel,
            stride,
            padding,
        }
    }

    #[test]
    fn matches_pytorch_through_the_tape() {
        let (dev, f) = (Cpu::default(), load("max_pool2d_k3s2p1.json"));
        let x = array(&f["inputs"]["x"]);
        let s = &x.shape;
        let xt = dev.tensor_from_vec(x.data.clone(), (s[0], s[1], s[2], s[3]));
        let y = crate::nn::max_pool2d(xt.leaky_trace(), 3, 2, 1).unwrap();
        assert_close("max_pool y", &y.as_vec(), &array(&f["output"]).data, 1e-6);
        let r = array(&f["upstream"]);
        let rt = dev.tensor_from_vec(r.data, *y.shape());
        let grads = (y * rt).sum().backward();
        let want = array(&f["grads"]["x"]).data;
        assert_close("max_pool grad x", &grads.get(&xt).as_vec(), &want, 1e-5);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // Distinct values (a shuffled ramp) so no window has a tie within ±eps.
        let g = geometry(&[2, 2, 6, 5], 3, 2, 1);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let mut x: Vec<f32> = (0..g.input_len()).map(|i| i as f32 * 0.1).collect();
        for i in (1..x.len()).rev() {
            x.swap(i, rng.gen_range(0..=i));
        }
        let r: Vec<f32> = (0..max_pool2d_forward(&g, &x).len())
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect();
        let loss = |x: &[f32]| -> f64 {
            let y = max_pool2d_forward(&g, x);
            y.iter()
                .zip(&r)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum()
        };
        let analytic = max_pool2d_backward(&g, &x, &r);
        let eps = 0.01;
        for i in 0..x.len() {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += eps;
            xm[i] -= eps;
            let numeric = (loss(&xp) - loss(&xm)) / (2.0 * eps as f64);
            assert!(
                (numeric - analytic[i] as f64).abs() < 1e-3,
                "grad[{i}]: analytic {} numeric {numeric}",
                analytic[i]
            );
        }
    }

    #[test]
    fn the_first_nan_of_a_window_wins_across_rows() {
        // One 3×3 window over a 3×3 plane: NaN at (0, 2) and at (1, 0); the first in
        // row-major order takes the gradient (the CUDA kernel stops at the same place).
        let g = geometry(&[1, 1, 3, 3], 3, 1, 0);
        let mut x = vec![0.5f32; 9];
        x[2] = f32::NAN;
        x[3] = f32::NAN;
        assert!(max_pool2d_forward(&g, &x)[0].is_nan());
        let gx = max_pool2d_backward(&g, &x, &[1.0]);
        assert_eq!(gx, vec![0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }
}

//! LASSO by cyclic coordinate descent: scikit-learn's `Lasso` algorithm (cd_fast's
//! `enet_coordinate_descent` with no L2 term), minimising 1/(2n)·‖y − Xw‖² + α‖w‖₁ on centred
//! data. Features are visited in order, the residual is updated in place, and the duality gap
//! is checked whenever the largest coefficient change is small relative to the largest
//! coefficient, stopping once it is below `tol`·‖y‖².
//!
//! The dot products sum in a fixed order (32 running sums), so a fit is the same bit for bit
//! whichever vector instructions the machine has.

/// A fitted coefficient vector and how the descent ended.
pub struct Descent {
    pub coef: Vec<f64>,
    pub duality_gap: f64,
    pub iterations: u32,
}

/// `columns`: the n × p centred features, column-major (feature `j` is
/// `columns[j * n..][..n]`); `y`: the centred targets.
pub fn lasso(columns: &[f64], y: &[f64], alpha: f64, max_iter: u32, tol: f64) -> Descent {
    let n = y.len();
    let p = columns.len().checked_div(n).unwrap_or(0);
    // Every column and the residual start on a cache line: with unaligned wide loads that
    // straddle two lines the same fit took 10 or 13-17 ms on london, depending on where the
    // allocator happened to put the buffers.
    let stride = n.div_ceil(8) * 8;
    let mut store = Aligned::zeros(p * stride);
    for j in 0..p {
        store.as_mut_slice()[j * stride..][..n].copy_from_slice(&columns[j * n..][..n]);
    }
    let store = store.as_slice();
    let column = |j: usize| &store[j * stride..][..n];
    // scikit-learn's α is per sample; the descent works on sums.
    let l1 = alpha * n as f64;
    let norms: Vec<f64> = (0..p).map(|j| dot(column(j), column(j))).collect();
    let mut w = vec![0.0; p];
    let mut residual_store = Aligned::zeros(n);
    residual_store.as_mut_slice().copy_from_slice(y);
    let residual = residual_store.as_mut_slice();
    let gap_tol = tol * dot(y, y);
    let mut gap = tol + 1.0;
    let mut iterations = 0;
    while iterations < max_iter {
        let (mut w_max, mut dw_max) = (0.0f64, 0.0f64);
        for j in 0..p {
            if norms[j] == 0.0 {
                continue;
            }
            let old = w[j];
            // The residual without feature j's term, and its correlation with feature j.
            let rho = if old != 0.0 {
                add_and_dot(old, column(j), residual)
            } else {
                dot(column(j), residual)
            };
            let shrunk = (rho.abs() - l1).max(0.0);
            w[j] = if shrunk > 0.0 {
                rho.signum() * shrunk / norms[j]
            } else {
                0.0
            };
            if w[j] != 0.0 {
                axpy(-w[j], column(j), residual);
            }
            dw_max = dw_max.max((w[j] - old).abs());
            w_max = w_max.max(w[j].abs());
        }
        iterations += 1;
        if w_max == 0.0 || dw_max / w_max <= tol || iterations == max_iter {
            gap = duality_gap(&column, y, &w, residual, l1);
            if gap < gap_tol {
                break;
            }
        }
    }
    Descent {
        coef: w,
        duality_gap: gap,
        iterations,
    }
}

/// The LASSO duality gap at `w` with residual `y − Xw` (scikit-learn's, for no L2 term).
fn duality_gap<'a>(
    column: &impl Fn(usize) -> &'a [f64],
    y: &[f64],
    w: &[f64],
    residual: &[f64],
    l1: f64,
) -> f64 {
    let dual_norm = (0..w.len())
        .map(|j| dot(column(j), residual).abs())
        .fold(0.0, f64::max);
    let r_norm2 = dot(residual, residual);
    let (scale, mut gap) = if dual_norm > l1 {
        let scale = l1 / dual_norm;
        (scale, 0.5 * (r_norm2 + r_norm2 * scale * scale))
    } else {
        (1.0, r_norm2)
    };
    let l1_norm: f64 = w.iter().map(|v| v.abs()).sum();
    gap += l1 * l1_norm - scale * dot(residual, y);
    gap
}

/// f64 values from a 64-byte (cache line) boundary.
struct Aligned {
    lines: Vec<Line>,
    len: usize,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f64; 8]);

impl Aligned {
    fn zeros(len: usize) -> Aligned {
        Aligned {
            lines: vec![Line([0.0; 8]); len.div_ceil(8)],
            len,
        }
    }

    fn as_slice(&self) -> &[f64] {
        // SAFETY: `Line` is eight f64 with no padding (repr C), and `lines` holds at least
        // `len` of them.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast(), self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [f64] {
        // SAFETY: as `as_slice`, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast(), self.len) }
    }
}

/// Running sums of a dot product: element i adds to sum i mod 32 (four AVX-512 registers of
/// eight, independent so that they need not wait for one another).
const LANES: usize = 32;

/// Σ aᵢbᵢ in one summation order on every machine, whether the running sums live in AVX-512
/// registers or not: element i into running sum i mod 32 (the last block padded with zeros),
/// the sums folded pairwise.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked).
        return fold(unsafe { wide::dot(a, b) });
    }
    fold(dot_lanes(a, b))
}

/// r += a·x, then Σ xᵢrᵢ of the updated r: `axpy` then `dot`, in one pass where the machine
/// has AVX-512 (the same operations in the same order, so the same result).
fn add_and_dot(a: f64, x: &[f64], r: &mut [f64]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked).
        return fold(unsafe { wide::add_and_dot(a, x, r) });
    }
    axpy_portable(a, x, r);
    fold(dot_lanes(x, r))
}

/// y += a·x.
fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked).
        return unsafe { wide::axpy(a, x, y) };
    }
    axpy_portable(a, x, y);
}

fn dot_lanes(a: &[f64], b: &[f64]) -> [f64; LANES] {
    assert_eq!(a.len(), b.len());
    let mut acc = [0.0; LANES];
    for (ca, cb) in a.chunks(LANES).zip(b.chunks(LANES)) {
        for (i, sum) in acc.iter_mut().enumerate() {
            // Past the end: the zeros an AVX-512 masked load reads.
            *sum += ca.get(i).copied().unwrap_or(0.0) * cb.get(i).copied().unwrap_or(0.0);
        }
    }
    acc
}

fn axpy_portable(a: f64, x: &[f64], y: &mut [f64]) {
    assert_eq!(x.len(), y.len());
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// Pairwise: sum i + sum i+16, then +8, +4, +2, +1.
fn fold(mut acc: [f64; LANES]) -> f64 {
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] += acc[i + width];
        }
        width /= 2;
    }
    acc[0]
}

/// The kernels in AVX-512 registers: lane i of register k is running sum 8k + i, multiplies
/// and adds stay separate (no fused multiply-add), and the last block is read through a mask
/// that gives zeros past the end, so the results are the portable ones.
#[cfg(target_arch = "x86_64")]
mod wide {
    use std::arch::x86_64::*;

    /// Lanes of the eight-element group starting at `at` that lie before `len`.
    fn mask(at: usize, len: usize) -> __mmask8 {
        let valid = len.saturating_sub(at).min(8);
        ((1u16 << valid) - 1) as __mmask8
    }

    #[target_feature(enable = "avx512f")]
    fn to_array(acc: [__m512d; 4]) -> [f64; 32] {
        let mut out = [0.0; 32];
        for (k, sum) in acc.iter().enumerate() {
            // SAFETY: `out` holds 32 values, register k fills 8k..8k+8.
            unsafe { _mm512_storeu_pd(out.as_mut_ptr().add(8 * k), *sum) };
        }
        out
    }

    /// The 32 running sums of Σ aᵢbᵢ.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot(a: &[f64], b: &[f64]) -> [f64; 32] {
        assert_eq!(a.len(), b.len());
        let mut acc = [_mm512_setzero_pd(); 4];
        let full = a.len() / 32 * 32;
        for block in (0..full).step_by(32) {
            for (k, sum) in acc.iter_mut().enumerate() {
                let at = block + 8 * k;
                // SAFETY: at + 8 <= full <= len.
                let (va, vb) = unsafe {
                    (
                        _mm512_loadu_pd(a.as_ptr().add(at)),
                        _mm512_loadu_pd(b.as_ptr().add(at)),
                    )
                };
                *sum = _mm512_add_pd(*sum, _mm512_mul_pd(va, vb));
            }
        }
        if full < a.len() {
            for (k, sum) in acc.iter_mut().enumerate() {
                let at = full + 8 * k;
                let m = mask(at, a.len());
                // SAFETY: the mask keeps every read inside the slices.
                let (va, vb) = unsafe {
                    (
                        _mm512_maskz_loadu_pd(m, a.as_ptr().wrapping_add(at)),
                        _mm512_maskz_loadu_pd(m, b.as_ptr().wrapping_add(at)),
                    )
                };
                *sum = _mm512_add_pd(*sum, _mm512_mul_pd(va, vb));
            }
        }
        to_array(acc)
    }

    /// r += a·x and the 32 running sums of Σ xᵢrᵢ of the new r.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn add_and_dot(a: f64, x: &[f64], r: &mut [f64]) -> [f64; 32] {
        assert_eq!(x.len(), r.len());
        let va = _mm512_set1_pd(a);
        let mut acc = [_mm512_setzero_pd(); 4];
        let full = x.len() / 32 * 32;
        for block in (0..full).step_by(32) {
            for (k, sum) in acc.iter_mut().enumerate() {
                let at = block + 8 * k;
                // SAFETY: at + 8 <= full <= len.
                unsafe {
                    let vx = _mm512_loadu_pd(x.as_ptr().add(at));
                    let vr = _mm512_loadu_pd(r.as_ptr().add(at));
                    let updated = _mm512_add_pd(vr, _mm512_mul_pd(va, vx));
                    _mm512_storeu_pd(r.as_mut_ptr().add(at), updated);
                    *sum = _mm512_add_pd(*sum, _mm512_mul_pd(vx, updated));
                }
            }
        }
        if full < x.len() {
            for (k, sum) in acc.iter_mut().enumerate() {
                let at = full + 8 * k;
                let m = mask(at, x.len());
                // SAFETY: the mask keeps every read and write inside the slices.
                unsafe {
                    let vx = _mm512_maskz_loadu_pd(m, x.as_ptr().wrapping_add(at));
                    let vr = _mm512_maskz_loadu_pd(m, r.as_ptr().wrapping_add(at));
                    let updated = _mm512_add_pd(vr, _mm512_mul_pd(va, vx));
                    _mm512_mask_storeu_pd(r.as_mut_ptr().wrapping_add(at), m, updated);
                    *sum = _mm512_add_pd(*sum, _mm512_mul_pd(vx, updated));
                }
            }
        }
        to_array(acc)
    }

    /// y += a·x.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
        assert_eq!(x.len(), y.len());
        let va = _mm512_set1_pd(a);
        let full = x.len() / 8 * 8;
        for at in (0..full).step_by(8) {
            // SAFETY: at + 8 <= full <= len.
            unsafe {
                let vx = _mm512_loadu_pd(x.as_ptr().add(at));
                let vy = _mm512_loadu_pd(y.as_ptr().add(at));
                _mm512_storeu_pd(
                    y.as_mut_ptr().add(at),
                    _mm512_add_pd(vy, _mm512_mul_pd(va, vx)),
                );
            }
        }
        if full < x.len() {
            let (at, m) = (full, mask(full, x.len()));
            // SAFETY: the mask keeps every read and write inside the slices.
            unsafe {
                let vx = _mm512_maskz_loadu_pd(m, x.as_ptr().wrapping_add(at));
                let vy = _mm512_maskz_loadu_pd(m, y.as_ptr().wrapping_add(at));
                _mm512_mask_storeu_pd(
                    y.as_mut_ptr().wrapping_add(at),
                    m,
                    _mm512_add_pd(vy, _mm512_mul_pd(va, vx)),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_sums_every_element_including_the_tail() {
        let a: Vec<f64> = (1..=19).map(f64::from).collect();
        let b = vec![1.0; 19];
        assert_eq!(dot(&a, &b), 190.0);
        assert_eq!(dot(&a[..3], &a[..3]), 14.0);
    }

    /// The AVX-512 kernels (where the machine has them) give the bits of the portable ones,
    /// on lengths with and without a partial last block.
    #[test]
    fn wide_and_fused_kernels_sum_as_the_portable_ones() {
        for n in [5, 32, 64, 761, 1003] {
            let x: Vec<f64> = (0..n)
                .map(|i| ((i * 37 % 101) as f64 - 50.0) / 7.0)
                .collect();
            let r0: Vec<f64> = (0..n)
                .map(|i| ((i * 53 % 97) as f64 - 48.0) / 3.0)
                .collect();
            assert_eq!(
                dot(&x, &r0).to_bits(),
                fold(dot_lanes(&x, &r0)).to_bits(),
                "n {n}"
            );
            let (mut wide, mut portable) = (r0.clone(), r0.clone());
            axpy(0.3, &x, &mut wide);
            axpy_portable(0.3, &x, &mut portable);
            assert_eq!(wide, portable, "n {n}");
            let (mut fused, mut apart) = (r0.clone(), r0.clone());
            let rho = add_and_dot(-0.7, &x, &mut fused);
            axpy_portable(-0.7, &x, &mut apart);
            assert_eq!(fused, apart, "n {n}");
            assert_eq!(
                rho.to_bits(),
                fold(dot_lanes(&x, &apart)).to_bits(),
                "n {n}"
            );
        }
    }

    /// A penalty above max |Xᵀy|/n leaves every coefficient at zero (the LASSO's closed-form
    /// threshold); just below it one coefficient enters.
    #[test]
    fn the_penalty_threshold_zeroes_every_coefficient() {
        let n = 6;
        let x1 = [1.0, -1.0, 2.0, -2.0, 0.5, -0.5];
        let x2 = [0.3, 0.1, -0.2, -0.4, 0.1, 0.1];
        let y = [2.0, -1.5, 3.0, -3.5, 1.0, -1.0];
        let columns: Vec<f64> = x1.iter().chain(&x2).copied().collect();
        let threshold = dot(&x1, &y).abs().max(dot(&x2, &y).abs()) / n as f64;
        let above = lasso(&columns, &y, threshold * 1.001, 1000, 1e-12);
        assert_eq!(above.coef, vec![0.0, 0.0]);
        let below = lasso(&columns, &y, threshold * 0.9, 1000, 1e-12);
        assert!(
            below.coef[0] > 0.0 && below.coef[1] == 0.0,
            "{:?}",
            below.coef
        );
    }
}

//! The convolution's three passes with channels along the vector (AVX-512): each
//! accumulator holds 16 channels of one pixel (or one column row), a picture's values are
//! broadcast straight from it, and the other operand's rows are loaded as vectors. Nothing
//! is packed per sample.
//!
//! Why: `direct::forward_sample` packs a strip of 16 pixels × every column row before its
//! 16×16 tile multiplies it, and with 32 output channels each packed value serves only 32
//! multiply-adds: at the POI encoder's 7×7 stride-3 layer (6×6 outputs, runs of 6 pixels at
//! stride 3) the packing took as long as the multiplications (57 GFLOP/s, a quarter of this
//! machine's two-thread FMA peak), and its input gradient's col2im scattered one value at a
//! time. Here a block of 8 rows × 32 channels makes 16 accumulators; per step it loads two
//! vectors and broadcasts 8 picture values for 16 FMAs. All three passes are one product
//! (`Product`): out[row i] (=, or +=) Σ_t picture[walk[t] + held[i]] · rows[t]:
//! - forward: rows = Wᵀ [ckk, co], walking the column rows' origins in the padded picture,
//!   holding 8 output pixels' offsets; out = yᵀ [pixels, co];
//! - weight gradient: rows = gyᵀ [pixels, co], walking the pixels, holding 8 column rows;
//!   out = gwᵀ [ckk, co];
//! - input gradient, per tap: rows = that tap's weights [co, ci], walking the output
//!   channels' planes of gy, holding 8 output pixels; out = the padded input gradient
//!   [padded pixels, ci] at the input pixel each output pixel reads through the tap.
//!
//! Each output is an FMA chain from +0 over the walk in order, then stored or added: a fixed
//! order set by the geometry alone.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use std::mem::MaybeUninit;

use super::picture::{padded_size, Layout, Padded, W};
use super::{Conv2dGeometry, InputGrad};

/// Channels per accumulator row: two vectors.
const CHANNELS: usize = 2 * W;

/// Rows held in registers at most (8 × 2 accumulators).
const HELD: usize = 8;

/// Whether the forward pass and the weight gradient run here: output channels in whole
/// pairs of vectors (the model's layers have 32, 64 or 128).
pub(super) fn fits(g: &Conv2dGeometry) -> bool {
    g.out_channels.is_multiple_of(CHANNELS) && g.out_channels > 0
}

/// Whether the input gradient runs here: input channels in whole pairs of vectors.
pub(super) fn input_grad_fits(g: &Conv2dGeometry) -> bool {
    g.in_channels.is_multiple_of(CHANNELS) && g.in_channels > 0 && g.out_channels > 0
}

/// Wᵀ [ckk, co] from W [co, ckk], the layout `forward_sample` reads.
pub(super) fn pack_wt(g: &Conv2dGeometry, w: &[f32]) -> Vec<f32> {
    let (co, ckk) = (g.out_channels, g.patch_len());
    let mut wt = vec![0.0; ckk * co];
    for (o, row) in w.chunks_exact(ckk).enumerate() {
        for (j, v) in row.iter().enumerate() {
            wt[j * co + o] = *v;
        }
    }
    wt
}

/// Each tap's weights [k·k][co][ci] from W [co, ci, k, k], the layout
/// `input_grad_sample` reads.
pub(super) fn pack_taps(g: &Conv2dGeometry, w: &[f32]) -> Vec<f32> {
    let (co, ci, kk) = (g.out_channels, g.in_channels, g.kernel * g.kernel);
    let mut taps = vec![0.0; kk * co * ci];
    for (oc, row) in w.chunks_exact(kk).enumerate() {
        let (o, c) = (oc / ci, oc % ci);
        for (t, v) in row.iter().enumerate() {
            taps[(t * co + o) * ci + c] = *v;
        }
    }
    taps
}

/// Length of the scratch `forward_sample` needs: the sample's output as [pixels, channels].
pub(super) fn scratch_len(g: &Conv2dGeometry) -> usize {
    g.out_height() * g.out_width() * g.out_channels
}

/// Length of the scratch `input_grad_sample` needs: the padded input gradient as
/// [padded pixels, channels].
pub(super) fn input_grad_scratch(g: &Conv2dGeometry) -> usize {
    let (ph, pw) = padded_size(g);
    ph * pw * g.in_channels
}

/// Forward pass of one sample: y_s [co, OH·OW] = W · columns (+ bias), from Wᵀ (`pack_wt`).
pub(super) fn forward_sample(
    g: &Conv2dGeometry,
    layout: &Layout,
    x: &Padded,
    wt: &[f32],
    bias: Option<&[f32]>,
    y_s: &mut [f32],
    yt: &mut [f32],
) {
    let (co, p) = (g.out_channels, layout.pixels.len());
    assert!(y_s.len() == co * p, "output length");
    let yt = &mut yt[..p * co];
    let product = Product {
        picture: x.data,
        walk: &layout.origins,
        held: &layout.pixels,
        rows: wt,
        channels: co,
        accumulate: false,
    };
    product.run(yt);
    // [pixels, channels] → [channels, pixels], with the bias.
    for (o, plane) in y_s.chunks_exact_mut(p).enumerate() {
        let b = bias.map_or(0.0, |b| b[o]);
        for (v, row) in plane.iter_mut().zip(yt[o..].iter().step_by(co)) {
            *v = *row + b;
        }
    }
}

/// gwᵀ [ckk, co] += (this sample's columns) [ckk, p] · gy_sᵀ [p, co], from the transposed
/// output gradient `gy_t` [p, co].
pub(super) fn weight_grad_sample(
    g: &Conv2dGeometry,
    layout: &Layout,
    x: &Padded,
    gy_t: &[f32],
    gw_t: &mut [f32],
) {
    let (ckk, co, p) = (g.patch_len(), g.out_channels, layout.pixels.len());
    let product = Product {
        picture: x.data,
        walk: &layout.pixels,
        held: &layout.origins,
        rows: &gy_t[..p * co],
        channels: co,
        accumulate: true,
    };
    product.run(&mut gw_t[..ckk * co]);
}

/// The input gradient of one sample from its output gradient gy_s [co, OH·OW] and the taps'
/// weights (`pack_taps`): accumulated per tap into the padded gradient `padded`
/// [padded pixels, ci], then written or added onto gx_s [ci, H, W]. Each value receives its
/// taps in tap order.
pub(super) fn input_grad_sample(
    g: &Conv2dGeometry,
    layout: &Layout,
    taps: &[f32],
    gy_s: &[f32],
    gx_s: InputGrad<'_>,
    padded: &mut [f32],
) {
    let (ci, co, p) = (g.in_channels, g.out_channels, layout.pixels.len());
    assert!(input_grad_fits(g), "input channels in pairs of vectors");
    assert!(
        gy_s.len() == co * p && gx_s.len() == ci * g.height * g.width,
        "operand lengths"
    );
    let padded = &mut padded[..input_grad_scratch(g)];
    padded.fill(0.0);
    for (t, weights) in taps.chunks_exact(co * ci).enumerate() {
        // Tap t = ki·k + kj is column row t of channel 0: its origin is the padded pixel
        // that output pixel 0 reads through it.
        let product = Product {
            picture: gy_s,
            walk: &layout.planes,
            held: &layout.pixel_index,
            rows: weights,
            channels: ci,
            accumulate: true,
        };
        product.run_scattered(padded, layout.origins[t], &layout.pixels);
    }
    // [padded pixels, channels] → [channels, H, W] without the border.
    let (h, w, pad, pw) = (g.height, g.width, g.padding, layout.pw);
    // The padded gradient's values for channel c, row y of the picture.
    let src = |c: usize, y: usize| padded[((y + pad) * pw + pad) * ci + c..].iter().step_by(ci);
    match gx_s {
        InputGrad::AddTo(gx) => {
            for (cy, row) in gx.chunks_exact_mut(w).enumerate() {
                row.iter_mut()
                    .zip(src(cy / h, cy % h))
                    .for_each(|(d, v)| *d += v);
            }
        }
        InputGrad::New(gx) => {
            for (cy, row) in gx.chunks_exact_mut(w).enumerate() {
                row.iter_mut()
                    .zip(src(cy / h, cy % h))
                    .for_each(|(d, v)| *d = MaybeUninit::new(*v));
            }
        }
    }
}

/// out[row i] (=, or += when `accumulate`) Σ_t picture[walk[t] + held[i]] · rows[t], rows
/// and out `channels` wide.
struct Product<'a> {
    picture: &'a [f32],
    /// Offsets the kernel loops over, one per row of `rows`.
    walk: &'a [usize],
    /// Offsets held in registers, 8 at a time, one per row of the output.
    held: &'a [usize],
    /// [walk.len(), channels].
    rows: &'a [f32],
    channels: usize,
    accumulate: bool,
}

impl Product<'_> {
    /// Output row i at out row i.
    fn run(&self, out: &mut [f32]) {
        self.blocks(out, |i| i);
    }

    /// Output row i at out row `base + at[i]`.
    fn run_scattered(&self, out: &mut [f32], base: usize, at: &[usize]) {
        self.blocks(out, |i| base + at[i]);
    }

    fn blocks(&self, out: &mut [f32], out_row: impl Fn(usize) -> usize) {
        let ch = self.channels;
        assert!(ch.is_multiple_of(CHANNELS), "channels in pairs of vectors");
        #[cfg(target_arch = "x86_64")]
        debug_assert!(
            std::arch::is_x86_feature_detected!("avx512f"),
            "the caller chose these kernels without AVX-512F"
        );
        let reach = |offsets: &[usize]| offsets.iter().max().copied().unwrap_or(0);
        assert!(
            self.walk.is_empty()
                || self.held.is_empty()
                || reach(self.walk) + reach(self.held) < self.picture.len(),
            "picture bounds"
        );
        assert!(self.rows.len() == self.walk.len() * ch, "rows length");
        let mut i0 = 0;
        while i0 < self.held.len() {
            let n = [HELD, 4, 2, 1]
                .into_iter()
                .find(|&n| n <= self.held.len() - i0)
                .unwrap();
            let mut held = [0usize; HELD];
            held[..n].copy_from_slice(&self.held[i0..i0 + n]);
            let mut out_rows = [0usize; HELD];
            for (i, r) in out_rows.iter_mut().enumerate().take(n) {
                *r = out_row(i0 + i);
                assert!((*r + 1) * ch <= out.len(), "output bounds");
            }
            for v0 in (0..ch).step_by(CHANNELS) {
                // SAFETY: every picture read is walk[t] + held[i], within the bound asserted
                // above; rows are read at columns v0..v0 + 32 ≤ ch of walk.len() rows and
                // out written at rows out_rows[..n] (each checked above), the same columns;
                // AVX-512F is present wherever the direct kernels are chosen
                // (`direct::available`, asserted by the callers).
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    let args = Block {
                        picture: self.picture.as_ptr(),
                        walk: self.walk,
                        held: &held,
                        rows: self.rows.as_ptr().add(v0),
                        ld: ch,
                        out: out.as_mut_ptr().add(v0),
                        out_rows: &out_rows,
                        accumulate: self.accumulate,
                    };
                    match n {
                        HELD => block::<HELD>(&args),
                        4 => block::<4>(&args),
                        2 => block::<2>(&args),
                        _ => block::<1>(&args),
                    }
                }
                #[cfg(not(target_arch = "x86_64"))]
                unreachable!("conv::broadcast is used only on x86-64 with AVX-512F");
            }
            i0 += n;
        }
    }
}

/// Where `block` reads and writes: P held offsets × 32 channels.
#[cfg(target_arch = "x86_64")]
struct Block<'a> {
    picture: *const f32,
    walk: &'a [usize],
    /// The held offsets (the first P are used).
    held: &'a [usize; HELD],
    /// The rows at the first of the 32 channels.
    rows: *const f32,
    /// Row length of `rows` and of the output.
    ld: usize,
    /// The output at its first channel.
    out: *mut f32,
    /// The output row of each held offset.
    out_rows: &'a [usize; HELD],
    accumulate: bool,
}

/// 2·P accumulators: per walked offset, two vectors of its row and P broadcast picture
/// values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block<const P: usize>(args: &Block) {
    let held: [usize; P] = std::array::from_fn(|i| args.held[i]);
    let mut acc = [[_mm512_setzero_ps(); 2]; P];
    for (t, &at) in args.walk.iter().enumerate() {
        // Row t, at the block's first channel (never a pointer past the rows' end).
        let row = args.rows.add(t * args.ld);
        let base = args.picture.add(at);
        let r0 = _mm512_loadu_ps(row);
        let r1 = _mm512_loadu_ps(row.add(W));
        for (a, &off) in acc.iter_mut().zip(&held) {
            let xv = _mm512_set1_ps(*base.add(off));
            a[0] = _mm512_fmadd_ps(xv, r0, a[0]);
            a[1] = _mm512_fmadd_ps(xv, r1, a[1]);
        }
    }
    for (a, &r) in acc.iter().zip(args.out_rows) {
        let out = args.out.add(r * args.ld);
        for (v, a) in a.iter().enumerate() {
            let at = out.add(v * W);
            let sum = if args.accumulate {
                _mm512_add_ps(_mm512_loadu_ps(at), *a)
            } else {
                *a
            };
            _mm512_storeu_ps(at, sum);
        }
    }
}

//! Pictures as RGB buffers (no fonts): emission maps of a city's tiles and predicted-vs-true
//! scatter plots, for `predict`'s map PNG and the TensorBoard images of every run.

use crate::error::{Error, Result};

/// An RGB picture, row-major, 3 bytes per pixel.
pub struct Picture {
    pub rgb: Vec<u8>,
    pub width: usize,
    pub height: usize,
}

impl Picture {
    fn new(width: usize, height: usize, background: [u8; 3]) -> Picture {
        Picture {
            rgb: background.repeat(width * height),
            width,
            height,
        }
    }

    fn set(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.width && y < self.height {
            let o = (y * self.width + x) * 3;
            self.rgb[o..o + 3].copy_from_slice(&c);
        }
    }

    pub fn png(&self) -> crate::error::Result<Vec<u8>> {
        encode_png(&self.rgb, self.width, self.height)
    }

    /// Two pictures of the same height side by side with a gap.
    pub fn beside(&self, other: &Picture) -> Picture {
        let gap = 4;
        let h = self.height.max(other.height);
        let mut out = Picture::new(self.width + gap + other.width, h, [255, 255, 255]);
        for (pic, x0) in [(self, 0), (other, self.width + gap)] {
            for y in 0..pic.height {
                let src = &pic.rgb[y * pic.width * 3..(y + 1) * pic.width * 3];
                let o = (y * out.width + x0) * 3;
                out.rgb[o..o + src.len()].copy_from_slice(src);
            }
        }
        out
    }
}

/// Encode an RGB8 picture (row-major, `width`×`height`) as PNG.
pub fn encode_png(rgb: &[u8], width: usize, height: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let enc = image::codecs::png::PngEncoder::new(&mut out);
    image::ImageEncoder::write_image(
        enc,
        rgb,
        width as u32,
        height as u32,
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| Error::Internal(format!("PNG encoding failed: {e}")))?;
    Ok(out)
}

/// A viridis-like colour ramp over [lo, hi].
pub fn ramp(v: f64, lo: f64, hi: f64) -> [u8; 3] {
    const RAMP: [[f64; 3]; 5] = [
        [68.0, 1.0, 84.0],
        [59.0, 82.0, 139.0],
        [33.0, 145.0, 140.0],
        [94.0, 201.0, 98.0],
        [253.0, 231.0, 37.0],
    ];
    let t = ((v - lo) / (hi - lo).max(1e-12)).clamp(0.0, 1.0) * (RAMP.len() - 1) as f64;
    let i = (t.floor() as usize).min(RAMP.len() - 2);
    let f = t - i as f64;
    let c = |k: usize| (RAMP[i][k] + (RAMP[i + 1][k] - RAMP[i][k]) * f).round() as u8;
    [c(0), c(1), c(2)]
}

/// The 2 % and 98 % quantiles of the finite values: a colour range robust to outliers.
pub fn robust_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let mut sorted: Vec<f64> = values.filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return (0.0, 1.0);
    }
    let lo = crate::metrics::quantile(&sorted, 0.02);
    let hi = crate::metrics::quantile(&sorted, 0.98).max(lo + 1e-9);
    (lo, hi)
}

/// One square of `px` pixels per tile (at `coords[t]`), coloured by value on [lo, hi]; tiles
/// without a value (None or not finite) are grey, positions without a tile white.
pub fn tile_map(
    coords: &[(u32, u32)],
    values: &[Option<f64>],
    lo: f64,
    hi: f64,
    px: usize,
) -> Picture {
    let (x0, y0, x1, y1) = coords
        .iter()
        .fold((u32::MAX, u32::MAX, 0, 0), |b, &(x, y)| {
            (b.0.min(x), b.1.min(y), b.2.max(x), b.3.max(y))
        });
    let (w, h) = ((x1 - x0 + 1) as usize * px, (y1 - y0 + 1) as usize * px);
    let mut pic = Picture::new(w, h, [255, 255, 255]);
    for (t, v) in values.iter().enumerate() {
        let (x, y) = coords[t];
        let c = match v {
            Some(v) if v.is_finite() => ramp(*v, lo, hi),
            _ => [190, 190, 190],
        };
        for dy in 0..px {
            for dx in 0..px {
                pic.set((x - x0) as usize * px + dx, (y - y0) as usize * px + dy, c);
            }
        }
    }
    pic
}

/// Predicted (vertical) against true (horizontal) on a square canvas with the 1:1 diagonal,
/// both axes over the same range.
pub fn scatter(truth: &[f64], predicted: &[f64], size: usize) -> Picture {
    let mut pic = Picture::new(size, size, [255, 255, 255]);
    let all = truth.iter().chain(predicted).copied();
    let (mut lo, mut hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        if v.is_finite() {
            (a.min(v), b.max(v))
        } else {
            (a, b)
        }
    });
    if lo >= hi {
        (lo, hi) = (lo - 1.0, lo + 1.0);
    }
    let margin = 8;
    let span = (size - 2 * margin) as f64;
    let to_px = |v: f64| margin as f64 + (v - lo) / (hi - lo) * span;
    for i in 0..(size - 2 * margin) {
        // The 1:1 line, and the axes.
        pic.set(margin + i, size - margin - 1 - i, [200, 60, 60]);
        pic.set(margin + i, size - margin, [0, 0, 0]);
        pic.set(margin - 1, margin + i, [0, 0, 0]);
    }
    for (t, p) in truth.iter().zip(predicted) {
        let (x, y) = (to_px(*t), to_px(*p));
        if !(x.is_finite() && y.is_finite()) {
            continue;
        }
        let (x, y) = (x.round() as usize, size - 1 - y.round() as usize);
        for (dx, dy) in [
            (0, 0),
            (1, 0),
            (0, 1),
            (1, 1),
            (2, 0),
            (2, 1),
            (0, 2),
            (1, 2),
            (2, 2),
        ] {
            pic.set(x + dx, y + dy, [40, 70, 160]);
        }
    }
    pic
}

//! The smooth fields both generator versions build on: value noise and its fractal sum, the
//! frame around a city and the city's tiles in it, and the urban fields at a point (built
//! density, vibrancy, water, industrial zones, parks). v5 decides land use per cell from them;
//! v6 places blocks and buildings.

use std::f64::consts::PI;

use super::{geo, Preset, CELLS, ZOOM};

// ---------------------------------------------------------------------------------------------
// Smooth noise

pub(super) fn hash01(ix: i64, iy: i64, seed: u64) -> f64 {
    let mut h = seed
        ^ (ix as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (iy as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^= h >> 33;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

pub(super) fn value_noise(x: f64, y: f64, seed: u64) -> f64 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let s = |t: f64| t * t * (3.0 - 2.0 * t);
    let (sx, sy) = (s(fx), s(fy));
    let (ix, iy) = (x0 as i64, y0 as i64);
    let a = hash01(ix, iy, seed);
    let b = hash01(ix + 1, iy, seed);
    let c = hash01(ix, iy + 1, seed);
    let d = hash01(ix + 1, iy + 1, seed);
    let top = a + (b - a) * sx;
    let bottom = c + (d - c) * sx;
    2.0 * (top + (bottom - top) * sy) - 1.0
}

/// Fractal noise in about [-1, 1]; `scale` is the size of the largest features in tiles.
pub(super) fn fbm(u: f64, v: f64, scale: f64, seed: u64) -> f64 {
    let (mut sum, mut amp, mut norm, mut f) = (0.0, 1.0, 0.0, 1.0 / scale);
    for octave in 0..4 {
        sum += amp * value_noise(u * f, v * f, seed.wrapping_add(octave * 7919));
        norm += amp;
        amp *= 0.5;
        f *= 2.0;
    }
    sum / norm
}

pub(super) struct Frame {
    pub(super) w: usize,
    pub(super) h: usize,
    pub(super) x0: u32,
    pub(super) y0: u32,
}

impl Frame {
    /// The frame around a city and the city's tiles in it, row-major. The frame is larger than
    /// the city; the city is the `p.tiles` tiles with the highest "inside" score (a noisy
    /// ellipse), which gives an irregular boundary.
    pub(super) fn of_city(p: &Preset, s: u64) -> (Frame, Vec<(usize, usize)>) {
        let area = p.tiles as f64 * 1.3;
        let h = (area / p.aspect).sqrt().ceil() as usize;
        let w = (h as f64 * p.aspect).ceil() as usize;
        let (cx, cy) = geo::lonlat_to_tile(p.lon, p.lat, ZOOM);
        let frame = Frame {
            w,
            h,
            x0: cx as u32 - w as u32 / 2,
            y0: cy as u32 - h as u32 / 2,
        };
        let mut inside: Vec<(f64, usize, usize)> = Vec::new();
        for j in 0..h {
            for i in 0..w {
                let (u, v) = frame.uv(i as f64 + 0.5, j as f64 + 0.5);
                let score =
                    1.0 - (u * u + v * v).sqrt() + 0.3 * fbm(i as f64, j as f64, 6.0, s ^ 1);
                inside.push((score, i, j));
            }
        }
        inside.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
        let mut chosen: Vec<(usize, usize)> = inside[..p.tiles.min(inside.len())]
            .iter()
            .map(|t| (t.1, t.2))
            .collect();
        chosen.sort_by_key(|&(i, j)| (j, i));
        (frame, chosen)
    }

    /// Position of a point (in tile units from the frame's north-west corner) relative to the
    /// centre, in half-extents: u east, v north.
    pub(super) fn uv(&self, px: f64, py: f64) -> (f64, f64) {
        let hw = self.w as f64 / 2.0;
        let hh = self.h as f64 / 2.0;
        ((px - hw) / hw, (hh - py) / hh)
    }
}

/// The smooth urban fields of a city at a point (tile units from the frame's corner): what both
/// generator versions build on (v5 decides land use per cell from them, v6 places blocks).
#[derive(Debug, Clone, Copy)]
pub(super) struct Site {
    /// Built density in [0, 1].
    pub(super) density: f64,
    /// Commercial life that no roof shows, smooth over a few tiles (`exp(2·fbm)`).
    pub(super) vibrancy: f64,
    pub(super) water: bool,
    pub(super) industrial_zone: bool,
    pub(super) park: bool,
}

impl Site {
    pub(super) fn at(p: &Preset, frame: &Frame, s: u64, gx: f64, gy: f64) -> Site {
        let (w, h) = (frame.w, frame.h);
        let (u, v) = frame.uv(gx, gy);
        let hw = w as f64 / 2.0;
        let mut density = 0.0;
        for c in p.centres {
            let d = ((u - c.u).powi(2) + (v - c.v).powi(2)).sqrt() * hw;
            density += c.strength * (-d / c.radius).exp();
        }
        let (extent, level) = p.urban_extent;
        let r = (u * u + v * v).sqrt();
        density += level / (1.0 + ((r - extent) * hw / 1.5).exp());
        density = (density + 0.18 * fbm(gx, gy, 4.0, s ^ 2)).clamp(0.0, 1.0);
        let vibrancy = (2.0 * fbm(gx, gy, 3.0, s ^ 3)).exp();

        let mut water = false;
        if let Some((amp, wavelength, offset, width, north_south)) = p.river {
            let (along, across, half) = if north_south {
                (gy, gx, hw)
            } else {
                (gx, gy, h as f64 / 2.0)
            };
            let axis = half * (1.0 + offset * if north_south { 1.0 } else { -1.0 })
                + amp * (along / wavelength * 2.0 * PI).sin()
                + 0.5 * amp * (along / (wavelength * 0.37) * 2.0 * PI + 1.0).sin();
            water = (across - axis).abs() < width / CELLS as f64 / 2.0;
        }
        if p.lake_share > 0.0 && fbm(gx, gy, 4.0, s ^ 4) > 1.0 - 14.0 * p.lake_share {
            water = true;
        }
        let industrial_zone = p.industrial_zones.iter().any(|&(zu, zv, r)| {
            let d = ((u - zu).powi(2) + (v - zv).powi(2)).sqrt() * hw;
            d < r * (1.0 + 0.4 * fbm(gx, gy, 1.5, s ^ 5))
        });
        let park = fbm(gx, gy, 3.5, s ^ 6) > 1.0 - 4.0 * p.park_share && density < 0.85;
        Site {
            density,
            vibrancy,
            water,
            industrial_zone,
            park,
        }
    }
}

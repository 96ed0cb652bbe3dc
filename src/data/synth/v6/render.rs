//! The renderer of v6 tiles: the city's vector scene drawn at 256 px per tile, then seen
//! through an acquisition whose nuisance does not follow emission. Roof colours come from the
//! city's palette whatever the use or height; shadows are cast from heights under the
//! acquisition's sun; gain, offset, gamma, haze, white balance and season change every pixel of
//! the acquisition's strip; sensor noise and blur come last.

use super::super::hash01;
use super::buildings::{Rect, Surface};
use super::presets::RoadClass;
use super::{City, Ground, IMAGE_PX};

/// One acquisition: the conditions under which one strip of tiles was imaged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Acquisition {
    /// Sun azimuth (degrees clockwise from north) and elevation (degrees).
    pub sun_azimuth_deg: f64,
    pub sun_elevation_deg: f64,
    pub gain: f64,
    pub offset: f64,
    pub gamma: f64,
    /// Share of the signal replaced by the haze's colour.
    pub haze: f64,
    pub white_balance_red: f64,
    pub white_balance_blue: f64,
    /// 0 = winter (bare trees, brown grass) to 1 = summer.
    pub season: f64,
}

impl Acquisition {
    /// A clear, neutral acquisition under the given sun (tests that measure the scene).
    #[cfg(test)]
    pub fn neutral(sun_azimuth_deg: f64, sun_elevation_deg: f64) -> Acquisition {
        Acquisition {
            sun_azimuth_deg,
            sun_elevation_deg,
            gain: 1.0,
            offset: 0.0,
            gamma: 1.0,
            haze: 0.0,
            white_balance_red: 1.0,
            white_balance_blue: 1.0,
            season: 1.0,
        }
    }

    /// Unit vector on the ground pointing where shadows fall (away from the sun), x east and
    /// y south, and shadow length per metre of height.
    pub fn shadow(&self) -> ([f64; 2], f64) {
        let az = self.sun_azimuth_deg.to_radians();
        // The sun stands at azimuth az; its direction on the ground is (sin az, -cos az) in
        // x-east/y-south coordinates; shadows point the other way.
        let dir = [-az.sin(), az.cos()];
        (dir, 1.0 / self.sun_elevation_deg.to_radians().tan())
    }
}

type Rgb = [f32; 3];

fn rgb(c: [u8; 3]) -> Rgb {
    [c[0] as f32, c[1] as f32, c[2] as f32]
}

fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn scale(a: Rgb, s: f32) -> Rgb {
    [a[0] * s, a[1] * s, a[2] * s]
}

/// Pixel-centre world coordinates of a tile's pixels and the painter's buffer.
struct Canvas {
    x0: f64,
    y0: f64,
    m_px: f64,
    px: Vec<Rgb>,
    shade: Vec<f32>,
    /// Height above the ground of what each pixel shows (0 for the ground, a roof's height).
    height: Vec<f64>,
}

impl Canvas {
    fn world(&self, i: usize, j: usize) -> [f64; 2] {
        [
            self.x0 + (i as f64 + 0.5) * self.m_px,
            self.y0 + (j as f64 + 0.5) * self.m_px,
        ]
    }

    /// Pixel index range covering [lo, hi] metres along one axis starting at `origin`.
    fn span(&self, origin: f64, lo: f64, hi: f64) -> std::ops::Range<usize> {
        let a = ((lo - origin) / self.m_px - 0.5).floor().max(0.0) as usize;
        let b = (((hi - origin) / self.m_px + 0.5).ceil().max(0.0) as usize).min(IMAGE_PX);
        a.min(IMAGE_PX)..b
    }

    /// Visit the pixels whose centre lies in the axis-aligned box around `c` (half extents).
    fn each_in_box(
        &mut self,
        c: [f64; 2],
        half: [f64; 2],
        mut f: impl FnMut(&mut Self, usize, [f64; 2]),
    ) {
        let xs = self.span(self.x0, c[0] - half[0], c[0] + half[0]);
        let ys = self.span(self.y0, c[1] - half[1], c[1] + half[1]);
        for j in ys {
            for i in xs.clone() {
                let w = self.world(i, j);
                f(self, j * IMAGE_PX + i, w);
            }
        }
    }

    fn fill_rect(&mut self, r: &Rect, mut colour: impl FnMut([f64; 2], [f64; 2]) -> Rgb) {
        self.each_in_box(r.c, r.bbox_half(), |cv, k, w| {
            if r.contains(w) {
                cv.px[k] = colour(w, r.local(w));
            }
        });
    }
}

impl City {
    /// Render frame tile `t` of the city (index into the city's tiles) as RGB bytes.
    pub fn render(&self, t: usize) -> Vec<u8> {
        let (ti, tj) = self.tile_ij[t];
        let acq = &self.acquisitions[self.tile_strip[t]];
        let scene = &self.scene;
        let world = &scene.world;
        let m_px = world.tile_m / IMAGE_PX as f64;
        let mut cv = Canvas {
            x0: ti as f64 * world.tile_m,
            y0: tj as f64 * world.tile_m,
            m_px,
            px: vec![[0.0; 3]; IMAGE_PX * IMAGE_PX],
            shade: vec![1.0; IMAGE_PX * IMAGE_PX],
            height: vec![0.0; IMAGE_PX * IMAGE_PX],
        };
        let season = acq.season as f32;
        let grass = mix([150.0, 140.0, 92.0], [88.0, 128.0, 70.0], season);
        let canopy = mix([112.0, 100.0, 80.0], [52.0, 92.0, 50.0], season);
        let ground = rgb(self.preset.ground);
        let seed = self.seed;

        // Ground cover from the city's fields.
        for j in 0..IMAGE_PX {
            for i in 0..IMAGE_PX {
                let w = cv.world(i, j);
                let h = hash01((w[0] * 4.0) as i64, (w[1] * 4.0) as i64, seed ^ 0xA1) as f32;
                cv.px[j * IMAGE_PX + i] = match scene.ground_at(w, seed) {
                    Ground::Water => [40.0 + 8.0 * h, 70.0 + 10.0 * h, 96.0 + 12.0 * h],
                    Ground::Park => scale(grass, 0.92 + 0.12 * h),
                    Ground::Farmland => {
                        // Fields of about 150 m, each its own crop and furrow direction.
                        let (fx, fy) =
                            ((w[0] / 150.0).floor() as i64, (w[1] / 150.0).floor() as i64);
                        let crop = hash01(fx, fy, seed ^ 0xA2) as f32;
                        let furrow = if crop < 0.5 { w[0] } else { w[1] };
                        let stripe = if (furrow / 4.0).floor() as i64 % 2 == 0 {
                            1.0
                        } else {
                            0.9
                        };
                        scale(mix([168.0, 150.0, 108.0], grass, crop), stripe)
                    }
                    Ground::Urban => scale(ground, 0.9 + 0.15 * h),
                };
            }
        }
        let objects = &self.scene.index[tj * world.frame_w + ti];
        for &k in &objects.lots {
            let lot = &scene.built.lots[k];
            match lot.surface {
                Surface::Garden => cv.fill_rect(&lot.area, |w, _| {
                    let h = hash01((w[0] / 3.0) as i64, (w[1] / 3.0) as i64, seed ^ 0xA3) as f32;
                    scale(grass, 0.85 + 0.2 * h)
                }),
                Surface::Grass => cv.fill_rect(&lot.area, |w, _| {
                    let h = hash01((w[0] / 6.0) as i64, (w[1] / 6.0) as i64, seed ^ 0xA4) as f32;
                    scale(grass, 0.9 + 0.15 * h)
                }),
                Surface::Paved => cv.fill_rect(&lot.area, |_, _| scale(ground, 1.05)),
                Surface::Yard => cv.fill_rect(&lot.area, |w, _| {
                    let h = hash01((w[0] / 8.0) as i64, (w[1] / 8.0) as i64, seed ^ 0xA5) as f32;
                    mix([132.0, 128.0, 120.0], [160.0, 150.0, 128.0], h)
                }),
                Surface::CarPark => cv.fill_rect(&lot.area, |_, l| {
                    // Rows of stalls: white lines every 2.5 m across aisles of 16 m.
                    let stall =
                        (l[0] / 2.5).rem_euclid(1.0) < 0.2 && (l[1] / 16.0).rem_euclid(1.0) < 0.6;
                    if stall {
                        [200.0, 200.0, 196.0]
                    } else {
                        [84.0, 84.0, 88.0]
                    }
                }),
                Surface::SportsField => cv.fill_rect(&lot.area, |_, l| {
                    let ring = lot.area.half[0].min(lot.area.half[1]) - 4.0;
                    let r = (l[0].abs() - (lot.area.half[0] - lot.area.half[1]).max(0.0))
                        .max(0.0)
                        .hypot(l[1]);
                    if (r - ring).abs() < 3.0 {
                        [172.0, 92.0, 72.0]
                    } else {
                        scale(grass, 1.05)
                    }
                }),
            }
        }
        // Roads, widest last so junctions show the main road.
        let roads = &scene.roads;
        for class in [
            RoadClass::Local,
            RoadClass::Collector,
            RoadClass::Arterial,
            RoadClass::Motorway,
        ] {
            for &k in &objects.roads {
                let e = roads.edges[k];
                if e.class != class {
                    continue;
                }
                let (p, q) = (roads.nodes[e.a], roads.nodes[e.b]);
                let len = roads.length(&e).max(1e-9);
                let axis = [(q[0] - p[0]) / len, (q[1] - p[1]) / len];
                let half_w = class.width_m() / 2.0;
                let r = Rect {
                    c: [(p[0] + q[0]) / 2.0, (p[1] + q[1]) / 2.0],
                    axis,
                    half: [len / 2.0 + half_w * 0.5, half_w],
                };
                cv.fill_rect(&r, |_, l| {
                    let marked = match class {
                        RoadClass::Motorway => {
                            let lane =
                                (l[1].abs() / 3.6).rem_euclid(1.0) < 0.15 && l[1].abs() > 2.0;
                            let dash = (l[0] / 9.0).rem_euclid(1.0) < 0.5;
                            (lane && dash) || l[1].abs() < 1.0
                        }
                        RoadClass::Arterial => {
                            l[1].abs() < 0.4 && (l[0] / 6.0).rem_euclid(1.0) < 0.5
                        }
                        _ => false,
                    };
                    if marked {
                        [196.0, 196.0, 186.0]
                    } else if class == RoadClass::Local {
                        [104.0, 104.0, 106.0]
                    } else {
                        [76.0, 76.0, 80.0]
                    }
                });
            }
        }
        let (dir, per_m) = acq.shadow();
        let towards_sun = [-dir[0], -dir[1]];
        let sun_side = towards_sun;
        // Roofs (lit; a pitched roof's two slopes take the sun differently).
        for &k in &objects.buildings {
            let b = &scene.built.buildings[k];
            let base = rgb(self.preset.roofs[b.roof as usize]);
            let tint = 0.9 + 0.2 * hash01(k as i64, 3, seed ^ 0xA6) as f32;
            let fp = b.footprint;
            let across = [-fp.axis[1], fp.axis[0]];
            let facing = (across[0] * sun_side[0] + across[1] * sun_side[1]) as f32;
            let pitched = b.pitched();
            let flat_roof_units = !pitched && b.footprint.area() > 600.0;
            cv.each_in_box(fp.c, fp.bbox_half(), |cv, idx, w| {
                if fp.contains(w) {
                    cv.height[idx] = b.height_m;
                }
            });
            cv.fill_rect(&fp, |w, l| {
                if pitched {
                    let slope = if l[1] >= 0.0 { facing } else { -facing };
                    scale(base, tint * (1.0 + 0.18 * slope))
                } else {
                    let rim = l[0].abs() > fp.half[0] - 1.2 || l[1].abs() > fp.half[1] - 1.2;
                    let unit = flat_roof_units
                        && hash01((w[0] / 6.0) as i64, (w[1] / 6.0) as i64, seed ^ 0xA7) < 0.05;
                    if rim {
                        scale(base, tint * 1.12)
                    } else if unit {
                        [150.0, 150.0, 150.0]
                    } else {
                        scale(base, tint)
                    }
                }
            });
        }
        // Shadows, after the roofs: a pixel at height h (0 on the ground, a roof's height on a
        // roof) is in the shadow of a taller building or stack when the ray towards the sun
        // meets it within (its height - h) / tan(elevation).
        for &k in &objects.buildings {
            let b = &scene.built.buildings[k];
            let len = b.height_m * per_m;
            let half = b.footprint.bbox_half();
            let c = [
                b.footprint.c[0] + dir[0] * len / 2.0,
                b.footprint.c[1] + dir[1] * len / 2.0,
            ];
            let box_half = [
                half[0] + (dir[0] * len / 2.0).abs(),
                half[1] + (dir[1] * len / 2.0).abs(),
            ];
            cv.each_in_box(c, box_half, |cv, idx, w| {
                let rise = b.height_m - cv.height[idx];
                if rise > 0.0 && b.footprint.meets_segment(w, towards_sun, rise * per_m) {
                    cv.shade[idx] = 0.45;
                }
            });
        }
        for &k in &objects.facilities {
            let f = &scene.built.facilities[k];
            for &(c, r, height) in &f.stacks[..f.stack_count] {
                let len = height * per_m;
                let sq = Rect {
                    c,
                    axis: [1.0, 0.0],
                    half: [r * 0.8, r * 0.8],
                };
                let mid = [c[0] + dir[0] * len / 2.0, c[1] + dir[1] * len / 2.0];
                let half = [
                    r + (dir[0] * len / 2.0).abs(),
                    r + (dir[1] * len / 2.0).abs(),
                ];
                cv.each_in_box(mid, half, |cv, idx, w| {
                    let rise = height - cv.height[idx];
                    if rise > 0.0 && sq.meets_segment(w, towards_sun, rise * per_m) {
                        cv.shade[idx] = 0.45;
                    }
                });
            }
        }
        for k in 0..cv.px.len() {
            cv.px[k] = scale(cv.px[k], cv.shade[k]);
        }
        // Facilities: cooling towers (discs with a dark throat) or tanks, and stacks.
        for &k in &objects.facilities {
            let f = &scene.built.facilities[k];
            for &(c, r) in &f.towers[..f.tower_count] {
                cv.each_in_box(c, [r, r], |cv, idx, w| {
                    let d = (w[0] - c[0]).hypot(w[1] - c[1]);
                    if d <= r {
                        let lit = 1.0
                            + 0.15
                                * (((w[0] - c[0]) * sun_side[0] + (w[1] - c[1]) * sun_side[1]) / r)
                                    as f32;
                        // A cooling tower's open throat is dark; a tank's roof is not.
                        cv.px[idx] = if d < 0.6 * r && !f.process {
                            [70.0, 72.0, 74.0]
                        } else {
                            scale([196.0, 194.0, 188.0], lit)
                        };
                    }
                });
            }
            for &(c, r, _) in &f.stacks[..f.stack_count] {
                cv.each_in_box(c, [r, r], |cv, idx, w| {
                    if (w[0] - c[0]).hypot(w[1] - c[1]) <= r {
                        cv.px[idx] = [170.0, 60.0, 52.0];
                    }
                });
            }
        }
        // Trees over everything below them; bare in winter, so roofs show through.
        let leaf = 0.45 + 0.55 * season;
        for &k in &objects.trees {
            let tr = scene.built.trees[k];
            cv.each_in_box(tr.c, [tr.r, tr.r], |cv, idx, w| {
                let d = (w[0] - tr.c[0]).hypot(w[1] - tr.c[1]);
                if d <= tr.r {
                    let lit = 1.0
                        + 0.2
                            * (((w[0] - tr.c[0]) * sun_side[0] + (w[1] - tr.c[1]) * sun_side[1])
                                / tr.r) as f32;
                    cv.px[idx] = mix(cv.px[idx], scale(canopy, lit), leaf);
                }
            });
        }
        self.acquire(&cv.px, acq, t)
    }

    /// The acquisition's radiometry over a rendered scene: white balance, gain, offset, gamma,
    /// haze, a slight blur and sensor noise.
    fn acquire(&self, px: &[Rgb], acq: &Acquisition, t: usize) -> Vec<u8> {
        let wb = [
            acq.white_balance_red as f32,
            1.0,
            acq.white_balance_blue as f32,
        ];
        let haze_rgb = [196.0f32, 200.0, 208.0];
        let n = IMAGE_PX;
        // Blur: [1 2 1]/4 in both directions (the optics' and the resampling's softness).
        let at = |i: isize, j: isize| -> Rgb {
            px[j.clamp(0, n as isize - 1) as usize * n + i.clamp(0, n as isize - 1) as usize]
        };
        let mut out = vec![0u8; n * n * 3];
        let s = self.seed ^ 0xB1 ^ ((t as u64) << 20);
        for j in 0..n as isize {
            for i in 0..n as isize {
                let mut c = [0.0f32; 3];
                for (dj, wj) in [(-1isize, 1.0f32), (0, 2.0), (1, 1.0)] {
                    for (di, wi) in [(-1isize, 1.0f32), (0, 2.0), (1, 1.0)] {
                        let v = at(i + di, j + dj);
                        for ch in 0..3 {
                            c[ch] += v[ch] * wi * wj / 16.0;
                        }
                    }
                }
                let o = (j as usize * n + i as usize) * 3;
                for ch in 0..3 {
                    let x = (c[ch] * wb[ch] / 255.0).max(0.0);
                    let y = (acq.gain as f32 * x.powf(acq.gamma as f32) + acq.offset as f32)
                        .clamp(0.0, 1.2)
                        * 255.0;
                    let y = y * (1.0 - acq.haze as f32) + haze_rgb[ch] * acq.haze as f32;
                    let noise = (hash01(i as i64 * 3 + ch as i64, j as i64, s) as f32 - 0.5) * 8.0;
                    out[o + ch] = (y + noise).round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadows_fall_away_from_the_sun() {
        // Sun in the south (azimuth 180°): shadows point north, i.e. towards -y.
        let acq = Acquisition::neutral(180.0, 45.0);
        let (dir, per_m) = acq.shadow();
        assert!(
            dir[0].abs() < 1e-12 && (dir[1] + 1.0).abs() < 1e-12,
            "{dir:?}"
        );
        assert!((per_m - 1.0).abs() < 1e-12);
    }
}

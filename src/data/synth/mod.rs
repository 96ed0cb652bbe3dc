//! Synthetic benchmark cities: the embedded default data, generated deterministically from a
//! seed. The generative story is documented in docs/synthetic-cities.md; in short, latent
//! urban fields (density, commercial vibrancy, land use, roads) drive both what a satellite
//! sees and where POIs are, and emissions come from sectors that each modality sees
//! differently:
//!
//! | sector              | driven by                               | seen by image | seen by POIs |
//! |---------------------|-----------------------------------------|---------------|--------------|
//! | residential heating | built density of residential cells      | roofs         | weakly       |
//! | commercial          | activity = density × hidden vibrancy    | barely        | strongly     |
//! | industry            | industrial land × hidden site intensity | big roofs     | weakly       |
//! | road transport      | road cells × traffic drawn from the 5×5 | roads         | via activity |
//! |                     | neighbourhood's activity (spillover)    |               |              |
//! | point sources       | a few plants, heavy-tailed              | half: towers  | one POI      |
//!
//! Nothing here is tuned to make a particular model win: the constants describe plausible
//! cities and were set by looking at maps and at `opencarbon inspect`, not at model scores.

use std::f64::consts::PI;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};

use super::format::{CityDataset, DatasetMeta, PoiRecord, TargetMeta, Tile, FORMAT_TAG};
use super::geo;
use crate::error::{Error, Result};

mod fields;
mod latents_v5;
mod observe;
mod presets;
pub mod v6;

use fields::{fbm, hash01, value_noise, Frame, Site};
use observe::{generate_pois, pixel};
pub use presets::{preset, presets, Preset};

/// Every preset's name: the v5 cities, then the v6 cities.
pub fn preset_names() -> Vec<&'static str> {
    presets()
        .iter()
        .map(|p| p.name)
        .chain(v6::presets().iter().map(|p| p.name))
        .collect()
}

/// The generator version that makes a preset, or None for an unknown name.
pub fn generator_of(name: &str) -> Option<u32> {
    if preset(name).is_some() {
        Some(GENERATOR_VERSION)
    } else if v6::preset(name).is_some() {
        Some(v6::GENERATOR_VERSION)
    } else {
        None
    }
}

/// Generate a preset city (optionally resized to `tiles` tiles) into a new dataset directory.
pub fn write_preset(name: &str, seed: u64, tiles: Option<usize>, out: &Path) -> Result<()> {
    if let Some(p) = preset(name) {
        let p = match tiles {
            Some(n) => p.with_tiles(n),
            None => p,
        };
        SynthCity::generate(&p, seed).write(out)
    } else if let Some(p) = v6::preset(name) {
        let p = match tiles {
            Some(n) => p.with_tiles(n),
            None => p,
        };
        v6::City::generate(&p, seed).write(out)
    } else {
        Err(Error::Usage(format!(
            "unknown preset `{name}`, expected one of {}",
            preset_names().join(", ")
        )))
    }
}

/// Cells per tile edge: land use is decided per cell (about 95 m at zoom 15).
pub const CELLS: usize = 8;
/// Image pixels per cell edge; images are CELLS·PX = 64 px.
pub const PX: usize = 8;
pub const IMAGE_SIZE: usize = CELLS * PX;
pub const ZOOM: u8 = 15;
/// Log-scale standard deviation of the inventory's per-tile error (see docs/synthetic-cities.md).
pub const INVENTORY_LOG_SIGMA: f64 = 0.45;
/// Bumped whenever the generator's output changes, so cached cities are regenerated.
pub const GENERATOR_VERSION: u32 = 5;

pub const POI_CATEGORIES: [&str; 15] = [
    "food",
    "shopping",
    "education",
    "health",
    "transport",
    "office",
    "residential",
    "industrial",
    "leisure",
    "hotel",
    "finance",
    "government",
    "religion",
    "sport",
    "other",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LandUse {
    Water,
    Park,
    Farmland,
    Residential,
    Commercial,
    Industrial,
    Road,
}

// ---------------------------------------------------------------------------------------------
// The city

/// Everything the generator decides about one cell.
#[derive(Debug, Clone, Copy)]
struct Cell {
    land: LandUse,
    /// Built density in [0, 1].
    density: f64,
    /// Commercial activity (density × hidden vibrancy), >= 0.
    activity: f64,
}

pub struct SynthCity {
    pub meta: DatasetMeta,
    pub tiles: Vec<Tile>,
    pub pois: Vec<PoiRecord>,
    /// Per tile, its CELLS×CELLS cells, row-major.
    cells: Vec<Vec<Cell>>,
    /// Tiles holding a point source that is recognisable from above (drawn as towers).
    plants: Vec<bool>,
    roof: [u8; 3],
    seed: u64,
    /// The true per-tile quantities (latents.csv), read only by the oracle and the ladder.
    pub latents: crate::data::latents::Latents,
}

fn road_distance(p: &Preset, frame: &Frame, px: f64, py: f64) -> f64 {
    let cx = frame.w as f64 / 2.0;
    let cy = frame.h as f64 / 2.0;
    let (dx, dy) = (px - cx, py - cy);
    let r = if p.square_rings {
        dx.abs().max(dy.abs())
    } else {
        (dx * dx + dy * dy).sqrt()
    };
    let mut d = f64::INFINITY;
    for &ring in p.rings {
        d = d.min((r - ring).abs());
    }
    let angle = dy.atan2(dx);
    let rr = (dx * dx + dy * dy).sqrt();
    for k in 0..p.radials {
        let a = k as f64 * 2.0 * PI / p.radials as f64 + 0.3;
        let mut diff = (angle - a).rem_euclid(2.0 * PI);
        if diff > PI {
            diff = 2.0 * PI - diff;
        }
        if diff < PI / 2.0 {
            d = d.min(rr * diff.sin());
        }
    }
    d
}

impl SynthCity {
    pub fn generate(p: &Preset, seed: u64) -> SynthCity {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_0000 ^ hash_name(p.name));
        let s = rng.gen::<u64>();
        let (frame, chosen) = Frame::of_city(p, s);
        let cell_at = |gx: f64, gy: f64| -> Cell {
            // gx, gy: cell centre in tile units from the frame's corner.
            let site = Site::at(p, &frame, s, gx, gy);
            let (density, water, industrial_zone, park) =
                (site.density, site.water, site.industrial_zone, site.park);
            let activity = density.powf(1.6) * site.vibrancy;
            let road = road_distance(p, &frame, gx, gy) < 0.55 / CELLS as f64;
            let land = if water {
                LandUse::Water
            } else if road {
                LandUse::Road
            } else if industrial_zone && density > 0.08 {
                LandUse::Industrial
            } else if park {
                LandUse::Park
            } else if density < 0.14 + 0.08 * value_noise(gx * 3.0, gy * 3.0, s ^ 7) {
                LandUse::Farmland
            } else if density + 0.15 * value_noise(gx * 2.0, gy * 2.0, s ^ 10) > 0.8 {
                // Zoning follows density; how busy the shops and offices are (vibrancy) does
                // not show on a roof.
                LandUse::Commercial
            } else {
                LandUse::Residential
            };
            Cell {
                land,
                density,
                activity,
            }
        };

        let mut cells = Vec::with_capacity(chosen.len());
        for &(i, j) in &chosen {
            let mut tile_cells = Vec::with_capacity(CELLS * CELLS);
            for r in 0..CELLS {
                for c in 0..CELLS {
                    let gx = i as f64 + (c as f64 + 0.5) / CELLS as f64;
                    let gy = j as f64 + (r as f64 + 0.5) / CELLS as f64;
                    tile_cells.push(cell_at(gx, gy));
                }
            }
            cells.push(tile_cells);
        }

        // Per-tile sector drivers.
        let n = chosen.len();
        let frac = |t: usize, l: LandUse| {
            cells[t].iter().filter(|c| c.land == l).count() as f64 / (CELLS * CELLS) as f64
        };
        let sum_over = |t: usize, f: &dyn Fn(&Cell) -> f64| {
            cells[t].iter().map(f).sum::<f64>() / (CELLS * CELLS) as f64
        };
        let activity: Vec<f64> = (0..n)
            .map(|t| {
                sum_over(t, &|c| {
                    if matches!(c.land, LandUse::Commercial | LandUse::Residential) {
                        c.activity
                    } else {
                        0.0
                    }
                })
            })
            .collect();
        let index: std::collections::HashMap<(usize, usize), usize> =
            chosen.iter().enumerate().map(|(k, &c)| (c, k)).collect();
        // Traffic on a tile's roads is drawn by the activity of its 5×5 neighbourhood.
        let traffic_of = |activity: &[f64]| -> Vec<f64> {
            chosen
                .iter()
                .map(|&(i, j)| {
                    let mut a = 0.0;
                    for dj in -2i64..=2 {
                        for di in -2i64..=2 {
                            let key = ((i as i64 + di) as usize, (j as i64 + dj) as usize);
                            if let Some(&k) = index.get(&key) {
                                a += activity[k];
                            }
                        }
                    }
                    0.2 + a / 25.0 * 4.0
                })
                .collect()
        };
        let traffic = traffic_of(&activity);

        let industrial_tiles: Vec<usize> = (0..n)
            .filter(|&t| frac(t, LandUse::Industrial) > 0.3)
            .collect();
        let mut plants = vec![false; n];
        for _ in 0..p.mix.point_sources {
            if industrial_tiles.is_empty() {
                break;
            }
            plants[industrial_tiles[rng.gen_range(0..industrial_tiles.len())]] = true;
        }
        let site = LogNormal::new(0.0, 0.8).expect("valid lognormal");
        let plant_size = LogNormal::new(p.mix.point_source.ln(), 0.7).expect("valid lognormal");
        let inventory_error = LogNormal::new(0.0, INVENTORY_LOG_SIGMA).expect("valid lognormal");

        // Raw emission of each tile, before the inventory's own spatial smearing.
        let mut raw = Vec::with_capacity(n);
        let mut intensities = Vec::with_capacity(n);
        for (t, &(i, j)) in chosen.iter().enumerate() {
            let res = sum_over(t, &|c| {
                if c.land == LandUse::Residential {
                    c.density
                } else {
                    0.0
                }
            });
            let com = activity[t];
            let ind = frac(t, LandUse::Industrial);
            let road = frac(t, LandUse::Road);
            let site_intensity = site.sample(&mut rng);
            // Scattered farms and villages heat and drive a little too.
            let rural = 0.04 * frac(t, LandUse::Farmland);
            // Buildings' energy intensity (age, insulation, coal or gas heating) varies by
            // district and is invisible from above and in POIs.
            let intensity = (1.0 * fbm(i as f64, j as f64, 4.0, s ^ 9)).exp();
            intensities.push(intensity);
            let mut e = intensity * (p.mix.residential * (res + rural) + p.mix.commercial * com)
                + p.mix.industry * ind * site_intensity
                + p.mix.road * road * traffic[t] * 8.0;
            if plants[t] {
                e += plant_size.sample(&mut rng);
            }
            // Unmodelled activity, spatially smooth (a neighbourhood's habits and economy).
            let smooth = 1.5 * fbm(i as f64, j as f64, 3.0, s ^ 8);
            e *= (p.mix.noise_sigma * smooth).exp();
            raw.push(e);
        }

        // An inventory like ODIAC is built on a 1 km grid that is not aligned with the tiles
        // and spreads emissions with night-light blooming: a tile reports a mix of its own
        // and its neighbours' emission.
        let mut tiles = Vec::with_capacity(n);
        let mut pre_error = Vec::with_capacity(n);
        for (t, &(i, j)) in chosen.iter().enumerate() {
            let mut nb = (0.0, 0usize);
            for dj in -1i64..=1 {
                for di in -1i64..=1 {
                    let key = ((i as i64 + di) as usize, (j as i64 + dj) as usize);
                    if let Some(&k) = index.get(&key).filter(|&&k| k != t) {
                        nb = (nb.0 + raw[k], nb.1 + 1);
                    }
                }
            }
            let mut e = if nb.1 > 0 {
                0.6 * raw[t] + 0.4 * nb.0 / nb.1 as f64
            } else {
                raw[t]
            };
            pre_error.push(e);
            // The inventory's own error at 1 km, which its authors put at tens of per cent
            // and more: a log-normal factor per tile.
            e *= inventory_error.sample(&mut rng);
            // Tiles that are mostly water or park, with little built, emit nothing.
            let open = frac(t, LandUse::Water) + frac(t, LandUse::Park);
            let built = frac(t, LandUse::Residential)
                + frac(t, LandUse::Commercial)
                + frac(t, LandUse::Industrial);
            if open > 0.5 && built < 0.2 && !plants[t] {
                e = 0.0;
            }
            tiles.push(Tile {
                x: frame.x0 + i as u32,
                y: frame.y0 + j as u32,
                emission: (e * 1000.0).round() / 1000.0,
            });
        }
        // Not every plant is recognisable from above (a gas turbine hall looks like a shed).
        let visible_plants: Vec<bool> = plants.iter().map(|&p| p && rng.gen_bool(0.5)).collect();

        let pois = generate_pois(p, &tiles, &cells, &plants, &mut rng);
        // The part of emission that the image determines (the v5 control's target): the same
        // sectors with every hidden factor at its median (energy intensity, vibrancy, site
        // intensity, unmodelled activity: 1), a drawn plant at the median plant size, no
        // inventory.
        let activity_seen: Vec<f64> = (0..n)
            .map(|t| {
                sum_over(t, &|c| {
                    if matches!(c.land, LandUse::Commercial | LandUse::Residential) {
                        c.density.powf(1.6)
                    } else {
                        0.0
                    }
                })
            })
            .collect();
        let traffic_seen = traffic_of(&activity_seen);
        let image_part: Vec<f64> = (0..n)
            .map(|t| {
                let res = sum_over(t, &|c| {
                    if c.land == LandUse::Residential {
                        c.density
                    } else {
                        0.0
                    }
                });
                let rural = 0.04 * frac(t, LandUse::Farmland);
                let plant = if visible_plants[t] {
                    p.mix.point_source
                } else {
                    0.0
                };
                p.mix.residential * (res + rural)
                    + p.mix.commercial * activity_seen[t]
                    + p.mix.industry * frac(t, LandUse::Industrial)
                    + p.mix.road * frac(t, LandUse::Road) * traffic_seen[t] * 8.0
                    + plant
            })
            .collect();
        let vibrancy: Vec<f64> = chosen
            .iter()
            .map(|&(i, j)| (2.0 * fbm(i as f64 + 0.5, j as f64 + 0.5, 3.0, s ^ 3)).exp())
            .collect();
        let latents = latents_v5::tile_latents(&latents_v5::Inputs {
            tiles: &tiles,
            cells: &cells,
            visible_plants: &visible_plants,
            intensity: &intensities,
            vibrancy: &vibrancy,
            raw: &raw,
            pre_error: &pre_error,
            image_part: &image_part,
            seed,
        });
        SynthCity {
            meta: synthetic_meta(p.name, p.description, GENERATOR_VERSION, seed),
            tiles,
            pois,
            cells,
            plants: visible_plants,
            roof: p.roof,
            seed,
            latents,
        }
    }

    /// Render tile `t` as an RGB image of IMAGE_SIZE px.
    pub fn render(&self, t: usize) -> Vec<u8> {
        let mut img = vec![0u8; IMAGE_SIZE * IMAGE_SIZE * 3];
        let tile = self.tiles[t];
        let s = self.seed ^ ((tile.x as u64) << 32 | tile.y as u64);
        let brightness = brightness(&tile, self.seed);
        for (k, cell) in self.cells[t].iter().enumerate() {
            let (cr, cc) = (k / CELLS, k % CELLS);
            for py in 0..PX {
                for px in 0..PX {
                    let gy = (cr * PX + py) as i64;
                    let gx = (cc * PX + px) as i64;
                    let h = hash01(gx, gy, s);
                    let rgb = pixel(
                        cell,
                        px,
                        py,
                        h,
                        hash01(cc as i64, cr as i64, s ^ 5),
                        self.roof,
                    );
                    let o = (gy as usize * IMAGE_SIZE + gx as usize) * 3;
                    for ch in 0..3 {
                        let noise = (hash01(gx * 3 + ch as i64, gy, s ^ 11) - 0.5) * 14.0;
                        img[o + ch] = (rgb[ch] as f64 * brightness + noise).clamp(0.0, 255.0) as u8;
                    }
                }
            }
        }
        if self.plants[t] {
            // Cooling towers / tanks: bright discs.
            for &(ox, oy, r) in &[(20.0, 22.0, 7.0), (42.0, 24.0, 6.0), (30.0, 44.0, 6.5)] {
                for y in 0..IMAGE_SIZE {
                    for x in 0..IMAGE_SIZE {
                        let d = ((x as f64 - ox).powi(2) + (y as f64 - oy).powi(2)).sqrt();
                        if d < r {
                            let o = (y * IMAGE_SIZE + x) * 3;
                            let shade = if d > r - 1.5 { 170 } else { 225 };
                            img[o..o + 3].copy_from_slice(&[shade, shade, shade - 5]);
                        }
                    }
                }
            }
        }
        img
    }

    /// Write the city as a dataset directory (format v1) with its latents beside it.
    pub fn write(&self, dir: &Path) -> Result<()> {
        CityDataset::write(dir, &self.meta, &self.tiles, &self.pois, |t| {
            super::raster::encode_png(&self.render(t), IMAGE_SIZE, IMAGE_SIZE)
        })?;
        self.latents.write(dir)
    }
}

/// dataset.yaml of a generated city: its preset, generator version, seed and story.
fn synthetic_meta(name: &str, description: &str, version: u32, seed: u64) -> DatasetMeta {
    DatasetMeta {
        format: FORMAT_TAG.into(),
        name: name.into(),
        zoom: ZOOM,
        target: TargetMeta {
            name: "co2".into(),
            unit: "t CO2 / year".into(),
        },
        poi_categories: POI_CATEGORIES.iter().map(|s| s.to_string()).collect(),
        source: Some(format!(
            "opencarbon synthetic benchmark city `{name}` (generator v{version}, seed {seed}): {description}"
        )),
    }
}

/// Imaging conditions vary from tile to tile (haze, sun angle): v5's one acquisition parameter.
fn brightness(tile: &Tile, seed: u64) -> f64 {
    1.0 + 0.03 * (hash01(tile.x as i64, tile.y as i64, seed ^ 99) - 0.5) * 2.0
}

fn hash_name(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Generate a preset city into `out` through a temporary sibling renamed at the end
/// (`track::write_dir_atomically`), so a killed generation leaves no half-written dataset.
pub fn write_preset_atomically(
    name: &str,
    seed: u64,
    tiles: Option<usize>,
    out: &Path,
) -> Result<()> {
    crate::track::write_dir_atomically(out, |tmp| write_preset(name, seed, tiles, tmp))
}

/// The dataset directory of a preset in the cache, generating it on first use.
pub fn ensure_preset(cache_root: &Path, name: &str, seed: u64) -> Result<std::path::PathBuf> {
    let version = generator_of(name).ok_or_else(|| {
        Error::Usage(format!(
            "unknown preset `{name}`, expected one of {}",
            preset_names().join(", ")
        ))
    })?;
    let dir = cache_root
        .join("cities")
        .join(format!("{name}-s{seed}-v{version}"));
    if dir.join("dataset.yaml").is_file() {
        if !crate::data::latents::latents_path(&dir).is_file() {
            // Cached before cities wrote their latents: the generator is deterministic, so
            // the latents are added beside the unchanged dataset.
            if let Some(p) = preset(name) {
                SynthCity::generate(&p, seed).latents.write(&dir)?;
            }
        }
        return Ok(dir);
    }
    let cities = cache_root.join("cities");
    // Generations killed earlier on this host leave temp directories; they go first.
    crate::track::remove_dead_temps(&cities)?;
    let tmp = crate::track::temp_path(&cities.join(format!(".{name}-s{seed}")));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    write_preset(name, seed, None, &tmp)?;
    crate::track::fault::point("rename generated city into the cache");
    if dir.exists() && !dir.join("dataset.yaml").is_file() {
        // Not a dataset (left by something else): make room.
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir),
        // Another process (a parallel shard) generated the same city first: the generator is
        // deterministic, so its copy is ours; never replace a directory others may be reading.
        Err(_) if dir.join("dataset.yaml").is_file() => {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
            Ok(dir)
        }
        Err(e) => Err(Error::io(&dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::graph::morans_i;
    use crate::data::grid::TileGrid;

    #[test]
    fn same_seed_same_city_other_seed_other_city() {
        let p = preset("tiny").unwrap();
        let a = SynthCity::generate(&p, 4);
        let b = SynthCity::generate(&p, 4);
        assert_eq!(a.tiles, b.tiles);
        assert_eq!(a.pois, b.pois);
        assert_eq!(a.render(10), b.render(10));
        assert_ne!(SynthCity::generate(&p, 5).tiles, a.tiles);
    }

    #[test]
    fn presets_have_the_papers_sizes_and_realistic_statistics() {
        for (name, tiles) in [("london", 1300), ("beijing", 1560), ("yinchuan", 540)] {
            let c = SynthCity::generate(&preset(name).unwrap(), 0);
            assert_eq!(c.tiles.len(), tiles, "{name}");
            let grid = TileGrid::new(&c.tiles);
            let log_e: Vec<Option<f64>> = c
                .tiles
                .iter()
                .map(|t| t.is_target().then(|| t.emission.ln()))
                .collect();
            let graph = crate::data::TileGraph::build(&grid, crate::data::Contiguity::Queen);
            let i = morans_i(&graph, &log_e).unwrap();
            assert!((0.5..=0.85).contains(&i), "{name}: Moran's I {i}");
            let mut e: Vec<f64> = c
                .tiles
                .iter()
                .filter(|t| t.is_target())
                .map(|t| t.emission)
                .collect();
            e.sort_by(f64::total_cmp);
            // Heavy tail: the largest tile (a point source) dwarfs the median.
            assert!(e[e.len() - 1] > 10.0 * e[e.len() / 2], "{name}");
            assert!(!c.pois.is_empty());
        }
    }
}

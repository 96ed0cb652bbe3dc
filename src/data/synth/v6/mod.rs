//! Generator v6: synthetic cities whose emission drivers live in image structure.
//!
//! A city is a vector scene over its whole frame (streets with a hierarchy, blocks, buildings
//! by typology, trees, facilities), rendered once per tile at 256 px, so structure crosses tile
//! borders as it does in reality. Emission comes from physical drivers (floor area × heat
//! intensity × fuel factor, road length × traffic × vehicle factor, facility capacity), then an
//! ODIAC-like inventory reports it. What the image shows (footprints, heights through shadows,
//! roads) and what POIs show (uses, occupancy) are complementary; roof colours, sun, haze and
//! season are nuisance drawn per acquisition strip. The story and every constant's source are
//! in docs/synthetic-cities.md and docs/v6-sources.md; the latents beside the data
//! (`latents.csv`) are read only by the oracle.

mod buildings;
mod emission;
mod facilities;
mod geometry;
mod pois;
pub mod presets;
mod render;
mod roads;
#[cfg(test)]
mod tests;

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use rayon::prelude::*;

use super::{hash01, hash_name, synthetic_meta, value_noise, Frame, Preset, Site, ZOOM};
use crate::data::format::{CityDataset, DatasetMeta, PoiRecord, Tile};
use crate::data::latents::{self, Latents};
use crate::error::Result;
use buildings::Built;
use presets::{RoadClass, Use};
use roads::Roads;

pub use presets::{preset, presets, Preset6};
pub use render::Acquisition;

pub const GENERATOR_VERSION: u32 = 6;
/// Tiles are written at 256 px (what a GPU run reads); an experiment's image_size picks what
/// a model sees.
pub const IMAGE_PX: usize = 256;
/// Ground-cover samples per tile edge (about 24-30 m), looked up with a dithered offset.
const GROUND: usize = 32;
/// Sources of the sampled betweenness.
const BETWEENNESS_SOURCES: usize = 64;
/// Lowest sun elevation (degrees) of any acquisition: it bounds how far a shadow reaches.
const MIN_SUN_ELEVATION: f64 = 18.0;

/// Where the city lies: the frame's size in metres and the story's smooth fields.
pub struct World {
    pub tile_m: f64,
    pub width_m: f64,
    pub height_m: f64,
    pub frame_w: usize,
    pub frame_h: usize,
    frame: Frame,
    story: Preset,
    s: u64,
}

impl World {
    fn new(story: &Preset, frame: Frame, s: u64) -> World {
        // Ground width of a zoom-15 tile at the city's latitude.
        let tile_m = 40_075_016.686 * story.lat.to_radians().cos() / (1u64 << ZOOM) as f64;
        World {
            tile_m,
            width_m: frame.w as f64 * tile_m,
            height_m: frame.h as f64 * tile_m,
            frame_w: frame.w,
            frame_h: frame.h,
            frame,
            story: story.clone(),
            s,
        }
    }

    fn site_m(&self, x: f64, y: f64) -> Site {
        Site::at(
            &self.story,
            &self.frame,
            self.s,
            x / self.tile_m,
            y / self.tile_m,
        )
    }

    /// Below this built density the land is farmland (v5's threshold, with its noise).
    fn farm_density(&self, q: [f64; 2]) -> f64 {
        let (gx, gy) = (q[0] / self.tile_m, q[1] / self.tile_m);
        0.14 + 0.08 * value_noise(gx * 3.0, gy * 3.0, self.s ^ 7)
    }

    /// The dense core where offices stand (v5's commercial zoning: density, not vibrancy).
    fn commercial_core(&self, q: [f64; 2], density: f64) -> bool {
        let (gx, gy) = (q[0] / self.tile_m, q[1] / self.tile_m);
        density + 0.15 * value_noise(gx * 2.0, gy * 2.0, self.s ^ 10) > 0.8
    }

    fn in_frame(&self, q: [f64; 2]) -> bool {
        q[0] >= 0.0 && q[1] >= 0.0 && q[0] < self.width_m && q[1] < self.height_m
    }

    /// The frame tile (row-major index) holding a point.
    fn frame_tile_of(&self, q: [f64; 2]) -> Option<usize> {
        self.in_frame(q)
            .then(|| (q[1] / self.tile_m) as usize * self.frame_w + (q[0] / self.tile_m) as usize)
    }

    /// Slippy-map tile coordinates (fractional) of a point.
    fn tile_coordinates(&self, q: [f64; 2]) -> (f64, f64) {
        (
            self.frame.x0 as f64 + q[0] / self.tile_m,
            self.frame.y0 as f64 + q[1] / self.tile_m,
        )
    }
}

/// What covers the ground where no lot, road or building is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ground {
    Water,
    Park,
    Farmland,
    Urban,
}

/// The objects that can show in one frame tile (shadows included).
#[derive(Default, Clone)]
pub struct TileObjects {
    pub buildings: Vec<usize>,
    pub lots: Vec<usize>,
    pub trees: Vec<usize>,
    pub roads: Vec<usize>,
    pub facilities: Vec<usize>,
}

pub struct Scene {
    pub world: World,
    pub roads: Roads,
    pub built: Built,
    pub index: Vec<TileObjects>,
    ground: Vec<Ground>,
}

impl Scene {
    fn ground_at(&self, q: [f64; 2], seed: u64) -> Ground {
        let step = self.world.tile_m / GROUND as f64;
        // A dithered lookup: edges between covers are ragged, not blocky.
        let jx = hash01((q[0] * 2.0) as i64, (q[1] * 2.0) as i64, seed ^ 0xC1) - 0.5;
        let jy = hash01((q[0] * 2.0) as i64, (q[1] * 2.0) as i64, seed ^ 0xC2) - 0.5;
        let (gw, gh) = (self.world.frame_w * GROUND, self.world.frame_h * GROUND);
        let i = ((q[0] / step + jx).floor().max(0.0) as usize).min(gw - 1);
        let j = ((q[1] / step + jy).floor().max(0.0) as usize).min(gh - 1);
        self.ground[j * gw + i]
    }
}

pub struct City {
    pub meta: DatasetMeta,
    pub tiles: Vec<Tile>,
    pub pois: Vec<PoiRecord>,
    pub latents: Latents,
    pub acquisitions: Vec<Acquisition>,
    /// Per tile: its acquisition (strip) and its place in the frame.
    pub tile_strip: Vec<usize>,
    tile_ij: Vec<(usize, usize)>,
    preset: Preset6,
    scene: Scene,
    seed: u64,
}

/// Draw one strip's acquisition: a morning pass of a sun-synchronous satellite (sun in the
/// south-east) outside midsummer, so shadows are long enough to read at 64 px.
fn draw_acquisition(rng: &mut ChaCha8Rng) -> Acquisition {
    let season = rng.gen::<f64>();
    Acquisition {
        sun_azimuth_deg: rng.gen_range(120.0..165.0),
        sun_elevation_deg: MIN_SUN_ELEVATION + 14.0 * season + rng.gen_range(0.0..4.0),
        gain: rng.gen_range(0.85..1.15),
        offset: rng.gen_range(-0.04..0.04),
        gamma: rng.gen_range(0.85..1.15),
        haze: rng.gen_range(0.0..0.25),
        white_balance_red: rng.gen_range(0.9..1.1),
        white_balance_blue: rng.gen_range(0.9..1.1),
        season,
    }
}

/// Strips: the basemaps that tiles are cut from are mosaics pieced from many passes; here a
/// piece is 2×2 tiles (about 1.5-1.9 km square), staggered between columns. Larger pieces make
/// a piece's conditions correlate with emission by chance in a city of a few hundred tiles
/// (development seed 100: pieces of 2×8 tiles gave yinchuan6 a |Spearman| of 0.27 between
/// gain and ln emission), which the data must not carry.
fn strip_key(i: usize, j: usize) -> (usize, usize) {
    let col = i / 2;
    (col, (j + col % 2) / 2)
}

impl City {
    pub fn generate(p: &Preset6, seed: u64) -> City {
        Self::generate_with(p, seed, &p.factors)
    }

    /// Generate with other emission factors (the test that emission constants leave the
    /// scene, the acquisitions and the images untouched).
    pub fn generate_with(p: &Preset6, seed: u64, factors: &presets::EmissionFactors) -> City {
        let mut master = ChaCha8Rng::seed_from_u64(seed ^ 0x6EED_0000 ^ hash_name(p.name));
        let s: u64 = master.gen();
        let stream = |k: u64| ChaCha8Rng::seed_from_u64(s ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let (frame, chosen) = Frame::of_city(&p.story, s);
        let world = World::new(&p.story, frame, s);
        let mut roads = Roads::build(p, &world, s);
        let built = buildings::build(p, &world, &roads, &mut stream(1), s);

        // Traffic: betweenness on the network and the floor area each road serves.
        let city_tiles: std::collections::HashSet<(usize, usize)> =
            chosen.iter().copied().collect();
        let in_city = |q: [f64; 2]| {
            world.in_frame(q)
                && city_tiles.contains(&(
                    (q[0] / world.tile_m) as usize,
                    (q[1] / world.tile_m) as usize,
                ))
        };
        let inside: Vec<bool> = roads.nodes.iter().map(|&q| in_city(q)).collect();
        let between = roads.betweenness(&inside, BETWEENNESS_SOURCES, &mut stream(2));
        let mut floor = vec![0.0; world.frame_w * world.frame_h];
        for b in &built.buildings {
            if let Some(t) = world.frame_tile_of(b.footprint.c) {
                floor[t] += b.floor_by_use().iter().map(|f| f.1).sum::<f64>();
            }
        }
        let served: Vec<f64> = roads
            .edges
            .iter()
            .map(|e| {
                let (pa, pb) = (roads.nodes[e.a], roads.nodes[e.b]);
                let (ti, tj) = (
                    ((pa[0] + pb[0]) / 2.0 / world.tile_m).floor() as i64,
                    ((pa[1] + pb[1]) / 2.0 / world.tile_m).floor() as i64,
                );
                let mut sum = 0.0;
                for dj in -1..=1 {
                    for di in -1..=1 {
                        let (i, j) = (ti + di, tj + dj);
                        if i >= 0
                            && j >= 0
                            && (i as usize) < world.frame_w
                            && (j as usize) < world.frame_h
                        {
                            sum += floor[j as usize * world.frame_w + i as usize];
                        }
                    }
                }
                sum
            })
            .collect();
        let edge_in_city: Vec<bool> = roads
            .edges
            .iter()
            .map(|e| {
                let (pa, pb) = (roads.nodes[e.a], roads.nodes[e.b]);
                in_city([(pa[0] + pb[0]) / 2.0, (pa[1] + pb[1]) / 2.0])
            })
            .collect();
        roads::assign_traffic(&mut roads, &between, &served, &edge_in_city, &factors.aadt);

        // Emission and the inventory.
        let mut inventory_rng = stream(3);
        let origin = [
            inventory_rng.gen_range(0.0..p.inventory.grid_m),
            inventory_rng.gen_range(0.0..p.inventory.grid_m),
        ];
        let em = emission::tile_emission(
            &world,
            &built,
            &roads,
            factors,
            &p.inventory,
            p.coal_share.0,
            origin,
        );
        let error = LogNormal::new(0.0, p.inventory.log_sigma).expect("valid lognormal");
        let tiles: Vec<Tile> = chosen
            .iter()
            .map(|&(i, j)| {
                let e = em.pre_error[j * world.frame_w + i] * error.sample(&mut inventory_rng);
                Tile {
                    x: world.frame.x0 + i as u32,
                    y: world.frame.y0 + j as u32,
                    emission: (e * 1000.0).round() / 1000.0,
                }
            })
            .collect();

        // Acquisitions: one per strip, in the order strips first appear.
        let mut acq_rng = stream(4);
        let mut strips: std::collections::BTreeMap<(usize, usize), usize> = Default::default();
        let mut acquisitions = Vec::new();
        let tile_strip: Vec<usize> = chosen
            .iter()
            .map(|&(i, j)| {
                *strips.entry(strip_key(i, j)).or_insert_with(|| {
                    acquisitions.push(draw_acquisition(&mut acq_rng));
                    acquisitions.len() - 1
                })
            })
            .collect();

        let pois = pois::generate(p, &world, &built, &roads, in_city, &mut stream(5));
        let ground = ground_cover(&world);
        let index = index_objects(&world, &roads, &built);
        let scene = Scene {
            world,
            roads,
            built,
            index,
            ground,
        };
        let latents = tile_latents(&scene, &chosen, &tiles, &em, &acquisitions, &tile_strip);
        City {
            meta: synthetic_meta(p.name, p.description, GENERATOR_VERSION, seed),
            tiles,
            pois,
            latents,
            acquisitions,
            tile_strip,
            tile_ij: chosen,
            preset: p.clone(),
            scene,
            seed,
        }
    }

    /// Write the city as a dataset directory (format v1) with its latents beside it. Tiles are
    /// rendered and encoded in parallel, a chunk at a time.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let chunk = 64;
        let mut cache: Vec<Option<Vec<u8>>> = Vec::new();
        let mut first = 0;
        CityDataset::write(dir, &self.meta, &self.tiles, &self.pois, |t| {
            if t < first || t >= first + cache.len() {
                first = t;
                let end = (t + chunk).min(self.tiles.len());
                cache = (t..end)
                    .into_par_iter()
                    .map(|k| {
                        super::super::raster::encode_png(&self.render(k), IMAGE_PX, IMAGE_PX)
                            .map(Some)
                    })
                    .collect::<Result<Vec<_>>>()?;
            }
            Ok(cache[t - first].take().expect("each tile encoded once"))
        })?;
        self.latents.write(dir)
    }
}

/// Ground cover on a grid of GROUND samples per tile edge, from the story's fields.
fn ground_cover(world: &World) -> Vec<Ground> {
    let (gw, gh) = (world.frame_w * GROUND, world.frame_h * GROUND);
    let step = world.tile_m / GROUND as f64;
    (0..gh)
        .into_par_iter()
        .flat_map_iter(|j| {
            (0..gw).map(move |i| {
                let q = [(i as f64 + 0.5) * step, (j as f64 + 0.5) * step];
                let site = world.site_m(q[0], q[1]);
                if site.water {
                    Ground::Water
                } else if site.park {
                    Ground::Park
                } else if site.density < world.farm_density(q) {
                    Ground::Farmland
                } else {
                    Ground::Urban
                }
            })
        })
        .collect()
}

/// Which objects can show in which frame tile: each object's bounding box (a building's grown
/// by its longest shadow) marks the tiles it overlaps.
fn index_objects(world: &World, roads: &Roads, built: &Built) -> Vec<TileObjects> {
    let mut index = vec![TileObjects::default(); world.frame_w * world.frame_h];
    let reach = 1.0 / MIN_SUN_ELEVATION.to_radians().tan();
    let mut mark = |c: [f64; 2], half: [f64; 2], push: &mut dyn FnMut(&mut TileObjects)| {
        let t = world.tile_m;
        let (i0, i1) = (
            ((c[0] - half[0]) / t).floor(),
            ((c[0] + half[0]) / t).floor(),
        );
        let (j0, j1) = (
            ((c[1] - half[1]) / t).floor(),
            ((c[1] + half[1]) / t).floor(),
        );
        for j in (j0.max(0.0) as usize)..=(j1.max(0.0) as usize).min(world.frame_h - 1) {
            for i in (i0.max(0.0) as usize)..=(i1.max(0.0) as usize).min(world.frame_w - 1) {
                push(&mut index[j * world.frame_w + i]);
            }
        }
    };
    for (k, b) in built.buildings.iter().enumerate() {
        let h = b.footprint.bbox_half();
        let shadow = b.height_m * reach;
        mark(b.footprint.c, [h[0] + shadow, h[1] + shadow], &mut |o| {
            o.buildings.push(k)
        });
    }
    for (k, l) in built.lots.iter().enumerate() {
        mark(l.area.c, l.area.bbox_half(), &mut |o| o.lots.push(k));
    }
    for (k, tr) in built.trees.iter().enumerate() {
        mark(tr.c, [tr.r, tr.r], &mut |o| o.trees.push(k));
    }
    for (k, e) in roads.edges.iter().enumerate() {
        let (p, q) = (roads.nodes[e.a], roads.nodes[e.b]);
        let w = e.class.width_m();
        let c = [(p[0] + q[0]) / 2.0, (p[1] + q[1]) / 2.0];
        let half = [(p[0] - q[0]).abs() / 2.0 + w, (p[1] - q[1]).abs() / 2.0 + w];
        mark(c, half, &mut |o| o.roads.push(k));
    }
    for (k, f) in built.facilities.iter().enumerate() {
        let stack = f.stacks[..f.stack_count]
            .iter()
            .map(|s| s.2)
            .fold(0.0, f64::max)
            * reach
            + 100.0;
        mark(f.c, [stack, stack], &mut |o| o.facilities.push(k));
    }
    index
}

/// The true per-tile aggregates that only the oracle and the ladder read.
fn tile_latents(
    scene: &Scene,
    chosen: &[(usize, usize)],
    tiles: &[Tile],
    em: &emission::TileEmission,
    acquisitions: &[Acquisition],
    tile_strip: &[usize],
) -> Latents {
    let world = &scene.world;
    let n = world.frame_w * world.frame_h;
    let mut floor = vec![[0.0f64; 6]; n];
    // Floor-area-weighted sums of the hidden fields (occupancy over non-domestic floors, where
    // it acts), and the two weights.
    let mut hidden = vec![[0.0f64; 6]; n];
    for b in &scene.built.buildings {
        let Some(t) = world.frame_tile_of(b.footprint.c) else {
            continue;
        };
        let (mut area, mut non_domestic) = (0.0, 0.0);
        for (u, a) in b.floor_by_use() {
            floor[t][u.index()] += a;
            area += a;
            if u != Use::Residential {
                non_domestic += a;
            }
        }
        for (k, v) in [b.age_years, b.insulation, b.coal_share].iter().enumerate() {
            hidden[t][k] += v * area;
        }
        hidden[t][3] += b.occupancy * non_domestic;
        hidden[t][4] += area;
        hidden[t][5] += non_domestic;
    }
    let mut traffic = vec![[0.0f64; 4]; n];
    for (k, e) in scene.roads.edges.iter().enumerate() {
        scene.roads.along(k, 5.0, |x, y, m| {
            if let Some(t) = world.frame_tile_of([x, y]) {
                traffic[t][e.class.index()] += m / 1000.0 * e.aadt;
            }
        });
    }
    // Plants (electric MW) and process sites (fuel MW), which the image tells apart.
    let mut capacity = vec![[0.0f64; 2]; n];
    for f in &scene.built.facilities {
        if let Some(t) = world.frame_tile_of(f.c) {
            capacity[t][f.process as usize] += f.capacity_mw;
        }
    }
    let mut columns: Vec<String> = Vec::new();
    columns.extend(Use::ALL.iter().map(|u| format!("floor_{}_m2", u.name())));
    columns.extend(
        RoadClass::ALL
            .iter()
            .map(|c| format!("traffic_{}_vkm", c.name())),
    );
    columns.push("facility_plant_mw".into());
    columns.push("facility_process_mw".into());
    columns.extend(latents::HIDDEN_V6.iter().map(|s| s.to_string()));
    columns.push(latents::ACQ_STRIP.into());
    columns.extend(latents::NUISANCE_V6.iter().map(|s| s.to_string()));
    columns.push(latents::LOG_EMISSION_PHYSICAL.into());
    columns.push(latents::LOG_EMISSION_PRE_ERROR.into());
    let ln = |v: f64| if v > 0.0 { v.ln() } else { f64::NAN };
    let rows = chosen
        .iter()
        .enumerate()
        .map(|(k, &(i, j))| {
            let t = j * world.frame_w + i;
            let mut row: Vec<f64> = floor[t].to_vec();
            row.extend(traffic[t]);
            row.extend(capacity[t]);
            let mean = |sum: f64, w: f64| if w > 0.0 { sum / w } else { f64::NAN };
            row.extend((0..3).map(|h| mean(hidden[t][h], hidden[t][4])));
            row.push(mean(hidden[t][3], hidden[t][5]));
            let a = &acquisitions[tile_strip[k]];
            row.push(tile_strip[k] as f64);
            row.extend([
                a.sun_azimuth_deg,
                a.sun_elevation_deg,
                a.gain,
                a.offset,
                a.gamma,
                a.haze,
                a.white_balance_red,
                a.white_balance_blue,
                a.season,
            ]);
            row.push(ln(em.non_point[t] + em.facilities[t]));
            row.push(ln(em.pre_error[t]));
            row
        })
        .collect();
    Latents {
        columns,
        xy: tiles.iter().map(|t| (t.x, t.y)).collect(),
        rows,
    }
}

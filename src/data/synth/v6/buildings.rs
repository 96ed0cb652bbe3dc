//! Blocks, parcels and buildings of a v6 city. Each lattice cell between four street nodes is
//! a block; its use follows the city's fields (water, parks, industrial zones, farmland, the
//! dense core) and its built density picks a typology. Buildings face their street, take their
//! storeys from typology and district, and carry hidden district fields (age, insulation,
//! heating fuel, occupancy) that no roof shows.

use rand_chacha::ChaCha8Rng;

use super::super::{fbm, hash01};
use super::facilities::{place_facilities, Facility};
pub use super::geometry::Rect;
use super::presets::{Preset6, RoadClass, Typology, Use};
use super::roads::Roads;
use super::World;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Building {
    pub footprint: Rect,
    pub typology: Typology,
    pub storeys: u32,
    pub height_m: f64,
    /// Index into the city's roof palette (drawn independently of use and height).
    pub roof: u8,
    /// Residential slabs and towers on busy streets have shops on the ground floor.
    pub ground_floor_retail: bool,
    /// The block (lattice cell) the building stands in: a compound, an estate, a site.
    pub block: u32,
    // Hidden district fields at the building.
    pub age_years: f64,
    pub insulation: f64,
    pub coal_share: f64,
    pub occupancy: f64,
}

impl Building {
    /// Floor area (m²) by use.
    pub fn floor_by_use(&self) -> Vec<(Use, f64)> {
        let fp = self.footprint.area();
        let floors = self.storeys as f64;
        match self.typology {
            Typology::Detached | Typology::Terrace | Typology::Slab | Typology::Tower => {
                if self.ground_floor_retail {
                    vec![(Use::Retail, fp), (Use::Residential, fp * (floors - 1.0))]
                } else {
                    vec![(Use::Residential, fp * floors)]
                }
            }
            Typology::OfficeTower | Typology::OfficeBlock => vec![(Use::Office, fp * floors)],
            Typology::RetailBox => vec![(Use::Retail, fp * floors)],
            Typology::Warehouse => vec![(Use::Warehouse, fp * floors)],
            Typology::Factory | Typology::HeavyIndustry => vec![(Use::Industry, fp * floors)],
            Typology::School => vec![(Use::Education, fp * floors)],
            Typology::Barn => vec![(Use::Warehouse, fp)],
        }
    }

    pub fn pitched(&self) -> bool {
        matches!(
            self.typology,
            Typology::Detached | Typology::Terrace | Typology::Barn
        )
    }
}

/// What covers the ground of a block between its buildings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Garden,
    Paved,
    Yard,
    CarPark,
    SportsField,
    Grass,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lot {
    pub area: Rect,
    pub surface: Surface,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tree {
    pub c: [f64; 2],
    pub r: f64,
}

#[derive(Default)]
pub struct Built {
    pub buildings: Vec<Building>,
    pub lots: Vec<Lot>,
    pub trees: Vec<Tree>,
    pub facilities: Vec<Facility>,
}

/// The hidden district fields at a point: age (years), insulation factor, coal share,
/// occupancy factor. Smooth over a few tiles, independent of what the image shows except
/// through the density-dependent age gradient.
fn district(p: &Preset6, world: &World, q: [f64; 2], density: f64, seed: u64) -> [f64; 4] {
    let (gx, gy) = (q[0] / world.tile_m, q[1] / world.tile_m);
    let (centre_age, edge_age) = p.age_years;
    let age = (edge_age + (centre_age - edge_age) * density)
        * (0.6 * fbm(gx, gy, 3.0, seed ^ 0x41)).exp();
    let insulation = (0.2 * fbm(gx, gy, 2.0, seed ^ 0x42)).exp();
    let (coal_mean, coal_spread) = p.coal_share;
    let coal = (coal_mean + coal_spread * 2.0 * fbm(gx, gy, 4.0, seed ^ 0x43)).clamp(0.0, 1.0);
    let occupancy = (0.5 * fbm(gx, gy, 1.5, seed ^ 0x44)).exp();
    [age, insulation, coal, occupancy]
}

struct Block {
    usable: Rect,
    density: f64,
    /// The district's height regime in [0, 1] (planning: conservation areas low, regeneration
    /// and business districts high), independent of density: how tall, not how much ground.
    regime: f64,
    /// The district's greenery in [0, 1] (gardens, courtyards and street trees), independent of
    /// density and use.
    greenery: f64,
    /// Whether a busy street (arterial or collector) bounds the block.
    busy_frontage: bool,
    key: (i64, i64),
}

fn range_u32(lo: u32, hi: u32, t: f64) -> u32 {
    lo + ((hi - lo + 1) as f64 * t.clamp(0.0, 0.999)).floor() as u32
}

/// Place every block's buildings, lots and trees, then the facilities.
pub fn build(p: &Preset6, world: &World, roads: &Roads, rng: &mut ChaCha8Rng, seed: u64) -> Built {
    let mut out = Built::default();
    let (nx, ny) = roads.lattice;
    let motorway_crosses = roads.motorway_crossing();
    let mut heavy_blocks = Vec::new();
    for b in 0..ny - 1 {
        for a in 0..nx - 1 {
            let q = [
                roads.lattice_node(a, b),
                roads.lattice_node(a + 1, b),
                roads.lattice_node(a + 1, b + 1),
                roads.lattice_node(a, b + 1),
            ];
            let c = [
                (q[0][0] + q[1][0] + q[2][0] + q[3][0]) / 4.0,
                (q[0][1] + q[1][1] + q[2][1] + q[3][1]) / 4.0,
            ];
            if !world.in_frame(c) {
                continue;
            }
            let dir = [
                (q[1][0] - q[0][0] + q[2][0] - q[3][0]) / 2.0,
                (q[1][1] - q[0][1] + q[2][1] - q[3][1]) / 2.0,
            ];
            let lu = (dir[0] * dir[0] + dir[1] * dir[1]).sqrt();
            let lv = {
                let d = [
                    (q[3][0] - q[0][0] + q[2][0] - q[1][0]) / 2.0,
                    (q[3][1] - q[0][1] + q[2][1] - q[1][1]) / 2.0,
                ];
                (d[0] * d[0] + d[1] * d[1]).sqrt()
            };
            let classes = [
                Roads::line_class(p, b),
                Roads::line_class(p, b + 1),
                Roads::line_class(p, a),
                Roads::line_class(p, a + 1),
            ];
            let inset = classes.iter().map(|c| c.width_m()).fold(0.0, f64::max) / 2.0 + 3.0;
            let half = [(lu / 2.0 - inset).max(0.0), (lv / 2.0 - inset).max(0.0)];
            if half[0] < 10.0 || half[1] < 10.0 {
                continue;
            }
            let usable = Rect {
                c,
                axis: [dir[0] / lu, dir[1] / lu],
                half,
            };
            if motorway_crosses(&usable) {
                continue;
            }
            let site = world.site_m(c[0], c[1]);
            let (gx, gy) = (c[0] / world.tile_m, c[1] / world.tile_m);
            let block = Block {
                usable,
                density: site.density,
                regime: 0.5 + 0.5 * fbm(gx, gy, 3.0, seed ^ 0x45),
                greenery: 0.5 + 0.5 * fbm(gx, gy, 2.5, seed ^ 0x46),
                busy_frontage: classes.iter().any(|c| *c != RoadClass::Local),
                key: (a as i64, b as i64),
            };
            let h = |salt: u64| hash01(a as i64, b as i64, seed ^ salt);
            let ctx = Ctx {
                p,
                world,
                seed,
                block: (b * nx + a) as u32,
            };
            if site.water {
                continue;
            } else if site.industrial_zone && site.density > 0.08 {
                let t = h(0x51);
                let typology = if t < 0.4 {
                    Typology::Warehouse
                } else if t < 0.8 {
                    Typology::Factory
                } else {
                    Typology::HeavyIndustry
                };
                if typology == Typology::HeavyIndustry {
                    heavy_blocks.push(out.lots.len());
                }
                industrial(&ctx, &block, typology, &mut out);
            } else if site.park {
                park(&block, &mut out, seed);
            } else if site.density < world.farm_density(c) {
                if h(0x52) < 0.06 {
                    farmstead(&ctx, &block, &mut out);
                }
            } else if world.commercial_core(c, site.density) {
                offices(&ctx, &block, &mut out);
            } else if h(0x53) < 0.035 {
                school(&ctx, &block, &mut out);
            } else if block.busy_frontage && (0.25..0.6).contains(&site.density) && h(0x54) < 0.05 {
                retail_box(&ctx, &block, &mut out);
            } else {
                housing(&ctx, &block, &mut out);
            }
        }
    }
    let heavy: Vec<Rect> = heavy_blocks.iter().map(|&k| out.lots[k].area).collect();
    out.facilities = place_facilities(p, &heavy, rng);
    out
}

/// What every placement needs: the preset, the world and the city's seed.
struct Ctx<'a> {
    p: &'a Preset6,
    world: &'a World,
    seed: u64,
    block: u32,
}

/// Add a building with the district fields of its centre.
fn add(
    ctx: &Ctx,
    out: &mut Built,
    footprint: Rect,
    typology: Typology,
    storeys: u32,
    floor_m: f64,
    retail: bool,
) {
    let (p, world, seed) = (ctx.p, ctx.world, ctx.seed);
    let density = world.site_m(footprint.c[0], footprint.c[1]).density;
    let [age_years, insulation, coal_share, occupancy] =
        district(p, world, footprint.c, density, seed);
    let key = (footprint.c[0] * 10.0) as i64;
    let roof =
        (hash01(key, (footprint.c[1] * 10.0) as i64, seed ^ 0x61) * p.roofs.len() as f64) as u8;
    out.buildings.push(Building {
        footprint,
        typology,
        storeys,
        height_m: storeys as f64 * floor_m,
        roof: roof.min(p.roofs.len() as u8 - 1),
        ground_floor_retail: retail,
        block: ctx.block,
        age_years,
        insulation,
        coal_share,
        occupancy,
    });
}

fn park(block: &Block, out: &mut Built, seed: u64) {
    let u = &block.usable;
    out.lots.push(Lot {
        area: *u,
        surface: Surface::Grass,
    });
    // About one tree per 250 m², in clumps.
    let n = (u.area() / 250.0) as usize;
    for k in 0..n {
        let h = |s: u64| hash01(block.key.0 * 7919 + k as i64, block.key.1, seed ^ s);
        let (along, across) = (
            (2.0 * h(1) - 1.0) * u.half[0],
            (2.0 * h(2) - 1.0) * u.half[1],
        );
        let q = u.at(along, across);
        if fbm(q[0] / 60.0, q[1] / 60.0, 1.0, seed ^ 0x71) > -0.1 {
            out.trees.push(Tree {
                c: q,
                r: 3.0 + 3.0 * h(3),
            });
        }
    }
}

/// Houses, terraces, slabs or towers by density; gardens and street trees.
fn housing(ctx: &Ctx, block: &Block, out: &mut Built) {
    let (p, seed) = (ctx.p, ctx.seed);
    let hs = &p.housing;
    let u = block.usable;
    let d = block.density;
    let h = |s: u64| hash01(block.key.0, block.key.1, seed ^ s);
    let mixed = block.busy_frontage && d > 0.5;
    if d < hs.detached || (d < hs.low && hs.terraces) {
        let detached = d < hs.detached;
        out.lots.push(Lot {
            area: u,
            surface: Surface::Garden,
        });
        let depth = if detached { 9.0 } else { 9.5 };
        let setback = if detached { 6.0 } else { 3.0 };
        let rows: &[f64] = if u.half[1] > depth + setback + 8.0 {
            &[-1.0, 1.0]
        } else {
            &[-1.0]
        };
        for &side in rows {
            let across = side * (u.half[1] - setback - depth / 2.0);
            if detached {
                let plot = 15.0;
                let n = ((2.0 * u.half[0]) / plot).floor() as usize;
                for k in 0..n {
                    let along = -u.half[0] + plot * (k as f64 + 0.5);
                    let fp = u.sub(along, across, [5.0, depth / 2.0]);
                    add(
                        ctx,
                        out,
                        fp,
                        Typology::Detached,
                        2,
                        p.housing.floor_m,
                        false,
                    );
                    // A tree in the back garden, often.
                    if hash01(block.key.0 * 131 + k as i64, block.key.1, seed ^ 0x72)
                        < 0.2 + 0.7 * block.greenery
                    {
                        let back = across - side * (depth / 2.0 + 5.0);
                        out.trees.push(Tree {
                            c: u.at(along + 3.0, back),
                            r: 3.0 + 2.5 * h(0x73),
                        });
                    }
                }
            } else {
                // Terraces in runs of up to 60 m with passages between.
                let run = 60.0;
                let n = ((2.0 * u.half[0] + 4.0) / (run + 4.0)).ceil().max(1.0) as usize;
                let len = (2.0 * u.half[0] - 4.0 * (n as f64 - 1.0)) / n as f64;
                let storeys = 2 + (h(0x74) < d) as u32;
                for k in 0..n {
                    let along = -u.half[0] + len / 2.0 + k as f64 * (len + 4.0);
                    let fp = u.sub(along, across, [len / 2.0, depth / 2.0]);
                    add(
                        ctx,
                        out,
                        fp,
                        Typology::Terrace,
                        storeys,
                        p.housing.floor_m,
                        false,
                    );
                }
            }
        }
        street_trees(p, block, out, seed);
        return;
    }
    out.lots.push(Lot {
        area: u,
        surface: if h(0x75) < 0.2 + 0.6 * block.greenery {
            Surface::Garden
        } else {
            Surface::Paved
        },
    });
    // Towers where density is highest, and where the district's height regime allows them.
    let towers = d >= hs.mid || (d >= hs.low && block.regime > 0.8);
    if !towers {
        // Parallel slabs spaced by their height (sunlight rules).
        let storeys = range_u32(
            hs.slab_storeys.0,
            hs.slab_storeys.1,
            0.7 * block.regime + 0.3 * h(0x76),
        );
        let height = storeys as f64 * hs.floor_m;
        let depth = 12.0;
        let gap = (height * hs.slab_spacing).max(12.0);
        let n = ((2.0 * u.half[1] + gap) / (depth + gap)).floor().max(1.0) as usize;
        let len = (2.0 * u.half[0]).min(80.0);
        let used = n as f64 * depth + (n as f64 - 1.0) * gap;
        for k in 0..n {
            let across = -used / 2.0 + depth / 2.0 + k as f64 * (depth + gap);
            let edge_row = k == 0 || k + 1 == n;
            let fp = u.sub(0.0, across, [len / 2.0, depth / 2.0]);
            add(
                ctx,
                out,
                fp,
                Typology::Slab,
                storeys,
                p.housing.floor_m,
                mixed && edge_row,
            );
        }
    } else {
        // Point towers on a grid: 6-8 flats per floor around a core, about 30 × 30 m.
        let pitch = 55.0;
        let (na, nb) = (
            ((2.0 * u.half[0]) / pitch).floor().max(1.0) as usize,
            ((2.0 * u.half[1]) / pitch).floor().max(1.0) as usize,
        );
        for i in 0..na {
            for j in 0..nb {
                let along = -u.half[0] + pitch * (i as f64 + 0.5);
                let across = -u.half[1] + pitch * (j as f64 + 0.5);
                let t = hash01(
                    block.key.0 * 97 + i as i64,
                    block.key.1 * 89 + j as i64,
                    seed ^ 0x77,
                );
                let storeys = range_u32(
                    hs.tower_storeys.0,
                    hs.tower_storeys.1,
                    0.6 * block.regime + 0.4 * t,
                );
                let fp = u.sub(along, across, [15.0, 15.0]);
                let edge = i == 0 || j == 0 || i + 1 == na || j + 1 == nb;
                add(
                    ctx,
                    out,
                    fp,
                    Typology::Tower,
                    storeys,
                    p.housing.floor_m,
                    mixed && edge,
                );
            }
        }
    }
    street_trees(p, block, out, seed);
}

fn street_trees(p: &Preset6, block: &Block, out: &mut Built, seed: u64) {
    if hash01(block.key.0, block.key.1, seed ^ 0x78)
        >= p.streets.street_trees * (0.4 + 1.2 * block.greenery)
    {
        return;
    }
    let u = block.usable;
    let n = (2.0 * u.half[0] / 12.0) as usize;
    for side in [-1.0, 1.0] {
        for k in 0..n {
            let along = -u.half[0] + 12.0 * (k as f64 + 0.5);
            out.trees.push(Tree {
                c: u.at(along, side * (u.half[1] + 1.5)),
                r: 2.5 + 1.5 * hash01(block.key.0 * 53 + k as i64, block.key.1, seed ^ 0x79),
            });
        }
    }
}

fn offices(ctx: &Ctx, block: &Block, out: &mut Built) {
    let (p, seed) = (ctx.p, ctx.seed);
    let u = block.usable;
    out.lots.push(Lot {
        area: u,
        surface: Surface::Paved,
    });
    let hs = &p.housing;
    let t = ((block.density - 0.8) / 0.2).clamp(0.0, 1.0);
    if hash01(block.key.0, block.key.1, seed ^ 0x81) < 0.5 + 0.4 * t {
        // Towers along the block, one per 70 m.
        let n = ((2.0 * u.half[0]) / 70.0).floor().max(1.0) as usize;
        for k in 0..n {
            let along = -u.half[0] + 70.0 * (k as f64 + 0.5);
            let s = hash01(block.key.0 * 61 + k as i64, block.key.1, seed ^ 0x82);
            let storeys = range_u32(
                hs.office_storeys.0,
                hs.office_storeys.1,
                0.6 * block.regime + 0.4 * s,
            );
            let half = (u.half[1] - 5.0).clamp(8.0, 20.0);
            add(
                ctx,
                out,
                u.sub(along, 0.0, [half, half]),
                Typology::OfficeTower,
                storeys,
                3.9,
                false,
            );
        }
    } else {
        // A perimeter block around a courtyard.
        let depth = 14.0;
        let storeys = range_u32(
            hs.office_storeys.0,
            (hs.office_storeys.0 + 6).min(hs.office_storeys.1),
            t,
        );
        let sides = [
            (0.0, -(u.half[1] - depth / 2.0), [u.half[0], depth / 2.0]),
            (0.0, u.half[1] - depth / 2.0, [u.half[0], depth / 2.0]),
        ];
        for (along, across, half) in sides {
            add(
                ctx,
                out,
                u.sub(along, across, half),
                Typology::OfficeBlock,
                storeys,
                3.9,
                false,
            );
        }
        let inner = u.half[1] - depth;
        if inner > 5.0 {
            for side in [-1.0, 1.0] {
                let fp = u.sub(side * (u.half[0] - depth / 2.0), 0.0, [depth / 2.0, inner]);
                add(ctx, out, fp, Typology::OfficeBlock, storeys, 3.9, false);
            }
        }
    }
}

fn retail_box(ctx: &Ctx, block: &Block, out: &mut Built) {
    let u = block.usable;
    out.lots.push(Lot {
        area: u,
        surface: Surface::CarPark,
    });
    let half = [u.half[0].min(45.0), (u.half[1] * 0.45).min(35.0)];
    let fp = u.sub(0.0, u.half[1] - half[1], half);
    add(ctx, out, fp, Typology::RetailBox, 1, 7.0, false);
}

fn school(ctx: &Ctx, block: &Block, out: &mut Built) {
    let u = block.usable;
    out.lots.push(Lot {
        area: u,
        surface: Surface::Paved,
    });
    let field = u.sub(u.half[0] * 0.4, 0.0, [u.half[0] * 0.55, u.half[1] * 0.8]);
    out.lots.push(Lot {
        area: field,
        surface: Surface::SportsField,
    });
    let fp = u.sub(-u.half[0] * 0.55, 0.0, [8.0, (u.half[1] * 0.8).min(35.0)]);
    add(ctx, out, fp, Typology::School, 3, 3.5, false);
}

fn farmstead(ctx: &Ctx, block: &Block, out: &mut Built) {
    let p = ctx.p;
    let u = block.usable;
    add(
        ctx,
        out,
        u.sub(-10.0, 0.0, [6.0, 5.0]),
        Typology::Detached,
        2,
        p.housing.floor_m,
        false,
    );
    add(
        ctx,
        out,
        u.sub(15.0, 0.0, [12.0, 7.0]),
        Typology::Barn,
        1,
        6.0,
        false,
    );
}

fn industrial(ctx: &Ctx, block: &Block, typology: Typology, out: &mut Built) {
    let seed = ctx.seed;
    let u = block.usable;
    out.lots.push(Lot {
        area: u,
        surface: Surface::Yard,
    });
    let h = |s: u64| hash01(block.key.0, block.key.1, seed ^ s);
    match typology {
        Typology::Warehouse => {
            let half = [(u.half[0] - 5.0).min(55.0), (u.half[1] * 0.5).min(30.0)];
            add(ctx, out, u.sub(0.0, 0.0, half), typology, 1, 11.0, false);
        }
        Typology::Factory => {
            for side in [-1.0, 1.0] {
                let half = [(u.half[0] * 0.4).min(30.0), (u.half[1] * 0.35).min(18.0)];
                let storeys = 1 + (h(0x91) < 0.3) as u32;
                add(
                    ctx,
                    out,
                    u.sub(side * u.half[0] * 0.45, 0.0, half),
                    typology,
                    storeys,
                    7.0,
                    false,
                );
            }
        }
        _ => {
            let half = [(u.half[0] * 0.7).min(60.0), (u.half[1] * 0.3).min(22.0)];
            add(
                ctx,
                out,
                u.sub(0.0, -u.half[1] * 0.4, half),
                typology,
                1,
                16.0,
                false,
            );
        }
    }
}

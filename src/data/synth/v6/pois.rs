//! POIs of a v6 city, drawn from its buildings as POI data record them: by premises, at street
//! level, not by floor area. A row of ground-floor shops gives one POI per shop front (mixed
//! blocks whose roofs look residential), an office building its listed tenants (more where
//! the hidden occupancy is high), a retail box, a school, a factory or a housing estate one
//! entry or a few, however tall or large; services (health, worship, government) one here and
//! there among homes. So POIs tell what a place is used for and how busy it is, and not how
//! much floor it has: that is read from footprints and heights (shadows) in the image. A
//! per-city coverage rate and a hidden, district-scale completeness (volunteered and commercial
//! POI data are more complete in some districts than others) thin them all.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson};

use super::super::{fbm, ZOOM};
use super::buildings::{Building, Built, Surface};
use super::presets::{Preset6, RoadClass, Typology, Use};
use super::roads::Roads;
use super::World;
use crate::data::format::PoiRecord;
use crate::data::geo;

/// Metres of street frontage per ground-floor shop unit.
const SHOP_FRONT_M: f64 = 8.0;

fn poi_at(world: &World, q: [f64; 2], category: &str) -> PoiRecord {
    let (tx, ty) = world.tile_coordinates(q);
    PoiRecord {
        lon: geo::tile_x_to_lon(tx, ZOOM),
        lat: geo::tile_y_to_lat(ty, ZOOM),
        category: category.into(),
        weight: 1.0,
    }
}

fn draw(lambda: f64, rng: &mut ChaCha8Rng) -> usize {
    if lambda <= 0.0 {
        return 0;
    }
    Poisson::new(lambda)
        .map(|d| d.sample(rng) as usize)
        .unwrap_or(0)
}

/// What one building adds, as (category, expected count) pairs: premises, not floor area.
fn premises(b: &Building) -> Vec<(&'static str, f64)> {
    let busy = b.occupancy;
    match b.typology {
        _ if b.ground_floor_retail => {
            let fronts = 2.0 * b.footprint.half[0] / SHOP_FRONT_M;
            // Busier streets have fewer empty units (occupancy, capped at 1.5).
            let let_units = fronts * busy.min(1.5);
            vec![
                ("food", 0.4 * let_units),
                ("shopping", 0.5 * let_units),
                ("health", 0.05 * let_units),
                ("finance", 0.05 * let_units),
            ]
        }
        Typology::OfficeTower | Typology::OfficeBlock => vec![
            ("office", 1.0 + 2.0 * busy),
            ("finance", 0.3 * busy),
            ("food", 0.3),
            ("hotel", 0.05),
        ],
        Typology::RetailBox => vec![("shopping", 1.0 + 0.5 * busy), ("food", 0.5)],
        Typology::School => vec![("education", 1.0), ("sport", 0.5)],
        _ => vec![],
    }
}

/// POIs of the city; only those inside the city's tiles are kept by `keep`.
pub fn generate(
    p: &Preset6,
    world: &World,
    built: &Built,
    roads: &Roads,
    keep: impl Fn([f64; 2]) -> bool,
    rng: &mut ChaCha8Rng,
) -> Vec<PoiRecord> {
    let seed = p.poi_coverage.to_bits() ^ world.s;
    // The chance that a place is in the data: the city's coverage times the district's
    // completeness (a factor of about 1/2 to 2 around 1, smooth over a few tiles).
    let recorded = |q: [f64; 2], rng: &mut ChaCha8Rng| {
        let (gx, gy) = (q[0] / world.tile_m, q[1] / world.tile_m);
        let completeness = (0.7 * fbm(gx, gy, 4.0, seed ^ 0xD1)).exp();
        keep(q) && rng.gen::<f64>() < (p.poi_coverage * completeness).min(1.0)
    };
    let mut out = Vec::new();
    for b in &built.buildings {
        for (cat, lambda) in premises(b) {
            for _ in 0..draw(lambda, rng) {
                let (a, c) = (2.0 * rng.gen::<f64>() - 1.0, 2.0 * rng.gen::<f64>() - 1.0);
                let q = b
                    .footprint
                    .at(a * b.footprint.half[0], c * b.footprint.half[1]);
                if recorded(q, rng) {
                    out.push(poi_at(world, q, cat));
                }
            }
        }
    }
    // A housing estate or compound, a factory or a depot is one entry, however much it holds;
    // services are scattered among homes, one block in a few.
    let mut seen = std::collections::BTreeSet::new();
    for b in &built.buildings {
        let uses = b.floor_by_use();
        let (entry, services): (&str, &[(&str, f64)]) = match uses[uses.len() - 1].0 {
            Use::Residential => (
                "residential",
                &[
                    ("health", 0.1),
                    ("religion", 0.06),
                    ("government", 0.03),
                    ("other", 0.2),
                ],
            ),
            Use::Industry | Use::Warehouse => ("industrial", &[]),
            _ => continue,
        };
        if !seen.insert(b.block) {
            continue;
        }
        if recorded(b.footprint.c, rng) {
            out.push(poi_at(world, b.footprint.c, entry));
        }
        for &(cat, lambda) in services {
            for _ in 0..draw(lambda, rng) {
                if recorded(b.footprint.c, rng) {
                    out.push(poi_at(world, b.footprint.c, cat));
                }
            }
        }
    }
    for lot in &built.lots {
        if lot.surface == Surface::Grass {
            // Parks: playgrounds, sports grounds and cafés, about one per 2 ha.
            for cat in ["leisure", "sport"] {
                for _ in 0..draw(lot.area.area() / 20_000.0, rng) {
                    let (a, c) = (2.0 * rng.gen::<f64>() - 1.0, 2.0 * rng.gen::<f64>() - 1.0);
                    let q = lot.area.at(a * lot.area.half[0], c * lot.area.half[1]);
                    if recorded(q, rng) {
                        out.push(poi_at(world, q, cat));
                    }
                }
            }
        }
    }
    // Transport: stops and stations along arterials (about one per 400 m) and collectors.
    for e in &roads.edges {
        let (pa, pb) = (roads.nodes[e.a], roads.nodes[e.b]);
        let mid = [(pa[0] + pb[0]) / 2.0, (pa[1] + pb[1]) / 2.0];
        let lambda = match e.class {
            RoadClass::Arterial => roads.length(e) / 400.0,
            RoadClass::Collector => roads.length(e) / 1500.0,
            _ => 0.0,
        };
        for _ in 0..draw(lambda, rng) {
            if recorded(mid, rng) {
                out.push(poi_at(world, mid, "transport"));
            }
        }
    }
    for f in &built.facilities {
        if recorded(f.c, rng) {
            out.push(poi_at(world, f.c, "industrial"));
        }
    }
    out
}

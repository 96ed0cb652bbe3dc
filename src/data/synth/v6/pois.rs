//! POIs of a v6 city, drawn from its buildings: shops and restaurants from retail floor area
//! (ground-floor shops in mixed blocks that the roof does not show), offices and banks from
//! office floor area, both scaled by the hidden occupancy that no roof shows; schools, homes,
//! industry, parks and transport from what they are. A per-city coverage rate thins them all,
//! as data sources differ between cities.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson};

use super::super::ZOOM;
use super::buildings::{Built, Surface};
use super::presets::{Preset6, RoadClass, Use};
use super::roads::Roads;
use super::World;
use crate::data::format::PoiRecord;
use crate::data::geo;

/// Expected POIs per m² of floor area of each use, by category (a modelling choice: one shop or
/// restaurant per few hundred m² of retail, an office per ~1500 m² of office floors).
fn rates(u: Use) -> &'static [(&'static str, f64)] {
    match u {
        Use::Retail => &[
            ("food", 1.0 / 400.0),
            ("shopping", 1.0 / 300.0),
            ("health", 1.0 / 4000.0),
            ("finance", 1.0 / 5000.0),
        ],
        Use::Office => &[
            ("office", 1.0 / 1500.0),
            ("finance", 1.0 / 6000.0),
            ("hotel", 1.0 / 25_000.0),
            ("food", 1.0 / 5000.0),
        ],
        Use::Residential => &[
            ("residential", 1.0 / 3000.0),
            ("health", 1.0 / 40_000.0),
            ("religion", 1.0 / 60_000.0),
            ("government", 1.0 / 80_000.0),
            ("other", 1.0 / 20_000.0),
        ],
        Use::Education => &[("education", 1.0 / 2000.0), ("sport", 1.0 / 6000.0)],
        Use::Industry => &[("industrial", 1.0 / 4000.0)],
        Use::Warehouse => &[("industrial", 1.0 / 8000.0), ("other", 1.0 / 20_000.0)],
    }
}

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

/// POIs of the city; only those inside the city's tiles are kept by `keep`.
pub fn generate(
    p: &Preset6,
    world: &World,
    built: &Built,
    roads: &Roads,
    keep: impl Fn([f64; 2]) -> bool,
    rng: &mut ChaCha8Rng,
) -> Vec<PoiRecord> {
    let cov = p.poi_coverage;
    let mut out = Vec::new();
    for b in &built.buildings {
        if !keep(b.footprint.c) {
            continue;
        }
        for (u, area) in b.floor_by_use() {
            let busy = if matches!(u, Use::Retail | Use::Office) {
                b.occupancy
            } else {
                1.0
            };
            for &(cat, rate) in rates(u) {
                for _ in 0..draw(area * rate * busy * cov, rng) {
                    let (a, c) = (2.0 * rng.gen::<f64>() - 1.0, 2.0 * rng.gen::<f64>() - 1.0);
                    let q = b
                        .footprint
                        .at(a * b.footprint.half[0], c * b.footprint.half[1]);
                    out.push(poi_at(world, q, cat));
                }
            }
        }
    }
    // POI data record places, not floor area: a housing estate or compound, a factory or a
    // depot is one entry (one per block here), however much it holds.
    let mut seen = std::collections::BTreeSet::new();
    for b in &built.buildings {
        let uses = b.floor_by_use();
        let category = match uses[uses.len() - 1].0 {
            Use::Residential => "residential",
            Use::Industry | Use::Warehouse => "industrial",
            _ => continue,
        };
        if keep(b.footprint.c) && seen.insert((b.block, category)) && rng.gen::<f64>() < cov {
            out.push(poi_at(world, b.footprint.c, category));
        }
    }
    for lot in &built.lots {
        if lot.surface == Surface::Grass && keep(lot.area.c) {
            // Parks: playgrounds, sports grounds and cafés, about one per 2 ha.
            for cat in ["leisure", "sport"] {
                for _ in 0..draw(lot.area.area() / 20_000.0 * cov, rng) {
                    let (a, c) = (2.0 * rng.gen::<f64>() - 1.0, 2.0 * rng.gen::<f64>() - 1.0);
                    out.push(poi_at(
                        world,
                        lot.area.at(a * lot.area.half[0], c * lot.area.half[1]),
                        cat,
                    ));
                }
            }
        }
    }
    // Transport: stops and stations along arterials (about one per 400 m) and at motorway
    // junctions (fuel stations, interchanges).
    for e in &roads.edges {
        let (pa, pb) = (roads.nodes[e.a], roads.nodes[e.b]);
        let mid = [(pa[0] + pb[0]) / 2.0, (pa[1] + pb[1]) / 2.0];
        if !keep(mid) {
            continue;
        }
        let lambda = match e.class {
            RoadClass::Arterial => roads.length(e) / 400.0,
            RoadClass::Collector => roads.length(e) / 1500.0,
            _ => 0.0,
        };
        for _ in 0..draw(lambda * cov, rng) {
            out.push(poi_at(world, mid, "transport"));
        }
    }
    for f in &built.facilities {
        if keep(f.c) {
            out.push(poi_at(world, f.c, "industrial"));
        }
    }
    out
}

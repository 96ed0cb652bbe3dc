//! What the two modalities observe of a generated city: the colour of each image pixel and
//! the POIs each cell emits. Both read the same latent cells (land use, density, activity),
//! which is what makes images and POIs complementary views of one emission field.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson};

use super::{hash01, Cell, LandUse, Preset, CELLS, POI_CATEGORIES, PX, ZOOM};
use crate::data::format::{PoiRecord, Tile};
use crate::data::geo;

/// The colour of one pixel of a cell. `h` is per-pixel randomness, `hc` per-cell randomness.
pub(super) fn pixel(cell: &Cell, px: usize, py: usize, h: f64, hc: f64, roof: [u8; 3]) -> [u8; 3] {
    let edge = px == 0 || py == 0;
    match cell.land {
        LandUse::Water => [38, 72 + (h * 10.0) as u8, 118 + (h * 12.0) as u8],
        LandUse::Park => {
            if h < 0.35 {
                [46, 88, 44]
            } else {
                [82, 128, 66]
            }
        }
        LandUse::Farmland => {
            // Fields: one crop colour per cell, furrows every other row.
            let base = if hc < 0.5 {
                [150, 160, 90]
            } else {
                [120, 140, 70]
            };
            if py.is_multiple_of(2) {
                base
            } else {
                [base[0] - 15, base[1] - 15, base[2] - 10]
            }
        }
        LandUse::Road => {
            if py == PX / 2 && !px.is_multiple_of(3) {
                [200, 200, 190]
            } else {
                [78, 78, 82]
            }
        }
        LandUse::Residential => {
            if edge {
                return [112, 112, 112]; // street grid
            }
            // Houses of 3×3 px in a 2×2 layout; more of them where density is higher.
            let house = (px - 1) / 3 + 2 * ((py - 1) / 3);
            let filled = hash01(house as i64, (hc * 1e6) as i64, 17) < 0.25 + 0.75 * cell.density;
            let in_roof = (px - 1) % 3 != 2 && (py - 1) % 3 != 2 && px < 7 && py < 7;
            if filled && in_roof {
                roof
            } else if cell.density < 0.45 {
                [96, 132, 80] // gardens
            } else {
                [150, 148, 140]
            }
        }
        LandUse::Commercial => {
            if edge {
                return [104, 104, 104];
            }
            // One large flat roof per cell with a lighter rim.
            if px == 1 || py == 1 || px == 7 || py == 7 {
                [176, 176, 170]
            } else {
                let g = 120 + (hc * 40.0) as u8;
                [g, g, g + 6]
            }
        }
        LandUse::Industrial => {
            if hc < 0.6 {
                if edge || px == 7 {
                    [140, 138, 130] // yard
                } else {
                    [190, 196, 204] // big light roof
                }
            } else if h < 0.15 {
                [90, 86, 80]
            } else {
                [160, 150, 130] // storage yard
            }
        }
    }
}

pub(super) fn generate_pois(
    p: &Preset,
    tiles: &[Tile],
    cells: &[Vec<Cell>],
    plants: &[bool],
    rng: &mut ChaCha8Rng,
) -> Vec<PoiRecord> {
    use LandUse::*;
    let cell_area = 1.0 / (CELLS * CELLS) as f64;
    let mut pois = Vec::new();
    for (t, tile) in tiles.iter().enumerate() {
        for (k, c) in cells[t].iter().enumerate() {
            let built_res = matches!(c.land, Residential | Commercial);
            let com = if c.land == Commercial { 1.0 } else { 0.35 };
            let a = if built_res { c.activity } else { 0.0 };
            let d = if built_res { c.density } else { 0.0 };
            // Expected POIs per category in this cell (per unit of tile area).
            let rates: [f64; 15] = [
                3.0 * a,            // food
                2.5 * a * com,      // shopping
                0.25 * d,           // education
                0.25 * d + 0.3 * a, // health
                if c.land == Road {
                    0.6 * c.density
                } else {
                    0.15 * a
                }, // transport
                2.0 * a * a * com,  // office
                0.6 * d * if c.land == Residential { 1.0 } else { 0.2 }, // residential
                if c.land == Industrial { 0.5 } else { 0.0 }, // industrial
                if c.land == Park { 0.4 } else { 0.5 * a }, // leisure
                0.8 * a * a,        // hotel
                1.2 * a * a * com,  // finance
                0.1 * d,            // government
                0.12 * d,           // religion
                if c.land == Park { 0.5 } else { 0.1 * d }, // sport
                0.3 * d + 0.3 * a,  // other
            ];
            for (cat, &r) in rates.iter().enumerate() {
                let lambda = r * p.poi_rate * cell_area * 8.0;
                if lambda <= 0.0 {
                    continue;
                }
                let count = Poisson::new(lambda)
                    .map(|d| d.sample(rng) as usize)
                    .unwrap_or(0);
                for _ in 0..count {
                    let fx = ((k % CELLS) as f64 + rng.gen::<f64>()) / CELLS as f64;
                    let fy = ((k / CELLS) as f64 + rng.gen::<f64>()) / CELLS as f64;
                    pois.push(poi_at(tile, fx, fy, POI_CATEGORIES[cat]));
                }
            }
        }
        if plants[t] {
            pois.push(poi_at(tile, 0.5, 0.5, "industrial"));
        }
    }
    pois
}

fn poi_at(tile: &Tile, fx: f64, fy: f64, category: &str) -> PoiRecord {
    PoiRecord {
        lon: geo::tile_x_to_lon(tile.x as f64 + fx, ZOOM),
        lat: geo::tile_y_to_lat(tile.y as f64 + fy, ZOOM),
        category: category.into(),
        weight: 1.0,
    }
}

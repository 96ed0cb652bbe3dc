//! Emission of a v6 city from its physical drivers, and the inventory that reports it.
//!
//! True emission (t CO2/yr) is the sum of three sectors: buildings (floor area × heat
//! intensity by use, age and insulation × occupancy for non-domestic floors × the carbon factor
//! of the district's fuel mix), roads (length × traffic × 365 × the fleet's kg CO2 per
//! vehicle-km) and facilities (capacity × capacity factor × 8760 h × t CO2 per MWh). The
//! inventory then does what ODIAC
//! does: non-point emission is summed on a 1 km grid that is not aligned with the tiles and
//! spread back inside each grid cell by a blooming night-light proxy (each cell's mass kept);
//! facilities stay where they are; each tile's report carries a log-normal error.

use super::buildings::{Building, Built};
use super::facilities::Facility;
use super::presets::{EmissionFactors, InventoryModel, Typology, Use};
use super::roads::Roads;
use super::World;

/// Raster cells per tile edge of the inventory's fine raster (about 48-60 m).
pub const RASTER: usize = 16;

/// t CO2 / yr of one building.
pub fn building_emission(b: &Building, f: &EmissionFactors) -> f64 {
    // Age raises heat demand from the newest stock (factor 1) to the oldest (age_factor),
    // linearly over a century.
    let age = 1.0 + (f.age_factor - 1.0) * (b.age_years / 100.0).clamp(0.0, 1.0);
    let fuel = b.coal_share * f.coal_kg_kwh + (1.0 - b.coal_share) * f.gas_kg_kwh;
    let kwh: f64 = b
        .floor_by_use()
        .iter()
        .map(|&(u, area)| {
            let intensity = if b.typology == Typology::RetailBox {
                f.retail_box_kwh_m2
            } else {
                f.heat_kwh_m2[u.index()]
            };
            let busy = if u == Use::Residential {
                1.0
            } else {
                b.occupancy
            };
            area * intensity * busy
        })
        .sum();
    kwh * age * b.insulation * fuel / 1000.0
}

/// t CO2 / yr of one road edge's traffic per metre of its length.
pub fn road_emission_per_m(aadt: f64, f: &EmissionFactors) -> f64 {
    aadt * 365.0 * f.fleet_kg_km() / 1000.0 / 1000.0
}

/// t CO2 / yr of a facility: a plant's electricity at its carbon intensity, a process site's
/// fuel at the city's fuel mix (`coal_share`), both at the capacity factor.
pub fn facility_emission(facility: &Facility, f: &EmissionFactors, coal_share: f64) -> f64 {
    let per_mwh = if facility.process {
        coal_share * f.coal_kg_kwh + (1.0 - coal_share) * f.gas_kg_kwh
    } else {
        f.plant_t_mwh
    };
    facility.capacity_mw * f.capacity_factor * 8760.0 * per_mwh
}

/// A raster over the whole frame, RASTER cells per tile edge.
pub struct FrameRaster {
    pub w: usize,
    pub h: usize,
    pub cell_m: f64,
    pub v: Vec<f64>,
}

impl FrameRaster {
    pub fn new(world: &World) -> FrameRaster {
        let (w, h) = (world.frame_w * RASTER, world.frame_h * RASTER);
        FrameRaster {
            w,
            h,
            cell_m: world.tile_m / RASTER as f64,
            v: vec![0.0; w * h],
        }
    }

    pub fn add(&mut self, x: f64, y: f64, value: f64) {
        let (i, j) = ((x / self.cell_m).floor(), (y / self.cell_m).floor());
        if i >= 0.0 && j >= 0.0 && (i as usize) < self.w && (j as usize) < self.h {
            self.v[j as usize * self.w + i as usize] += value;
        }
    }

    /// Sum over the cells of frame tile (ti, tj).
    pub fn tile_sum(&self, ti: usize, tj: usize) -> f64 {
        let mut s = 0.0;
        for j in tj * RASTER..(tj + 1) * RASTER {
            for i in ti * RASTER..(ti + 1) * RASTER {
                s += self.v[j * self.w + i];
            }
        }
        s
    }

    /// Gaussian blur with standard deviation `sigma_m`, separable, truncated at 3σ, edges
    /// renormalised (what falls off the frame is lost; the proxy only needs its shape).
    pub fn blurred(&self, sigma_m: f64) -> FrameRaster {
        let s = sigma_m / self.cell_m;
        let r = (3.0 * s).ceil() as isize;
        let kernel: Vec<f64> = (-r..=r)
            .map(|d| (-(d * d) as f64 / (2.0 * s * s)).exp())
            .collect();
        let pass = |src: &[f64], w: usize, h: usize, horizontal: bool| -> Vec<f64> {
            let mut out = vec![0.0; w * h];
            for j in 0..h {
                for i in 0..w {
                    let (mut acc, mut norm) = (0.0, 0.0);
                    for (k, kv) in kernel.iter().enumerate() {
                        let d = k as isize - r;
                        let (ii, jj) = if horizontal {
                            (i as isize + d, j as isize)
                        } else {
                            (i as isize, j as isize + d)
                        };
                        if ii >= 0 && jj >= 0 && (ii as usize) < w && (jj as usize) < h {
                            acc += kv * src[jj as usize * w + ii as usize];
                            norm += kv;
                        }
                    }
                    out[j * w + i] = acc / norm;
                }
            }
            out
        };
        let once = pass(&self.v, self.w, self.h, true);
        FrameRaster {
            w: self.w,
            h: self.h,
            cell_m: self.cell_m,
            v: pass(&once, self.w, self.h, false),
        }
    }
}

/// The inventory's spreading: the non-point emission raster summed on a grid of `grid_m`
/// cells offset by `origin` (metres), each grid cell's sum spread over its raster cells in
/// proportion to the night-light proxy (evenly where the proxy is dark). Mass is conserved
/// per grid cell and so over the frame.
pub fn spread(
    emission: &FrameRaster,
    light: &FrameRaster,
    grid_m: f64,
    origin: [f64; 2],
) -> FrameRaster {
    let cell_of = |i: usize, j: usize| -> (i64, i64) {
        let x = (i as f64 + 0.5) * emission.cell_m - origin[0];
        let y = (j as f64 + 0.5) * emission.cell_m - origin[1];
        ((x / grid_m).floor() as i64, (y / grid_m).floor() as i64)
    };
    let mut sums: std::collections::BTreeMap<(i64, i64), (f64, f64, usize)> = Default::default();
    for j in 0..emission.h {
        for i in 0..emission.w {
            let k = j * emission.w + i;
            let entry = sums.entry(cell_of(i, j)).or_insert((0.0, 0.0, 0));
            entry.0 += emission.v[k];
            entry.1 += light.v[k];
            entry.2 += 1;
        }
    }
    let mut out = FrameRaster {
        w: emission.w,
        h: emission.h,
        cell_m: emission.cell_m,
        v: vec![0.0; emission.v.len()],
    };
    for j in 0..emission.h {
        for i in 0..emission.w {
            let k = j * emission.w + i;
            let (mass, lit, cells) = sums[&cell_of(i, j)];
            out.v[k] = if lit > 0.0 {
                mass * light.v[k] / lit
            } else {
                mass / cells as f64
            };
        }
    }
    out
}

/// What the inventory's night-light proxy sees of a building: lit floor area, brighter for
/// shops and offices than for homes and sheds (a modelling choice, docs/synthetic-cities.md).
pub fn light_of(b: &Building) -> f64 {
    b.floor_by_use()
        .iter()
        .map(|&(u, area)| {
            area * match u {
                Use::Retail | Use::Office => 3.0,
                Use::Residential | Use::Education => 1.0,
                Use::Industry | Use::Warehouse => 0.5,
            }
        })
        .sum()
}

/// Per frame tile: the true non-point emission, the facilities' emission, and the inventory's
/// report before its error.
pub struct TileEmission {
    pub non_point: Vec<f64>,
    pub facilities: Vec<f64>,
    pub pre_error: Vec<f64>,
}

pub fn tile_emission(
    world: &World,
    built: &Built,
    roads: &Roads,
    factors: &EmissionFactors,
    inventory: &InventoryModel,
    coal_share: f64,
    origin: [f64; 2],
) -> TileEmission {
    let mut emission = FrameRaster::new(world);
    let mut light = FrameRaster::new(world);
    for b in &built.buildings {
        emission.add(
            b.footprint.c[0],
            b.footprint.c[1],
            building_emission(b, factors),
        );
        light.add(b.footprint.c[0], b.footprint.c[1], light_of(b));
    }
    for (k, e) in roads.edges.iter().enumerate() {
        let per_m = road_emission_per_m(e.aadt, factors);
        // Street lights and headlights: a road's glow follows its traffic, at the order of a
        // building's per m² of carriageway (modelling choice).
        let glow = e.class.width_m() * (e.aadt / 10_000.0).sqrt();
        roads.along(k, 5.0, |x, y, m| {
            emission.add(x, y, per_m * m);
            light.add(x, y, glow * m);
        });
    }
    let bloomed = light.blurred(inventory.bloom_m);
    let reported = spread(&emission, &bloomed, inventory.grid_m, origin);
    let n = world.frame_w * world.frame_h;
    let mut facilities = vec![0.0; n];
    for f in &built.facilities {
        if let Some(t) = world.frame_tile_of(f.c) {
            facilities[t] += facility_emission(f, factors, coal_share);
        }
    }
    let mut non_point = vec![0.0; n];
    let mut pre_error = vec![0.0; n];
    for tj in 0..world.frame_h {
        for ti in 0..world.frame_w {
            let t = tj * world.frame_w + ti;
            non_point[t] = emission.tile_sum(ti, tj);
            pre_error[t] = reported.tile_sum(ti, tj) + facilities[t];
        }
    }
    TileEmission {
        non_point,
        facilities,
        pre_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raster(w: usize, h: usize, v: Vec<f64>) -> FrameRaster {
        FrameRaster {
            w,
            h,
            cell_m: 50.0,
            v,
        }
    }

    /// The inventory's spreading moves mass inside grid cells and never across them; a grid
    /// cell without light spreads its mass evenly.
    #[test]
    fn spreading_conserves_each_grid_cells_mass() {
        let (w, h) = (48, 40);
        let e: Vec<f64> = (0..w * h).map(|k| ((k * 37) % 11) as f64).collect();
        // Light everywhere but in the first 20 columns (1000 m): at least one whole grid cell
        // is dark.
        let l: Vec<f64> = (0..w * h)
            .map(|k| {
                if k % w < 20 {
                    0.0
                } else {
                    1.0 + ((k * 13) % 5) as f64
                }
            })
            .collect();
        let (em, li) = (raster(w, h, e.clone()), raster(w, h, l.clone()));
        let origin = [330.0, 170.0];
        let out = spread(&em, &li, 1000.0, origin);
        let cell_of = |k: usize| {
            let (i, j) = (k % w, k / w);
            let x = (i as f64 + 0.5) * 50.0 - origin[0];
            let y = (j as f64 + 0.5) * 50.0 - origin[1];
            ((x / 1000.0).floor() as i64, (y / 1000.0).floor() as i64)
        };
        let mut before: std::collections::BTreeMap<(i64, i64), f64> = Default::default();
        let mut after = before.clone();
        for (k, (input, output)) in e.iter().zip(&out.v).enumerate() {
            *before.entry(cell_of(k)).or_default() += input;
            *after.entry(cell_of(k)).or_default() += output;
        }
        for (cell, mass) in &before {
            assert!(
                (mass - after[cell]).abs() < 1e-9 * mass.max(1.0),
                "{cell:?}"
            );
        }
        // Mass moved inside the lit cells.
        assert!(out.v.iter().zip(&e).any(|(a, b)| (a - b).abs() > 1e-6));
        // Grid cell (-1, 0) (columns 0-6, rows 3-22) is dark: every one of its raster cells
        // holds the same share.
        let dark: Vec<f64> = (0..w * h)
            .filter(|&k| cell_of(k) == (-1, 0))
            .map(|k| out.v[k])
            .collect();
        assert!(dark.len() > 10 && dark.iter().all(|v| (v - dark[0]).abs() < 1e-12));
        assert!(dark.iter().all(|&v| l[0] == 0.0 && v > 0.0));
    }
}

//! The latents of a v5 city (the ladder's "v5 control"): per tile, the land-use shares and
//! built density that its palette image shows, whether a plant is drawn, the hidden factors
//! (district energy intensity, commercial vibrancy), the one acquisition parameter (per-tile
//! brightness; each tile is its own strip) and ln emission before the inventory's blur and
//! before its error, and ln of the part of emission that the image determines. Read only by the
//! oracle, the ladder and scripts/v5_colour_control.py.

use super::{brightness, Cell, LandUse, CELLS};
use crate::data::format::Tile;
use crate::data::latents::{self, Latents};

/// ln of the emission the image determines: every hidden factor at its median, a drawn plant
/// at the median plant size, before the inventory (scripts/v5_colour_control.py's target).
pub const LOG_EMISSION_IMAGE_PART: &str = "log_emission_image_part";

pub(super) struct Inputs<'a> {
    pub tiles: &'a [Tile],
    pub cells: &'a [Vec<Cell>],
    pub visible_plants: &'a [bool],
    /// Per tile: the district's energy intensity and the vibrancy at the tile's centre.
    pub intensity: &'a [f64],
    pub vibrancy: &'a [f64],
    /// Emission before the inventory's blur, and after it before the error.
    pub raw: &'a [f64],
    pub pre_error: &'a [f64],
    /// Emission with every hidden factor at its median (what the image determines).
    pub image_part: &'a [f64],
    pub seed: u64,
}

const SHARES: [(&str, LandUse); 7] = [
    ("share_water", LandUse::Water),
    ("share_park", LandUse::Park),
    ("share_farmland", LandUse::Farmland),
    ("share_residential", LandUse::Residential),
    ("share_commercial", LandUse::Commercial),
    ("share_industrial", LandUse::Industrial),
    ("share_road", LandUse::Road),
];

pub(super) fn tile_latents(x: &Inputs) -> Latents {
    let mut columns: Vec<String> = SHARES.iter().map(|s| s.0.to_string()).collect();
    columns.extend(
        [
            "density_residential",
            "density_commercial",
            "plant_visible",
            "hidden_energy_intensity",
            "hidden_vibrancy",
            latents::ACQ_STRIP,
            "acq_brightness",
            latents::LOG_EMISSION_PHYSICAL,
            latents::LOG_EMISSION_PRE_ERROR,
            LOG_EMISSION_IMAGE_PART,
        ]
        .map(String::from),
    );
    let per_cell = 1.0 / (CELLS * CELLS) as f64;
    let ln = |v: f64| if v > 0.0 { v.ln() } else { f64::NAN };
    let rows = (0..x.tiles.len())
        .map(|t| {
            let cells = &x.cells[t];
            let share = |l: LandUse| cells.iter().filter(|c| c.land == l).count() as f64 * per_cell;
            let density = |l: LandUse| {
                cells
                    .iter()
                    .filter(|c| c.land == l)
                    .map(|c| c.density)
                    .sum::<f64>()
                    * per_cell
                    + 0.0 // an empty sum is -0.0; written as 0
            };
            let mut row: Vec<f64> = SHARES.iter().map(|s| share(s.1)).collect();
            row.extend([
                density(LandUse::Residential),
                density(LandUse::Commercial),
                x.visible_plants[t] as u8 as f64,
                x.intensity[t],
                x.vibrancy[t],
                t as f64,
                brightness(&x.tiles[t], x.seed),
                ln(x.raw[t]),
                ln(x.pre_error[t]),
                ln(x.image_part[t]),
            ]);
            row
        })
        .collect();
    Latents {
        columns,
        xy: x.tiles.iter().map(|t| (t.x, t.y)).collect(),
        rows,
    }
}

#[cfg(test)]
mod tests {
    use crate::data::latents::LOG_EMISSION_PRE_ERROR;
    use crate::data::synth::{preset, SynthCity, INVENTORY_LOG_SIGMA};

    /// The reported emission is the pre-error emission times the inventory's log-normal
    /// error, so their log difference has the error's spread; the shares add up to one.
    #[test]
    fn latents_explain_the_reported_emission_up_to_the_inventory_error() {
        let c = SynthCity::generate(&preset("london").unwrap(), 0);
        let l = &c.latents;
        assert_eq!(l.rows.len(), c.tiles.len());
        let pre = l.column(LOG_EMISSION_PRE_ERROR).unwrap();
        let d: Vec<f64> = c
            .tiles
            .iter()
            .zip(&pre)
            .filter(|(t, _)| t.is_target())
            .map(|(t, p)| t.emission.ln() - p)
            .collect();
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        let sd = (d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d.len() as f64).sqrt();
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((sd - INVENTORY_LOG_SIGMA).abs() < 0.05, "sd {sd}");
        for row in &l.rows {
            let shares: f64 = row[..7].iter().sum();
            assert!((shares - 1.0).abs() < 1e-12);
        }
        let drawn = c.plants.iter().filter(|&&p| p).count() as f64;
        assert_eq!(
            l.column("plant_visible").unwrap().iter().sum::<f64>(),
            drawn
        );
    }
}

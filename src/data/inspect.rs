//! `opencarbon inspect`: the statistics a user checks before trusting a dataset.

use std::fmt;

use serde::Serialize;

use super::format::CityDataset;
use super::graph::morans_i;
use super::grid::TileGrid;

#[derive(Debug, Clone, Serialize)]
pub struct DatasetStats {
    pub name: String,
    pub zoom: u8,
    pub tiles: usize,
    pub target_tiles: usize,
    pub zero_share: f64,
    pub pois: usize,
    pub pois_per_category: Vec<(String, f64)>,
    /// Emission quantiles of the target tiles (raw units): 0, 5, 25, 50, 75, 95, 100 %.
    pub emission_quantiles: Vec<(f64, f64)>,
    pub total_emission: f64,
    pub unit: String,
    pub morans_i_log_emission: Option<f64>,
    pub splits: Vec<String>,
    pub warnings: Vec<String>,
}

/// Decode every tile image of `ds` (`raster::read_tile_image`), with progress: a truncated,
/// non-image, oversized or non-square file is refused with its name (exit 2), as `run`
/// would refuse it.
pub fn check_images(ds: &CityDataset) -> crate::error::Result<()> {
    let bar = crate::track::progress::Bar::new(ds.tiles.len() as u64, "images")
        .prefix(format!("decoding {}", ds.meta.name));
    for i in 0..ds.tiles.len() {
        super::raster::read_tile_image(&ds.image_path(i))?;
        bar.inc();
    }
    Ok(())
}

pub use crate::metrics::quantile;

pub fn dataset_stats(ds: &CityDataset) -> DatasetStats {
    let grid = TileGrid::new(&ds.tiles);
    let mut emissions: Vec<f64> = ds
        .tiles
        .iter()
        .filter(|t| t.is_target())
        .map(|t| t.emission)
        .collect();
    emissions.sort_by(f64::total_cmp);
    let mut per_cat = vec![0.0; ds.meta.poi_categories.len()];
    for p in &ds.pois {
        per_cat[p.category as usize] += p.weight as f64;
    }
    let log_e: Vec<Option<f64>> = ds
        .tiles
        .iter()
        .map(|t| t.is_target().then(|| t.emission.ln()))
        .collect();
    DatasetStats {
        name: ds.meta.name.clone(),
        zoom: ds.meta.zoom,
        tiles: ds.tiles.len(),
        target_tiles: emissions.len(),
        zero_share: 1.0 - emissions.len() as f64 / ds.tiles.len() as f64,
        pois: ds.pois.len(),
        pois_per_category: ds
            .meta
            .poi_categories
            .iter()
            .cloned()
            .zip(per_cat)
            .collect(),
        emission_quantiles: [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0]
            .iter()
            .map(|&q| (q, quantile(&emissions, q)))
            .collect(),
        total_emission: emissions.iter().sum(),
        unit: ds.meta.target.unit.clone(),
        morans_i_log_emission: morans_i(
            &super::TileGraph::build(&grid, super::Contiguity::Queen),
            &log_e,
        ),
        splits: ds.split_names.clone(),
        warnings: ds.warnings.clone(),
    }
}

impl fmt::Display for DatasetStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "dataset        {} (zoom {})", self.name, self.zoom)?;
        writeln!(
            f,
            "tiles          {} ({} with emission > 0, zero share {:.1} %)",
            self.tiles,
            self.target_tiles,
            self.zero_share * 100.0
        )?;
        writeln!(
            f,
            "total emission {:.4e} {}",
            self.total_emission, self.unit
        )?;
        write!(f, "emission       ")?;
        for (q, v) in &self.emission_quantiles {
            write!(f, "q{:.0}={:.3e} ", q * 100.0, v)?;
        }
        writeln!(f)?;
        match self.morans_i_log_emission {
            Some(i) => writeln!(f, "Moran's I      {i:.3} (log emission, queen contiguity)")?,
            None => writeln!(
                f,
                "Moran's I      undefined (too few target tiles or links)"
            )?,
        }
        writeln!(f, "POIs           {}", self.pois)?;
        for (c, n) in &self.pois_per_category {
            writeln!(f, "  {c:<14} {n:.0}")?;
        }
        if !self.splits.is_empty() {
            writeln!(f, "splits         {}", self.splits.join(", "))?;
        }
        if self.warnings.is_empty() {
            writeln!(f, "images         all present, none extra")?;
        }
        for w in &self.warnings {
            writeln!(f, "warning        {w}")?;
        }
        Ok(())
    }
}

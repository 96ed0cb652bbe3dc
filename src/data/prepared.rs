//! A dataset ready for jobs: the shared type of the job runner (which prepares it) and the
//! models (which read it).

use std::path::{Path, PathBuf};

use super::features::{tile_features, FeatureTable};
use super::format::content_fingerprint;
use super::raster::DerivedCache;
use super::{synth, CityDataset, Contiguity, DatasetEntry, DatasetSource, TileGraph, TileGrid};
use crate::error::Result;

/// A dataset ready for jobs: validated, with its derived arrays.
#[derive(Clone)]
pub struct PreparedDataset {
    pub entry: DatasetEntry,
    pub path: PathBuf,
    pub data: CityDataset,
    pub fingerprint: String,
    pub features: FeatureTable,
    pub grid: TileGrid,
    /// Queen contiguity, shared by the features and the graph models.
    pub graph: TileGraph,
    pub images: crate::data::raster::ImageStack,
    pub pois: crate::data::raster::PoiRaster,
}

/// Resolve a dataset entry to a directory, generating a preset city on first use.
pub fn dataset_dir(entry: &DatasetEntry, cache_dir: &Path) -> Result<PathBuf> {
    match &entry.source {
        DatasetSource::Preset { preset, seed, .. } => {
            synth::ensure_preset(cache_dir, preset, *seed)
        }
        DatasetSource::Path { path } => Ok(path.clone()),
    }
}

/// Open, validate and featurise one dataset, with its decoded images and POI rasters.
pub fn prepare_dataset(
    entry: &DatasetEntry,
    cache_dir: &Path,
    image_size: usize,
    poi_raster_size: usize,
) -> Result<PreparedDataset> {
    let path = dataset_dir(entry, cache_dir)?;
    let data = CityDataset::open(&path)?;
    for w in &data.warnings {
        crate::track::progress::warn(w);
    }
    let fingerprint = content_fingerprint(&data)?;
    let cache = DerivedCache::new(cache_dir, &fingerprint);
    let images = cache.images(&data, image_size)?;
    let pois = cache.poi_raster(&data, poi_raster_size)?;
    let grid = TileGrid::new(&data.tiles);
    let graph = TileGraph::build(&grid, Contiguity::Queen);
    let features = tile_features(&graph, &images, &pois, &data.meta.poi_categories);
    Ok(PreparedDataset {
        entry: entry.clone(),
        path,
        data,
        fingerprint,
        features,
        grid,
        graph,
        images,
        pois,
    })
}

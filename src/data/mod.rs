//! Datasets: the on-disk format, synthetic cities, rasterising, features, splits.

pub mod entry;
pub mod features;
pub mod format;
pub mod geo;
pub mod graph;
pub mod grid;
pub mod import;
pub mod inspect;
pub mod prepared;
pub mod raster;
pub mod split;
pub mod synth;

pub use entry::{DatasetEntry, DatasetSource};
pub use format::{CityDataset, SplitPart, Tile};
pub use graph::{Contiguity, TileGraph};
pub use grid::TileGrid;
pub use prepared::PreparedDataset;

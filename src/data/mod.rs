//! Datasets: the on-disk format, synthetic cities, rasterising, features, splits.

pub mod entry;
pub mod features;
pub mod format;
pub mod geo;
pub mod graph;
pub mod grid;
pub mod import;
pub mod inspect;
pub mod latents;
pub mod prepared;
pub mod raster;
pub mod split;
pub mod synth;

pub use entry::{DatasetEntry, DatasetSource};
pub use format::{CityDataset, SplitPart, Tile};
pub use graph::{Contiguity, TileGraph};
pub use grid::TileGrid;
pub use prepared::PreparedDataset;

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Largest dataset input file read (tiles.csv, pois.csv, a split, an image), in bytes:
/// `$OPENCARBON_MAX_INPUT_BYTES`, default 2 GiB. It keeps a sparse or runaway file from
/// growing a read until the allocator aborts.
pub fn max_input_bytes() -> u64 {
    env_limit("OPENCARBON_MAX_INPUT_BYTES", 2 << 30)
}

/// Largest side of a tile image in pixels: `$OPENCARBON_MAX_IMAGE_SIDE`, default 4096 (a
/// 256 px tile is typical; a huge image in a small PNG would otherwise take gigabytes).
pub fn max_image_side() -> u32 {
    env_limit("OPENCARBON_MAX_IMAGE_SIDE", 4096) as u32
}

fn env_limit(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

/// The largest size an input may have.
#[derive(Debug, Clone, Copy)]
pub enum InputLimit {
    /// A dataset input: `max_input_bytes()`, which the user may raise.
    Dataset,
    /// A configuration file's bound, which cannot be changed (docs/config.md, "Limits").
    Fixed(u64),
}

impl InputLimit {
    pub fn bytes(self) -> u64 {
        match self {
            InputLimit::Dataset => max_input_bytes(),
            InputLimit::Fixed(b) => b,
        }
    }

    fn over(self, size: u64) -> String {
        let max = self.bytes();
        match self {
            InputLimit::Dataset => format!(
                "is {size} bytes, more than the input limit of {max} (set OPENCARBON_MAX_INPUT_BYTES to raise it)"
            ),
            InputLimit::Fixed(_) => format!(
                "is {size} bytes, more than the limit of {max} for this kind of file"
            ),
        }
    }
}

/// Why `path` may not be read as an input within `limit`, if it may not: it must be a
/// regular file (a link to one is fine; a device such as /dev/zero, a FIFO or a directory is
/// not) no larger than the limit.
pub fn check_input_file(path: &Path, limit: InputLimit) -> std::result::Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| {
        if std::fs::symlink_metadata(path).is_ok() {
            format!("is a link to nothing readable ({e})")
        } else {
            format!("cannot read: {e}")
        }
    })?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "a device, FIFO or socket"
        };
        return Err(format!("is not a regular file (it is {what})"));
    }
    if meta.len() > limit.bytes() {
        return Err(limit.over(meta.len()));
    }
    Ok(())
}

/// Read a whole text input within `limit` (`check_input_file`); the read itself is capped
/// too, in case the file grows meanwhile.
pub fn read_capped_string(path: &Path, limit: InputLimit) -> std::result::Result<String, String> {
    check_input_file(path, limit)?;
    let max = limit.bytes();
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut text = String::new();
    f.take(max + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read: {e}"))?;
    if text.len() as u64 > max {
        return Err(format!(
            "grew past the input limit of {max} bytes while being read"
        ));
    }
    Ok(text)
}

/// `check_input_file` with the dataset error (exit 2) of `path`.
pub fn check_dataset_input(path: &Path) -> Result<()> {
    check_input_file(path, InputLimit::Dataset).map_err(|m| Error::dataset(path, None, m))
}

//! A job's dataset as the experiment names it: the shared type of config (which parses it),
//! train (which prepares it) and the models (which read its name).

use std::path::PathBuf;

use serde::Serialize;

/// Where a job's dataset comes from; part of the job's identity (and so of its run id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum DatasetSource {
    /// A synthetic benchmark city, generated into the cache on first use.
    Preset {
        preset: String,
        seed: u64,
        generator: u32,
    },
    /// A dataset directory on disk.
    Path { path: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetEntry {
    /// The dataset's name (the preset's, or dataset.yaml's), unique within an experiment.
    pub name: String,
    pub source: DatasetSource,
}

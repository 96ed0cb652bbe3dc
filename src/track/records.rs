//! The records a finished run leaves that other runs and `report` read back.

use std::fs;
use std::path::Path;

use serde::Serialize;

use super::{is_done, is_run_id};
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// What `metrics.json` holds: the job's identity and its metrics per part.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RunMetrics {
    pub run_id: String,
    /// Position of the job in its experiment's plan; orders the rows and columns of tables.
    pub job_index: usize,
    pub dataset: String,
    pub model: String,
    pub model_kind: String,
    pub split: String,
    pub seed: u64,
    pub train: Option<Metrics>,
    pub valid: Option<Metrics>,
    pub test: Option<Metrics>,
    pub fit_seconds: f64,
}

/// Read `metrics.json` of every finished run under `experiment_dir`, in plan order. Only
/// run-id directories count: attempt (`.tmp-*`), trash and resume directories never do, even
/// when an attempt was killed after writing its DONE marker.
pub fn collect_runs(experiment_dir: &Path) -> Result<Vec<RunMetrics>> {
    let mut runs = Vec::new();
    let entries = fs::read_dir(experiment_dir).map_err(|e| Error::io(experiment_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(experiment_dir, e))?;
        let dir = entry.path();
        if !is_run_id(&entry.file_name().to_string_lossy()) || !dir.is_dir() || !is_done(&dir) {
            continue;
        }
        let file = dir.join("metrics.json");
        let text = fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
        let m: RunMetrics = serde_json::from_str(&text).map_err(|e| {
            Error::dataset(
                &file,
                Some(e.line() as u64),
                format!("not a metrics file: {e}"),
            )
        })?;
        runs.push(m);
    }
    runs.sort_by_key(|r| (r.job_index, r.run_id.clone()));
    Ok(runs)
}

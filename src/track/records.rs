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

#[cfg(test)]
mod tests {
    use super::*;

    /// A run directory written before `record_version` existed (layout 1, committed under
    /// tests/fixtures) still counts as finished and reads back; hidden attempt directories
    /// holding DONE never count.
    #[test]
    fn a_layout_1_run_still_reads_and_attempts_never_count() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs_v1");
        let runs = collect_runs(&fixture).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].run_id, "b62b6afb0b");

        let exp = tempfile::tempdir().unwrap();
        let copy = |to: &Path| {
            fs::create_dir_all(to).unwrap();
            for e in fs::read_dir(fixture.join("b62b6afb0b")).unwrap() {
                let p = e.unwrap().path();
                fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
            }
        };
        copy(&exp.path().join("b62b6afb0b"));
        copy(&exp.path().join(".tmp-b62b6afb0b-4194305"));
        copy(&exp.path().join(".trash-b62b6afb0b-4194305"));
        assert_eq!(collect_runs(exp.path()).unwrap().len(), 1);
        // A layout-1 run that lost metrics.json (an interrupted delete) is not finished.
        fs::remove_file(exp.path().join("b62b6afb0b/metrics.json")).unwrap();
        assert!(collect_runs(exp.path()).unwrap().is_empty());
    }
}

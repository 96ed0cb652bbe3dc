//! The typed records of a run directory, the one place they are defined, written and read:
//! `config.yaml` (`RunConfig`), `manifest.json` (`Manifest`), `metrics.json` (`RunMetrics`),
//! `model.json` (free-form per model; typed by the models that read it back), and the CSVs
//! `predictions.csv` and `split.csv` (`PredictionRow`, `SplitRow`, through `csv`).
//!
//! Every struct reads older files: a field added later has a serde default, and
//! `record_version` (in the manifest) says which records a finished run must hold
//! (`super::is_done`). Run directories written before the version existed are version 1.

use std::fs;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{is_done, is_run_id};
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// What `metrics.json` holds: the job's identity and its metrics per part.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMetrics {
    pub run_id: String,
    /// Position of the job in its experiment's plan; orders the rows and columns of tables.
    #[serde(default)]
    pub job_index: usize,
    pub dataset: String,
    pub model: String,
    #[serde(default)]
    pub model_kind: String,
    pub split: String,
    pub seed: u64,
    #[serde(default)]
    pub train: Option<Metrics>,
    #[serde(default)]
    pub valid: Option<Metrics>,
    #[serde(default)]
    pub test: Option<Metrics>,
    #[serde(default)]
    pub fit_seconds: f64,
    /// What the model is, as typed facts. Absent from runs written before it existed; the
    /// readers (`collect_runs`, `collect_summaries_of`) derive it from their config.yaml.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<ModelFacts>,
}

impl RunMetrics {
    /// The model's facts (`ModelFacts::default()`, a model of no family, for a record read
    /// without its config).
    pub fn facts(&self) -> ModelFacts {
        self.facts.clone().unwrap_or_default()
    }
}

/// What a run's model is, as typed facts read from its resolved configuration, for every
/// consumer that must tell models apart (the headline, figures, GraphSAGE's embeddings
/// lookup, scripts), never parsed from a display label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelFacts {
    /// The model's `kind` (`opencarbon`, `lasso`, ...).
    pub family: String,
    /// The model's modules switched off (OpenCarbon's `se`, `contrastive`), in field order.
    pub modules_off: Vec<String>,
    /// The inputs switched off (`image`, `poi`, `neighborhood`).
    pub inputs_off: Vec<String>,
}

/// Boolean model fields that switch a module of the model on or off (an ablation), as
/// opposed to the training recipe.
pub const MODULE_SWITCHES: [&str; 2] = ["se", "contrastive"];

impl ModelFacts {
    /// The facts of a model of `family` (its `Model::KIND`, metrics.json's `model_kind`; the
    /// configuration's own `kind` tag is the config enum's variant name, e.g. `open_carbon`)
    /// from its resolved job configuration (config.yaml's `job`).
    pub fn of_job(family: &str, job: &serde_json::Value) -> ModelFacts {
        let spec = &job["model"];
        let off = |map: &serde_json::Value, names: &[&str]| -> Vec<String> {
            names
                .iter()
                .filter(|n| map[**n].as_bool() == Some(false))
                .map(|n| n.to_string())
                .collect()
        };
        ModelFacts {
            family: family.to_string(),
            modules_off: off(&spec["model"], &MODULE_SWITCHES),
            inputs_off: off(&spec["inputs"], &["image", "poi", "neighborhood"]),
        }
    }

    /// Every module and input of the model on.
    pub fn is_full(&self) -> bool {
        self.modules_off.is_empty() && self.inputs_off.is_empty()
    }

    /// A full OpenCarbon (whatever its training recipe): the model the headline compares
    /// with the baselines, and whose embeddings GraphSAGE's `embeddings_from` reads.
    pub fn is_full_opencarbon(&self) -> bool {
        self.is_opencarbon() && self.is_full()
    }

    /// An OpenCarbon, full or ablated.
    pub fn is_opencarbon(&self) -> bool {
        self.family == "opencarbon"
    }
}

/// Give a run read from `dir` its facts from its config.yaml when its metrics.json predates
/// them.
fn with_facts(mut run: RunMetrics, dir: &Path) -> RunMetrics {
    if run.facts.is_none() {
        // A layout-1 run may lack config.yaml: then its family alone is known.
        let job = read_config::<serde_json::Value>(dir)
            .map(|c| c.job)
            .unwrap_or_default();
        fill_facts(&mut run, &job);
    }
    run
}

/// Give `run` the facts of its job `job` when its metrics.json predates them.
fn fill_facts(run: &mut RunMetrics, job: &serde_json::Value) {
    if run.facts.is_none() {
        run.facts = Some(ModelFacts::of_job(&run.model_kind, job));
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Done,
    #[default]
    Failed,
}

fn legacy_version() -> u32 {
    1
}

/// `manifest.json`: where and how a run was made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// `super::RECORD_VERSION` of the layout (1 for directories written before it existed).
    #[serde(default = "legacy_version")]
    pub record_version: u32,
    pub run_id: String,
    #[serde(default)]
    pub experiment: String,
    pub status: RunStatus,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub crate_version: String,
    /// The commit of the source the program was built from (`provenance`); before record
    /// version 2, of the working directory the program ran in.
    #[serde(default)]
    pub git_commit: Option<String>,
    /// Whether that source differed from the commit (untracked files included since version
    /// 2); the diff is the run's `diff.patch`.
    #[serde(default)]
    pub git_dirty: Option<bool>,
    #[serde(default)]
    pub build: Option<BuildStamp>,
    #[serde(default)]
    pub host: String,
    /// CPU model, and the threads the process used (`OPENCARBON_THREADS`, else every core).
    #[serde(default)]
    pub cpu: String,
    #[serde(default)]
    pub threads: usize,
    /// Where the neural models ran (`cpu`, `cuda:N`); tabular models always use the CPU.
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub started: String,
    #[serde(default)]
    pub ended: String,
    #[serde(default)]
    pub wall_seconds: f64,
    #[serde(default)]
    pub datasets: Vec<DatasetStamp>,
}

/// The build of the program that made a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BuildStamp {
    pub commit: Option<String>,
    pub dirty: Option<bool>,
    pub rustc: String,
    /// Hash of the executable (`super::build_id`): changes with every build.
    pub executable: String,
}

impl BuildStamp {
    /// This program's build.
    pub fn current() -> BuildStamp {
        use super::provenance as p;
        BuildStamp {
            commit: p::build_commit().map(str::to_string),
            dirty: p::build_dirty(),
            rustc: p::rustc_version().to_string(),
            executable: super::build_id().to_string(),
        }
    }
}

/// Which dataset a run read, and its content fingerprint at the time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DatasetStamp {
    pub name: String,
    pub path: String,
    pub fingerprint: String,
    /// The emission's unit (dataset.yaml's `target.unit`). Absent from runs written before
    /// it was recorded: `unit_of` then reads it from the dataset, if it is still there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

impl DatasetStamp {
    /// The dataset's emission unit: the recorded one, else dataset.yaml's `target.unit` at the
    /// recorded path (relative to where the run ran, usually where `report` runs too).
    pub fn unit_of(&self) -> Option<String> {
        if self.unit.is_some() {
            return self.unit.clone();
        }
        let text = fs::read_to_string(Path::new(&self.path).join("dataset.yaml")).ok()?;
        let meta: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
        meta.get("target")?
            .get("unit")?
            .as_str()
            .map(str::to_string)
    }
}

/// `config.yaml`: the resolved job. `J` is the job configuration's type for its writer and
/// for readers that know it; `serde_json::Value` for readers that only need its fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig<J> {
    pub experiment: String,
    pub run_id: String,
    pub job: J,
}

/// One row of `predictions.csv`: every tile the job used, with its part, log target and
/// prediction.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PredictionRow {
    pub dataset: String,
    pub x: u32,
    pub y: u32,
    pub split: String,
    pub target: f64,
    pub prediction: f64,
}

/// One row of `split.csv`: which part each tile of the job was assigned to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SplitRow {
    pub dataset: String,
    pub x: u32,
    pub y: u32,
    pub split: String,
}

/// One row of OpenCarbon's `modality_weights.csv`: the centre fusion's weights per tile.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModalityWeightRow {
    pub dataset: String,
    pub x: u32,
    pub y: u32,
    pub split: String,
    pub image_weight: f32,
    pub poi_weight: f32,
}

/// One row of OpenCarbon's `poi_category_importance.csv` (SE-weighted share per category).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CategoryImportanceRow {
    pub category: String,
    pub importance: f64,
}

/// OpenCarbon's `embeddings.csv`: per tile (dataset, x, y) its grid embedding, in columns
/// `e0`, `e1`, ….
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmbeddingTable {
    pub rows: Vec<(String, u32, u32, Vec<f64>)>,
}

impl EmbeddingTable {
    pub fn csv_text(&self) -> Result<Vec<u8>> {
        let dims = self.rows.first().map_or(0, |r| r.3.len());
        let mut w = csv::Writer::from_writer(Vec::new());
        let header: Vec<String> = ["dataset", "x", "y"]
            .into_iter()
            .map(str::to_string)
            .chain((0..dims).map(|k| format!("e{k}")))
            .collect();
        let internal = |e: csv::Error| Error::Internal(e.to_string());
        w.write_record(&header).map_err(internal)?;
        for (d, x, y, e) in &self.rows {
            let record: Vec<String> = [d.clone(), x.to_string(), y.to_string()]
                .into_iter()
                .chain(e.iter().map(|v| v.to_string()))
                .collect();
            w.write_record(&record).map_err(internal)?;
        }
        w.into_inner().map_err(|e| Error::Internal(e.to_string()))
    }

    /// Read `embeddings.csv` of a run directory.
    pub fn read(dir: &Path) -> Result<EmbeddingTable> {
        let file = dir.join("embeddings.csv");
        let bad = |line: Option<u64>, e: String| parse_error(&file, line, "embeddings.csv", e);
        let mut r = csv::Reader::from_path(&file).map_err(|e| bad(None, e.to_string()))?;
        let dims = r.headers().map_err(|e| bad(Some(1), e.to_string()))?.len();
        if dims < 3 {
            return Err(bad(Some(1), "expected dataset,x,y,e0,…".into()));
        }
        let mut rows = Vec::new();
        for record in r.records() {
            let record = record.map_err(|e| bad(e.position().map(|p| p.line()), e.to_string()))?;
            let line = record.position().map(|p| p.line());
            let number = |i: usize| -> Result<f64> {
                record
                    .get(i)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| bad(line, format!("column {} is not a number", i + 1)))
            };
            let e = (3..dims).map(number).collect::<Result<Vec<f64>>>()?;
            rows.push((
                record.get(0).unwrap_or_default().to_string(),
                number(1)? as u32,
                number(2)? as u32,
                e,
            ));
        }
        Ok(EmbeddingTable { rows })
    }
}

fn parse_error(file: &Path, line: Option<u64>, what: &str, e: impl std::fmt::Display) -> Error {
    Error::dataset(file, line, format!("not a {what} file: {e}"))
}

/// Read a JSON record of a run directory.
pub fn read_json<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<T> {
    let file = dir.join(name);
    let text = fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
    serde_json::from_str(&text).map_err(|e| parse_error(&file, Some(e.line() as u64), name, e))
}

/// Read `config.yaml` of a run directory.
pub fn read_config<J: DeserializeOwned>(dir: &Path) -> Result<RunConfig<J>> {
    let file = dir.join("config.yaml");
    let text = fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
    serde_yaml::from_str(&text).map_err(|e| {
        let line = e.location().map(|l| l.line() as u64);
        parse_error(&file, line, "config.yaml", e)
    })
}

/// `config.yaml`'s text. Through JSON, so keys are sorted at every level (the text, and so
/// the resume key that hashes it, does not depend on struct field order).
pub fn config_yaml<J: Serialize>(config: &RunConfig<J>) -> Result<String> {
    let value = serde_json::to_value(config).map_err(|e| Error::Internal(e.to_string()))?;
    serde_yaml::to_string(&value).map_err(|e| Error::Internal(e.to_string()))
}

/// Rows as CSV text with a header.
pub fn csv_text<T: Serialize>(rows: &[T]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).map_err(|e| Error::Internal(e.to_string()))?;
    }
    w.into_inner().map_err(|e| Error::Internal(e.to_string()))
}

/// Read a CSV record of a run directory.
pub fn read_csv<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<Vec<T>> {
    let file = dir.join(name);
    let mut r = csv::Reader::from_path(&file).map_err(|e| parse_error(&file, None, name, e))?;
    r.deserialize()
        .map(|row| {
            row.map_err(|e| {
                let line = e.position().map(|p| p.line());
                parse_error(&file, line, name, e)
            })
        })
        .collect()
}

/// Read `metrics.json` of every finished run under `experiment_dir`, in plan order. Only
/// run-id directories count: attempt (`.tmp-*`), trash and resume directories never do, even
/// when an attempt was killed after writing its DONE marker.
pub fn collect_runs(experiment_dir: &Path) -> Result<Vec<RunMetrics>> {
    let mut runs = finished_run_dirs(experiment_dir)?
        .iter()
        .map(|d| Ok(with_facts(read_json::<RunMetrics>(d, "metrics.json")?, d)))
        .collect::<Result<Vec<_>>>()?;
    runs.sort_by_key(|r| (r.job_index, r.run_id.clone()));
    Ok(runs)
}

/// The directories of every finished run under `experiment_dir`.
pub fn finished_run_dirs(experiment_dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut dirs = Vec::new();
    let entries = fs::read_dir(experiment_dir).map_err(|e| Error::io(experiment_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(experiment_dir, e))?;
        let dir = entry.path();
        if is_run_id(&entry.file_name().to_string_lossy()) && dir.is_dir() && is_done(&dir) {
            dirs.push(dir);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// How a report's headline chooses each model's configuration and the best baseline
/// (`select:` in the experiment, `report --select`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Select {
    /// By mean validation R²; test R² is only reported.
    #[default]
    Valid,
    /// By mean test R² (the paper's definition; optimistic).
    Test,
}

/// What a report needs of one finished run: its metrics, its resolved hyperparameters
/// (`run_params`) and the build that made it.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub metrics: RunMetrics,
    pub params: Vec<(String, ParamValue)>,
    pub commit: Option<String>,
    pub dirty: Option<bool>,
    /// (dataset name, emission unit) of each dataset the run read whose unit is known.
    pub units: Vec<(String, String)>,
}

/// `RunSummary` of every finished run under `experiment_dir`, in plan order.
pub fn collect_summaries(experiment_dir: &Path) -> Result<Vec<RunSummary>> {
    collect_summaries_of(experiment_dir, None)
}

/// `RunSummary` of the finished runs under `experiment_dir` that count, in plan order: a run
/// whose directory name is not the run id it recorded (a copied directory) never counts, and
/// given the plan's run ids (`plan`), neither does a run that is not one of its jobs (a model
/// since removed from the experiment). Each one left out is named in a warning.
pub fn collect_summaries_of(
    experiment_dir: &Path,
    plan: Option<&std::collections::BTreeSet<String>>,
) -> Result<Vec<RunSummary>> {
    let mut out = Vec::new();
    for dir in finished_run_dirs(experiment_dir)? {
        let metrics: RunMetrics = read_json(&dir, "metrics.json")?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.as_deref() != Some(metrics.run_id.as_str()) {
            super::progress::warn(&format!(
                "{}: not counted: the directory is not named after the run it holds ({}): a copy?",
                dir.display(),
                metrics.run_id
            ));
            continue;
        }
        if plan.is_some_and(|ids| !ids.contains(&metrics.run_id)) {
            super::progress::warn(&format!(
                "{}: not counted: not a job of this experiment (a model or seed since removed?)",
                dir.display()
            ));
            continue;
        }
        let manifest: Manifest = read_json(&dir, "manifest.json")?;
        let config: RunConfig<serde_json::Value> = read_config(&dir)?;
        if let Some(why) = identity_mismatch(&dir, &metrics.run_id, &config.job) {
            super::progress::warn(&format!("{}: not counted: {why}", dir.display()));
            continue;
        }
        let mut metrics = metrics;
        fill_facts(&mut metrics, &config.job);
        out.push(RunSummary {
            params: run_params(&metrics, &config.job),
            metrics,
            commit: manifest.git_commit,
            dirty: manifest.git_dirty,
            units: manifest
                .datasets
                .iter()
                .filter_map(|d| Some((d.name.clone(), d.unit_of()?)))
                .collect(),
        });
    }
    out.sort_by_key(|r| (r.metrics.job_index, r.metrics.run_id.clone()));
    Ok(out)
}

/// Why a run is not the job its id names, if it is not: its identity file (`JOB_IDENTITY`,
/// written since issue 26; older runs have none and are not checked) must hash to the run id,
/// and config.yaml's job must hold the same values (an edited config.yaml, or a run id
/// renamed by hand, fails).
fn identity_mismatch(dir: &Path, run_id: &str, job: &serde_json::Value) -> Option<String> {
    let text = fs::read_to_string(dir.join(super::JOB_IDENTITY)).ok()?;
    if super::run_id_of(&text) != run_id {
        return Some(format!(
            "its {} hashes to {}, not to its run id {run_id}",
            super::JOB_IDENTITY,
            super::run_id_of(&text)
        ));
    }
    // Parsed by the YAML reader that read config.yaml (JSON is YAML): serde_json's own float
    // parsing may land one ULP off for 17-digit values (a log-uniform sample), the YAML
    // reader's is exact, so both sides hold the same f64.
    match serde_yaml::from_str::<serde_json::Value>(&text) {
        Ok(identity) if &identity == job => None,
        _ => Some(format!(
            "its config.yaml does not hold the job its {} (and run id) names: edited?",
            super::JOB_IDENTITY
        )),
    }
}

/// A resolved hyperparameter's value, for HParams, summary.csv and MLflow alike.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Number(f64),
    Flag(bool),
    Text(String),
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Number(v) => write!(f, "{v}"),
            ParamValue::Flag(b) => write!(f, "{b}"),
            ParamValue::Text(t) => write!(f, "{t}"),
        }
    }
}

/// Every resolved hyperparameter and input switch of a run, by one rule for every consumer:
/// `dataset`, `split`, `seed`, `model` (label), `kind`, `image_size`, `poi_raster_size`,
/// `input.image|poi|neighborhood`, and `model.<field>` for each field of the model's
/// configuration (lists and maps as compact JSON; null fields left out). `job` is the job of
/// `config.yaml` as JSON.
pub fn run_params(run: &RunMetrics, job: &serde_json::Value) -> Vec<(String, ParamValue)> {
    job_params(
        &run.dataset,
        &run.split,
        run.seed,
        &run.model,
        &run.model_kind,
        job,
    )
}

/// `run_params` of a job before it has run (`plan`): its dataset and split labels, seed,
/// model label and kind, and its resolved configuration.
pub fn job_params(
    dataset: &str,
    split: &str,
    seed: u64,
    label: &str,
    kind: &str,
    job: &serde_json::Value,
) -> Vec<(String, ParamValue)> {
    use serde_json::Value;
    let mut out = vec![
        ("dataset".to_string(), ParamValue::Text(dataset.into())),
        ("split".into(), ParamValue::Text(split.into())),
        ("seed".into(), ParamValue::Number(seed as f64)),
        ("model".into(), ParamValue::Text(label.into())),
        ("kind".into(), ParamValue::Text(kind.into())),
    ];
    for key in ["image_size", "poi_raster_size"] {
        if let Some(v) = job[key].as_f64() {
            out.push((key.into(), ParamValue::Number(v)));
        }
    }
    if let Value::Object(inputs) = &job["model"]["inputs"] {
        for (k, v) in inputs {
            if let Some(b) = v.as_bool() {
                out.push((format!("input.{k}"), ParamValue::Flag(b)));
            }
        }
    }
    if let Value::Object(fields) = &job["model"]["model"] {
        for (k, v) in fields {
            let value = match v {
                _ if k == "kind" => None,
                Value::Number(n) => n.as_f64().map(ParamValue::Number),
                Value::Bool(b) => Some(ParamValue::Flag(*b)),
                Value::String(s) => Some(ParamValue::Text(s.clone())),
                Value::Null => None,
                other => Some(ParamValue::Text(other.to_string())),
            };
            if let Some(value) = value {
                out.push((format!("model.{k}"), value));
            }
        }
    }
    out
}

/// The hyperparameters as the viewers (TensorBoard's HParams, MLflow) name them: a model
/// field is `<kind>.<field>`, so a LASSO alpha and OpenCarbon's contrastive alpha never share
/// a column (one column would drop the runs of every other model from a parallel-coordinates
/// view); summary.csv keeps `param.model.<field>`.
pub fn viewer_params(params: &[(String, ParamValue)]) -> Vec<(String, ParamValue)> {
    let kind = params
        .iter()
        .find(|(k, _)| k == "kind")
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| "model".into());
    params
        .iter()
        .map(|(k, v)| match k.strip_prefix("model.") {
            Some(field) => (format!("{kind}.{field}"), v.clone()),
            None => (k.clone(), v.clone()),
        })
        .collect()
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
        // Its facts, which its metrics.json predates, come from its config.yaml.
        assert_eq!(
            runs[0].facts,
            Some(ModelFacts {
                family: "lasso".into(),
                modules_off: vec![],
                inputs_off: vec![],
            })
        );
        let dir = fixture.join("b62b6afb0b");
        let manifest: Manifest = read_json(&dir, "manifest.json").unwrap();
        assert_eq!(manifest.record_version, 1);
        assert_eq!(manifest.status, RunStatus::Done);
        let config: RunConfig<serde_json::Value> = read_config(&dir).unwrap();
        assert_eq!(config.run_id, "b62b6afb0b");
        let params = run_params(&runs[0], &config.job);
        assert!(params.iter().any(|(k, _)| k == "model.alpha"), "{params:?}");
        let predictions: Vec<PredictionRow> = read_csv(&dir, "predictions.csv").unwrap();
        let split: Vec<SplitRow> = read_csv(&dir, "split.csv").unwrap();
        assert_eq!(predictions.len(), split.len());

        let exp = tempfile::tempdir().unwrap();
        let copy = |to: &Path| {
            fs::create_dir_all(to).unwrap();
            for e in fs::read_dir(&dir).unwrap() {
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

    /// The facts of a job are read from its configuration, never from a label: an
    /// OpenCarbon without SE or without the neighbourhood is not full, one with another
    /// recipe is; a model with both modalities off is not full either (its label said
    /// nothing).
    #[test]
    fn model_facts_come_from_the_configuration() {
        let facts = |(kind, json): (String, serde_json::Value)| ModelFacts::of_job(&kind, &json);
        let job = |kind: &str, se: bool, image: bool, poi: bool, nb: bool| {
            let json = serde_json::json!({"model": {
                "model": {"kind": "open_carbon", "se": se, "contrastive": true, "lr": 0.002},
                "inputs": {"image": image, "poi": poi, "neighborhood": nb}}});
            (kind.to_string(), json)
        };
        let full = facts(job("opencarbon", true, true, true, true));
        assert!(full.is_full_opencarbon());
        let no_se = facts(job("opencarbon", false, true, true, true));
        assert_eq!(no_se.modules_off, ["se"]);
        assert!(!no_se.is_full_opencarbon());
        let no_nb = facts(job("opencarbon", true, true, true, false));
        assert_eq!(no_nb.inputs_off, ["neighborhood"]);
        assert!(!no_nb.is_full_opencarbon());
        let blind = facts(job("opencarbon", true, false, false, true));
        assert_eq!(blind.inputs_off, ["image", "poi"]);
        assert!(!blind.is_full());
        let lasso = facts(job("lasso", true, true, true, true));
        assert!(lasso.is_full() && !lasso.is_full_opencarbon());
    }

    /// A run's identity file and its config.yaml agree for every float, including the
    /// 17-digit values a log-uniform search draws (serde_json's fast float parsing reads some
    /// of them one ULP off; the check reads job.json with the YAML reader), and an edited
    /// config.yaml or a foreign identity is caught.
    #[test]
    fn a_run_identity_matches_its_config_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let job = serde_json::json!({"model": {"model": {"kind": "lasso",
            "alpha": 0.0009198952848215511, "tol": 1e-6, "max_iter": 10000_u64}},
            "fractions": [0.6, 0.2, 0.2], "seed": 18446744073709551615_u64});
        let text = serde_json::to_string(&job).unwrap();
        let id = crate::track::run_id_of(&text);
        let yaml = config_yaml(&RunConfig {
            experiment: "e".into(),
            run_id: id.clone(),
            job: &job,
        })
        .unwrap();
        fs::write(dir.path().join("config.yaml"), &yaml).unwrap();
        fs::write(dir.path().join(crate::track::JOB_IDENTITY), &text).unwrap();
        let config: RunConfig<serde_json::Value> = read_config(dir.path()).unwrap();
        assert_eq!(identity_mismatch(dir.path(), &id, &config.job), None);
        assert!(identity_mismatch(dir.path(), "0000000000", &config.job).is_some());
        let edited = yaml.replace("0.0009198952848215511", "0.001");
        fs::write(dir.path().join("config.yaml"), edited).unwrap();
        let config: RunConfig<serde_json::Value> = read_config(dir.path()).unwrap();
        assert!(identity_mismatch(dir.path(), &id, &config.job).is_some());
    }
}

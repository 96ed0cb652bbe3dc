//! `opencarbon export mlflow`: an experiment's finished runs in MLflow's file-store layout
//! (`mlruns/`), so users of MLflow see them in `mlflow ui`. The format, as measured against
//! the `mlflow` package, is ../shared/spec/mlflow-file-store.md; scripts/check_mlflow.py
//! reads an export back with MLflow itself.
//!
//! One MLflow experiment per opencarbon experiment (an integer id; an existing one of the
//! same name is reused; tagged `mlflow.experimentKind: custom_model_development`, so MLflow 3's
//! UI opens it on its runs rather than on an empty traces page), one MLflow run per finished
//! run that counts (`records::collect_summaries`) with our run id as its id and its short
//! name (`names::run_names`) as its name: the resolved hyperparameters (`records::viewer_params`) as
//! params; the final metrics (of the model kept: for a neural run the best checkpoint) under
//! their summary.csv names, the early stopping's `best_epoch` and `best_valid_r2`, and every
//! per-epoch TensorBoard scalar as a history under `epoch/` (`epoch/valid/r2` is the last
//! epoch's curve, `valid_r2` the kept model's score); the build's commit as a tag; every file
//! of the run directory (records, predictions, checkpoint, embeddings and interpretability
//! CSVs, event files) and the experiment's figures of the run's split and dataset as
//! artifacts. Start and end times are in milliseconds (the end is the start plus the run's
//! measured wall time).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use protobuf::Message;

use super::records::{self, Manifest, RunMetrics};
use super::{atomic_write, fault, temp_path};
use crate::error::{Error, Result};

/// What an export wrote.
pub struct Exported {
    pub experiment_id: String,
    pub dir: PathBuf,
    pub runs: usize,
    pub histories: usize,
}

/// MLflow's run status code for a finished run.
const FINISHED: u32 = 3;

/// The prefix of the per-epoch metric histories (TensorBoard's scalar tags under it).
pub const EPOCH_PREFIX: &str = "epoch/";

/// The experiment tag MLflow 3's UI reads to open an experiment on its runs.
const EXPERIMENT_KIND: (&str, &str) = ("mlflow.experimentKind", "custom_model_development");

/// A YAML double-quoted scalar (JSON's string syntax is valid YAML).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

fn millis(rfc3339: &str) -> u64 {
    humantime::parse_rfc3339(rfc3339)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

fn file_uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// The id of the MLflow experiment `name` in `store`: the existing one of that name, else the
/// next free integer (from 1; 0 is MLflow's default experiment).
fn experiment_id(store: &Path, name: &str) -> Result<String> {
    let mut next = 1u64;
    for entry in fs::read_dir(store).map_err(io(store))?.flatten() {
        let Ok(id) = entry.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        next = next.max(id + 1);
        let meta = fs::read_to_string(entry.path().join("meta.yaml")).unwrap_or_default();
        let named: Option<String> = serde_yaml::from_str::<serde_yaml::Value>(&meta)
            .ok()
            .and_then(|v| v["name"].as_str().map(str::to_string));
        if named.as_deref() == Some(name) {
            return Ok(id.to_string());
        }
    }
    Ok(next.to_string())
}

/// Export every finished run under `experiment_dir` (experiment `name`) into `store`.
pub fn export(experiment_dir: &Path, name: &str, store: &Path) -> Result<Exported> {
    fs::create_dir_all(store).map_err(io(store))?;
    let store = store.canonicalize().map_err(io(store))?;
    let id = experiment_id(&store, name)?;
    let exp = store.join(&id);
    fs::create_dir_all(exp.join("tags")).map_err(io(&exp))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    atomic_write(
        &exp.join("tags").join(EXPERIMENT_KIND.0),
        EXPERIMENT_KIND.1.as_bytes(),
    )?;
    if !exp.join("meta.yaml").is_file() {
        let meta = format!(
            "artifact_location: {}\ncreation_time: {now}\nexperiment_id: {}\nlast_update_time: {now}\nlifecycle_stage: active\nname: {}\n",
            quoted(&file_uri(&exp)),
            quoted(&id),
            quoted(name)
        );
        atomic_write(&exp.join("meta.yaml"), meta.as_bytes())?;
    }
    let mut exported = Exported {
        experiment_id: id.clone(),
        dir: exp.clone(),
        runs: 0,
        histories: 0,
    };
    // The runs that count (`records::collect_summaries`), each under its short name.
    let summaries = records::collect_summaries(experiment_dir)?;
    let names = super::names::names_of(&summaries);
    for (summary, name) in summaries.iter().zip(&names) {
        let run_dir = experiment_dir.join(&summary.metrics.run_id);
        exported.histories += export_run(&run_dir, summary, name, &exp, &id)?;
        exported.runs += 1;
    }
    Ok(exported)
}

/// One run, written into a temp directory and renamed over an earlier export of it. Returns
/// the number of per-epoch metric histories.
fn export_run(
    run_dir: &Path,
    summary: &records::RunSummary,
    run_name: &str,
    exp: &Path,
    experiment_id: &str,
) -> Result<usize> {
    let metrics = &summary.metrics;
    let manifest: Manifest = records::read_json(run_dir, "manifest.json")?;
    let final_dir = exp.join(&metrics.run_id);
    let tmp = temp_path(&final_dir);
    for sub in ["params", "metrics", "tags", "artifacts"] {
        fs::create_dir_all(tmp.join(sub)).map_err(io(&tmp))?;
    }
    let start = millis(&manifest.started);
    let end = start + (manifest.wall_seconds * 1000.0).round().max(0.0) as u64;
    let meta = format!(
        "artifact_uri: {}\nend_time: {end}\nentry_point_name: ''\nexperiment_id: {}\nlifecycle_stage: active\nrun_id: {id}\nrun_name: {}\nrun_uuid: {id}\nsource_name: ''\nsource_type: 4\nsource_version: ''\nstart_time: {start}\nstatus: {FINISHED}\ntags: []\nuser_id: \"opencarbon\"\ndeleted_time: null\n",
        quoted(&file_uri(&final_dir.join("artifacts"))),
        quoted(experiment_id),
        quoted(run_name),
        id = quoted(&metrics.run_id),
    );
    let write = |rel: &str, text: &str| -> Result<()> {
        let p = tmp.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        fs::write(&p, text).map_err(io(&p))
    };
    write("meta.yaml", &meta)?;
    for (key, value) in records::viewer_params(&summary.params) {
        write(&format!("params/{key}"), &value.to_string())?;
    }
    let mut tags = vec![
        ("mlflow.runName", run_name.to_string()),
        ("mlflow.user", "opencarbon".to_string()),
        ("opencarbon.run_id", metrics.run_id.clone()),
        ("opencarbon.experiment", manifest.experiment.clone()),
    ];
    if let Some(commit) = &manifest.git_commit {
        tags.push(("mlflow.source.git.commit", commit.clone()));
    }
    if let Some(dirty) = manifest.git_dirty {
        tags.push(("opencarbon.dirty", dirty.to_string()));
    }
    for (key, value) in tags {
        write(&format!("tags/{key}"), &value)?;
    }
    // Final metrics: one value each at step 0, stamped with the run's end.
    for (part, m) in [
        ("train", &metrics.train),
        ("valid", &metrics.valid),
        ("test", &metrics.test),
    ] {
        let Some(m) = m else { continue };
        for name in crate::metrics::METRIC_NAMES {
            if let Some(v) = m.get(name) {
                write(&format!("metrics/{part}_{name}"), &format!("{end} {v} 0\n"))?;
            }
        }
    }
    write(
        "metrics/fit_seconds",
        &format!("{end} {} 0\n", metrics.fit_seconds),
    )?;
    let model: serde_json::Value = records::read_json(run_dir, "model.json").unwrap_or_default();
    for (tag, key) in super::tensorboard::BEST_CHECKPOINT_TAGS {
        if let Some(v) = model.get(key).and_then(|v| v.as_f64()) {
            let name = tag.trim_start_matches("metrics/");
            write(&format!("metrics/{name}"), &format!("{end} {v} 0\n"))?;
        }
    }
    let histories = epoch_scalars(run_dir)?;
    for (tag, points) in &histories {
        let lines: String = points
            .iter()
            .map(|(step, wall, v)| format!("{wall} {v} {step}\n"))
            .collect();
        write(&format!("metrics/{EPOCH_PREFIX}{tag}"), &lines)?;
    }
    copy_artifacts(run_dir, metrics, &tmp.join("artifacts"))?;
    fault::point("replace an exported MLflow run");
    match fs::remove_dir_all(&final_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&final_dir, e)),
        _ => {}
    }
    fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
    Ok(histories.len())
}

/// A run's artifacts: every file of its directory (event files under `tensorboard/`, so
/// `tensorboard --logdir` can be pointed there), and the experiment's figures of the run's
/// split and dataset (`<figure>_<split>_<dataset>.png`) under `figures/`.
fn copy_artifacts(run_dir: &Path, metrics: &RunMetrics, to: &Path) -> Result<()> {
    for entry in fs::read_dir(run_dir).map_err(io(run_dir))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.path().is_file() || name == super::DONE_MARKER {
            continue;
        }
        let dest = if name.starts_with("events.out.tfevents.") {
            to.join("tensorboard").join(&name)
        } else {
            to.join(&name)
        };
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        fs::copy(entry.path(), &dest).map_err(io(&dest))?;
    }
    let figures = run_dir.parent().unwrap_or(Path::new(".")).join("figures");
    let suffix = format!("_{}_{}.png", metrics.split, metrics.dataset);
    if let Ok(entries) = fs::read_dir(&figures) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(&suffix) {
                let dest = to.join("figures").join(&name);
                fs::create_dir_all(to.join("figures")).map_err(io(to))?;
                fs::copy(entry.path(), &dest).map_err(io(&dest))?;
            }
        }
    }
    Ok(())
}

/// One scalar tag's (step, wall time in ms, value) points.
pub type ScalarHistory = Vec<(i64, u64, f64)>;

/// (step, wall time in ms, value) per scalar tag of a run's TensorBoard event files, the
/// final `metrics/*` scalars left out (exported as final metrics). As TensorBoard reads them:
/// files in name order, and a SessionLog START at step s (a resumed run) drops what earlier
/// records hold at steps ≥ s.
pub fn epoch_scalars(run_dir: &Path) -> Result<BTreeMap<String, ScalarHistory>> {
    use tensorboard_proto::event::{Event, SessionLog_SessionStatus};
    let mut files: Vec<PathBuf> = fs::read_dir(run_dir)
        .map_err(io(run_dir))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("events.out.tfevents."))
        })
        .collect();
    files.sort();
    let mut out: BTreeMap<String, ScalarHistory> = BTreeMap::new();
    for file in files {
        let bytes = fs::read(&file).map_err(io(&file))?;
        for payload in tfrecords(&bytes) {
            let Ok(event) = Event::parse_from_bytes(payload) else {
                continue;
            };
            let step = event.get_step();
            if event.has_session_log()
                && event.get_session_log().get_status() == SessionLog_SessionStatus::START
            {
                for points in out.values_mut() {
                    points.retain(|p| p.0 < step);
                }
                continue;
            }
            if !event.has_summary() {
                continue;
            }
            let wall = (event.get_wall_time() * 1000.0) as u64;
            for v in event.get_summary().get_value() {
                if v.has_simple_value() && !v.get_tag().starts_with("metrics/") {
                    out.entry(v.get_tag().to_string()).or_default().push((
                        step,
                        wall,
                        v.get_simple_value() as f64,
                    ));
                }
            }
        }
    }
    out.retain(|_, v| !v.is_empty());
    Ok(out)
}

/// The payloads of a TFRecord file (u64 length, u32 CRC, payload, u32 CRC), up to the first
/// record that is cut short (a file still being written).
fn tfrecords(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 12 <= bytes.len() {
        let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8])) as usize;
        let start = at + 12;
        let Some(end) = start.checked_add(len) else {
            break;
        };
        if end + 4 > bytes.len() {
            break;
        }
        out.push(&bytes[start..end]);
        at = end + 4;
    }
    out
}

//! A validated experiment and its plan: every job (split × dataset × model × seed), each with
//! a run id that is a hash of its resolved configuration. `config` builds the `Experiment` from
//! YAML; this layer runs it.

use std::path::PathBuf;

use serde::Serialize;

use crate::data::split::SplitSpec;
use crate::data::DatasetEntry;
use crate::models::{ModelConfig, ModelSpec};
use crate::nn::device::DeviceSpec;
use crate::track;

/// One model of an experiment after grid expansion.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    /// Index of its entry in the YAML `models` list.
    pub index: usize,
    pub spec: ModelSpec,
    /// `datasets: [..]` in the entry: the model runs only on jobs whose (training) datasets
    /// are all in this list, e.g. per-city learning rates. Not part of a job's identity.
    pub only_datasets: Option<Vec<String>>,
}

impl ModelEntry {
    /// Whether the model runs on a job that trains on `datasets`.
    pub fn applies_to<'a>(&self, mut datasets: impl Iterator<Item = &'a str>) -> bool {
        match &self.only_datasets {
            None => true,
            Some(only) => datasets.all(|d| only.iter().any(|o| o == d)),
        }
    }
}

/// A validated experiment.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub file: PathBuf,
    pub name: String,
    pub results_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub image_size: usize,
    pub poi_raster_size: usize,
    pub device: DeviceSpec,
    pub datasets: Vec<DatasetEntry>,
    /// Every model configuration after grid expansion, with the index of its YAML entry.
    pub models: Vec<ModelEntry>,
    pub splits: Vec<SplitSpec>,
    /// Per split, its `datasets: [..]` restriction (None: every dataset), e.g. a published
    /// split file that only some cities have.
    pub split_datasets: Vec<Option<Vec<String>>>,
    pub seeds: Vec<u64>,
    /// How the report's headline chooses configurations and the best baseline.
    pub select: crate::track::records::Select,
    /// Self-supervised pretraining stages run before the jobs (`pretrain:`).
    pub pretrain: Vec<PretrainStage>,
}

/// One pretraining stage: its method and encoder, the unlabelled datasets it reads, and the
/// cached directory it leaves its encoder in (named by a hash of all of these, so every run
/// that names the stage shares it and a changed stage is a new directory).
#[derive(Debug, Clone)]
pub struct PretrainStage {
    pub name: String,
    pub config: crate::models::ssl::SslConfig,
    pub unlabelled: Vec<DatasetEntry>,
    pub dir: PathBuf,
}

impl PretrainStage {
    /// The encoder file a model's `image_weights: pretrain:<name>` reads.
    pub fn encoder_file(&self) -> PathBuf {
        self.dir.join(crate::models::ssl::ENCODER_FILE)
    }
}

impl Experiment {
    pub fn experiment_dir(&self) -> PathBuf {
        self.results_dir.join(&self.name)
    }
}

/// Bump when the meaning of a job changes in a way its configuration does not show (new
/// features, a fixed bug in a model), so old results are not mistaken for new ones.
pub const JOB_FORMAT: u32 = 2;

/// Everything that determines a job's result; its hash is the run id.
#[derive(Debug, Clone, Serialize)]
pub struct JobConfig {
    pub job_format: u32,
    pub datasets: Vec<DatasetEntry>,
    pub model: ModelSpec,
    pub split: SplitSpec,
    pub seed: u64,
    pub image_size: usize,
    pub poi_raster_size: usize,
    /// The run id of the job of this experiment whose output the job reads (GraphSAGE's
    /// `embeddings_from: this_experiment`: the full OpenCarbon job of the same datasets,
    /// split and seed), so that a change of that job changes this one's run id too. Absent
    /// (and left out of the identity) for every other job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reads_run: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub index: usize,
    pub run_id: String,
    pub config: JobConfig,
}

impl Job {
    /// The dataset column of tables: one name, or `train>test` for cross-city jobs.
    pub fn dataset_label(&self) -> String {
        self.config
            .split
            .pair_label()
            .unwrap_or_else(|| self.config.datasets[0].name.clone())
    }
}

pub struct Plan {
    pub experiment: Experiment,
    pub jobs: Vec<Job>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Done,
    /// Claimed by a live process (its lock file exists) and not finished.
    Running,
    /// Its lock is held by process `pid`, which is gone (or silent past the heartbeat
    /// limit): nobody is running it; the next `run` takes the lock over.
    Stale {
        pid: u32,
        why: track::claim::Staleness,
    },
    Failed,
    Pending,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Done => "done",
            JobStatus::Running => "running",
            JobStatus::Stale { .. } => "stale",
            JobStatus::Failed => "failed",
            JobStatus::Pending => "pending",
        }
    }

    /// `as_str`, with the dead holder of a stale lock named.
    pub fn describe(self) -> String {
        match self {
            JobStatus::Stale { pid, why } => format!("stale ({})", why.describe(pid)),
            other => other.as_str().into(),
        }
    }
}

/// For a GraphSAGE job on this experiment's embeddings, the run id of the first full
/// OpenCarbon job planned before it on the same datasets, split and seed.
fn embeddings_job(planned: &[Job], config: &JobConfig) -> Option<String> {
    use crate::models::graphsage::EmbeddingsFrom;
    let ModelConfig::GraphSage(sage) = &config.model.model else {
        return None;
    };
    if sage.embeddings_from != Some(EmbeddingsFrom::ThisExperiment) {
        return None;
    }
    planned
        .iter()
        .find(|j| {
            let c = &j.config;
            let json = serde_json::to_value(c).unwrap_or_default();
            c.datasets == config.datasets
                && c.split == config.split
                && c.seed == config.seed
                && track::records::ModelFacts::of_job(c.model.model.kind(), &json)
                    .is_full_opencarbon()
        })
        .map(|j| j.run_id.clone())
}

/// What a job's run id hashes (`track::JOB_IDENTITY`).
pub fn job_identity(config: &JobConfig) -> String {
    serde_json::to_string(config).expect("job configs serialise")
}

fn run_id(config: &JobConfig) -> String {
    track::run_id_of(&job_identity(config))
}

impl Plan {
    pub fn new(experiment: Experiment) -> Plan {
        let mut jobs: Vec<Job> = Vec::new();
        let mut planned: std::collections::HashMap<String, usize> = Default::default();
        let e = &experiment;
        for (split, only) in e.splits.iter().zip(&e.split_datasets) {
            let wanted = |d: &DatasetEntry| only.as_ref().is_none_or(|o| o.contains(&d.name));
            let dataset_groups: Vec<Vec<DatasetEntry>> = match split {
                SplitSpec::CrossCity { train, test, .. } => {
                    let pick = |n: &String| e.datasets.iter().find(|d| &d.name == n).cloned();
                    vec![train.iter().chain(test.iter()).filter_map(pick).collect()]
                }
                _ => e
                    .datasets
                    .iter()
                    .filter(|d| wanted(d))
                    .map(|d| vec![d.clone()])
                    .collect(),
            };
            for datasets in dataset_groups {
                // For cross-city splits the model is chosen by the cities it trains on.
                let training: Vec<&str> = match split {
                    SplitSpec::CrossCity { train, .. } => {
                        train.iter().map(String::as_str).collect()
                    }
                    _ => datasets.iter().map(|d| d.name.as_str()).collect(),
                };
                for entry in &e.models {
                    if !entry.applies_to(training.iter().copied()) {
                        continue;
                    }
                    let model = &entry.spec;
                    for &seed in &e.seeds {
                        let config = JobConfig {
                            job_format: JOB_FORMAT,
                            datasets: datasets.clone(),
                            model: model.clone(),
                            split: split.clone(),
                            seed,
                            image_size: e.image_size,
                            poi_raster_size: e.poi_raster_size,
                            reads_run: None,
                        };
                        let config = JobConfig {
                            reads_run: embeddings_job(&jobs, &config),
                            ..config
                        };
                        let id = run_id(&config);
                        // The same job twice (`[{kind: ols}, {kind: ols}]`, `alpha: [0.1,
                        // 0.10]`) is one run: count it once.
                        if let Some(&k) = planned.get(&id) {
                            let first = &jobs[k];
                            crate::track::progress::warn(&format!(
                                "{} on {} (seed {seed}) is listed twice: it is job #{} (run {id}), planned once",
                                model.label(),
                                first.dataset_label(),
                                first.index
                            ));
                            continue;
                        }
                        planned.insert(id.clone(), jobs.len());
                        jobs.push(Job {
                            index: jobs.len(),
                            run_id: id,
                            config,
                        });
                    }
                }
            }
        }
        Plan { experiment, jobs }
    }

    /// The run ids of the plan's jobs.
    pub fn run_ids(&self) -> std::collections::BTreeSet<String> {
        self.jobs.iter().map(|j| j.run_id.clone()).collect()
    }

    pub fn run_dir(&self, job: &Job) -> PathBuf {
        self.experiment.experiment_dir().join(&job.run_id)
    }

    pub fn status(&self, job: &Job) -> JobStatus {
        let dir = self.run_dir(job);
        if track::is_done(&dir) {
            return JobStatus::Done;
        }
        match track::claim::lock_state(&self.experiment.experiment_dir(), &job.run_id) {
            Some((_, None)) => return JobStatus::Running,
            Some((holder, Some(why))) => {
                return JobStatus::Stale {
                    pid: holder.pid,
                    why,
                }
            }
            None => {}
        }
        if dir.exists() {
            JobStatus::Failed
        } else {
            JobStatus::Pending
        }
    }

    /// The frozen job list as JSON (`opencarbon plan --json`): what a cluster scheduler's
    /// array index `run --index I` refers to.
    pub fn to_json(&self) -> serde_json::Value {
        let jobs: Vec<serde_json::Value> = self
            .jobs
            .iter()
            .map(|j| {
                serde_json::json!({
                    "index": j.index,
                    "run_id": j.run_id,
                    "dataset": j.dataset_label(),
                    "model": j.config.model.label(),
                    "split": j.config.split.label(),
                    "seed": j.config.seed,
                    "status": self.status(j).describe(),
                    "run_dir": self.run_dir(j),
                    "config": j.config,
                })
            })
            .collect();
        serde_json::json!({
            "experiment": self.experiment.name,
            "file": self.experiment.file,
            "results_dir": self.experiment.experiment_dir(),
            "jobs": jobs,
        })
    }

    /// Ok when every job has finished; otherwise which ones failed, are running or are missing
    /// (a job whose lock is stale is missing: nobody is running it).
    pub fn check_complete(&self) -> crate::error::Result<()> {
        let (mut failed, mut running, mut missing) = (Vec::new(), Vec::new(), Vec::new());
        for j in &self.jobs {
            let entry = format!("#{} {}", j.index, j.run_id);
            match self.status(j) {
                JobStatus::Done => {}
                JobStatus::Failed => failed.push(entry),
                JobStatus::Running => running.push(entry),
                JobStatus::Stale { pid, why } => {
                    missing.push(format!("{entry} (stale lock, {})", why.describe(pid)))
                }
                JobStatus::Pending => missing.push(entry),
            }
        }
        if failed.is_empty() && running.is_empty() && missing.is_empty() {
            Ok(())
        } else {
            Err(crate::error::Error::Incomplete {
                failed,
                running,
                missing,
            })
        }
    }

    /// Each job's short model name (`track::names::model_names`: the kind, its ablation tags
    /// and the hyperparameters that vary within the experiment), from the params and facts
    /// its records will hold.
    pub fn model_names(&self) -> Vec<String> {
        use track::records::{job_params, ModelFacts};
        let described: Vec<(Vec<(String, track::records::ParamValue)>, ModelFacts)> = self
            .jobs
            .iter()
            .map(|j| {
                let json = serde_json::to_value(&j.config).expect("job configs serialise");
                let kind = j.config.model.model.kind();
                let params = job_params(
                    &j.dataset_label(),
                    &j.config.split.label(),
                    j.config.seed,
                    &j.config.model.label(),
                    kind,
                    &json,
                );
                (params, ModelFacts::of_job(kind, &json))
            })
            .collect();
        let nameable: Vec<track::names::Nameable> = described
            .iter()
            .zip(&self.jobs)
            .map(|((params, facts), j)| track::names::Nameable {
                run_id: &j.run_id,
                params,
                facts,
            })
            .collect();
        track::names::model_names(&nameable)
    }

    /// The job table `opencarbon plan` prints.
    pub fn table(&self) -> String {
        let mut rows = vec![[
            "#".to_string(),
            "run id".into(),
            "dataset".into(),
            "model".into(),
            "split".into(),
            "seed".into(),
            "status".into(),
        ]];
        for (j, model) in self.jobs.iter().zip(self.model_names()) {
            rows.push([
                j.index.to_string(),
                j.run_id.clone(),
                j.dataset_label(),
                model,
                j.config.split.label(),
                j.config.seed.to_string(),
                self.status(j).describe(),
            ]);
        }
        let widths: Vec<usize> = (0..7)
            .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for r in &rows {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        let done = self
            .jobs
            .iter()
            .filter(|j| self.status(j) == JobStatus::Done)
            .count();
        out.push_str(&format!(
            "{} jobs, {done} done, {} to run\n",
            self.jobs.len(),
            self.jobs.len() - done
        ));
        out
    }
}

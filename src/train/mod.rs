//! Running an experiment: prepare every dataset a pending job needs (so bad data fails before
//! any job starts), then run each job into its run directory.

pub mod cluster;
pub mod ladder;
pub mod plan;
pub mod pretrain;

pub mod job;

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use crate::data::split::SplitSpec;
use crate::data::DatasetEntry;
use crate::error::{Error, Result};
use crate::track::claim::{self, Claim};
use crate::track::progress;
use crate::track::{self, records, DatasetStamp, Manifest, RunDir, RunStatus};
use plan::{Job, JobStatus, Plan};

pub use crate::data::prepared::{dataset_dir, prepare_dataset};
pub use crate::data::PreparedDataset;

fn prepare(entry: &DatasetEntry, plan: &Plan) -> Result<PreparedDataset> {
    let e = &plan.experiment;
    prepare_dataset(entry, &e.cache_dir, e.image_size, e.poi_raster_size)
}

/// Checks that need the datasets themselves: predefined split files, matching POI categories.
fn check_against_data(plan: &Plan, prepared: &BTreeMap<String, PreparedDataset>) -> Result<()> {
    let mut problems = Vec::new();
    let e = &plan.experiment;
    for (i, (split, only)) in e.splits.iter().zip(&e.split_datasets).enumerate() {
        match split {
            SplitSpec::Predefined { file } => {
                let applies = |name: &String| only.as_ref().is_none_or(|o| o.contains(name));
                for d in prepared.values().filter(|d| applies(&d.entry.name)) {
                    if !d.data.split_names.contains(file) {
                        problems.push(crate::error::ConfigProblem {
                            path: format!("splits[{i}].file"),
                            message: format!("dataset `{}` has no splits/{file}.csv", d.entry.name),
                        });
                    }
                }
            }
            SplitSpec::CrossCity { train, test, .. } => {
                let cats: Vec<&Vec<String>> = train
                    .iter()
                    .chain(test)
                    .filter_map(|n| prepared.get(n))
                    .map(|d| &d.data.meta.poi_categories)
                    .collect();
                if cats.windows(2).any(|w| w[0] != w[1]) {
                    problems.push(crate::error::ConfigProblem {
                        path: format!("splits[{i}]"),
                        message: "cross-city datasets must have the same poi_categories, in the same order".into(),
                    });
                }
            }
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Config {
            file: plan.experiment.file.clone(),
            problems,
        })
    }
}

pub use crate::track::records::RunMetrics;

/// Which jobs of the plan a `run` considers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobSelection {
    All,
    /// One job, by its index in the plan (`run --index I`, e.g. a Slurm array task).
    Index(usize),
    /// Every `count`-th job starting at `index` (`run --shard I/N`).
    Shard {
        index: usize,
        count: usize,
    },
}

impl JobSelection {
    pub fn includes(self, job_index: usize) -> bool {
        match self {
            JobSelection::All => true,
            JobSelection::Index(i) => i == job_index,
            JobSelection::Shard { index, count } => job_index % count == index,
        }
    }

    /// Why this selection does not fit a plan of `jobs` jobs, if it does not.
    pub fn check(self, jobs: usize) -> Result<()> {
        match self {
            JobSelection::Index(i) if i >= jobs => Err(Error::Usage(format!(
                "--index {i} is out of range: the experiment has {jobs} jobs (0..{})",
                jobs.saturating_sub(1)
            ))),
            JobSelection::Shard { index, count } if count == 0 || index >= count => {
                Err(Error::Usage(format!(
                    "--shard {index}/{count}: expected I/N with N >= 1 and 0 <= I < N"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Parse `I/N`.
    pub fn parse_shard(text: &str) -> Result<JobSelection> {
        let bad = || Error::Usage(format!("--shard `{text}`: expected I/N, e.g. 0/4"));
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let sel = JobSelection::Shard {
            index: i.trim().parse().map_err(|_| bad())?,
            count: n.trim().parse().map_err(|_| bad())?,
        };
        sel.check(usize::MAX)?;
        Ok(sel)
    }
}

/// Which jobs `run` should run.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub force: bool,
    pub selection: JobSelection,
}

/// Run the experiment's selected unfinished jobs (all selected with `force`). Each job is
/// claimed first (`track::claim`), so processes sharing the results directory never run the
/// same job at once. Returns the number of jobs this process ran.
/// The prepared datasets a job reads, in the job's order.
fn job_datasets<'a>(
    job: &Job,
    prepared: &'a BTreeMap<String, PreparedDataset>,
) -> Vec<&'a PreparedDataset> {
    job.config
        .datasets
        .iter()
        .map(|d| &prepared[&d.name])
        .collect()
}

pub fn run_experiment(plan: &Plan, options: RunOptions) -> Result<usize> {
    options.selection.check(plan.jobs.len())?;
    let exp_dir = plan.experiment.experiment_dir();
    // Attempts of killed processes never count as runs; their directories go now.
    let cleaned = track::clean_dead_attempts(&exp_dir)?;
    if cleaned > 0 {
        progress::info(&format!(
            "removed the leftovers of {cleaned} killed attempts in {}",
            exp_dir.display()
        ));
    }
    let selected: Vec<&Job> = plan
        .jobs
        .iter()
        .filter(|j| options.selection.includes(j.index))
        .collect();
    let todo: Vec<&Job> = selected
        .iter()
        .copied()
        .filter(|j| options.force || plan.status(j) != JobStatus::Done)
        .collect();
    let skipped = selected.len() - todo.len();
    if todo.is_empty() {
        progress::info(&format!(
            "all {} selected jobs of `{}` are done; nothing to run",
            selected.len(),
            plan.experiment.name
        ));
        return Ok(0);
    }
    progress::info(&format!(
        "experiment `{}`: {} jobs to run, {skipped} already done",
        plan.experiment.name,
        todo.len()
    ));

    // Every dataset that a pending job reads is opened, validated and featurised first.
    let mut prepared: BTreeMap<String, PreparedDataset> = BTreeMap::new();
    for job in &todo {
        for entry in &job.config.datasets {
            if !prepared.contains_key(&entry.name) {
                let t = Instant::now();
                progress::info(&format!("preparing dataset `{}` ...", entry.name));
                let p = prepare(entry, plan)?;
                progress::info(&format!(
                    "  {} tiles, {} POIs, {} features ({:.1} s)",
                    p.data.tiles.len(),
                    p.data.pois.len(),
                    p.features.names.len(),
                    t.elapsed().as_secs_f64()
                ));
                prepared.insert(entry.name.clone(), p);
            }
        }
    }
    check_against_data(plan, &prepared)?;
    // What can be checked before pretraining is, so that a bad input stops the run before
    // hours of it; the jobs that read a stage's encoder are checked once it exists.
    let (after_stages, now): (Vec<&Job>, Vec<&Job>) = todo
        .iter()
        .partition(|job| pretrain::pending_stage_of(plan, job).is_some());
    let check = |jobs: &[&Job]| -> Result<()> {
        for job in jobs {
            job.config
                .model
                .model
                .check_datasets(&job_datasets(job, &prepared))?;
        }
        Ok(())
    };
    check(&now)?;
    let scored: Vec<&PreparedDataset> = prepared.values().collect();
    pretrain::ensure_pretrained(plan, &after_stages, &scored)?;
    check(&after_stages)?;

    let started = Instant::now();
    // Counted from the closure that runs a job and from the loop over held jobs alike.
    let (failed, ran) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    let bar = progress::Bar::new(todo.len() as u64, "jobs").prefix(plan.experiment.name.clone());
    // Jobs another live process holds: done last, after waiting for that process, so that
    // `run` returns only when every selected job is finished (or failed).
    let mut held_elsewhere: Vec<(usize, &Job)> = Vec::new();
    let run_claimed = |k: usize, job: &Job| -> Result<()> {
        // Another process may have finished it between our status check and the claim.
        if !options.force && plan.status(job) == JobStatus::Done {
            progress::info(&format!(
                "[{}/{}] {} skipped: finished by another process",
                k + 1,
                todo.len(),
                job.run_id
            ));
            return Ok(());
        }
        ran.set(ran.get() + 1);
        let datasets = job_datasets(job, &prepared);
        let t = Instant::now();
        let outcome = run_job(plan, job, &datasets, options.force)?;
        let eta = started.elapsed().as_secs_f64() / (k + 1) as f64 * (todo.len() - k - 1) as f64;
        match outcome {
            Ok(m) => progress::info(&format!(
                "[{}/{}] {} {:<10} {:<28} {:<14} seed {:<3} test R² {:>6.3}  ({:.1} s, ETA {:.0} s)",
                k + 1,
                todo.len(),
                job.run_id,
                job.dataset_label(),
                job.config.model.label(),
                job.config.split.label(),
                job.config.seed,
                m.test.map_or(f64::NAN, |t| t.r2),
                t.elapsed().as_secs_f64(),
                eta
            )),
            Err(msg) => {
                failed.set(failed.get() + 1);
                progress::info(&format!("[{}/{}] {} FAILED: {msg}", k + 1, todo.len(), job.run_id));
            }
        }
        Ok(())
    };
    for (k, job) in todo.iter().enumerate() {
        bar.set(
            k as u64,
            format!("{} {}", job.dataset_label(), job.config.model.label()),
        );
        let claimed = match options.selection {
            // One task of a scheduler's array: its exit code must say whether its job is done,
            // so it waits for another process that runs the job.
            JobSelection::Index(_) => claim_waiting(&exp_dir, &job.run_id)?,
            _ => match claim::claim(&exp_dir, &job.run_id)? {
                Claim::Claimed(c) => c,
                Claim::Busy(holder) => {
                    progress::info(&format!(
                        "[{}/{}] {} is being run by {holder}; coming back to it at the end",
                        k + 1,
                        todo.len(),
                        job.run_id
                    ));
                    held_elsewhere.push((k, job));
                    continue;
                }
            },
        };
        run_claimed(k, job)?;
        drop(claimed);
    }
    if !held_elsewhere.is_empty() {
        progress::info(&format!(
            "waiting for {} jobs that other processes are running",
            held_elsewhere.len()
        ));
    }
    let mut failed_elsewhere = 0;
    for (k, job) in held_elsewhere {
        // Once its holder lets go the job is finished (even under --force: that process ran
        // it now), failed there (counted, not run twice), or abandoned (its holder died): ours.
        let _claimed = claim_waiting(&exp_dir, &job.run_id)?;
        match plan.status(job) {
            JobStatus::Done => progress::info(&format!(
                "[{}/{}] {} finished by another process",
                k + 1,
                todo.len(),
                job.run_id
            )),
            JobStatus::Failed => {
                failed.set(failed.get() + 1);
                failed_elsewhere += 1;
                progress::info(&format!(
                    "[{}/{}] {} FAILED in another process (see its run.log)",
                    k + 1,
                    todo.len(),
                    job.run_id
                ));
            }
            _ => run_claimed(k, job)?,
        }
    }
    drop(bar);
    let (failed, ran) = (failed.get(), ran.get());
    progress::info(&format!(
        "ran {ran} jobs in {:.1} s into {}",
        started.elapsed().as_secs_f64(),
        exp_dir.display()
    ));
    if failed > 0 {
        // A job that failed in another process counts among the jobs this run accounts for.
        return Err(Error::JobsFailed {
            failed,
            total: ran + failed_elsewhere,
        });
    }
    Ok(ran)
}

/// How often a task waiting for another process's job looks at its lock again.
const WAIT_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Claim `run_id`, waiting while another live process holds it (the lock's heartbeat rules
/// decide when a silent holder is given up on).
pub(crate) fn claim_waiting(exp_dir: &std::path::Path, run_id: &str) -> Result<claim::JobClaim> {
    let mut told = false;
    loop {
        match claim::claim(exp_dir, run_id)? {
            Claim::Claimed(c) => return Ok(c),
            Claim::Busy(holder) => {
                if !told {
                    progress::info(&format!(
                        "{run_id} is being run by {holder}; waiting for it to finish"
                    ));
                    told = true;
                }
                std::thread::sleep(WAIT_POLL);
            }
        }
    }
}

/// Run one job. The outer `Result` is for failures of the results store itself (which stop
/// the experiment); the inner one for failures of the job (recorded in its run directory).
fn run_job(
    plan: &Plan,
    job: &Job,
    datasets: &[&PreparedDataset],
    force: bool,
) -> Result<std::result::Result<RunMetrics, String>> {
    let exp_dir = plan.experiment.experiment_dir();
    let mut run = RunDir::begin(&exp_dir, &job.run_id)?;
    let resolved = records::config_yaml(&records::RunConfig {
        experiment: plan.experiment.name.clone(),
        run_id: job.run_id.clone(),
        job: &job.config,
    })?;
    run.write("config.yaml", resolved.as_bytes())?;
    run.write(
        track::JOB_IDENTITY,
        plan::job_identity(&job.config).as_bytes(),
    )?;
    if track::provenance::build_dirty() == Some(true) {
        // The source this binary was built from differs from its commit: keep the difference.
        run.write("diff.patch", track::provenance::BUILD_DIFF.as_bytes())?;
    }
    if force {
        run.discard_resume()?;
    }
    // A resume checkpoint is continued only by the same job configuration (the resolved
    // config.yaml) run by the same build of this program.
    run.set_resume_key(format!(
        "config {}, build {}",
        track::content_hash(resolved.as_bytes()),
        track::build_id()
    ));
    run.log(&format!(
        "job {} of experiment `{}`",
        job.run_id, plan.experiment.name
    ));

    let result = job::fit_and_evaluate(job, plan.experiment.device, datasets, &mut run);
    let (status, error, metrics) = match result {
        Ok(m) => (RunStatus::Done, None, Ok(m)),
        Err(e) => {
            run.log(&format!("FAILED: {e}"));
            (RunStatus::Failed, Some(e.to_string()), Err(e.to_string()))
        }
    };
    let manifest = manifest_for(
        &run,
        &job.run_id,
        &plan.experiment.name,
        (status, error),
        job.config.seed,
        plan.experiment.device.to_string(),
        datasets,
    );
    run.finish(&manifest)?;
    Ok(metrics)
}

/// The manifest of a run of `datasets` ending with `status` (and its error): the build, host,
/// times and the datasets' fingerprints. Jobs and pretraining stages alike.
pub(crate) fn manifest_for(
    run: &RunDir,
    run_id: &str,
    experiment: &str,
    (status, error): (RunStatus, Option<String>),
    seed: u64,
    device: String,
    datasets: &[&PreparedDataset],
) -> Manifest {
    let build = track::BuildStamp::current();
    Manifest {
        record_version: track::RECORD_VERSION,
        run_id: run_id.to_string(),
        experiment: experiment.to_string(),
        status,
        error,
        seed,
        crate_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: build.commit.clone(),
        git_dirty: build.dirty,
        build: Some(build),
        host: track::host_name(),
        cpu: track::provenance::cpu_model(),
        threads: track::provenance::threads(),
        device,
        started: track::rfc3339(run.started()),
        ended: track::rfc3339(SystemTime::now()),
        wall_seconds: run.elapsed_seconds(),
        datasets: datasets
            .iter()
            .map(|d| DatasetStamp {
                name: d.entry.name.clone(),
                path: d.path.display().to_string(),
                fingerprint: d.fingerprint.clone(),
                unit: Some(d.data.meta.target.unit.clone()),
            })
            .collect(),
    }
}

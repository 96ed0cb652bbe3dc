//! Running an experiment's `pretrain:` stages before its jobs: each stage is a run directory
//! under `<cache_dir>/pretrain/` named `<name>-<hash>`, trained through the shared learner
//! (a killed stage resumes where its last checkpoint left it), left alone once done, and
//! claimed like a job so two processes never train the same stage at once.

use super::plan::{Job, Plan, PretrainStage};
use crate::data::prepared::prepare_dataset;
use crate::data::PreparedDataset;
use crate::error::{Error, Result};
use crate::track::records::RunStatus;
use crate::track::{self, progress, RunDir};

/// The stage not yet done whose encoder `job` reads, if any.
pub fn pending_stage_of<'a>(plan: &'a Plan, job: &Job) -> Option<&'a PretrainStage> {
    let weights = job.config.model.model.image_weights()?;
    plan.experiment
        .pretrain
        .iter()
        .find(|s| std::path::Path::new(weights) == s.encoder_file() && !stage_done(s))
}

/// Every stage that one of `jobs` reads and that is not yet done, in the experiment's order.
/// `scored` are the experiment's datasets: a stage whose unlabelled data has the content of
/// one of them is refused, whatever its path says.
pub fn ensure_pretrained(plan: &Plan, jobs: &[&Job], scored: &[&PreparedDataset]) -> Result<()> {
    for stage in &plan.experiment.pretrain {
        if !jobs
            .iter()
            .any(|job| pending_stage_of(plan, job).is_some_and(|s| std::ptr::eq(s, stage)))
        {
            continue;
        }
        let parent = stage.dir.parent().unwrap_or(std::path::Path::new("."));
        let id = stage
            .dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let _claim = super::claim_waiting(parent, &id)?;
        if stage_done(stage) {
            continue; // another process finished it while we waited
        }
        run_stage(plan, stage, parent, &id, scored)?;
    }
    Ok(())
}

/// A finished stage: its `DONE` marker and encoder file (a stage has no job records).
fn stage_done(stage: &PretrainStage) -> bool {
    stage.dir.join(track::DONE_MARKER).is_file() && stage.encoder_file().is_file()
}

fn run_stage(
    plan: &Plan,
    stage: &PretrainStage,
    parent: &std::path::Path,
    id: &str,
    scored: &[&PreparedDataset],
) -> Result<()> {
    let e = &plan.experiment;
    let started = std::time::Instant::now();
    progress::info(&format!(
        "pretraining `{}` ({:?}, {} unlabelled dataset(s)) into {}",
        stage.name,
        stage.config.method,
        stage.unlabelled.len(),
        stage.dir.display()
    ));
    let prepared: Vec<PreparedDataset> = stage
        .unlabelled
        .iter()
        .map(|entry| prepare_dataset(entry, &e.cache_dir, e.image_size, e.poi_raster_size))
        .collect::<Result<_>>()?;
    for unlabelled in &prepared {
        if let Some(same) = scored
            .iter()
            .find(|d| d.fingerprint == unlabelled.fingerprint)
        {
            return Err(Error::Usage(format!(
                "pretrain stage `{}`: unlabelled dataset `{}` ({}) has the content of the scored dataset `{}`: unlabelled tiles must come from other cities",
                stage.name,
                unlabelled.entry.name,
                unlabelled.path.display(),
                same.entry.name
            )));
        }
    }
    let refs: Vec<&PreparedDataset> = prepared.iter().collect();
    let mut run = RunDir::begin(parent, id)?;
    let fingerprints: Vec<&str> = prepared.iter().map(|d| d.fingerprint.as_str()).collect();
    let spec = serde_json::json!({
        "name": stage.name,
        "config": stage.config,
        "unlabelled": stage.unlabelled,
        "fingerprints": fingerprints,
        "image_size": e.image_size,
    });
    let spec_text = serde_json::to_string_pretty(&spec).unwrap_or_default();
    run.write("pretrain.json", spec_text.as_bytes())?;
    run.set_resume_key(format!(
        "pretrain {}, build {}",
        track::content_hash(spec_text.as_bytes()),
        track::build_id()
    ));
    let source = format!("opencarbon pretrain `{}` ({id})", stage.name);
    let outcome = crate::models::ssl::pretrain(&stage.config, &refs, &source, &mut run);
    let (status, error) = match &outcome {
        Ok(loss) => {
            run.log(&format!("done: training loss per tile {loss:.4}"));
            (RunStatus::Done, None)
        }
        Err(err) => {
            run.log(&format!("FAILED: {err}"));
            (RunStatus::Failed, Some(err.to_string()))
        }
    };
    let manifest = super::manifest_for(
        &run,
        id,
        &e.name,
        (status, error),
        stage.config.seed,
        "cpu".into(),
        &refs,
    );
    run.finish(&manifest)?;
    outcome?;
    progress::info(&format!(
        "  pretrained `{}` in {:.1} s",
        stage.name,
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

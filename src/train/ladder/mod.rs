//! `opencarbon ladder`: the premise ladder of docs/benchmark-acceptance.md on a finished
//! experiment over generated cities. Per dataset (preset × generator seed) and split seed:
//! T0 and the acquisition parameters' Spearman correlations (`city`), each feature
//! baseline's validation and test R² (T1) and the oracle's (T2) from the runs' records, the
//! inventory-error ceiling, Moran's I, the top-1 % share and the total; then per preset the
//! means with their verdicts under an acceptance rule (`rule`, `table`).
//!
//! It reads the datasets' latents.csv (the acquisition parameters, strips and the
//! inventory's intermediate emission), which no model but the oracle may read.

pub mod city;
pub mod rule;
mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::data::split::{self, SplitSpec};
use crate::data::{CityDataset, Contiguity, DatasetSource, SplitPart, TileGraph, TileGrid};
use crate::error::{Error, Result};
use crate::models::latent_oracle::OracleConfig;
use crate::models::{
    GbdtConfig, Inputs, LassoConfig, LassoSmartcoreConfig, MlpConfig, Model, OlsConfig,
    RandomForestConfig,
};
use crate::track::progress;
use crate::track::records::{read_json, RunMetrics};
use city::{LadderLatents, Targets};
pub use rule::AcceptanceRule;
pub use table::{PresetSummary, Stat};

use super::plan::Plan;

/// T1's models: every model on the handcrafted feature table, with all its inputs.
pub const FEATURE_BASELINE_KINDS: &[&str] = &[
    <LassoConfig as Model>::KIND,
    <LassoSmartcoreConfig as Model>::KIND,
    <OlsConfig as Model>::KIND,
    <crate::models::ridge::RidgeConfig as Model>::KIND,
    <RandomForestConfig as Model>::KIND,
    <GbdtConfig as Model>::KIND,
    <MlpConfig as Model>::KIND,
];

/// A run's validation and test R² (NaN for an empty part).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    pub valid_r2: f64,
    pub test_r2: f64,
}

/// One dataset (preset × generator seed) at one seed of the experiment.
#[derive(Debug, Clone, Serialize)]
pub struct LadderRow {
    pub dataset: String,
    /// The preset (a dataset given by path: its name).
    pub preset: String,
    pub generator_seed: Option<u64>,
    /// The job seed; the split's seed unless the split fixes its own (`split_seed`).
    pub seed: u64,
    pub split_seed: u64,
    pub target_tiles: usize,
    pub test_tiles: usize,
    pub t0_r2: f64,
    pub t0_strips: usize,
    pub spearman: BTreeMap<String, f64>,
    pub max_abs_spearman: f64,
    /// T1: each feature baseline's scores, by model label.
    pub baselines: BTreeMap<String, Scores>,
    /// T2: each oracle configuration's scores, by model label.
    pub oracle: BTreeMap<String, Scores>,
    pub ceiling_test_r2: f64,
    pub ceiling_all_r2: f64,
    pub morans_i: f64,
    pub top1_share: f64,
    /// NaN when the dataset's unit is not a mass of CO2 per year.
    pub total_mt: f64,
}

/// The whole ladder of an experiment.
#[derive(Debug, Clone, Serialize)]
pub struct Ladder {
    pub experiment: String,
    pub split: String,
    pub rule_file: Option<PathBuf>,
    pub rule: Option<AcceptanceRule>,
    pub runs: Vec<LadderRow>,
    pub presets: Vec<PresetSummary>,
}

/// The ladder's one split: an experiment with exactly one split over single cities.
fn ladder_split(plan: &Plan) -> Result<&SplitSpec> {
    let e = &plan.experiment;
    match e.splits.as_slice() {
        [s] if !matches!(s, SplitSpec::CrossCity { .. }) => Ok(s),
        _ => Err(Error::config(
            &e.file,
            "splits",
            format!(
                "the ladder needs exactly one split over single cities (the block split of \
                 docs/benchmark-acceptance.md), found {}",
                e.splits
                    .iter()
                    .map(SplitSpec::label)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// The runs' scores by (dataset, seed): feature baselines and oracles, by short model name.
type RunScores = BTreeMap<(String, u64), (BTreeMap<String, Scores>, BTreeMap<String, Scores>)>;

fn run_scores(plan: &Plan) -> Result<RunScores> {
    let oracle_kind = <OracleConfig as Model>::KIND;
    let mut out = RunScores::new();
    let mut ignored = std::collections::BTreeSet::new();
    for (job, name) in plan.jobs.iter().zip(plan.model_names()) {
        let spec = &job.config.model;
        let kind = spec.model.kind();
        let is_baseline =
            FEATURE_BASELINE_KINDS.contains(&kind) && spec.inputs == Inputs::default();
        if kind != oracle_kind && !is_baseline {
            ignored.insert(name);
            continue;
        }
        let m: RunMetrics = read_json(&plan.run_dir(job), "metrics.json")?;
        let r2 = |p: Option<crate::metrics::Metrics>| p.map_or(f64::NAN, |m| m.r2);
        let scores = Scores {
            valid_r2: r2(m.valid),
            test_r2: r2(m.test),
        };
        let entry = out
            .entry((job.config.datasets[0].name.clone(), job.config.seed))
            .or_default();
        let by_label = if kind == oracle_kind {
            &mut entry.1
        } else {
            &mut entry.0
        };
        by_label.insert(name, scores);
    }
    if !ignored.is_empty() {
        progress::warn(&format!(
            "ladder: not a feature baseline with all inputs nor the oracle, left out: {}",
            ignored.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(out)
}

/// Compute the ladder of a finished experiment (every job done), judged by `rule` if given.
pub fn compute(plan: &Plan, rule: Option<(PathBuf, AcceptanceRule)>) -> Result<Ladder> {
    let e = &plan.experiment;
    let spec = ladder_split(plan)?;
    plan.check_complete()?;
    let scores = run_scores(plan)?;
    let boosting = OracleConfig::default()
        .validate()
        .map_err(|p| Error::Internal(format!("the gbdt defaults are invalid: {p:?}")))?
        .boosting()
        .clone();
    let mut runs = Vec::new();
    let bar = progress::Bar::new((e.datasets.len() * e.seeds.len()) as u64, "T0 fits")
        .prefix("ladder".to_string());
    for entry in &e.datasets {
        let dir = super::dataset_dir(entry, &e.cache_dir)?;
        let data = CityDataset::open(&dir)?;
        if std::fs::symlink_metadata(crate::data::latents::latents_path(&dir)).is_err() {
            return Err(Error::dataset(
                crate::data::latents::latents_path(&dir),
                None,
                format!(
                    "dataset `{}` has no latents.csv: the ladder runs only on generated cities",
                    entry.name
                ),
            ));
        }
        let latents = LadderLatents::read(&dir, &data.tiles)?;
        let targets = Targets::of(&data.tiles);
        progress::info(&format!(
            "ladder: dataset `{}`: {} target tiles, {} acquisition parameters, {} seeds",
            entry.name,
            targets.tiles.len(),
            latents.nuisance.len(),
            e.seeds.len()
        ));
        let graph = TileGraph::build(&TileGrid::new(&data.tiles), Contiguity::Queen);
        let (preset, generator_seed) = match &entry.source {
            DatasetSource::Preset { preset, seed, .. } => (preset.clone(), Some(*seed)),
            DatasetSource::Path { .. } => (entry.name.clone(), None),
        };
        let total_mt = match city::megatonnes_per_unit(&data.meta.target.unit) {
            Some(f) => data.tiles.iter().map(|t| t.emission).sum::<f64>() * f,
            None => {
                progress::warn(&format!(
                    "ladder: dataset `{}`'s unit `{}` is not t, kt, Mt or Gt CO2 per year: no total",
                    entry.name, data.meta.target.unit
                ));
                f64::NAN
            }
        };
        let spearman = city::spearman_by_parameter(&latents, &targets);
        let max_abs_spearman = spearman
            .values()
            .filter(|v| !v.is_nan())
            .fold(f64::NAN, |m, v| m.max(v.abs()));
        let all_rows: Vec<usize> = (0..targets.tiles.len()).collect();
        let ceiling_all_r2 = city::inventory_ceiling(&latents, &targets, &all_rows);
        let morans_i = city::morans_i_of_log_emission(&graph, &data.tiles);
        let top1_share = city::top1_share(&data.tiles);
        for &seed in &e.seeds {
            bar.set(runs.len() as u64, format!("{} seed {seed}", entry.name));
            let split_seed = match spec {
                SplitSpec::Random { seed: s, .. } | SplitSpec::Block { seed: s, .. } => {
                    s.unwrap_or(seed)
                }
                _ => seed,
            };
            let assignment = split::assign(spec, &[&data], seed)?.remove(0);
            let test_rows: Vec<usize> = (0..targets.tiles.len())
                .filter(|&r| assignment[targets.tiles[r]] == Some(SplitPart::Test))
                .collect();
            let (t0_r2, t0_strips) = city::t0_r2(&latents, &targets, &boosting, split_seed)?;
            let (baselines, oracle) = scores
                .get(&(entry.name.clone(), seed))
                .cloned()
                .unwrap_or_default();
            runs.push(LadderRow {
                dataset: entry.name.clone(),
                preset: preset.clone(),
                generator_seed,
                seed,
                split_seed,
                target_tiles: targets.tiles.len(),
                test_tiles: test_rows.len(),
                t0_r2,
                t0_strips,
                spearman: spearman.clone(),
                max_abs_spearman,
                baselines,
                oracle,
                ceiling_test_r2: city::inventory_ceiling(&latents, &targets, &test_rows),
                ceiling_all_r2,
                morans_i,
                top1_share,
                total_mt,
            });
        }
    }
    bar.set(runs.len() as u64, "done");
    let presets = table::summarise(&runs, rule.as_ref().map(|(_, r)| r));
    let (rule_file, rule) = match rule {
        Some((f, r)) => (Some(f), Some(r)),
        None => (None, None),
    };
    Ok(Ladder {
        experiment: e.name.clone(),
        split: spec.label(),
        rule_file,
        rule,
        runs,
        presets,
    })
}

/// Write `ladder.md` and `ladder.json` into the experiment's results directory; returns the
/// markdown.
pub fn write(ladder: &Ladder, experiment_dir: &Path) -> Result<String> {
    let markdown = table::markdown(ladder);
    crate::track::atomic_write(&experiment_dir.join("ladder.md"), markdown.as_bytes())?;
    let json = serde_json::to_string_pretty(ladder).map_err(|e| Error::Internal(e.to_string()))?;
    crate::track::atomic_write(&experiment_dir.join("ladder.json"), json.as_bytes())?;
    Ok(markdown)
}

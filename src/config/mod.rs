//! Experiment files: raw YAML → validated `Experiment` (defined with the `Plan` of jobs in
//! `train::plan`, the layer that runs it).
//!
//! Validation reports every problem it can find, each with its YAML path (`models[1].alpha`),
//! before any work starts. Structural problems (unknown fields, wrong types) are found per list
//! element, so one typo does not hide the problems of the other elements.

mod pretrain;
pub mod search;
mod split;
mod yaml;

pub use yaml::MAX_JOBS;
use yaml::{
    expand_grid, grid_alternatives, grid_size, join_path, read_yaml, resolve_use, typed,
    yaml_inline, Problems,
};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use crate::data::split::SplitSpec;
use crate::data::synth;
use crate::error::{Error, Result};
use crate::models::{Inputs, ModelConfig, ModelSpec};
use split::parse_split_spec;

pub use crate::data::entry::{DatasetEntry, DatasetSource};
pub use crate::nn::device::DeviceSpec;
pub use crate::train::plan::{Experiment, Job, ModelEntry, Plan};

/// The top level of an experiment file. Lists hold raw YAML so that each element is checked
/// on its own (see the module comment).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExperiment {
    name: String,
    #[serde(default = "default_results_dir")]
    results_dir: PathBuf,
    #[serde(default = "default_cache_dir")]
    cache_dir: PathBuf,
    #[serde(default = "default_image_size")]
    image_size: usize,
    #[serde(default = "default_image_size")]
    poi_raster_size: usize,
    /// `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "default_device")]
    device: String,
    datasets: Vec<Value>,
    models: Vec<Value>,
    splits: Vec<Value>,
    seeds: Vec<u64>,
    /// How the report's headline chooses configurations: `valid` (default) or `test`.
    #[serde(default)]
    select: crate::track::records::Select,
    /// Self-supervised pretraining stages (`pretrain::parse_stages`).
    #[serde(default)]
    pretrain: Vec<Value>,
}

fn default_results_dir() -> PathBuf {
    PathBuf::from("results")
}
fn default_cache_dir() -> PathBuf {
    PathBuf::from(".cache")
}
fn default_device() -> String {
    "cpu".into()
}
fn default_image_size() -> usize {
    64
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPresetDataset {
    preset: String,
    #[serde(default)]
    seed: u64,
    /// The dataset's name in tables and splits; the preset's by default. Several generator
    /// seeds of one preset in an experiment need their own names.
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPathDataset {
    path: PathBuf,
}

fn parse_dataset(element: Value, path: &str, problems: &mut Problems) -> Option<DatasetEntry> {
    let map = resolve_use(element, path, problems)?;
    if map.contains_key("preset") {
        let raw: RawPresetDataset = typed(Value::Mapping(map), path, problems)?;
        if let Some(name) = &raw.name {
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !ok {
                problems.add(
                    join_path(path, "name"),
                    format!(
                        "`{name}` is not a dataset name: letters, digits, `_`, `-` and `.` only"
                    ),
                );
                return None;
            }
        }
        let Some(generator) = synth::generator_of(&raw.preset) else {
            problems.add(
                join_path(path, "preset"),
                format!(
                    "unknown preset `{}`, expected one of {}",
                    raw.preset,
                    synth::preset_names().join(", ")
                ),
            );
            return None;
        };
        Some(DatasetEntry {
            name: raw.name.unwrap_or_else(|| raw.preset.clone()),
            source: DatasetSource::Preset {
                preset: raw.preset,
                seed: raw.seed,
                generator,
            },
        })
    } else if map.contains_key("path") {
        let raw: RawPathDataset = typed(Value::Mapping(map), path, problems)?;
        let meta_file = raw.path.join("dataset.yaml");
        let name = match read_yaml(&meta_file) {
            Ok(v) => v.get("name").and_then(|n| n.as_str()).map(str::to_string),
            Err(_) => None,
        };
        match name {
            Some(name) => Some(DatasetEntry {
                name,
                source: DatasetSource::Path { path: raw.path },
            }),
            None => {
                problems.add(
                    join_path(path, "path"),
                    format!(
                        "{} is not a dataset (no readable dataset.yaml with a name)",
                        raw.path.display()
                    ),
                );
                None
            }
        }
    } else {
        problems.add(
            path,
            "expected `preset: <name>` or `path: <dataset dir>` (or `use: <file>`)",
        );
        None
    }
}

/// Remove and check an entry's `datasets: [..]` restriction (names of the experiment's
/// datasets).
fn take_dataset_restriction(
    map: &mut Mapping,
    path: &str,
    names: &BTreeSet<String>,
    problems: &mut Problems,
) -> Option<Vec<String>> {
    map.remove("datasets").map(|v| {
        let list: Vec<String> = match v {
            Value::Sequence(s) => s
                .iter()
                .enumerate()
                .filter_map(|(i, d)| {
                    let name = d.as_str().map(str::to_string);
                    if name.is_none() {
                        problems.add(
                            format!("{}[{i}]", join_path(path, "datasets")),
                            format!("expected a dataset name, found {}", yaml_inline(d)),
                        );
                    }
                    name
                })
                .collect(),
            Value::String(s) => vec![s],
            _ => Vec::new(),
        };
        if list.is_empty() {
            problems.add(
                join_path(path, "datasets"),
                "expected a list of dataset names",
            );
        }
        for d in &list {
            if !names.contains(d) {
                problems.add(
                    join_path(path, "datasets"),
                    format!(
                        "`{d}` is not a dataset of this experiment ({})",
                        names.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
        list
    })
}

/// The model specs of one `models` entry, and its `datasets:` restriction if any.
fn parse_model(
    element: Value,
    path: &str,
    names: &BTreeSet<String>,
    problems: &mut Problems,
) -> (Vec<ModelSpec>, Option<Vec<String>>) {
    let Some(mut map) = resolve_use(element, path, problems) else {
        return (Vec::new(), None);
    };
    let only = take_dataset_restriction(&mut map, path, names, problems);
    (parse_model_specs(map, path, problems), only)
}

fn parse_model_specs(
    mut map: serde_yaml::Mapping,
    path: &str,
    problems: &mut Problems,
) -> Vec<ModelSpec> {
    let kind = match map.remove("kind") {
        Some(Value::String(k)) => k,
        Some(_) => {
            problems.add(join_path(path, "kind"), "expected a model name");
            return Vec::new();
        }
        None => {
            problems.add(
                path,
                format!(
                    "missing `kind`, expected one of {}",
                    crate::models::MODEL_KINDS.join(", ")
                ),
            );
            return Vec::new();
        }
    };
    let Some(keys) = grid_alternatives(&map, ModelConfig::list_fields(&kind), path, problems)
    else {
        return Vec::new();
    };
    let size = grid_size(&keys);
    if size > MAX_JOBS {
        problems.add(
            path,
            format!("expands to {size} configurations, more than the limit of {MAX_JOBS} jobs"),
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for mut combo in expand_grid(&keys) {
        // The input switches are common to every model; the rest is the model's own.
        let mut inputs = Inputs::default();
        for key in Inputs::KEYS {
            let Some(v) = combo.remove(key) else { continue };
            let Some(on) = v.as_bool() else {
                problems.add(
                    join_path(path, key),
                    format!("invalid type: expected true or false, found {v:?}"),
                );
                return Vec::new();
            };
            match key {
                "image" => inputs.image = on,
                "poi" => inputs.poi = on,
                _ => inputs.neighborhood = on,
            }
        }
        if !inputs.image && !inputs.poi {
            problems.add(
                path,
                "`image: false` and `poi: false` leave the model no input",
            );
            return Vec::new();
        }
        match ModelConfig::from_yaml(&kind, Value::Mapping(combo)) {
            Ok(model) => {
                for (field, msg) in model.check() {
                    problems.add(join_path(path, field), msg);
                }
                out.push(ModelSpec { model, inputs });
            }
            Err((field, msg)) => {
                problems.add(join_path(path, &field), msg);
                return Vec::new();
            }
        }
    }
    out
}

fn parse_split(
    element: Value,
    path: &str,
    names: &BTreeSet<String>,
    problems: &mut Problems,
) -> Option<(SplitSpec, Option<Vec<String>>)> {
    let mut map = resolve_use(element, path, problems)?;
    let only = take_dataset_restriction(&mut map, path, names, problems);
    let spec = parse_split_spec(map, path, names, problems)?;
    if only.is_some() && matches!(spec, SplitSpec::CrossCity { .. }) {
        problems.add(
            join_path(path, "datasets"),
            "a cross_city split names its datasets in train and test",
        );
    }
    Some((spec, only))
}

/// Read and validate an experiment file.
pub fn load_experiment(file: &Path) -> Result<Experiment> {
    let value = read_yaml(file)?;
    let mut problems = Problems::default();
    let fail = |problems: Problems| Error::Config {
        file: file.to_path_buf(),
        problems: problems.0,
    };
    let Some(raw) = typed::<RawExperiment>(value, "", &mut problems) else {
        return Err(fail(problems));
    };

    if raw.name.is_empty()
        || !raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        problems.add(
            "name",
            format!(
                "`{}` is not a valid experiment name, expected [A-Za-z0-9_-]+",
                raw.name
            ),
        );
    }
    for (field, v) in [
        ("image_size", raw.image_size),
        ("poi_raster_size", raw.poi_raster_size),
    ] {
        if !(8..=1024).contains(&v) {
            problems.add(field, format!("is {v}, expected 8..1024"));
        }
    }
    for (field, len) in [
        ("datasets", raw.datasets.len()),
        ("models", raw.models.len()),
        ("splits", raw.splits.len()),
        ("seeds", raw.seeds.len()),
    ] {
        if len == 0 {
            problems.add(field, "is empty, expected at least one entry");
        }
    }
    let device = DeviceSpec::parse(&raw.device).unwrap_or_else(|e| {
        problems.add("device", e);
        DeviceSpec::Cpu
    });
    let mut seen_seeds = BTreeSet::new();
    for (i, s) in raw.seeds.iter().enumerate() {
        if !seen_seeds.insert(*s) {
            problems.add(format!("seeds[{i}]"), format!("seed {s} is repeated"));
        }
    }

    let mut datasets: Vec<DatasetEntry> = Vec::new();
    for (i, d) in raw.datasets.into_iter().enumerate() {
        let path = format!("datasets[{i}]");
        if let Some(entry) = parse_dataset(d, &path, &mut problems) {
            if datasets.iter().any(|e| e.name == entry.name) {
                problems.add(
                    path,
                    format!(
                        "dataset name `{}` is used twice (give each a `name:` of its own)",
                        entry.name
                    ),
                );
            } else {
                datasets.push(entry);
            }
        }
    }
    let names: BTreeSet<String> = datasets.iter().map(|d| d.name.clone()).collect();

    let mut models = Vec::new();
    for (i, m) in raw.models.into_iter().enumerate() {
        let path = format!("models[{i}]");
        let (specs, only_datasets) = parse_model(m, &path, &names, &mut problems);
        for spec in specs {
            models.push(ModelEntry {
                index: i,
                spec,
                only_datasets: only_datasets.clone(),
            });
        }
    }
    let pretrain = pretrain::parse_stages(
        raw.pretrain,
        &raw.cache_dir,
        raw.image_size,
        &datasets,
        &mut problems,
    );
    pretrain::resolve_weights(&mut models, &pretrain, &mut problems);
    let (mut splits, mut split_datasets) = (Vec::new(), Vec::new());
    for (i, s) in raw.splits.into_iter().enumerate() {
        if let Some((spec, only)) = parse_split(s, &format!("splits[{i}]"), &names, &mut problems) {
            splits.push(spec);
            split_datasets.push(only);
        }
    }

    // The plan's size, bounded before it is expanded: every split applies to at most all
    // datasets (a cross-city split is one group), times models and seeds.
    let groups: usize = splits
        .iter()
        .zip(&split_datasets)
        .map(|(s, only): (&SplitSpec, &Option<Vec<String>>)| match s {
            SplitSpec::CrossCity { .. } => 1,
            _ => only.as_ref().map_or(datasets.len(), Vec::len),
        })
        .fold(0usize, usize::saturating_add);
    let jobs = groups
        .saturating_mul(models.len())
        .saturating_mul(raw.seeds.len());
    if jobs > MAX_JOBS {
        problems.add(
            "",
            format!(
                "expands to up to {jobs} jobs ({groups} dataset groups × {} models × {} seeds), more than the limit of {MAX_JOBS}",
                models.len(),
                raw.seeds.len()
            ),
        );
    }
    if !problems.0.is_empty() {
        return Err(fail(problems));
    }
    Ok(Experiment {
        file: file.to_path_buf(),
        name: raw.name,
        results_dir: raw.results_dir,
        cache_dir: raw.cache_dir,
        image_size: raw.image_size,
        poi_raster_size: raw.poi_raster_size,
        device,
        datasets,
        models,
        splits,
        split_datasets,
        seeds: raw.seeds,
        select: raw.select,
        pretrain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(yaml: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("e.yaml");
        std::fs::write(&f, yaml).unwrap();
        match load_experiment(&f) {
            Ok(_) => vec![],
            Err(Error::Config { problems, .. }) => problems.iter().map(|p| p.to_string()).collect(),
            Err(e) => vec![format!("other error: {e}")],
        }
    }

    const GOOD: &str = "name: t\ndatasets: [{preset: tiny}]\nmodels: [{kind: lasso, alpha: [0.01, 0.1]}, {kind: ols}]\nsplits: [{kind: random}]\nseeds: [0, 1]\n";

    #[test]
    fn a_good_file_expands_the_grid() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("e.yaml");
        std::fs::write(&f, GOOD).unwrap();
        let e = load_experiment(&f).unwrap();
        assert_eq!(e.models.len(), 3);
        assert_eq!(e.models[1].spec.label(), "lasso(a=0.1)");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("e.yaml");
        std::fs::write(
            &f,
            GOOD.replace("{kind: ols}", "{kind: ols, image: [true, false]}"),
        )
        .unwrap();
        let e = load_experiment(&f).unwrap();
        assert_eq!(e.models.len(), 4);
        assert_eq!(e.models[3].spec.label(), "ols[poi-only]");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let p = problems_of(
            "name: t\ndatasets: [{preset: atlantis}]\nmodels: [{kind: lasso, alpah: 1}, {kind: random_forest, n_trees: many}, {kind: lasso, alpha: -1}, {kind: svm}]\nsplits: [{kind: random, fractions: [0.5, 0.2, 0.2]}]\nseeds: [0]\n",
        );
        let joined = p.join("\n");
        assert!(
            joined.contains("datasets[0].preset: unknown preset `atlantis`"),
            "{joined}"
        );
        assert!(
            joined.contains("models[0].alpah: unknown field `alpah`"),
            "{joined}"
        );
        assert!(
            joined.contains("models[1].n_trees: invalid type"),
            "{joined}"
        );
        assert!(joined.contains("models[2].alpha: is -1"), "{joined}");
        assert!(
            joined.contains("models[3].kind: unknown model `svm`"),
            "{joined}"
        );
        assert!(joined.contains("splits[0].fractions"), "{joined}");
        assert_eq!(p.len(), 6, "{joined}");
    }

    #[test]
    fn several_seeds_of_a_preset_need_their_own_names() {
        let two = "datasets: [{preset: tiny6, seed: 1}, {preset: tiny6, seed: 2}]";
        let p = problems_of(&GOOD.replace("datasets: [{preset: tiny}]", two));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("`tiny6` is used twice (give each a `name:`"),
            "{p:?}"
        );
        let named =
            "datasets: [{preset: tiny6, seed: 1, name: a}, {preset: tiny6, seed: 2, name: b}]";
        assert!(problems_of(&GOOD.replace("datasets: [{preset: tiny}]", named)).is_empty());
        let bad = "datasets: [{preset: tiny6, name: a/b}]";
        let p = problems_of(&GOOD.replace("datasets: [{preset: tiny}]", bad));
        assert!(
            p[0].starts_with("datasets[0].name: `a/b` is not a dataset name"),
            "{p:?}"
        );
    }

    #[test]
    fn top_level_typo_is_named() {
        let p = problems_of(&GOOD.replace("seeds:", "seedz:"));
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("seedz: unknown field `seedz`"), "{p:?}");
    }

    #[test]
    fn cross_city_names_must_exist() {
        let p = problems_of(&GOOD.replace(
            "splits: [{kind: random}]",
            "splits: [{kind: cross_city, train: [tiny], test: [paris]}]",
        ));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("splits[0].test[0]: `paris` is not one of"),
            "{p:?}"
        );
    }

    #[test]
    fn a_model_restricted_to_some_datasets_runs_only_there() {
        let yaml = "name: e\ndatasets:\n  - preset: tiny\n  - preset: london\nmodels:\n  - kind: ols\n  - kind: lasso\n    alpha: 0.1\n    datasets: [london]\nsplits:\n  - kind: random\n  - kind: cross_city\n    train: [tiny]\n    test: [london]\nseeds: [0]\n";
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("e.yaml");
        std::fs::write(&f, yaml).unwrap();
        let plan = crate::config::Plan::new(load_experiment(&f).unwrap());
        let jobs: Vec<String> = plan
            .jobs
            .iter()
            .map(|j| format!("{} {}", j.dataset_label(), j.config.model.label()))
            .collect();
        // ols everywhere; lasso on london alone, not on tiny>london (it trains on tiny).
        assert_eq!(
            jobs,
            [
                "tiny ols",
                "london ols",
                "london lasso(a=0.1)",
                "tiny>london ols"
            ]
        );
        let p = problems_of(&yaml.replace("datasets: [london]", "datasets: [paris]"));
        assert!(
            p.iter()
                .any(|m| m.contains("models[1].datasets") && m.contains("paris")),
            "{p:?}"
        );
    }
}

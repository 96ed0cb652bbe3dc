//! The experiment's `pretrain:` stages: each a name, the unlabelled datasets (entries as in
//! `datasets:`, never one of the scored cities) and `models::ssl::SslConfig`'s fields; and
//! the models' `image_weights: pretrain:<name>`, resolved to the stage's cached encoder file
//! after checking the model's encoder is the stage's.

use std::path::Path;

use serde_yaml::Value;

use super::yaml::{join_path, resolve_use, typed, Problems};
use super::{parse_dataset, DatasetEntry, ModelEntry};
use crate::models::opencarbon::ImageEncoderKind;
use crate::models::ssl::SslConfig;
use crate::models::ModelConfig;
use crate::train::plan::PretrainStage;

/// What `image_weights` says to read a stage's encoder.
const PREFIX: &str = "pretrain:";

pub(super) fn parse_stages(
    values: Vec<Value>,
    cache_dir: &Path,
    image_size: usize,
    scored: &[DatasetEntry],
    problems: &mut Problems,
) -> Vec<PretrainStage> {
    let mut stages: Vec<PretrainStage> = Vec::new();
    for (i, element) in values.into_iter().enumerate() {
        let path = format!("pretrain[{i}]");
        let Some(mut map) = resolve_use(element, &path, problems) else {
            continue;
        };
        let name = match map.remove("name") {
            Some(Value::String(n))
                if !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')) =>
            {
                n
            }
            other => {
                problems.add(
                    join_path(&path, "name"),
                    format!("is {other:?}, expected a name of letters, digits, `_` and `-`"),
                );
                continue;
            }
        };
        if stages.iter().any(|s| s.name == name) {
            problems.add(join_path(&path, "name"), format!("`{name}` is used twice"));
        }
        let mut unlabelled = Vec::new();
        match map.remove("unlabelled") {
            Some(Value::Sequence(items)) if !items.is_empty() => {
                for (k, item) in items.into_iter().enumerate() {
                    let at = format!("{path}.unlabelled[{k}]");
                    let Some(entry) = parse_dataset(item, &at, problems) else {
                        continue;
                    };
                    // Pretraining on a scored city would let its test tiles shape the encoder.
                    if scored.iter().any(|d| d.source == entry.source) {
                        problems.add(
                            at,
                            format!(
                                "`{}` is also a dataset the experiment scores: unlabelled tiles must come from other cities (e.g. other generator seeds of the preset)",
                                entry.name
                            ),
                        );
                        continue;
                    }
                    unlabelled.push(entry);
                }
            }
            _ => {
                problems.add(
                    join_path(&path, "unlabelled"),
                    "expected a non-empty list of datasets (as under `datasets:`)",
                );
                continue;
            }
        }
        let Some(config) = typed::<SslConfig>(Value::Mapping(map), &path, problems) else {
            continue;
        };
        for (field, message) in config.check() {
            problems.add(join_path(&path, field), message);
        }
        // The directory is named by everything that decides the encoder.
        let identity = serde_json::json!({
            "config": config,
            "unlabelled": unlabelled,
            "image_size": image_size,
        });
        let hash = crate::track::content_hash(identity.to_string().as_bytes());
        stages.push(PretrainStage {
            dir: cache_dir
                .join("pretrain")
                .join(format!("{name}-{}", &hash[..10])),
            name,
            config,
            unlabelled,
        });
    }
    stages
}

/// Replace each model's `image_weights: pretrain:<name>` by the stage's encoder file, once
/// its encoder is checked to be the stage's (`resnet`, the same widths and blocks).
pub(super) fn resolve_weights(
    models: &mut [ModelEntry],
    stages: &[PretrainStage],
    problems: &mut Problems,
) {
    for entry in models {
        let path = format!("models[{}].image_weights", entry.index);
        let (weights, kind, widths, blocks) = match &mut entry.spec.model {
            ModelConfig::OpenCarbon(c) => (
                &mut c.image_weights,
                c.image_encoder,
                c.image_widths.clone(),
                c.image_blocks,
            ),
            ModelConfig::LinearProbe(c) => (
                &mut c.image_weights,
                c.image_encoder,
                c.image_widths.clone(),
                c.image_blocks,
            ),
            _ => continue,
        };
        let Some(name) = weights.as_deref().and_then(|w| w.strip_prefix(PREFIX)) else {
            continue;
        };
        let Some(stage) = stages.iter().find(|s| s.name == name) else {
            let known: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
            problems.add(
                path,
                format!(
                    "names no pretrain stage `{name}` (stages: {})",
                    known.join(", ")
                ),
            );
            continue;
        };
        let c = &stage.config;
        if kind != ImageEncoderKind::Resnet || widths != c.image_widths || blocks != c.image_blocks
        {
            problems.add(
                path,
                format!(
                    "stage `{name}` trains a resnet encoder with image_widths {:?} and image_blocks {}; this model's encoder differs",
                    c.image_widths, c.image_blocks
                ),
            );
            continue;
        }
        *weights = Some(stage.encoder_file().display().to_string());
    }
}

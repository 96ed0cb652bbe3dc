//! OpenCarbon: the contrastive, cross-modality model with a neighbourhood module
//! (../shared/spec/opencarbon-model.md). `network` is the model, `train` the loop.

pub mod analysis;
pub mod eval;
pub mod inputs;
pub mod network;
pub mod predict;
pub mod pretrained;
pub mod train;

use serde::{Deserialize, Serialize};

use super::FieldProblem;
pub use crate::nn::learner::{PatienceMode, Schedule};

/// OpenCarbon's `model.json`: what `predict` needs to apply a run (normalisations, the POI
/// categories of the network's channels, the checkpoint) and the analyses (`analysis`: SE
/// gates, POI weight by emission decile), written by training and read by `predict`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenCarbonRecord {
    pub best_epoch: usize,
    pub best_validation_score: f64,
    pub checkpoint: String,
    pub(crate) image_norm: inputs::ImageNorm,
    pub target_norm: train::TargetScale,
    /// Absent in runs written before it was recorded (`predict` then reads the training
    /// dataset's dataset.yaml).
    #[serde(default)]
    pub poi_categories: Option<Vec<String>>,
    #[serde(flatten)]
    pub analysis: serde_json::Map<String, serde_json::Value>,
}

/// The default of `image_blocks` (not shown in labels or job configurations).
const DEFAULT_IMAGE_BLOCKS: usize = 2;
/// The default of `step_gamma`.
const DEFAULT_STEP_GAMMA: f64 = 0.1;

fn is_d_blocks(v: &usize) -> bool {
    *v == DEFAULT_IMAGE_BLOCKS
}

/// Which image encoder to build.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageEncoderKind {
    /// Stride-2 conv stages and one residual block: the CPU configuration at 64 px.
    #[default]
    Small,
    /// ResNet-18-shaped (7×7 stem, max pool, stages of basic blocks): 256 px GPU runs.
    Resnet,
}

impl ImageEncoderKind {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Hyperparameters of one OpenCarbon job. Defaults are the authors' settings, except the
/// image encoder, which is the small residual CNN for CPU runs (`image_widths`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenCarbonConfig {
    pub embedding_dim: usize,
    /// Neighbourhood half-size: M = 2k + 1.
    pub neighborhood_k: usize,
    /// `small` (default) or `resnet`. New fields are left out of the serialised job when
    /// they hold their default, so adding them did not change existing run ids.
    #[serde(skip_serializing_if = "ImageEncoderKind::is_default")]
    pub image_encoder: ImageEncoderKind,
    /// Channels of the image encoder's stages (`small`: its stride-2 stages; `resnet`: the
    /// stem and each stage of basic blocks, [64, 128, 256, 512] for ResNet-18).
    pub image_widths: Vec<usize>,
    /// Basic blocks per stage of the `resnet` encoder (2 for ResNet-18).
    #[serde(skip_serializing_if = "is_d_blocks")]
    pub image_blocks: usize,
    /// Squeeze-and-excitation blocks in the POI encoder.
    pub se: bool,
    /// The InfoNCE term between the centre tiles' image and POI embeddings.
    pub contrastive: bool,
    pub alpha: f64,
    pub temperature: f64,
    /// First epoch with the contrastive term.
    pub contrastive_epoch: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    pub max_epochs: usize,
    /// Validate every this many epochs.
    pub valid_every: usize,
    /// Stop after this many validations without a better validation R² ...
    pub patience: usize,
    /// ... but never before this epoch.
    pub min_epochs: usize,
    /// Batches made of whole spatial patches of `patch_tiles`×`patch_tiles` targets instead of
    /// single random targets (0 = the reference's random batches). Neighbouring targets share
    /// most of their neighbourhoods, and every distinct tile is encoded once per batch, so
    /// patches cut the encoder work several-fold; the patches themselves are shuffled.
    pub patch_tiles: usize,
    // The recipe fields below were added after results existed: each is left out of the
    // serialised job while it holds its default, so older run ids stay valid.
    /// `l1` (default), `huber` or `mse`.
    #[serde(skip_serializing_if = "LossKind::is_default")]
    pub loss: LossKind,
    /// `constant` (default), `cosine` (with `warmup_epochs`) or `step`.
    #[serde(skip_serializing_if = "Schedule::is_default")]
    pub schedule: Schedule,
    /// Epochs of linear warm-up from lr/warmup to lr (cosine and step schedules).
    #[serde(skip_serializing_if = "is_zero_usize")]
    pub warmup_epochs: usize,
    /// Step schedule: multiply the rate by `step_gamma` every `step_every` epochs.
    #[serde(skip_serializing_if = "is_zero_usize")]
    pub step_every: usize,
    #[serde(skip_serializing_if = "is_d_step_gamma")]
    pub step_gamma: f64,
    /// Decay of an exponential moving average of the weights and batch-norm statistics
    /// (e.g. 0.99 per step); 0 = off. When on, validation, the checkpoint and the final
    /// predictions use the averaged weights.
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub ema: f64,
    /// Clip the gradients to this global norm before each Adam step; 0 = off.
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub clip_norm: f64,
    /// One of the 8 dihedral transforms (rotations by 90°, reflections) per training batch,
    /// applied to every image, POI raster and the neighbourhood arrangement alike.
    #[serde(skip_serializing_if = "is_false")]
    pub augment: bool,
    /// `reset` (default) or `cumulative` (the authors' rule), see `PatienceMode`.
    #[serde(skip_serializing_if = "PatienceMode::is_default")]
    pub patience_mode: PatienceMode,
    /// Pretrained weights for the `resnet` image encoder: a safetensors file in torchvision's
    /// ResNet names (scripts/convert_torchvision_resnet.py makes one from a `.pth`), loaded
    /// before training, its `fc` replaced by the projection and the images normalised as
    /// the file says. A relative path is relative to where `run` runs. None: random weights.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_weights: Option<String>,
    /// `fine_tune` (default): the image encoder trains with the rest; `frozen`: its body
    /// keeps its weights and batch-norm statistics, only its projection trains.
    #[serde(skip_serializing_if = "EncoderTraining::is_default")]
    pub image_training: EncoderTraining,
    /// The image encoder body's own learning rate when fine-tuning (it follows the same
    /// schedule, scaled by image_lr / lr); None: `lr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_lr: Option<f64>,
}

/// Whether the image encoder's body trains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncoderTraining {
    #[default]
    FineTune,
    Frozen,
}

impl EncoderTraining {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for OpenCarbonConfig {
    /// The authors' settings, with the small image encoder.
    fn default() -> Self {
        OpenCarbonConfig {
            embedding_dim: 32,
            neighborhood_k: 1,
            image_encoder: ImageEncoderKind::default(),
            image_widths: vec![16, 32, 64],
            image_blocks: DEFAULT_IMAGE_BLOCKS,
            se: true,
            contrastive: true,
            alpha: 0.001,
            temperature: 0.07,
            contrastive_epoch: 100,
            lr: 1e-3,
            weight_decay: 5e-3,
            batch_size: 32,
            max_epochs: 3000,
            valid_every: 5,
            patience: 30,
            min_epochs: 100,
            patch_tiles: 0,
            loss: LossKind::default(),
            schedule: Schedule::default(),
            warmup_epochs: 0,
            step_every: 0,
            step_gamma: DEFAULT_STEP_GAMMA,
            ema: 0.0,
            clip_norm: 0.0,
            augment: false,
            patience_mode: PatienceMode::default(),
            image_weights: None,
            image_training: EncoderTraining::default(),
            image_lr: None,
        }
    }
}

/// The prediction loss on the standardised log emission.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// |ŷ − y| (the reference's).
    #[default]
    L1,
    /// Huber with δ = 1 (one training standard deviation): quadratic near 0, L1 beyond.
    Huber,
    /// (ŷ − y)².
    Mse,
}

impl LossKind {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn is_zero_usize(v: &usize) -> bool {
    *v == 0
}
fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}
fn is_false(v: &bool) -> bool {
    !*v
}
fn is_d_step_gamma(v: &f64) -> bool {
    *v == DEFAULT_STEP_GAMMA
}

/// Fields whose value is itself a list (a list of lists gives grid alternatives).
pub const LIST_FIELDS: [&str; 1] = ["image_widths"];

impl OpenCarbonConfig {
    pub fn check(&self) -> Vec<FieldProblem> {
        let mut p = Vec::new();
        let mut positive = |name: &'static str, v: usize| {
            if v == 0 {
                p.push((name, "is 0, expected at least 1".to_string()));
            }
        };
        positive("embedding_dim", self.embedding_dim);
        positive("batch_size", self.batch_size);
        positive("max_epochs", self.max_epochs);
        positive("valid_every", self.valid_every);
        positive("patience", self.patience);
        positive("image_blocks", self.image_blocks);
        if self.image_widths.is_empty() || self.image_widths.contains(&0) {
            p.push((
                "image_widths",
                format!(
                    "is {:?}, expected non-empty positive channel counts",
                    self.image_widths
                ),
            ));
        }
        for (name, v) in [
            ("alpha", self.alpha),
            ("weight_decay", self.weight_decay),
            ("clip_norm", self.clip_norm),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                p.push((name, format!("is {v}, expected a number >= 0")));
            }
        }
        for (name, v) in [("temperature", self.temperature), ("lr", self.lr)] {
            if !(v.is_finite() && v > 0.0) {
                p.push((name, format!("is {v}, expected a number > 0")));
            }
        }
        if !(self.ema.is_finite() && (0.0..1.0).contains(&self.ema)) {
            p.push((
                "ema",
                format!("is {}, expected a decay in [0, 1) (0 = off)", self.ema),
            ));
        }
        if self.schedule == Schedule::Step && self.step_every == 0 {
            p.push((
                "step_every",
                "is 0, expected at least 1 with `schedule: step`".into(),
            ));
        }
        if !(self.step_gamma.is_finite() && self.step_gamma > 0.0) {
            p.push((
                "step_gamma",
                format!("is {}, expected a number > 0", self.step_gamma),
            ));
        }
        if self.warmup_epochs >= self.max_epochs && self.warmup_epochs > 0 {
            p.push((
                "warmup_epochs",
                format!(
                    "is {}, expected fewer than max_epochs ({})",
                    self.warmup_epochs, self.max_epochs
                ),
            ));
        }
        if self.batch_size == 1 {
            p.push(("batch_size", "is 1; batch norm needs at least 2".into()));
        }
        if self.image_weights.is_some() && self.image_encoder != ImageEncoderKind::Resnet {
            p.push((
                "image_weights",
                "needs `image_encoder: resnet` (the weights are a torchvision ResNet's)".into(),
            ));
        }
        if let Some(lr) = self.image_lr {
            if !(lr.is_finite() && lr > 0.0) {
                p.push(("image_lr", format!("is {lr}, expected a number > 0")));
            } else if self.image_training == EncoderTraining::Frozen {
                p.push((
                    "image_lr",
                    "is set, but `image_training: frozen` trains no encoder weights".into(),
                ));
            }
        }
        if let Some(problem) = super::min_epochs_problem(self.min_epochs, self.max_epochs) {
            p.push(("min_epochs", problem));
        }
        use super::size_limits as limit;
        let widest = self.image_widths.iter().copied().max().unwrap_or(0);
        p.extend(
            [
                ("embedding_dim", self.embedding_dim, limit::EMBEDDING_DIM),
                ("image_widths", widest, limit::CHANNELS),
                ("image_blocks", self.image_blocks, limit::BLOCKS),
                ("batch_size", self.batch_size, limit::BATCH_SIZE),
            ]
            .into_iter()
            .filter_map(|(name, v, max)| super::size_problem(name, v, max)),
        );
        // 3×3 convolutions between consecutive stages (each stage's blocks, two per block),
        // for the image and POI encoders alike, and a few embedding × embedding matrices
        // (projections, attention, fusion).
        let widths: Vec<f64> = std::iter::once(3.0)
            .chain(self.image_widths.iter().map(|&w| w as f64))
            .collect();
        let convs: f64 = widths.windows(2).map(|w| 9.0 * w[0] * w[1]).sum::<f64>()
            * 2.0
            * self.image_blocks.max(1) as f64;
        let weights = 2.0 * convs + 16.0 * (self.embedding_dim as f64).powi(2);
        let sizes_fine = !p
            .iter()
            .any(|(f, _)| ["embedding_dim", "image_widths", "image_blocks"].contains(f));
        p.extend(
            sizes_fine
                .then(|| {
                    super::weights_problem(weights, "image_widths, image_blocks, embedding_dim")
                })
                .flatten(),
        );
        p
    }

    /// `opencarbon`, then in brackets every field that differs from the defaults (the
    /// authors' settings): the switches as `resnet`, `no-se`, `no-cl`, every other field as
    /// `name=value`, in field order. Two different recipes therefore never share a label
    /// (and a table cell).
    pub fn label(&self) -> String {
        let mut flags: Vec<String> = Vec::new();
        if self.image_encoder == ImageEncoderKind::Resnet {
            flags.push("resnet".into());
        }
        if !self.se {
            flags.push("no-se".into());
        }
        if !self.contrastive {
            flags.push("no-cl".into());
        }
        let mine = serde_json::to_value(self).expect("a config serialises");
        let defaults = serde_json::to_value(Self::default()).expect("a config serialises");
        if let (serde_json::Value::Object(mine), serde_json::Value::Object(defaults)) =
            (mine, defaults)
        {
            for (name, value) in mine {
                if matches!(name.as_str(), "image_encoder" | "se" | "contrastive")
                    || defaults.get(&name) == Some(&value)
                {
                    continue;
                }
                let text = match &value {
                    serde_json::Value::Array(items) => items
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join("/"),
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                flags.push(format!("{name}={text}"));
            }
        }
        if flags.is_empty() {
            "opencarbon".into()
        } else {
            format!("opencarbon[{}]", flags.join(","))
        }
    }
}

impl super::Model for OpenCarbonConfig {
    /// The serialised config leaves the recipe fields added after results existed out at
    /// their defaults (so older run ids stayed valid); shown, they are all there.
    fn all_fields(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        let added = serde_json::json!({
            "image_encoder": self.image_encoder,
            "image_blocks": self.image_blocks,
            "loss": self.loss,
            "schedule": self.schedule,
            "warmup_epochs": self.warmup_epochs,
            "step_every": self.step_every,
            "step_gamma": self.step_gamma,
            "ema": self.ema,
            "clip_norm": self.clip_norm,
            "augment": self.augment,
            "patience_mode": self.patience_mode,
            "image_weights": self.image_weights,
            "image_training": self.image_training,
            "image_lr": self.image_lr,
        });
        if let (serde_json::Value::Object(map), serde_json::Value::Object(added)) = (&mut v, added)
        {
            for (k, value) in added {
                map.entry(k).or_insert(value);
            }
        }
        v
    }

    const KIND: &'static str = "opencarbon";
    const LIST_FIELDS: &'static [&'static str] = &LIST_FIELDS;

    fn label(&self) -> String {
        OpenCarbonConfig::label(self)
    }

    fn check(&self) -> Vec<FieldProblem> {
        OpenCarbonConfig::check(self)
    }

    /// The pretrained weights file, if any, reads and fits the encoder.
    fn check_datasets(
        &self,
        _datasets: &[&crate::data::PreparedDataset],
    ) -> crate::error::Result<()> {
        pretrained::check_file(self)
    }

    fn fit(
        &self,
        job: &super::JobInput,
        run: &mut crate::track::RunDir,
    ) -> crate::error::Result<super::Fitted> {
        train::fit_predict(self, job, run)
    }
}

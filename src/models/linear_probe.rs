//! The linear probe (`kind: linear_probe`): how much an image encoder's representation holds
//! before any fine-tuning. The encoder (OpenCarbon's `small` or `resnet`, random weights
//! drawn from the job's seed or pretrained ones from `image_weights`) is frozen; every tile's
//! image goes through it once in evaluation mode, its globally pooled features are
//! standardised on the training tiles, and ridge regression (`ridge`) maps them to log
//! emission, its penalty chosen among `alphas` by validation R².

use dfdx::prelude::*;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use super::opencarbon::inputs::{image_norm, tile_inputs, Dihedral, ImageNorm};
use super::opencarbon::network::ImageEncoder;
use super::opencarbon::{pretrained, ImageEncoderKind, OpenCarbonConfig};
use super::ridge::RidgeConfig;
use super::{FieldProblem, Fitted, Inputs, JobInput, Model, Standardizer};
use crate::data::{PreparedDataset, SplitPart};
use crate::error::{Error, Result};
use crate::track::RunDir;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinearProbeConfig {
    /// `small` or `resnet`, as OpenCarbon's `image_encoder`.
    pub image_encoder: ImageEncoderKind,
    pub image_widths: Vec<usize>,
    pub image_blocks: usize,
    /// Converted torchvision weights (as OpenCarbon's); None: random weights from the seed.
    pub image_weights: Option<String>,
    /// Ridge penalties tried; the one with the best validation R² is kept.
    pub alphas: Vec<f64>,
}

impl Default for LinearProbeConfig {
    /// OpenCarbon's default encoder, and penalties a decade apart.
    fn default() -> Self {
        let encoder = OpenCarbonConfig::default();
        LinearProbeConfig {
            image_encoder: encoder.image_encoder,
            image_widths: encoder.image_widths,
            image_blocks: encoder.image_blocks,
            image_weights: None,
            alphas: vec![0.1, 1.0, 10.0, 100.0, 1000.0],
        }
    }
}

/// Tiles encoded per batch.
const BATCH: usize = 64;

impl LinearProbeConfig {
    /// The encoder's settings as OpenCarbon holds them (its other fields unused).
    fn encoder_config(&self) -> OpenCarbonConfig {
        OpenCarbonConfig {
            image_encoder: self.image_encoder,
            image_widths: self.image_widths.clone(),
            image_blocks: self.image_blocks,
            image_weights: self.image_weights.clone(),
            ..OpenCarbonConfig::default()
        }
    }

    /// Each of `tiles`' pooled features (rows), from the frozen encoder.
    fn features(
        &self,
        seed: u64,
        datasets: &[&PreparedDataset],
        tiles: &[(usize, usize)],
        train: &[(usize, usize)],
        run: &mut RunDir,
    ) -> Result<Array2<f64>> {
        let dev = Cpu::seed_from_u64(seed);
        let cfg = self.encoder_config();
        let mut encoder = ImageEncoder::new(&dev, &cfg);
        let norm: ImageNorm = match &self.image_weights {
            Some(path) => {
                let path = std::path::Path::new(path);
                let weights = pretrained::read(path)?;
                pretrained::load(&mut encoder, path, &weights, self.image_blocks)?;
                run.log(&format!(
                    "linear probe: pretrained weights {} (content hash {})",
                    path.display(),
                    weights.fingerprint
                ));
                weights.norm.clone()
            }
            None => {
                run.log("linear probe: random weights from the job's seed");
                image_norm(datasets, train)
            }
        };
        let only_images = Inputs {
            image: true,
            poi: false,
            neighborhood: false,
        };
        let mut rows: Vec<f32> = Vec::new();
        let mut width = 0;
        for chunk in tiles.chunks(BATCH) {
            let (images, _) = tile_inputs(&dev, datasets, chunk, only_images, &norm, Dihedral(0));
            let images = images.ok_or_else(|| Error::Internal("no images".into()))?;
            let f = encoder.features(images, false);
            width = f.shape().1;
            rows.extend(f.as_vec());
        }
        Array2::from_shape_vec(
            (tiles.len(), width),
            rows.into_iter().map(f64::from).collect(),
        )
        .map_err(|e| Error::Internal(format!("probe features: {e}")))
    }
}

impl Model for LinearProbeConfig {
    const KIND: &'static str = "linear_probe";
    const LIST_FIELDS: &'static [&'static str] = &["image_widths", "alphas"];

    fn label(&self) -> String {
        let weights = self
            .image_weights
            .as_deref()
            .map_or("random".to_string(), |w| w.to_string());
        format!(
            "linear_probe({}{:?},{weights})",
            match self.image_encoder {
                ImageEncoderKind::Small => "small",
                ImageEncoderKind::Resnet => "resnet",
            },
            self.image_widths
        )
    }

    fn check(&self) -> Vec<FieldProblem> {
        let mut encoder = self.encoder_config();
        // OpenCarbon's checks of the encoder's fields, and only those.
        encoder.embedding_dim = 1;
        let mut problems: Vec<FieldProblem> = encoder
            .check()
            .into_iter()
            .filter(|(field, _)| field.starts_with("image_"))
            .collect();
        if self.alphas.is_empty() || self.alphas.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
            problems.push((
                "alphas",
                format!("is {:?}, expected penalties > 0", self.alphas),
            ));
        }
        problems
    }

    /// The pretrained weights file, if any, reads and fits the encoder.
    fn check_datasets(&self, _datasets: &[&PreparedDataset]) -> Result<()> {
        pretrained::check_file(&self.encoder_config())
    }

    fn fit(&self, job: &JobInput, run: &mut RunDir) -> Result<Fitted> {
        if !job.inputs.image {
            return Err(Error::Usage(
                "linear_probe reads the images: `image: false` leaves it nothing".into(),
            ));
        }
        let datasets = job.datasets;
        let part = |p: SplitPart| -> Vec<usize> {
            (0..job.rows.len())
                .filter(|&i| job.rows[i].part == p)
                .collect()
        };
        let (train, valid) = (part(SplitPart::Train), part(SplitPart::Valid));
        let tiles: Vec<(usize, usize)> = job.rows.iter().map(|r| (r.dataset, r.tile)).collect();
        let train_tiles: Vec<(usize, usize)> = train.iter().map(|&i| tiles[i]).collect();
        let x = self.features(job.seed, datasets, &tiles, &train_tiles, run)?;
        let y: Array1<f64> = tiles
            .iter()
            .map(|&(d, t)| datasets[d].data.tiles[t].emission.ln())
            .collect();
        let scaler = Standardizer::fit(x.select(ndarray::Axis(0), &train).view());
        let x = scaler.apply(x.view());
        let (x_train, y_train) = (
            x.select(ndarray::Axis(0), &train),
            y.select(ndarray::Axis(0), &train),
        );
        if valid.is_empty() && self.alphas.len() > 1 {
            return Err(Error::Usage(
                "linear_probe chooses its penalty on the validation tiles: this split has none (give one alpha)".into(),
            ));
        }
        let mut tried = Vec::new();
        let mut best: Option<(f64, f64, Box<dyn super::FittedModel>)> = None;
        for &alpha in &self.alphas {
            let fitted = RidgeConfig { alpha }.fit(x_train.view(), &y_train)?;
            let score = if valid.is_empty() {
                f64::NAN
            } else {
                let p = fitted.predict(x.select(ndarray::Axis(0), &valid).view())?;
                let truth: Vec<f64> = valid.iter().map(|&i| y[i]).collect();
                crate::metrics::r2(&truth, &p.to_vec())
            };
            tried.push(serde_json::json!({ "alpha": alpha, "valid_r2": score }));
            // Ties go to the earlier penalty of the list; a NaN score (a non-finite
            // prediction) loses to any number.
            let better = |b: &(f64, f64, Box<dyn super::FittedModel>)| {
                !score.is_nan() && (b.1.is_nan() || score > b.1)
            };
            if best.as_ref().is_none_or(better) {
                best = Some((alpha, score, fitted));
            }
        }
        let (alpha, score, fitted) = best.ok_or_else(|| Error::Internal("no alpha".into()))?;
        run.log(&format!(
            "linear probe: {} features, ridge alpha {alpha} (validation R² {score:.4})",
            x.ncols()
        ));
        let predictions = fitted.predict(x.view())?.to_vec();
        Ok(Fitted {
            predictions,
            description: serde_json::json!({
                "features": x.ncols(),
                "alpha": alpha,
                "valid_r2_by_alpha": tried,
                "image_weights": self.image_weights,
            }),
        })
    }
}

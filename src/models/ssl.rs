//! Self-supervised pretraining of the `resnet` image encoder on unlabelled tiles (an
//! experiment's `pretrain:` stages), by one of two methods:
//!
//! - `tile2vec` (Jean et al. 2019): triplets of an anchor tile, a queen neighbour (nearby
//!   land looks alike) and a random tile of any unlabelled city; the margin loss
//!   max(0, ‖z_a − z_n‖² − ‖z_a − z_d‖² + m) plus a small penalty on the embeddings' size;
//! - `simclr` (Chen et al. 2020): two augmented views of each tile, a two-layer projection
//!   head, cosine similarities, and the symmetric InfoNCE over the batch at temperature τ.
//!
//! Augmentations respect imagery: the 8 rotations and reflections, a per-channel gain and
//! offset (sensor and season), and haze (a blend towards a light grey). The encoder trains
//! through the shared `nn::learner` (resume of a killed stage, TensorBoard scalars); the
//! result is written in torchvision's names (`opencarbon::pretrained`), with the unlabelled
//! tiles' normalisation in its metadata, so `image_weights` loads it like ImageNet weights.

use dfdx::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::opencarbon::inputs::{image_norm, Dihedral, ImageNorm};
use super::opencarbon::network::ImageEncoder;
use super::opencarbon::pretrained::{is_encoder_body, torchvision_name, MEAN_KEY, STD_KEY};
use super::opencarbon::{ImageEncoderKind, OpenCarbonConfig};
use super::FieldProblem;
use crate::data::PreparedDataset;
use crate::error::{Error, Result};
use crate::nn::device::ModelDevice;
use crate::nn::layers::{BatchNorm, Linear, Tensor2};
use crate::nn::learner::{self, LearnerSettings, LearningRate, StepReport, TrainSteps};
use crate::nn::params::{Adam, HasParams, ParamRef};
use crate::nn::Tensor4;
use crate::track::RunDir;

/// The file a finished stage leaves in its directory.
pub const ENCODER_FILE: &str = "encoder.safetensors";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SslMethod {
    Tile2vec,
    Simclr,
}

/// One pretraining stage's hyperparameters (its unlabelled datasets are listed beside them
/// in the experiment and resolved by `config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SslConfig {
    pub method: SslMethod,
    pub image_widths: Vec<usize>,
    pub image_blocks: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// SimCLR's softmax temperature.
    pub temperature: f64,
    /// Tile2Vec's margin.
    pub margin: f64,
    /// SimCLR's projection head width.
    pub projection_dim: usize,
    /// Initialisation, batch order and augmentations.
    pub seed: u64,
}

impl Default for SslConfig {
    fn default() -> Self {
        SslConfig {
            method: SslMethod::Simclr,
            image_widths: vec![16, 32, 64, 128],
            image_blocks: 1,
            epochs: 20,
            batch_size: 64,
            lr: 1e-3,
            weight_decay: 1e-6,
            temperature: 0.2,
            margin: 1.0,
            projection_dim: 64,
            seed: 0,
        }
    }
}

impl SslConfig {
    pub fn check(&self) -> Vec<FieldProblem> {
        let mut p: Vec<FieldProblem> = self
            .encoder_config()
            .check()
            .into_iter()
            .filter(|(f, _)| f.starts_with("image_"))
            .collect();
        for (name, v) in [
            ("epochs", self.epochs),
            ("projection_dim", self.projection_dim),
        ] {
            if v == 0 {
                p.push((name, "is 0, expected at least 1".into()));
            }
        }
        if self.batch_size < 2 {
            p.push((
                "batch_size",
                format!("is {}, expected at least 2", self.batch_size),
            ));
        }
        for (name, v) in [
            ("lr", self.lr),
            ("temperature", self.temperature),
            ("margin", self.margin),
        ] {
            if !(v.is_finite() && v > 0.0) {
                p.push((name, format!("is {v}, expected a number > 0")));
            }
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            p.push((
                "weight_decay",
                format!("is {}, expected a number >= 0", self.weight_decay),
            ));
        }
        p
    }

    /// The encoder as OpenCarbon builds it (`resnet`; the projection is not trained here).
    pub fn encoder_config(&self) -> OpenCarbonConfig {
        OpenCarbonConfig {
            image_encoder: ImageEncoderKind::Resnet,
            image_widths: self.image_widths.clone(),
            image_blocks: self.image_blocks,
            embedding_dim: 1,
            ..OpenCarbonConfig::default()
        }
    }

    fn learner_settings(&self) -> LearnerSettings {
        LearnerSettings {
            max_epochs: self.epochs,
            valid_every: 1,
            // No early stop: every epoch runs; the lowest training loss is kept.
            patience: self.epochs,
            min_epochs: self.epochs,
            patience_mode: Default::default(),
            learning_rate: LearningRate {
                base: self.lr,
                schedule: Default::default(),
                warmup_epochs: 0,
                step_every: 0,
                step_gamma: 0.1,
                max_epochs: self.epochs,
            },
            ema: 0.0,
            clip_norm: None,
            log_every: 1,
            name: "  pretrain",
        }
    }
}

/// Rows `idx` of `x`.
fn take_rows<D: Device<f32>, T: Tape<f32, D>>(x: Tensor2<D, T>, idx: &[usize]) -> Tensor2<D, T> {
    let dev = x.device().clone();
    let index: Tensor<(usize,), usize, D> = dev.tensor_from_vec(idx.to_vec(), (idx.len(),));
    x.gather(index)
}

/// Σ over each row of x².
fn row_sq<D: Device<f32>, T: Tape<f32, D>>(x: Tensor2<D, T>) -> Tensor<(usize,), f32, D, T> {
    x.square().sum::<(usize,), Axis<1>>()
}

/// The encoder, the SimCLR head and the unlabelled tiles: what the learner trains.
pub struct SslTrainer<'a, D: ModelDevice> {
    cfg: &'a SslConfig,
    datasets: &'a [&'a PreparedDataset],
    dev: D,
    pub encoder: ImageEncoder<D>,
    head: (Linear<D>, Linear<D>),
    opt: Adam<D>,
    pub(crate) norm: ImageNorm,
    rng: ChaCha8Rng,
    tiles: Vec<(usize, usize)>,
}

impl<'a, D: ModelDevice> SslTrainer<'a, D> {
    pub fn new(cfg: &'a SslConfig, dev: D, datasets: &'a [&'a PreparedDataset]) -> Self {
        let encoder = ImageEncoder::new(&dev, &cfg.encoder_config());
        let width = *cfg.image_widths.last().unwrap_or(&1);
        let head = (
            Linear::new(&dev, width, width),
            Linear::new(&dev, width, cfg.projection_dim),
        );
        let tiles: Vec<(usize, usize)> = datasets
            .iter()
            .enumerate()
            .flat_map(|(d, ds)| (0..ds.data.tiles.len()).map(move |t| (d, t)))
            .collect();
        SslTrainer {
            cfg,
            datasets,
            norm: image_norm(datasets, &tiles),
            encoder,
            head,
            opt: Adam::new(cfg.lr as f32, cfg.weight_decay as f32),
            rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x551_7AB5),
            dev,
            tiles,
        }
    }

    /// Augmented, normalised images (N, 3, S, S) of `tiles`, one random view each.
    fn views(&mut self, tiles: &[(usize, usize)]) -> Tensor4<D> {
        let s = self.datasets[0].images.size;
        let plane = s * s;
        let mut data = vec![0f32; tiles.len() * 3 * plane];
        let norm = &self.norm;
        for (n, &(d, t)) in tiles.iter().enumerate() {
            let turn = Dihedral(self.rng.gen_range(0..8));
            let gain: [f32; 3] = std::array::from_fn(|_| self.rng.gen_range(0.8..1.2));
            let offset: [f32; 3] = std::array::from_fn(|_| self.rng.gen_range(-0.2..0.2));
            let haze: f32 = self.rng.gen_range(0.0..0.3);
            let out = &mut data[n * 3 * plane..(n + 1) * 3 * plane];
            for (p, px) in self.datasets[d].images.tile(t).chunks_exact(3).enumerate() {
                let (r, c) = turn.apply(s, p / s, p % s);
                for ch in 0..3 {
                    let grey = (200.0 / 255.0 - norm.mean[ch]) / norm.std[ch];
                    let v = (px[ch] as f32 / 255.0 - norm.mean[ch]) / norm.std[ch];
                    let v = gain[ch] * v + offset[ch];
                    out[ch * plane + r * s + c] = (1.0 - haze) * v + haze * grey;
                }
            }
        }
        self.dev.tensor_from_vec(data, (tiles.len(), 3, s, s))
    }

    /// A random queen neighbour of `(d, t)`, or the tile itself on an island.
    fn neighbour(&mut self, (d, t): (usize, usize)) -> (usize, usize) {
        let near = self.datasets[d].graph.neighbours(t);
        match near.choose(&mut self.rng) {
            Some(&n) => (d, n),
            None => (d, t),
        }
    }

    /// The SSL loss of `batch` on the tape, and the number of samples.
    fn loss(&mut self, batch: &[(usize, usize)]) -> Tensor<(), f32, D, OwnedTape<f32, D>> {
        let b = batch.len();
        match self.cfg.method {
            SslMethod::Simclr => {
                let mut both = batch.to_vec();
                both.extend_from_slice(batch);
                let x = self.views(&both).traced(Gradients::leaky());
                let f = self.encoder.features(x, true);
                let h = self.head.0.forward(f).relu();
                let z = self.head.1.forward(h);
                let (n, p) = *z.shape();
                let length = row_sq(z.retaped::<OwnedTape<f32, D>>()).sqrt() + 1e-6;
                let z = z / length.broadcast_like::<_, Axis<1>>(&(n, p));
                let first: Vec<usize> = (0..b).collect();
                let second: Vec<usize> = (b..2 * b).collect();
                let z1 = take_rows(z.retaped::<OwnedTape<f32, D>>(), &first);
                let z2 = take_rows(z, &second);
                let t = self.cfg.temperature as f32;
                let forward = crate::nn::layers::info_nce(
                    z1.retaped::<OwnedTape<f32, D>>(),
                    z2.retaped::<OwnedTape<f32, D>>(),
                    t,
                );
                (forward + crate::nn::layers::info_nce(z2, z1, t)) * 0.5
            }
            SslMethod::Tile2vec => {
                let mut all = batch.to_vec();
                let near: Vec<(usize, usize)> = batch.iter().map(|&a| self.neighbour(a)).collect();
                all.extend(near);
                for _ in 0..b {
                    let far = *self.tiles.choose(&mut self.rng).expect("tiles");
                    all.push(far);
                }
                let x = self.views(&all).traced(Gradients::leaky());
                let z = self.encoder.features(x, true);
                let idx = |k: usize| -> Vec<usize> { (k * b..(k + 1) * b).collect() };
                let za = take_rows(z.retaped::<OwnedTape<f32, D>>(), &idx(0));
                let zn = take_rows(z.retaped::<OwnedTape<f32, D>>(), &idx(1));
                let zd = take_rows(z.retaped::<OwnedTape<f32, D>>(), &idx(2));
                let near = row_sq(za.retaped::<OwnedTape<f32, D>>() - zn);
                let far = row_sq(za - zd);
                let triplet = (near - far + self.cfg.margin as f32).relu().mean();
                // Tile2Vec's penalty keeps the embeddings from growing to satisfy the margin.
                let size = row_sq(z).mean() * 0.01;
                triplet + size
            }
        }
    }
}

/// What pretraining trains: the encoder's body (not its projection, which OpenCarbon
/// replaces) and, for SimCLR, the projection head.
fn trained_params<'b, D: ModelDevice>(
    encoder: &'b mut ImageEncoder<D>,
    head: &'b mut (Linear<D>, Linear<D>),
    method: SslMethod,
    out: &mut Vec<(String, ParamRef<'b, D>)>,
) {
    let mut all = Vec::new();
    encoder.params(&mut all);
    out.extend(all.into_iter().filter(|(n, _)| is_encoder_body(n)));
    if method == SslMethod::Simclr {
        head.0.params("head.0", out);
        head.1.params("head.1", out);
    }
}

impl<D: ModelDevice> TrainSteps<D> for SslTrainer<'_, D> {
    type Batch = Vec<(usize, usize)>;

    fn params<'b>(&'b mut self, out: &mut Vec<(String, ParamRef<'b, D>)>) {
        trained_params(&mut self.encoder, &mut self.head, self.cfg.method, out);
    }

    fn running_stats(&mut self) -> Vec<(String, &mut BatchNorm<D>)> {
        let mut out = Vec::new();
        self.encoder.running_stats(&mut out);
        out
    }

    fn optimiser(&mut self) -> &mut Adam<D> {
        &mut self.opt
    }

    fn batches(&mut self, _epoch: usize) -> Vec<Vec<(usize, usize)>> {
        self.tiles.shuffle(&mut self.rng);
        self.tiles
            .chunks(self.cfg.batch_size)
            .filter(|c| c.len() >= 2)
            .map(|c| c.to_vec())
            .collect()
    }

    fn train_step(
        &mut self,
        _epoch: usize,
        batch: &Vec<(usize, usize)>,
        want_norm: bool,
    ) -> Result<StepReport> {
        let loss = self.loss(batch);
        let value = loss.array() as f64;
        let mut ps = Vec::new();
        trained_params(&mut self.encoder, &mut self.head, self.cfg.method, &mut ps);
        let grad_norm = self.opt.minimise(loss, &mut ps, want_norm)?;
        Ok(StepReport {
            losses: vec![("loss_ssl", value * batch.len() as f64)],
            samples: batch.len(),
            grad_norm,
        })
    }

    fn validate(&mut self, _epoch: usize) -> Result<Option<learner::Validation>> {
        Ok(None)
    }

    fn resume_state(&self) -> Option<serde_json::Value> {
        Some(crate::nn::resume::stream_state(
            &self.rng,
            "tiles",
            &self.tiles,
        ))
    }

    fn restore_resume_state(&mut self, state: &serde_json::Value) -> Result<()> {
        self.tiles =
            crate::nn::resume::restore_stream(state, &mut self.rng, "tiles", "pretraining")?;
        Ok(())
    }
}

/// Pretrain on `datasets` (unlabelled) into `run`; writes `ENCODER_FILE` (torchvision names,
/// the tiles' normalisation as metadata). Returns the final training loss per tile.
pub fn pretrain(
    cfg: &SslConfig,
    datasets: &[&PreparedDataset],
    source: &str,
    run: &mut RunDir,
) -> Result<f64> {
    let dev = Cpu::seed_from_u64(cfg.seed);
    let mut trainer = SslTrainer::new(cfg, dev, datasets);
    run.log(&format!(
        "pretrain {:?} on {} unlabelled tiles of {} dataset(s)",
        cfg.method,
        trainer.tiles.len(),
        datasets.len()
    ));
    let outcome = learner::fit(&mut trainer, &cfg.learner_settings(), run)?;
    let bytes = export_torchvision(
        &mut trainer.encoder,
        cfg.image_blocks,
        &trainer.norm,
        source,
    )?;
    run.write(ENCODER_FILE, &bytes)?;
    Ok(-outcome.best_score)
}

/// The encoder's body and batch-norm statistics as a safetensors file in torchvision's names,
/// with the normalisation `norm` in its metadata (what scripts/convert_torchvision_resnet.py
/// writes for ImageNet weights).
pub(crate) fn export_torchvision<D: ModelDevice>(
    encoder: &mut ImageEncoder<D>,
    blocks: usize,
    norm: &ImageNorm,
    source: &str,
) -> Result<Vec<u8>> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut params = Vec::new();
    encoder.params(&mut params);
    for (name, p) in params.iter().filter(|(n, _)| is_encoder_body(n)) {
        let theirs = torchvision_name(name, blocks)
            .ok_or_else(|| Error::Internal(format!("no torchvision name for {name}")))?;
        tensors.push((theirs, p.shape(), p.values()));
    }
    drop(params);
    let mut stats = Vec::new();
    encoder.running_stats(&mut stats);
    for (name, bn) in stats {
        for (suffix, values) in [
            ("running_mean", bn.running_mean.as_vec()),
            ("running_var", bn.running_var.as_vec()),
        ] {
            let ours = format!("{name}.{suffix}");
            let theirs = torchvision_name(&ours, blocks)
                .ok_or_else(|| Error::Internal(format!("no torchvision name for {ours}")))?;
            tensors.push((theirs, vec![values.len()], values));
        }
    }
    let metadata = std::collections::BTreeMap::from([
        ("format".to_string(), "torchvision-resnet".to_string()),
        (
            MEAN_KEY.to_string(),
            serde_json::json!(norm.mean).to_string(),
        ),
        (STD_KEY.to_string(), serde_json::json!(norm.std).to_string()),
        ("source".to_string(), source.to_string()),
    ]);
    crate::nn::params::f32_safetensors(&tensors, &metadata)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::prepared::prepare_dataset;
    use crate::data::synth::GENERATOR_VERSION;
    use crate::data::{DatasetEntry, DatasetSource};

    fn unlabelled(cache: &std::path::Path, seed: u64) -> PreparedDataset {
        let entry = DatasetEntry {
            name: format!("tiny{seed}"),
            source: DatasetSource::Preset {
                preset: "tiny".into(),
                seed,
                generator: GENERATOR_VERSION,
            },
        };
        prepare_dataset(&entry, cache, 32, 32).unwrap()
    }

    /// Each method lowers its own loss over a few epochs on unlabelled tiles, and the encoder
    /// it exports in torchvision's names loads back (`pretrained::load`) into an encoder that
    /// gives the same features bit for bit.
    #[test]
    fn both_methods_learn_and_export_what_they_learned() {
        let dir = tempfile::tempdir().unwrap();
        let sets = [unlabelled(dir.path(), 100), unlabelled(dir.path(), 101)];
        let refs: Vec<&PreparedDataset> = sets.iter().collect();
        for method in [SslMethod::Simclr, SslMethod::Tile2vec] {
            let cfg = SslConfig {
                method,
                image_widths: vec![4, 8],
                batch_size: 32,
                lr: 3e-3,
                ..SslConfig::default()
            };
            let mut trainer = SslTrainer::new(&cfg, Cpu::seed_from_u64(0), &refs);
            let losses: Vec<f64> = (0..8)
                .map(|e| {
                    let sums = learner::train_epoch(&mut trainer, e, None).unwrap();
                    sums.sums[0].1 / sums.samples as f64
                })
                .collect();
            eprintln!("{method:?}: loss per tile by epoch {losses:?}");
            let late = (losses[6] + losses[7]) / 2.0;
            assert!(late < losses[0], "{method:?} did not learn: {losses:?}");

            let bytes = export_torchvision(&mut trainer.encoder, 1, &trainer.norm, "test").unwrap();
            let path = dir.path().join("encoder.safetensors");
            std::fs::write(&path, bytes).unwrap();
            let weights = super::super::opencarbon::pretrained::read(&path).unwrap();
            assert_eq!(weights.norm.mean, trainer.norm.mean);
            let mut fresh = ImageEncoder::new(&Cpu::seed_from_u64(9), &cfg.encoder_config());
            super::super::opencarbon::pretrained::load(&mut fresh, &path, &weights, 1).unwrap();
            let tiles: Vec<(usize, usize)> = (0..6).map(|t| (0, t)).collect();
            let x = trainer.views(&tiles);
            let theirs = fresh.features(x.clone(), false).as_vec();
            let ours = trainer.encoder.features(x, false).as_vec();
            assert_eq!(ours, theirs);
        }
    }
}

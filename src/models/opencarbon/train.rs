//! Training OpenCarbon: mini-batches of target tiles whose neighbourhoods' distinct tiles are
//! encoded once, L1 loss (summed over the batch) plus α·InfoNCE after the warm-up epoch,
//! Adam with weight decay, validation every few epochs, early stopping on validation R²,
//! the best parameters kept, checkpointed as safetensors and used for the final predictions.
//! Evaluation encodes every tile of a city once and then gathers neighbourhoods.

use dfdx::prelude::*;
use rand::seq::SliceRandom;
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::network::OpenCarbonNet;
use super::{LossKind, OpenCarbonConfig};
use crate::data::PreparedDataset;
use crate::data::SplitPart;
use crate::error::{Error, Result};
use crate::models::Inputs;
use crate::models::{Fitted, JobInput, Row};
use crate::nn::device::{on_device, ModelDevice, OnDevice};
use crate::nn::layers::info_nce;
use crate::nn::layers::BatchNorm;
use crate::nn::learner::{self, LearnerSettings, LearningRate, StepReport, TrainSteps, Validation};
use crate::nn::params::{save_safetensors, Adam, ParamRef};
use crate::track::records::{self, CategoryImportanceRow, ModalityWeightRow};
use crate::track::RunDir;

use super::analysis::*;
use super::eval::*;
use super::inputs::*;

/// One epoch's batches: random targets (`patch_tiles` = 0), or whole shuffled spatial patches
/// of targets packed into batches of about `batch_size`.
fn make_batches(
    datasets: &[&PreparedDataset],
    train: &mut [(usize, usize)],
    batch_size: usize,
    patch_tiles: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<Vec<(usize, usize)>> {
    if patch_tiles == 0 {
        train.shuffle(rng);
        return train.chunks(batch_size).map(|c| c.to_vec()).collect();
    }
    let mut patches: std::collections::BTreeMap<(usize, u32, u32), Vec<(usize, usize)>> =
        Default::default();
    for &(d, t) in train.iter() {
        let tile = datasets[d].data.tiles[t];
        let key = (d, tile.x / patch_tiles as u32, tile.y / patch_tiles as u32);
        patches.entry(key).or_default().push((d, t));
    }
    let mut patches: Vec<Vec<(usize, usize)>> = patches.into_values().collect();
    patches.shuffle(rng);
    let mut batches: Vec<Vec<(usize, usize)>> = vec![Vec::new()];
    for p in patches {
        if batches
            .last()
            .is_some_and(|b| !b.is_empty() && b.len() + p.len() > batch_size)
        {
            batches.push(Vec::new());
        }
        batches.last_mut().unwrap().extend(p);
    }
    batches
}

/// Log emission's standardisation: the network learns (ln e − mean) / std.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TargetScale {
    pub mean: f64,
    pub std: f64,
}

impl TargetScale {
    /// The mean and deviation of log emission over `tiles` (the training targets).
    fn of(datasets: &[&PreparedDataset], tiles: &[(usize, usize)]) -> TargetScale {
        let y: Vec<f64> = tiles.iter().map(|t| log_emission(datasets, t)).collect();
        let mean = y.iter().sum::<f64>() / y.len() as f64;
        let var = y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / y.len() as f64;
        TargetScale {
            mean,
            std: var.sqrt().max(1e-6),
        }
    }

    fn unscale(&self, v: Vec<f64>) -> Vec<f64> {
        v.into_iter().map(|p| p * self.std + self.mean).collect()
    }
}

fn log_emission(datasets: &[&PreparedDataset], &(d, t): &(usize, usize)) -> f64 {
    datasets[d].data.tiles[t].emission.ln()
}

/// The network, its optimiser and data: what `nn::learner` trains (`TrainSteps`).
pub struct Trainer<'a, D: ModelDevice> {
    cfg: &'a OpenCarbonConfig,
    inputs: Inputs,
    datasets: &'a [&'a PreparedDataset],
    dev: D,
    net: OpenCarbonNet<D>,
    opt: Adam<D>,
    norm: ImageNorm,
    rng: ChaCha8Rng,
    train: Vec<(usize, usize)>,
    scale: TargetScale,
    /// Validation targets and their log emission.
    valid: Vec<(usize, usize)>,
    valid_y: Vec<f64>,
}

/// What one epoch measured (`Trainer::epoch`).
pub struct EpochStats {
    /// Mean training loss per target tile.
    pub loss_per_tile: f64,
    /// The prediction term per target tile.
    pub prediction_loss_per_tile: f64,
    /// The α·InfoNCE term per target tile (0 before the warm-up epoch or when off).
    pub contrastive_loss_per_tile: f64,
    /// Target tiles trained on (batches of one tile are skipped: batch norm needs two).
    pub tiles: usize,
    /// Gradient norm of the last batch.
    pub grad_norm: f32,
}

impl<'a, D: ModelDevice> Trainer<'a, D> {
    /// `dev`'s generator initialises the parameters; `seed` drives the batch order and the
    /// augmentation; the image statistics come from the training targets `train`, whose
    /// values the network learns standardised by `scale`.
    pub fn new(
        cfg: &'a OpenCarbonConfig,
        inputs: Inputs,
        seed: u64,
        dev: D,
        datasets: &'a [&'a PreparedDataset],
        train: Vec<(usize, usize)>,
        scale: TargetScale,
    ) -> Self {
        let (channels, raster) = (datasets[0].pois.channels, datasets[0].pois.size);
        Trainer {
            cfg,
            inputs,
            datasets,
            net: OpenCarbonNet::new(&dev, cfg, inputs, channels, raster),
            dev,
            opt: {
                let mut opt = Adam::new(cfg.lr as f32, cfg.weight_decay as f32);
                if let Some(image_lr) = cfg.image_lr {
                    // The encoder's body at its own rate; its projection at `lr`.
                    let factor = (image_lr / cfg.lr) as f32;
                    opt.lr_scales = vec![("image.proj.".into(), 1.0), ("image.".into(), factor)];
                }
                opt
            },
            norm: image_norm(datasets, &train),
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x0C_A2B0),
            train,
            scale,
            valid: Vec::new(),
            valid_y: Vec::new(),
        }
    }

    /// Load the image encoder's pretrained weights (`image_weights`), if any, and normalise
    /// images as they expect instead of by the training tiles' statistics. Returns the
    /// file's content hash.
    pub fn with_pretrained_image(mut self) -> Result<(Self, Option<String>)> {
        let cfg = self.cfg;
        let Some(path) = &cfg.image_weights else {
            return Ok((self, None));
        };
        let path = std::path::Path::new(path);
        let weights = super::pretrained::read(path)?;
        // Without the image input there is no encoder to load into.
        if let Some(encoder) = self.net.image.as_mut() {
            super::pretrained::load(encoder, path, &weights, cfg.image_blocks)?;
        }
        self.norm = weights.norm.clone();
        Ok((self, Some(weights.fingerprint)))
    }

    /// Validate on `valid` (dataset, tile) targets.
    pub fn with_validation(mut self, valid: Vec<(usize, usize)>) -> Self {
        self.valid_y = valid
            .iter()
            .map(|t| log_emission(self.datasets, t))
            .collect();
        self.valid = valid;
        self
    }

    /// One pass over the training targets at the schedule's rate, without the learner's
    /// moving average or validation (benchmarks and tests). Epochs start at 0.
    pub fn epoch(&mut self, epoch: usize) -> Result<EpochStats> {
        let settings = self.cfg.learner_settings();
        self.opt.lr = settings.learning_rate.at(epoch) as f32;
        self.opt.clip_norm = settings.clip_norm;
        let e = learner::train_epoch(self, epoch, None)?;
        let (total, prediction) = (e.sums[0].1, e.sums[1].1);
        let (tiles, grad_norm) = (e.samples, e.grad_norm);
        let per = |v: f64| v / tiles.max(1) as f64;
        Ok(EpochStats {
            loss_per_tile: per(total),
            prediction_loss_per_tile: per(prediction),
            contrastive_loss_per_tile: per(total - prediction),
            tiles,
            grad_norm,
        })
    }
}

impl<D: ModelDevice> TrainSteps<D> for Trainer<'_, D> {
    type Batch = Vec<(usize, usize)>;

    fn params<'b>(&'b mut self, out: &mut Vec<(String, ParamRef<'b, D>)>) {
        self.net.params(out);
    }

    fn running_stats(&mut self) -> Vec<(String, &mut BatchNorm<D>)> {
        self.net.running_stats()
    }

    fn optimiser(&mut self) -> &mut Adam<D> {
        &mut self.opt
    }

    fn batches(&mut self, _epoch: usize) -> Vec<Vec<(usize, usize)>> {
        make_batches(
            self.datasets,
            &mut self.train,
            self.cfg.batch_size,
            self.cfg.patch_tiles,
            &mut self.rng,
        )
    }

    fn trains_on(&self, batch: &Vec<(usize, usize)>) -> bool {
        batch.len() >= 2
    }

    fn train_step(
        &mut self,
        epoch: usize,
        batch: &Vec<(usize, usize)>,
        want_norm: bool,
    ) -> Result<StepReport> {
        let cfg = self.cfg;
        let mut lay = layout(self.datasets, batch, self.net.block_half_size());
        // Drawn only when augmenting, so runs without it keep their random stream.
        let transform = if cfg.augment {
            Dihedral(self.rng.gen_range(0..8))
        } else {
            Dihedral(0)
        };
        if transform.0 != 0 {
            for b in &mut lay.blocks {
                *b = transform.block(b);
            }
        }
        let (img, poi) = tile_inputs(
            &self.dev,
            self.datasets,
            &lay.tiles,
            self.inputs,
            &self.norm,
            transform,
        );
        // The image branch starts on a tape with a gradient store; the POI branch starts its
        // own tape in its first (sparse) convolution; the loss merges them.
        let img = img.map(|i| i.traced(Gradients::leaky()));
        let (xs, xp) = self.net.encode(img, poi.as_ref(), true);
        let f = self
            .net
            .head_from_embeddings(xs, xp, &lay.centres, &lay.blocks, true);
        let scale = self.scale;
        let y: Tensor<(usize,), f32, D> = self.dev.tensor_from_vec(
            batch
                .iter()
                .map(|t| ((log_emission(self.datasets, t) - scale.mean) / scale.std) as f32)
                .collect(),
            (batch.len(),),
        );
        let prediction_loss = prediction_loss(f.prediction - y, cfg.loss);
        let prediction_value = prediction_loss.array() as f64;
        let use_contrastive = cfg.contrastive && self.inputs.image && self.inputs.poi;
        let loss = match f.centre_pair {
            Some((s, p)) if use_contrastive && epoch >= cfg.contrastive_epoch => {
                prediction_loss + info_nce(s, p, cfg.temperature as f32) * cfg.alpha as f32
            }
            _ => prediction_loss,
        };
        let total = loss.array() as f64;
        let frozen = self.net.image_frozen;
        let mut ps = Vec::new();
        self.net.params(&mut ps);
        if frozen {
            ps.retain(|(name, _)| !super::pretrained::is_encoder_body(name));
        }
        let grad_norm = self.opt.minimise(loss, &mut ps, want_norm)?;
        Ok(StepReport {
            losses: vec![
                ("loss_total", total),
                ("loss_prediction", prediction_value),
                ("loss_contrastive", total - prediction_value),
            ],
            samples: batch.len(),
            grad_norm,
        })
    }

    /// The batch order's and augmentation's random stream (its position; the seed is the
    /// job's) and the training targets' current order (random batches shuffle it in place).
    fn resume_state(&self) -> Option<serde_json::Value> {
        Some(crate::nn::resume::stream_state(
            &self.rng,
            "train_order",
            &self.train,
        ))
    }

    fn restore_resume_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let mut rng = self.rng.clone();
        let order =
            crate::nn::resume::restore_stream(state, &mut rng, "train_order", "OpenCarbon")?;
        let (mut a, mut b) = (order.clone(), self.train.clone());
        a.sort_unstable();
        b.sort_unstable();
        if a != b {
            return Err(Error::Model(
                "resume: the checkpoint's training targets are not this job's".into(),
            ));
        }
        self.rng = rng;
        self.train = order;
        Ok(())
    }

    fn validate(&mut self, _epoch: usize) -> Result<Option<Validation>> {
        if self.valid.is_empty() {
            return Ok(None);
        }
        let ev = evaluate(
            &mut self.net,
            &self.dev,
            self.datasets,
            &self.valid,
            self.inputs,
            &self.norm,
        );
        let m =
            crate::metrics::Metrics::compute(&self.valid_y, &self.scale.unscale(ev.predictions));
        let mut histograms = vec![("embeddings/grid_x_g_valid", ev.grid_embeddings.concat())];
        if let Some(w) = &ev.modality_weights {
            histograms.push((
                "attention/centre_poi_weight_valid",
                w.iter().map(|b| b[1]).collect(),
            ));
        }
        Ok(Some(Validation {
            score: m.r2,
            scalars: vec![("valid/rmse", m.rmse), ("valid/mae", m.mae)],
            histograms,
        }))
    }
}

impl OpenCarbonConfig {
    /// How the shared learner runs this configuration.
    pub fn learner_settings(&self) -> LearnerSettings {
        LearnerSettings {
            max_epochs: self.max_epochs,
            valid_every: self.valid_every,
            patience: self.patience,
            min_epochs: self.min_epochs,
            patience_mode: self.patience_mode,
            learning_rate: LearningRate {
                base: self.lr,
                schedule: self.schedule,
                warmup_epochs: self.warmup_epochs,
                step_every: self.step_every,
                step_gamma: self.step_gamma,
                max_epochs: self.max_epochs,
            },
            ema: self.ema,
            clip_norm: (self.clip_norm > 0.0).then_some(self.clip_norm as f32),
            log_every: 1,
            name: "  opencarbon",
        }
    }
}

/// The prediction loss of a batch, summed over it, from the residuals ŷ − y.
fn prediction_loss<D: ModelDevice, T: Tape<f32, D>>(
    residual: Tensor<(usize,), f32, D, T>,
    kind: LossKind,
) -> Tensor<(), f32, D, T> {
    match kind {
        LossKind::L1 => residual.abs().sum(),
        LossKind::Mse => residual.square().sum(),
        // δ = 1: ½r² where |r| ≤ 1, |r| − ½ beyond; written as ½·c² + (|r| − c) with
        // c = min(|r|, 1), which has the right value and gradient on both sides.
        LossKind::Huber => {
            let a = residual.abs();
            let c = a.retaped::<T>().clamp(0.0, 1.0);
            (c.retaped::<T>().square() * 0.5 + (a - c)).sum()
        }
    }
}

/// Train on the job's device and predict every row.
pub fn fit_predict(cfg: &OpenCarbonConfig, job: &JobInput, run: &mut RunDir) -> Result<Fitted> {
    on_device(job.device, job.seed, FitPredict { cfg, job, run })
}

/// `fit_predict`'s arguments, run on the device `on_device` opens.
struct FitPredict<'a, 'r> {
    cfg: &'a OpenCarbonConfig,
    job: &'a JobInput<'a>,
    run: &'r mut RunDir,
}

impl OnDevice for FitPredict<'_, '_> {
    type Output = Fitted;

    fn run<D: ModelDevice>(self, dev: D) -> Result<Fitted> {
        fit_predict_on(self, dev)
    }
}

fn fit_predict_on<D: ModelDevice>(fit: FitPredict<'_, '_>, dev: D) -> Result<Fitted> {
    let FitPredict { cfg, job, run } = fit;
    let (inputs, seed, datasets, rows) = (job.inputs, job.seed, job.datasets, job.rows);
    let part = |p: SplitPart| -> Vec<(usize, usize)> {
        rows.iter()
            .filter(|r| r.part == p)
            .map(|r| (r.dataset, r.tile))
            .collect()
    };
    let train = part(SplitPart::Train);
    let valid = part(SplitPart::Valid);
    // Deliberate deviation: the network learns the standardised log emission (training mean
    // and deviation), so its output layer starts at the right scale instead of spending
    // hundreds of epochs moving a bias from 0 to ~10.
    let scale = TargetScale::of(datasets, &train);
    let (n_train, n_valid) = (train.len(), valid.len());
    let (trainer, weights_hash) =
        Trainer::new(cfg, inputs, seed, dev, datasets, train, scale).with_pretrained_image()?;
    let mut trainer = trainer.with_validation(valid);
    if let (Some(path), Some(hash)) = (&cfg.image_weights, &weights_hash) {
        run.log(&format!(
            "image encoder: pretrained weights {path} (content hash {hash}), {}, images normalised by mean {:?} and std {:?}",
            match cfg.image_training {
                super::EncoderTraining::FineTune => "fine-tuned",
                super::EncoderTraining::Frozen => "frozen",
            },
            trainer.norm.mean,
            trainer.norm.std,
        ));
    }
    {
        let mut ps = Vec::new();
        trainer.net.params(&mut ps);
        let n: usize = ps
            .iter()
            .map(|(_, p)| p.shape().iter().product::<usize>())
            .sum();
        run.log(&format!(
            "opencarbon: {} parameter tensors, {n} values; {n_train} train, {n_valid} valid tiles",
            ps.len(),
        ));
    }
    let outcome = learner::fit(&mut trainer, &cfg.learner_settings(), run)?;
    let (best_score, best_epoch) = (outcome.best_score, outcome.best_epoch);
    let Trainer {
        mut net, dev, norm, ..
    } = trainer;
    let mut ps = Vec::new();
    let running: Vec<(String, Vec<f32>)> = net
        .running_stats()
        .into_iter()
        .flat_map(|(name, bn)| {
            [
                (format!("{name}.running_mean"), bn.running_mean.as_vec()),
                (format!("{name}.running_var"), bn.running_var.as_vec()),
            ]
        })
        .collect();
    net.params(&mut ps);
    save_safetensors(&run.path("best.safetensors"), &ps, &running)?;
    drop(ps);

    // Every tile of every dataset once: predictions for the rows, grid embeddings for all
    // (embeddings.csv, the frozen node features of GraphSAGE's `embeddings_from` variant).
    let every_tile: Vec<(usize, usize)> = datasets
        .iter()
        .enumerate()
        .flat_map(|(d, ds)| (0..ds.data.tiles.len()).map(move |t| (d, t)))
        .collect();
    let base: Vec<usize> = datasets
        .iter()
        .scan(0, |acc, ds| {
            let b = *acc;
            *acc += ds.data.tiles.len();
            Some(b)
        })
        .collect();
    let ev = evaluate(&mut net, &dev, datasets, &every_tile, inputs, &norm);
    let se = se_category_importance(&mut net, &dev, datasets, &every_tile, inputs, &norm);
    write_embeddings(run, datasets, &every_tile, &ev.grid_embeddings)?;
    let at = |r: &Row| base[r.dataset] + r.tile;
    let all: Vec<(usize, usize)> = rows.iter().map(|r| (r.dataset, r.tile)).collect();
    let predictions = scale.unscale(rows.iter().map(|r| ev.predictions[at(r)]).collect());
    let weights: Option<Vec<[f32; 2]>> = ev
        .modality_weights
        .map(|w| rows.iter().map(|r| w[at(r)]).collect());
    let mut record = super::OpenCarbonRecord {
        best_epoch,
        best_validation_score: best_score,
        checkpoint: "best.safetensors".into(),
        image_norm: norm.clone(),
        target_norm: scale,
        // `predict` refuses a dataset whose POI channels differ from these.
        poi_categories: Some(datasets[0].data.meta.poi_categories.clone()),
        analysis: serde_json::Map::new(),
    };
    if let (Some(path), Some(hash)) = (&cfg.image_weights, weights_hash) {
        record.analysis.insert(
            "image_weights".into(),
            serde_json::json!({ "path": path, "content_hash": hash }),
        );
    }
    if let Some((gate, importance)) = se {
        let categories = &datasets[0].data.meta.poi_categories;
        let rows: Vec<CategoryImportanceRow> = categories
            .iter()
            .zip(&importance)
            .map(|(c, v)| CategoryImportanceRow {
                category: c.clone(),
                importance: *v,
            })
            .collect();
        run.write("poi_category_importance.csv", &records::csv_text(&rows)?)?;
        let description = &mut record.analysis;
        description.insert("se_gate_mean_by_channel".into(), serde_json::json!(gate));
        description.insert(
            "poi_category_importance".into(),
            serde_json::Value::Object(
                categories
                    .iter()
                    .zip(&importance)
                    .map(|(c, v)| (c.clone(), serde_json::json!(v)))
                    .collect(),
            ),
        );
    }
    if let Some(w) = weights {
        let weight_rows: Vec<ModalityWeightRow> = rows
            .iter()
            .zip(&w)
            .map(|(r, b)| {
                let (dataset, x, y) = r.place(datasets);
                ModalityWeightRow {
                    dataset,
                    x,
                    y,
                    split: r.part.as_str().into(),
                    image_weight: b[0],
                    poi_weight: b[1],
                }
            })
            .collect();
        run.write("modality_weights.csv", &records::csv_text(&weight_rows)?)?;
        let log_e: Vec<f64> = all.iter().map(|t| log_emission(datasets, t)).collect();
        record.analysis.insert(
            "poi_weight_by_emission_decile".into(),
            serde_json::Value::Array(poi_weight_by_decile(&log_e, &w)),
        );
    }
    Ok(Fitted {
        predictions,
        description: serde_json::to_value(&record).map_err(|e| Error::Internal(e.to_string()))?,
    })
}

#[cfg(test)]
#[path = "train_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "pretrained_tests.rs"]
mod pretrained_tests;

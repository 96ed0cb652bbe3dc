//! The training loop every neural model shares (burn's `Learner` is the model for it): epochs
//! of batches, the learning-rate schedule, an exponential moving average of the weights,
//! validation at a fixed cadence, early stopping, the best checkpoint kept and restored,
//! TensorBoard scalars, run.log lines and the progress bar. A model supplies its batches, one
//! training step and one validation (`TrainSteps`); it keeps its optimiser and network.

use dfdx::prelude::{Device, Storage};

use super::layers::BatchNorm;
use super::params::{Adam, ParamRef};
use super::resume;
use super::LayerKernels;
use crate::error::{Error, Result};
use crate::track::RunDir;

pub use super::schedule::{LearnerSettings, LearningRate, PatienceMode, Schedule};

/// What one training step reports.
pub struct StepReport {
    /// Named loss sums over the step's samples; the first is the total that is minimised.
    pub losses: Vec<(&'static str, f64)>,
    /// Samples the sums are over (the epoch's scalars are Σ sums / Σ samples).
    pub samples: usize,
    /// The global gradient norm, when it was asked for.
    pub grad_norm: Option<f32>,
}

/// What one validation reports.
pub struct Validation {
    /// Higher is better (validation R²).
    pub score: f64,
    /// Extra scalars, e.g. ("valid/rmse", …); `valid/r2` is written from `score`.
    pub scalars: Vec<(&'static str, f64)>,
    pub histograms: Vec<(&'static str, Vec<f32>)>,
}

/// A model as the learner trains it.
pub trait TrainSteps<D: Storage<f32>> {
    type Batch;

    /// Every parameter, named, in a fixed order.
    fn params<'a>(&'a mut self, out: &mut Vec<(String, ParamRef<'a, D>)>);
    /// Every batch norm, for its running statistics (none by default).
    fn running_stats(&mut self) -> Vec<(String, &mut BatchNorm<D>)> {
        Vec::new()
    }
    /// The optimiser, whose rate the learner sets each epoch.
    fn optimiser(&mut self) -> &mut Adam<D>;
    /// The batches of epoch `epoch` (from 0).
    fn batches(&mut self, epoch: usize) -> Vec<Self::Batch>;
    /// Whether a batch is trained on at all (e.g. batch norm needs two samples).
    fn trains_on(&self, _batch: &Self::Batch) -> bool {
        true
    }
    /// One optimiser step on `batch`; the gradient norm only when `want_norm`.
    fn train_step(
        &mut self,
        epoch: usize,
        batch: &Self::Batch,
        want_norm: bool,
    ) -> Result<StepReport>;
    /// Evaluate the current weights on the validation set; None without one (the learner
    /// then tracks the negated training loss).
    fn validate(&mut self, epoch: usize) -> Result<Option<Validation>>;
    /// What a resumed training needs besides weights, optimiser and learner state (e.g. the
    /// model's random stream and sample order); None when the model cannot resume exactly
    /// (then the learner writes no resume checkpoint for it).
    fn resume_state(&self) -> Option<serde_json::Value> {
        None
    }
    /// Take back what `resume_state` gave.
    fn restore_resume_state(&mut self, _state: &serde_json::Value) -> Result<()> {
        Ok(())
    }
}

pub use super::resume::Snapshot;

impl Snapshot {
    pub fn capture<D: Device<f32>, M: TrainSteps<D> + ?Sized>(model: &mut M) -> Snapshot {
        let running = model
            .running_stats()
            .into_iter()
            .map(|(_, bn)| (bn.running_mean.as_vec(), bn.running_var.as_vec()))
            .collect();
        let mut ps = Vec::new();
        model.params(&mut ps);
        Snapshot {
            params: ps.iter().map(|(_, p)| p.values()).collect(),
            running,
        }
    }

    pub fn restore<D: Device<f32>, M: TrainSteps<D> + ?Sized>(&self, model: &mut M) {
        for ((_, bn), (m, v)) in model.running_stats().into_iter().zip(&self.running) {
            bn.running_mean.copy_from(m);
            bn.running_var.copy_from(v);
        }
        let mut ps = Vec::new();
        model.params(&mut ps);
        for ((_, p), values) in ps.iter_mut().zip(&self.params) {
            p.set(values);
        }
    }

    /// self ← decay·self + (1 − decay)·current, value by value.
    pub fn blend(&mut self, current: &Snapshot, decay: f32) {
        let pairs = self.params.iter_mut().zip(&current.params).chain(
            self.running
                .iter_mut()
                .zip(&current.running)
                .flat_map(|((m, v), (cm, cv))| [(m, cm), (v, cv)]),
        );
        for (avg, now) in pairs {
            for (a, x) in avg.iter_mut().zip(now) {
                // The average of a constant is that constant: in f32 the blend may land an ulp
                // away, which would move a frozen encoder's weights.
                if *a != *x {
                    *a = decay * *a + (1.0 - decay) * x;
                }
            }
        }
    }
}

/// The moving average of the weights and how many steps it has seen.
pub struct Ema {
    pub decay: f64,
    pub average: Snapshot,
    pub steps: u64,
}

impl Ema {
    /// Fold the model's current weights in. The decay ramps up as min(decay, (1+n)/(10+n))
    /// over the first n steps, so the average does not stay anchored at the initial weights.
    pub fn update<D: Device<f32>, M: TrainSteps<D> + ?Sized>(&mut self, model: &mut M) {
        let n = self.steps as f64;
        let decay = self.decay.min((1.0 + n) / (10.0 + n)) as f32;
        self.average.blend(&Snapshot::capture(model), decay);
        self.steps += 1;
    }

    /// Run `f` with the averaged weights in the model, then put the training weights back.
    pub fn with_average<D: Device<f32>, M: TrainSteps<D> + ?Sized, R>(
        &self,
        model: &mut M,
        f: impl FnOnce(&mut M) -> R,
    ) -> R {
        let live = Snapshot::capture(model);
        self.average.restore(model);
        let out = f(model);
        live.restore(model);
        out
    }
}

/// What training ended with; the model holds the best (evaluated) weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub best_score: f64,
    pub best_epoch: usize,
    pub epochs_run: usize,
}

/// Named loss sums, samples and the last gradient norm of one epoch's steps.
pub struct EpochSums {
    pub sums: Vec<(&'static str, f64)>,
    pub samples: usize,
    pub grad_norm: f32,
}

/// One pass over the model's batches of `epoch` at the optimiser's current rate, folding
/// each step into `ema` when given; the gradient norm is asked for on the last trained batch.
pub fn train_epoch<D: Device<f32>, M: TrainSteps<D>>(
    model: &mut M,
    epoch: usize,
    mut ema: Option<&mut Ema>,
) -> Result<EpochSums> {
    let batches = model.batches(epoch);
    let last = batches.iter().rposition(|b| model.trains_on(b));
    let (mut sums, mut samples, mut grad_norm) = (Vec::<(&str, f64)>::new(), 0, 0.0f32);
    for (i, batch) in batches.iter().enumerate() {
        if !model.trains_on(batch) {
            continue;
        }
        let report = model.train_step(epoch, batch, Some(i) == last)?;
        if sums.is_empty() {
            sums = report.losses.iter().map(|(n, _)| (*n, 0.0)).collect();
        }
        for ((_, s), (_, v)) in sums.iter_mut().zip(&report.losses) {
            *s += v;
        }
        samples += report.samples;
        grad_norm = report.grad_norm.unwrap_or(grad_norm);
        if let Some(ema) = ema.as_deref_mut() {
            ema.update(model);
        }
    }
    Ok(EpochSums {
        sums,
        samples,
        grad_norm,
    })
}

/// The device the model's parameters live on.
fn device_of<D: Device<f32> + LayerKernels, M: TrainSteps<D>>(model: &mut M) -> D {
    let mut ps = Vec::new();
    model.params(&mut ps);
    ps.first().expect("a model has parameters").1.device()
}

/// Run `model`'s training as `settings` say. When the run has a resume key and the model can
/// resume, a checkpoint is written after every validation that does not stop training, and
/// an existing checkpoint with the same key is continued from.
pub fn fit<D: Device<f32> + LayerKernels, M: TrainSteps<D>>(
    model: &mut M,
    settings: &LearnerSettings,
    run: &mut RunDir,
) -> Result<Outcome> {
    model.optimiser().clip_norm = settings.clip_norm;
    let mut ema = (settings.ema > 0.0).then(|| Ema {
        decay: settings.ema,
        average: Snapshot::capture(model),
        steps: 0,
    });
    let mut best: Option<(f64, usize, Snapshot)> = None;
    let (mut non_improving, mut validations, mut epochs_run) = (0usize, 0usize, 0usize);
    // Resume checkpoints only for runs that ask for them (the job runner sets a key) and
    // models that can continue exactly.
    let resume_key = run
        .resume_key()
        .filter(|_| model.resume_state().is_some())
        .map(str::to_string);
    let mut first_epoch = 0;
    if let Some(key) = &resume_key {
        match resume::load(&run.resume_dir()) {
            Ok(Some(state)) if state.key == *key => {
                let dev = device_of(model);
                state.current.restore(model);
                model
                    .optimiser()
                    .import_state(&dev, &state.adam)
                    .map_err(|e| Error::Model(format!("resume: optimiser state: {e:?}")))?;
                model.restore_resume_state(&state.model)?;
                if let (Some(ema), Some((avg, steps))) = (&mut ema, state.ema) {
                    ema.average = avg;
                    ema.steps = steps;
                }
                best = state.best;
                non_improving = state.non_improving;
                validations = state.validations;
                first_epoch = state.epochs_done;
                epochs_run = first_epoch;
                run.continue_board(first_epoch + 1)?;
                run.log(&format!("resumed at epoch {first_epoch}"));
            }
            Ok(Some(_)) => run.log(
                "a resume checkpoint exists for another job configuration or build: starting over",
            ),
            Ok(None) => {}
            Err(e) => run.log(&format!(
                "resume checkpoint unreadable ({e}): starting over"
            )),
        }
    }
    let started = std::time::Instant::now();
    // Whether the model has a validation set (else `best` tracks the negated training loss);
    // known after the first epoch of this attempt.
    let mut validated: Option<bool> = None;
    let bar = crate::track::progress::Bar::new(settings.max_epochs as u64, "epochs")
        .prefix(settings.name);
    for epoch in first_epoch..settings.max_epochs {
        bar.set(
            epoch as u64,
            best.as_ref()
                .map_or(String::new(), |(b, e, _)| match validated {
                    Some(true) => format!("best valid R² {b:.3} (epoch {e})"),
                    Some(false) => format!("lowest train loss {:.3} (epoch {e})", -b),
                    None => String::new(),
                }),
        );
        let lr = settings.learning_rate.at(epoch);
        model.optimiser().lr = lr as f32;
        let EpochSums {
            sums,
            samples,
            grad_norm,
        } = train_epoch(model, epoch, ema.as_mut())?;
        epochs_run = epoch + 1;
        let step = epoch + 1;
        let per_sample: Vec<(&str, f64)> = sums
            .iter()
            .map(|(n, s)| (*n, s / samples.max(1) as f64))
            .collect();
        let board = run.board();
        for (name, v) in &per_sample {
            board.scalar(&format!("train/{name}"), *v, step);
        }
        board.scalar("train/grad_norm", grad_norm as f64, step);
        board.scalar("train/learning_rate", lr, step);
        if step % settings.valid_every != 0 && step != settings.max_epochs {
            continue;
        }
        let validation = match &ema {
            Some(ema) => ema.with_average(model, |m| m.validate(epoch))?,
            None => model.validate(epoch)?,
        };
        let total = per_sample.first().map_or(f64::NAN, |(_, v)| *v);
        validated = Some(validation.is_some());
        let score = match validation {
            None => -total, // no validation tiles: track the training loss
            Some(v) => {
                let board = run.board();
                board.scalar("valid/r2", v.score, step);
                for (name, value) in &v.scalars {
                    board.scalar(name, *value, step);
                }
                for (name, values) in &v.histograms {
                    board.histogram(name, values, step);
                }
                v.score
            }
        };
        validations += 1;
        if validations % settings.log_every.max(1) == 0 {
            let name = per_sample.first().map_or("loss", |(n, _)| *n);
            let valid = if validated == Some(true) {
                format!(", valid R² {score:.4}")
            } else {
                String::new()
            };
            run.log(&format!(
                "epoch {step:>4}: train {name} {total:.4}, grad norm {grad_norm:.3}, lr {lr:.2e}{valid} ({:.0} s)",
                started.elapsed().as_secs_f64()
            ));
        }
        if best.as_ref().is_none_or(|(b, _, _)| score > *b) {
            let snap = match &ema {
                Some(ema) => ema.average.clone(),
                None => Snapshot::capture(model),
            };
            best = Some((score, step, snap));
            if settings.patience_mode == PatienceMode::Reset {
                non_improving = 0;
            }
        } else {
            non_improving += 1;
        }
        if settings.stop_early(step, non_improving) {
            let how = match settings.patience_mode {
                PatienceMode::Reset => "in a row",
                PatienceMode::Cumulative => "in total",
            };
            run.log(&format!(
                "early stop after epoch {step}: {non_improving} validations without a better validation R² {how}"
            ));
            break;
        }
        // Training goes on: this is a point to resume from (a stop above needs none, since
        // a rerun from the previous checkpoint reaches the same stop).
        if let Some(key) = &resume_key {
            let dev = device_of(model);
            let adam = model
                .optimiser()
                .export_state(&dev)
                .map_err(|e| Error::Model(format!("resume: optimiser state: {e:?}")))?;
            let state = resume::LearnerState {
                key: key.clone(),
                epochs_done: step,
                non_improving,
                validations,
                current: Snapshot::capture(model),
                adam,
                ema: ema.as_ref().map(|e| (e.average.clone(), e.steps)),
                best: best.clone(),
                model: model.resume_state().unwrap_or_default(),
            };
            run.save_resume_point(|dir| resume::save(dir, &state))?;
        }
    }
    let (best_score, best_epoch, snap) =
        best.ok_or_else(|| Error::Model("no epoch was trained".into()))?;
    snap.restore(model);
    run.log(&match validated {
        Some(true) => format!("best validation R² {best_score:.4} at epoch {best_epoch}"),
        Some(false) => format!(
            "lowest training loss {:.4} at epoch {best_epoch} (no validation)",
            -best_score
        ),
        None => format!("best score {best_score:.4} at epoch {best_epoch} (resumed at the end)"),
    });
    Ok(Outcome {
        best_score,
        best_epoch,
        epochs_run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Tensor1;
    use dfdx::prelude::*;

    /// One parameter vector pulled towards 3 by Adam; validation scores come from a script.
    struct Scripted {
        w: Tensor1<Cpu>,
        opt: Adam<Cpu>,
        scores: Vec<f64>,
        /// Weights after each training step, the rate it ran at, and the weights each
        /// validation saw.
        after_step: Vec<Vec<f32>>,
        rates: Vec<f32>,
        validated: Vec<Vec<f32>>,
        /// Fail (as a killed process would stop) in this epoch.
        fail_at: Option<usize>,
    }

    impl Scripted {
        fn new(scores: &[f64]) -> Self {
            let dev = Cpu::seed_from_u64(0);
            Scripted {
                w: dev.tensor_from_vec(vec![0.0, 1.0, -2.0], (3,)),
                opt: Adam::new(0.1, 0.0),
                scores: scores.to_vec(),
                after_step: Vec::new(),
                rates: Vec::new(),
                validated: Vec::new(),
                fail_at: None,
            }
        }
    }

    impl TrainSteps<Cpu> for Scripted {
        type Batch = ();

        fn params<'a>(&'a mut self, out: &mut Vec<(String, ParamRef<'a, Cpu>)>) {
            out.push(("w".into(), ParamRef::R1(&mut self.w)));
        }

        fn optimiser(&mut self) -> &mut Adam<Cpu> {
            &mut self.opt
        }

        fn batches(&mut self, _epoch: usize) -> Vec<()> {
            vec![()]
        }

        fn resume_state(&self) -> Option<serde_json::Value> {
            Some(serde_json::json!({ "validated": self.validated.len() }))
        }

        fn restore_resume_state(&mut self, state: &serde_json::Value) -> Result<()> {
            // The score script is indexed by validation.
            let n = state["validated"].as_u64().unwrap() as usize;
            self.validated = vec![Vec::new(); n];
            Ok(())
        }

        fn train_step(&mut self, epoch: usize, _: &(), want_norm: bool) -> Result<StepReport> {
            if self.fail_at == Some(epoch) {
                return Err(Error::Model("killed".into()));
            }
            let loss = (self.w.clone().leaky_traced() - 3.0).square().sum();
            let value = loss.array() as f64;
            let mut grads = loss.backward();
            let mut ps = Vec::new();
            ps.push(("w".to_string(), ParamRef::R1(&mut self.w)));
            let grad_norm = self.opt.step(&mut ps, &mut grads, want_norm).unwrap();
            self.rates.push(self.opt.lr);
            self.after_step.push(self.w.as_vec());
            Ok(StepReport {
                losses: vec![("loss", value)],
                samples: 1,
                grad_norm,
            })
        }

        fn validate(&mut self, _epoch: usize) -> Result<Option<Validation>> {
            self.validated.push(self.w.as_vec());
            Ok(Some(Validation {
                score: self.scores[self.validated.len() - 1],
                scalars: Vec::new(),
                histograms: Vec::new(),
            }))
        }
    }

    fn settings(mode: PatienceMode, ema: f64) -> LearnerSettings {
        LearnerSettings {
            max_epochs: 10,
            valid_every: 1,
            patience: 2,
            min_epochs: 1,
            patience_mode: mode,
            learning_rate: LearningRate::constant(0.1),
            ema,
            clip_norm: None,
            log_every: 1,
            name: "test",
        }
    }

    fn fit_scripted(scores: &[f64], s: &LearnerSettings) -> (Scripted, Outcome) {
        let dir = tempfile::tempdir().unwrap();
        let mut run = RunDir::begin(dir.path(), "learner").unwrap();
        let mut model = Scripted::new(scores);
        let outcome = fit(&mut model, s, &mut run).unwrap();
        (model, outcome)
    }

    const SCORES: [f64; 10] = [0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3];

    #[test]
    fn patience_resets_or_accumulates_and_the_best_weights_come_back() {
        // Reset, patience 2: improvements at 1, 3, 5; two non-improving in a row at 6, 7.
        let (model, out) = fit_scripted(&SCORES, &settings(PatienceMode::Reset, 0.0));
        assert_eq!(
            (out.epochs_run, out.best_epoch, out.best_score),
            (7, 5, 0.3)
        );
        // Cumulative: non-improving at 2, 4, 6: the count exceeds 2 at epoch 6.
        let (model_c, out_c) = fit_scripted(&SCORES, &settings(PatienceMode::Cumulative, 0.0));
        assert_eq!((out_c.epochs_run, out_c.best_epoch), (6, 5));
        // The weights left in the model are those validated at the best epoch, not the last.
        for m in [&model, &model_c] {
            assert_eq!(m.w.as_vec(), m.validated[4]);
            assert_ne!(m.w.as_vec(), *m.after_step.last().unwrap());
        }
    }

    #[test]
    fn validation_sees_the_moving_average_and_training_continues_from_live_weights() {
        let (model, _) = fit_scripted(&SCORES, &settings(PatienceMode::Reset, 0.5));
        let init = [0.0f32, 1.0, -2.0];
        // After one step the average is 0.1·initial + 0.9·live (decay min(0.5, 1/10)).
        for ((v, l), i) in model.validated[0]
            .iter()
            .zip(&model.after_step[0])
            .zip(init)
        {
            assert!((v - (0.1 * i + 0.9 * l)).abs() < 1e-6);
        }
        // Adam from the live weights: with a constant rate each step moves every value by
        // about lr towards 3; had training continued from the average it would lag behind.
        for (a, b) in model.after_step[0].iter().zip(&model.after_step[1]) {
            assert!((b - a - 0.1).abs() < 1e-3, "{a} → {b}");
        }
        assert_ne!(model.validated[1], model.after_step[1]);
    }

    #[test]
    fn a_stopped_training_resumes_exactly_and_only_under_its_own_key() {
        let s = settings(PatienceMode::Cumulative, 0.5);
        let scores = [0.1, 0.2, 0.15, 0.3, 0.2, 0.2, 0.25, 0.1, 0.1, 0.1];
        let (whole, whole_out) = fit_scripted(&scores, &s);

        let dir = tempfile::tempdir().unwrap();
        let attempt = |fail_at: Option<usize>, key: &str| {
            let mut run = RunDir::begin(dir.path(), "job").unwrap();
            run.set_resume_key(key.into());
            let mut model = Scripted::new(&scores);
            model.fail_at = fail_at;
            let out = fit(&mut model, &s, &mut run);
            let log = std::fs::read_to_string(run.path("run.log")).unwrap();
            (model, out, log)
        };
        let (_, out, _) = attempt(Some(5), "job a");
        assert!(out.is_err());
        // The same key continues after epoch 5's checkpoint and ends exactly as the whole run.
        let (resumed, out, log) = attempt(None, "job a");
        assert!(log.contains("resumed at epoch 5"), "{log}");
        assert_eq!(out.unwrap(), whole_out);
        assert_eq!(resumed.w.as_vec(), whole.w.as_vec());
        assert_eq!(resumed.after_step, whole.after_step[5..].to_vec());
        // Another key (another configuration or build) starts over. (The job runner removes
        // the checkpoint when a run finishes; this test has no job runner.)
        std::fs::remove_dir_all(dir.path().join(".resume-job")).unwrap();
        let (_, out, _) = attempt(Some(3), "job a");
        assert!(out.is_err());
        let (_, out, log) = attempt(None, "job b");
        assert!(log.contains("starting over"), "{log}");
        assert_eq!(out.unwrap(), whole_out);
    }

    #[test]
    fn schedules_give_their_rates_and_reach_the_optimiser() {
        let cosine = LearningRate {
            base: 1.0,
            schedule: Schedule::Cosine,
            warmup_epochs: 2,
            step_every: 0,
            step_gamma: 1.0,
            max_epochs: 10,
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(cosine.at(0), 0.5) && close(cosine.at(1), 1.0) && close(cosine.at(2), 1.0));
        assert!(close(cosine.at(6), 0.5));
        assert!(close(
            cosine.at(9),
            0.5 * (1.0 + (std::f64::consts::PI * 7.0 / 8.0).cos())
        ));
        let step = LearningRate {
            schedule: Schedule::Step,
            warmup_epochs: 0,
            step_every: 3,
            step_gamma: 0.1,
            ..cosine
        };
        assert!(close(step.at(2), 1.0) && close(step.at(3), 0.1) && close(step.at(6), 0.01));
        assert!(close(LearningRate::constant(0.3).at(7), 0.3));
        let mut s = settings(PatienceMode::Reset, 0.0);
        s.learning_rate = LearningRate { base: 0.1, ..step };
        let (model, _) = fit_scripted(&SCORES, &s);
        assert_eq!(&model.rates[..4], &[0.1, 0.1, 0.1, (0.1f64 * 0.1) as f32]);
    }
}

//! What the learner is told: the learning rate over the epochs and when to stop early.
//! Models build these from their configuration (the serde enums are configuration values).

use serde::{Deserialize, Serialize};

/// The learning rate over the epochs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// The base rate throughout (the reference's).
    #[default]
    Constant,
    /// Linear warm-up, then a cosine from the base rate to 0 at the last epoch.
    Cosine,
    /// The base rate multiplied by a factor every few epochs.
    Step,
}

impl Schedule {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// When early stopping's counter of non-improving validations goes back to 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatienceMode {
    /// On every improvement: stop after `patience` non-improving validations in a row.
    #[default]
    Reset,
    /// Never (the authors' loop): stop once more than `patience` non-improving validations
    /// have been counted in total, at the first validation at or after `min_epochs`.
    Cumulative,
}

impl PatienceMode {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// The learning rate of each epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearningRate {
    pub base: f64,
    pub schedule: Schedule,
    /// Epochs of linear warm-up from base/warmup to base (cosine and step).
    pub warmup_epochs: usize,
    /// Step schedule: × `step_gamma` every `step_every` epochs after the warm-up.
    pub step_every: usize,
    pub step_gamma: f64,
    /// The cosine reaches 0 here.
    pub max_epochs: usize,
}

impl LearningRate {
    pub fn constant(base: f64) -> Self {
        LearningRate {
            base,
            schedule: Schedule::Constant,
            warmup_epochs: 0,
            step_every: 0,
            step_gamma: 1.0,
            max_epochs: 1,
        }
    }

    /// The rate of epoch `epoch` (from 0).
    pub fn at(&self, epoch: usize) -> f64 {
        let warm = self.warmup_epochs;
        if self.schedule != Schedule::Constant && epoch < warm {
            return self.base * (epoch + 1) as f64 / warm as f64;
        }
        match self.schedule {
            Schedule::Constant => self.base,
            Schedule::Cosine => {
                let span = self.max_epochs.saturating_sub(warm).max(1) as f64;
                let t = (epoch - warm) as f64 / span;
                0.5 * self.base * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Schedule::Step => {
                let steps = (epoch - warm) / self.step_every.max(1);
                self.base * self.step_gamma.powi(steps as i32)
            }
        }
    }
}

/// How the learner runs one model's training.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnerSettings {
    pub max_epochs: usize,
    /// Validate after every this many epochs, and after the last.
    pub valid_every: usize,
    pub patience: usize,
    /// Never stop before this epoch.
    pub min_epochs: usize,
    pub patience_mode: PatienceMode,
    pub learning_rate: LearningRate,
    /// Decay of the moving average of the weights; 0 = off.
    pub ema: f64,
    /// Clip the gradients to this global norm before each step (None: off).
    pub clip_norm: Option<f32>,
    /// A run.log line every this many validations.
    pub log_every: usize,
    /// The progress bar's prefix, e.g. "  opencarbon".
    pub name: &'static str,
}

impl LearnerSettings {
    /// Whether training stops after `epochs` epochs with `non_improving` counted validations.
    pub fn stop_early(&self, epochs: usize, non_improving: usize) -> bool {
        if epochs < self.min_epochs {
            return false;
        }
        match self.patience_mode {
            PatienceMode::Reset => non_improving >= self.patience,
            PatienceMode::Cumulative => non_improving > self.patience,
        }
    }
}

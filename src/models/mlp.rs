//! A multilayer perceptron on the tile features: GraphSAGE's network and training without the
//! neighbour term (`models::graphsage`).

use serde::{Deserialize, Serialize};

use super::graphsage::{
    d_dropout, d_hidden, d_layers, d_lr, d_max_epochs, d_min_epochs, d_patience, d_weight_decay,
    fit_predict, NodeModelSpec,
};
use super::{FieldProblem, Fitted, JobInput, Model};
use crate::data::graph::Contiguity;
use crate::error::Result;
use crate::track::RunDir;

/// A multilayer perceptron on the tile features: `layers` linear layers (the last outputs
/// the prediction), ReLU and dropout between them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    #[serde(default = "d_layers")]
    pub layers: usize,
    #[serde(default = "d_hidden")]
    pub hidden: usize,
    #[serde(default = "d_dropout")]
    pub dropout: f64,
    #[serde(default = "d_lr")]
    pub lr: f64,
    #[serde(default = "d_weight_decay")]
    pub weight_decay: f64,
    #[serde(default = "d_max_epochs")]
    pub max_epochs: usize,
    #[serde(default = "d_patience")]
    pub patience: usize,
    #[serde(default = "d_min_epochs")]
    pub min_epochs: usize,
}

impl MlpConfig {
    pub fn spec(&self) -> NodeModelSpec {
        NodeModelSpec {
            layers: self.layers,
            hidden: self.hidden,
            dropout: self.dropout,
            aggregator: None,
            normalize: false,
            lr: self.lr,
            weight_decay: self.weight_decay,
            max_epochs: self.max_epochs,
            patience: self.patience,
            min_epochs: self.min_epochs,
        }
    }
}

impl Model for MlpConfig {
    const KIND: &'static str = "mlp";

    fn label(&self) -> String {
        format!("mlp(l={},h={})", self.layers, self.hidden)
    }

    fn check(&self) -> Vec<FieldProblem> {
        self.spec().check()
    }

    fn fit(&self, job: &JobInput, run: &mut RunDir) -> Result<Fitted> {
        // An MLP has no neighbour term: the contiguity is unused.
        fit_predict(&self.spec(), Contiguity::Queen, job, None, run)
    }
}

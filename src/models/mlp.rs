//! A multilayer perceptron on the tile features: GraphSAGE's network and training without the
//! neighbour term (`models::graphsage`).

use serde::{Deserialize, Serialize};

use super::graphsage::{fit_predict, NodeModelSpec};
use super::GraphSageConfig;
use super::{FieldProblem, Fitted, JobInput, Model};
use crate::data::graph::Contiguity;
use crate::error::Result;
use crate::track::RunDir;

/// A multilayer perceptron on the tile features: `layers` linear layers (the last outputs
/// the prediction), ReLU and dropout between them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MlpConfig {
    pub layers: usize,
    pub hidden: usize,
    pub dropout: f64,
    pub lr: f64,
    pub weight_decay: f64,
    pub max_epochs: usize,
    pub patience: usize,
    pub min_epochs: usize,
}

/// GraphSAGE's defaults (`GraphSageConfig::default`), without the graph.
impl Default for MlpConfig {
    fn default() -> Self {
        let g = GraphSageConfig::default();
        MlpConfig {
            layers: g.layers,
            hidden: g.hidden,
            dropout: g.dropout,
            lr: g.lr,
            weight_decay: g.weight_decay,
            max_epochs: g.max_epochs,
            patience: g.patience,
            min_epochs: g.min_epochs,
        }
    }
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

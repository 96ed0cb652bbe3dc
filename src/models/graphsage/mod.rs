//! Node regressors trained full-batch on the whole city graph (transductive: every tile is a
//! node, the split only masks which nodes' targets enter the loss): GraphSAGE with PyTorch
//! Geometric's `SAGEConv` semantics, h'_i = W_l·agg_{j∈N(i)} m_j + W_r·h_i + b with
//! m_j = h_j (mean or max aggregator) or m_j = relu(P·h_j + c) (max-pool aggregator), and an
//! MLP on the same features (the same layers without the neighbour term).
//! Early stopping on validation R²; the best parameters are kept.
//!
//! `mod.rs`: the configurations and their checks; `network.rs`: the layers and the network
//! (checked against PyTorch Geometric); `train.rs`: training through the shared learner,
//! and the lookup of another run's OpenCarbon embeddings. The MLP's configuration is
//! `models::mlp`.

pub mod network;
pub mod train;

use serde::{Deserialize, Serialize};

use super::{FieldProblem, Fitted};
use crate::data::graph::Contiguity;
use crate::error::Result;
use crate::track::RunDir;

pub use train::{find_opencarbon_run, fit_predict};

/// GraphSAGE's neighbour aggregator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SageAggregator {
    /// Mean of the neighbours' rows.
    #[default]
    Mean,
    /// Per-feature maximum of the neighbours' rows.
    Max,
    /// Per-feature maximum of relu(P·h_j + c): the max-pool aggregator of Hamilton et al.
    /// (PyG: `aggr="max", project=True`).
    MaxPool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GraphSageConfig {
    /// Graph layers; the last one outputs the prediction.
    pub layers: usize,
    pub hidden: usize,
    pub dropout: f64,
    pub aggregator: SageAggregator,
    /// L2-normalise each hidden layer's output per node (PyG's `normalize=True`).
    pub normalize: bool,
    /// Which tiles are linked: queen (default), rook or knn:K.
    pub contiguity: Contiguity,
    pub lr: f64,
    pub weight_decay: f64,
    pub max_epochs: usize,
    pub patience: usize,
    pub min_epochs: usize,
    /// Node features from OpenCarbon instead of the handcrafted ones: the finished
    /// `opencarbon` run on the same dataset, split and seed, whose embeddings.csv holds its
    /// frozen grid embeddings x_g; of this experiment (`this_experiment`) or of the
    /// experiment whose results directory is named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embeddings_from: Option<EmbeddingsFrom>,
}

/// Whose OpenCarbon runs GraphSAGE's `embeddings_from` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "std::path::PathBuf", into = "std::path::PathBuf")]
pub enum EmbeddingsFrom {
    /// `this_experiment`: the runs of the experiment the job belongs to, wherever its
    /// `results_dir` is (a copied YAML with another results_dir still finds them).
    ThisExperiment,
    /// Another experiment's results directory (a directory literally named
    /// `this_experiment` is written `./this_experiment`).
    Dir(std::path::PathBuf),
}

impl EmbeddingsFrom {
    const THIS_EXPERIMENT: &'static str = "this_experiment";

    /// The results directory to search, given the job's own experiment directory.
    pub fn dir<'a>(&'a self, own_experiment: &'a std::path::Path) -> &'a std::path::Path {
        match self {
            EmbeddingsFrom::ThisExperiment => own_experiment,
            EmbeddingsFrom::Dir(d) => d,
        }
    }
}

impl From<std::path::PathBuf> for EmbeddingsFrom {
    fn from(p: std::path::PathBuf) -> Self {
        if p.as_os_str() == Self::THIS_EXPERIMENT {
            EmbeddingsFrom::ThisExperiment
        } else {
            EmbeddingsFrom::Dir(p)
        }
    }
}

impl From<EmbeddingsFrom> for std::path::PathBuf {
    fn from(e: EmbeddingsFrom) -> Self {
        match e {
            EmbeddingsFrom::ThisExperiment => EmbeddingsFrom::THIS_EXPERIMENT.into(),
            EmbeddingsFrom::Dir(d) => d,
        }
    }
}

/// The node models' defaults (the MLP shares them): two layers of 64, dropout 0.2, Adam at
/// 5e-3 with weight decay 5e-4, at most 1000 epochs, patience 100 after 50.
impl Default for GraphSageConfig {
    fn default() -> Self {
        GraphSageConfig {
            layers: 2,
            hidden: 64,
            dropout: 0.2,
            aggregator: SageAggregator::Mean,
            normalize: false,
            contiguity: Contiguity::Queen,
            lr: 5e-3,
            weight_decay: 5e-4,
            max_epochs: 1000,
            patience: 100,
            min_epochs: 50,
            embeddings_from: None,
        }
    }
}

/// What the shared network and trainer need, from either config.
#[derive(Debug, Clone, Copy)]
pub struct NodeModelSpec {
    pub layers: usize,
    pub hidden: usize,
    pub dropout: f64,
    /// None: an MLP.
    pub aggregator: Option<SageAggregator>,
    pub normalize: bool,
    pub lr: f64,
    pub weight_decay: f64,
    pub max_epochs: usize,
    pub patience: usize,
    pub min_epochs: usize,
}

impl GraphSageConfig {
    pub fn spec(&self) -> NodeModelSpec {
        NodeModelSpec {
            layers: self.layers,
            hidden: self.hidden,
            dropout: self.dropout,
            aggregator: Some(self.aggregator),
            normalize: self.normalize,
            lr: self.lr,
            weight_decay: self.weight_decay,
            max_epochs: self.max_epochs,
            patience: self.patience,
            min_epochs: self.min_epochs,
        }
    }
}

impl NodeModelSpec {
    pub fn check(&self) -> Vec<FieldProblem> {
        let mut p = Vec::new();
        for (name, v) in [
            ("layers", self.layers),
            ("hidden", self.hidden),
            ("max_epochs", self.max_epochs),
            ("patience", self.patience),
        ] {
            if v == 0 {
                p.push((name, "is 0, expected at least 1".to_string()));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            p.push((
                "dropout",
                format!("is {}, expected 0 <= p < 1", self.dropout),
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            p.push(("lr", format!("is {}, expected a number > 0", self.lr)));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            p.push((
                "weight_decay",
                format!("is {}, expected a number >= 0", self.weight_decay),
            ));
        }
        if let Some(problem) = crate::models::min_epochs_problem(self.min_epochs, self.max_epochs) {
            p.push(("min_epochs", problem));
        }
        use crate::models::{size_limits as limit, size_problem};
        p.extend(size_problem("hidden", self.hidden, limit::HIDDEN));
        p.extend(size_problem("layers", self.layers, limit::LAYERS));
        // Per layer at most three hidden × hidden matrices (neighbour, self, max-pool).
        let weights = 3.0 * self.layers as f64 * (self.hidden as f64).powi(2);
        if !p.iter().any(|(f, _)| ["hidden", "layers"].contains(f)) {
            p.extend(crate::models::weights_problem(weights, "hidden, layers"));
        }
        p
    }
}

impl crate::models::Model for GraphSageConfig {
    const KIND: &'static str = "graphsage";

    fn label(&self) -> String {
        format!(
            "graphsage(l={},h={},{},{}{})",
            self.layers,
            self.hidden,
            serde_json::to_value(self.aggregator)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            String::from(self.contiguity),
            if self.embeddings_from.is_some() {
                ",opencarbon-emb"
            } else {
                ""
            }
        )
    }

    fn check(&self) -> Vec<FieldProblem> {
        self.spec().check()
    }

    fn fit(&self, job: &crate::models::JobInput, run: &mut RunDir) -> Result<Fitted> {
        let embeddings = self
            .embeddings_from
            .as_ref()
            .map(|from| match (from, job.reads_run) {
                // The job the plan tied this one to (its run id is part of this job's).
                (EmbeddingsFrom::ThisExperiment, Some(id)) => {
                    let dir = run.experiment_dir().join(id);
                    let file = dir.join("embeddings.csv");
                    if crate::track::is_done(&dir) && file.is_file() {
                        Ok(file)
                    } else {
                        Err(crate::error::Error::Model(format!(
                            "embeddings_from: this experiment has no finished opencarbon run {id} with embeddings.csv (the full OpenCarbon job of {}, split {}, seed {}); run that job first",
                            job.dataset_label, job.split_label, job.seed
                        )))
                    }
                }
                _ => {
                    let dir = from.dir(run.experiment_dir());
                    find_opencarbon_run(dir, &job.dataset_label, &job.split_label, job.seed)
                        .map(|r| r.join("embeddings.csv"))
                }
            })
            .transpose()?;
        fit_predict(
            &self.spec(),
            self.contiguity,
            job,
            embeddings.as_deref(),
            run,
        )
    }
}

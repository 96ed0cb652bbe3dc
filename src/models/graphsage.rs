//! Node regressors trained full-batch on the whole city graph (transductive: every tile is a
//! node, the split only masks which nodes' targets enter the loss): GraphSAGE with PyTorch
//! Geometric's `SAGEConv` semantics, h'_i = W_l·agg_{j∈N(i)} m_j + W_r·h_i + b with
//! m_j = h_j (mean or max aggregator) or m_j = relu(P·h_j + c) (max-pool aggregator), and an
//! MLP on the same features (the same layers without the neighbour term).
//! Early stopping on validation R²; the best parameters are kept.

use std::sync::Arc;

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::{FieldProblem, Standardizer};
use crate::data::graph::{Contiguity, NeighbourLists, TileGraph};
use crate::data::PreparedDataset;
use crate::data::SplitPart;
use crate::error::{Error, Result};
use crate::metrics::r2;
use crate::models::{feature_columns, feature_matrix};
use crate::models::{Fitted, Row};
use crate::nn::device::{on_device, ModelDevice, OnDevice};
use crate::nn::layers::{Linear, Tensor2};
use crate::nn::learner::{
    self, LearnerSettings, LearningRate, PatienceMode, StepReport, TrainSteps, Validation,
};
use crate::nn::params::{Adam, HasParams, ParamRef};
use crate::nn::{aggregate, Aggregation, LayerKernels};
use crate::track::RunDir;

fn d_layers() -> usize {
    2
}
fn d_hidden() -> usize {
    64
}
fn d_dropout() -> f64 {
    0.2
}
fn d_lr() -> f64 {
    5e-3
}
fn d_weight_decay() -> f64 {
    5e-4
}
fn d_max_epochs() -> usize {
    1000
}
fn d_patience() -> usize {
    100
}
fn d_min_epochs() -> usize {
    50
}

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
#[serde(deny_unknown_fields)]
pub struct GraphSageConfig {
    /// Graph layers; the last one outputs the prediction.
    #[serde(default = "d_layers")]
    pub layers: usize,
    #[serde(default = "d_hidden")]
    pub hidden: usize,
    #[serde(default = "d_dropout")]
    pub dropout: f64,
    #[serde(default)]
    pub aggregator: SageAggregator,
    /// L2-normalise each hidden layer's output per node (PyG's `normalize=True`).
    #[serde(default)]
    pub normalize: bool,
    /// Which tiles are linked: queen (default), rook or knn:K.
    #[serde(default = "d_contiguity")]
    pub contiguity: Contiguity,
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
    /// Node features from OpenCarbon instead of the handcrafted ones: the results directory
    /// of an experiment (e.g. results/main) whose finished `opencarbon` run on the same
    /// dataset, split and seed wrote embeddings.csv (its frozen grid embeddings x_g).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embeddings_from: Option<std::path::PathBuf>,
}

fn d_contiguity() -> Contiguity {
    Contiguity::Queen
}

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
        p
    }
}

/// One layer: h' = W_r·h + b (+ W_l·agg(m) for a graph layer).
#[derive(Debug, Clone)]
pub struct NodeLayer<D: Storage<f32>> {
    /// W_r and the layer's bias (PyG keeps the bias on lin_l; the sum is the same).
    pub root: Linear<D>,
    /// W_l [out, in]: the neighbour term's weight (None in an MLP).
    pub neighbour: Option<Tensor2<D>>,
    /// The max-pool aggregator's projection P, c.
    pub project: Option<Linear<D>>,
}

impl<D: Device<f32> + LayerKernels> NodeLayer<D> {
    pub fn forward<T: Tape<f32, D> + Merge<T>>(
        &self,
        h: Tensor2<D, T>,
        lists: &Arc<NeighbourLists>,
        how: Aggregation,
    ) -> Tensor2<D, T> {
        // The last use of `h` carries its tape (the layers before).
        match &self.neighbour {
            None => self.root.forward(h),
            Some(w_l) => {
                let root = self.root.forward(h.retaped::<T>());
                let m = match &self.project {
                    Some(p) => p.forward(h).relu(),
                    None => h,
                };
                let agg = aggregate(m, lists, how)
                    .unwrap_or_else(|e| panic!("aggregation failed: {e:?}"));
                root + agg.matmul(w_l.retaped::<T>().permute::<_, Axes2<1, 0>>())
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct NodeNet<D: Storage<f32>> {
    pub layers: Vec<NodeLayer<D>>,
    pub spec: NodeModelSpec,
}

impl<D: Device<f32> + LayerKernels> NodeNet<D> {
    pub fn new(dev: &D, spec: NodeModelSpec, inputs: usize) -> Self {
        let mut dims = vec![inputs];
        dims.extend(std::iter::repeat_n(spec.hidden, spec.layers - 1));
        dims.push(1);
        let layers = dims
            .windows(2)
            .map(|w| {
                let (i, o) = (w[0], w[1]);
                let root = Linear::new(dev, i, o);
                NodeLayer {
                    // Same initialisation as a Linear layer's weight.
                    neighbour: spec.aggregator.map(|_| Linear::<D>::new(dev, i, o).weight),
                    project: (spec.aggregator == Some(SageAggregator::MaxPool))
                        .then(|| Linear::new(dev, i, i)),
                    root,
                }
            })
            .collect();
        NodeNet { layers, spec }
    }

    /// Per-node output (N, 1) for node features `x` (N, F).
    pub fn forward<T: Tape<f32, D> + Merge<T>>(
        &self,
        mut h: Tensor2<D, T>,
        lists: &Arc<NeighbourLists>,
        train: bool,
    ) -> Tensor2<D, T> {
        let last = self.layers.len() - 1;
        let how = match self.spec.aggregator {
            Some(SageAggregator::Mean) => Aggregation::Mean,
            _ => Aggregation::Max,
        };
        for (k, layer) in self.layers.iter().enumerate() {
            h = layer.forward(h, lists, how);
            if k < last {
                if self.spec.normalize {
                    h = l2_normalise_rows(h);
                }
                h = h.relu();
                if train && self.spec.dropout > 0.0 {
                    h = h.dropout(self.spec.dropout);
                }
            }
        }
        h
    }

    pub fn params<'a>(&'a mut self, out: &mut Vec<(String, ParamRef<'a, D>)>) {
        for (k, layer) in self.layers.iter_mut().enumerate() {
            layer.root.params(&format!("layer{k}.root"), out);
            if let Some(w) = &mut layer.neighbour {
                out.push((format!("layer{k}.neighbour.weight"), ParamRef::R2(w)));
            }
            if let Some(p) = &mut layer.project {
                p.params(&format!("layer{k}.project"), out);
            }
        }
    }
}

/// x / max(‖x‖₂, 1e-12) per row.
fn l2_normalise_rows<D: Device<f32>, T: Tape<f32, D> + Merge<T>>(
    x: Tensor2<D, T>,
) -> Tensor2<D, T> {
    let shape = *x.shape();
    let norm = x
        .retaped::<T>()
        .square()
        .sum::<_, Axis<1>>()
        .sqrt()
        .maximum(x.device().ones_like(&(shape.0,)) * 1e-12);
    x / norm.broadcast_like::<_, Axis<1>>(&shape)
}

/// The graph of a job's datasets: one `TileGraph` per dataset, side by side.
pub fn job_graph(graphs: &[&TileGraph]) -> Arc<NeighbourLists> {
    let lists: Vec<&NeighbourLists> = graphs.iter().map(|g| g.lists()).collect();
    Arc::new(NeighbourLists::disjoint_union(&lists))
}

/// Adam on the network's parameters.
pub fn optimiser<D: LayerKernels>(spec: &NodeModelSpec) -> Adam<D> {
    Adam::new(spec.lr as f32, spec.weight_decay as f32)
}

/// The finished full OpenCarbon run of `experiment_dir` (first in plan order) on the same
/// dataset label, split label and seed as the job.
pub fn find_opencarbon_run(
    experiment_dir: &std::path::Path,
    dataset: &str,
    split: &str,
    seed: u64,
) -> Result<std::path::PathBuf> {
    let runs = crate::track::records::collect_runs(experiment_dir)?;
    let found = runs
        .iter()
        .filter(|r| {
            crate::models::opencarbon::is_full_opencarbon(&r.model)
                && r.dataset == dataset
                && r.split == split
                && r.seed == seed
        })
        .min_by_key(|r| r.job_index)
        .map(|r| experiment_dir.join(&r.run_id))
        .filter(|d| d.join("embeddings.csv").is_file());
    found.ok_or_else(|| {
        Error::Model(format!(
            "embeddings_from: {} has no finished opencarbon run with embeddings.csv for {dataset}, split {split}, seed {seed}; run that job first (list OpenCarbon before GraphSAGE in the experiment)",
            experiment_dir.display()
        ))
    })
}

/// Node features from an OpenCarbon run's embeddings.csv, rows in `tiles` order.
fn embedding_features(
    file: &std::path::Path,
    datasets: &[&PreparedDataset],
    tiles: &[(usize, usize)],
) -> Result<(ndarray::Array2<f64>, Vec<String>)> {
    let run_dir = file.parent().unwrap_or(std::path::Path::new("."));
    let table = crate::track::records::EmbeddingTable::read(run_dir)?;
    let dims = table.rows.first().map_or(0, |r| r.3.len());
    let header: Vec<String> = (0..dims).map(|k| format!("e{k}")).collect();
    let by_tile: std::collections::HashMap<(String, u32, u32), Vec<f64>> = table
        .rows
        .into_iter()
        .map(|(d, x, y, e)| ((d, x, y), e))
        .collect();
    let mut out = ndarray::Array2::zeros((tiles.len(), header.len()));
    for (i, &(d, t)) in tiles.iter().enumerate() {
        let tile = datasets[d].data.tiles[t];
        let key = (datasets[d].entry.name.clone(), tile.x, tile.y);
        let v = by_tile.get(&key).ok_or_else(|| {
            Error::dataset(
                file,
                None,
                format!("has no embedding for tile {} {},{}", key.0, key.1, key.2),
            )
        })?;
        out.row_mut(i)
            .assign(&ndarray::ArrayView1::from(v.as_slice()));
    }
    Ok((out, header))
}

/// Train on the job's rows and predict every row: the nodes are all tiles of the job's
/// datasets (their graphs side by side), node features the handcrafted tile features allowed
/// by `inputs` (or the embeddings in `embeddings`, an OpenCarbon run's embeddings.csv),
/// standardised with the training rows; the loss is the mean squared error of the
/// standardised log emission over the training nodes.
/// The model trains on `device`.
#[allow(clippy::too_many_arguments)]
pub fn fit_predict(
    spec: &NodeModelSpec,
    contiguity: Contiguity,
    job: &super::JobInput,
    embeddings: Option<&std::path::Path>,
    run: &mut RunDir,
) -> Result<Fitted> {
    let fit = NodeFit {
        spec,
        contiguity,
        inputs: job.inputs,
        embeddings,
        datasets: job.datasets,
        rows: job.rows,
        run,
    };
    on_device(job.device, job.seed, fit)
}

/// `fit_predict`'s arguments, run on the device `on_device` opens.
struct NodeFit<'a, 'r> {
    spec: &'a NodeModelSpec,
    contiguity: Contiguity,
    inputs: crate::models::Inputs,
    embeddings: Option<&'a std::path::Path>,
    datasets: &'a [&'a PreparedDataset],
    rows: &'a [Row],
    run: &'r mut RunDir,
}

impl OnDevice for NodeFit<'_, '_> {
    type Output = Fitted;

    fn run<D: ModelDevice>(self, dev: D) -> Result<Fitted> {
        fit_predict_on(self, dev)
    }
}

fn fit_predict_on<D: ModelDevice>(fit: NodeFit<'_, '_>, dev: D) -> Result<Fitted> {
    let NodeFit {
        spec,
        contiguity,
        inputs,
        embeddings,
        datasets,
        rows,
        run,
    } = fit;
    let mut base = vec![0usize];
    for d in datasets {
        base.push(base.last().unwrap() + d.data.tiles.len());
    }
    let n = *base.last().unwrap();
    let node = |r: &Row| base[r.dataset] + r.tile;
    let all_tiles: Vec<(usize, usize)> = datasets
        .iter()
        .enumerate()
        .flat_map(|(d, ds)| (0..ds.data.tiles.len()).map(move |t| (d, t)))
        .collect();
    let (x_all, names) = match embeddings {
        Some(file) => {
            run.log(&format!(
                "node features: OpenCarbon embeddings {}",
                file.display()
            ));
            embedding_features(file, datasets, &all_tiles)?
        }
        None => {
            let (columns, names) = feature_columns(inputs, &datasets[0].features.names);
            (feature_matrix(datasets, &all_tiles, &columns), names)
        }
    };
    let train: Vec<&Row> = rows.iter().filter(|r| r.part == SplitPart::Train).collect();
    let valid: Vec<&Row> = rows.iter().filter(|r| r.part == SplitPart::Valid).collect();
    let train_nodes: Vec<usize> = train.iter().map(|r| node(r)).collect();
    let scaler = Standardizer::fit(x_all.select(ndarray::Axis(0), &train_nodes).view());
    let x = scaler.apply(x_all.view());
    let f = x.ncols();
    let x: Tensor2<D> = dev.tensor_from_vec(x.iter().map(|v| *v as f32).collect(), (n, f));

    let graphs: Vec<TileGraph> = datasets
        .iter()
        .map(|d| match contiguity {
            Contiguity::Queen => d.graph.clone(),
            c => TileGraph::build(&d.grid, c),
        })
        .collect();
    let lists = job_graph(&graphs.iter().collect::<Vec<_>>());
    let log_e = |r: &Row| datasets[r.dataset].data.tiles[r.tile].emission.ln();
    let y_train: Vec<f64> = train.iter().map(|r| log_e(r)).collect();
    let y_mean = y_train.iter().sum::<f64>() / y_train.len() as f64;
    let y_std = (y_train.iter().map(|v| (v - y_mean).powi(2)).sum::<f64>() / y_train.len() as f64)
        .sqrt()
        .max(1e-6);
    let y_t: Tensor<(usize,), f32, D> = dev.tensor_from_vec(
        y_train
            .iter()
            .map(|v| ((v - y_mean) / y_std) as f32)
            .collect(),
        (y_train.len(),),
    );
    let train_idx: Tensor<(usize,), usize, D> =
        dev.tensor_from_vec(train_nodes.clone(), (train_nodes.len(),));
    let valid_y: Vec<f64> = valid.iter().map(|r| log_e(r)).collect();

    let net = NodeNet::new(&dev, *spec, f);
    run.log(&format!(
        "{} nodes, {} links, {f} features ({}), {} train / {} valid nodes",
        n,
        lists.targets.len() / 2,
        names.join(" "),
        train.len(),
        valid.len()
    ));
    let links = lists.targets.len() / 2;
    let mut trainer = NodeTrainer {
        opt: optimiser(spec),
        net,
        x,
        lists,
        train_idx,
        y_t,
        valid_nodes: valid.iter().map(|r| node(r)).collect(),
        valid_y,
        y_mean,
        y_std,
    };
    let outcome = learner::fit(&mut trainer, &spec.learner_settings(), run)?;
    let all = trainer.predict_all();
    Ok(Fitted {
        predictions: rows.iter().map(|r| all[node(r)]).collect(),
        description: serde_json::json!({
            "best_epoch": outcome.best_epoch,
            "best_validation_score": outcome.best_score,
            "nodes": n,
            "links": links,
            "features": names,
        }),
    })
}

/// A node model with its inputs, as the shared learner trains it: one full-graph step per
/// epoch on the training nodes' standardised log emission (MSE), validation every epoch.
struct NodeTrainer<D: ModelDevice> {
    net: NodeNet<D>,
    opt: Adam<D>,
    /// Standardised features of every node.
    x: Tensor2<D>,
    lists: Arc<NeighbourLists>,
    train_idx: Tensor<(usize,), usize, D>,
    /// Standardised targets of the training nodes.
    y_t: Tensor<(usize,), f32, D>,
    valid_nodes: Vec<usize>,
    valid_y: Vec<f64>,
    y_mean: f64,
    y_std: f64,
}

impl<D: ModelDevice> NodeTrainer<D> {
    /// Log emission predicted for every node (evaluation mode).
    fn predict_all(&self) -> Vec<f64> {
        self.net
            .forward(self.x.clone(), &self.lists, false)
            .as_vec()
            .iter()
            .map(|v| *v as f64 * self.y_std + self.y_mean)
            .collect()
    }
}

impl<D: ModelDevice> TrainSteps<D> for NodeTrainer<D> {
    type Batch = ();

    fn params<'a>(&'a mut self, out: &mut Vec<(String, ParamRef<'a, D>)>) {
        self.net.params(out);
    }

    fn optimiser(&mut self) -> &mut Adam<D> {
        &mut self.opt
    }

    fn batches(&mut self, _epoch: usize) -> Vec<()> {
        vec![()]
    }

    fn train_step(&mut self, _epoch: usize, _batch: &(), want_norm: bool) -> Result<StepReport> {
        let n = self.x.shape().0;
        let out = self
            .net
            .forward(self.x.clone().traced(Gradients::leaky()), &self.lists, true);
        let pred = out.reshape_like(&(n,)).gather(self.train_idx.clone());
        let loss = (pred - self.y_t.clone()).square().mean();
        let loss_value = loss.array();
        let mut ps = Vec::new();
        self.net.params(&mut ps);
        let grad_norm = self.opt.minimise(loss, &mut ps, want_norm)?;
        Ok(StepReport {
            losses: vec![("loss_mse", loss_value as f64)],
            samples: 1,
            grad_norm,
        })
    }

    fn validate(&mut self, _epoch: usize) -> Result<Option<Validation>> {
        if self.valid_nodes.is_empty() {
            return Ok(None);
        }
        let all = self.predict_all();
        let p: Vec<f64> = self.valid_nodes.iter().map(|&i| all[i]).collect();
        Ok(Some(Validation {
            score: r2(&self.valid_y, &p),
            scalars: Vec::new(),
            histograms: Vec::new(),
        }))
    }
}

impl NodeModelSpec {
    /// How the shared learner runs a node model: validation every epoch, a run.log line
    /// every 50, patience reset on improvement, constant rate.
    pub fn learner_settings(&self) -> LearnerSettings {
        LearnerSettings {
            max_epochs: self.max_epochs,
            valid_every: 1,
            patience: self.patience,
            min_epochs: self.min_epochs,
            patience_mode: PatienceMode::Reset,
            learning_rate: LearningRate::constant(self.lr),
            ema: 0.0,
            clip_norm: None,
            log_every: 50,
            name: "  node model",
        }
    }
}

impl super::Model for MlpConfig {
    const KIND: &'static str = "mlp";

    fn label(&self) -> String {
        format!("mlp(l={},h={})", self.layers, self.hidden)
    }

    fn check(&self) -> Vec<FieldProblem> {
        self.spec().check()
    }

    fn fit(&self, job: &super::JobInput, run: &mut RunDir) -> Result<Fitted> {
        // An MLP has no neighbour term: the contiguity is unused.
        fit_predict(&self.spec(), Contiguity::Queen, job, None, run)
    }
}

impl super::Model for GraphSageConfig {
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

    fn fit(&self, job: &super::JobInput, run: &mut RunDir) -> Result<Fitted> {
        let embeddings = self
            .embeddings_from
            .as_ref()
            .map(|dir| {
                find_opencarbon_run(dir, &job.dataset_label, &job.split_label, job.seed)
                    .map(|r| r.join("embeddings.csv"))
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

#[cfg(test)]
mod tests {
    //! Against PyTorch Geometric's SAGEConv (tests/fixtures/sage, written by
    //! scripts/make_baseline_fixtures.py): same weights and graph, same outputs and gradients.
    use super::*;

    type Dev = Cpu;

    fn load(name: &str) -> serde_json::Value {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sage");
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
    }

    /// Rows of a nested JSON list, flattened, with their shape.
    fn matrix(v: &serde_json::Value) -> (Vec<f32>, (usize, usize)) {
        match v.as_array().unwrap()[0].as_array() {
            Some(first) => {
                let rows = v.as_array().unwrap();
                let data = rows
                    .iter()
                    .flat_map(|r| {
                        r.as_array()
                            .unwrap()
                            .iter()
                            .map(|x| x.as_f64().unwrap() as f32)
                    })
                    .collect();
                (data, (rows.len(), first.len()))
            }
            None => {
                let data: Vec<f32> = v
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect();
                let n = data.len();
                (data, (n, 1))
            }
        }
    }

    fn tensor<D: ModelDevice>(dev: &D, v: &serde_json::Value) -> Tensor2<D> {
        let (data, shape) = matrix(v);
        dev.tensor_from_vec(data, shape)
    }

    fn vector<D: ModelDevice>(dev: &D, v: &serde_json::Value) -> Tensor<(usize,), f32, D> {
        let (data, shape) = matrix(v);
        dev.tensor_from_vec(data, (shape.0 * shape.1,))
    }

    /// edges.csv: `src,dst`, dst aggregates over src.
    fn graph(nodes: usize) -> Arc<NeighbourLists> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sage");
        let text = std::fs::read_to_string(dir.join("edges.csv")).unwrap();
        let mut incoming = vec![Vec::new(); nodes];
        for line in text.lines().skip(1) {
            let (s, d) = line.split_once(',').unwrap();
            incoming[d.parse::<usize>().unwrap()].push(s.parse::<usize>().unwrap());
        }
        let mut lists = NeighbourLists {
            offsets: vec![0],
            targets: vec![],
        };
        for mut nb in incoming {
            nb.sort_unstable();
            lists.targets.extend(nb);
            lists.offsets.push(lists.targets.len());
        }
        Arc::new(lists)
    }

    /// A SAGEConv with the fixture's weights under `prefix` (e.g. "conv1.").
    fn layer<D: ModelDevice>(dev: &D, params: &serde_json::Value, prefix: &str) -> NodeLayer<D> {
        let p = |k: &str| &params[format!("{prefix}{k}")];
        NodeLayer {
            root: Linear {
                weight: tensor(dev, p("lin_r.weight")),
                bias: vector(dev, p("lin_l.bias")),
            },
            neighbour: Some(tensor(dev, p("lin_l.weight"))),
            project: params.get(format!("{prefix}lin.weight")).map(|w| Linear {
                weight: tensor(dev, w),
                bias: vector(dev, p("lin.bias")),
            }),
        }
    }

    /// Within 1e-5 relative of PyG (1e-4 on a GPU, whose sums run in another order).
    fn assert_close(what: &str, got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let tol = if what.starts_with("gpu") { 1e-4 } else { 1e-5 };
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()),
                "{what}[{i}]: {g} vs PyG {w}"
            );
        }
    }

    #[test]
    fn one_layer_matches_sageconv_mean_and_normalised() {
        let dev = Dev::default();
        for (name, normalise) in [("case_mean.json", false), ("case_mean_norm.json", true)] {
            let f = load(name);
            let n = f["num_nodes"].as_u64().unwrap() as usize;
            let lists = graph(n);
            let mut y = layer(&dev, &f["params"], "").forward(
                tensor(&dev, &f["x"]),
                &lists,
                Aggregation::Mean,
            );
            if normalise {
                y = l2_normalise_rows(y);
            }
            assert_close(name, &y.as_vec(), &matrix(&f["output"]).0);
        }
    }

    #[test]
    fn max_pool_aggregator_matches_sageconv_with_projection_outputs_and_gradients() {
        let dev = Dev::default();
        let f = load("case_max_project.json");
        let lists = graph(f["num_nodes"].as_u64().unwrap() as usize);
        let l = layer(&dev, &f["params"], "");
        let x = tensor(&dev, &f["x"]);
        let y = l.forward(x.leaky_trace(), &lists, Aggregation::Max);
        assert_close("output", &y.as_vec(), &matrix(&f["output"]).0);
        // loss = ½ Σ y².
        let grads = (y.square().sum() * 0.5).backward();
        let g = &f["grads"];
        let p = l.project.as_ref().unwrap();
        for (what, got, want) in [
            ("x", grads.get(&x).as_vec(), &g["x"]),
            (
                "lin_r.weight",
                grads.get(&l.root.weight).as_vec(),
                &g["lin_r.weight"],
            ),
            (
                "lin_l.bias",
                grads.get(&l.root.bias).as_vec(),
                &g["lin_l.bias"],
            ),
            (
                "lin_l.weight",
                grads.get(l.neighbour.as_ref().unwrap()).as_vec(),
                &g["lin_l.weight"],
            ),
            (
                "lin.weight",
                grads.get(&p.weight).as_vec(),
                &g["lin.weight"],
            ),
            ("lin.bias", grads.get(&p.bias).as_vec(), &g["lin.bias"]),
        ] {
            assert_close(what, &got, &matrix(want).0);
        }
    }

    #[test]
    fn two_layer_network_matches_pyg_outputs_and_gradients() {
        two_layer_network_matches_pyg(&Dev::default(), "");
    }

    /// The same check on the GPU (our aggregation kernels, dfdx's CUDA ops).
    #[cfg(feature = "cuda")]
    #[test]
    fn two_layer_network_on_the_gpu_matches_pyg() {
        if let Some(gpu) = crate::nn::cuda::tests::gpu_or_skip() {
            two_layer_network_matches_pyg(&gpu, "gpu ");
        }
    }

    fn two_layer_network_matches_pyg<D: ModelDevice>(dev: &D, label: &str) {
        let dev = dev.clone();
        let f = load("case_two_layer.json");
        let n = f["num_nodes"].as_u64().unwrap() as usize;
        let lists = graph(n);
        let spec = NodeModelSpec {
            layers: 2,
            hidden: 6,
            dropout: 0.0,
            aggregator: Some(SageAggregator::Mean),
            normalize: false,
            lr: 0.01,
            weight_decay: 0.0,
            max_epochs: 1,
            patience: 1,
            min_epochs: 1,
        };
        let mut net = NodeNet::new(&dev, spec, 5);
        net.layers = vec![
            layer(&dev, &f["params"], "conv1."),
            layer(&dev, &f["params"], "conv2."),
        ];
        let x = tensor(&dev, &f["x"]);
        let y = net.forward(x.leaky_trace(), &lists, true);
        assert_close(
            &format!("{label}output"),
            &y.as_vec(),
            &matrix(&f["output"]).0,
        );
        let target = tensor(&dev, &f["target"]);
        let loss = (y - target).square().mean();
        assert!((loss.array() as f64 - f["loss"].as_f64().unwrap()).abs() < 1e-5);
        let grads = loss.backward();
        let g = &f["grads"];
        assert_close(
            &format!("{label}grad x"),
            &grads.get(&x).as_vec(),
            &matrix(&g["x"]).0,
        );
        for (k, conv) in ["conv1.", "conv2."].iter().enumerate() {
            let l = &net.layers[k];
            for (what, got) in [
                ("lin_r.weight", grads.get(&l.root.weight).as_vec()),
                ("lin_l.bias", grads.get(&l.root.bias).as_vec()),
                (
                    "lin_l.weight",
                    grads.get(l.neighbour.as_ref().unwrap()).as_vec(),
                ),
            ] {
                assert_close(
                    &format!("{label}{conv}{what}"),
                    &got,
                    &matrix(&g[format!("{conv}{what}")]).0,
                );
            }
        }
    }
}

//! Training a node model (GraphSAGE or the MLP) full-batch through the shared learner, and
//! reading another run's OpenCarbon embeddings as node features.

use std::sync::Arc;

use super::network::{job_graph, optimiser, NodeNet};
use super::NodeModelSpec;
use crate::data::graph::{Contiguity, NeighbourLists, TileGraph};
use crate::data::PreparedDataset;
use crate::data::SplitPart;
use crate::error::{Error, Result};
use crate::metrics::r2;
use crate::models::Standardizer;
use crate::models::{feature_columns, feature_matrix};
use crate::models::{Fitted, Row};
use crate::nn::device::{on_device, ModelDevice, OnDevice};
use crate::nn::layers::Tensor2;
use crate::nn::learner::{
    self, LearnerSettings, LearningRate, PatienceMode, StepReport, TrainSteps, Validation,
};
use crate::nn::params::{Adam, ParamRef};
use crate::track::RunDir;
use dfdx::prelude::*;

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
            r.facts().is_full_opencarbon()
                && r.dataset == dataset
                && r.split == split
                && r.seed == seed
        })
        .map(|r| (r.job_index, experiment_dir.join(&r.run_id)))
        .filter(|(_, d)| d.join("embeddings.csv").is_file())
        .min_by_key(|(index, _)| *index)
        .map(|(_, d)| d);
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
    job: &crate::models::JobInput,
    embeddings: Option<&std::path::Path>,
    run: &mut RunDir,
) -> Result<Fitted> {
    let fit = NodeFit {
        spec,
        contiguity,
        job,
        embeddings,
        run,
    };
    on_device(job.device, job.seed, fit)
}

/// `fit_predict`'s arguments, run on the device `on_device` opens.
struct NodeFit<'a, 'r> {
    spec: &'a NodeModelSpec,
    contiguity: Contiguity,
    job: &'a crate::models::JobInput<'a>,
    embeddings: Option<&'a std::path::Path>,
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
        job,
        embeddings,
        run,
    } = fit;
    let (inputs, datasets, rows) = (job.inputs, job.datasets, job.rows);
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

//! The node models' layers and network: GraphSAGE layers with PyTorch Geometric's `SAGEConv`
//! semantics (mean, max and max-pool aggregators), or plain linear layers for the MLP.

use std::sync::Arc;

use super::{NodeModelSpec, SageAggregator};
use crate::data::graph::{NeighbourLists, TileGraph};
use crate::nn::layers::{Linear, Tensor2};
use crate::nn::params::{Adam, HasParams, ParamRef};
use crate::nn::{aggregate, Aggregation, LayerKernels};
use dfdx::prelude::*;

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

#[cfg(test)]
mod tests {
    //! Against PyTorch Geometric's SAGEConv (tests/fixtures/sage, written by
    //! scripts/make_baseline_fixtures.py): same weights and graph, same outputs and gradients.
    use super::*;
    use crate::nn::device::ModelDevice;

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

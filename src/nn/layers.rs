//! Layers with run-time sizes, composed from dfdx's stable tensor ops (their own kernels are
//! not worth it: they are cheap next to the convolutions). Parameters are plain tensors with
//! no tape; `forward` re-tapes them onto the input's tape so their gradients are recorded
//! by id, as dfdx's own modules do.

use dfdx::prelude::*;

use super::{
    batch_norm, conv2d, sparse_conv2d, BatchStats, LayerKernels, SparseBatch, Tensor1, Tensor4,
};

pub type Tensor2<D, T = NoneTape> = Tensor<(usize, usize), f32, D, T>;
pub type Tensor3<D, T = NoneTape> = Tensor<(usize, usize, usize), f32, D, T>;

/// Uniform(−1/√fan_in, 1/√fan_in): PyTorch's default for Linear and Conv2d weights and biases.
fn uniform_init<S: Shape, D: Device<f32>>(dev: &D, shape: S, fan_in: usize) -> Tensor<S, f32, D> {
    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
    let u: Tensor<S, f32, D> = dev.sample_uniform_like(&shape);
    (u * (2.0 * bound)) - bound
}

/// y = x Wᵀ + b, W [out, in].
#[derive(Debug, Clone)]
pub struct Linear<D: Storage<f32>> {
    pub weight: Tensor2<D>,
    pub bias: Tensor1<D>,
}

impl<D: Device<f32>> Linear<D> {
    pub fn new(dev: &D, inputs: usize, outputs: usize) -> Self {
        Linear {
            weight: uniform_init(dev, (outputs, inputs), inputs),
            bias: uniform_init(dev, (outputs,), inputs),
        }
    }

    pub fn forward<T: Tape<f32, D> + Merge<T>>(&self, x: Tensor2<D, T>) -> Tensor2<D, T> {
        let n = x.shape().0;
        let out = self.weight.shape().0;
        let y = x.matmul(self.weight.retaped::<T>().permute::<_, Axes2<1, 0>>());
        y + self
            .bias
            .retaped::<T>()
            .broadcast_like::<_, Axis<0>>(&(n, out))
    }
}

/// A 2-D convolution layer (square kernel) with an optional bias.
#[derive(Debug, Clone)]
pub struct Conv2d<D: Storage<f32>> {
    pub weight: Tensor4<D>,
    pub bias: Option<Tensor1<D>>,
    pub stride: usize,
    pub padding: usize,
    /// Whether to compute the gradient of the input (not for a first layer, fed with data).
    pub input_grad: bool,
}

impl<D: Device<f32> + LayerKernels> Conv2d<D> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dev: &D,
        inputs: usize,
        outputs: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    ) -> Self {
        let fan_in = inputs * kernel * kernel;
        Conv2d {
            weight: uniform_init(dev, (outputs, inputs, kernel, kernel), fan_in),
            bias: bias.then(|| uniform_init(dev, (outputs,), fan_in)),
            stride,
            padding,
            input_grad: true,
        }
    }

    pub fn forward<T: Tape<f32, D>>(&self, x: Tensor4<D, T>) -> Tensor4<D, T> {
        conv2d(
            x,
            &self.weight,
            self.bias.as_ref(),
            self.stride,
            self.padding,
            self.input_grad,
        )
        .expect("conv2d on the CPU cannot fail")
    }

    /// The same convolution of sparse input data, on a new tape of type `T`.
    pub fn forward_sparse<T: Tape<f32, D>>(&self, x: &SparseBatch) -> Tensor4<D, T> {
        sparse_conv2d(
            x,
            &self.weight,
            self.bias.as_ref(),
            self.stride,
            self.padding,
        )
        .expect("sparse conv2d on the CPU cannot fail")
    }
}

/// Batch normalisation over the channel axis (axis 1), for (N, C) and (N, C, H, W) inputs.
/// Training normalises with the batch's biased variance and moves the running statistics
/// (with the unbiased variance, as PyTorch does); evaluation uses the running statistics.
#[derive(Debug, Clone)]
pub struct BatchNorm<D: Storage<f32>> {
    pub gamma: Tensor1<D>,
    pub beta: Tensor1<D>,
    /// On the device, updated there.
    pub running_mean: Tensor1<D>,
    pub running_var: Tensor1<D>,
    pub eps: f32,
    pub momentum: f32,
}

impl<D: Device<f32> + LayerKernels> BatchNorm<D> {
    pub fn new(dev: &D, channels: usize) -> Self {
        BatchNorm {
            gamma: dev.ones_like(&(channels,)),
            beta: dev.zeros_like(&(channels,)),
            running_mean: dev.zeros_like(&(channels,)),
            running_var: dev.ones_like(&(channels,)),
            eps: 1e-5,
            momentum: 0.1,
        }
    }

    /// Running averages ← (1 − momentum)·running + momentum·batch (variance unbiased), with
    /// the CPU kernel's operation order in f32.
    fn update_running(&mut self, (mean, var_biased): BatchStats<D>, count: usize) {
        let unbias = if count > 1 {
            count as f32 / (count - 1) as f32
        } else {
            1.0
        };
        let keep = 1.0 - self.momentum;
        self.running_mean = self.running_mean.clone() * keep + mean * self.momentum;
        self.running_var = self.running_var.clone() * keep + var_biased * self.momentum * unbias;
    }

    /// (N, C) input.
    pub fn forward2<T: Tape<f32, D> + Merge<T>>(
        &mut self,
        x: Tensor2<D, T>,
        train: bool,
    ) -> Tensor2<D, T> {
        let (n, c) = *x.shape();
        self.forward4(x.reshape_like(&(n, c, 1, 1)), train)
            .reshape_like(&(n, c))
    }

    /// (N, C, H, W) input.
    pub fn forward4<T: Tape<f32, D> + Merge<T>>(
        &mut self,
        x: Tensor4<D, T>,
        train: bool,
    ) -> Tensor4<D, T> {
        let (n, _, h, w) = *x.shape();
        let running = (!train).then_some((&self.running_mean, &self.running_var));
        let (y, stats) = batch_norm(x, &self.gamma, &self.beta, running, self.eps)
            .unwrap_or_else(|e| panic!("batch norm failed: {e:?}"));
        if let Some(stats) = stats {
            self.update_running(stats, n * h * w);
        }
        y
    }
}

/// Mean over H and W: (N, C, H, W) → (N, C).
pub fn global_avg_pool<D: Device<f32>, T: Tape<f32, D>>(x: Tensor4<D, T>) -> Tensor2<D, T> {
    x.mean::<_, Axes2<2, 3>>()
}

/// Squeeze-and-excitation: channel weights from the global mean through a bottleneck
/// (two 1×1 convolutions, written as linear layers), then a channel-wise scale.
#[derive(Debug, Clone)]
pub struct SqueezeExcite<D: Storage<f32>> {
    pub reduce: Linear<D>,
    pub expand: Linear<D>,
}

impl<D: Device<f32>> SqueezeExcite<D> {
    /// The reference's bottleneck width: max(channels / 16, 8).
    pub fn new(dev: &D, channels: usize) -> Self {
        let hidden = (channels / 16).max(8);
        SqueezeExcite {
            reduce: Linear::new(dev, channels, hidden),
            expand: Linear::new(dev, hidden, channels),
        }
    }

    /// Returns the scaled input and the channel weights (N, C) for inspection.
    pub fn forward<T: Tape<f32, D> + Merge<T>>(
        &self,
        x: Tensor4<D, T>,
    ) -> (Tensor4<D, T>, Tensor2<D>) {
        let shape = *x.shape();
        let squeezed = global_avg_pool(x.retaped::<T>());
        let gate = self
            .expand
            .forward(self.reduce.forward(squeezed).relu())
            .sigmoid();
        let weights = gate.retaped::<NoneTape>();
        (x * gate.broadcast_like::<_, Axes2<2, 3>>(&shape), weights)
    }
}

/// Aggregate attention over K vectors per sample: score_k = vᵀ tanh(W x_k + b),
/// β = softmax_k(score), out = Σ_k β_k x_k. Input (N, K, d).
#[derive(Debug, Clone)]
pub struct AggregateAttention<D: Storage<f32>> {
    pub proj: Linear<D>,
    pub v: Tensor1<D>,
}

impl<D: Device<f32>> AggregateAttention<D> {
    pub fn new(dev: &D, dim: usize) -> Self {
        AggregateAttention {
            proj: Linear::new(dev, dim, dim),
            v: uniform_init(dev, (dim,), dim),
        }
    }

    /// Returns the fused vectors (N, d) and the attention weights β (N, K).
    pub fn forward<T: Tape<f32, D> + Merge<T>>(
        &self,
        x: Tensor3<D, T>,
    ) -> (Tensor2<D, T>, Tensor2<D, T>) {
        let (n, k, d) = *x.shape();
        let flat = x.retaped::<T>().reshape_like(&(n * k, d));
        let hidden = self.proj.forward(flat).tanh();
        let scores = hidden
            .matmul(self.v.retaped::<T>().reshape_like(&(d, 1)))
            .reshape_like(&(n, k));
        let beta = scores.softmax::<Axis<1>>();
        // The weighting path keeps the tape (it is what the loss flows through); the β handed
        // out shares its id, so a loss on β still reaches the parameters.
        let beta_out = beta.retaped::<T>();
        let weighted = x * beta.broadcast_like::<_, Axis<2>>(&(n, k, d));
        (weighted.sum::<_, Axis<1>>(), beta_out)
    }
}

/// The reference's attention over the d numbers of a vector as d one-dimensional tokens:
/// per head h, q = wq_h·x + bq_h (likewise k, v from the key input), softmax(q kᵀ) v, then
/// Linear(heads → 1) over the heads. Head dimension 1, so the scale 1/√1 is 1.
#[derive(Debug, Clone)]
pub struct TokenAttention<D: Storage<f32>> {
    pub heads: usize,
    pub wq: Tensor1<D>,
    pub bq: Tensor1<D>,
    pub wk: Tensor1<D>,
    pub bk: Tensor1<D>,
    pub wv: Tensor1<D>,
    pub bv: Tensor1<D>,
    pub out: Linear<D>,
}

impl<D: Device<f32>> TokenAttention<D> {
    pub fn new(dev: &D, heads: usize) -> Self {
        let init = |dev: &D| uniform_init(dev, (heads,), 1);
        TokenAttention {
            heads,
            wq: init(dev),
            bq: init(dev),
            wk: init(dev),
            bk: init(dev),
            wv: init(dev),
            bv: init(dev),
            out: Linear::new(dev, heads, 1),
        }
    }

    /// `query` and `key_value`: (N, d) each; returns (N, d).
    pub fn forward<T: Tape<f32, D> + Merge<T>>(
        &self,
        query: Tensor2<D, T>,
        key_value: Tensor2<D, T>,
    ) -> Tensor2<D, T> {
        let (n, d) = *query.shape();
        let h = self.heads;
        // (N, d) → (N, h, d) with per-head affine maps.
        let affine = |x: Tensor2<D, T>, w: &Tensor1<D>, b: &Tensor1<D>| -> Tensor3<D, T> {
            x.broadcast_like::<_, Axis<1>>(&(n, h, d))
                * w.retaped::<T>()
                    .broadcast_like::<_, Axes2<0, 2>>(&(n, h, d))
                + b.retaped::<T>()
                    .broadcast_like::<_, Axes2<0, 2>>(&(n, h, d))
        };
        let q = affine(query, &self.wq, &self.bq);
        let k = affine(key_value.retaped::<T>(), &self.wk, &self.bk);
        let v = affine(key_value, &self.wv, &self.bv);
        // scores (N·h, d, d) = q (N·h, d, 1) · k (N·h, 1, d)
        let q = q.reshape_like(&(n * h, d, 1));
        let k = k.reshape_like(&(n * h, 1, d));
        let attn = q.matmul(k).softmax::<Axis<2>>();
        let o = attn.matmul(v.reshape_like(&(n * h, d, 1))); // (N·h, d, 1)
                                                             // (N, h, d) → (N, d, h) → (N·d, h) → Linear(h → 1) → (N, d)
        let o = o
            .reshape_like(&(n, h, d))
            .permute::<_, Axes3<0, 2, 1>>()
            .reshape_like(&(n * d, h));
        self.out.forward(o).reshape_like(&(n, d))
    }
}

/// InfoNCE between paired rows of `a` and `b` (N, d): logits = a bᵀ / τ (no normalisation, as
/// in the reference), cross-entropy with the diagonal as labels, mean over rows.
pub fn info_nce<D: Device<f32>, T: Tape<f32, D> + Merge<T>>(
    a: Tensor2<D, T>,
    b: Tensor2<D, T>,
    temperature: f32,
) -> Tensor<(), f32, D, T> {
    let n = a.shape().0;
    let dev = a.device().clone();
    let logits = a.matmul(b.permute::<_, Axes2<1, 0>>()) / temperature;
    let mut eye = vec![0.0f32; n * n];
    for i in 0..n {
        eye[i * n + i] = 1.0;
    }
    let targets: Tensor2<D> = dev.tensor_from_vec(eye, (n, n));
    dfdx::losses::cross_entropy_with_logits_loss(logits, targets)
}

#[cfg(test)]
mod tests {
    use super::super::torch_fixture::{array, assert_close, load, Array};
    use super::*;

    type Dev = Cpu;

    fn t1(dev: &Dev, a: &Array) -> Tensor1<Dev> {
        dev.tensor_from_vec(a.data.clone(), (a.shape[0],))
    }
    fn t2(dev: &Dev, a: &Array) -> Tensor2<Dev> {
        dev.tensor_from_vec(a.data.clone(), (a.shape[0], a.shape[1]))
    }
    fn t3(dev: &Dev, a: &Array) -> Tensor3<Dev> {
        dev.tensor_from_vec(a.data.clone(), (a.shape[0], a.shape[1], a.shape[2]))
    }
    fn t4(dev: &Dev, a: &Array) -> Tensor4<Dev> {
        dev.tensor_from_vec(
            a.data.clone(),
            (a.shape[0], a.shape[1], a.shape[2], a.shape[3]),
        )
    }
    fn upstream<S: Shape>(
        dev: &Dev,
        f: &serde_json::Value,
        key: Option<&str>,
        shape: S,
    ) -> Tensor<S, f32, Dev> {
        let v = key.map_or(&f["upstream"], |k| &f["upstream"][k]);
        dev.tensor_from_vec(array(v).data, shape)
    }
    /// The gradient of `t` in `g` against the fixture's `grads[key]`.
    fn check_grad<S: Shape>(
        g: &Gradients<f32, Dev>,
        f: &serde_json::Value,
        name: &str,
        t: &Tensor<S, f32, Dev>,
        key: &str,
        tol: f32,
    ) {
        assert_close(name, &g.get(t).as_vec(), &want(f, &["grads", key]), tol);
    }

    fn want(f: &serde_json::Value, path: &[&str]) -> Vec<f32> {
        let mut v = f;
        for p in path {
            v = &v[*p];
        }
        array(v).data
    }

    #[test]
    fn linear_matches_pytorch() {
        let (dev, f) = (Dev::default(), load("linear.json"));
        let x = t2(&dev, &array(&f["inputs"]["x"]));
        let lin = Linear {
            weight: t2(&dev, &array(&f["params"]["weight"])),
            bias: t1(&dev, &array(&f["params"]["bias"])),
        };
        let y = lin.forward(x.leaky_trace());
        assert_close("linear y", &y.as_vec(), &want(&f, &["output"]), 1e-5);
        let r = upstream(&dev, &f, None, *y.shape());
        let g = (y * r).sum().backward();
        check_grad(&g, &f, "linear gx", &x, "x", 1e-5);
        check_grad(&g, &f, "linear gw", &lin.weight, "weight", 1e-5);
        check_grad(&g, &f, "linear gb", &lin.bias, "bias", 1e-5);
    }

    #[test]
    fn batchnorm2d_training_matches_pytorch() {
        let (dev, f) = (Dev::default(), load("batchnorm2d_train.json"));
        let x = t4(&dev, &array(&f["inputs"]["x"]));
        let mut bn = BatchNorm::new(&dev, x.shape().1);
        bn.gamma = t1(&dev, &array(&f["params"]["gamma"]));
        bn.beta = t1(&dev, &array(&f["params"]["beta"]));
        let y = bn.forward4(x.leaky_trace(), true);
        assert_close("bn y", &y.as_vec(), &want(&f, &["output", "y"]), 1e-4);
        assert_close(
            "bn running mean",
            &bn.running_mean.as_vec(),
            &want(&f, &["output", "running_mean"]),
            1e-5,
        );
        assert_close(
            "bn running var",
            &bn.running_var.as_vec(),
            &want(&f, &["output", "running_var"]),
            1e-5,
        );
        let r = upstream(&dev, &f, Some("y"), *y.shape());
        let g = (y * r).sum().backward();
        check_grad(&g, &f, "bn gx", &x, "x", 1e-3);
        check_grad(&g, &f, "bn ggamma", &bn.gamma, "gamma", 1e-4);
        check_grad(&g, &f, "bn gbeta", &bn.beta, "beta", 1e-4);
    }

    #[test]
    fn batchnorm1d_evaluation_matches_pytorch() {
        let (dev, f) = (Dev::default(), load("batchnorm1d_eval.json"));
        let x = t2(&dev, &array(&f["inputs"]["x"]));
        let mut bn = BatchNorm::new(&dev, x.shape().1);
        bn.gamma = t1(&dev, &array(&f["params"]["gamma"]));
        bn.beta = t1(&dev, &array(&f["params"]["beta"]));
        bn.running_mean = t1(&dev, &array(&f["params"]["running_mean"]));
        bn.running_var = t1(&dev, &array(&f["params"]["running_var"]));
        let y = bn.forward2(x.leaky_trace(), false);
        assert_close("bn1d y", &y.as_vec(), &want(&f, &["output"]), 1e-5);
        let r = upstream(&dev, &f, None, *y.shape());
        let g = (y * r).sum().backward();
        check_grad(&g, &f, "bn1d gx", &x, "x", 1e-4);
        check_grad(&g, &f, "bn1d ggamma", &bn.gamma, "gamma", 1e-4);
    }

    #[test]
    fn squeeze_excite_matches_pytorch() {
        let (dev, f) = (Dev::default(), load("se_block.json"));
        let x = t4(&dev, &array(&f["inputs"]["x"]));
        let se = SqueezeExcite {
            reduce: Linear {
                weight: t2(&dev, &array(&f["params"]["w1"])),
                bias: t1(&dev, &array(&f["params"]["b1"])),
            },
            expand: Linear {
                weight: t2(&dev, &array(&f["params"]["w2"])),
                bias: t1(&dev, &array(&f["params"]["b2"])),
            },
        };
        let (y, _) = se.forward(x.leaky_trace());
        assert_close("se y", &y.as_vec(), &want(&f, &["output"]), 1e-5);
        let r = upstream(&dev, &f, None, *y.shape());
        let g = (y * r).sum().backward();
        check_grad(&g, &f, "se gx", &x, "x", 1e-4);
        check_grad(&g, &f, "se gw1", &se.reduce.weight, "w1", 1e-4);
        check_grad(&g, &f, "se gb2", &se.expand.bias, "b2", 1e-4);
    }

    #[test]
    fn aggregate_attention_matches_pytorch() {
        let (dev, f) = (Dev::default(), load("aggregate_attention.json"));
        let x = t3(&dev, &array(&f["inputs"]["x"]));
        let att = AggregateAttention {
            proj: Linear {
                weight: t2(&dev, &array(&f["params"]["W"])),
                bias: t1(&dev, &array(&f["params"]["b"])),
            },
            v: t1(&dev, &array(&f["params"]["v"])),
        };
        let (out, beta) = att.forward(x.leaky_trace());
        assert_close(
            "agg out",
            &out.as_vec(),
            &want(&f, &["output", "out"]),
            1e-5,
        );
        assert_close(
            "agg beta",
            &beta.as_vec(),
            &want(&f, &["output", "beta"]),
            1e-5,
        );
        let ro = upstream(&dev, &f, Some("out"), *out.shape());
        let rb = upstream(&dev, &f, Some("beta"), *beta.shape());
        let g = ((out * ro).sum() + (beta * rb).sum()).backward();
        check_grad(&g, &f, "agg gx", &x, "x", 1e-4);
        check_grad(&g, &f, "agg gW", &att.proj.weight, "W", 1e-4);
        check_grad(&g, &f, "agg gv", &att.v, "v", 1e-4);
    }

    #[test]
    fn token_attention_matches_pytorch() {
        let (dev, f) = (Dev::default(), load("token_mha.json"));
        let q = t2(&dev, &array(&f["inputs"]["q_in"]));
        let kv = t2(&dev, &array(&f["inputs"]["kv_in"]));
        let p = |k: &str| t1(&dev, &array(&f["params"][k]));
        let att = TokenAttention {
            heads: 2,
            wq: p("wq"),
            bq: p("bq"),
            wk: p("wk"),
            bk: p("bk"),
            wv: p("wv"),
            bv: p("bv"),
            out: Linear {
                weight: t2(&dev, &array(&f["params"]["wo"])),
                bias: p("bo"),
            },
        };
        let y = att.forward(q.leaky_trace(), kv.leaky_trace());
        assert_close("mha y", &y.as_vec(), &want(&f, &["output"]), 1e-5);
        let r = upstream(&dev, &f, None, *y.shape());
        let g = (y * r).sum().backward();
        check_grad(&g, &f, "mha gq", &q, "q_in", 1e-4);
        check_grad(&g, &f, "mha gkv", &kv, "kv_in", 1e-4);
        check_grad(&g, &f, "mha gwk", &att.wk, "wk", 1e-4);
        check_grad(&g, &f, "mha gwo", &att.out.weight, "wo", 1e-4);
    }

    #[test]
    fn info_nce_matches_pytorch() {
        let (dev, f) = (Dev::default(), load("infonce.json"));
        let a = t2(&dev, &array(&f["inputs"]["xs"]));
        let b = t2(&dev, &array(&f["inputs"]["xp"]));
        let loss = info_nce(a.leaky_trace(), b.leaky_trace(), 0.07);
        assert_close("infonce", &loss.as_vec(), &want(&f, &["output"]), 1e-5);
        let g = loss.backward();
        check_grad(&g, &f, "infonce ga", &a, "xs", 1e-4);
        check_grad(&g, &f, "infonce gb", &b, "xp", 1e-4);
    }

    #[test]
    fn global_avg_pool_matches_pytorch() {
        let (dev, f) = (Dev::default(), load("global_avg_pool.json"));
        let x = t4(&dev, &array(&f["inputs"]["x"]));
        let y = global_avg_pool(x.leaky_trace());
        assert_close("gap y", &y.as_vec(), &want(&f, &["output"]), 1e-6);
        let r = upstream(&dev, &f, None, *y.shape());
        let g = (y * r).sum().backward();
        check_grad(&g, &f, "gap gx", &x, "x", 1e-6);
    }
}

//! The OpenCarbon network (../shared/spec/opencarbon-model.md), with run-time sizes, and the
//! deliberate deviations from the reference code: missing neighbours are zero embeddings
//! (never another tile's data), every distinct tile of a batch is encoded once and its
//! embedding shared by all neighbourhoods that contain it.

use dfdx::prelude::*;

use super::{ImageEncoderKind, OpenCarbonConfig};
use crate::models::Inputs;
use crate::nn::layers::{
    global_avg_pool, AggregateAttention, BatchNorm, Conv2d, Linear, SqueezeExcite, Tensor2, Tensor3,
};
use crate::nn::params::{HasParams, ParamRef};
use crate::nn::{max_pool2d, LayerKernels, SparseBatch, Tensor4};

/// conv → batch norm → ReLU.
#[derive(Debug, Clone)]
pub struct ConvBnRelu<D: Storage<f32>> {
    pub conv: Conv2d<D>,
    pub bn: BatchNorm<D>,
}

impl<D: Device<f32> + LayerKernels> ConvBnRelu<D> {
    fn new(dev: &D, cin: usize, cout: usize, k: usize, stride: usize, pad: usize) -> Self {
        ConvBnRelu {
            conv: Conv2d::new(dev, cin, cout, k, stride, pad, false),
            bn: BatchNorm::new(dev, cout),
        }
    }

    fn forward<T: Tape<f32, D> + Merge<T>>(
        &mut self,
        x: Tensor4<D, T>,
        train: bool,
    ) -> Tensor4<D, T> {
        self.forward_no_relu(x, train).relu()
    }

    /// conv → batch norm (a residual branch's last layer, activated after the sum).
    fn forward_no_relu<T: Tape<f32, D> + Merge<T>>(
        &mut self,
        x: Tensor4<D, T>,
        train: bool,
    ) -> Tensor4<D, T> {
        self.bn.forward4(self.conv.forward(x), train)
    }

    fn params<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, ParamRef<'a, D>)>) {
        self.conv.params(&format!("{prefix}.conv"), out);
        self.bn.params(&format!("{prefix}.bn"), out);
    }
}

/// The image encoder the configuration asks for (one per model, so variant sizes differ
/// harmlessly).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum ImageEncoder<D: Storage<f32>> {
    Small(SmallCnn<D>),
    ResNet(ResNetEncoder<D>),
}

impl<D: Device<f32> + LayerKernels> ImageEncoder<D> {
    pub fn new(dev: &D, cfg: &OpenCarbonConfig) -> Self {
        let d = cfg.embedding_dim;
        match cfg.image_encoder {
            ImageEncoderKind::Small => {
                ImageEncoder::Small(SmallCnn::new(dev, &cfg.image_widths, d))
            }
            ImageEncoderKind::Resnet => ImageEncoder::ResNet(ResNetEncoder::new(
                dev,
                &cfg.image_widths,
                cfg.image_blocks,
                d,
            )),
        }
    }

    /// The tiles' image embeddings. A `frozen` encoder runs off the tape with its batch
    /// norms in evaluation mode (nothing of it trains, and no gradient flows through it); only
    /// its projection, the replaced classifier, stays on the tape.
    pub fn forward<T: Tape<f32, D> + Merge<T>>(
        &mut self,
        x: Tensor4<D, T>,
        train: bool,
        frozen: bool,
    ) -> Tensor2<D, T> {
        if frozen {
            let (x, tape) = x.split_tape();
            let pooled = self.features(x, false);
            return self.projection().forward(pooled.put_tape(tape));
        }
        let pooled = self.features(x, train);
        self.projection().forward(pooled)
    }

    /// Globally average-pooled features before the projection (N × the last width).
    pub fn features<T: Tape<f32, D> + Merge<T>>(
        &mut self,
        x: Tensor4<D, T>,
        train: bool,
    ) -> Tensor2<D, T> {
        match self {
            ImageEncoder::Small(e) => e.features(x, train),
            ImageEncoder::ResNet(e) => e.features(x, train),
        }
    }

    fn projection(&mut self) -> &mut Linear<D> {
        match self {
            ImageEncoder::Small(e) => &mut e.proj,
            ImageEncoder::ResNet(e) => &mut e.proj,
        }
    }

    /// Every conv + batch norm pair, named as in checkpoints, and the final projection.
    fn named_layers(&mut self) -> (Vec<(String, &mut ConvBnRelu<D>)>, &mut Linear<D>) {
        let mut convs = Vec::new();
        let proj = match self {
            ImageEncoder::Small(e) => {
                for (i, s) in e.stages.iter_mut().enumerate() {
                    convs.push((format!("image.stage{i}"), s));
                }
                convs.push(("image.res_a".into(), &mut e.res_a));
                convs.push(("image.res_b".into(), &mut e.res_b));
                &mut e.proj
            }
            ImageEncoder::ResNet(e) => {
                convs.push(("image.stem".into(), &mut e.stem));
                for (i, b) in e.blocks.iter_mut().enumerate() {
                    convs.push((format!("image.block{i}.a"), &mut b.a));
                    convs.push((format!("image.block{i}.b"), &mut b.b));
                    if let Some(down) = &mut b.down {
                        convs.push((format!("image.block{i}.down"), down));
                    }
                }
                &mut e.proj
            }
        };
        (convs, proj)
    }

    pub fn params<'a>(&'a mut self, out: &mut Vec<(String, ParamRef<'a, D>)>) {
        let (convs, proj) = self.named_layers();
        for (name, c) in convs {
            c.params(&name, out);
        }
        proj.params("image.proj", out);
    }

    pub fn running_stats<'a>(&'a mut self, out: &mut Vec<(String, &'a mut BatchNorm<D>)>) {
        for (name, c) in self.named_layers().0 {
            out.push((format!("{name}.bn"), &mut c.bn));
        }
    }
}

/// The small residual image encoder for CPU runs: three stride-2 stages, a residual block on
/// the last, global average pooling, Linear(width → d).
#[derive(Debug, Clone)]
pub struct SmallCnn<D: Storage<f32>> {
    pub stages: Vec<ConvBnRelu<D>>,
    pub res_a: ConvBnRelu<D>,
    pub res_b: ConvBnRelu<D>,
    pub proj: Linear<D>,
}

impl<D: Device<f32> + LayerKernels> SmallCnn<D> {
    pub fn new(dev: &D, widths: &[usize], dim: usize) -> Self {
        let mut stages = Vec::new();
        let mut cin = 3;
        for &w in widths {
            stages.push(ConvBnRelu::new(dev, cin, w, 3, 2, 1));
            if stages.len() == 1 {
                stages[0].conv.input_grad = false; // its input is the image itself
            }
            cin = w;
        }
        SmallCnn {
            stages,
            res_a: ConvBnRelu::new(dev, cin, cin, 3, 1, 1),
            res_b: ConvBnRelu::new(dev, cin, cin, 3, 1, 1),
            proj: Linear::new(dev, cin, dim),
        }
    }

    /// Pooled features before the projection.
    fn features<T: Tape<f32, D> + Merge<T>>(
        &mut self,
        mut x: Tensor4<D, T>,
        train: bool,
    ) -> Tensor2<D, T> {
        for s in &mut self.stages {
            x = s.forward(x, train);
        }
        let skip = x.retaped::<T>();
        let y = self.res_b.forward(self.res_a.forward(x, train), train);
        global_avg_pool(y + skip)
    }
}

/// ResNet's basic block: relu(bn(conv3×3(relu(bn(conv3×3(x))))) + shortcut(x)), the
/// shortcut a strided 1×1 conv + batch norm when the block changes size, else the identity.
#[derive(Debug, Clone)]
pub struct BasicBlock<D: Storage<f32>> {
    pub a: ConvBnRelu<D>,
    pub b: ConvBnRelu<D>,
    pub down: Option<ConvBnRelu<D>>,
}

impl<D: Device<f32> + LayerKernels> BasicBlock<D> {
    fn new(dev: &D, cin: usize, cout: usize, stride: usize) -> Self {
        BasicBlock {
            a: ConvBnRelu::new(dev, cin, cout, 3, stride, 1),
            b: ConvBnRelu::new(dev, cout, cout, 3, 1, 1),
            down: (stride != 1 || cin != cout)
                .then(|| ConvBnRelu::new(dev, cin, cout, 1, stride, 0)),
        }
    }

    fn forward<T: Tape<f32, D> + Merge<T>>(
        &mut self,
        x: Tensor4<D, T>,
        train: bool,
    ) -> Tensor4<D, T> {
        let shortcut = match &mut self.down {
            Some(down) => down.forward_no_relu(x.retaped::<T>(), train),
            None => x.retaped::<T>(),
        };
        let h = self.a.forward(x, train);
        (self.b.forward_no_relu(h, train) + shortcut).relu()
    }
}

/// The ResNet-18-shaped encoder for 256 px runs (He et al. 2016, as torchvision builds it,
/// without the classifier): conv 7×7 stride 2 → BN → ReLU → max-pool 3×3 stride 2 → one stage
/// per width of `blocks_per_stage` basic blocks (stride 2 entering every stage but the first)
/// → global average pooling → Linear(last width → d). ResNet-18 is widths [64, 128, 256, 512]
/// with 2 blocks per stage.
#[derive(Debug, Clone)]
pub struct ResNetEncoder<D: Storage<f32>> {
    pub stem: ConvBnRelu<D>,
    pub blocks: Vec<BasicBlock<D>>,
    pub proj: Linear<D>,
}

impl<D: Device<f32> + LayerKernels> ResNetEncoder<D> {
    pub fn new(dev: &D, widths: &[usize], blocks_per_stage: usize, dim: usize) -> Self {
        let mut stem = ConvBnRelu::new(dev, 3, widths[0], 7, 2, 3);
        stem.conv.input_grad = false; // its input is the image itself
        let mut blocks = Vec::new();
        let mut cin = widths[0];
        for (stage, &w) in widths.iter().enumerate() {
            for i in 0..blocks_per_stage {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(dev, cin, w, stride));
                cin = w;
            }
        }
        ResNetEncoder {
            stem,
            blocks,
            proj: Linear::new(dev, cin, dim),
        }
    }

    /// Pooled features before the projection (torchvision's input to `fc`).
    pub fn features<T: Tape<f32, D> + Merge<T>>(
        &mut self,
        x: Tensor4<D, T>,
        train: bool,
    ) -> Tensor2<D, T> {
        let mut h = max_pool2d(self.stem.forward(x, train), 3, 2, 1)
            .unwrap_or_else(|e| panic!("max pooling failed: {e:?}"));
        for b in &mut self.blocks {
            h = b.forward(h, train);
        }
        global_avg_pool(h)
    }
}

/// The reference's POI encoder ("SE-CNN"), sized to the raster: conv k7 s3 p3 → BN → ReLU →
/// SE → conv k7 s3 p1 → BN → ReLU → SE → conv k3 s3 p1 → flatten → Linear(→ d).
#[derive(Debug, Clone)]
pub struct PoiEncoder<D: Storage<f32>> {
    pub c1: ConvBnRelu<D>,
    pub se1: Option<SqueezeExcite<D>>,
    pub c2: ConvBnRelu<D>,
    pub se2: Option<SqueezeExcite<D>>,
    pub c3: Conv2d<D>,
    pub proj: Linear<D>,
}

fn conv_out(size: usize, k: usize, s: usize, p: usize) -> usize {
    (size + 2 * p - k) / s + 1
}

impl<D: Device<f32> + LayerKernels> PoiEncoder<D> {
    pub fn new(dev: &D, channels: usize, raster: usize, dim: usize, se: bool) -> Self {
        let s1 = conv_out(raster, 7, 3, 3);
        let s2 = conv_out(s1, 7, 3, 1);
        let s3 = conv_out(s2, 3, 3, 1);
        PoiEncoder {
            c1: ConvBnRelu::new(dev, channels, 32, 7, 3, 3),
            se1: se.then(|| SqueezeExcite::new(dev, 32)),
            c2: ConvBnRelu::new(dev, 32, 32, 7, 3, 1),
            se2: se.then(|| SqueezeExcite::new(dev, 32)),
            c3: Conv2d::new(dev, 32, 1, 3, 3, 1, true),
            proj: Linear::new(dev, s3 * s3, dim),
        }
    }

    /// The first SE block's channel gates (N × 32, row-major) in evaluation mode, or None
    /// without SE: how strongly each channel of the first POI convolution passes.
    pub fn first_se_gates(&mut self, x: &SparseBatch) -> Option<Vec<f32>> {
        let se = self.se1.as_ref()?;
        let h = self
            .c1
            .bn
            .forward4(self.c1.conv.forward_sparse::<NoneTape>(x), false)
            .relu();
        Some(se.forward(h).1.as_vec())
    }

    /// `x`: the tiles' POI rasters, sparse (log1p of counts); the branch starts its own tape.
    pub fn forward<T: Tape<f32, D> + Merge<T>>(
        &mut self,
        x: &SparseBatch,
        train: bool,
    ) -> Tensor2<D, T> {
        let mut h = self
            .c1
            .bn
            .forward4(self.c1.conv.forward_sparse::<T>(x), train)
            .relu();
        if let Some(se) = &self.se1 {
            h = se.forward(h).0;
        }
        h = self.c2.forward(h, train);
        if let Some(se) = &self.se2 {
            h = se.forward(h).0;
        }
        let h = self.c3.forward(h);
        let (n, _, a, b) = *h.shape();
        self.proj.forward(h.reshape_like(&(n, a * b)))
    }
}

/// The neighbourhood module for one modality: the M×M embeddings as a d-channel picture,
/// conv 3×3 → ReLU → conv 3×3 → ReLU → global average → Linear(128 → d).
#[derive(Debug, Clone)]
pub struct NeighbourhoodCnn<D: Storage<f32>> {
    pub c1: Conv2d<D>,
    pub c2: Conv2d<D>,
    pub proj: Linear<D>,
}

impl<D: Device<f32> + LayerKernels> NeighbourhoodCnn<D> {
    pub fn new(dev: &D, dim: usize) -> Self {
        NeighbourhoodCnn {
            c1: Conv2d::new(dev, dim, 64, 3, 1, 1, true),
            c2: Conv2d::new(dev, 64, 128, 3, 1, 1, true),
            proj: Linear::new(dev, 128, dim),
        }
    }

    pub fn forward<T: Tape<f32, D> + Merge<T>>(&self, x: Tensor4<D, T>) -> Tensor2<D, T> {
        let h = self.c2.forward(self.c1.forward(x).relu()).relu();
        self.proj.forward(global_avg_pool(h))
    }
}

/// Image and POI embeddings (U, d) of the distinct tiles, per enabled modality.
pub type Embeddings<D, T> = (Option<Tensor2<D, T>>, Option<Tensor2<D, T>>);

/// What a forward pass returns.
pub struct Forward<D: Storage<f32>, T> {
    /// (B,) predicted log emission.
    pub prediction: Tensor<(usize,), f32, D, T>,
    /// Centre-tile image and POI embeddings (B, d) when both modalities are on (for InfoNCE).
    pub centre_pair: Option<(Tensor2<D, T>, Tensor2<D, T>)>,
    /// Centre fusion weights β (B, 2) [image, POI], when both modalities are on.
    pub modality_weights: Option<Tensor2<D>>,
    /// The centre tiles' grid embedding x_g (B, d): the fused (or single-modality) centre
    /// embedding that GraphSAGE can take as frozen node features.
    pub grid_embedding: Tensor2<D>,
}

#[derive(Debug, Clone)]
pub struct OpenCarbonNet<D: Storage<f32>> {
    pub dim: usize,
    pub k: usize,
    pub inputs: Inputs,
    pub image: Option<ImageEncoder<D>>,
    /// The image encoder's body does not train (`image_training: frozen`).
    pub image_frozen: bool,
    pub poi: Option<PoiEncoder<D>>,
    pub fuse_centre: AggregateAttention<D>,
    pub nb_image: NeighbourhoodCnn<D>,
    pub nb_poi: NeighbourhoodCnn<D>,
    pub fuse_nb: AggregateAttention<D>,
    pub attn_g: crate::nn::layers::TokenAttention<D>,
    pub attn_n: crate::nn::layers::TokenAttention<D>,
    pub attn_c: crate::nn::layers::TokenAttention<D>,
    pub head1: Linear<D>,
    pub head_bn: BatchNorm<D>,
    pub head2: Linear<D>,
}

/// Rows `idx` of `x`, with index `x.rows` meaning a zero row (a missing neighbour).
fn gather_rows<D: Device<f32>, T: Tape<f32, D> + Merge<NoneTape>>(
    x: Tensor2<D, T>,
    idx: &[Option<usize>],
) -> Tensor2<D, T> {
    let (u, d) = *x.shape();
    let dev = x.device().clone();
    let zero: Tensor2<D> = dev.zeros_like(&(1, d));
    let padded = (x, zero).concat_along(Axis::<0>);
    let index: Tensor<(usize,), usize, D> =
        dev.tensor_from_vec(idx.iter().map(|i| i.unwrap_or(u)).collect(), (idx.len(),));
    padded.gather(index)
}

/// Stack two (B, d) tensors into (B, 2, d).
fn stack2<D: Device<f32>, T: Tape<f32, D> + Merge<T>>(
    a: Tensor2<D, T>,
    b: Tensor2<D, T>,
) -> Tensor3<D, T> {
    let (n, d) = *a.shape();
    (a.reshape_like(&(n, 1, d)), b.reshape_like(&(n, 1, d))).concat_along(Axis::<1>)
}

impl<D: Device<f32> + LayerKernels> OpenCarbonNet<D> {
    pub fn new(
        dev: &D,
        cfg: &OpenCarbonConfig,
        inputs: Inputs,
        poi_channels: usize,
        poi_raster: usize,
    ) -> Self {
        let d = cfg.embedding_dim;
        let head_in = if inputs.neighborhood { 2 * d } else { d };
        OpenCarbonNet {
            dim: d,
            k: cfg.neighborhood_k,
            inputs,
            image: inputs.image.then(|| ImageEncoder::new(dev, cfg)),
            image_frozen: cfg.image_training == super::EncoderTraining::Frozen,
            poi: inputs
                .poi
                .then(|| PoiEncoder::new(dev, poi_channels, poi_raster, d, cfg.se)),
            fuse_centre: AggregateAttention::new(dev, d),
            nb_image: NeighbourhoodCnn::new(dev, d),
            nb_poi: NeighbourhoodCnn::new(dev, d),
            fuse_nb: AggregateAttention::new(dev, d),
            attn_g: crate::nn::layers::TokenAttention::new(dev, 2),
            attn_n: crate::nn::layers::TokenAttention::new(dev, 2),
            attn_c: crate::nn::layers::TokenAttention::new(dev, 2),
            head1: Linear::new(dev, head_in, d),
            head_bn: BatchNorm::new(dev, d),
            head2: Linear::new(dev, d, 1),
        }
    }

    /// The half-size of the block of tiles one target needs: k with the neighbourhood
    /// module, 0 without (then only the targets themselves are encoded).
    pub fn block_half_size(&self) -> usize {
        if self.inputs.neighborhood {
            self.k
        } else {
            0
        }
    }

    /// Encode the distinct tiles: (U, d) per enabled modality.
    pub fn encode<T: Tape<f32, D> + Merge<T>>(
        &mut self,
        images: Option<Tensor4<D, T>>,
        pois: Option<&SparseBatch>,
        train: bool,
    ) -> Embeddings<D, T> {
        let xs = match (&mut self.image, images) {
            (Some(enc), Some(x)) => Some(enc.forward(x, train, self.image_frozen)),
            _ => None,
        };
        let xp = match (&mut self.poi, pois) {
            (Some(enc), Some(x)) => Some(enc.forward(x, train)),
            _ => None,
        };
        (xs, xp)
    }

    /// Everything after the encoders, from the distinct tiles' embeddings.
    pub fn head_from_embeddings<T: Tape<f32, D> + Merge<T> + Merge<NoneTape>>(
        &mut self,
        xs: Option<Tensor2<D, T>>,
        xp: Option<Tensor2<D, T>>,
        centres: &[usize],
        blocks: &[Vec<Option<usize>>],
        train: bool,
    ) -> Forward<D, T> {
        let b = centres.len();
        let m = 2 * self.k + 1;
        let d = self.dim;
        let centre_idx: Vec<Option<usize>> = centres.iter().map(|&c| Some(c)).collect();
        let slots: Vec<Option<usize>> = blocks.iter().flatten().copied().collect();

        // The last use of an embedding must carry its tape (the encoders' operations): the
        // neighbourhood path when it is on, else the centre gather.
        let nb_on = self.inputs.neighborhood;
        let split = |x: Option<Tensor2<D, T>>| match x {
            None => (None, None),
            Some(x) if nb_on => (Some(gather_rows(x.retaped::<T>(), &centre_idx)), Some(x)),
            Some(x) => (Some(gather_rows(x, &centre_idx)), None),
        };
        let (xs_c, xs) = split(xs);
        let (xp_c, xp) = split(xp);
        let (x_g, centre_pair, modality_weights) = match (xs_c, xp_c) {
            (Some(s), Some(p)) => {
                let pair = (s.retaped::<T>(), p.retaped::<T>());
                let (fused, beta) = self.fuse_centre.forward(stack2(s, p));
                (fused, Some(pair), Some(beta.retaped::<NoneTape>()))
            }
            (Some(s), None) => (s, None, None),
            (None, Some(p)) => (p, None, None),
            (None, None) => unreachable!("config validation requires at least one modality"),
        };
        let grid_embedding = x_g.retaped::<NoneTape>();

        let hidden = if self.inputs.neighborhood {
            let nb = |x: Tensor2<D, T>, cnn: &NeighbourhoodCnn<D>| {
                let picture = gather_rows(x, &slots)
                    .reshape_like(&(b, m, m, d))
                    .permute::<_, Axes4<0, 3, 1, 2>>();
                cnn.forward(picture)
            };
            let x_ns = xs.map(|x| nb(x, &self.nb_image));
            let x_np = xp.map(|x| nb(x, &self.nb_poi));
            let x_n = match (x_ns, x_np) {
                (Some(s), Some(p)) => self.fuse_nb.forward(stack2(s, p)).0,
                (Some(s), None) => s,
                (None, Some(p)) => p,
                (None, None) => unreachable!(),
            };
            let x_g2 = self.attn_g.forward(x_g.retaped::<T>(), x_g.retaped::<T>()) + x_g;
            let x_n2 = self.attn_n.forward(x_n.retaped::<T>(), x_n.retaped::<T>()) + x_n;
            let x_f = self.attn_c.forward(x_n2.retaped::<T>(), x_g2);
            (x_f, x_n2).concat_along(Axis::<1>)
        } else {
            x_g
        };
        let h = self
            .head_bn
            .forward2(self.head1.forward(hidden).relu(), train);
        let prediction = self.head2.forward(h).reshape_like(&(b,));
        Forward {
            prediction,
            centre_pair,
            modality_weights,
            grid_embedding,
        }
    }

    /// Names and references of every parameter the configuration uses, in a fixed order.
    pub fn params<'a>(&'a mut self, out: &mut Vec<(String, ParamRef<'a, D>)>) {
        if let Some(enc) = &mut self.image {
            enc.params(out);
        }
        if let Some(enc) = &mut self.poi {
            enc.c1.conv.params("poi.c1.conv", out);
            enc.c1.bn.params("poi.c1.bn", out);
            if let Some(se) = &mut enc.se1 {
                se.params("poi.se1", out);
            }
            enc.c2.conv.params("poi.c2.conv", out);
            enc.c2.bn.params("poi.c2.bn", out);
            if let Some(se) = &mut enc.se2 {
                se.params("poi.se2", out);
            }
            enc.c3.params("poi.c3", out);
            enc.proj.params("poi.proj", out);
        }
        let both = self.inputs.image && self.inputs.poi;
        if both {
            self.fuse_centre.params("fuse_centre", out);
        }
        if self.inputs.neighborhood {
            for (name, cnn, on) in [
                ("nb_image", &mut self.nb_image, self.inputs.image),
                ("nb_poi", &mut self.nb_poi, self.inputs.poi),
            ] {
                if on {
                    cnn.c1.params(&format!("{name}.c1"), out);
                    cnn.c2.params(&format!("{name}.c2"), out);
                    cnn.proj.params(&format!("{name}.proj"), out);
                }
            }
            if both {
                self.fuse_nb.params("fuse_nb", out);
            }
            self.attn_g.params("attn_g", out);
            self.attn_n.params("attn_n", out);
            self.attn_c.params("attn_c", out);
        }
        self.head1.params("head1", out);
        self.head_bn.params("head_bn", out);
        self.head2.params("head2", out);
    }

    /// Every batch norm's running statistics, named, for checkpoints.
    pub fn running_stats(&mut self) -> Vec<(String, &mut BatchNorm<D>)> {
        let mut out: Vec<(String, &mut BatchNorm<D>)> = Vec::new();
        if let Some(enc) = &mut self.image {
            enc.running_stats(&mut out);
        }
        if let Some(enc) = &mut self.poi {
            out.push(("poi.c1.bn".into(), &mut enc.c1.bn));
            out.push(("poi.c2.bn".into(), &mut enc.c2.bn));
        }
        out.push(("head_bn".into(), &mut self.head_bn));
        out
    }
}

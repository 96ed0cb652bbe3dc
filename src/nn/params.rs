//! Parameters of run-time-shaped models: a named, ordered list of tensor references that the
//! optimiser and the checkpoint code walk. Adam is ours because dfdx's optimisers need the
//! const-generic `TensorCollection` machinery that run-time-shaped models do not have.

use std::collections::HashMap;
use std::path::Path;

use dfdx::prelude::*;

use super::layers::{AggregateAttention, BatchNorm, Conv2d, Linear, SqueezeExcite, TokenAttention};
use super::{LayerKernels, Tensor1, Tensor4};
use crate::error::{Error, Result};

/// A mutable reference to one parameter tensor, whatever its rank.
pub enum ParamRef<'a, D: Storage<f32>> {
    R1(&'a mut Tensor1<D>),
    R2(&'a mut Tensor<(usize, usize), f32, D>),
    R4(&'a mut Tensor4<D>),
}

impl<D: Device<f32>> ParamRef<'_, D> {
    pub fn values(&self) -> Vec<f32> {
        match self {
            ParamRef::R1(t) => t.as_vec(),
            ParamRef::R2(t) => t.as_vec(),
            ParamRef::R4(t) => t.as_vec(),
        }
    }

    pub fn shape(&self) -> Vec<usize> {
        match self {
            ParamRef::R1(t) => vec![t.shape().0],
            ParamRef::R2(t) => vec![t.shape().0, t.shape().1],
            ParamRef::R4(t) => {
                let s = t.shape();
                vec![s.0, s.1, s.2, s.3]
            }
        }
    }

    /// The gradient of this parameter after a backward pass (zeros when the pass did not
    /// reach it, e.g. a branch an ablation switched off).
    pub fn grad(&self, grads: &mut Gradients<f32, D>) -> std::result::Result<Vec<f32>, D::Err> {
        Ok(match self {
            ParamRef::R1(t) => {
                grads.try_alloc_for(*t)?;
                grads.get(*t).as_vec()
            }
            ParamRef::R2(t) => {
                grads.try_alloc_for(*t)?;
                grads.get(*t).as_vec()
            }
            ParamRef::R4(t) => {
                grads.try_alloc_for(*t)?;
                grads.get(*t).as_vec()
            }
        })
    }

    pub fn set(&mut self, values: &[f32]) {
        match self {
            ParamRef::R1(t) => t.copy_from(values),
            ParamRef::R2(t) => t.copy_from(values),
            ParamRef::R4(t) => t.copy_from(values),
        }
    }
}

impl<D: LayerKernels> ParamRef<'_, D> {
    pub fn device(&self) -> D {
        match self {
            ParamRef::R1(t) => t.device().clone(),
            ParamRef::R2(t) => t.device().clone(),
            ParamRef::R4(t) => t.device().clone(),
        }
    }

    /// The parameter's buffer, for writing, and its gradient's (zeros when the backward
    /// pass did not reach it).
    pub fn buffers<'g>(
        &mut self,
        grads: &'g mut Gradients<f32, D>,
    ) -> std::result::Result<(&mut D::Vec, &'g D::Vec), D::Err> {
        Ok(match self {
            ParamRef::R1(t) => {
                let g = grads.get_or_alloc_mut(&**t)?;
                (t.storage_mut(), g)
            }
            ParamRef::R2(t) => {
                let g = grads.get_or_alloc_mut(&**t)?;
                (t.storage_mut(), g)
            }
            ParamRef::R4(t) => {
                let g = grads.get_or_alloc_mut(&**t)?;
                (t.storage_mut(), g)
            }
        })
    }
}

/// Something with parameters, visited in a fixed order with stable names.
pub trait HasParams<D: Storage<f32>> {
    fn params<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, ParamRef<'a, D>)>);
}

impl<D: Device<f32>> HasParams<D> for Linear<D> {
    fn params<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, ParamRef<'a, D>)>) {
        out.push((format!("{prefix}.weight"), ParamRef::R2(&mut self.weight)));
        out.push((format!("{prefix}.bias"), ParamRef::R1(&mut self.bias)));
    }
}

impl<D: Device<f32> + LayerKernels> HasParams<D> for Conv2d<D> {
    fn params<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, ParamRef<'a, D>)>) {
        out.push((format!("{prefix}.weight"), ParamRef::R4(&mut self.weight)));
        if let Some(b) = &mut self.bias {
            out.push((format!("{prefix}.bias"), ParamRef::R1(b)));
        }
    }
}

impl<D: Device<f32>> HasParams<D> for BatchNorm<D> {
    fn params<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, ParamRef<'a, D>)>) {
        out.push((format!("{prefix}.gamma"), ParamRef::R1(&mut self.gamma)));
        out.push((format!("{prefix}.beta"), ParamRef::R1(&mut self.beta)));
    }
}

impl<D: Device<f32>> HasParams<D> for SqueezeExcite<D> {
    fn params<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, ParamRef<'a, D>)>) {
        self.reduce.params(&format!("{prefix}.reduce"), out);
        self.expand.params(&format!("{prefix}.expand"), out);
    }
}

impl<D: Device<f32>> HasParams<D> for AggregateAttention<D> {
    fn params<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, ParamRef<'a, D>)>) {
        self.proj.params(&format!("{prefix}.proj"), out);
        out.push((format!("{prefix}.v"), ParamRef::R1(&mut self.v)));
    }
}

impl<D: Device<f32>> HasParams<D> for TokenAttention<D> {
    fn params<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, ParamRef<'a, D>)>) {
        for (name, t) in [
            ("wq", &mut self.wq),
            ("bq", &mut self.bq),
            ("wk", &mut self.wk),
            ("bk", &mut self.bk),
            ("wv", &mut self.wv),
            ("bv", &mut self.bv),
        ] {
            out.push((format!("{prefix}.{name}"), ParamRef::R1(t)));
        }
        self.out.params(&format!("{prefix}.out"), out);
    }
}

/// Adam (PyTorch's `torch.optim.Adam`): L2 weight decay added to the gradient, bias-corrected
/// moments. State is kept per parameter position, so the visiting order must not change. The
/// update runs on the parameters' device (`LayerKernels::adam_update`), moments included.
#[derive(Debug, Clone)]
pub struct Adam<D: Storage<f32>> {
    pub lr: f32,
    pub betas: (f32, f32),
    pub eps: f32,
    pub weight_decay: f32,
    /// Clip the gradients to this global norm before each update (PyTorch's
    /// `clip_grad_norm_` followed by the step); None: no clipping.
    pub clip_norm: Option<f32>,
    /// Learning-rate factors by parameter-name prefix, the first match applying (a pretrained
    /// encoder's own rate); a parameter matching none trains at `lr`.
    pub lr_scales: Vec<(String, f32)>,
    step: i32,
    moments: Vec<(D::Vec, D::Vec)>,
}

/// Adam's state on the host: the step count and (first, second) moments per parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamState {
    pub step: i32,
    pub moments: Vec<(Vec<f32>, Vec<f32>)>,
}

/// A device buffer's values on the host: the buffer is lent to a tensor for the copy.
fn host_copy<D: Device<f32>>(
    dev: &D,
    buf: &mut <D as Storage<f32>>::Vec,
) -> std::result::Result<Vec<f32>, D::Err> {
    let n = Storage::<f32>::len(dev, buf);
    let mut t: Tensor1<D> = dev.try_zeros_like(&(n,))?;
    std::mem::swap(t.storage_mut(), buf);
    let values = t.as_vec();
    std::mem::swap(t.storage_mut(), buf);
    Ok(values)
}

/// A new device buffer holding `values`.
fn device_copy<D: Device<f32>>(
    dev: &D,
    values: &[f32],
) -> std::result::Result<<D as Storage<f32>>::Vec, D::Err> {
    let mut t: Tensor1<D> = dev.try_tensor_from_vec(values.to_vec(), (values.len(),))?;
    let mut out = Storage::<f32>::try_alloc_len(dev, 0)?;
    std::mem::swap(t.storage_mut(), &mut out);
    Ok(out)
}

/// The constants of one Adam step (`AdamStep` in nn/cuda/kernels.cu).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct AdamStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    /// Bias corrections 1 − β₁ᵗ and 1 − β₂ᵗ.
    pub correction1: f32,
    pub correction2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// The gradient's factor from clipping by global norm (1 without clipping; 1·g == g
    /// exactly, so unclipped runs are unchanged).
    pub grad_scale: f32,
}

impl AdamStep {
    /// One Adam update of `w` in place from gradient `g`, moments `m` and `v` (the CPU
    /// kernel, and the reference for the CUDA one); Σ g² is added to `norm2` if given.
    pub fn apply(
        &self,
        w: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        mut norm2: Option<&mut f64>,
    ) {
        let (b1, b2) = (self.beta1, self.beta2);
        for i in 0..w.len() {
            if let Some(n) = norm2.as_deref_mut() {
                *n += (g[i] as f64).powi(2);
            }
            let gi = self.grad_scale * g[i] + self.weight_decay * w[i];
            m[i] = b1 * m[i] + (1.0 - b1) * gi;
            v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
            w[i] -=
                self.lr * (m[i] / self.correction1) / ((v[i] / self.correction2).sqrt() + self.eps);
        }
    }
}

impl<D: LayerKernels> Adam<D> {
    pub fn new(lr: f32, weight_decay: f32) -> Adam<D> {
        Adam {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay,
            clip_norm: None,
            lr_scales: Vec::new(),
            step: 0,
            moments: Vec::new(),
        }
    }

    /// The step count and both moments of every parameter, copied to the host (a resume
    /// checkpoint). Empty moments before the first step.
    pub fn export_state(&mut self, dev: &D) -> std::result::Result<AdamState, D::Err>
    where
        D: Device<f32>,
    {
        let mut moments = Vec::with_capacity(self.moments.len());
        for (m, v) in &mut self.moments {
            moments.push((host_copy(dev, m)?, host_copy(dev, v)?));
        }
        Ok(AdamState {
            step: self.step,
            moments,
        })
    }

    /// Continue from an exported state (same parameters in the same order).
    pub fn import_state(&mut self, dev: &D, state: &AdamState) -> std::result::Result<(), D::Err>
    where
        D: Device<f32>,
    {
        self.step = state.step;
        self.moments.clear();
        for (m, v) in &state.moments {
            self.moments
                .push((device_copy(dev, m)?, device_copy(dev, v)?));
        }
        Ok(())
    }

    /// Back-propagate `loss` and update `params` from its gradients; the global gradient
    /// norm when `want_norm` (see `step`).
    pub fn minimise(
        &mut self,
        loss: Tensor<(), f32, D, OwnedTape<f32, D>>,
        params: &mut [(String, ParamRef<'_, D>)],
        want_norm: bool,
    ) -> Result<Option<f32>>
    where
        D: Device<f32>,
    {
        let mut grads = loss.backward();
        self.step(params, &mut grads, want_norm)
            .map_err(|e| Error::Model(format!("optimiser: {e:?}")))
    }

    /// One update of every parameter from `grads`; with `want_norm`, also the global
    /// gradient norm (on a GPU that costs a copy to the host per parameter, so callers ask
    /// only when they record it).
    pub fn step(
        &mut self,
        params: &mut [(String, ParamRef<'_, D>)],
        grads: &mut Gradients<f32, D>,
        want_norm: bool,
    ) -> std::result::Result<Option<f32>, D::Err>
    where
        D: Device<f32>,
    {
        self.step += 1;
        let (b1, b2) = self.betas;
        // Clipping needs the norm before any update: one pass over the gradients first (a
        // host copy of each; with clipping on, the norm is known for every step).
        let mut known_norm = None;
        let mut grad_scale = 1.0f32;
        if let Some(max_norm) = self.clip_norm {
            let mut norm2 = 0.0f64;
            for (_, p) in params.iter() {
                norm2 += p
                    .grad(grads)?
                    .iter()
                    .map(|g| (*g as f64).powi(2))
                    .sum::<f64>();
            }
            let norm = norm2.sqrt();
            // PyTorch's rule: scale by max_norm / (norm + 1e-6) when that is below 1.
            let coef = max_norm as f64 / (norm + 1e-6);
            if coef < 1.0 {
                grad_scale = coef as f32;
            }
            known_norm = Some(norm as f32);
        }
        let constants = AdamStep {
            lr: self.lr,
            beta1: b1,
            beta2: b2,
            correction1: 1.0 - b1.powi(self.step),
            correction2: 1.0 - b2.powi(self.step),
            eps: self.eps,
            weight_decay: self.weight_decay,
            grad_scale,
        };
        let mut norm2 = 0.0f64;
        let want_norm = want_norm && known_norm.is_none();
        for (k, (name, p)) in params.iter_mut().enumerate() {
            let scaled = self
                .lr_scales
                .iter()
                .find(|(prefix, _)| name.starts_with(prefix.as_str()))
                .map(|&(_, factor)| AdamStep {
                    lr: constants.lr * factor,
                    ..constants
                });
            let constants = scaled.as_ref().unwrap_or(&constants);
            let dev = p.device();
            let (w, g) = p.buffers(grads)?;
            if self.moments.len() <= k {
                let n = Storage::<f32>::len(&dev, w);
                self.moments.push((
                    Storage::<f32>::try_alloc_len(&dev, n)?,
                    Storage::<f32>::try_alloc_len(&dev, n)?,
                ));
            }
            let (m, v) = &mut self.moments[k];
            dev.adam_update(w, g, m, v, constants, want_norm.then_some(&mut norm2))?;
        }
        Ok(known_norm.or(want_norm.then(|| norm2.sqrt() as f32)))
    }
}

/// Save parameters (and extra named vectors such as batch-norm running statistics) as
/// safetensors, written atomically.
pub fn save_safetensors<D: Device<f32>>(
    path: &Path,
    params: &[(String, ParamRef<'_, D>)],
    extra: &[(String, Vec<f32>)],
) -> Result<()> {
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = params
        .iter()
        .map(|(name, p)| (name.clone(), p.shape(), p.values()))
        .chain(
            extra
                .iter()
                .map(|(name, v)| (name.clone(), vec![v.len()], v.clone())),
        )
        .collect();
    let bytes = f32_safetensors(&tensors, &Default::default())?;
    crate::track::atomic_write(path, &bytes)
}

/// f32 `tensors` (name, shape, values) as safetensors bytes, with `metadata` when it has any
/// (`serialize_with_metadata`).
pub fn f32_safetensors(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let owned: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, ::safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&owned)
        .map(|((n, shape, _), bytes)| {
            ::safetensors::tensor::TensorView::new(::safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Internal(format!("tensor {n}: {e:?}")))
        })
        .collect::<Result<_>>()?;
    if metadata.is_empty() {
        return ::safetensors::serialize(views, &None)
            .map_err(|e| Error::Internal(format!("safetensors: {e:?}")));
    }
    serialize_with_metadata(views, metadata)
}

/// `views` as safetensors bytes with `metadata`, the same bytes on every run: the
/// safetensors crate orders metadata as its hash map iterates (differently in every
/// process), so the header is written again with the metadata's keys sorted.
fn serialize_with_metadata(
    views: Vec<(String, ::safetensors::tensor::TensorView<'_>)>,
    metadata: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let failed = |what: String| Error::Internal(format!("safetensors: {what}"));
    let plain = ::safetensors::serialize(views, &None).map_err(|e| failed(format!("{e:?}")))?;
    let n = u64::from_le_bytes(plain[..8].try_into().map_err(|_| failed("short".into()))?) as usize;
    let tensors: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&plain[8..8 + n]).map_err(|e| failed(e.to_string()))?;
    let json = |v: serde_json::Value| v.to_string();
    let sorted: serde_json::Map<String, serde_json::Value> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    // Written key by key: a `Map` may keep insertion order (serde_json's preserve_order).
    let mut header = String::from("{\"__metadata__\":{");
    for (i, (key, value)) in sorted.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        header.push_str(&format!(
            "{comma}{}:{}",
            json(key.as_str().into()),
            json(value.clone())
        ));
    }
    header.push('}');
    for (name, info) in &tensors {
        header.push_str(&format!(
            ",{}:{}",
            json(name.as_str().into()),
            json(info.clone())
        ));
    }
    header.push('}');
    // Padded with spaces to a multiple of 8 bytes, as the crate pads its own header.
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&plain[8 + n..]);
    Ok(out)
}

/// Stored tensors by name: (shape, values).
pub type StoredTensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Read a safetensors file into name → (shape, values).
pub fn load_safetensors(path: &Path) -> Result<StoredTensors> {
    load_safetensors_with_metadata(path).map(|(tensors, _, _)| tensors)
}

/// Read a safetensors file: its tensors, its header's metadata and its bytes' content hash
/// (`track::content_hash`).
pub fn load_safetensors_with_metadata(
    path: &Path,
) -> Result<(StoredTensors, HashMap<String, String>, String)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let not_safetensors = |e: ::safetensors::SafeTensorError| {
        Error::dataset(path, None, format!("not a safetensors checkpoint: {e:?}"))
    };
    let st = ::safetensors::SafeTensors::deserialize(&bytes).map_err(not_safetensors)?;
    let (_, header) = ::safetensors::SafeTensors::read_metadata(&bytes).map_err(not_safetensors)?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != ::safetensors::Dtype::F32 {
            return Err(Error::dataset(
                path,
                None,
                format!("tensor `{name}` is {:?}, expected F32", view.dtype()),
            ));
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(name, (view.shape().to_vec(), values));
    }
    let metadata = header.metadata().clone().unwrap_or_default();
    Ok((out, metadata, crate::track::content_hash(&bytes)))
}

/// Set every parameter from a checkpoint, checking names and shapes.
pub fn restore<D: Device<f32>>(
    path: &Path,
    params: &mut [(String, ParamRef<'_, D>)],
    stored: &StoredTensors,
) -> Result<()> {
    for (name, p) in params.iter_mut() {
        restore_param(path, name, p, stored)?;
    }
    Ok(())
}

/// Set parameter `name` from `stored`, which must hold it with its shape and finite values.
pub fn restore_param<D: Device<f32>>(
    path: &Path,
    name: &str,
    p: &mut ParamRef<'_, D>,
    stored: &StoredTensors,
) -> Result<()> {
    let (shape, values) = stored
        .get(name)
        .ok_or_else(|| Error::dataset(path, None, format!("checkpoint has no tensor `{name}`")))?;
    if *shape != p.shape() {
        return Err(Error::dataset(
            path,
            None,
            format!(
                "tensor `{name}` has shape {shape:?}, the model expects {:?}",
                p.shape()
            ),
        ));
    }
    // A NaN or an infinity in one weight can make every prediction the same finite number
    // (a softmax over it, a masked branch): refuse it here rather than trust the output.
    let bad = values.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        return Err(Error::dataset(
            path,
            None,
            format!(
                "tensor `{name}` holds {bad} non-finite value(s) (NaN or infinite): not a checkpoint to predict with"
            ),
        ));
    }
    p.set(values);
    Ok(())
}

/// Set the running statistics of every batch norm of `stats` (named `<layer>.bn`) from
/// `<name>.running_mean` and `<name>.running_var` of `stored`.
pub fn restore_running_stats<D: Device<f32>>(
    path: &Path,
    stats: &mut [(String, &mut BatchNorm<D>)],
    stored: &StoredTensors,
) -> Result<()> {
    for (name, bn) in stats.iter_mut() {
        for (suffix, dst) in [
            ("running_mean", &mut bn.running_mean),
            ("running_var", &mut bn.running_var),
        ] {
            let key = format!("{name}.{suffix}");
            let (_, values) = stored.get(&key).ok_or_else(|| {
                Error::dataset(path, None, format!("checkpoint has no tensor `{key}`"))
            })?;
            if values.len() != dst.shape().0 {
                return Err(Error::dataset(
                    path,
                    None,
                    format!(
                        "`{key}` holds {} values, the model has {} channels",
                        values.len(),
                        dst.shape().0
                    ),
                ));
            }
            let negative_variance = suffix == "running_var" && values.iter().any(|v| *v < 0.0);
            if values.iter().any(|v| !v.is_finite()) || negative_variance {
                return Err(Error::dataset(
                    path,
                    None,
                    format!("`{key}` holds a non-finite value or a negative variance"),
                ));
            }
            dst.copy_from(values);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_minimises_a_quadratic_and_matches_the_update_rule() {
        let dev = Cpu::default();
        let mut w: Tensor1<Cpu> = dev.tensor_from_vec(vec![1.0, -2.0], (2,));
        let mut opt = Adam::new(0.1, 0.0);
        // First step of Adam moves every coordinate by lr·sign(g) (bias correction cancels).
        let loss = w.leaky_trace().square().sum();
        let mut g = loss.backward();
        let mut params = vec![("w".to_string(), ParamRef::R1(&mut w))];
        let norm = opt.step(&mut params, &mut g, true).unwrap().unwrap();
        assert!((norm - (4.0f32 + 16.0).sqrt()).abs() < 1e-5);
        drop(params);
        let after = w.as_vec();
        assert!(
            (after[0] - 0.9).abs() < 1e-6 && (after[1] + 1.9).abs() < 1e-6,
            "{after:?}"
        );
        for _ in 0..300 {
            let loss = w.leaky_trace().square().sum();
            let mut g = loss.backward();
            let mut params = vec![("w".to_string(), ParamRef::R1(&mut w))];
            opt.step(&mut params, &mut g, false).unwrap();
        }
        assert!(
            w.as_vec().iter().all(|v| v.abs() < 0.05),
            "{:?}",
            w.as_vec()
        );
    }

    #[test]
    fn checkpoint_round_trip() {
        let dev = Cpu::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("best.safetensors");
        let mut lin = Linear::new(&dev, 3, 2);
        let mut ps = Vec::new();
        lin.params("head", &mut ps);
        save_safetensors(&path, &ps, &[("bn.running_mean".into(), vec![0.5, 1.5])]).unwrap();
        let stored = load_safetensors(&path).unwrap();
        assert_eq!(stored["bn.running_mean"].1, vec![0.5, 1.5]);
        let mut other = Linear::new(&dev, 3, 2);
        let mut ps2 = Vec::new();
        other.params("head", &mut ps2);
        restore(&path, &mut ps2, &stored).unwrap();
        drop(ps2);
        drop(ps);
        assert_eq!(other.weight.as_vec(), lin.weight.as_vec());
    }
}

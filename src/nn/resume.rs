//! Resume checkpoints of the shared learner: everything a training needs to continue exactly
//! where it stopped (parameters, batch-norm statistics, Adam's moments and step count, the
//! moving average, the best weights so far, the early-stopping counters, the model's own
//! state such as its random stream), in one safetensors file written atomically, with a key
//! (job configuration and build) that must match for the checkpoint to be used.

use std::collections::HashMap;
use std::path::Path;

use super::params::AdamState;
use crate::error::{Error, Result};

/// Every parameter and running statistic of a model, copied (what a resume point and the
/// learner's best and EMA weights hold; `learner` captures and restores it).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub params: Vec<Vec<f32>>,
    pub running: Vec<(Vec<f32>, Vec<f32>)>,
}

/// The checkpoint's file name inside the resume directory.
pub const STATE_FILE: &str = "state.safetensors";

/// The learner's state after a completed epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnerState {
    /// The job configuration and build this state belongs to.
    pub key: String,
    /// Epochs completed (training continues with epoch `epochs_done`, counted from 0).
    pub epochs_done: usize,
    pub non_improving: usize,
    pub validations: usize,
    pub current: Snapshot,
    pub adam: AdamState,
    /// The moving average and its step count, when on.
    pub ema: Option<(Snapshot, u64)>,
    /// The best validation score, its epoch and weights.
    pub best: Option<(f64, usize, Snapshot)>,
    /// The model's own state (`TrainSteps::resume_state`).
    pub model: serde_json::Value,
}

fn put(out: &mut Vec<(String, Vec<f32>)>, prefix: &str, s: &Snapshot) {
    for (i, p) in s.params.iter().enumerate() {
        out.push((format!("{prefix}/param/{i}"), p.clone()));
    }
    for (i, (m, v)) in s.running.iter().enumerate() {
        out.push((format!("{prefix}/running/{i}/mean"), m.clone()));
        out.push((format!("{prefix}/running/{i}/var"), v.clone()));
    }
}

fn take(
    tensors: &mut HashMap<String, Vec<f32>>,
    prefix: &str,
    params: usize,
    running: usize,
) -> Result<Snapshot> {
    let mut get = |name: String| {
        tensors
            .remove(&name)
            .ok_or_else(|| Error::Internal(format!("resume checkpoint lacks `{name}`")))
    };
    let params = (0..params)
        .map(|i| get(format!("{prefix}/param/{i}")))
        .collect::<Result<_>>()?;
    let running = (0..running)
        .map(|i| {
            Ok((
                get(format!("{prefix}/running/{i}/mean"))?,
                get(format!("{prefix}/running/{i}/var"))?,
            ))
        })
        .collect::<Result<_>>()?;
    Ok(Snapshot { params, running })
}

/// Write `state` to `dir/state.safetensors` atomically (a reader sees the old or the new file).
pub fn save(dir: &Path, state: &LearnerState) -> Result<()> {
    let mut tensors: Vec<(String, Vec<f32>)> = Vec::new();
    put(&mut tensors, "current", &state.current);
    for (i, (m, v)) in state.adam.moments.iter().enumerate() {
        tensors.push((format!("adam/{i}/m"), m.clone()));
        tensors.push((format!("adam/{i}/v"), v.clone()));
    }
    if let Some((avg, _)) = &state.ema {
        put(&mut tensors, "ema", avg);
    }
    if let Some((_, _, snap)) = &state.best {
        put(&mut tensors, "best", snap);
    }
    let meta = serde_json::json!({
        "key": state.key,
        "epochs_done": state.epochs_done,
        "non_improving": state.non_improving,
        "validations": state.validations,
        "params": state.current.params.len(),
        "running": state.current.running.len(),
        "adam_step": state.adam.step,
        "adam_moments": state.adam.moments.len(),
        "ema_steps": state.ema.as_ref().map(|(_, n)| *n),
        // The score's bits, so it comes back exactly.
        "best": state.best.as_ref().map(|(score, epoch, _)| (score.to_bits(), *epoch)),
        "model": state.model,
    });
    let bytes: Vec<(String, Vec<u8>, usize)> = tensors
        .iter()
        .map(|(n, v)| {
            (
                n.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                v.len(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(n, b, len)| {
            ::safetensors::tensor::TensorView::new(::safetensors::Dtype::F32, vec![*len], b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Internal(format!("resume tensor {n}: {e:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([("learner".to_string(), meta.to_string())]);
    let file = ::safetensors::serialize(views, &Some(metadata))
        .map_err(|e| Error::Internal(format!("resume checkpoint: {e:?}")))?;
    crate::track::atomic_write(&dir.join(STATE_FILE), &file)
}

/// Read the checkpoint in `dir`: Ok(None) when there is none.
pub fn load(dir: &Path) -> Result<Option<LearnerState>> {
    let path = dir.join(STATE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let bad = |what: String| Error::dataset(&path, None, what);
    let (_, header) = ::safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a resume checkpoint: {e:?}")))?;
    let meta: serde_json::Value = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("learner"))
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| bad("no learner metadata".into()))?;
    let st = ::safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a resume checkpoint: {e:?}")))?;
    let mut tensors: HashMap<String, Vec<f32>> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let v = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, v)
        })
        .collect();
    let field = |name: &str| {
        meta.get(name)
            .ok_or_else(|| bad(format!("learner metadata lacks `{name}`")))
    };
    let count = |name: &str| -> Result<usize> {
        field(name)?
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| bad(format!("`{name}` is not a count")))
    };
    let (params, running) = (count("params")?, count("running")?);
    let current = take(&mut tensors, "current", params, running)?;
    let moments = (0..count("adam_moments")?)
        .map(|i| {
            let mut get = |n: String| {
                tensors
                    .remove(&n)
                    .ok_or_else(|| bad(format!("lacks `{n}`")))
            };
            Ok((get(format!("adam/{i}/m"))?, get(format!("adam/{i}/v"))?))
        })
        .collect::<Result<_>>()?;
    let ema = match field("ema_steps")?.as_u64() {
        Some(n) => Some((take(&mut tensors, "ema", params, running)?, n)),
        None => None,
    };
    let best = match field("best")?.as_array() {
        Some(pair) if pair.len() == 2 => {
            let bits = pair[0]
                .as_u64()
                .ok_or_else(|| bad("bad best score".into()))?;
            let epoch = pair[1]
                .as_u64()
                .ok_or_else(|| bad("bad best epoch".into()))?;
            Some((
                f64::from_bits(bits),
                epoch as usize,
                take(&mut tensors, "best", params, running)?,
            ))
        }
        _ => None,
    };
    Ok(Some(LearnerState {
        key: field("key")?.as_str().unwrap_or_default().to_string(),
        epochs_done: count("epochs_done")?,
        non_improving: count("non_improving")?,
        validations: count("validations")?,
        current,
        adam: AdamState {
            step: field("adam_step")?.as_i64().unwrap_or(0) as i32,
            moments,
        },
        ema,
        best,
        model: field("model")?.clone(),
    }))
}

/// What a model with a random stream and a sample order needs to resume exactly: the
/// stream's position (its seed is the job's) and the order, under `order_key`.
pub fn stream_state(
    rng: &rand_chacha::ChaCha8Rng,
    order_key: &str,
    order: &[(usize, usize)],
) -> serde_json::Value {
    serde_json::json!({
        "rng_word_pos": rng.get_word_pos().to_string(),
        order_key: order,
    })
}

/// Take back `stream_state`: `rng` moved to its position, and the order returned; `who`
/// names the model in the error of a malformed state.
pub fn restore_stream(
    state: &serde_json::Value,
    rng: &mut rand_chacha::ChaCha8Rng,
    order_key: &str,
    who: &str,
) -> Result<Vec<(usize, usize)>> {
    let bad = || Error::Model(format!("resume: {who}'s state is malformed"));
    let pos: u128 = state["rng_word_pos"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let order = serde_json::from_value(state[order_key].clone()).map_err(|_| bad())?;
    rng.set_word_pos(pos);
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_comes_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let snap = |x: f32| Snapshot {
            params: vec![vec![x, -x, f32::MIN_POSITIVE], vec![x * 3.0]],
            running: vec![(vec![x], vec![x + 1.0])],
        };
        let state = LearnerState {
            key: "job abc, build 123".into(),
            epochs_done: 7,
            non_improving: 2,
            validations: 3,
            current: snap(0.1),
            adam: AdamState {
                step: 42,
                moments: vec![
                    (vec![1e-9, 2.0, 3.0], vec![4.0, 5.0, 6.0]),
                    (vec![7.0], vec![8.0]),
                ],
            },
            ema: Some((snap(0.2), 40)),
            best: Some((0.123_456_789_012_345_67, 6, snap(0.3))),
            model: serde_json::json!({"rng_word_pos": "12345678901234567890", "order": [[0, 1]]}),
        };
        assert_eq!(load(dir.path()).unwrap(), None);
        save(dir.path(), &state).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(state.clone()));
        let plain = LearnerState {
            ema: None,
            best: None,
            ..state
        };
        save(dir.path(), &plain).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(plain));
    }
}

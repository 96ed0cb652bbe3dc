//! Seeded samplers in an experiment's model entries, for searches beyond grids:
//!
//! ```yaml
//! alpha: {log_uniform: [1.0e-4, 1.0e-1], n: 8, seed: 0}
//! lr: {uniform: [0.001, 0.01], n: 4}
//! hidden: {int_uniform: [16, 128], n: 4, seed: 3}
//! aggregator: {choice: [mean, max_pool], n: 2}
//! ```
//!
//! A sampler stands for its `n` values, which then expand like a list of alternatives. Value i
//! depends only on (seed, i), so raising `n` keeps the earlier values, and with them their
//! jobs' run ids and finished results.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_yaml::{Mapping, Value};

const KINDS: [&str; 4] = ["log_uniform", "uniform", "int_uniform", "choice"];

/// Whether `map` is a sampler (it names one of the sampler kinds).
pub fn is_sampler(map: &Mapping) -> bool {
    KINDS.iter().any(|k| map.contains_key(*k))
}

/// The stream of value i of a sampler seeded with `seed`: independent of every other i.
fn uniform01(seed: u64, i: u64) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(i);
    rng.gen::<f64>()
}

fn bounds(v: &Value, kind: &str) -> Result<(f64, f64), String> {
    let pair = v
        .as_sequence()
        .filter(|s| s.len() == 2)
        .and_then(|s| Some((s[0].as_f64()?, s[1].as_f64()?)));
    match pair {
        Some((lo, hi)) if lo.is_finite() && hi.is_finite() && lo < hi => Ok((lo, hi)),
        _ => Err(format!("{kind}: expected [low, high] with low < high")),
    }
}

/// The `n` values a sampler stands for, or why it is malformed.
pub fn sample(map: &Mapping) -> Result<Vec<Value>, String> {
    let kinds: Vec<&str> = KINDS
        .iter()
        .copied()
        .filter(|k| map.contains_key(*k))
        .collect();
    if kinds.len() != 1 {
        return Err(format!(
            "a sampler names exactly one of {}",
            KINDS.join(", ")
        ));
    }
    let kind = kinds[0];
    for key in map.keys() {
        let key = key.as_str().unwrap_or("?");
        if key != kind && key != "n" && key != "seed" {
            return Err(format!(
                "unknown sampler field `{key}` (expected {kind}, n, seed)"
            ));
        }
    }
    let n = map
        .get("n")
        .and_then(Value::as_u64)
        .filter(|n| (1..=super::MAX_JOBS as u64).contains(n))
        .ok_or_else(|| {
            format!(
                "{kind}: `n` must be a count of values, 1..{}",
                super::MAX_JOBS
            )
        })?;
    let seed = match map.get("seed") {
        None => 0,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("{kind}: `seed` must be a non-negative integer"))?,
    };
    let spec = &map[kind];
    let draw = |i: u64| uniform01(seed, i);
    let values: Vec<Value> = match kind {
        "log_uniform" => {
            let (lo, hi) = bounds(spec, kind)?;
            if lo <= 0.0 {
                return Err("log_uniform: the bounds must be > 0".into());
            }
            (0..n)
                .map(|i| Value::from((lo.ln() + draw(i) * (hi.ln() - lo.ln())).exp()))
                .collect()
        }
        "uniform" => {
            let (lo, hi) = bounds(spec, kind)?;
            (0..n)
                .map(|i| Value::from(lo + draw(i) * (hi - lo)))
                .collect()
        }
        "int_uniform" => {
            let pair = spec
                .as_sequence()
                .filter(|s| s.len() == 2)
                .and_then(|s| Some((s[0].as_i64()?, s[1].as_i64()?)))
                .filter(|(lo, hi)| lo <= hi)
                .ok_or("int_uniform: expected [low, high] integers with low <= high")?;
            let span = (pair.1 - pair.0 + 1) as f64;
            (0..n)
                .map(|i| Value::from(pair.0 + ((draw(i) * span) as i64).min(pair.1 - pair.0)))
                .collect()
        }
        _ => {
            let items = spec
                .as_sequence()
                .filter(|s| !s.is_empty())
                .ok_or("choice: expected a non-empty list")?;
            (0..n)
                .map(|i| {
                    items[((draw(i) * items.len() as f64) as usize).min(items.len() - 1)].clone()
                })
                .collect()
        }
    };
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(yaml: &str) -> Mapping {
        serde_yaml::from_str(yaml).unwrap()
    }

    /// Value i depends only on (seed, i): raising n keeps the first values; another seed
    /// gives others; values stay in range (log-uniform: spread over the decades).
    #[test]
    fn values_depend_only_on_seed_and_index() {
        let four = sample(&sampler("{log_uniform: [1.0e-4, 1.0e-1], n: 4, seed: 7}")).unwrap();
        let eight = sample(&sampler("{log_uniform: [1.0e-4, 1.0e-1], n: 8, seed: 7}")).unwrap();
        assert_eq!(four[..], eight[..4]);
        let other = sample(&sampler("{log_uniform: [1.0e-4, 1.0e-1], n: 4, seed: 8}")).unwrap();
        assert_ne!(four, other);
        let many = sample(&sampler("{log_uniform: [1.0e-4, 1.0e-1], n: 400}")).unwrap();
        let logs: Vec<f64> = many.iter().map(|v| v.as_f64().unwrap().log10()).collect();
        assert!(logs.iter().all(|l| (-4.0..=-1.0).contains(l)));
        let below = logs.iter().filter(|l| **l < -2.5).count();
        assert!(
            (150..=250).contains(&below),
            "half the draws below 10^-2.5: {below}"
        );
        let ints = sample(&sampler("{int_uniform: [2, 4], n: 60}")).unwrap();
        for k in 2..=4 {
            assert!(
                ints.iter().any(|v| v.as_i64() == Some(k)),
                "{k} never drawn"
            );
        }
        assert!(ints.iter().all(|v| (2..=4).contains(&v.as_i64().unwrap())));
        let picks = sample(&sampler("{choice: [mean, max_pool], n: 3}")).unwrap();
        assert!(picks.iter().all(|v| v == "mean" || v == "max_pool"));
    }

    #[test]
    fn malformed_samplers_say_why() {
        for (yaml, why) in [
            ("{uniform: [1, 0], n: 2}", "low < high"),
            ("{log_uniform: [0, 1], n: 2}", "> 0"),
            ("{uniform: [0, 1]}", "`n`"),
            (
                "{uniform: [0, 1], n: 2, sed: 1}",
                "unknown sampler field `sed`",
            ),
            ("{choice: [], n: 2}", "non-empty"),
            ("{uniform: [0, 1], choice: [1], n: 2}", "exactly one"),
        ] {
            let e = sample(&sampler(yaml)).unwrap_err();
            assert!(e.contains(why), "{yaml}: {e}");
        }
    }
}

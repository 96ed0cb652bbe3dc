//! Regression metrics on the log target: R², RMSE, MAE, MAPE (a fraction, as scikit-learn's
//! `mean_absolute_percentage_error`) and Spearman rank correlation (average ranks for ties).

use serde::{Deserialize, Serialize};

/// Every field but `n` reads as NaN when absent (a metrics.json written before the metric
/// existed) or null (serde_json writes a NaN as null).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub n: usize,
    #[serde(default = "missing", deserialize_with = "nan_if_null")]
    pub r2: f64,
    #[serde(default = "missing", deserialize_with = "nan_if_null")]
    pub rmse: f64,
    #[serde(default = "missing", deserialize_with = "nan_if_null")]
    pub mae: f64,
    #[serde(default = "missing", deserialize_with = "nan_if_null")]
    pub mape: f64,
    #[serde(default = "missing", deserialize_with = "nan_if_null")]
    pub spearman: f64,
}

fn missing() -> f64 {
    f64::NAN
}

fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Option::<f64>::deserialize(d).map(|v| v.unwrap_or(f64::NAN))
}

pub const METRIC_NAMES: [&str; 5] = ["r2", "rmse", "mae", "mape", "spearman"];

impl Metrics {
    pub fn compute(y_true: &[f64], y_pred: &[f64]) -> Metrics {
        assert_eq!(y_true.len(), y_pred.len(), "metrics need paired values");
        Metrics {
            n: y_true.len(),
            r2: r2(y_true, y_pred),
            rmse: rmse(y_true, y_pred),
            mae: mae(y_true, y_pred),
            mape: mape(y_true, y_pred),
            spearman: spearman(y_true, y_pred),
        }
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "r2" => Some(self.r2),
            "rmse" => Some(self.rmse),
            "mae" => Some(self.mae),
            "mape" => Some(self.mape),
            "spearman" => Some(self.spearman),
            _ => None,
        }
    }
}

/// Linear-interpolation quantile of sorted data (numpy's default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

pub fn r2(y: &[f64], p: &[f64]) -> f64 {
    let m = mean(y);
    let ss_res: f64 = y.iter().zip(p).map(|(a, b)| (a - b).powi(2)).sum();
    let ss_tot: f64 = y.iter().map(|a| (a - m).powi(2)).sum();
    if ss_tot == 0.0 {
        // scikit-learn's convention for a constant target.
        return if ss_res == 0.0 { 1.0 } else { 0.0 };
    }
    1.0 - ss_res / ss_tot
}

pub fn rmse(y: &[f64], p: &[f64]) -> f64 {
    (y.iter().zip(p).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / y.len() as f64).sqrt()
}

pub fn mae(y: &[f64], p: &[f64]) -> f64 {
    y.iter().zip(p).map(|(a, b)| (a - b).abs()).sum::<f64>() / y.len() as f64
}

pub fn mape(y: &[f64], p: &[f64]) -> f64 {
    y.iter()
        .zip(p)
        .map(|(a, b)| (a - b).abs() / a.abs().max(f64::EPSILON))
        .sum::<f64>()
        / y.len() as f64
}

/// Ranks 1..n with ties given their average rank.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            r[idx[k]] = avg;
        }
        i = j + 1;
    }
    r
}

pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let (ma, mb) = (mean(a), mean(b));
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture() -> (Vec<f64>, Vec<f64>, serde_json::Value) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oracle");
        let mut rdr = csv::Reader::from_path(dir.join("metrics.csv")).unwrap();
        let (mut y, mut p) = (vec![], vec![]);
        for rec in rdr.records() {
            let rec = rec.unwrap();
            y.push(rec[0].parse().unwrap());
            p.push(rec[1].parse().unwrap());
        }
        let expected = serde_json::from_str(
            &std::fs::read_to_string(dir.join("metrics_expected.json")).unwrap(),
        )
        .unwrap();
        (y, p, expected)
    }

    #[test]
    fn matches_scikit_learn_and_scipy_on_the_fixture() {
        let (y, p, e) = fixture();
        let m = Metrics::compute(&y, &p);
        for name in METRIC_NAMES {
            let want = e[name].as_f64().unwrap();
            let got = m.get(name).unwrap();
            assert!(
                (got - want).abs() < 1e-9,
                "{name}: got {got}, scikit-learn/scipy {want}"
            );
        }
    }

    #[test]
    fn perfect_prediction() {
        let y = [1.0, 2.0, 3.0];
        let m = Metrics::compute(&y, &y);
        assert_eq!(
            (m.r2, m.rmse, m.mae, m.mape, m.spearman),
            (1.0, 0.0, 0.0, 0.0, 1.0)
        );
    }

    #[test]
    fn ties_get_average_ranks() {
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
    }
}

//! Fit + predict time of the tabular baselines on a feature table, the work its Python peer
//! times: `scripts/bench_baselines.py` writes the table (`opencarbon features`) and the split,
//! standardises with the training rows on both sides, and times `fit` on the training rows
//! plus `predict` on every row (no file reading, no feature assembly, no run records).
//! Run: `cargo bench --bench tabular -- --features F.csv --split S.csv --model F.yaml
//! [--seed N] [--repeat N]`; `OPENCARBON_THREADS=N` sets the threads. Prints one JSON line:
//! the median and every repeat's seconds, and the test R² of the last fit.

use std::time::Instant;

use ndarray::{Array1, Array2, Axis};
use opencarbon::models::{ModelConfig, Standardizer, TabularModel};

mod common;
use common::arg;

fn main() {
    opencarbon::nn::use_thread_setting().expect("OPENCARBON_THREADS");
    let need = |name: &str| arg(name).unwrap_or_else(|| panic!("{name} is required"));
    let seed: u64 = arg("--seed").map_or(0, |v| v.parse().expect("--seed: a whole number"));
    let repeat: usize = arg("--repeat").map_or(5, |v| v.parse().expect("--repeat: a number"));
    let model_file = need("--model");
    let model: ModelConfig =
        serde_yaml::from_str(&std::fs::read_to_string(&model_file).unwrap()).unwrap();

    // features.csv: x, y, emission, then the features; split.csv: dataset, x, y, part.
    let mut table = csv::Reader::from_path(need("--features")).unwrap();
    let mut coords = Vec::new();
    let (mut values, mut target) = (Vec::new(), Vec::new());
    let mut width = 0;
    for rec in table.records() {
        let rec = rec.unwrap();
        let v: Vec<f64> = rec.iter().map(|s| s.parse().unwrap()).collect();
        coords.push((v[0] as i64, v[1] as i64));
        target.push(v[2].max(1e-300).ln());
        width = v.len() - 3;
        values.extend_from_slice(&v[3..]);
    }
    let x = Array2::from_shape_vec((coords.len(), width), values).unwrap();
    let mut parts = std::collections::HashMap::new();
    for rec in csv::Reader::from_path(need("--split")).unwrap().records() {
        let rec = rec.unwrap();
        let at: (i64, i64) = (rec[1].parse().unwrap(), rec[2].parse().unwrap());
        parts.insert(at, rec[3].to_string());
    }
    let rows_of = |part: &str| -> Vec<usize> {
        (0..coords.len())
            .filter(|&i| parts.get(&coords[i]).map(String::as_str) == Some(part))
            .collect()
    };
    let (train, test) = (rows_of("train"), rows_of("test"));
    let scaler = Standardizer::fit(x.select(Axis(0), &train).view());
    let x_all = scaler.apply(x.view());
    let x_train = x_all.select(Axis(0), &train);
    let y_train = Array1::from_iter(train.iter().map(|&i| target[i]));

    let fit_and_predict = || -> Array1<f64> {
        let fitted = match &model {
            ModelConfig::Lasso(m) => m.fit_table(x_train.view(), &y_train, seed),
            ModelConfig::RandomForest(m) => m.fit_table(x_train.view(), &y_train, seed),
            ModelConfig::Gbdt(m) => m.fit_table(x_train.view(), &y_train, seed),
            other => panic!("{}: not a tabular model this bench times", other.kind()),
        }
        .unwrap();
        fitted.predict(x_all.view()).unwrap()
    };
    let mut seconds = Vec::new();
    let mut predictions = Array1::zeros(0);
    for _ in 0..repeat {
        let t = Instant::now();
        predictions = std::hint::black_box(fit_and_predict());
        seconds.push(t.elapsed().as_secs_f64());
    }
    let y_test: Vec<f64> = test.iter().map(|&i| target[i]).collect();
    let p_test: Vec<f64> = test.iter().map(|&i| predictions[i]).collect();
    let r2 = opencarbon::metrics::r2(&y_test, &p_test);
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "model": model.kind(),
            "threads": opencarbon::track::provenance::threads(),
            "median_seconds": sorted[sorted.len() / 2],
            "seconds": seconds,
            "test_r2": r2,
            "train": train.len(),
            "test": test.len(),
        })
    );
}

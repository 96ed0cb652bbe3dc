//! The paper's headline statistic: OpenCarbon's test R² relative to the best baseline, per
//! split and dataset and averaged over datasets, with a paired comparison across seeds (the
//! mean of the per-seed differences and its standard error), so a reader can see whether a
//! gap is larger than the seed-to-seed noise.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::track::records::RunMetrics;

/// The model kind of OpenCarbon (the rest are baselines).
const OPENCARBON: &str = "opencarbon";

/// The full OpenCarbon of a group of runs: its first model label without an ablation mark,
/// in plan order (a recipe study may hold several).
fn full_opencarbon<'a>(runs: &[&'a RunMetrics]) -> Option<&'a str> {
    runs.iter()
        .filter(|r| crate::models::opencarbon::is_full_opencarbon(&r.model))
        .min_by_key(|r| r.job_index)
        .map(|r| r.model.as_str())
}

fn test_r2_by_seed(runs: &[&RunMetrics], model: &str) -> BTreeMap<u64, f64> {
    runs.iter()
        .filter(|r| r.model == model)
        .filter_map(|r| r.test.as_ref().map(|t| (r.seed, t.r2)))
        .collect()
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| s / n as f64)
}

/// One comparison: OpenCarbon vs the best baseline on one split and dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub split: String,
    pub dataset: String,
    pub opencarbon: f64,
    pub baseline: String,
    pub baseline_r2: f64,
    /// 100 · (OpenCarbon − best) / best.
    pub gain_percent: f64,
    /// Mean of the per-seed differences (seeds both have), its standard error, and n.
    pub paired: Option<(f64, Option<f64>, usize)>,
}

/// Every comparison the runs allow, ordered by split (in plan order) and dataset.
pub fn comparisons(runs: &[RunMetrics]) -> Vec<Comparison> {
    let mut groups: Vec<((String, String), Vec<&RunMetrics>)> = Vec::new();
    for r in runs {
        let key = (r.split.clone(), r.dataset.clone());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    let mut out = Vec::new();
    for ((split, dataset), group) in groups {
        let Some(full) = full_opencarbon(&group) else {
            continue;
        };
        let oc = test_r2_by_seed(&group, full);
        let Some(oc_mean) = mean(oc.values().copied()) else {
            continue;
        };
        let mut baselines: Vec<&str> = group
            .iter()
            .filter(|r| r.model_kind != OPENCARBON)
            .map(|r| r.model.as_str())
            .collect();
        baselines.sort_unstable();
        baselines.dedup();
        let best = baselines
            .iter()
            .filter_map(|m| mean(test_r2_by_seed(&group, m).into_values()).map(|v| (v, *m)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let Some((best_r2, best_model)) = best else {
            continue;
        };
        let base = test_r2_by_seed(&group, best_model);
        let diffs: Vec<f64> = oc
            .iter()
            .filter_map(|(s, v)| base.get(s).map(|b| v - b))
            .collect();
        let paired = mean(diffs.iter().copied()).map(|m| {
            let n = diffs.len();
            let se = (n > 1).then(|| {
                let var = diffs.iter().map(|d| (d - m).powi(2)).sum::<f64>() / (n - 1) as f64;
                (var / n as f64).sqrt()
            });
            (m, se, n)
        });
        out.push(Comparison {
            split,
            dataset,
            opencarbon: oc_mean,
            baseline: best_model.to_string(),
            baseline_r2: best_r2,
            gain_percent: 100.0 * (oc_mean - best_r2) / best_r2.abs().max(1e-12),
            paired,
        });
    }
    out
}

/// The Markdown section; empty when the runs hold no OpenCarbon or no baseline.
pub fn markdown(runs: &[RunMetrics]) -> String {
    let cs = comparisons(runs);
    if cs.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "### OpenCarbon vs best baseline\n\nTest R² (mean over seeds) of the full OpenCarbon and of the baseline with the highest mean test R² on the same split and dataset; gain = 100 · (OpenCarbon − best) / best, the paper's headline statistic. Paired: mean over seeds of the per-seed difference in R², ± its standard error (n seeds). A gap within about two standard errors is not distinguishable from seed noise.\n\n| split | dataset | OpenCarbon R² | best baseline | its R² | gain | paired difference |\n|---|---|---:|---|---:|---:|---:|\n",
    );
    let mut splits: Vec<&str> = Vec::new();
    for c in &cs {
        if !splits.contains(&c.split.as_str()) {
            splits.push(&c.split);
        }
        let paired = match c.paired {
            Some((m, Some(se), n)) => format!("{m:+.3} ± {se:.3} (n={n})"),
            Some((m, None, n)) => format!("{m:+.3} (n={n})"),
            None => "–".into(),
        };
        writeln!(
            s,
            "| {} | {} | {:.3} | {} | {:.3} | {:+.1} % | {paired} |",
            c.split, c.dataset, c.opencarbon, c.baseline, c.baseline_r2, c.gain_percent
        )
        .unwrap();
    }
    for split in splits {
        let gains: Vec<f64> = cs
            .iter()
            .filter(|c| c.split == split)
            .map(|c| c.gain_percent)
            .collect();
        writeln!(
            s,
            "| {split} | **average over {} datasets** | | | | **{:+.1} %** | |",
            gains.len(),
            mean(gains.iter().copied()).unwrap_or(f64::NAN)
        )
        .unwrap();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn run(model: &str, kind: &str, dataset: &str, seed: u64, r2: f64) -> RunMetrics {
        RunMetrics {
            run_id: format!("{model}{dataset}{seed}"),
            job_index: 0,
            dataset: dataset.into(),
            model: model.into(),
            model_kind: kind.into(),
            split: "block4".into(),
            seed,
            train: None,
            valid: None,
            test: Some(Metrics {
                n: 10,
                r2,
                rmse: 0.0,
                mae: 0.0,
                mape: 0.0,
                spearman: 0.0,
            }),
            fit_seconds: 0.0,
        }
    }

    #[test]
    fn gain_against_the_best_baseline_and_paired_standard_error() {
        let runs = vec![
            run("opencarbon", "opencarbon", "a", 0, 0.80),
            run("opencarbon", "opencarbon", "a", 1, 0.70),
            run("opencarbon[no-se]", "opencarbon", "a", 0, 0.99),
            run("lasso", "lasso", "a", 0, 0.60),
            run("lasso", "lasso", "a", 1, 0.60),
            run("rf", "random_forest", "a", 0, 0.50),
            run("rf", "random_forest", "a", 1, 0.50),
        ];
        let cs = comparisons(&runs);
        assert_eq!(cs.len(), 1);
        let c = &cs[0];
        // The ablation is not a baseline; lasso (0.60) is the best baseline.
        assert_eq!(c.baseline, "lasso");
        assert!((c.opencarbon - 0.75).abs() < 1e-12);
        assert!((c.gain_percent - 25.0).abs() < 1e-9);
        // Differences 0.20 and 0.10: mean 0.15, sd 0.0707, SE 0.05.
        let (m, se, n) = c.paired.unwrap();
        assert_eq!(n, 2);
        assert!((m - 0.15).abs() < 1e-12 && (se.unwrap() - 0.05).abs() < 1e-12);
        assert!(markdown(&runs).contains("+25.0 %"));
    }

    #[test]
    fn nothing_without_opencarbon() {
        assert!(markdown(&[run("lasso", "lasso", "a", 0, 0.6)]).is_empty());
    }
}

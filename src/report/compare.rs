//! `opencarbon compare A B`: two result sets side by side, run by run. A and B are experiment
//! directories or summary.csv files (the committed results hold only summary.csv and tables).
//!
//! Runs are paired by what they are, not by run id or label (which change with the code):
//! dataset, split, seed and every resolved hyperparameter (`param.*` columns of summary.csv,
//! the model's kind included; the label `param.model` left out). Files written before the
//! `param.*` columns existed pair by dataset, model label, split and seed. A `param.*` column
//! that only one side has (a hyperparameter added since, or a model variant only one side
//! ran) counts as empty on the other side: it keeps rows apart, never merges them, so a run
//! pairs only with a run that has the same value, or none on both sides. A cell is a pairing
//! key without the seed: its rows print both means, the mean paired difference B − A and,
//! with ≥ 2 paired seeds, the difference's standard error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// What counts as a regression (`--fail-on-regression`).
#[derive(Debug, Clone, Copy)]
pub struct RegressionRule {
    /// A cell with one paired seed regresses when worse by more than this; with ≥ 2 seeds,
    /// when worse by more than both 2 standard errors and this.
    pub tolerance: f64,
}

/// One cell of a comparison.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Dataset, split and model label of the cell (of A where A has it).
    pub label: [String; 3],
    pub mean_a: Option<f64>,
    pub mean_b: Option<f64>,
    /// Paired differences B − A, one per seed present in both.
    pub diffs: Vec<f64>,
}

impl Cell {
    /// `dataset / split / model`, for messages.
    pub fn name(&self) -> String {
        self.label.join(" / ")
    }

    pub fn delta(&self) -> Option<f64> {
        (!self.diffs.is_empty()).then(|| self.diffs.iter().sum::<f64>() / self.diffs.len() as f64)
    }

    /// Standard error of the mean paired difference (n ≥ 2).
    pub fn standard_error(&self) -> Option<f64> {
        let n = self.diffs.len();
        if n < 2 {
            return None;
        }
        let m = self.delta()?;
        let var = self.diffs.iter().map(|d| (d - m).powi(2)).sum::<f64>() / (n - 1) as f64;
        Some((var / n as f64).sqrt())
    }
}

/// The comparison of two result sets on one metric.
pub struct Comparison {
    pub metric: String,
    pub lower_is_better: bool,
    /// How runs were paired (the key columns).
    pub key: Vec<String>,
    pub cells: Vec<Cell>,
}

/// Rows of a summary.csv as column → value.
type Rows = Vec<BTreeMap<String, String>>;

/// summary.csv of `target` (the file itself, or the one in an experiment directory).
fn summary_file(target: &Path) -> PathBuf {
    if target.is_dir() {
        target.join("summary.csv")
    } else {
        target.to_path_buf()
    }
}

fn read_rows(target: &Path) -> Result<Rows> {
    let file = summary_file(target);
    let mut r = csv::Reader::from_path(&file)
        .map_err(|e| Error::Usage(format!("{}: cannot read: {e}", file.display())))?;
    let header: Vec<String> = r
        .headers()
        .map_err(|e| Error::dataset(&file, Some(1), e.to_string()))?
        .iter()
        .map(str::to_string)
        .collect();
    for needed in ["dataset", "model", "split", "seed"] {
        if !header.iter().any(|h| h == needed) {
            return Err(Error::dataset(
                &file,
                Some(1),
                format!("not a summary.csv: no `{needed}` column"),
            ));
        }
    }
    let mut rows = Vec::new();
    for record in r.records() {
        let record = record
            .map_err(|e| Error::dataset(&file, e.position().map(|p| p.line()), e.to_string()))?;
        rows.push(
            header
                .iter()
                .cloned()
                .zip(record.iter().map(str::to_string))
                .collect(),
        );
    }
    Ok(rows)
}

/// Whether smaller values of `metric` are better (errors), as opposed to R² and Spearman.
pub fn lower_is_better(metric: &str) -> bool {
    ["rmse", "mae", "mape", "seconds"]
        .iter()
        .any(|m| metric.ends_with(m))
}

/// Compare `metric` (a summary.csv column, e.g. `test_r2`) of B against A.
pub fn compare(a: &Path, b: &Path, metric: &str) -> Result<Comparison> {
    let (rows_a, rows_b) = (read_rows(a)?, read_rows(b)?);
    for (rows, target) in [(&rows_a, a), (&rows_b, b)] {
        if rows.first().is_some_and(|r| !r.contains_key(metric)) {
            return Err(Error::Usage(format!(
                "{}: no column `{metric}`",
                summary_file(target).display()
            )));
        }
    }
    let params = |rows: &Rows| -> Vec<String> {
        rows.first()
            .map(|r| {
                r.keys()
                    .filter(|k| k.starts_with("param.") && *k != "param.model")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let (pa, pb) = (params(&rows_a), params(&rows_b));
    let mut key: Vec<String> = vec!["dataset".into(), "split".into()];
    if pa.is_empty() || pb.is_empty() {
        key.push("model".into());
    } else {
        let mut union: Vec<String> = pa.into_iter().chain(pb).collect();
        union.sort();
        union.dedup();
        key.extend(union);
        key.retain(|k| k != "param.dataset" && k != "param.split" && k != "param.seed");
    }
    let cell_of = |r: &BTreeMap<String, String>| -> Vec<String> {
        key.iter()
            .map(|k| r.get(k).cloned().unwrap_or_default())
            .collect()
    };
    let value = |r: &BTreeMap<String, String>| r.get(metric).and_then(|v| v.parse::<f64>().ok());
    // cell → (label, seed → value) per side
    type Side = BTreeMap<Vec<String>, ([String; 3], BTreeMap<String, f64>)>;
    let side = |rows: &Rows, target: &Path| -> Result<Side> {
        let mut out: Side = BTreeMap::new();
        for (i, r) in rows.iter().enumerate() {
            let entry = out.entry(cell_of(r)).or_insert_with(|| {
                let field = |k: &str| r.get(k).cloned().unwrap_or_default();
                let label = [field("dataset"), field("split"), field("model")];
                (label, BTreeMap::new())
            });
            if let Some(v) = value(r) {
                let seed = r.get("seed").cloned().unwrap_or_default();
                if entry.1.insert(seed.clone(), v).is_some() {
                    // Two runs that nothing tells apart: pairing would keep one of them.
                    return Err(Error::dataset(
                        summary_file(target),
                        Some(i as u64 + 2),
                        format!(
                            "a second run of {} seed {seed} with the same {}; cannot pair it",
                            entry.0.join(" "),
                            key.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(out)
    };
    let (sa, sb) = (side(&rows_a, a)?, side(&rows_b, b)?);
    let mean = |m: &BTreeMap<String, f64>| {
        (!m.is_empty()).then(|| m.values().sum::<f64>() / m.len() as f64)
    };
    let mut cells = Vec::new();
    let mut keys: Vec<&Vec<String>> = sa.keys().chain(sb.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let (a, b) = (sa.get(k), sb.get(k));
        let label = a.or(b).map(|s| s.0.clone()).unwrap_or_default();
        let diffs = match (a, b) {
            (Some(a), Some(b)) => {
                a.1.iter()
                    .filter_map(|(seed, va)| b.1.get(seed).map(|vb| vb - va))
                    .collect()
            }
            _ => Vec::new(),
        };
        cells.push(Cell {
            label,
            mean_a: a.and_then(|s| mean(&s.1)),
            mean_b: b.and_then(|s| mean(&s.1)),
            diffs,
        });
    }
    Ok(Comparison {
        metric: metric.into(),
        lower_is_better: lower_is_better(metric),
        key,
        cells,
    })
}

impl Comparison {
    /// Cells where B is worse than A under `rule`, or which A has and B lacks.
    pub fn regressions(&self, rule: RegressionRule) -> Vec<&Cell> {
        self.cells
            .iter()
            .filter(|c| {
                if c.mean_a.is_some() && c.diffs.is_empty() {
                    return true; // missing from B (or no seed in common)
                }
                let Some(d) = c.delta() else { return false };
                let worse = if self.lower_is_better { d } else { -d };
                let allowed = c
                    .standard_error()
                    .map_or(rule.tolerance, |se| (2.0 * se).max(rule.tolerance));
                worse > allowed
            })
            .collect()
    }

    /// Cells that are not identical: a non-zero difference or a run on one side only.
    pub fn differences(&self) -> Vec<&Cell> {
        self.cells
            .iter()
            .filter(|c| {
                c.diffs.is_empty()
                    || c.diffs.iter().any(|d| *d != 0.0)
                    || c.mean_a.is_none()
                    || c.mean_b.is_none()
            })
            .collect()
    }

    /// The comparison as a Markdown table.
    pub fn markdown(&self, a: &str, b: &str) -> String {
        use std::fmt::Write as _;
        let fmt = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.4}"));
        let mut out = format!(
            "{} ({}), B = {b} against A = {a}; paired by {}\n\n| dataset | split | model | A | B | Δ (B − A) | SE | n |\n|---|---|---|---|---|---|---|---|\n",
            self.metric,
            if self.lower_is_better {
                "lower is better"
            } else {
                "higher is better"
            },
            self.key.join(", ")
        );
        for c in &self.cells {
            let delta = c.delta().map_or("—".to_string(), |d| format!("{d:+.4}"));
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {delta} | {} | {} |",
                c.label[0],
                c.label[1],
                c.label[2],
                fmt(c.mean_a),
                fmt(c.mean_b),
                fmt(c.standard_error()),
                c.diffs.len()
            )
            .unwrap();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Pairs by hyperparameters across label changes, computes the paired difference and its
    /// standard error, and flags worse-by-2-SE, one-seed tolerance and missing cells.
    #[test]
    fn runs_pair_by_hyperparameters_and_regressions_are_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let header = "run_id,dataset,model,split,seed,test_r2,test_rmse,param.kind,param.model,param.model.alpha\n";
        let a = write(
            dir.path(),
            "a.csv",
            &format!("{header}r1,tiny,lasso(a=0.1),random,0,0.50,1.0,lasso,lasso(a=0.1),0.1\nr2,tiny,lasso(a=0.1),random,1,0.60,1.0,lasso,lasso(a=0.1),0.1\nr3,tiny,ols,random,0,0.70,1.0,ols,ols,\n"),
        );
        // B: new labels and run ids; alpha 0.1 is worse by 0.10 and 0.12 (SE 0.01).
        let b = write(
            dir.path(),
            "b.csv",
            &format!("{header}x1,tiny,LASSO a=.1,random,0,0.40,1.0,lasso,LASSO a=.1,0.1\nx2,tiny,LASSO a=.1,random,1,0.48,1.0,lasso,LASSO a=.1,0.1\n"),
        );
        let c = compare(&a, &b, "test_r2").unwrap();
        assert_eq!(c.cells.len(), 2);
        let lasso = c.cells.iter().find(|c| c.name().contains("lasso")).unwrap();
        assert_eq!(lasso.diffs.len(), 2, "paired across labels");
        assert!((lasso.delta().unwrap() + 0.11).abs() < 1e-12);
        assert!((lasso.standard_error().unwrap() - 0.01).abs() < 1e-12);
        let rule = RegressionRule { tolerance: 0.0 };
        let regressed: Vec<String> = c.regressions(rule).iter().map(|c| c.name()).collect();
        assert_eq!(
            regressed.len(),
            2,
            "worse by 11 SE, and ols is missing: {regressed:?}"
        );
        // Lower is better for errors: the same numbers as RMSE are no regression.
        assert!(lower_is_better("test_rmse") && !lower_is_better("test_r2"));
        let same = compare(&a, &a, "test_r2").unwrap();
        assert!(same.differences().is_empty());
        assert!(same.regressions(rule).is_empty());
    }

    /// A hyperparameter column on one side only keeps that side's runs apart: GraphSAGE on
    /// features and on embeddings stay two cells (the features one pairs, the embeddings one
    /// is B's alone) instead of merging and overwriting each other's seeds.
    #[test]
    fn a_column_of_one_side_keeps_its_runs_apart() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(
            dir.path(),
            "a.csv",
            "run_id,dataset,model,split,seed,test_r2,param.kind\n\
             r1,tiny,sage,block,0,0.80,graphsage\n",
        );
        let b = write(
            dir.path(),
            "b.csv",
            "run_id,dataset,model,split,seed,test_r2,param.kind,param.model.embeddings_from\n\
             x1,tiny,sage,block,0,0.80,graphsage,\n\
             x2,tiny,sage,block,0,0.86,graphsage,results/e\n",
        );
        let c = compare(&a, &b, "test_r2").unwrap();
        assert_eq!(c.cells.len(), 2, "{:?}", c.cells);
        let common: Vec<&Cell> = c.cells.iter().filter(|c| c.mean_a.is_some()).collect();
        assert_eq!(common.len(), 1);
        assert_eq!(common[0].diffs, vec![0.0], "the common run is identical");
        assert_eq!(c.differences().len(), 1, "only B's extra run differs");
        let only_b: Vec<&Cell> = c.cells.iter().filter(|c| c.mean_a.is_none()).collect();
        assert_eq!(only_b.len(), 1);
        assert_eq!(only_b[0].mean_b, Some(0.86));
        // Two rows nothing tells apart are refused, naming the line.
        let dup = write(
            dir.path(),
            "dup.csv",
            "run_id,dataset,model,split,seed,test_r2,param.kind\n\
             r1,tiny,sage,block,0,0.80,graphsage\n\
             r2,tiny,sage,block,0,0.81,graphsage\n",
        );
        let err = compare(&a, &dup, "test_r2").err().unwrap().to_string();
        assert!(err.contains("dup.csv") && err.contains('3'), "{err}");
    }
}

//! Pivot tables: `report --rows model --cols dataset,split --over seed`. Any hyperparameter or
//! input switch of `records::run_params` (`model`, `kind`, `dataset`, `split`, `seed`,
//! `model.alpha`, `input.poi`, …) can be a row or column axis; the `--over` axes are
//! aggregated (mean ± sample std, n). A hyperparameter on no axis in which runs of one cell
//! differ keeps those runs apart (its values join the row label, and a note says so): runs
//! are never merged across a difference nobody asked to average over. The model label stands for
//! the model's own fields (`kind`, `model.*`, `input.*`), which it encodes.
//!
//! Written as Markdown, CSV (long format) and LaTeX (booktabs, mean ± std, the best value of
//! each column in bold).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::error::{Error, Result};
use crate::track::records::RunSummary;

/// Which axes a pivot table has.
#[derive(Debug, Clone)]
pub struct PivotSpec {
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    pub over: Vec<String>,
    /// A metric of metrics.json as `<part>_<metric>`, e.g. `test_r2`.
    pub metric: String,
}

/// A computed pivot table.
pub struct Pivot {
    pub spec: PivotSpec,
    pub lower_is_better: bool,
    /// Row axes, then the hyperparameters kept apart.
    pub row_names: Vec<String>,
    pub row_keys: Vec<Vec<String>>,
    pub col_keys: Vec<Vec<String>>,
    /// (row, column) → values over the `over` axes.
    pub cells: BTreeMap<(usize, usize), Vec<f64>>,
    pub notes: Vec<String>,
}

/// The value of axis `name` for a run ("—" when the run has no such parameter); the `model`
/// axis shows the model part of the run's short name (`names::with_model_names`).
fn axis_value(run: &RunSummary, name: &str) -> String {
    if name == "model" {
        return run.metrics.model.clone();
    }
    run.params
        .iter()
        .find(|(k, _)| k == name)
        .map_or("—".to_string(), |(_, v)| v.to_string())
}

fn metric_value(run: &RunSummary, metric: &str) -> Option<f64> {
    let (part, name) = metric.split_once('_')?;
    let m = match part {
        "train" => run.metrics.train.as_ref(),
        "valid" => run.metrics.valid.as_ref(),
        "test" => run.metrics.test.as_ref(),
        _ => None,
    }?;
    m.get(name)
}

fn mean_std(v: &[f64]) -> (f64, Option<f64>) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = (v.len() > 1)
        .then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    (mean, std)
}

/// Build the pivot table of `runs`.
pub fn pivot(runs: &[RunSummary], spec: &PivotSpec) -> Result<Pivot> {
    let runs = &crate::track::names::with_model_names(runs);
    let known: Vec<String> = super::param_names(runs);
    let axes: Vec<&String> = spec
        .rows
        .iter()
        .chain(&spec.cols)
        .chain(&spec.over)
        .collect();
    for a in &axes {
        if !known.contains(a) {
            return Err(Error::Usage(format!(
                "`{a}` is no hyperparameter of these runs; axes can be: {}",
                known.join(", ")
            )));
        }
    }
    if spec.rows.is_empty() {
        return Err(Error::Usage("--rows needs at least one axis".into()));
    }
    let part_metric = spec.metric.split_once('_');
    let valid_metric = part_metric.is_some_and(|(p, m)| {
        ["train", "valid", "test"].contains(&p) && crate::metrics::METRIC_NAMES.contains(&m)
    });
    if !valid_metric {
        return Err(Error::Usage(format!(
            "--metric `{}`: expected <train|valid|test>_<{}>",
            spec.metric,
            crate::metrics::METRIC_NAMES.join("|")
        )));
    }
    // What the axes cover: themselves, and the model's own fields when the label is an axis.
    let label_on_axis = axes.iter().any(|a| a.as_str() == "model");
    let covered = |name: &str| {
        axes.iter().any(|a| a.as_str() == name)
            || (label_on_axis
                && (name == "kind" || name.starts_with("model.") || name.starts_with("input.")))
    };
    // A hyperparameter would be merged over when runs of one cell (same row and column
    // axes) differ in it. The label is left out: the model fields it encodes decide.
    let cell_of = |r: &RunSummary| -> Vec<String> {
        spec.rows
            .iter()
            .chain(&spec.cols)
            .map(|n| axis_value(r, n))
            .collect()
    };
    let kept_apart: Vec<String> = known
        .iter()
        .filter(|n| !covered(n) && n.as_str() != "model")
        .filter(|n| {
            let mut seen: BTreeMap<Vec<String>, String> = BTreeMap::new();
            runs.iter().any(|r| {
                let v = axis_value(r, n);
                seen.entry(cell_of(r)).or_insert_with(|| v.clone()) != &v
            })
        })
        .cloned()
        .collect();
    let mut notes = Vec::new();
    if !kept_apart.is_empty() {
        notes.push(format!(
            "Runs also differ in {} (on no axis): kept apart in the rows, not merged.",
            kept_apart.join(", ")
        ));
    }
    let row_names: Vec<String> = spec.rows.iter().chain(&kept_apart).cloned().collect();
    let (mut row_keys, mut col_keys): (Vec<Vec<String>>, Vec<Vec<String>>) = (vec![], vec![]);
    let mut cells: BTreeMap<(usize, usize), Vec<f64>> = BTreeMap::new();
    let index =
        |keys: &mut Vec<Vec<String>>, key: Vec<String>| match keys.iter().position(|k| *k == key) {
            Some(i) => i,
            None => {
                keys.push(key);
                keys.len() - 1
            }
        };
    for run in runs {
        let Some(v) = metric_value(run, &spec.metric) else {
            continue;
        };
        let r = index(
            &mut row_keys,
            row_names.iter().map(|n| axis_value(run, n)).collect(),
        );
        let c = index(
            &mut col_keys,
            spec.cols.iter().map(|n| axis_value(run, n)).collect(),
        );
        cells.entry((r, c)).or_default().push(v);
    }
    Ok(Pivot {
        spec: spec.clone(),
        lower_is_better: super::compare::lower_is_better(&spec.metric),
        row_names,
        row_keys,
        col_keys,
        cells,
        notes,
    })
}

impl Pivot {
    fn col_title(&self, c: usize) -> String {
        if self.spec.cols.is_empty() {
            self.spec.metric.clone()
        } else {
            self.col_keys[c].join(" / ")
        }
    }

    /// The cells of row `r` as text (`pm`: the format's ±), the best of its column through
    /// `best` and the others through `plain`; empty where the row has no runs.
    fn row_cells(
        &self,
        r: usize,
        pm: &str,
        best: impl Fn(&str) -> String,
        plain: impl Fn(&str) -> String,
    ) -> Vec<String> {
        (0..self.col_keys.len())
            .map(|c| match self.cells.get(&(r, c)) {
                None => String::new(),
                Some(v) if self.best_row(c) == Some(r) => best(&self.format_cell(v, pm)),
                Some(v) => plain(&self.format_cell(v, pm)),
            })
            .collect()
    }

    /// The best row of column `c` (by mean).
    fn best_row(&self, c: usize) -> Option<usize> {
        let means = (0..self.row_keys.len())
            .filter_map(|r| self.cells.get(&(r, c)).map(|v| (r, mean_std(v).0)));
        if self.lower_is_better {
            means.min_by(|a, b| a.1.total_cmp(&b.1)).map(|(r, _)| r)
        } else {
            means.max_by(|a, b| a.1.total_cmp(&b.1)).map(|(r, _)| r)
        }
    }

    /// The metric's name as the cells show it (`test_mape` in %).
    fn metric_part(&self) -> &str {
        self.spec.metric.split_once('_').map_or("", |(_, m)| m)
    }

    /// `mean ± std` (or `mean` for one run) as tables show the metric; `pm` is the output
    /// format's ±.
    fn format_cell(&self, v: &[f64], pm: &str) -> String {
        let (mean, std) = mean_std(v);
        super::shown_mean_std(self.metric_part(), mean, std, pm)
    }

    fn caption(&self) -> String {
        let percent = if self.metric_part() == "mape" {
            " in %"
        } else {
            ""
        };
        format!(
            "{}{percent} ({}), mean ± sample std over {}; best per column in bold.",
            self.spec.metric,
            if self.lower_is_better {
                "lower is better"
            } else {
                "higher is better"
            },
            if self.spec.over.is_empty() {
                "nothing (one run per cell)".to_string()
            } else {
                self.spec.over.join(", ")
            }
        )
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("{}\n\n", self.caption());
        for n in &self.notes {
            writeln!(out, "{n}\n").unwrap();
        }
        let cols: Vec<String> = (0..self.col_keys.len())
            .map(|c| self.col_title(c))
            .collect();
        writeln!(
            out,
            "| {} | {} |",
            self.row_names.join(" | "),
            cols.join(" | ")
        )
        .unwrap();
        writeln!(
            out,
            "|{}{}",
            "---|".repeat(self.row_names.len()),
            "---:|".repeat(cols.len())
        )
        .unwrap();
        for (r, key) in self.row_keys.iter().enumerate() {
            let cells = self.row_cells(r, "±", |t| format!("**{t}**"), |t| t.to_string());
            writeln!(out, "| {} | {} |", key.join(" | "), cells.join(" | ")).unwrap();
        }
        out
    }

    /// Long format: the row and column axes, then mean, std and n.
    pub fn csv(&self) -> String {
        let mut out = String::new();
        let header: Vec<String> = self
            .row_names
            .iter()
            .chain(&self.spec.cols)
            .cloned()
            .chain(["mean".into(), "std".into(), "n".into()])
            .collect();
        writeln!(out, "{}", csv_line(&header)).unwrap();
        for ((r, c), v) in &self.cells {
            let (mean, std) = mean_std(v);
            let fields: Vec<String> = self.row_keys[*r]
                .iter()
                .chain(&self.col_keys[*c])
                .cloned()
                .chain([
                    format!("{mean}"),
                    std.map_or(String::new(), |s| format!("{s}")),
                    v.len().to_string(),
                ])
                .collect();
            writeln!(out, "{}", csv_line(&fields)).unwrap();
        }
        out
    }

    /// A booktabs table.
    pub fn latex(&self) -> String {
        let cols: Vec<String> = (0..self.col_keys.len())
            .map(|c| latex_escape(&self.col_title(c)))
            .collect();
        let mut out =
            String::from("% Requires \\usepackage{booktabs}.\n\\begin{table}\n\\centering\n");
        writeln!(
            out,
            "\\begin{{tabular}}{{{}{}}}\n\\toprule",
            "l".repeat(self.row_names.len()),
            "r".repeat(cols.len())
        )
        .unwrap();
        let names: Vec<String> = self.row_names.iter().map(|n| latex_escape(n)).collect();
        writeln!(
            out,
            "{} & {} \\\\\n\\midrule",
            names.join(" & "),
            cols.join(" & ")
        )
        .unwrap();
        for (r, key) in self.row_keys.iter().enumerate() {
            let labels: Vec<String> = key.iter().map(|k| latex_escape(k)).collect();
            let cells = self.row_cells(
                r,
                "\\pm",
                |t| format!("$\\mathbf{{{t}}}$"),
                |t| format!("${t}$"),
            );
            writeln!(out, "{} & {} \\\\", labels.join(" & "), cells.join(" & ")).unwrap();
        }
        writeln!(
            out,
            "\\bottomrule\n\\end{{tabular}}\n\\caption{{{}}}\n\\end{{table}}",
            latex_escape(&format!("{} {}", self.caption(), self.notes.join(" ")))
        )
        .unwrap();
        out
    }
}

fn csv_line(fields: &[String]) -> String {
    fields
        .iter()
        .map(|f| {
            if f.contains([',', '"', '\n']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn latex_escape(s: &str) -> String {
    let mut out = String::new();
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(ch);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '±' => out.push_str("$\\pm$"),
            '²' => out.push_str("$^2$"),
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::track::records::{ParamValue, RunMetrics};

    fn run(model: &str, alpha: f64, dataset: &str, seed: u64, lr: f64, r2: f64) -> RunSummary {
        let m = Metrics {
            n: 10,
            r2,
            rmse: 1.0,
            mae: 1.0,
            mape: 0.1,
            spearman: 0.5,
        };
        RunSummary {
            metrics: RunMetrics {
                run_id: format!("{model}{dataset}{seed}"),
                job_index: 0,
                dataset: dataset.into(),
                model: model.into(),
                model_kind: "lasso".into(),
                split: "random".into(),
                seed,
                train: None,
                valid: None,
                test: Some(m),
                fit_seconds: 0.0,
                facts: Some(crate::track::records::ModelFacts {
                    family: "lasso".into(),
                    ..Default::default()
                }),
            },
            params: vec![
                ("dataset".into(), ParamValue::Text(dataset.into())),
                ("split".into(), ParamValue::Text("random".into())),
                ("seed".into(), ParamValue::Number(seed as f64)),
                ("model".into(), ParamValue::Text(model.into())),
                ("kind".into(), ParamValue::Text("lasso".into())),
                ("model.alpha".into(), ParamValue::Number(alpha)),
                ("image_size".into(), ParamValue::Number(lr)),
            ],
            commit: None,
            dirty: None,
            units: vec![],
        }
    }

    /// Seeds are averaged, the best mean per column is bold, and a hyperparameter that
    /// varies on no axis keeps its runs apart with a note.
    #[test]
    fn axes_aggregate_and_an_unplaced_difference_keeps_runs_apart() {
        let runs = vec![
            run("a", 0.1, "x", 0, 32.0, 0.5),
            run("a", 0.1, "x", 1, 32.0, 0.7),
            run("b", 0.2, "x", 0, 32.0, 0.9),
            run("b", 0.2, "x", 0, 64.0, 0.1),
        ];
        let spec = PivotSpec {
            rows: vec!["model".into()],
            cols: vec!["dataset".into()],
            over: vec!["seed".into()],
            metric: "test_r2".into(),
        };
        let p = pivot(&runs, &spec).unwrap();
        assert_eq!(p.row_names, ["model", "image_size"]);
        assert_eq!(p.row_keys.len(), 3, "b at 32 and at 64 px stay apart");
        assert!(p.notes[0].contains("image_size"), "{:?}", p.notes);
        let md = p.markdown();
        // The model axis shows short names: the kind and the field that varies.
        assert!(
            md.contains("| lasso alpha=0.1 | 32 | 0.600 ± 0.141 |"),
            "{md}"
        );
        assert!(md.contains("| lasso alpha=0.2 | 32 | **0.900** |"), "{md}");
        let tex = p.latex();
        assert!(
            tex.contains("\\toprule") && tex.contains("$\\mathbf{0.900}$"),
            "{tex}"
        );
        assert!(p.csv().contains("lasso alpha=0.1,32,x,0.6"), "{}", p.csv());
        // MAPE, stored as a fraction (0.1), is shown in percent; the CSV keeps the fraction.
        let mape = pivot(
            &runs,
            &PivotSpec {
                metric: "test_mape".into(),
                ..spec.clone()
            },
        )
        .unwrap();
        assert!(
            mape.markdown().starts_with("test_mape in %"),
            "{}",
            mape.markdown()
        );
        assert!(
            mape.markdown().contains("| **10.0 ± 0.0** |"),
            "{}",
            mape.markdown()
        );
        assert!(mape.csv().contains(",0.1,0,2"), "{}", mape.csv());
        let bad = PivotSpec {
            rows: vec!["nope".into()],
            ..spec
        };
        assert!(pivot(&runs, &bad).is_err());
    }
}

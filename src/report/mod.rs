//! Reports: `summary.csv` (one row per finished run) and the paper-style tables
//! (rows: models; columns: city × metric; cells: mean ± std over seeds, with n), built with
//! polars from the run directories alone, so a report can be rebuilt at any time.

pub mod compare;
pub mod figures;
pub mod headline;
pub mod pivot;
pub use crate::track::render;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::track::atomic_write;
use crate::track::records::{collect_summaries_of, RunMetrics, RunSummary};

/// The metrics shown in tables, in order.
pub const TABLE_METRICS: [(&str, &str); 4] = [
    ("r2", "R²"),
    ("rmse", "RMSE"),
    ("mae", "MAE"),
    ("mape", "MAPE %"),
];

/// A metric's value as tables show it: MAPE, stored as a fraction, in percent with one
/// decimal; the others with three decimals.
pub fn shown_metric(metric: &str, value: f64) -> String {
    if metric == "mape" {
        format!("{:.1}", 100.0 * value)
    } else {
        format!("{value:.3}")
    }
}

/// `mean ± std` (`pm`: the output format's ±) of a metric as tables show it.
pub fn shown_mean_std(metric: &str, mean: f64, std: Option<f64>, pm: &str) -> String {
    match std {
        Some(s) => format!(
            "{} {pm} {}",
            shown_metric(metric, mean),
            shown_metric(metric, s)
        ),
        None => shown_metric(metric, mean),
    }
}

fn polars_err(e: PolarsError) -> Error {
    Error::Internal(format!("polars: {e}"))
}

pub use crate::track::records::collect_runs;

/// One row per run: identity, every metric of every part, the build (commit, dirty) and every
/// resolved hyperparameter as a `param.<name>` column (empty where a run has no such field).
pub fn summary_frame_of(summaries: &[RunSummary]) -> Result<DataFrame> {
    let runs: Vec<RunMetrics> = summaries.iter().map(|s| s.metrics.clone()).collect();
    let mut frame = summary_frame(&runs)?;
    let mut extra: Vec<Column> = vec![
        Column::new(
            "commit".into(),
            summaries
                .iter()
                .map(|s| s.commit.clone())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "dirty".into(),
            summaries.iter().map(|s| s.dirty).collect::<Vec<_>>(),
        ),
    ];
    for name in param_names(summaries) {
        extra.push(Column::new(
            format!("param.{name}").into(),
            summaries
                .iter()
                .map(|s| {
                    s.params
                        .iter()
                        .find(|(k, _)| *k == name)
                        .map(|(_, v)| v.to_string())
                })
                .collect::<Vec<_>>(),
        ));
    }
    for c in extra {
        frame.with_column(c).map_err(polars_err)?;
    }
    Ok(frame)
}

/// Every hyperparameter name of any run, in order of first appearance.
pub fn param_names(summaries: &[RunSummary]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for s in summaries {
        for (k, _) in &s.params {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    names
}

/// One row per run, with every metric of every part as a column.
pub fn summary_frame(runs: &[RunMetrics]) -> Result<DataFrame> {
    let mut columns: Vec<Column> = vec![
        Column::new(
            "run_id".into(),
            runs.iter().map(|r| r.run_id.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "dataset".into(),
            runs.iter().map(|r| r.dataset.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "model".into(),
            runs.iter().map(|r| r.model.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "split".into(),
            runs.iter().map(|r| r.split.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "seed".into(),
            runs.iter().map(|r| r.seed).collect::<Vec<_>>(),
        ),
        Column::new(
            "fit_seconds".into(),
            runs.iter().map(|r| r.fit_seconds).collect::<Vec<_>>(),
        ),
    ];
    for (part, get) in [
        (
            "train",
            (|r: &RunMetrics| r.train) as fn(&RunMetrics) -> Option<Metrics>,
        ),
        ("valid", |r: &RunMetrics| r.valid),
        ("test", |r: &RunMetrics| r.test),
    ] {
        columns.push(Column::new(
            format!("{part}_n").into(),
            runs.iter()
                .map(|r| get(r).map(|m| m.n as u64))
                .collect::<Vec<_>>(),
        ));
        for name in crate::metrics::METRIC_NAMES {
            columns.push(Column::new(
                format!("{part}_{name}").into(),
                runs.iter()
                    .map(|r| get(r).and_then(|m| m.get(name)))
                    .collect::<Vec<_>>(),
            ));
        }
    }
    DataFrame::new_infer_height(columns).map_err(polars_err)
}

/// Mean, standard deviation (ddof 1) and count of the test metrics per (split, dataset, model).
#[allow(deprecated)] // polars' eager group-by aggregations; the lazy API would double build time
pub fn aggregate(summary: &DataFrame) -> Result<DataFrame> {
    let metric_cols: Vec<String> = TABLE_METRICS
        .iter()
        .map(|(m, _)| format!("test_{m}"))
        .collect();
    let gb = summary
        .group_by_stable(["split", "dataset", "model"])
        .map_err(polars_err)?;
    let gb = gb.select(metric_cols.clone());
    let mean = gb.mean().map_err(polars_err)?;
    let std = gb.std(1).map_err(polars_err)?;
    let count = gb.count().map_err(polars_err)?;
    let mut out = mean;
    for c in &metric_cols {
        let mut col = std
            .column(&format!("{c}_agg_std"))
            .map_err(polars_err)?
            .clone();
        col.rename(format!("{c}_std").into());
        out.with_column(col).map_err(polars_err)?;
    }
    out.with_column(
        count
            .column(&format!("{}_count", metric_cols[0]))
            .map_err(polars_err)?
            .clone(),
    )
    .map_err(polars_err)?;
    Ok(out)
}

fn str_at(df: &DataFrame, col: &str, i: usize) -> Result<String> {
    let c = df.column(col).map_err(polars_err)?;
    Ok(c.str()
        .map_err(polars_err)?
        .get(i)
        .unwrap_or("")
        .to_string())
}

fn f64_at(df: &DataFrame, col: &str, i: usize) -> Result<Option<f64>> {
    let c = df
        .column(col)
        .map_err(polars_err)?
        .cast(&DataType::Float64)
        .map_err(polars_err)?;
    Ok(c.f64().map_err(polars_err)?.get(i))
}

/// One aggregated cell: mean, sample standard deviation (none for a single run), runs.
pub type Cell = (f64, Option<f64>, u64);

/// One table per split: rows models, columns dataset × metric.
pub struct Table {
    pub split: String,
    pub datasets: Vec<String>,
    pub models: Vec<String>,
    /// cells[model][dataset][metric] = (mean, std, n)
    pub cells: Vec<Vec<Vec<Option<Cell>>>>,
}

pub fn tables(agg: &DataFrame) -> Result<Vec<Table>> {
    let mut out: Vec<Table> = Vec::new();
    for i in 0..agg.height() {
        let split = str_at(agg, "split", i)?;
        let dataset = str_at(agg, "dataset", i)?;
        let model = str_at(agg, "model", i)?;
        let idx = match out.iter().position(|t| t.split == split) {
            Some(k) => k,
            None => {
                out.push(Table {
                    split: split.clone(),
                    datasets: vec![],
                    models: vec![],
                    cells: vec![],
                });
                out.len() - 1
            }
        };
        let t = &mut out[idx];
        if !t.datasets.contains(&dataset) {
            t.datasets.push(dataset.clone());
            for row in &mut t.cells {
                row.push(vec![None; TABLE_METRICS.len()]);
            }
        }
        if !t.models.contains(&model) {
            t.models.push(model.clone());
            t.cells
                .push(vec![vec![None; TABLE_METRICS.len()]; t.datasets.len()]);
        }
        let (mi, di) = (
            t.models.iter().position(|m| m == &model).unwrap(),
            t.datasets.iter().position(|d| d == &dataset).unwrap(),
        );
        let n = f64_at(agg, "test_r2_count", i)?.unwrap_or(0.0) as u64;
        for (k, (m, _)) in TABLE_METRICS.iter().enumerate() {
            if let Some(mean) = f64_at(agg, &format!("test_{m}_mean"), i)? {
                let std = f64_at(agg, &format!("test_{m}_std"), i)?;
                t.cells[mi][di][k] = Some((mean, std, n));
            }
        }
    }
    Ok(out)
}

/// A cell of `metric`: mean ± std, with the number of runs only where it differs from the
/// table's usual n.
fn cell_text(metric: &str, c: &Option<Cell>, usual_n: u64) -> String {
    match c {
        Some((mean, std, n)) => {
            let n_note = if *n == usual_n {
                String::new()
            } else {
                format!(" (n={n})")
            };
            format!("{}{n_note}", shown_mean_std(metric, *mean, *std, "±"))
        }
        None => "–".into(),
    }
}

/// What RMSE and MAE are measured in: "RMSE and MAE in ln(t CO2 / year)." when every dataset
/// of the table has that unit, each dataset's where they differ, and saying so where unknown.
fn units_sentence(datasets: &[String], units: &[(String, String)]) -> String {
    let unit_of = |d: &String| units.iter().find(|(n, _)| n == d).map(|(_, u)| u.as_str());
    let mut distinct: Vec<Option<&str>> = datasets.iter().map(unit_of).collect();
    distinct.dedup();
    match distinct.as_slice() {
        [Some(unit)] => format!("RMSE and MAE in ln({unit})."),
        [None] => "RMSE and MAE in ln of the datasets' emission unit (not recorded, or differing between the cities of a label).".into(),
        _ => {
            let each: Vec<String> = datasets
                .iter()
                .map(|d| format!("{d} ln({})", unit_of(d).unwrap_or("unit not recorded")))
                .collect();
            format!("RMSE and MAE in {}.", each.join(", "))
        }
    }
}

impl Table {
    /// The most common number of runs per cell.
    fn usual_n(&self) -> u64 {
        let mut counts: std::collections::BTreeMap<u64, usize> = Default::default();
        for c in self.cells.iter().flatten().flatten().flatten() {
            *counts.entry(c.2).or_default() += 1;
        }
        counts
            .into_iter()
            .max_by_key(|&(n, k)| (k, n))
            .map_or(0, |(n, _)| n)
    }

    /// The table in Markdown; `units` gives each dataset's emission unit where known.
    pub fn markdown(&self, title: &str, units: &[(String, String)]) -> String {
        let usual_n = self.usual_n();
        let mut s = format!(
            "### {title}: split `{}`\n\nTest metrics on ln emission, mean ± std over seeds, n = {usual_n} runs per cell unless marked. {} MAPE in percent of ln emission. R² higher is better; RMSE, MAE, MAPE lower.\n\n| model |",
            self.split,
            units_sentence(&self.datasets, units),
        );
        for d in &self.datasets {
            for (_, label) in TABLE_METRICS {
                write!(s, " {d} {label} |").unwrap();
            }
        }
        s.push_str("\n|---|");
        s.push_str(&"---:|".repeat(self.datasets.len() * TABLE_METRICS.len()));
        s.push('\n');
        for (mi, model) in self.models.iter().enumerate() {
            write!(s, "| {model} |").unwrap();
            for di in 0..self.datasets.len() {
                for (k, (metric, _)) in TABLE_METRICS.iter().enumerate() {
                    write!(
                        s,
                        " {} |",
                        cell_text(metric, &self.cells[mi][di][k], usual_n)
                    )
                    .unwrap();
                }
            }
            s.push('\n');
        }
        s
    }

    pub fn csv(&self) -> String {
        let mut s = String::from("model,dataset,metric,mean,std,n\n");
        for (mi, model) in self.models.iter().enumerate() {
            for (di, d) in self.datasets.iter().enumerate() {
                for (k, (m, _)) in TABLE_METRICS.iter().enumerate() {
                    if let Some((mean, std, n)) = self.cells[mi][di][k] {
                        let std = std.map_or(String::new(), |v| format!("{v}"));
                        writeln!(s, "{model},{d},{m},{mean},{std},{n}").unwrap();
                    }
                }
            }
        }
        s
    }
}

fn file_safe(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The emission unit of each city of `summaries`, and of each dataset label (a cross-city
/// label such as `london>beijing` included) whose cities all record the same one.
pub fn units_by_dataset(summaries: &[RunSummary]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for s in summaries {
        // Each city under its own name (a cross-city run's maps show its test city) ...
        for (city, unit) in &s.units {
            if !out.iter().any(|(d, _)| d == city) {
                out.push((city.clone(), unit.clone()));
            }
        }
        // ... and the run's dataset label, when its cities agree.
        let mut units: Vec<&String> = s.units.iter().map(|(_, u)| u).collect();
        units.dedup();
        if let [unit] = units.as_slice() {
            if !out.iter().any(|(d, _)| d == &s.metrics.dataset) {
                out.push((s.metrics.dataset.clone(), unit.to_string()));
            }
        }
    }
    out
}

/// Say when an experiment's runs were made by several commits or by a build whose source
/// differed from its commit: their numbers may not be comparable. `strict` makes it an error.
fn check_builds(experiment_dir: &Path, summaries: &[RunSummary], strict: bool) -> Result<()> {
    let mut commits: Vec<&str> = summaries
        .iter()
        .map(|s| s.commit.as_deref().unwrap_or("unknown"))
        .collect();
    commits.sort();
    commits.dedup();
    let dirty = summaries.iter().filter(|s| s.dirty == Some(true)).count();
    let mut problems = Vec::new();
    if commits.len() > 1 {
        let shown: Vec<String> = commits
            .iter()
            .map(|c| c.chars().take(10).collect())
            .collect();
        problems.push(format!(
            "its runs were made by {} commits ({})",
            commits.len(),
            shown.join(", ")
        ));
    }
    if dirty > 0 {
        problems.push(format!(
            "{dirty} of {} runs were made by a build with uncommitted changes (see their diff.patch)",
            summaries.len()
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let message = format!("{}: {}", experiment_dir.display(), problems.join("; "));
    if strict {
        Err(Error::Usage(format!("{message} (--strict)")))
    } else {
        crate::track::progress::warn(&message);
        Ok(())
    }
}

/// Write a pivot table of an experiment's runs (`pivot::pivot`) as
/// `tables/pivot_<metric>.{md,csv,tex}`; returns its Markdown.
pub fn write_pivot(experiment_dir: &Path, p: &pivot::Pivot) -> Result<String> {
    let tables = experiment_dir.join("tables");
    let base = format!("pivot_{}", file_safe(&p.spec.metric));
    let md = p.markdown();
    atomic_write(&tables.join(format!("{base}.md")), md.as_bytes())?;
    atomic_write(&tables.join(format!("{base}.csv")), p.csv().as_bytes())?;
    atomic_write(&tables.join(format!("{base}.tex")), p.latex().as_bytes())?;
    Ok(md)
}

/// Rebuild `summary.csv` and `tables/` of an experiment directory. Returns the Markdown of all
/// tables.
/// Given the plan's run ids (`plan`), only its jobs' runs count.
pub fn write_report(
    experiment_dir: &Path,
    title: &str,
    strict: bool,
    select: headline::Select,
    plan: Option<&std::collections::BTreeSet<String>>,
) -> Result<String> {
    let summaries = collect_summaries_of(experiment_dir, plan)?;
    if summaries.is_empty() {
        return Err(Error::Usage(format!(
            "{} holds no finished runs",
            experiment_dir.display()
        )));
    }
    check_builds(experiment_dir, &summaries, strict)?;
    // Tables, the headline and figures show each model by the model part of its short name.
    let shown = crate::track::names::with_model_names(&summaries);
    let runs: Vec<RunMetrics> = shown.iter().map(|s| s.metrics.clone()).collect();
    let units = units_by_dataset(&summaries);
    // Temp files of reports killed earlier (tables are written by temp and rename).
    crate::track::remove_dead_temps(experiment_dir)?;
    crate::track::remove_dead_temps(&experiment_dir.join("tables"))?;
    use crate::track::tensorboard::{BEST_CHECKPOINT_TAGS, FINAL_METRIC_TAGS};
    let tags: Vec<&str> = FINAL_METRIC_TAGS
        .iter()
        .chain(&BEST_CHECKPOINT_TAGS)
        .map(|(t, _)| *t)
        .collect();
    let viewer_params: Vec<_> = summaries
        .iter()
        .map(|s| crate::track::records::viewer_params(&s.params))
        .collect();
    crate::track::tensorboard::write_hparams_experiment(experiment_dir, &viewer_params, &tags)?;
    let names = crate::track::names::names_of(&summaries);
    let named: Vec<(String, String)> = summaries
        .iter()
        .map(|s| s.metrics.run_id.clone())
        .zip(names.iter().cloned())
        .collect();
    crate::track::tensorboard::write_named_view(experiment_dir, &named)?;
    let mut summary = summary_frame_of(&shown)?;
    summary
        .insert_column(1, Column::new("name".into(), names))
        .map_err(polars_err)?;
    let mut buf = Vec::new();
    CsvWriter::new(&mut buf)
        .finish(&mut summary)
        .map_err(polars_err)?;
    atomic_write(&experiment_dir.join("summary.csv"), &buf)?;

    let agg = aggregate(&summary)?;
    let tables_dir: PathBuf = experiment_dir.join("tables");
    let mut all = format!("# {title}\n\n{} finished runs.\n\n", runs.len());
    for t in tables(&agg)? {
        let md = t.markdown(title, &units);
        let name = file_safe(&t.split);
        atomic_write(&tables_dir.join(format!("{name}.md")), md.as_bytes())?;
        atomic_write(&tables_dir.join(format!("{name}.csv")), t.csv().as_bytes())?;
        all.push_str(&md);
        all.push('\n');
    }
    let headline = headline::markdown(&runs, select);
    if !headline.is_empty() {
        atomic_write(&tables_dir.join("headline.md"), headline.as_bytes())?;
        all.push_str(&headline);
        all.push('\n');
    }
    let figures = figures::write_figures(experiment_dir, title, &runs, &units)?;
    if !figures.is_empty() {
        all.push_str("### Figures\n\n");
        for (caption, path) in &figures {
            all.push_str(&format!("{caption}\n\n![{caption}]({path})\n\n"));
        }
    }
    atomic_write(&experiment_dir.join("report.md"), all.as_bytes())?;
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, model: &str, seed: u64, r2: f64) -> RunMetrics {
        let m = Metrics {
            n: 10,
            r2,
            rmse: 1.0 - r2,
            mae: 0.5,
            mape: 0.1,
            spearman: 0.9,
        };
        RunMetrics {
            run_id: id.into(),
            job_index: 0,
            dataset: "london".into(),
            model: model.into(),
            model_kind: model.into(),
            split: "random".into(),
            seed,
            train: Some(m),
            valid: None,
            test: Some(m),
            fit_seconds: 0.1,
            facts: None,
        }
    }

    #[test]
    fn mean_and_sample_std_over_seeds() {
        let runs = vec![
            run("a", "ols", 0, 0.5),
            run("b", "ols", 1, 0.7),
            run("c", "lasso", 0, 0.9),
        ];
        let agg = aggregate(&summary_frame(&runs).unwrap()).unwrap();
        let t = &tables(&agg).unwrap()[0];
        assert_eq!(t.models, vec!["ols", "lasso"]);
        let (mean, std, n) = t.cells[0][0][0].unwrap();
        assert!((mean - 0.6).abs() < 1e-12);
        assert!((std.unwrap() - 0.02f64.sqrt()).abs() < 1e-12); // sample std of 0.5, 0.7
        assert_eq!(n, 2);
        let md = t.markdown("x", &[]);
        assert!(md.contains("n = 2 runs per cell"), "{md}");
        assert!(md.contains("| ols | 0.600 ± 0.141 |"), "{md}");
        assert!(md.contains("| lasso | 0.900 (n=1) |"), "{md}");
    }
}

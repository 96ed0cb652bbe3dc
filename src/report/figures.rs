//! Figures `report` writes into `<experiment>/figures/` as PNG (plotters, bitmap backend, a
//! system TrueType font): per split a bar chart of test R² per model and dataset with error
//! bars over seeds (the ablation chart), and per split and dataset the maps of true,
//! predicted and error log emission and the predicted-vs-true scatter of one run (the full
//! OpenCarbon model's first seed when the experiment has one, else the best model's).

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use super::file_safe;
use super::render::ramp;
use crate::error::{Error, Result};
use crate::track::atomic_write;
use crate::track::plot::{self, font_ready, map_panel, plot_err, titled_file, FONT};
use crate::track::records::RunMetrics;

fn mean_std(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let s = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
    } else {
        0.0
    };
    (m, s)
}

/// Pixels between the model names and the first panel.
const TITLE_GAP: u32 = 16;

/// Test R² per model (rows) and dataset (one panel each), mean and sample std over seeds.
fn r2_bars(path: &Path, title: &str, runs: &[&RunMetrics]) -> Result<()> {
    let mut models: Vec<&str> = Vec::new();
    let mut datasets: Vec<&str> = Vec::new();
    let mut cells: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    // OpenCarbon's rows are coloured apart from the baselines'.
    let mut opencarbon: Vec<&str> = Vec::new();
    for r in runs {
        let Some(t) = &r.test else { continue };
        if r.facts().is_opencarbon() {
            opencarbon.push(&r.model);
        }
        if !models.contains(&r.model.as_str()) {
            models.push(&r.model);
        }
        if !datasets.contains(&r.dataset.as_str()) {
            datasets.push(&r.dataset);
        }
        cells.entry((&r.model, &r.dataset)).or_default().push(t.r2);
    }
    if models.is_empty() {
        return Ok(());
    }
    let lo = cells
        .values()
        .map(|v| {
            let (m, s) = mean_std(v);
            m - s
        })
        .fold(f64::INFINITY, f64::min)
        .clamp(-1.0, 0.5);
    let names = &models;
    let label_px = TITLE_GAP
        + names
            .iter()
            .map(|m| crate::track::plot::text_width(m, 13))
            .collect::<Result<Vec<u32>>>()?
            .into_iter()
            .max()
            .unwrap_or(60);
    let panel_w = 300;
    let width = label_px + panel_w * datasets.len() as u32 + 20;
    let root = titled_file(path, title, 20, (width, 80 + 34 * models.len() as u32))?;
    let (labels, panels) = root.split_horizontally(label_px);
    let panels = panels.split_evenly((1, datasets.len()));
    for (panel, dataset) in panels.iter().zip(&datasets) {
        let mut chart = ChartBuilder::on(panel)
            .caption(*dataset, (FONT, 16))
            .margin(6)
            .x_label_area_size(36)
            .y_label_area_size(4)
            .build_cartesian_2d(lo.floor_to(0.1)..1.0f64, 0.0..models.len() as f64)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_desc("test R² (mean ± std over seeds)")
            .x_labels(6)
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 12))
            .draw()
            .map_err(plot_err)?;
        for (mi, model) in models.iter().enumerate() {
            let Some(v) = cells.get(&(*model, *dataset)) else {
                continue;
            };
            let (m, s) = mean_std(v);
            let y = (models.len() - 1 - mi) as f64;
            let colour = if opencarbon.contains(model) {
                RGBColor(31, 119, 180)
            } else {
                RGBColor(150, 150, 150)
            };
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(lo.floor_to(0.1), y + 0.15), (m, y + 0.85)],
                    colour.filled(),
                )))
                .map_err(plot_err)?;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(m - s, y + 0.5), (m + s, y + 0.5)],
                    BLACK.stroke_width(2),
                )))
                .map_err(plot_err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{m:.3}"),
                    ((m + s).min(0.93) + 0.01, y + 0.62),
                    (FONT, 11),
                )))
                .map_err(plot_err)?;
        }
    }
    // Model names, aligned with the bars' rows (the panels' plot area starts below the
    // caption and ends above the x labels).
    let (_, h) = labels.dim_in_pixel();
    let top = 6 + 24;
    let bottom = h as i32 - 6 - 36;
    let row = (bottom - top) as f64 / models.len() as f64;
    for (mi, name) in names.iter().enumerate() {
        let y = top + (row * (mi as f64 + 0.5)) as i32 - 7;
        labels
            .draw(&Text::new(name.to_string(), (6, y), (FONT, 13)))
            .map_err(plot_err)?;
    }
    root.present().map_err(plot_err)
}

trait FloorTo {
    fn floor_to(self, step: f64) -> f64;
}

impl FloorTo for f64 {
    fn floor_to(self, step: f64) -> f64 {
        (self / step).floor() * step
    }
}

/// predictions.csv rows of one run: (dataset, x, y, split, target, prediction).
use crate::track::records::{
    read_csv, read_json, CategoryImportanceRow, ModalityWeightRow, PredictionRow,
};

fn read_predictions(run_dir: &Path) -> Result<Vec<PredictionRow>> {
    read_csv(run_dir, "predictions.csv")
}

/// OpenCarbon's centre-fusion weight on the POI modality per tile (modality_weights.csv) as a
/// map, beside its mean per decile of true emission (model.json): the paper claims POIs
/// matter more where emissions are high.
fn modality_weights(path: &Path, title: &str, run_dir: &Path, city: &str) -> Result<bool> {
    if !run_dir.join("modality_weights.csv").is_file() {
        return Ok(false);
    }
    let rows: Vec<ModalityWeightRow> = read_csv(run_dir, "modality_weights.csv")?;
    let tiles: Vec<(u32, u32, f64)> = rows
        .iter()
        .filter(|r| r.dataset == city)
        .map(|r| (r.x, r.y, r.poi_weight as f64))
        .collect();
    if tiles.is_empty() {
        return Ok(false);
    }
    let model: serde_json::Value = read_json(run_dir, "model.json")?;
    let deciles: Vec<(f64, f64)> = model["poi_weight_by_emission_decile"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| Some((d["decile"].as_f64()?, d["mean_poi_weight"].as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    let root = titled_file(path, title, 18, (1000, 490))?;
    let (left, right) = root.split_horizontally(520);
    let colour = |v: f64| {
        let c = ramp(v, 0.0, 1.0);
        RGBColor(c[0], c[1], c[2])
    };
    map_panel(
        &left,
        "weight on POIs per tile",
        &tiles,
        (0.0, 1.0),
        &colour,
        "centre-fusion weight on the POI modality (image weight = 1 − it)",
    )?;
    let mut chart = ChartBuilder::on(&right)
        .caption(
            "mean weight on POIs by decile of true emission (all tiles of the job)",
            (FONT, 13),
        )
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(50)
        .build_cartesian_2d(0.5..10.5f64, 0.0..1.0f64)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("decile of true emission (1 = lowest)")
        .y_desc("mean weight on POIs")
        .x_labels(10)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 12))
        .draw()
        .map_err(plot_err)?;
    chart
        .draw_series(deciles.iter().map(|&(d, w)| {
            Rectangle::new(
                [(d - 0.35, 0.0), (d + 0.35, w)],
                RGBColor(31, 119, 180).filled(),
            )
        }))
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(true)
}

/// The SE-weighted importance of each POI category (poi_category_importance.csv).
fn category_importance(path: &Path, title: &str, run_dir: &Path) -> Result<bool> {
    if !run_dir.join("poi_category_importance.csv").is_file() {
        return Ok(false);
    }
    let rows: Vec<(String, f64)> =
        read_csv::<CategoryImportanceRow>(run_dir, "poi_category_importance.csv")?
            .into_iter()
            .map(|r| (r.category, r.importance))
            .collect();
    if rows.is_empty() {
        return Ok(false);
    }
    let max = rows.iter().map(|r| r.1).fold(0.0, f64::max).max(1e-9) * 1.15;
    let root = titled_file(path, title, 14, (720, 70 + 26 * rows.len() as u32))?;
    let mut chart = ChartBuilder::on(&root)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(110)
        .build_cartesian_2d(0.0..max, -0.5..rows.len() as f64 - 0.5)
        .map_err(plot_err)?;
    let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("share of the first POI convolution's SE-gated weight mass")
        .y_labels(rows.len())
        .y_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 12))
        .draw()
        .map_err(plot_err)?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            let y = i as f64;
            Rectangle::new(
                [(0.0, y - 0.35), (r.1, y + 0.35)],
                RGBColor(31, 119, 180).filled(),
            )
        }))
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(true)
}

/// Draw a figure into a temp file beside `path` and rename it into place, so a killed
/// report never leaves a half-written figure under the name report.md links to. The temp
/// name keeps the extension, from which the plotting backend picks the format.
fn atomically<T>(path: &Path, draw: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let ext = path.extension().unwrap_or_default().to_string_lossy();
    let tmp = crate::track::temp_path(&path.with_file_name(stem.as_ref()));
    let tmp = tmp.with_file_name(format!(
        "{}.{ext}",
        tmp.file_name().unwrap_or_default().to_string_lossy()
    ));
    let drawn = draw(&tmp);
    if drawn.is_err() || !tmp.exists() {
        let _ = std::fs::remove_file(&tmp);
        return drawn;
    }
    crate::track::fault::point("rename figure into place");
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    drawn
}

/// Write every figure; returns (caption, path relative to the experiment dir). Nothing (and a
/// warning) when no font is available.
/// `units` gives each dataset label's emission unit where known.
pub fn write_figures(
    experiment_dir: &Path,
    title: &str,
    runs: &[RunMetrics],
    units: &[(String, String)],
) -> Result<Vec<(String, String)>> {
    if !font_ready() {
        crate::track::progress::warn(
            "no TrueType font found (DejaVu Sans or $OPENCARBON_FONT): figures skipped",
        );
        return Ok(Vec::new());
    }
    let dir = experiment_dir.join("figures");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    crate::track::remove_dead_temps(&dir)?;
    let mut out = Vec::new();
    let mut splits: Vec<&str> = Vec::new();
    for r in runs {
        if !splits.contains(&r.split.as_str()) {
            splits.push(&r.split);
        }
    }
    for split in splits {
        let in_split: Vec<&RunMetrics> = runs.iter().filter(|r| r.split == split).collect();
        let name = format!("r2_by_model_{}.png", file_safe(split));
        atomically(&dir.join(&name), |p| {
            r2_bars(
                p,
                &format!("{title}: test R² by model, split {split}"),
                &in_split,
            )
        })?;
        out.push((
            format!("Test R² per model, split `{split}`"),
            format!("figures/{name}"),
        ));
        let mut datasets: Vec<&str> = Vec::new();
        for r in &in_split {
            if !datasets.contains(&r.dataset.as_str()) {
                datasets.push(&r.dataset);
            }
        }
        for dataset in datasets {
            let candidates: Vec<&&RunMetrics> =
                in_split.iter().filter(|r| r.dataset == dataset).collect();
            let Some(seed) = candidates.iter().map(|r| r.seed).min() else {
                continue;
            };
            let chosen = candidates
                .iter()
                .filter(|r| r.seed == seed)
                .filter(|r| r.facts().is_full_opencarbon())
                .min_by_key(|r| r.job_index)
                .or_else(|| {
                    candidates.iter().filter(|r| r.seed == seed).max_by(|a, b| {
                        let r2 =
                            |r: &RunMetrics| r.test.as_ref().map_or(f64::NEG_INFINITY, |t| t.r2);
                        r2(a).total_cmp(&r2(b))
                    })
                });
            let Some(run) = chosen else { continue };
            let rows = read_predictions(&experiment_dir.join(&run.run_id))?;
            // Cross-city runs: the maps of the test city (the dataset label's part after '>').
            let city = dataset.rsplit('>').next().unwrap_or(dataset);
            let mine: Vec<&PredictionRow> = rows.iter().filter(|r| r.dataset == city).collect();
            if mine.is_empty() {
                continue;
            }
            let base = format!("{}_{}", file_safe(split), file_safe(dataset));
            let what = format!("{} (seed {seed}, run {})", run.model, run.run_id);
            // The maps and scatter show the (test) city's tiles: its own unit.
            let unit = units
                .iter()
                .find(|(d, _)| d == city)
                .map(|(_, u)| u.as_str());
            let maps = plot::maps(&format!("{dataset}, split {split}: {what}"), &mine, unit)?;
            let name = format!("maps_{base}.png");
            atomic_write(&dir.join(&name), &maps.png()?)?;
            out.push((
                format!("Maps, {dataset}, split `{split}`: {what}"),
                format!("figures/{name}"),
            ));
            if let Some(scatter) =
                plot::scatter(&format!("{dataset}, {split}: {what}"), &mine, unit)?
            {
                let name = format!("scatter_{base}.png");
                atomic_write(&dir.join(&name), &scatter.png()?)?;
                out.push((
                    format!("Predicted vs true, {dataset}, split `{split}`: {what}"),
                    format!("figures/{name}"),
                ));
            }
            let importance = dir.join(format!("poi_categories_{base}.png"));
            if atomically(&importance, |p| {
                category_importance(
                    p,
                    &format!("POI categories through the SE block, {dataset}, {split}: {what}"),
                    &experiment_dir.join(&run.run_id),
                )
            })? {
                out.push((
                    format!(
                        "POI category importance (SE-weighted), {dataset}, split `{split}`: {what}"
                    ),
                    format!("figures/poi_categories_{base}.png"),
                ));
            }
            let weights = dir.join(format!("modality_weights_{base}.png"));
            let run_dir = experiment_dir.join(&run.run_id);
            if atomically(&weights, |p| {
                modality_weights(p, &format!("{dataset}, {split}: {what}"), &run_dir, city)
            })? {
                out.push((
                    format!("OpenCarbon's modality weights, {dataset}, split `{split}`: {what}"),
                    format!("figures/modality_weights_{base}.png"),
                ));
            }
        }
    }
    Ok(out)
}

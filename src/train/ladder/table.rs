//! The ladder per preset (means over its generator seeds × split seeds, with the verdicts of
//! the acceptance rule) and its markdown.

use std::collections::BTreeMap;

use serde::Serialize;

use super::rule::{accepted, AcceptanceRule, Judged, Outcome, Verdict};
use super::{Ladder, LadderRow, Scores};
use crate::data::latents::NUISANCE_PARAMETERS;

/// Mean, sample standard deviation (ddof 1) and count of the defined (non-NaN) values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
}

impl Stat {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Stat {
        let v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            f64::NAN
        };
        Stat {
            mean: if n > 0 { mean } else { f64::NAN },
            std,
            n,
        }
    }
}

/// One model configuration over a preset's runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSummary {
    pub label: String,
    pub valid_r2: Stat,
    pub test_r2: Stat,
}

/// A preset's ladder: every statistic's mean over its runs, and the verdicts.
#[derive(Debug, Clone, Serialize)]
pub struct PresetSummary {
    pub preset: String,
    pub runs: usize,
    pub t0_r2: Stat,
    pub spearman: BTreeMap<String, Stat>,
    /// The mean over runs of each run's largest |Spearman|.
    pub max_abs_spearman: Stat,
    /// The largest |mean Spearman| over the parameters: what the rule judges ("every
    /// acquisition parameter's |Spearman|", on the preset's mean).
    pub max_abs_mean_spearman: f64,
    pub baselines: Vec<ModelSummary>,
    /// The feature baseline with the highest mean validation R² (T1).
    pub best_t1: Option<ModelSummary>,
    /// The oracle (the best by mean validation R² if there are several configurations).
    pub t2: Option<ModelSummary>,
    /// Per run, T2's test R² − best T1's.
    pub headroom: Stat,
    pub ceiling_test_r2: Stat,
    pub ceiling_all_r2: Stat,
    pub morans_i: Stat,
    pub top1_share: Stat,
    pub total_mt: Stat,
    pub verdicts: Vec<Verdict>,
    pub accepted: Option<&'static str>,
}

/// Each label's scores over the runs, in label order.
fn model_summaries<'a>(
    runs: &[&'a LadderRow],
    pick: impl Fn(&'a LadderRow) -> &'a BTreeMap<String, Scores>,
) -> Vec<ModelSummary> {
    let mut labels: Vec<&String> = runs.iter().flat_map(|r| pick(r).keys()).collect();
    labels.sort();
    labels.dedup();
    labels
        .into_iter()
        .map(|label| {
            let scores: Vec<Scores> = runs
                .iter()
                .filter_map(|r| pick(r).get(label))
                .copied()
                .collect();
            ModelSummary {
                label: label.clone(),
                valid_r2: Stat::of(scores.iter().map(|s| s.valid_r2)),
                test_r2: Stat::of(scores.iter().map(|s| s.test_r2)),
            }
        })
        .collect()
}

/// The summary with the highest mean validation R² (the first in label order on a tie).
fn best_by_validation(models: &[ModelSummary]) -> Option<ModelSummary> {
    models
        .iter()
        .filter(|m| !m.valid_r2.mean.is_nan())
        .fold(None::<&ModelSummary>, |best, m| match best {
            Some(b) if b.valid_r2.mean >= m.valid_r2.mean => Some(b),
            _ => Some(m),
        })
        .cloned()
}

/// The presets in the order their first dataset appears, each judged by `rule` if given.
pub fn summarise(runs: &[LadderRow], rule: Option<&AcceptanceRule>) -> Vec<PresetSummary> {
    let mut presets: Vec<&str> = Vec::new();
    for r in runs {
        if !presets.contains(&r.preset.as_str()) {
            presets.push(&r.preset);
        }
    }
    presets
        .into_iter()
        .map(|preset| {
            let mine: Vec<&LadderRow> = runs.iter().filter(|r| r.preset == preset).collect();
            let stat = |f: fn(&LadderRow) -> f64| Stat::of(mine.iter().map(|r| f(r)));
            let mut spearman: BTreeMap<String, Stat> = BTreeMap::new();
            for name in mine.iter().flat_map(|r| r.spearman.keys()) {
                if !spearman.contains_key(name) {
                    let values = mine.iter().filter_map(|r| r.spearman.get(name).copied());
                    spearman.insert(name.clone(), Stat::of(values));
                }
            }
            let max_abs_mean_spearman = spearman
                .values()
                .filter(|s| !s.mean.is_nan())
                .fold(f64::NAN, |m, s| m.max(s.mean.abs()));
            let baselines = model_summaries(&mine, |r| &r.baselines);
            let best_t1 = best_by_validation(&baselines);
            let t2 = best_by_validation(&model_summaries(&mine, |r| &r.oracle));
            let headroom = Stat::of(mine.iter().map(|r| {
                let test = |m: &Option<ModelSummary>, of: &BTreeMap<String, Scores>| {
                    m.as_ref()
                        .and_then(|m| of.get(&m.label))
                        .map_or(f64::NAN, |s| s.test_r2)
                };
                test(&t2, &r.oracle) - test(&best_t1, &r.baselines)
            }));
            let mut summary = PresetSummary {
                preset: preset.to_string(),
                runs: mine.len(),
                t0_r2: stat(|r| r.t0_r2),
                spearman,
                max_abs_spearman: stat(|r| r.max_abs_spearman),
                max_abs_mean_spearman,
                baselines,
                best_t1,
                t2,
                headroom,
                ceiling_test_r2: stat(|r| r.ceiling_test_r2),
                ceiling_all_r2: stat(|r| r.ceiling_all_r2),
                morans_i: stat(|r| r.morans_i),
                top1_share: stat(|r| r.top1_share),
                total_mt: stat(|r| r.total_mt),
                verdicts: Vec::new(),
                accepted: None,
            };
            if let Some(rule) = rule {
                let test_mean =
                    |m: &Option<ModelSummary>| m.as_ref().map_or(f64::NAN, |m| m.test_r2.mean);
                let judged = Judged {
                    t0_r2: summary.t0_r2.mean,
                    max_abs_spearman: summary.max_abs_mean_spearman,
                    best_t1_test_r2: test_mean(&summary.best_t1),
                    t2_test_r2: test_mean(&summary.t2),
                    morans_i: summary.morans_i.mean,
                    top1_share: summary.top1_share.mean,
                    total_mt: summary.total_mt.mean,
                };
                summary.verdicts = rule.judge(preset, &judged);
                summary.accepted = Some(accepted(&summary.verdicts));
            }
            summary
        })
        .collect()
}

fn num(v: f64, decimals: usize) -> String {
    if v.is_nan() {
        "—".into()
    } else {
        format!("{v:.decimals$}")
    }
}

/// `mean ± std`, the count when some runs had no value.
fn stat(s: &Stat, runs: usize, decimals: usize) -> String {
    let mut out = num(s.mean, decimals);
    if !s.std.is_nan() {
        out.push_str(&format!(" ± {}", num(s.std, decimals)));
    }
    if s.n < runs && s.n > 0 {
        out.push_str(&format!(" (n={})", s.n));
    }
    out
}

fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
    let mut out = line(header);
    out.push_str(&line(&vec!["---".to_string(); header.len()]));
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

fn strings(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// The ladder as markdown: presets, verdicts, acquisition parameters, models, runs.
pub fn markdown(ladder: &Ladder) -> String {
    let mut out = format!("# Premise ladder of `{}`\n\n", ladder.experiment);
    out.push_str(&format!(
        "Split `{}`, {} runs (dataset × seed). R² is that of ln emission over the target \
         tiles (emission > 0), on the test part unless said otherwise; T0 is out of fold over \
         every target tile, whole acquisition strips held out. Rule: {}.\n\n",
        ladder.split,
        ladder.runs.len(),
        match &ladder.rule_file {
            Some(f) => format!("`{}`", f.display()),
            None => "none (statistics only; `--rule <file>` judges them)".into(),
        }
    ));

    out.push_str("## Presets (mean ± std over generator seeds × split seeds)\n\n");
    let header = strings(&[
        "preset",
        "runs",
        "T0 R²",
        "max \\|mean ρ\\|",
        "best T1",
        "T1 test R²",
        "T2 test R²",
        "T2 − T1",
        "ceiling (test)",
        "ceiling (all)",
        "Moran's I",
        "top-1 % share",
        "total Mt CO2/yr",
    ]);
    let rows: Vec<Vec<String>> = ladder
        .presets
        .iter()
        .map(|p| {
            let test = |m: &Option<ModelSummary>| {
                m.as_ref()
                    .map_or("—".into(), |m| stat(&m.test_r2, p.runs, 3))
            };
            vec![
                p.preset.clone(),
                p.runs.to_string(),
                stat(&p.t0_r2, p.runs, 3),
                num(p.max_abs_mean_spearman, 3),
                p.best_t1.as_ref().map_or("—".into(), |m| m.label.clone()),
                test(&p.best_t1),
                test(&p.t2),
                stat(&p.headroom, p.runs, 3),
                stat(&p.ceiling_test_r2, p.runs, 3),
                stat(&p.ceiling_all_r2, p.runs, 3),
                stat(&p.morans_i, p.runs, 3),
                stat(&p.top1_share, p.runs, 3),
                stat(&p.total_mt, p.runs, 2),
            ]
        })
        .collect();
    out.push_str(&table(&header, &rows));

    if ladder.rule.is_some() {
        out.push_str("\n## Acceptance\n\n");
        let tests: Vec<String> = ladder
            .presets
            .first()
            .map(|p| {
                p.verdicts
                    .iter()
                    .map(|v| v.test.replace('|', "\\|"))
                    .collect()
            })
            .unwrap_or_default();
        let mut header = vec!["preset".to_string()];
        header.extend(
            tests
                .iter()
                .enumerate()
                .map(|(i, t)| format!("{}. {t}", i + 1)),
        );
        header.push("accepted".into());
        let rows: Vec<Vec<String>> = ladder
            .presets
            .iter()
            .map(|p| {
                let mut row = vec![p.preset.clone()];
                row.extend(p.verdicts.iter().map(|v| {
                    let value = num(v.value, 3);
                    match v.outcome {
                        Outcome::Pass => format!("pass ({value})"),
                        Outcome::Fail => format!("**FAIL** ({value})"),
                        Outcome::Undefined => "**undefined**".into(),
                        Outcome::NoReference => format!("no reference ({value})"),
                    }
                }));
                row.push(p.accepted.unwrap_or("—").into());
                row
            })
            .collect();
        out.push_str(&table(&header, &rows));
    }

    out.push_str("\n## Acquisition parameters: Spearman ρ with ln emission (mean ± std)\n\n");
    let params: Vec<&str> = NUISANCE_PARAMETERS
        .iter()
        .copied()
        .filter(|n| ladder.presets.iter().any(|p| p.spearman.contains_key(*n)))
        .collect();
    let mut header = vec!["preset".to_string()];
    header.extend(params.iter().map(|p| p.to_string()));
    let rows: Vec<Vec<String>> = ladder
        .presets
        .iter()
        .map(|p| {
            let mut row = vec![p.preset.clone()];
            row.extend(params.iter().map(|n| {
                p.spearman
                    .get(*n)
                    .map_or("—".into(), |s| stat(s, p.runs, 3))
            }));
            row
        })
        .collect();
    out.push_str(&table(&header, &rows));

    out.push_str(
        "\n## T1 feature baselines and T2 oracle (mean ± std; * chosen by validation R²)\n\n",
    );
    let header = strings(&["preset", "rung", "model", "valid R²", "test R²"]);
    let mut rows = Vec::new();
    for p in &ladder.presets {
        let mut add = |rung: &str, m: &ModelSummary, chosen: bool| {
            rows.push(vec![
                p.preset.clone(),
                rung.to_string(),
                format!("{}{}", m.label, if chosen { " *" } else { "" }),
                stat(&m.valid_r2, p.runs, 3),
                stat(&m.test_r2, p.runs, 3),
            ])
        };
        for m in &p.baselines {
            add(
                "T1",
                m,
                p.best_t1.as_ref().is_some_and(|b| b.label == m.label),
            );
        }
        if let Some(m) = &p.t2 {
            add("T2", m, true);
        }
    }
    out.push_str(&table(&header, &rows));

    out.push_str("\n## Runs (T1: the preset's best baseline; T2: its oracle)\n\n");
    let header = strings(&[
        "dataset",
        "generator seed",
        "split seed",
        "target tiles",
        "test tiles",
        "strips",
        "T0 R²",
        "max \\|ρ\\|",
        "T1 test R²",
        "T2 test R²",
        "ceiling (test)",
        "ceiling (all)",
        "Moran's I",
        "top-1 % share",
        "total Mt CO2/yr",
    ]);
    let rows: Vec<Vec<String>> = ladder
        .runs
        .iter()
        .map(|r| {
            let p = ladder.presets.iter().find(|p| p.preset == r.preset);
            let test = |m: Option<&ModelSummary>, of: &BTreeMap<String, Scores>| {
                m.and_then(|m| of.get(&m.label))
                    .map_or(f64::NAN, |s| s.test_r2)
            };
            vec![
                r.dataset.clone(),
                r.generator_seed.map_or("—".into(), |s| s.to_string()),
                r.split_seed.to_string(),
                r.target_tiles.to_string(),
                r.test_tiles.to_string(),
                r.t0_strips.to_string(),
                num(r.t0_r2, 3),
                num(r.max_abs_spearman, 3),
                num(test(p.and_then(|p| p.best_t1.as_ref()), &r.baselines), 3),
                num(test(p.and_then(|p| p.t2.as_ref()), &r.oracle), 3),
                num(r.ceiling_test_r2, 3),
                num(r.ceiling_all_r2, 3),
                num(r.morans_i, 3),
                num(r.top1_share, 3),
                num(r.total_mt, 2),
            ]
        })
        .collect();
    out.push_str(&table(&header, &rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(preset: &str, seed: u64, lasso: (f64, f64), rf: (f64, f64), oracle: f64) -> LadderRow {
        let scores = |(valid_r2, test_r2)| Scores { valid_r2, test_r2 };
        LadderRow {
            dataset: format!("{preset}-s{seed}"),
            preset: preset.into(),
            generator_seed: Some(seed),
            seed,
            split_seed: seed,
            target_tiles: 100,
            test_tiles: 20,
            t0_r2: 0.01 * seed as f64,
            t0_strips: 10,
            spearman: [
                ("acq_gain".to_string(), 0.05),
                ("acq_haze".to_string(), -0.2 + 0.1 * seed as f64),
            ]
            .into_iter()
            .collect(),
            max_abs_spearman: 0.2,
            baselines: [
                ("lasso(a=0.1)".to_string(), scores(lasso)),
                ("random_forest(t=100)".to_string(), scores(rf)),
            ]
            .into_iter()
            .collect(),
            oracle: [(
                "oracle(t=300,d=6,lr=0.05)".to_string(),
                scores((0.9, oracle)),
            )]
            .into_iter()
            .collect(),
            ceiling_test_r2: 0.8,
            ceiling_all_r2: 0.82,
            morans_i: 0.6,
            top1_share: f64::NAN,
            total_mt: 10.0,
        }
    }

    #[test]
    fn stats_skip_undefined_values() {
        let s = Stat::of([1.0, f64::NAN, 3.0]);
        assert_eq!((s.mean, s.n), (2.0, 2));
        assert!((s.std - 2f64.sqrt()).abs() < 1e-12);
        assert!(Stat::of([5.0]).std.is_nan());
        assert!(Stat::of([f64::NAN]).mean.is_nan());
    }

    /// The best baseline is chosen by mean validation R² (lasso here), even though the
    /// forest has the better test R²; headroom is per run against that choice.
    #[test]
    fn best_t1_is_chosen_on_validation_and_headroom_follows_it() {
        let runs = vec![
            run("a6", 0, (0.5, 0.3), (0.4, 0.6), 0.8),
            run("a6", 1, (0.5, 0.5), (0.45, 0.7), 0.9),
            run("b6", 0, (0.1, 0.1), (0.2, 0.2), 0.3),
        ];
        let s = summarise(&runs, None);
        assert_eq!(s.len(), 2);
        let a = &s[0];
        assert_eq!(a.runs, 2);
        let best = a.best_t1.as_ref().unwrap();
        assert_eq!(best.label, "lasso(a=0.1)");
        assert!((best.test_r2.mean - 0.4).abs() < 1e-12);
        assert!((a.headroom.mean - 0.45).abs() < 1e-12, "{:?}", a.headroom);
        assert_eq!(s[1].best_t1.as_ref().unwrap().label, "random_forest(t=100)");
        // Spearman: acq_haze means -0.15, acq_gain 0.05: the judged maximum is 0.15, while
        // the mean of each run's maximum is 0.2.
        assert!((a.max_abs_mean_spearman - 0.15).abs() < 1e-12);
        assert!(a.verdicts.is_empty() && a.accepted.is_none());
    }

    #[test]
    fn markdown_shows_every_section_and_judges_with_a_rule() {
        let runs = vec![run("a6", 0, (0.5, 0.3), (0.4, 0.6), 0.8)];
        let rule: AcceptanceRule = serde_yaml::from_str(
            "{t0_max: 0.05, spearman_max: 0.1, t1_min: 0.3, t2_min: 0.75, headroom_min: 0.15, morans_i: [0.5, 0.85], top1_share: [0.1, 0.6], total_factor: 3, reference_total_mt: {a6: 12}}",
        )
        .unwrap();
        let presets = summarise(&runs, Some(&rule));
        assert_eq!(
            presets[0].accepted,
            Some("no"),
            "the top-1 % share is undefined"
        );
        let ladder = Ladder {
            experiment: "e".into(),
            split: "block4".into(),
            rule_file: Some("acceptance.yaml".into()),
            rule: Some(rule),
            runs,
            presets,
        };
        let md = markdown(&ladder);
        for part in [
            "## Acceptance",
            "| a6 | pass (0.000) | **FAIL** (0.200) | pass (0.300) | pass (0.800) | pass (0.500) | pass (0.600) | **undefined** | pass (10.000) | no |",
            "| a6 | T1 | lasso(a=0.1) * | 0.500 | 0.300 |",
            "| a6 | T2 | oracle(t=300,d=6,lr=0.05) * |",
            "| a6-s0 | 0 | 0 | 100 | 20 | 10 | 0.000 | 0.200 | 0.300 | 0.800 |",
            "acq_haze",
        ] {
            assert!(md.contains(part), "{part}\n{md}");
        }
    }
}

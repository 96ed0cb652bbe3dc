//! Short run names, one style for every model, for the places a person reads runs by: the
//! TensorBoard run list (`<experiment>/tensorboard/<name>/`), MLflow's run names and `plan`.
//! A name is the model's kind, its ablation tags, only the hyperparameters that vary between
//! the runs of that kind being named together, then dataset, split and seed:
//! `lasso alpha=0.01 london block4 s0`, `opencarbon no-nb london random s2`. The full
//! resolved configuration stays in config.yaml and the params; the run directory stays the
//! run id.

use super::records::{ModelFacts, ParamValue, RunSummary};

/// What naming one run needs: its id, params (`records::run_params`) and facts.
pub struct Nameable<'a> {
    pub run_id: &'a str,
    pub params: &'a [(String, ParamValue)],
    pub facts: &'a ModelFacts,
}

fn param<'a>(run: &'a Nameable, key: &str) -> Option<&'a ParamValue> {
    run.params.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// A value as a name shows it: no spaces, a list's items joined by `/`.
fn shown(value: &ParamValue) -> String {
    let text = value.to_string();
    let bare = text.trim_matches(|c| c == '[' || c == ']');
    if bare.len() + 2 == text.len() {
        bare.replace(',', "/").replace(' ', "")
    } else {
        text.replace(' ', "")
    }
}

/// The model part of each run's name: `<kind>[ <tag>...][ <field>=<value>...]`, the tags
/// the modules and inputs switched off (`no-se`, `no-cl`, `no-image`, `no-poi`, `no-nb`), the
/// fields those `model.*` params whose values differ between the runs of the same kind.
pub fn model_names(runs: &[Nameable]) -> Vec<String> {
    runs.iter()
        .map(|run| {
            let kind = &run.facts.family;
            let mut parts = vec![kind.clone()];
            for module in &run.facts.modules_off {
                parts.push(match module.as_str() {
                    "contrastive" => "no-cl".into(),
                    other => format!("no-{other}"),
                });
            }
            for input in &run.facts.inputs_off {
                parts.push(match input.as_str() {
                    "neighborhood" => "no-nb".into(),
                    other => format!("no-{other}"),
                });
            }
            let same_kind: Vec<&Nameable> =
                runs.iter().filter(|r| &r.facts.family == kind).collect();
            for (key, value) in run.params {
                let Some(field) = key.strip_prefix("model.") else {
                    continue;
                };
                if super::records::MODULE_SWITCHES.contains(&field) {
                    continue; // a tag already says it
                }
                if same_kind.iter().any(|r| param(r, key) != Some(value)) {
                    parts.push(format!("{field}={}", shown(value)));
                }
            }
            parts.join(" ")
        })
        .collect()
}

/// Each run's short name: `<model name> <dataset> <split> s<seed>`, unique among `runs` (a
/// name two runs would share, e.g. two random splits that differ only in their fractions,
/// gets the run id appended).
pub fn run_names(runs: &[Nameable]) -> Vec<String> {
    let text =
        |run: &Nameable, key: &str| param(run, key).map(|v| v.to_string()).unwrap_or_default();
    let names: Vec<String> = model_names(runs)
        .into_iter()
        .zip(runs)
        .map(|(model, run)| {
            format!(
                "{model} {} {} s{}",
                text(run, "dataset"),
                text(run, "split"),
                text(run, "seed")
            )
        })
        .collect();
    names
        .iter()
        .zip(runs)
        .map(|(name, run)| {
            if names.iter().filter(|n| *n == name).count() > 1 {
                format!("{name} {}", run.run_id)
            } else {
                name.clone()
            }
        })
        .collect()
}

/// `name` applied to `summaries` (the runs of one experiment that count) seen as `Nameable`s.
fn named<T>(summaries: &[RunSummary], name: impl Fn(&[Nameable]) -> T) -> T {
    let facts: Vec<ModelFacts> = summaries.iter().map(|s| s.metrics.facts()).collect();
    let nameable: Vec<Nameable> = summaries
        .iter()
        .zip(&facts)
        .map(|(s, f)| Nameable {
            run_id: &s.metrics.run_id,
            params: &s.params,
            facts: f,
        })
        .collect();
    name(&nameable)
}

/// The short name of each of `summaries` (the runs of one experiment that count).
pub fn names_of(summaries: &[RunSummary]) -> Vec<String> {
    named(summaries, run_names)
}

/// `summaries` as tables, figures and pivots show them: each run's `metrics.model` (the long
/// label, which stays in the `model` param) replaced by the model part of its short name.
pub fn with_model_names(summaries: &[RunSummary]) -> Vec<RunSummary> {
    named(summaries, model_names)
        .into_iter()
        .zip(summaries)
        .map(|(name, s)| {
            let mut shown = s.clone();
            shown.metrics.model = name;
            shown
        })
        .collect()
}

/// Longest directory name written, in bytes (file systems allow 255).
const MAX_DIR_NAME: usize = 200;

/// `name` of run `run_id` as a directory name: `/` (a path in a value) becomes `∕`, a
/// leading dot `_`, and a name too long for a file system is cut and ends with the run id.
pub fn as_dir_name(name: &str, run_id: &str) -> String {
    let safe = name.replace('/', "∕");
    let safe = match safe.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None => safe,
    };
    if safe.len() <= MAX_DIR_NAME {
        return safe;
    }
    let mut cut = MAX_DIR_NAME - run_id.len() - 4;
    while !safe.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… {run_id}", &safe[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        kind: &str,
        model: &[(&str, ParamValue)],
        off: &[&str],
        seed: u64,
    ) -> (Vec<(String, ParamValue)>, ModelFacts) {
        let mut params = vec![
            ("dataset".to_string(), ParamValue::Text("london".into())),
            ("split".into(), ParamValue::Text("block4".into())),
            ("seed".into(), ParamValue::Number(seed as f64)),
            ("kind".into(), ParamValue::Text(kind.into())),
        ];
        params.extend(model.iter().map(|(k, v)| (format!("model.{k}"), v.clone())));
        let facts = ModelFacts {
            family: kind.into(),
            modules_off: vec![],
            inputs_off: off.iter().map(|s| s.to_string()).collect(),
        };
        (params, facts)
    }

    /// Only what varies within a kind is named, ablations are tags, every model has the one
    /// style, and names are unique (two runs that differ in nothing named get their ids).
    #[test]
    fn names_are_short_uniform_and_unique() {
        use ParamValue::*;
        let runs = [
            run(
                "lasso",
                &[("alpha", Number(0.01)), ("tol", Number(1e-6))],
                &[],
                0,
            ),
            run(
                "lasso",
                &[("alpha", Number(0.1)), ("tol", Number(1e-6))],
                &[],
                0,
            ),
            run(
                "opencarbon",
                &[
                    ("lr", Number(0.002)),
                    ("image_widths", Text("[16, 32]".into())),
                ],
                &[],
                1,
            ),
            run(
                "opencarbon",
                &[
                    ("lr", Number(0.002)),
                    ("image_widths", Text("[16, 32]".into())),
                ],
                &["neighborhood"],
                1,
            ),
            run("graphsage", &[("hidden", Number(64.0))], &[], 0),
            run(
                "graphsage",
                &[
                    ("hidden", Number(64.0)),
                    ("embeddings_from", Text("results/main".into())),
                ],
                &[],
                0,
            ),
            run("ols", &[], &[], 2),
            run("ols", &[], &[], 2),
        ];
        let ids: Vec<String> = (0..runs.len()).map(|i| format!("id{i}")).collect();
        let nameable: Vec<Nameable> = runs
            .iter()
            .zip(&ids)
            .map(|((p, f), id)| Nameable {
                run_id: id,
                params: p,
                facts: f,
            })
            .collect();
        let names = run_names(&nameable);
        assert_eq!(
            names,
            [
                "lasso alpha=0.01 london block4 s0",
                "lasso alpha=0.1 london block4 s0",
                "opencarbon london block4 s1",
                "opencarbon no-nb london block4 s1",
                "graphsage london block4 s0",
                "graphsage embeddings_from=results/main london block4 s0",
                "ols london block4 s2 id6",
                "ols london block4 s2 id7",
            ]
        );
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        assert_eq!(
            as_dir_name(&names[5], "id5"),
            "graphsage embeddings_from=results∕main london block4 s0"
        );
        let long = format!(
            "opencarbon {} london block4 s0",
            "image_widths=16/32/64 ".repeat(20)
        );
        let dir = as_dir_name(&long, "abcdef0123");
        assert!(
            dir.len() <= MAX_DIR_NAME && dir.ends_with("… abcdef0123"),
            "{dir}"
        );
        assert_eq!(shown(&Text("[16, 32]".into())), "16/32");
    }
}

//! latents.csv through the CLI: no model but the oracle reads it, the oracle and the ladder
//! need it, and the ladder's tables.

use super::{read, Cli};

/// A cheap configuration of every model kind but the oracle. A kind the CLI knows that is
/// missing here fails `every_model_but_the_oracle_runs_with_garbage_latents`.
const CHEAP_MODELS: &[(&str, &str)] = &[
    ("lasso", "{kind: lasso, alpha: 0.01}"),
    // smartcore refuses more features than training rows: POI features only.
    (
        "lasso_smartcore",
        "{kind: lasso_smartcore, alpha: 0.01, image: false}",
    ),
    ("ols", "{kind: ols}"),
    ("ridge", "{kind: ridge, alpha: 1.0}"),
    ("linear_probe", "{kind: linear_probe, image_widths: [4], alphas: [1.0]}"),
    ("random_forest", "{kind: random_forest, n_trees: 8}"),
    ("gbdt", "{kind: gbdt, n_trees: 20}"),
    ("mlp", "{kind: mlp, max_epochs: 20, min_epochs: 10, patience: 5}"),
    (
        "graphsage",
        "{kind: graphsage, hidden: 16, max_epochs: 20, min_epochs: 10, patience: 5}",
    ),
    (
        "opencarbon",
        "{kind: opencarbon, embedding_dim: 8, image_widths: [8], max_epochs: 2, valid_every: 1, min_epochs: 2, batch_size: 16, contrastive_epoch: 0}",
    ),
];

/// The model kinds the CLI knows, from its answer to an unknown one.
fn model_kinds(cli: &Cli) -> Vec<String> {
    cli.write(
        "kinds.yaml",
        "name: k\ndatasets: [{path: city}]\nmodels: [{kind: no_such_model}]\nsplits: [{kind: random}]\nseeds: [0]\n",
    );
    let r = cli.run(&["plan", "kinds.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let list = r
        .stderr
        .split("expected one of ")
        .nth(1)
        .unwrap_or_else(|| panic!("{}", r.stderr));
    list.lines()
        .next()
        .unwrap()
        .split(", ")
        .map(|k| k.trim().to_string())
        .collect()
}

fn done_runs(cli: &Cli, experiment: &str) -> usize {
    std::fs::read_dir(cli.path(&format!("results/{experiment}")))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("DONE").is_file())
        .count()
}

/// latents.csv is a directory holding garbage: any model that tried to read it would fail.
#[test]
fn every_model_but_the_oracle_runs_with_garbage_latents() {
    let cli = Cli::in_temp_dir();
    cli.tiny_city("city");
    // Whatever the generator wrote there is replaced.
    let _ = std::fs::remove_file(cli.path("city/latents.csv"));
    cli.write("city/latents.csv/garbage", "\u{0}not,a\ncsv");
    let kinds = model_kinds(&cli);
    assert!(kinds.contains(&"oracle".to_string()), "{kinds:?}");
    let mut models = String::new();
    for kind in kinds.iter().filter(|k| *k != "oracle") {
        let (_, yaml) = CHEAP_MODELS
            .iter()
            .find(|(k, _)| k == kind)
            .unwrap_or_else(|| panic!("add a cheap configuration of `{kind}` to CHEAP_MODELS"));
        models.push_str(&format!("  - {yaml}\n"));
    }
    cli.write(
        "exp.yaml",
        &format!("name: all\nimage_size: 16\npoi_raster_size: 16\ndatasets: [{{path: city}}]\nmodels:\n{models}splits: [{{kind: random, fractions: [0.8, 0.1, 0.1]}}]\nseeds: [0]\n"),
    );
    let r = cli.run(&["run", "exp.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(done_runs(&cli, "all"), kinds.len() - 1);
    let r = cli.run(&["inspect", "city"]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    // The oracle is refused before any job runs, naming the file.
    cli.write(
        "oracle.yaml",
        "name: o\ndatasets: [{path: city}]\nmodels: [{kind: oracle}]\nsplits: [{kind: random}]\nseeds: [0]\n",
    );
    let r = cli.run(&["run", "oracle.yaml"]).without_progress();
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("city/latents.csv: is not a regular file"),
        "{}",
        r.stderr
    );
}

/// A deterministic value in [0, 1) unrelated to emission.
fn noise(i: u64) -> f64 {
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64
}

/// latents.csv of the tiny city: a visible column that is the emission, the exact ln
/// emission before the inventory's error, strips by column x, noise as acquisition gain.
fn write_latents(cli: &Cli) {
    let mut out = String::from(
        "x,y,floor_office_m2,acq_strip,acq_gain,acq_season,log_emission_pre_error,hidden_coal_share\n",
    );
    for (i, line) in read(&cli.path("city/tiles.csv"))
        .lines()
        .skip(1)
        .enumerate()
    {
        let f: Vec<&str> = line.split(',').collect();
        let e: f64 = f[2].parse().unwrap();
        let ln = if e > 0.0 {
            e.ln().to_string()
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{},{},{},{},{},1,{ln},{ln}\n",
            f[0],
            f[1],
            100.0 * e,
            f[0],
            noise(i as u64)
        ));
    }
    cli.write("city/latents.csv", &out);
}

#[test]
fn the_oracle_and_the_ladder_need_latents_csv() {
    let cli = Cli::in_temp_dir();
    cli.tiny_city("city");
    // A city without latents first, whether or not the generator writes them.
    let _ = std::fs::remove_file(cli.path("city/latents.csv"));
    cli.write(
        "exp.yaml",
        "name: lad\ndatasets: [{path: city}]\nmodels:\n  - {kind: lasso, alpha: 0.01}\n  - {kind: gbdt, n_trees: 30}\n  - {kind: oracle, n_trees: 100}\nsplits: [{kind: block, block_tiles: 2}]\nseeds: [0, 1]\n",
    );
    cli.write(
        "rule.yaml",
        "t0_max: 0.05\nspearman_max: 0.1\nt1_min: 0.3\nt2_min: 0.75\nheadroom_min: 0.15\nmorans_i: [0.5, 0.85]\ntop1_share: [0.1, 0.6]\ntotal_factor: 3\nreference_total_mt: {london6: 40}\n",
    );
    let r = cli.run(&["run", "exp.yaml"]).without_progress();
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.ends_with(
            "city/latents.csv: dataset `tiny` has no latents.csv: the oracle runs only on generated cities"
        ),
        "{}",
        r.stderr
    );
    let r = cli.run(&["ladder", "exp.yaml"]);
    assert_eq!(r.code, 1, "nothing has run yet: {}", r.stderr);
    assert!(
        r.stderr.contains("the experiment is incomplete"),
        "{}",
        r.stderr
    );

    write_latents(&cli);
    let r = cli.run(&["run", "exp.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = cli.run(&["ladder", "exp.yaml", "--rule", "rule.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with("# Premise ladder of `lad`"),
        "{}",
        r.stdout
    );
    let md = read(&cli.path("results/lad/ladder.md"));
    assert_eq!(md, r.stdout);
    let json = read(&cli.path("results/lad/ladder.json"));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["runs"].as_array().unwrap().len(), 2);
    let p = &v["presets"][0];
    assert_eq!(p["preset"], "tiny");
    assert!(p["t2"]["test_r2"]["mean"].as_f64().unwrap() > 0.8, "{p}");
    assert_eq!(p["ceiling_all_r2"]["mean"].as_f64(), Some(1.0));
    assert!(
        p["spearman"]["acq_season"]["mean"].is_null(),
        "a constant has no Spearman"
    );
    assert!(p["spearman"]["acq_gain"]["mean"].as_f64().unwrap().abs() < 0.5);
    let verdicts = p["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), 8);
    assert_eq!(verdicts[7]["outcome"], "no_reference");
    assert!(md.contains("## Acceptance"), "{md}");

    // The same again, byte for byte.
    let again = cli.run(&["ladder", "exp.yaml", "--rule", "rule.yaml"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(read(&cli.path("results/lad/ladder.json")), json);
    assert_eq!(again.stdout, md);

    // A bad rule names its field; a dataset without latents.csv stops the ladder.
    cli.write("bad_rule.yaml", "t0_max: 0.05\n");
    let r = cli
        .run(&["ladder", "exp.yaml", "--rule", "bad_rule.yaml"])
        .without_progress();
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("missing field"), "{}", r.stderr);
    std::fs::remove_file(cli.path("city/latents.csv")).unwrap();
    let r = cli.run(&["ladder", "exp.yaml"]).without_progress();
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("has no latents.csv: the ladder runs only on generated cities"),
        "{}",
        r.stderr
    );
}

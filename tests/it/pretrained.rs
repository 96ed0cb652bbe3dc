//! Pretrained image encoders through the CLI: OpenCarbon fine-tuning or freezing converted
//! torchvision weights, the linear probe of a pretrained and of a random encoder, and a weights
//! file that does not fit, refused before any job starts.

use std::collections::HashMap;

use super::{read, Cli};

/// A `resnet` encoder's weights with widths [4, 8] and one block per stage, in torchvision's
/// names and layouts with the converter's metadata (scripts/convert_torchvision_resnet.py),
/// values from a simple formula; `metadata: false` leaves the normalisation out.
fn write_resnet_weights(cli: &Cli, rel: &str, metadata: bool) {
    let mut tensors: Vec<(String, Vec<usize>)> = vec![("conv1.weight".into(), vec![4, 3, 7, 7])];
    let bn = |prefix: &str, c: usize| -> Vec<(String, Vec<usize>)> {
        ["weight", "bias", "running_mean", "running_var"]
            .iter()
            .map(|f| (format!("{prefix}.{f}"), vec![c]))
            .collect()
    };
    tensors.extend(bn("bn1", 4));
    for (stage, cin, cout) in [(1, 4, 4), (2, 4, 8)] {
        let p = format!("layer{stage}.0");
        tensors.push((format!("{p}.conv1.weight"), vec![cout, cin, 3, 3]));
        tensors.extend(bn(&format!("{p}.bn1"), cout));
        tensors.push((format!("{p}.conv2.weight"), vec![cout, cout, 3, 3]));
        tensors.extend(bn(&format!("{p}.bn2"), cout));
        if cin != cout || stage > 1 {
            tensors.push((format!("{p}.downsample.0.weight"), vec![cout, cin, 1, 1]));
            tensors.extend(bn(&format!("{p}.downsample.1"), cout));
        }
    }
    let values: Vec<Vec<u8>> = tensors
        .iter()
        .enumerate()
        .map(|(t, (name, shape))| {
            let n: usize = shape.iter().product();
            (0..n)
                .map(|i| {
                    let wave = ((i * 7 + t * 13) as f32 * 0.37).sin();
                    if name.ends_with("running_var") {
                        1.0 + 0.5 * wave * wave
                    } else if name.ends_with("weight") && shape.len() == 1 {
                        1.0 + 0.1 * wave
                    } else {
                        0.3 * wave
                    }
                })
                .flat_map(f32::to_le_bytes)
                .collect()
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&values)
        .map(|((name, shape), bytes)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    let meta: HashMap<String, String> = if metadata {
        HashMap::from([
            ("input_mean".into(), "[0.485, 0.456, 0.406]".into()),
            ("input_std".into(), "[0.229, 0.224, 0.225]".into()),
        ])
    } else {
        HashMap::new()
    };
    std::fs::write(
        cli.path(rel),
        safetensors::serialize(views, &Some(meta)).unwrap(),
    )
    .unwrap();
}

const EXPERIMENT: &str = "\
name: pre
image_size: 32
poi_raster_size: 32
datasets: [{preset: tiny}]
models:
  - {kind: opencarbon, image_encoder: resnet, image_widths: [4, 8], image_blocks: 1, image_weights: w.safetensors, image_training: [frozen, fine_tune], embedding_dim: 8, max_epochs: 2, min_epochs: 2, valid_every: 1, batch_size: 16}
  - {kind: linear_probe, image_encoder: resnet, image_widths: [4, 8], image_blocks: 1, image_weights: w.safetensors}
  - {kind: linear_probe, image_encoder: resnet, image_widths: [4, 8], image_blocks: 1}
splits: [{kind: random}]
seeds: [0]
";

#[test]
fn pretrained_encoders_train_and_probe() {
    let cli = Cli::in_temp_dir();
    write_resnet_weights(&cli, "w.safetensors", true);
    cli.write("pre.yaml", EXPERIMENT);
    let r = cli.run(&["run", "pre.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary = read(&cli.path("results/pre/summary.csv"));
    assert_eq!(summary.lines().count(), 5, "4 runs: {summary}");
    let mut probes = 0;
    for entry in std::fs::read_dir(cli.path("results/pre"))
        .unwrap()
        .flatten()
    {
        let dir = entry.path();
        if !dir.join("DONE").is_file() {
            continue;
        }
        let log = read(&dir.join("run.log"));
        let config = read(&dir.join("config.yaml"));
        let model: serde_json::Value =
            serde_json::from_str(&read(&dir.join("model.json"))).unwrap();
        let pretrained = config.contains("image_weights: w.safetensors");
        assert_eq!(
            log.contains("pretrained weights w.safetensors (content hash "),
            pretrained,
            "{log}"
        );
        if config.contains("kind: linear_probe") {
            probes += 1;
            // The penalty is one of the defaults, chosen on validation R².
            let alpha = model["alpha"].as_f64().unwrap();
            let tried = model["valid_r2_by_alpha"].as_array().unwrap();
            let score = |t: &serde_json::Value| t["valid_r2"].as_f64().unwrap();
            let top = tried.iter().map(score).fold(f64::NEG_INFINITY, f64::max);
            // The first penalty reaching the best validation R² is kept.
            let first_best = tried.iter().find(|t| score(t) == top).unwrap();
            assert_eq!(first_best["alpha"].as_f64().unwrap(), alpha, "{model}");
            assert_eq!(model["features"], 8);
        } else {
            assert!(pretrained);
            assert!(
                model["image_weights"]["content_hash"].is_string(),
                "{model}"
            );
        }
    }
    assert_eq!(probes, 2);

    // A file without the converter's metadata is refused before any job starts.
    write_resnet_weights(&cli, "w.safetensors", false);
    let r = cli.run(&["run", "pre.yaml", "--force"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("w.safetensors") && r.stderr.contains("input_mean"),
        "{}",
        r.stderr
    );
}

const PRETRAIN: &str = "\
name: ssl
image_size: 32
poi_raster_size: 32
datasets: [{preset: tiny}]
pretrain:
  - {name: contrast, method: simclr, image_widths: [4, 8], image_blocks: 1, epochs: 2, batch_size: 16, unlabelled: [{preset: tiny, seed: 100}, {preset: tiny, seed: 101}]}
  - {name: triplets, method: tile2vec, image_widths: [4, 8], image_blocks: 1, epochs: 2, batch_size: 16, unlabelled: [{preset: tiny, seed: 100}]}
models:
  - {kind: linear_probe, image_encoder: resnet, image_widths: [4, 8], image_blocks: 1, image_weights: [pretrain:contrast, pretrain:triplets]}
  - {kind: opencarbon, image_encoder: resnet, image_widths: [4, 8], image_blocks: 1, image_weights: pretrain:triplets, image_training: frozen, embedding_dim: 8, max_epochs: 2, min_epochs: 2, valid_every: 1, batch_size: 16}
splits: [{kind: random}]
seeds: [0]
";

/// Two pretraining stages (SimCLR and Tile2Vec on other generator seeds of the preset) run
/// once before the jobs, into cached directories the models' `pretrain:<name>` resolve to;
/// a second run reuses them; a scored city as unlabelled data, an unknown stage and an encoder
/// that is not the stage's are refused before anything runs.
#[test]
fn pretraining_stages_run_once_and_feed_the_models() {
    let cli = Cli::in_temp_dir();
    cli.write("ssl.yaml", PRETRAIN);
    let r = cli.run(&["run", "ssl.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stderr.matches("pretraining `").count(), 2, "{}", r.stderr);
    let stages: Vec<std::path::PathBuf> = std::fs::read_dir(cli.path(".cache/pretrain"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("DONE").is_file())
        .collect();
    assert_eq!(stages.len(), 2, "{stages:?}");
    for stage in &stages {
        assert!(stage.join("encoder.safetensors").is_file());
        let log = read(&stage.join("run.log"));
        assert!(log.contains("unlabelled tiles"), "{log}");
        assert!(stage.join("pretrain.json").is_file());
    }
    let summary = read(&cli.path("results/ssl/summary.csv"));
    assert_eq!(summary.lines().count(), 4, "3 runs: {summary}");
    let config_of_runs: Vec<String> = std::fs::read_dir(cli.path("results/ssl"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("DONE").is_file())
        .map(|e| read(&e.path().join("config.yaml")))
        .collect();
    assert!(
        config_of_runs
            .iter()
            .all(|c| c.contains("image_weights: .cache/pretrain/")),
        "{config_of_runs:?}"
    );
    // Cached: a forced rerun of the jobs trains no stage again.
    let r = cli.run(&["run", "ssl.yaml", "--force"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("pretraining `"), "{}", r.stderr);

    for (bad, field, words) in [
        (
            PRETRAIN.replace("{preset: tiny, seed: 101}", "{preset: tiny}"),
            "pretrain[0].unlabelled[1]",
            "also a dataset the experiment scores",
        ),
        (
            PRETRAIN.replace(
                "image_weights: pretrain:triplets,",
                "image_weights: pretrain:nope,",
            ),
            "models[1].image_weights",
            "names no pretrain stage `nope`",
        ),
        (
            PRETRAIN.replace(
                "image_widths: [4, 8], image_blocks: 1, image_weights: pretrain:triplets",
                "image_widths: [4, 16], image_blocks: 1, image_weights: pretrain:triplets",
            ),
            "models[1].image_weights",
            "this model's encoder differs",
        ),
    ] {
        cli.write("bad.yaml", &bad);
        let r = cli.run(&["plan", "bad.yaml"]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr.contains(field) && r.stderr.contains(words),
            "{}",
            r.stderr
        );
    }
}

/// A scored city under another path is refused as unlabelled data (by content, not by
/// path), before the stage trains; a stage no pending job reads is not trained at all.
#[test]
fn a_scored_city_under_another_path_is_not_unlabelled() {
    let cli = Cli::in_temp_dir();
    cli.tiny_city("city");
    cli.tiny_city("same_city");
    let experiment = |unlabelled: &str, weights: &str| {
        format!(
            "name: p\nimage_size: 16\npoi_raster_size: 16\ndatasets: [{{path: city}}]\npretrain:\n  - {{name: c, method: tile2vec, image_widths: [4], image_blocks: 1, epochs: 1, unlabelled: [{{path: {unlabelled}}}]}}\nmodels: [{{kind: linear_probe, image_encoder: resnet, image_widths: [4], image_blocks: 1{weights}}}]\nsplits: [{{kind: random}}]\nseeds: [0]\n"
        )
    };
    cli.write(
        "p.yaml",
        &experiment("same_city", ", image_weights: \"pretrain:c\""),
    );
    let r = cli.run(&["run", "p.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("has the content of the scored dataset"),
        "{}",
        r.stderr
    );
    assert!(!cli.path("results/p").join("summary.csv").exists());
    // Nobody reads the stage: it is not trained, and the probe runs on random weights.
    cli.write(
        "q.yaml",
        &experiment("same_city", "").replace("name: p", "name: q"),
    );
    let r = cli.run(&["run", "q.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("pretraining `"), "{}", r.stderr);
}

//! OpenCarbon through the CLI: train a tiny run, then `predict` for another city.

use super::{read, Cli};

fn read_bytes(p: &std::path::Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn train_opencarbon_then_predict_a_new_city() {
    let cli = Cli::in_temp_dir();
    cli.write(
        "exp.yaml",
        "name: nn\nimage_size: 32\npoi_raster_size: 32\ndatasets: [{preset: tiny}]\nmodels:\n  - kind: opencarbon\n    embedding_dim: 8\n    image_widths: [8]\n    max_epochs: 4\n    valid_every: 2\n    min_epochs: 4\n    batch_size: 16\nsplits: [{kind: random}]\nseeds: [0]\n",
    );
    let r = cli.run(&["run", "exp.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let run_dir = std::fs::read_dir(cli.path("results/nn"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("DONE").is_file())
        .unwrap();
    assert!(run_dir.join("best.safetensors").is_file());
    let weights = read(&run_dir.join("modality_weights.csv"));
    assert!(
        weights.starts_with("dataset,x,y,split,image_weight,poi_weight\n"),
        "{weights}"
    );
    for l in weights.lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        let (a, b): (f64, f64) = (f[4].parse().unwrap(), f[5].parse().unwrap());
        assert!((a + b - 1.0).abs() < 1e-3, "weights sum to 1: {l}");
    }
    let model: serde_json::Value =
        serde_json::from_str(&read(&run_dir.join("model.json"))).unwrap();
    assert_eq!(
        model["poi_weight_by_emission_decile"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    let log = read(&run_dir.join("run.log"));
    assert!(log.contains("best validation R²"), "{log}");
    let importance = read(&run_dir.join("poi_category_importance.csv"));
    let shares: Vec<f64> = importance
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(
        !shares.is_empty() && (shares.iter().sum::<f64>() - 1.0).abs() < 1e-3,
        "{importance}"
    );
    // The report's figures, where the machine has the font they are drawn with.
    if std::path::Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").is_file() {
        for f in [
            "r2_by_model_random.png",
            "maps_random_tiny.png",
            "scatter_random_tiny.png",
            "modality_weights_random_tiny.png",
            "poi_categories_random_tiny.png",
        ] {
            let p = cli.path(&format!("results/nn/figures/{f}"));
            assert!(p.is_file(), "{} missing", p.display());
            assert!(read_bytes(&p).starts_with(b"\x89PNG"));
        }
        assert!(read(&cli.path("results/nn/report.md")).contains("figures/maps_random_tiny.png"));
    }

    // A "new city": another seed of the tiny preset.
    let s = cli.run(&["synth", "tiny", "other", "--seed", "9"]);
    assert_eq!(s.code, 0, "{}", s.stderr);
    let run_arg = run_dir.to_string_lossy().to_string();
    let p = cli.run(&[
        "predict",
        "--run",
        &run_arg,
        "--dataset",
        "other",
        "--out",
        "pred.csv",
    ]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    let csv = read(&cli.path("pred.csv"));
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("x,y,log_emission_pred,emission_pred,emission_true"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), 65, "one row per tile of the 64-tile city");
    for l in &lines[1..] {
        let f: Vec<f64> = l.split(',').map(|v| v.parse().unwrap()).collect();
        assert!(
            f[2].is_finite() && (f[3] - f[2].exp()).abs() <= 1e-3 * f[3].max(1.0),
            "{l}"
        );
    }
    let png = std::fs::read(cli.path("pred.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");

    // On a GPU: the same predictions up to float summation order; without one (or without
    // the cuda feature): a clear usage error.
    let args = ["--dataset", "other", "--out", "gpu.csv", "--device", "cuda"];
    let g = cli.run(&[&["predict", "--run", &run_arg][..], &args[..]].concat());
    if cfg!(feature = "cuda") && g.code == 0 {
        let column = |file: &str| -> Vec<f64> {
            read(&cli.path(file))
                .lines()
                .skip(1)
                .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
                .collect()
        };
        for (c, g) in column("pred.csv").iter().zip(column("gpu.csv")) {
            assert!((c - g).abs() < 1e-3, "CPU {c} vs GPU {g}");
        }
    } else {
        assert_eq!(g.code, 2, "{}", g.stderr);
        assert!(g.stderr.contains("CUDA"), "{}", g.stderr);
    }

    predict_refuses_what_it_cannot_trust(&cli, &run_dir);

    // predict refuses a baseline run with a clear message.
    cli.write("b.yaml", "name: b\ndatasets: [{preset: tiny}]\nmodels: [{kind: ols}]\nsplits: [{kind: random}]\nseeds: [0]\n");
    assert_eq!(cli.run(&["run", "b.yaml"]).code, 0);
    let b_dir = std::fs::read_dir(cli.path("results/b"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("DONE").is_file())
        .unwrap();
    let b_arg = b_dir.to_string_lossy().to_string();
    let p = cli.run(&["predict", "--run", &b_arg, "--dataset", "other"]);
    assert_eq!(p.code, 2, "{}", p.stderr);
    assert!(
        p.stderr.contains("predict needs an OpenCarbon run"),
        "{}",
        p.stderr
    );
}

/// GraphSAGE on the frozen grid embeddings of the OpenCarbon run of the same dataset, split
/// and seed (its embeddings.csv) of this experiment, found under the experiment's own
/// results_dir (issue 26 item 10: a path named the default results dir); a clear error when
/// that run does not exist.
#[test]
fn graphsage_trains_on_opencarbon_embeddings() {
    let cli = Cli::in_temp_dir();
    let exp = "name: emb\nresults_dir: scratch/out\nimage_size: 32\npoi_raster_size: 32\ndatasets: [{preset: tiny}]\nmodels:\n  - kind: opencarbon\n    embedding_dim: 8\n    image_widths: [8]\n    max_epochs: 2\n    valid_every: 1\n    min_epochs: 2\n    batch_size: 16\n  - kind: graphsage\n    hidden: 16\n    max_epochs: 30\n    min_epochs: 30\n    embeddings_from: this_experiment\nsplits: [{kind: random}]\nseeds: [0]\n";
    // Only GraphSAGE first: the OpenCarbon run is missing.
    cli.write("exp.yaml", exp);
    let r = cli.run(&["run", "exp.yaml", "--index", "1"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("no finished opencarbon run"),
        "{}",
        r.stderr
    );
    let r = cli.run(&["run", "exp.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary = read(&cli.path("scratch/out/emb/summary.csv"));
    assert!(summary.contains("opencarbon-emb"), "{summary}");
    let oc = std::fs::read_dir(cli.path("scratch/out/emb"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("embeddings.csv").is_file())
        .unwrap();
    let emb = read(&oc.join("embeddings.csv"));
    assert!(emb.starts_with("dataset,x,y,e0,e1,"), "{}", &emb[..40]);
    assert_eq!(emb.lines().count(), 1 + 64, "every tile of the tiny city");
    // The GraphSAGE job reads that OpenCarbon job: another OpenCarbon recipe is another
    // GraphSAGE run (its run id changes with it), never the old result on new embeddings.
    let before = cli.plan_run_ids("exp.yaml");
    cli.write(
        "exp.yaml",
        &exp.replace("max_epochs: 2\n", "max_epochs: 3\n"),
    );
    let after = cli.plan_run_ids("exp.yaml");
    assert_ne!(before[0], after[0], "the OpenCarbon job changed");
    assert_ne!(
        before[1], after[1],
        "so the GraphSAGE job on its embeddings changed too"
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dst = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).unwrap();
        }
    }
}

/// Each refusal of `predict` is exit 2 with the reason: an unfinished run, a missing
/// checkpoint, a dataset whose POI categories are in another order, weights that give NaN.
fn predict_refuses_what_it_cannot_trust(cli: &Cli, run_dir: &std::path::Path) {
    let predict = |run: &str, dataset: &str| {
        cli.run(&[
            "predict",
            "--run",
            run,
            "--dataset",
            dataset,
            "--out",
            "x.csv",
        ])
    };
    let variant = |name: &str, change: &dyn Fn(&std::path::Path)| {
        let dir = cli.path(name);
        copy_dir(run_dir, &dir);
        change(&dir);
        dir.to_string_lossy().into_owned()
    };
    let unfinished = variant("unfinished", &|d| {
        std::fs::remove_file(d.join("DONE")).unwrap()
    });
    let r = predict(&unfinished, "other");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("is not a finished run"), "{}", r.stderr);

    let no_ckpt = variant("no_ckpt", &|d| {
        std::fs::remove_file(d.join("best.safetensors")).unwrap()
    });
    let r = predict(&no_ckpt, "other");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("checkpoint is missing"), "{}", r.stderr);

    // Every stored value NaN (a safetensors file: 8-byte header length, JSON header, data).
    let nan = variant("nan", &|d| {
        let p = d.join("best.safetensors");
        let mut bytes = std::fs::read(&p).unwrap();
        let start = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        for chunk in bytes[start..].chunks_exact_mut(4) {
            chunk.copy_from_slice(&f32::NAN.to_le_bytes());
        }
        std::fs::write(&p, bytes).unwrap();
    });
    let r = predict(&nan, "other");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("non-finite value(s)"), "{}", r.stderr);
    assert!(!cli.path("x.csv").exists(), "no CSV of NaN may be written");

    // One NaN in one weight (issue 26, item 5: it gave exit 0 and one identical prediction for
    // every tile) is refused too, naming the tensor.
    let one_nan = variant("one_nan", &|d| {
        let p = d.join("best.safetensors");
        let mut bytes = std::fs::read(&p).unwrap();
        let start = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        bytes[start..start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        std::fs::write(&p, bytes).unwrap();
    });
    let r = predict(&one_nan, "other");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("holds 1 non-finite value(s)") && r.stderr.contains("tensor `"),
        "{}",
        r.stderr
    );
    assert!(!cli.path("x.csv").exists());

    // The same city with its POI categories listed in another order.
    copy_dir(&cli.path("other"), &cli.path("reordered"));
    let meta = read(&cli.path("reordered/dataset.yaml"));
    let mut yaml: serde_yaml::Value = serde_yaml::from_str(&meta).unwrap();
    let cats = yaml["poi_categories"].as_sequence_mut().unwrap();
    cats.reverse();
    std::fs::write(
        cli.path("reordered/dataset.yaml"),
        serde_yaml::to_string(&yaml).unwrap(),
    )
    .unwrap();
    let r = predict(&run_dir.to_string_lossy(), "reordered");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("same categories in the same order"),
        "{}",
        r.stderr
    );
}

//! `opencarbon import` end to end: the rasterio-written GeoTIFF fixture, a generated tile
//! cache with two tiles missing, POIs from CSV and an OSM extract; the imported city is a valid
//! dataset that `inspect` reads and an experiment trains on.

use super::{read, Cli};

const REGION: [u32; 4] = [17252, 11510, 17257, 11517];

fn fixture(rel: &str) -> String {
    format!("{}/tests/fixtures/{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// A tile cache for the region, every tile a flat colour, except two missing tiles.
fn tile_cache(cli: &Cli) -> Vec<(u32, u32)> {
    let missing = vec![(17252, 11510), (17257, 11517)];
    for y in REGION[1]..=REGION[3] {
        for x in REGION[0]..=REGION[2] {
            if missing.contains(&(x, y)) {
                continue;
            }
            let dir = cli.path(&format!("cache/15/{x}"));
            std::fs::create_dir_all(&dir).unwrap();
            let shade = ((x * 31 + y * 17) % 200) as u8;
            let img = image::RgbImage::from_pixel(32, 32, image::Rgb([shade, 100, 255 - shade]));
            img.save(dir.join(format!("{y}.png"))).unwrap();
        }
    }
    missing
}

#[test]
fn import_builds_a_dataset_that_inspect_reads_and_models_train_on() {
    let cli = Cli::in_temp_dir();
    let missing = tile_cache(&cli);
    cli.write(
        "pois.csv",
        "lon,lat,amenity,shop\n9.545,47.06,cafe,\n9.55,47.07,,bakery\n9.56,47.08,school,\n9.57,47.09,bench,\n9.58,47.10,,\n20.0,10.0,cafe,\n",
    );
    let tiles = format!("{},{},{},{}", REGION[0], REGION[1], REGION[2], REGION[3]);
    let tif = fixture("geotiff/odiac_strip_lzw.tif");
    let osm = fixture("osm/edge_cases.osm.pbf");
    let mapping = format!(
        "{}/configs/poi_mapping/osm.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let args_to = |out: &'static str| {
        let mut a: Vec<String> = vec!["import".into(), "--out".into(), out.into()];
        a.extend(
            [
                "--name",
                "vaduz",
                "--zoom",
                "15",
                "--tiles",
                &tiles,
                "--emissions",
                &tif,
                "--co2",
                "--images",
                "cache",
                "--pois-csv",
                "pois.csv",
                "--osm",
                &osm,
                "--mapping",
                &mapping,
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        a
    };
    let first = args_to("city");
    let r = cli.run(&first.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("48 in the region, 46 written, 2 without imagery"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("17252,11510"), "{}", r.stdout);
    assert!(r.stdout.contains("outside_region"), "{}", r.stdout);

    // Per-tile emission: the Python oracle's values × 44/12 (carbon → CO2).
    let expected: Vec<(u32, u32, f64)> = read(std::path::Path::new(&fixture(
        "geotiff/expected_z15_region.csv",
    )))
    .lines()
    .skip(1)
    .map(|l| {
        let c: Vec<&str> = l.split(',').collect();
        (
            c[0].parse().unwrap(),
            c[1].parse().unwrap(),
            c[2].parse().unwrap(),
        )
    })
    .collect();
    let written = read(&cli.path("city/tiles.csv"));
    let mut rows = 0;
    for line in written.lines().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        let (x, y, e): (u32, u32, f64) = (
            c[0].parse().unwrap(),
            c[1].parse().unwrap(),
            c[2].parse().unwrap(),
        );
        assert!(
            !missing.contains(&(x, y)),
            "tile {x},{y} has no image but was written"
        );
        let want = expected.iter().find(|t| t.0 == x && t.1 == y).unwrap().2 * 44.0 / 12.0;
        assert!(
            (e - want).abs() <= 1e-6 * want.abs().max(1e-300),
            "{x},{y}: {e} vs {want}"
        );
        rows += 1;
    }
    assert_eq!(rows, 46);
    let pois = read(&cli.path("city/pois.csv"));
    assert_eq!(pois.lines().count(), 1 + 4, "{pois}"); // cafe, bakery, school, bench; 20°E dropped
    let report: serde_json::Value =
        serde_json::from_str(&read(&cli.path("city/import_report.json"))).unwrap();
    assert_eq!(report["tiles_without_imagery"].as_array().unwrap().len(), 2);

    let inspect = cli.run(&["inspect", "city"]);
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);

    // Killed, or out of disk, at any file operation in turn: nothing is left where the
    // dataset was asked for, nor beside it (issue 26: every writer of a directory writes a
    // temporary sibling and renames it); the import that runs to the end equals the first.
    let args = args_to("again");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for fault in ["OPENCARBON_FAULT_AFTER", "OPENCARBON_FAULT_ENOSPC_AFTER"] {
        let mut k = 1;
        loop {
            let r = cli.run_env(&[(fault, &k.to_string())], &args);
            if r.code == 0 {
                assert!(k > 10, "{fault}: only {k} points");
                std::fs::remove_dir_all(cli.path("again")).unwrap();
                break;
            }
            assert!(!r.stderr.contains("panicked"), "{fault} {k}: {}", r.stderr);
            let beside = super::names_starting_with(cli.dir.path(), "again");
            let dead_temps_only = fault == "OPENCARBON_FAULT_AFTER"
                && beside.iter().all(|n| n.starts_with("again.tmp-"));
            assert!(
                beside.is_empty() || dead_temps_only,
                "{fault} {k}: {beside:?}"
            );
            k += 1;
        }
    }
    let r = cli.run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(super::names_starting_with(cli.dir.path(), "again.").is_empty());
    for file in ["tiles.csv", "pois.csv", "dataset.yaml"] {
        assert_eq!(
            read(&cli.path(&format!("city/{file}"))),
            read(&cli.path(&format!("again/{file}"))),
            "{file}"
        );
    }

    cli.write(
        "exp.yaml",
        "name: imported\nimage_size: 16\npoi_raster_size: 16\ndatasets:\n  - path: city\nmodels:\n  - kind: lasso\n    alpha: 0.01\n  - kind: opencarbon\n    embedding_dim: 8\n    image_widths: [4, 8]\n    batch_size: 8\n    max_epochs: 2\n    valid_every: 1\n    min_epochs: 1\n    patience: 1\n    contrastive_epoch: 0\nsplits:\n  - kind: random\nseeds: [0]\n",
    );
    let run = cli.run(&["run", "exp.yaml"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("ran 2 jobs"), "{}", run.stderr);
}

#[test]
fn import_refuses_bad_regions_and_missing_inputs_clearly() {
    let cli = Cli::in_temp_dir();
    tile_cache(&cli);
    let tif = fixture("geotiff/odiac_strip_none.tif");
    let base = [
        "import",
        "--out",
        "city",
        "--name",
        "v",
        "--emissions",
        &tif,
        "--images",
        "cache",
    ];
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        cli.run(&a)
    };
    let r = with(&["--bbox", "9.6,47.0,9.5,47.1"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("west < east"), "{}", r.stderr);
    let r = with(&["--tiles", "1,2,3"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    // A region with no imagery at all.
    let r = with(&["--tiles", "0,0,1,1"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("has an image"), "{}", r.stderr);
    cli.write("broken.tif", "not a tiff");
    let r = cli.run(&[
        "import",
        "--out",
        "c2",
        "--name",
        "v",
        "--emissions",
        "broken.tif",
        "--images",
        "cache",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("broken.tif") && r.stderr.contains("TIFF"),
        "{}",
        r.stderr
    );
}

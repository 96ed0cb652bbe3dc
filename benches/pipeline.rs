//! Timings of the data pipeline and the baselines on the london preset, printed as a table.
//! Run: `cargo bench --bench pipeline` (not part of `cargo test`; numbers depend on the
//! machine, so they live here and not in tests).

use std::time::Instant;

use ndarray::{Array1, Array2};
use opencarbon::data::features::tile_features;
use opencarbon::data::format::{content_fingerprint, CityDataset};
use opencarbon::data::raster::{DerivedCache, PoiRaster};
use opencarbon::data::split::random_split;
use opencarbon::data::synth::{preset, SynthCity};
use opencarbon::data::{Contiguity, SplitPart, TileGraph, TileGrid};
use opencarbon::models::{
    LassoConfig, Model, OlsConfig, RandomForestConfig, Standardizer, TabularModel,
};

fn time<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    println!("{label:<44} {:>9.3} s", t.elapsed().as_secs_f64());
    out
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("london");
    let city = time("generate london (1300 tiles)", || {
        SynthCity::generate(&preset("london").unwrap(), 0)
    });
    time("write dataset (PNG encode + CSV)", || {
        city.write(&root).unwrap()
    });
    let ds = time("open + validate dataset", || {
        CityDataset::open(&root).unwrap()
    });
    let fp = time("content fingerprint (sha256 of all files)", || {
        content_fingerprint(&ds).unwrap()
    });
    let cache = DerivedCache::new(&dir.path().join("cache"), &fp);
    time("decode + resize images, cold cache (64 px)", || {
        cache.images(&ds, 64).unwrap()
    });
    let images = time("load images, warm cache", || cache.images(&ds, 64).unwrap());
    time("rasterise POIs (64 px)", || PoiRaster::build(&ds, 64));
    let pois = cache.poi_raster(&ds, 64).unwrap();
    let grid = TileGrid::new(&ds.tiles);
    let features = time("features (53 per tile)", || {
        tile_features(
            &TileGraph::build(&grid, Contiguity::Queen),
            &images,
            &pois,
            &ds.meta.poi_categories,
        )
    });

    let split = random_split(&ds, [0.6, 0.2, 0.2], 0);
    let rows: Vec<usize> = (0..ds.tiles.len())
        .filter(|&i| split[i] == Some(SplitPart::Train))
        .collect();
    let p = features.names.len();
    let mut x = Array2::zeros((rows.len(), p));
    let mut y = Array1::zeros(rows.len());
    for (k, &i) in rows.iter().enumerate() {
        for c in 0..p {
            x[[k, c]] = features.rows[i][c];
        }
        y[k] = ds.tiles[i].emission.ln();
    }
    let x = Standardizer::fit(x.view()).apply(x.view());
    let lasso = LassoConfig {
        alpha: 0.003,
        max_iter: 10_000,
        tol: 1e-6,
    };
    let forest = RandomForestConfig {
        n_trees: 200,
        max_depth: None,
        min_samples_leaf: 2,
        min_samples_split: 2,
        max_features: 0.33,
    };
    let models: [(String, &dyn TabularModel); 3] = [
        (Model::label(&lasso), &lasso),
        (Model::label(&OlsConfig {}), &OlsConfig {}),
        (Model::label(&forest), &forest),
    ];
    for (label, model) in models {
        time(&format!("fit {label} on {} tiles", rows.len()), || {
            model.fit_table(x.view(), &y, 0).unwrap()
        });
    }
}

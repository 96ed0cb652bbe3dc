//! POIs from raw sources, mapped to the dataset's categories by an ordered rule list (a YAML
//! mapping file: configs/poi_mapping/osm.yaml documents the format): a CSV whose columns other
//! than lon and lat are the tags, or an OpenStreetMap `.osm.pbf` extract read with the
//! pure-Rust `osmpbf` crate (tagged nodes at their position, tagged ways at the mean of their
//! nodes, relations dropped).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use crate::data::format::PoiRecord;
use crate::error::{ConfigProblem, Error, Result};

pub const MAPPING_FORMAT: &str = "opencarbon-poi-mapping/1";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    format: String,
    #[serde(default)]
    #[allow(dead_code)]
    source: Option<String>,
    categories: Vec<String>,
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    key: String,
    #[serde(default)]
    values: Option<RuleValues>,
    category: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RuleValues {
    List(Vec<String>),
    Any(String),
}

/// One rule: the key, the accepted values (None = any), the category.
#[derive(Debug, Clone)]
pub struct Rule {
    pub key: String,
    pub values: Option<HashSet<String>>,
    pub category: String,
}

/// An ordered rule list; the first rule an element's tags match gives its category.
#[derive(Debug, Clone)]
pub struct PoiMapping {
    pub categories: Vec<String>,
    pub rules: Vec<Rule>,
}

impl PoiMapping {
    pub fn load(path: &Path) -> Result<PoiMapping> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config_error = |p: String, message: String| Error::Config {
            file: path.to_path_buf(),
            problems: vec![ConfigProblem { path: p, message }],
        };
        let raw: RawMapping =
            serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(&text))
                .map_err(|e| config_error(e.path().to_string(), e.into_inner().to_string()))?;
        let mut problems = Vec::new();
        if raw.format != MAPPING_FORMAT {
            problems.push(ConfigProblem {
                path: "format".into(),
                message: format!("is `{}`, expected `{MAPPING_FORMAT}`", raw.format),
            });
        }
        if raw.rules.is_empty() {
            problems.push(ConfigProblem {
                path: "rules".into(),
                message: "is empty, expected at least one rule".into(),
            });
        }
        let mut rules = Vec::new();
        for (i, r) in raw.rules.into_iter().enumerate() {
            if !raw.categories.contains(&r.category) {
                problems.push(ConfigProblem {
                    path: format!("rules[{i}].category"),
                    message: format!(
                        "`{}` is not one of categories ({})",
                        r.category,
                        raw.categories.join(", ")
                    ),
                });
            }
            let values = match r.values {
                None => None,
                Some(RuleValues::Any(s)) if s == "*" => None,
                Some(RuleValues::Any(s)) => {
                    problems.push(ConfigProblem {
                        path: format!("rules[{i}].values"),
                        message: format!("is `{s}`, expected a list of strings or \"*\""),
                    });
                    None
                }
                Some(RuleValues::List(v)) => Some(v.into_iter().collect()),
            };
            rules.push(Rule {
                key: r.key,
                values,
                category: r.category,
            });
        }
        if !problems.is_empty() {
            return Err(Error::Config {
                file: path.to_path_buf(),
                problems,
            });
        }
        Ok(PoiMapping {
            categories: raw.categories,
            rules,
        })
    }

    /// The category of an element with these tags, by the first matching rule.
    pub fn classify<'a>(&self, tags: impl Fn(&str) -> Option<&'a str>) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| {
                tags(&r.key).is_some_and(|v| r.values.as_ref().is_none_or(|set| set.contains(v)))
            })
            .map(|r| r.category.as_str())
    }
}

/// POIs read from one source, and what was dropped, by reason.
#[derive(Debug, Default)]
pub struct PoiHarvest {
    pub pois: Vec<PoiRecord>,
    pub dropped: BTreeMap<&'static str, usize>,
}

impl PoiHarvest {
    fn drop(&mut self, reason: &'static str) {
        *self.dropped.entry(reason).or_default() += 1;
    }

    fn keep(&mut self, lon: f64, lat: f64, category: &str) {
        self.pois.push(PoiRecord {
            lon,
            lat,
            category: category.to_string(),
            weight: 1.0,
        });
    }

    /// Mapped POIs per category.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut c = BTreeMap::new();
        for p in &self.pois {
            *c.entry(p.category.clone()).or_default() += 1;
        }
        c
    }
}

/// A CSV with `lon` and `lat` columns (WGS84 degrees); every other column is a tag whose key is
/// the column name (e.g. a `fclass` column matched by rules with `key: fclass`). Empty cells
/// are absent tags.
pub fn read_csv(path: &Path, mapping: &PoiMapping) -> Result<PoiHarvest> {
    let mut rdr = csv::ReaderBuilder::new()
        .from_path(path)
        .map_err(|e| Error::dataset(path, None, format!("cannot read CSV: {e}")))?;
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| Error::dataset(path, Some(1), format!("bad header: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let col = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            Error::dataset(
                path,
                Some(1),
                format!("has no `{name}` column (columns: {})", header.join(", ")),
            )
        })
    };
    let (lon_c, lat_c) = (col("lon")?, col("lat")?);
    let mut out = PoiHarvest::default();
    for (i, rec) in rdr.records().enumerate() {
        let line = i as u64 + 2;
        let rec = rec.map_err(|e| Error::dataset(path, Some(line), e.to_string()))?;
        let number = |c: usize, name: &str| -> Result<f64> {
            let v = rec.get(c).unwrap_or("").trim();
            v.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| {
                    Error::dataset(path, Some(line), format!("{name} `{v}` is not a number"))
                })
        };
        let (lon, lat) = (number(lon_c, "lon")?, number(lat_c, "lat")?);
        if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
            return Err(Error::dataset(
                path,
                Some(line),
                format!("({lon}, {lat}) is not a WGS84 position (lon −180..180, lat −90..90)"),
            ));
        }
        let tag = |key: &str| -> Option<&str> {
            let c = header.iter().position(|h| h == key)?;
            rec.get(c).map(str::trim).filter(|v| !v.is_empty())
        };
        match mapping.classify(tag) {
            Some(category) => out.keep(lon, lat, category),
            None => out.drop("unmapped"),
        }
    }
    Ok(out)
}

/// An OpenStreetMap extract. Two passes over the file: the first classifies tagged nodes and
/// ways and notes the nodes the mapped ways need, the second reads those nodes' positions, so
/// memory follows the mapped ways, not the extract.
pub fn read_osm(path: &Path, mapping: &PoiMapping) -> Result<PoiHarvest> {
    let osm_err =
        |e: osmpbf::Error| Error::dataset(path, None, format!("not a readable .osm.pbf: {e}"));
    let degrees = |decimicro: i32| decimicro as f64 / 1e7;
    let mut out = PoiHarvest::default();
    // Mapped ways: category and node refs (closing ref removed).
    let mut ways: Vec<(String, Vec<i64>)> = Vec::new();
    let mut needed: HashSet<i64> = HashSet::new();
    let reader = osmpbf::ElementReader::from_path(path).map_err(osm_err)?;
    reader
        .for_each(|element| {
            use osmpbf::Element;
            let tags: Vec<(&str, &str)> = match &element {
                Element::Node(n) => n.tags().collect(),
                Element::DenseNode(n) => n.tags().collect(),
                Element::Way(w) => w.tags().collect(),
                Element::Relation(r) => r.tags().collect(),
            };
            if tags.is_empty() {
                return; // geometry, not a candidate
            }
            if matches!(element, Element::Relation(_)) {
                out.drop("relation");
                return;
            }
            let lookup = |k: &str| tags.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
            let Some(category) = mapping.classify(lookup) else {
                out.drop("unmapped");
                return;
            };
            match &element {
                Element::Node(n) => out.keep(
                    degrees(n.decimicro_lon()),
                    degrees(n.decimicro_lat()),
                    category,
                ),
                Element::DenseNode(n) => out.keep(
                    degrees(n.decimicro_lon()),
                    degrees(n.decimicro_lat()),
                    category,
                ),
                Element::Way(w) => {
                    let mut refs: Vec<i64> = w.refs().collect();
                    if refs.len() >= 2 && refs.first() == refs.last() {
                        refs.pop();
                    }
                    needed.extend(refs.iter().copied());
                    ways.push((category.to_string(), refs));
                }
                Element::Relation(_) => unreachable!(),
            }
        })
        .map_err(osm_err)?;
    if !ways.is_empty() {
        let mut positions: HashMap<i64, (f64, f64)> = HashMap::with_capacity(needed.len());
        osmpbf::ElementReader::from_path(path)
            .map_err(osm_err)?
            .for_each(|element| {
                let (id, lon, lat) = match element {
                    osmpbf::Element::Node(n) => (n.id(), n.decimicro_lon(), n.decimicro_lat()),
                    osmpbf::Element::DenseNode(n) => (n.id(), n.decimicro_lon(), n.decimicro_lat()),
                    _ => return,
                };
                if needed.contains(&id) {
                    positions.insert(id, (degrees(lon), degrees(lat)));
                }
            })
            .map_err(osm_err)?;
        for (category, refs) in ways {
            let located: Option<Vec<(f64, f64)>> =
                refs.iter().map(|r| positions.get(r).copied()).collect();
            match located {
                Some(p) if !p.is_empty() => {
                    let n = p.len() as f64;
                    let lon = p.iter().map(|q| q.0).sum::<f64>() / n;
                    let lat = p.iter().map(|q| q.1).sum::<f64>() / n;
                    out.keep(lon, lat, &category);
                }
                _ => out.drop("missing_nodes"),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    fn default_mapping() -> PoiMapping {
        PoiMapping::load(&root().join("configs/poi_mapping/osm.yaml")).unwrap()
    }

    fn csv_counts(name: &str) -> BTreeMap<String, usize> {
        std::fs::read_to_string(root().join("tests/fixtures/osm").join(name))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let (k, v) = l.split_once(',').unwrap();
                (k.to_string(), v.parse().unwrap())
            })
            .collect()
    }

    /// The real Liechtenstein extract (../shared/fixtures/osm, ODbL) against counts made by
    /// an independent pyosmium implementation (scripts/count_osm_pois.py).
    #[test]
    fn liechtenstein_counts_match_pyosmium() {
        // The shared fixture lives beside the repository (not in it: 580 KB, ODbL).
        let name = "fixtures/osm/liechtenstein-2013-08-03.osm.pbf";
        let Some(pbf) = std::env::var_os("OPENCARBON_OSM_FIXTURE")
            .map(std::path::PathBuf::from)
            .into_iter()
            .chain([
                root().join("../shared").join(name),
                Path::new("/work/shared").join(name),
            ])
            .find(|p| p.is_file())
        else {
            eprintln!(
                "skipped: the Liechtenstein extract is not present (set OPENCARBON_OSM_FIXTURE)"
            );
            return;
        };
        let got = read_osm(&pbf, &default_mapping()).unwrap();
        let want = csv_counts("liechtenstein_counts.csv");
        let counts = got.counts();
        for (category, n) in &want {
            assert_eq!(counts.get(category).copied().unwrap_or(0), *n, "{category}");
        }
        let dropped = csv_counts("liechtenstein_dropped.csv");
        for (reason, n) in dropped {
            assert_eq!(
                got.dropped.get(reason.as_str()).copied().unwrap_or(0),
                n,
                "{reason}"
            );
        }
    }

    #[test]
    fn edge_cases_match_the_python_outcomes() {
        let got = read_osm(
            &root().join("tests/fixtures/osm/edge_cases.osm.pbf"),
            &default_mapping(),
        )
        .unwrap();
        let text =
            std::fs::read_to_string(root().join("tests/fixtures/osm/edge_cases_expected.csv"))
                .unwrap();
        let mut rdr = csv::Reader::from_reader(text.as_bytes());
        let (mut kept, mut dropped) = (Vec::new(), BTreeMap::<String, usize>::new());
        for rec in rdr.records() {
            let rec = rec.unwrap();
            let outcome = &rec[2];
            match outcome.strip_prefix("dropped:") {
                Some(reason) => *dropped.entry(reason.to_string()).or_default() += 1,
                None => kept.push((
                    outcome.to_string(),
                    rec[3].parse::<f64>().unwrap(),
                    rec[4].parse::<f64>().unwrap(),
                )),
            }
        }
        assert_eq!(got.pois.len(), kept.len());
        for (category, lon, lat) in kept {
            assert!(
                got.pois.iter().any(|p| p.category == category
                    && (p.lon - lon).abs() < 1e-9
                    && (p.lat - lat).abs() < 1e-9),
                "{category} at {lon},{lat} missing from {:?}",
                got.pois
            );
        }
        for (reason, n) in dropped {
            assert_eq!(
                got.dropped.get(reason.as_str()).copied().unwrap_or(0),
                n,
                "{reason}"
            );
        }
    }

    #[test]
    fn csv_columns_are_tags_and_bad_rows_name_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pois.csv");
        std::fs::write(
            &p,
            "lon,lat,amenity,shop\n9.5,47.1,cafe,\n9.5,47.1,,bakery\n9.5,47.1,bench,\n9.5,47.1,,\n",
        )
        .unwrap();
        let h = read_csv(&p, &default_mapping()).unwrap();
        let cats: Vec<&str> = h.pois.iter().map(|p| p.category.as_str()).collect();
        assert_eq!(cats, ["food", "shopping", "other"]);
        assert_eq!(h.dropped["unmapped"], 1);
        std::fs::write(&p, "lon,lat,amenity\n9.5,47.1,cafe\n300,47.1,cafe\n").unwrap();
        let e = read_csv(&p, &default_mapping()).unwrap_err().to_string();
        assert!(e.contains("pois.csv:3:"), "{e}");
    }

    #[test]
    fn a_mapping_with_an_unknown_category_is_refused_with_its_yaml_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.yaml");
        std::fs::write(
            &p,
            "format: opencarbon-poi-mapping/1\ncategories: [food]\nrules:\n  - key: amenity\n    category: fod\n",
        )
        .unwrap();
        let e = PoiMapping::load(&p).unwrap_err().to_string();
        assert!(e.contains("rules[0].category"), "{e}");
    }
}

#!/usr/bin/env python3
"""Count OpenStreetMap POIs per category with pyosmium: an independent oracle for the importer.

Applies configs/poi_mapping/osm.yaml (rules documented at the top of that file) to the
Liechtenstein extract in /work/shared/fixtures/osm/ and writes expected counts that the Rust
OSM importer must reproduce exactly.

Usage (from the repository root):

    .venv/bin/pip install -r scripts/requirements-import.txt
    .venv/bin/python scripts/count_osm_pois.py [--pbf PATH] [--mapping PATH] [--out DIR]

Outputs (tests/fixtures/osm/, see the README.md there):
    liechtenstein_counts.csv         category,count   every mapped POI, all categories
    liechtenstein_dropped.csv        reason,count     unmapped, missing_nodes, relation
    liechtenstein_region_counts.csv  category,liechtenstein,vaduz   POIs whose zoom-15 tile is
                                     in each region's tile range
    liechtenstein_tile_counts.csv    x,y,count        per zoom-15 tile (count > 0 only)
    liechtenstein_sample.csv         first 10 mapped nodes and first 10 mapped ways
    liechtenstein_summary.json       all of the above plus per-type numbers and versions
    edge_cases.osm.pbf               tiny synthetic extract written here with pyosmium
    edge_cases_expected.csv          the outcome for every element of edge_cases.osm.pbf

Semantics (must match the Rust importer):
  * elements without tags are skipped and not counted anywhere;
  * tagged node -> its coordinates; tagged way -> unweighted mean of its node refs' coordinates
    (closing ref of a closed way left out); any ref missing -> "missing_nodes";
  * rules are evaluated before the location: an unmapped way is "unmapped";
  * every tagged relation -> "relation";
  * coordinates are pyosmium's float degrees (= the stored 1e-7 degree integer / 1e7);
    means are float64 sums in ref order divided by the count;
  * tile of a POI: slippy-map math of docs/dataset-format.md at zoom 15.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.metadata
import json
import math
import sys
from pathlib import Path

import osmium
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PBF = Path("/work/shared/fixtures/osm/liechtenstein-2013-08-03.osm.pbf")
DEFAULT_MAPPING = REPO_ROOT / "configs" / "poi_mapping" / "osm.yaml"
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures" / "osm"

ZOOM = 15
# Regions, as lon/lat boxes turned into inclusive zoom-15 tile ranges.
# "liechtenstein" holds every POI of the extract; "vaduz" cuts through the data.
REGIONS = {
    "liechtenstein": {"min_lon": 9.47, "min_lat": 47.04, "max_lon": 9.64, "max_lat": 47.27},
    "vaduz": {"min_lon": 9.50, "min_lat": 47.12, "max_lon": 9.54, "max_lat": 47.16},
}
SAMPLE_PER_TYPE = 10
DROP_REASONS = ["unmapped", "missing_nodes", "relation"]


# --------------------------------------------------------------------------
# mapping
# --------------------------------------------------------------------------


class Mapping:
    def __init__(self, path: Path):
        doc = yaml.safe_load(path.read_text())
        if doc.get("format") != "opencarbon-poi-mapping/1":
            sys.exit(f"{path}: format must be 'opencarbon-poi-mapping/1'")
        self.categories = list(doc["categories"])
        if len(set(self.categories)) != len(self.categories) or not self.categories:
            sys.exit(f"{path}: categories must be non-empty without duplicates")
        self.rules = []  # (key, frozenset(values) or None, category)
        for i, r in enumerate(doc["rules"]):
            extra = set(r) - {"key", "values", "category"}
            if extra:
                sys.exit(f"{path}: rule {i + 1}: unknown fields {sorted(extra)}")
            key = r["key"]
            values = r.get("values")
            if values == "*":
                values = None
            if values is not None:
                if not isinstance(values, list) or not values:
                    sys.exit(f"{path}: rule {i + 1}: values must be a non-empty list or '*'")
                if not all(isinstance(v, str) for v in values):
                    sys.exit(f"{path}: rule {i + 1}: every value must be a string (quote yes/no/numbers)")
                values = frozenset(values)
            cat = r["category"]
            if cat not in self.categories:
                sys.exit(f"{path}: rule {i + 1}: unknown category {cat!r}")
            if not isinstance(key, str) or not key:
                sys.exit(f"{path}: rule {i + 1}: key must be a non-empty string")
            self.rules.append((key, values, cat))
        if not self.rules:
            sys.exit(f"{path}: no rules")

    def classify(self, tags: dict):
        """Return (rule_number_1_based, category) of the first matching rule, or None."""
        for i, (key, values, cat) in enumerate(self.rules):
            v = tags.get(key)
            if v is None:
                continue
            if values is None or v in values:
                return i + 1, cat
        return None


# --------------------------------------------------------------------------
# tile math (docs/dataset-format.md, "Tile geometry")
# --------------------------------------------------------------------------


def tile_xf(lon: float) -> float:
    return (lon + 180.0) / 360.0 * 2**ZOOM


def tile_yf(lat: float) -> float:
    phi = math.radians(lat)
    return (1.0 - math.asinh(math.tan(phi)) / math.pi) / 2.0 * 2**ZOOM


def tile_of(lon: float, lat: float):
    return math.floor(tile_xf(lon)), math.floor(tile_yf(lat))


def edge_distance(v: float) -> float:
    """Distance of a continuous tile coordinate to the nearest tile edge, in tile units."""
    return abs(v - round(v))


# --------------------------------------------------------------------------
# counting
# --------------------------------------------------------------------------


def region_tiles(bbox: dict):
    """Inclusive tile range (x0, x1, y0, y1) of a lon/lat box: tiles of its corners."""
    x0, y0 = tile_of(bbox["min_lon"], bbox["max_lat"])
    x1, y1 = tile_of(bbox["max_lon"], bbox["min_lat"])
    return x0, x1, y0, y1


def process(pbf: Path, mapping: Mapping) -> dict:
    """Apply the mapping to every element of a PBF, in file order.

    Returns {"pois": [(type, id, lon, lat, rule, category)], "outcomes": [(type, id, outcome,
    lon, lat)] for every tagged element, plus counters}.
    """
    # Pass 1: every node's location (tagged or not), needed for way means.
    node_loc: dict[int, tuple[float, float]] = {}
    for n in osmium.FileProcessor(str(pbf), osmium.osm.NODE):
        loc = n.location
        if loc.valid():
            node_loc[n.id] = (loc.lon, loc.lat)

    res = {
        "pois": [],
        "outcomes": [],
        "seen": {"node": 0, "way": 0, "relation": 0},
        "skipped_untagged": {"node": 0, "way": 0, "relation": 0},
        "dropped": {r: 0 for r in DROP_REASONS},
        "dropped_by_type": {t: {r: 0 for r in DROP_REASONS} for t in ("node", "way", "relation")},
        "mapped_closed_ways": 0,
    }

    def drop(t: str, i: int, reason: str) -> None:
        res["dropped"][reason] += 1
        res["dropped_by_type"][t][reason] += 1
        res["outcomes"].append((t, i, "dropped:" + reason, None, None, None))

    # Pass 2: classify tagged elements in file order (nodes, ways, relations).
    for o in osmium.FileProcessor(str(pbf)):
        t = {"n": "node", "w": "way", "r": "relation"}[o.type_str()]
        res["seen"][t] += 1
        tags = {tag.k: tag.v for tag in o.tags}
        if not tags:
            res["skipped_untagged"][t] += 1
            continue
        if t == "relation":
            drop(t, o.id, "relation")
            continue
        m = mapping.classify(tags)
        if m is None:
            drop(t, o.id, "unmapped")
            continue
        rule, cat = m
        if t == "node":
            if o.id not in node_loc:
                sys.exit(f"node {o.id} has no valid location")
            lon, lat = node_loc[o.id]
        else:
            refs = [nr.ref for nr in o.nodes]
            if len(refs) >= 2 and refs[0] == refs[-1]:
                refs = refs[:-1]
                res["mapped_closed_ways"] += 1
            if not refs or any(r not in node_loc for r in refs):
                drop(t, o.id, "missing_nodes")
                continue
            slon = 0.0
            slat = 0.0
            for r in refs:
                slon += node_loc[r][0]
                slat += node_loc[r][1]
            lon = slon / len(refs)
            lat = slat / len(refs)
        res["pois"].append((t, o.id, lon, lat, rule, cat))
        res["outcomes"].append((t, o.id, cat, lon, lat, rule))
    return res


def write_csv(path: Path, header, rows) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def liechtenstein(pbf: Path, mapping: Mapping, mapping_path: Path, out: Path) -> dict:
    res = process(pbf, mapping)
    pois = res["pois"]
    cats = mapping.categories
    counts = {c: 0 for c in cats}
    counts_by_type = {"node": {c: 0 for c in cats}, "way": {c: 0 for c in cats}}
    for t, _, _, _, _, cat in pois:
        counts[cat] += 1
        counts_by_type[t][cat] += 1

    tile_counts: dict[tuple[int, int], int] = {}
    min_edge = math.inf
    for _, _, lon, lat, _, _ in pois:
        xf, yf = tile_xf(lon), tile_yf(lat)
        min_edge = min(min_edge, edge_distance(xf), edge_distance(yf))
        k = (math.floor(xf), math.floor(yf))
        tile_counts[k] = tile_counts.get(k, 0) + 1

    regions = {}
    for name, bbox in REGIONS.items():
        x0, x1, y0, y1 = region_tiles(bbox)
        rc = {c: 0 for c in cats}
        tiles = set()
        for _, _, lon, lat, _, cat in pois:
            x, y = tile_of(lon, lat)
            if x0 <= x <= x1 and y0 <= y <= y1:
                rc[cat] += 1
                tiles.add((x, y))
        inside = sum(rc.values())
        regions[name] = {
            "bbox": bbox,
            "tile_range": {"x_min": x0, "x_max": x1, "y_min": y0, "y_max": y1,
                           "tiles": (x1 - x0 + 1) * (y1 - y0 + 1)},
            "inside_total": inside,
            "outside_total": len(pois) - inside,
            "tiles_with_pois": len(tiles),
            "counts": rc,
        }

    write_csv(out / "liechtenstein_counts.csv", ["category", "count"], counts.items())
    write_csv(out / "liechtenstein_dropped.csv", ["reason", "count"], res["dropped"].items())
    write_csv(out / "liechtenstein_region_counts.csv", ["category", *REGIONS],
              [(c, *(regions[r]["counts"][c] for r in REGIONS)) for c in cats])
    write_csv(out / "liechtenstein_tile_counts.csv", ["x", "y", "count"],
              [(x, y, c) for (x, y), c in sorted(tile_counts.items(), key=lambda kv: (kv[0][1], kv[0][0]))])

    sample = [p for p in pois if p[0] == "node"][:SAMPLE_PER_TYPE] + \
             [p for p in pois if p[0] == "way"][:SAMPLE_PER_TYPE]
    write_csv(out / "liechtenstein_sample.csv", ["osm_type", "id", "lon", "lat", "category", "rule", "x", "y"],
              [(t, i, f"{lon:.7f}", f"{lat:.7f}", cat, rule, *tile_of(lon, lat))
               for t, i, lon, lat, rule, cat in sample])

    summary = {
        "generator": "scripts/count_osm_pois.py",
        "versions": {"osmium (pyosmium)": importlib.metadata.version("osmium"),
                     "pyyaml": yaml.__version__, "python": sys.version.split()[0]},
        "input": {"file": pbf.name, "bytes": pbf.stat().st_size,
                  "sha256": hashlib.sha256(pbf.read_bytes()).hexdigest()},
        "mapping": {"file": "configs/poi_mapping/osm.yaml",
                    "sha256": hashlib.sha256(mapping_path.read_bytes()).hexdigest(),
                    "rules": len(mapping.rules)},
        "zoom": ZOOM,
        "elements_in_file": res["seen"],
        "skipped_untagged": res["skipped_untagged"],
        "mapped_total": len(pois),
        "mapped_by_type": {t: sum(v.values()) for t, v in counts_by_type.items()},
        "mapped_closed_ways": res["mapped_closed_ways"],
        "counts": counts,
        "counts_by_type": counts_by_type,
        "dropped": res["dropped"],
        "dropped_by_type": res["dropped_by_type"],
        "tiles_with_pois": len(tile_counts),
        "regions": regions,
        "min_distance_of_any_poi_to_a_tile_edge_in_tile_units": min_edge,
    }
    (out / "liechtenstein_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


# --------------------------------------------------------------------------
# synthetic edge cases
# --------------------------------------------------------------------------

# (id, lon, lat, tags, what it tests)
EDGE_NODES = [
    (1, 9.5200000, 47.1400000, {}, "untagged vertex: skipped, not counted"),
    (2, 9.5210000, 47.1410000, {"shop": "bakery", "amenity": "restaurant"},
     "amenity rule (food) comes before shop rule: rule order, not tag order"),
    (3, 9.5220000, 47.1420000, {"amenity": "bench", "shop": "bakery"},
     "shop rule (shopping) comes before the amenity catch-all"),
    (4, 9.5230000, 47.1430000, {"amenity": "restaurant;cafe"}, "no ';' splitting: amenity catch-all -> other"),
    (5, 9.5240000, 47.1440000, {"Amenity": "restaurant"}, "keys are case-sensitive: unmapped"),
    (6, 9.5250000, 47.1450000, {"amenity": "Restaurant"}, "values are case-sensitive: catch-all -> other"),
    (7, 9.5260000, 47.1460000, {"building": "yes"}, "generic building: unmapped"),
    (8, 9.5270000, 47.1470000, {"name": "Nur ein Name"}, "tagged but no rule: unmapped"),
    (9, 9.5280000, 47.1480000, {"tourism": "hotel", "building": "house"}, "tourism hotel before building"),
    (10, 9.5300000, 47.1500000, {}, "vertex of ways 100-106"),
    (11, 9.5400000, 47.1500000, {}, "vertex"),
    (12, 9.5400000, 47.1600000, {}, "vertex"),
    (13, 9.5300000, 47.1600000, {}, "vertex"),
    (14, -0.1275000, 51.5072000, {"amenity": "bank"}, "western hemisphere (London): finance"),
    (15, 151.2093000, -33.8688000, {"office": "company"}, "southern hemisphere (Sydney): office"),
    (16, 9.5123456, 47.1234567, {"highway": "bus_stop", "amenity": "shelter"},
     "highway=bus_stop rule before amenity catch-all: transport"),
    (17, 9.5111111, 47.1222222, {"leisure": "pitch", "sport": "soccer"}, "leisure sport list: sport"),
    (18, 9.5000001, 47.0999999, {"healthcare": "physiotherapist"}, "healthcare=*: health"),
]
# (id, refs, tags, what it tests); node 999 does not exist
EDGE_WAYS = [
    (100, [10, 11, 12, 13, 10], {"building": "house"},
     "closed way: closing ref counted once -> mean of 10,11,12,13"),
    (101, [10, 11, 12], {"landuse": "industrial"}, "open way: mean of its 3 refs"),
    (102, [10, 11, 999], {"amenity": "school"}, "mapped way with a missing node: missing_nodes"),
    (103, [10, 999], {"highway": "residential"}, "unmapped way with a missing node: unmapped (mapping first)"),
    (104, [11, 12], {}, "untagged way: skipped, not counted"),
    (105, [10, 11, 11, 12], {"leisure": "park"}, "repeated inner ref counts twice: mean of 10,11,11,12"),
    (106, [12, 12], {"shop": "kiosk"}, "degenerate closed way [12,12] -> [12]"),
    (107, [13, 12, 11, 10, 13], {"building": "yes", "amenity": "parking"},
     "amenity parking (transport) wins over building=yes"),
]
# (id, members, tags, what it tests)
EDGE_RELATIONS = [
    (200, [("w", 100, "outer")], {"type": "multipolygon", "building": "yes"}, "tagged relation: relation"),
    (201, [("w", 101, "")], {"type": "multipolygon", "amenity": "school"},
     "relation with mapped tags: still relation"),
    (202, [("n", 1, "")], {}, "untagged relation: skipped, not counted"),
]


def write_edge_cases(path: Path) -> None:
    from osmium.osm import mutable

    if path.exists():
        path.unlink()
    w = osmium.SimpleWriter(str(path))
    try:
        for i, lon, lat, tags, _ in EDGE_NODES:
            w.add_node(mutable.Node(id=i, version=1, location=(lon, lat), tags=tags))
        for i, refs, tags, _ in EDGE_WAYS:
            w.add_way(mutable.Way(id=i, version=1, nodes=refs, tags=tags))
        for i, members, tags, _ in EDGE_RELATIONS:
            w.add_relation(mutable.Relation(id=i, version=1, members=members, tags=tags))
    finally:
        w.close()


def edge_cases(mapping: Mapping, out: Path) -> dict:
    pbf = out / "edge_cases.osm.pbf"
    write_edge_cases(pbf)
    res = process(pbf, mapping)
    notes = {("node", e[0]): e[4] for e in EDGE_NODES}
    notes.update({("way", e[0]): e[3] for e in EDGE_WAYS})
    notes.update({("relation", e[0]): e[3] for e in EDGE_RELATIONS})
    rows = []
    for t, i, outcome, lon, lat, rule in res["outcomes"]:
        if lon is None:
            rows.append((t, i, outcome, "", "", "", "", "", notes[(t, i)]))
        else:
            rows.append((t, i, outcome, repr(lon), repr(lat), rule, *tile_of(lon, lat), notes[(t, i)]))
    write_csv(out / "edge_cases_expected.csv",
              ["osm_type", "id", "outcome", "lon", "lat", "rule", "x", "y", "note"], rows)
    return {k: res[k] for k in ("seen", "skipped_untagged", "dropped")} | {"mapped": len(res["pois"])}


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pbf", type=Path, default=DEFAULT_PBF)
    ap.add_argument("--mapping", type=Path, default=DEFAULT_MAPPING)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()

    mapping = Mapping(args.mapping)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = liechtenstein(args.pbf, mapping, args.mapping, args.out)
    print(json.dumps({k: summary[k] for k in ("mapped_total", "counts", "dropped", "regions")}, indent=1))
    print("edge cases:", json.dumps(edge_cases(mapping, args.out)))


if __name__ == "__main__":
    main()

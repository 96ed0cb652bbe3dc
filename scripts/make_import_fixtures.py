#!/usr/bin/env python3
"""Generate small ODIAC-like GeoTIFF fixtures and their expected per-tile emissions.

The Rust importer (issue "Real open data") turns a north-up EPSG:4326 GeoTIFF of
tonnes of carbon per cell per month into per-tile emissions at a slippy-map zoom
level. This script writes the same small raster in several TIFF layouts
(striped / tiled, none / deflate / LZW, with and without predictors, little and
big endian, -9999 and NaN nodata) plus two "monthly" files, and computes the
expected tile values with an independent float64 implementation of the rule in
docs/dataset-format.md ("Importing raw open data"):

    emission(tile) = sum over valid cells c of
        value(c) * lon_overlap(c, tile) / cell_width
                 * sin_lat_overlap(c, tile) / (sin(north(c)) - sin(south(c)))

Usage (from the repository root):

    .venv/bin/pip install -r scripts/requirements-import.txt
    .venv/bin/python scripts/make_import_fixtures.py

Outputs: tests/fixtures/geotiff/ (see the README.md written there).
Everything is deterministic (fixed numpy seed). Expected values are computed
from the raster as read back from the written file (float32 values and the
float64 geotransform that is actually stored), never from the in-memory arrays.
"""

from __future__ import annotations

import csv
import json
import math
import re
import struct
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "tests" / "fixtures" / "geotiff"

SEED = 20240715
ZOOM = 15

# Raster grid: 20 columns x 18 rows of 30 arc-second cells (1/120 degree).
# The origin lies on the global ODIAC 30" lattice (multiples of 1/120 degree)
# but not on any zoom-15 tile edge.
WIDTH = 20
HEIGHT = 18
WEST = 9.5
NORTH = 47.15
CELL = 1.0 / 120.0
NODATA = -9999.0

# Region test: an explicit sub-box of zoom-15 tiles, given as offsets from the
# first tile (x0, y0) of the raster's tile range; inclusive on both ends.
REGION_DX = (4, 9)
REGION_DY = (5, 12)


# --------------------------------------------------------------------------
# slippy-map tile math (docs/dataset-format.md, "Tile geometry")
# --------------------------------------------------------------------------


def tile_xf(lon: float, zoom: int) -> float:
    """Continuous tile x coordinate."""
    n = 2**zoom
    return (lon + 180.0) / 360.0 * n


def tile_yf(lat: float, zoom: int) -> float:
    """Continuous tile y coordinate."""
    n = 2**zoom
    phi = math.radians(lat)
    return (1.0 - math.asinh(math.tan(phi)) / math.pi) / 2.0 * n


def tile_x(lon: float, zoom: int) -> int:
    return math.floor(tile_xf(lon, zoom))


def tile_y(lat: float, zoom: int) -> int:
    return math.floor(tile_yf(lat, zoom))


def tile_west(x: int, zoom: int) -> float:
    """West edge of column x (east edge is tile_west(x + 1))."""
    n = 2**zoom
    return x / n * 360.0 - 180.0


def tile_north(y: int, zoom: int) -> float:
    """North edge of row y, degrees (south edge is tile_north(y + 1))."""
    n = 2**zoom
    return math.degrees(math.atan(math.sinh(math.pi * (1.0 - 2.0 * y / n))))


# --------------------------------------------------------------------------
# raster data
# --------------------------------------------------------------------------


def make_month01() -> np.ndarray:
    rng = np.random.default_rng(SEED)
    v = rng.lognormal(mean=3.0, sigma=1.5, size=(HEIGHT, WIDTH))
    v = np.round(v, 3)
    # a few large "urban core" cells
    v[8, 9] = 4321.5
    v[9, 10] = 2875.25
    v = v.astype(np.float32)
    # valid zero cells: a 3x3 block in the south-east corner and two scattered
    v[15:18, 17:20] = 0.0
    v[4, 14] = 0.0
    v[11, 2] = 0.0
    # nodata: a 3x3 block in the north-west corner and three scattered cells
    v[0:3, 0:3] = NODATA
    v[7, 11] = NODATA
    v[12, 4] = NODATA
    v[17, 0] = NODATA
    return v


def make_month02(m1: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(SEED + 1)
    v = np.where(m1 == NODATA, 0.0, m1.astype(np.float64))
    v = v * 0.9 + rng.uniform(0.0, 5.0, size=v.shape)
    v = np.round(v, 3).astype(np.float32)
    # the north-west block is valid in month 02 ...
    v[0:3, 0:3] = np.float32(1.5)
    # ... nodata sits in the north-east corner and one scattered cell instead
    v[0:2, 18:20] = NODATA
    v[10, 7] = NODATA
    return v


# (file name, description, extra rasterio creation options, data kind)
LAYOUTS = [
    ("odiac_strip_none.tif", "striped, 5 rows per strip, no compression",
     dict(compress=None, blockysize=5), "month01"),
    ("odiac_strip_deflate.tif", "striped, 5 rows per strip, DEFLATE (Adobe, code 8)",
     dict(compress="deflate", blockysize=5), "month01"),
    ("odiac_strip_lzw.tif", "striped, 5 rows per strip, LZW (code 5)",
     dict(compress="lzw", blockysize=5), "month01"),
    ("odiac_tiled16_deflate.tif", "tiled 16x16 (2x2 tiles, right and bottom tiles partial), DEFLATE",
     dict(compress="deflate", tiled=True, blockxsize=16, blockysize=16), "month01"),
    ("odiac_strip_deflate_pred3.tif", "striped, 5 rows per strip, DEFLATE, predictor 3 (floating point)",
     dict(compress="deflate", blockysize=5, predictor=3), "month01"),
    ("odiac_strip_lzw_pred2.tif", "striped, 5 rows per strip, LZW, predictor 2 (horizontal, on 32-bit words)",
     dict(compress="lzw", blockysize=5, predictor=2), "month01"),
    ("odiac_strip_none_bigendian.tif", "striped, 5 rows per strip, no compression, big-endian ('MM')",
     dict(compress=None, blockysize=5, endianness="big"), "month01"),
    ("odiac_strip_none_planar2.tif", "striped, 5 rows per strip, no compression, PlanarConfiguration 2 (separate)",
     dict(compress=None, blockysize=5, interleave="band"), "month01"),
    ("odiac_nan_nodata.tif", "striped, 5 rows per strip, no compression, nodata = NaN",
     dict(compress=None, blockysize=5), "month01_nan"),
    ("odiac_month01.tif", "month 1 of 2: same data as the single-month files, DEFLATE striped",
     dict(compress="deflate", blockysize=5), "month01"),
    ("odiac_month02.tif", "month 2 of 2: different values and nodata cells, DEFLATE striped",
     dict(compress="deflate", blockysize=5), "month02"),
]


def write_tif(path: Path, data: np.ndarray, nodata: float, opts: dict) -> None:
    profile = dict(
        driver="GTiff",
        width=WIDTH,
        height=HEIGHT,
        count=1,
        dtype="float32",
        crs="EPSG:4326",
        transform=from_origin(WEST, NORTH, CELL, CELL),
        nodata=nodata,
        interleave="pixel",   # PlanarConfiguration = 1 (contiguous), unless opts say "band"
    )
    opts = dict(opts)
    if opts.get("compress") is None:
        opts.pop("compress", None)
    profile.update(opts)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def read_back(path: Path):
    """Return (values float64 with nodata -> nan, mask valid, geotransform tuple, nodata)."""
    with rasterio.open(path) as src:
        assert src.count == 1 and src.dtypes[0] == "float32"
        assert src.crs.to_epsg() == 4326
        t = src.transform
        assert t.b == 0.0 and t.d == 0.0 and t.e < 0.0, "must be north-up"
        a = src.read(1).astype(np.float64)
        nd = src.nodata
        valid = ~np.isnan(a) if (nd is None or math.isnan(nd)) else (a != nd) & ~np.isnan(a)
        return a, valid, (t.c, t.a, t.f, -t.e), nd


# --------------------------------------------------------------------------
# minimal TIFF tag dump, to document what was actually written
# --------------------------------------------------------------------------

TAG_NAMES = {
    256: "ImageWidth", 257: "ImageLength", 258: "BitsPerSample", 259: "Compression",
    262: "Photometric", 273: "StripOffsets", 277: "SamplesPerPixel", 278: "RowsPerStrip",
    279: "StripByteCounts", 284: "PlanarConfig", 317: "Predictor", 322: "TileWidth",
    323: "TileLength", 324: "TileOffsets", 325: "TileByteCounts", 339: "SampleFormat",
    33550: "ModelPixelScale", 33922: "ModelTiepoint", 34735: "GeoKeyDirectory",
    34736: "GeoDoubleParams", 34737: "GeoAsciiParams", 42112: "GDAL_METADATA", 42113: "GDAL_NODATA",
}
TYPE_FMT = {1: "B", 2: "s", 3: "H", 4: "I", 5: "II", 11: "f", 12: "d", 16: "Q"}
TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 11: 4, 12: 8, 16: 8}


def tiff_tags(path: Path) -> dict:
    b = path.read_bytes()
    e = "<" if b[:2] == b"II" else ">"
    magic = struct.unpack(e + "H", b[2:4])[0]
    assert magic == 42, "classic TIFF expected"
    off = struct.unpack(e + "I", b[4:8])[0]
    n = struct.unpack(e + "H", b[off:off + 2])[0]
    tags = {"_byteorder": "II (little)" if e == "<" else "MM (big)"}
    for i in range(n):
        ent = b[off + 2 + 12 * i: off + 14 + 12 * i]
        tag, typ, cnt = struct.unpack(e + "HHI", ent[:8])
        size = TYPE_SIZE[typ] * cnt
        data = ent[8:8 + size] if size <= 4 else b[struct.unpack(e + "I", ent[8:12])[0]:][:size]
        if typ == 2:
            val = data[:cnt].rstrip(b"\0").decode("ascii", "replace")
        elif typ == 5:
            val = list(struct.unpack(e + "I" * (2 * cnt), data))
        else:
            val = list(struct.unpack(e + TYPE_FMT[typ] * cnt, data))
            if len(val) == 1:
                val = val[0]
        tags[TAG_NAMES.get(tag, str(tag))] = val
    return tags


# --------------------------------------------------------------------------
# expected emissions
# --------------------------------------------------------------------------


def raster_tile_range(gt, zoom):
    west, dx, north, dy = gt
    east = west + WIDTH * dx
    south = north - HEIGHT * dy
    x0 = math.floor(tile_xf(west, zoom))
    x1 = math.ceil(tile_xf(east, zoom)) - 1
    y0 = math.floor(tile_yf(north, zoom))
    y1 = math.ceil(tile_yf(south, zoom)) - 1
    return x0, x1, y0, y1


def tile_emissions(values, valid, gt, zoom, x_range, y_range) -> dict:
    """Exact-as-possible float64 area-weighted sums (math.fsum over products)."""
    west, dx, north, dy = gt
    h, w = values.shape
    lon_edges = [west + j * dx for j in range(w + 1)]          # west edge of column j
    lat_edges = [north - i * dy for i in range(h + 1)]         # north edge of row i
    sin_edges = [math.sin(math.radians(v)) for v in lat_edges]
    out = {}
    for ty in range(y_range[0], y_range[1] + 1):
        t_sn = math.sin(math.radians(tile_north(ty, zoom)))
        t_ss = math.sin(math.radians(tile_north(ty + 1, zoom)))
        fy = []
        for i in range(h):
            ov = min(sin_edges[i], t_sn) - max(sin_edges[i + 1], t_ss)
            fy.append(max(0.0, ov) / (sin_edges[i] - sin_edges[i + 1]))
        for tx in range(x_range[0], x_range[1] + 1):
            t_w = tile_west(tx, zoom)
            t_e = tile_west(tx + 1, zoom)
            fx = []
            for j in range(w):
                ov = min(lon_edges[j + 1], t_e) - max(lon_edges[j], t_w)
                fx.append(max(0.0, ov) / (lon_edges[j + 1] - lon_edges[j]))
            terms = [values[i, j] * fx[j] * fy[i]
                     for i in range(h) if fy[i] > 0.0
                     for j in range(w) if fx[j] > 0.0 and valid[i, j]]
            out[(tx, ty)] = math.fsum(terms) + 0.0
    return out


def compact_json(obj) -> str:
    """json.dumps(indent=2), but lists of scalars stay on one line."""
    text = json.dumps(obj, indent=2)
    return re.sub(r"\[\s*([^\[\]{}]*?)\s*\]",
                  lambda m: "[" + ", ".join(p.strip() for p in m.group(1).split(",")) + "]"
                  if m.group(1).strip() else "[]", text)


def write_tiles_csv(path: Path, em: dict) -> None:
    with path.open("w", newline="") as f:
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(["x", "y", "emission"])
        for (x, y) in sorted(em, key=lambda k: (k[1], k[0])):
            wr.writerow([x, y, repr(float(em[(x, y)]))])


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    m1 = make_month01()
    m1_nan = np.where(m1 == NODATA, np.float32(np.nan), m1).astype(np.float32)
    m2 = make_month02(m1)
    data = {"month01": (m1, NODATA), "month01_nan": (m1_nan, float("nan")), "month02": (m2, NODATA)}

    files = []
    for name, desc, opts, kind in LAYOUTS:
        arr, nd = data[kind]
        p = OUT_DIR / name
        if p.exists():
            p.unlink()
        write_tif(p, arr, nd, opts)
        files.append((name, desc, kind))

    # Read every file back and make sure every month01 file decodes to the same raster.
    ref_vals, ref_valid, gt, _ = read_back(OUT_DIR / "odiac_strip_none.tif")
    layouts = {}
    first_geo = None
    for name, desc, kind in files:
        v, ok, g, nd = read_back(OUT_DIR / name)
        assert g == gt, (name, g, gt)
        if kind.startswith("month01"):
            assert np.array_equal(ok, ref_valid), name
            assert np.array_equal(v[ok], ref_vals[ok]), name
        t = tiff_tags(OUT_DIR / name)
        geo_tags = {"ModelPixelScale": t.get("ModelPixelScale"), "ModelTiepoint": t.get("ModelTiepoint"),
                    "GeoKeyDirectory": t.get("GeoKeyDirectory")}
        assert first_geo is None or first_geo == geo_tags, name
        first_geo = geo_tags
        layouts[name] = {
            "description": desc,
            "data": kind,
            "bytes": (OUT_DIR / name).stat().st_size,
            "byte_order": t["_byteorder"],
            "compression": t.get("Compression"),
            "predictor": t.get("Predictor", 1),
            "planar_config": t.get("PlanarConfig", 1),
            "tiled": "TileWidth" in t,
            "block": [t["TileWidth"], t["TileLength"]] if "TileWidth" in t else [WIDTH, t.get("RowsPerStrip")],
            "gdal_nodata_tag": t.get("GDAL_NODATA"),
        }

    m2_vals, m2_valid, g2, _ = read_back(OUT_DIR / "odiac_month02.tif")
    assert g2 == gt

    x0, x1, y0, y1 = raster_tile_range(gt, ZOOM)
    em1 = tile_emissions(ref_vals, ref_valid, gt, ZOOM, (x0, x1), (y0, y1))
    em2 = tile_emissions(m2_vals, m2_valid, gt, ZOOM, (x0, x1), (y0, y1))
    em12 = {k: em1[k] + em2[k] for k in em1}
    # spot values of the two-month sum (full per-tile table left out to keep fixtures small)
    spot_keys = [(x0 + 8, y0 + 8), (x0 + 14, y0 + 0), (x0 + 0, y0 + 1), (x0 + 9, y0 + 10)]

    total1 = math.fsum(ref_vals[ref_valid].tolist())
    total2 = math.fsum(m2_vals[m2_valid].tolist())
    tiles_total1 = math.fsum(em1.values())
    tiles_total2 = math.fsum(em2.values())
    assert abs(tiles_total1 - total1) <= 1e-9 * total1, (tiles_total1, total1)
    assert abs(tiles_total2 - total2) <= 1e-9 * total2, (tiles_total2, total2)

    write_tiles_csv(OUT_DIR / "expected_z15.csv", em1)
    stale = OUT_DIR / "expected_z15_month01_plus_month02.csv"
    if stale.exists():
        stale.unlink()

    # Region: explicit tile sub-box, plus a bbox whose tile range is exactly that sub-box.
    rx0, rx1 = x0 + REGION_DX[0], x0 + REGION_DX[1]
    ry0, ry1 = y0 + REGION_DY[0], y0 + REGION_DY[1]
    # bbox corners strictly inside the corner tiles (30% / 70% of the way across)
    bbox_w = tile_west(rx0, ZOOM) + 0.3 * (tile_west(rx0 + 1, ZOOM) - tile_west(rx0, ZOOM))
    bbox_e = tile_west(rx1, ZOOM) + 0.7 * (tile_west(rx1 + 1, ZOOM) - tile_west(rx1, ZOOM))
    bbox_n = tile_north(ry0, ZOOM) - 0.3 * (tile_north(ry0, ZOOM) - tile_north(ry0 + 1, ZOOM))
    bbox_s = tile_north(ry1, ZOOM) - 0.7 * (tile_north(ry1, ZOOM) - tile_north(ry1 + 1, ZOOM))
    bbox = [round(bbox_w, 6), round(bbox_s, 6), round(bbox_e, 6), round(bbox_n, 6)]
    assert tile_x(bbox[0], ZOOM) == rx0 and tile_x(bbox[2], ZOOM) == rx1
    assert tile_y(bbox[3], ZOOM) == ry0 and tile_y(bbox[1], ZOOM) == ry1
    region = {k: v for k, v in em1.items() if rx0 <= k[0] <= rx1 and ry0 <= k[1] <= ry1}
    write_tiles_csv(OUT_DIR / "expected_z15_region.csv", region)
    inside = math.fsum(region.values())
    outside = math.fsum(v for k, v in em1.items() if k not in region)

    zero_tiles = sorted(([k[0], k[1]] for k, v in em1.items() if v == 0.0), key=lambda k: (k[1], k[0]))
    # classify zero tiles: overlapping only nodata cells, or at least one valid (zero) cell
    only_nodata = tile_emissions(np.ones_like(ref_vals), ~ref_valid, gt, ZOOM, (x0, x1), (y0, y1))
    any_valid = tile_emissions(np.ones_like(ref_vals), ref_valid, gt, ZOOM, (x0, x1), (y0, y1))
    zero_nodata_only = [k for k in zero_tiles if any_valid[tuple(k)] == 0.0]
    zero_with_valid_zero_cells = [k for k in zero_tiles if any_valid[tuple(k)] > 0.0]
    assert all(only_nodata[tuple(k)] > 0.0 for k in zero_nodata_only)
    expected = {
        "generator": "scripts/make_import_fixtures.py",
        "versions": {
            "rasterio": rasterio.__version__,
            "gdal": rasterio.__gdal_version__,
            "numpy": np.__version__,
        },
        "unit": "tonnes of carbon per month (t C / month)",
        "raster": {
            "width": WIDTH,
            "height": HEIGHT,
            "crs": "EPSG:4326",
            "west": gt[0],
            "cell_width_deg": gt[1],
            "north": gt[2],
            "cell_height_deg": gt[3],
            "east": gt[0] + WIDTH * gt[1],
            "south": gt[2] - HEIGHT * gt[3],
            "nodata": NODATA,
            "nodata_cells_month01": int((~ref_valid).sum()),
            "zero_valid_cells_month01": int(((ref_vals == 0.0) & ref_valid).sum()),
            "nodata_cells_month02": int((~m2_valid).sum()),
        },
        "geotiff_tags_all_files": first_geo,
        "zoom": ZOOM,
        "tile_range": {"x_min": x0, "x_max": x1, "y_min": y0, "y_max": y1,
                       "tiles": (x1 - x0 + 1) * (y1 - y0 + 1)},
        "tiles_with_zero_emission": zero_tiles,
        "zero_tiles_overlapping_only_nodata_cells": zero_nodata_only,
        "zero_tiles_overlapping_valid_zero_cells": zero_with_valid_zero_cells,
        "total_month01_tC": total1,
        "total_month01_tCO2": total1 * 44.0 / 12.0,
        "total_month02_tC": total2,
        "total_month01_plus_month02_tC": total1 + total2,
        "total_month01_plus_month02_tCO2": (total1 + total2) * 44.0 / 12.0,
        "sum_of_tiles_month01_tC": tiles_total1,
        "month01_plus_month02_tile_spot_values_tC": [
            {"x": k[0], "y": k[1], "month01": em1[k], "month02": em2[k], "sum": em12[k]} for k in spot_keys
        ],
        "region": {
            "x_min": rx0, "x_max": rx1, "y_min": ry0, "y_max": ry1,
            "tiles": len(region),
            "bbox_lon_lat": {"min_lon": bbox[0], "min_lat": bbox[1], "max_lon": bbox[2], "max_lat": bbox[3]},
            "inside_month01_tC": inside,
            "outside_month01_tC": outside,
        },
        "files": layouts,
        "tolerance_note": ("expected values are math.fsum of float64 products; compare tiles with "
                           "|got - expected| <= 1e-9 * max(1, |expected|) and totals with relative 1e-9; "
                           "tiles listed with 0.0 must come out exactly 0"),
    }
    (OUT_DIR / "expected.json").write_text(compact_json(expected) + "\n")
    print(json.dumps({k: expected[k] for k in ("tile_range", "total_month01_tC", "region")}, indent=2))
    print("zero tiles:", zero_tiles)
    for name in sorted(p.name for p in OUT_DIR.iterdir()):
        print(f"{(OUT_DIR / name).stat().st_size:7d}  {name}")


if __name__ == "__main__":
    main()

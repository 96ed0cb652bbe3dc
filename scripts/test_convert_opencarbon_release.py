#!/usr/bin/env python3
"""Test of scripts/convert_opencarbon_release.py on a tiny fake release in the authors' layout.

Run:  .venv/bin/python scripts/test_convert_opencarbon_release.py [--keep]

Builds, in a temporary folder, `testville_data/` laid out like the authors' city folders
(til2carbon_<city>.npy, tile2poi_distribution_<city>.npy with H x W x C rasters,
tile2poi_count_<city>.npy, satellite_images_<city>/<district>/<x>_<y>.png, and split pickles
train_test_split_<city>[_<name>].pkl next to and above it): a 4 x 3 block of zoom-15 tiles near
Yinchuan, 4 POI channels, 16 x 16 rasters, plus tiles that must be dropped for every reason
the converter knows. Then it
  1. checks the pixel-centre geometry at every zoom 1..22 (round trip into the same pixel);
  2. converts with every file found automatically and validates the output against the
     dataset format in pure Python: headers, dataset.yaml fields, one image per tile row (PNG,
     RGB/RGBA, square, channels not swapped, byte copy where possible), categories, weights,
     the pixel round trip of every non-zero raster pixel (the POIs rebuild the rasters exactly),
     total weight = sum of the rasters, split files, and the converter's summary;
  3. converts a variant (C x H x W rasters in an .npz, named categories, one with a comma,
     index-based split, --swap-rb, --image-size, --emission-scale, no tile filter, tiles
     without POI rasters kept) and validates it the same way;
  4. checks that bad inputs and options fail with exit code 2 and leave no output;
  5. runs `target/release/opencarbon inspect [--json]` on both outputs when the binary exists
     (skipped with a message otherwise).
Exits 1 if any check fails. Imports only the standard library, numpy and Pillow.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CONVERTER = os.path.join(HERE, "convert_opencarbon_release.py")
BINARY = os.path.join(REPO, "target", "release", "opencarbon")

ZOOM = 15
RS = 16  # raster size
C = 4
CITY = "testville"
LON0, LAT0 = 106.27, 38.47  # Yinchuan


# ----------------------------------------------------------------------------- checking

FAILURES: list[str] = []
N_CHECKS = 0


def check(cond, what, detail=""):
    global N_CHECKS
    N_CHECKS += 1
    if cond:
        print(f"  ok    {what}")
    else:
        FAILURES.append(what)
        print(f"  FAIL  {what}" + (f": {detail}" if detail else ""))
    return bool(cond)


# ----------------------------------------------------------------------------- spec geometry


def spec_tile(lon, lat, zoom):
    """Continuous tile coordinates by dataset-format.md (float64)."""
    n = float(2**zoom)
    fx = (lon + 180.0) / 360.0 * n
    phi = math.radians(lat)
    fy = (1.0 - math.asinh(math.tan(phi)) / math.pi) / 2.0 * n
    return fx, fy


def spec_pixel(lon, lat, zoom, h, w):
    fx, fy = spec_tile(lon, lat, zoom)
    tx, ty = math.floor(fx), math.floor(fy)
    return tx, ty, math.floor((fy - ty) * h), math.floor((fx - tx) * w)


# ----------------------------------------------------------------------------- fake release


def noise_image(rng, w, h, mode="RGB"):
    a = rng.integers(0, 256, size=(h, w, 4 if mode == "RGBA" else 3), dtype=np.uint8)
    a[:4, :4, :3] = (255, 0, 0)  # red block, north-west corner
    a[-4:, -4:, :3] = (0, 0, 255)  # blue block, south-east corner
    return Image.fromarray(a, mode)


def make_release(root):
    """Write the fake release; return a description of what the converter should produce."""
    rng = np.random.default_rng(7)
    n = 2**ZOOM
    fx, fy = spec_tile(LON0, LAT0, ZOOM)
    x0, y0 = int(fx), int(fy)
    T = lambda i, j: (x0 + i, y0 + j)  # noqa: E731

    rel = os.path.join(root, f"{CITY}_data")
    img_root = os.path.join(rel, f"satellite_images_{CITY}")
    for d in ("district_a", "district_b"):
        os.makedirs(os.path.join(img_root, d))

    emissions, rasters, images, counts = {}, {}, {}, {}

    def raster(kind):
        r = np.zeros((RS, RS, C), dtype=np.float64)  # H x W x C, as the authors store it
        mask = rng.random((RS, RS, C)) < 0.15
        r[mask] = rng.integers(1, 6, size=int(mask.sum()))
        if kind == "dense":
            r[:, :, 0] += 1
            for rr, cc in ((0, 0), (0, RS - 1), (RS - 1, 0), (RS - 1, RS - 1)):
                r[rr, cc, :] += 7
        if kind == "fractional":
            r[3, 5, 1] = 0.25
            r[RS - 1, 0, 2] = 2.5
        return r

    def put_image(key, kind, district="district_a"):
        x, y = key
        base = os.path.join(img_root, district, f"{x}_{y}")
        if kind == "png":
            path = base + ".png"
            noise_image(rng, 32, 32).save(path)
        elif kind == "rgba":
            path = base + ".png"
            noise_image(rng, 32, 32, "RGBA").save(path)
        elif kind == "jpeg":
            path = base + ".jpg"
            noise_image(rng, 32, 32).save(path, quality=90)
        elif kind == "palette_nonsquare":
            path = base + ".png"
            noise_image(rng, 40, 30).convert("P", palette=Image.Palette.ADAPTIVE).save(path)
        elif kind == "corrupt":
            path = base + ".png"
            with open(path, "wb") as f:
                f.write(b"\x89PNG\r\n\x1a\n this is not a PNG")
        else:
            raise ValueError(kind)
        images[key] = (path, kind)

    em = lambda: float(np.exp(rng.normal(6.0, 1.5)))  # noqa: E731
    plan = {
        # key: (emission, image kind, raster kind, in tile filter, expected fate)
        T(0, 0): (0.0, "png", "sparse", True, "kept"),
        T(1, 0): (em(), "png", "sparse", True, "kept"),
        T(2, 0): (None, "png", "sparse", True, "image_without_emission"),
        T(3, 0): (np.float32(em()), "jpeg", "sparse", True, "kept"),
        T(0, 1): (np.float64(em()), "rgba", "sparse", True, "kept"),
        T(1, 1): (em(), "png", "dense", True, "kept"),
        T(2, 1): (em(), "corrupt", "sparse", True, "unreadable_image"),
        T(3, 1): (em(), "palette_nonsquare", "sparse", True, "kept"),
        T(0, 2): (em(), "png", None, True, "no_poi_raster"),
        T(1, 2): (em(), "png", "sparse", False, "not_in_tile_filter"),
        T(2, 2): (em(), None, "sparse", True, "emission_without_image"),
        T(3, 2): (np.array([em()]), "png", "fractional", True, "kept"),
        T(4, 1): (float("nan"), "png", "sparse", True, "invalid_emission"),
        T(6, 0): (None, None, "sparse", True, "poi_raster_only"),
    }
    for i, (key, (e, img, rk, in_filter, _)) in enumerate(plan.items()):
        if e is not None:
            emissions[key] = e
        if img is not None:
            put_image(key, img, "district_a" if i % 2 else "district_b")
        if rk is not None:
            rasters[key] = raster(rk)
        if in_filter:
            counts[key] = rng.integers(0, 10, size=C)
    # dtype variety: one float32, one integer raster
    rasters[T(0, 1)] = rasters[T(0, 1)].astype(np.float32)
    rasters[T(1, 0)] = rasters[T(1, 0)].astype(np.int64)
    # files the image scan must ignore
    with open(os.path.join(img_root, "README.txt"), "w") as f:
        f.write("not an image\n")
    noise_image(rng, 8, 8).save(os.path.join(img_root, "district_b", "thumb.png"))

    np.save(os.path.join(rel, f"til2carbon_{CITY}.npy"), emissions, allow_pickle=True)
    np.save(os.path.join(rel, f"tile2poi_distribution_{CITY}.npy"), rasters, allow_pickle=True)
    np.save(os.path.join(rel, f"tile2poi_count_{CITY}.npy"), counts, allow_pickle=True)

    # Split 1 (next to the data): tuples, numpy ints, a duplicate, a dropped tile, a 0 tile.
    split_block = (
        [T(0, 0), T(1, 0), (np.int64(T(1, 0)[0]), np.int64(T(1, 0)[1])), T(3, 0)],
        [T(0, 1), T(2, 1)],
        [T(1, 1), T(3, 1), T(3, 2), T(2, 2)],
    )
    with open(os.path.join(rel, f"train_test_split_{CITY}_block.pkl"), "wb") as f:
        pickle.dump(split_block, f)
    # Split 2 (one folder up, where the authors' code keeps them): lists of lists.
    split_plain = ([list(T(1, 1)), list(T(0, 0))], [list(T(3, 2))], [list(T(1, 0)), list(T(0, 2))])
    with open(os.path.join(root, f"train_test_split_{CITY}.pkl"), "wb") as f:
        pickle.dump(split_plain, f)

    fates = {k: v[4] for k, v in plan.items()}
    return {
        "release": rel,
        "images_dir": img_root,
        "emissions": emissions,
        "rasters_hwc": rasters,
        "images": images,
        "counts": counts,
        "fates": fates,
        "splits": {"block": split_block, CITY: split_plain},
        "T": T,
        "n": n,
    }


def expected_split(parts, written):
    out = {}
    for name, part in zip(("train", "valid", "test"), parts):
        for t in part:
            key = (int(t[0]), int(t[1]))
            if key in written:
                out[key] = name
    return out


# ----------------------------------------------------------------------------- validation


def read_yaml(path):
    """The tiny YAML subset the converter writes (plain or JSON-quoted scalars, flow lists)."""

    def scalar(v):
        if v[:1] in ('"', "["):
            return json.loads(v)
        try:
            return int(v)
        except ValueError:
            return v

    out, cur = {}, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            if line.startswith("  "):
                k, _, v = line.strip().partition(":")
                out[cur][k.strip()] = scalar(v.strip())
            else:
                k, _, v = line.partition(":")
                k, v = k.strip(), v.strip()
                if v == "":
                    out[k], cur = {}, k
                else:
                    out[k] = scalar(v)
    return out


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def validate(out, exp, summary_path):
    """Validate one converted dataset. exp: name, categories, unit, target_name, scale,
    written (set of keys), dropped (reason -> count), swap_rb, image_size, splits (name ->
    {key: part}), copied (keys whose image must be a byte copy)."""
    print(f"validating {out}")
    written = exp["written"]
    n = 2**ZOOM

    # --- layout
    check(os.path.isfile(os.path.join(out, "dataset.yaml")), "dataset.yaml exists")
    check(os.path.isfile(os.path.join(out, "tiles.csv")), "tiles.csv exists")
    check(os.path.isfile(os.path.join(out, "pois.csv")), "pois.csv exists")
    check(os.path.isdir(os.path.join(out, "images")), "images/ exists")
    extra = sorted(set(os.listdir(out)) - {"dataset.yaml", "tiles.csv", "pois.csv", "images", "splits"})
    check(not extra, "no files outside the format's layout", str(extra))

    # --- dataset.yaml
    meta = read_yaml(os.path.join(out, "dataset.yaml"))
    check(meta.get("format") == "opencarbon-city/1", "dataset.yaml format tag")
    check(meta.get("name") == exp["name"], f"dataset.yaml name = {exp['name']}", repr(meta.get("name")))
    check(isinstance(meta.get("name"), str) and all(ch in "abcdefghijklmnopqrstuvwxyz0123456789_-" for ch in meta["name"]),
          "dataset.yaml name matches [a-z0-9_-]+")
    check(meta.get("zoom") == ZOOM, f"dataset.yaml zoom = {ZOOM}")
    tgt = meta.get("target", {})
    check(tgt.get("name") == exp["target_name"], "dataset.yaml target.name", repr(tgt))
    check(tgt.get("unit") == exp["unit"], "dataset.yaml target.unit", repr(tgt))
    cats = meta.get("poi_categories")
    check(cats == exp["categories"], f"dataset.yaml poi_categories = {exp['categories']}", repr(cats))
    check(isinstance(cats, list) and len(cats) == len(set(cats)) > 0, "poi_categories non-empty, no duplicates")
    check(isinstance(meta.get("source"), str) and meta["source"], "dataset.yaml source present")
    check(set(meta) <= {"format", "name", "zoom", "target", "poi_categories", "source"},
          "dataset.yaml has no unknown fields", str(sorted(meta)))

    # --- tiles.csv
    header, rows = read_csv(os.path.join(out, "tiles.csv"))
    check(header == ["x", "y", "emission"], "tiles.csv header is x,y,emission", str(header))
    keys = [(int(r[0]), int(r[1])) for r in rows]
    check(len(keys) == len(set(keys)), "tiles.csv has no duplicate tile")
    check(set(keys) == written, f"tiles.csv holds exactly the {len(written)} expected tiles",
          f"got {sorted(keys)}, expected {sorted(written)}")
    check(all(0 <= x < n and 0 <= y < n for x, y in keys), "tile indices inside the zoom grid")
    check(keys == sorted(keys, key=lambda k: (k[1], k[0])), "tiles.csv sorted by (y, x)")
    em_ok = True
    for r in rows:
        key = (int(r[0]), int(r[1]))
        v = float(r[2])
        want = float(np.asarray(exp["emissions"][key]).reshape(-1)[0]) * exp["scale"]
        if not (math.isfinite(v) and v >= 0 and v == want):
            em_ok = False
            print(f"        tile {key}: emission {r[2]} != {want!r}")
    check(em_ok, "every emission is finite, >= 0 and equals the released value x scale (exactly)")
    check(any(float(r[2]) == 0 for r in rows) == exp["has_zero"], "emission-0 tile kept as a row")

    # --- images
    img_dir = os.path.join(out, "images")
    names = sorted(os.listdir(img_dir))
    check(names == sorted(f"{x}_{y}.png" for x, y in written), "one images/<x>_<y>.png per row, nothing else",
          str(names))
    sizes_ok, modes_ok, png_ok, corner_ok, square_ok = True, True, True, True, True
    for key in written:
        p = os.path.join(img_dir, f"{key[0]}_{key[1]}.png")
        if not os.path.isfile(p):
            continue
        with open(p, "rb") as f:
            png_ok &= f.read(8) == b"\x89PNG\r\n\x1a\n"
        with Image.open(p) as im:
            png_ok &= im.format == "PNG"
            modes_ok &= im.mode in ("RGB", "RGBA")
            square_ok &= im.size[0] == im.size[1]
            if exp["image_size"]:
                sizes_ok &= im.size == (exp["image_size"],) * 2
            rgb = np.asarray(im.convert("RGB"))
        src, kind = exp["images"][key]
        if kind == "palette_nonsquare" and not exp["image_size"]:
            sizes_ok &= rgb.shape[:2] == (256, 256)
        if kind in ("png", "rgba"):
            # north-west block red, south-east block blue (blue/red when --swap-rb); the
            # 4-pixel blocks still fill the corner pixel after a resize from 32 to 24.
            nw, se = rgb[0, 0].astype(int), rgb[-1, -1].astype(int)
            want_nw, want_se = ((0, 0, 255), (255, 0, 0)) if exp["swap_rb"] else ((255, 0, 0), (0, 0, 255))
            tol = 2 if exp["image_size"] else 0
            if np.abs(nw - want_nw).max() > tol or np.abs(se - want_se).max() > tol:
                corner_ok = False
                print(f"        {p}: corners {nw} {se}, expected {want_nw} {want_se}")
        if kind == "jpeg" and not exp["image_size"]:
            with Image.open(src) as s:
                want = np.asarray(s.convert("RGB"))
            if exp["swap_rb"]:
                want = want[..., ::-1]
            corner_ok &= np.array_equal(rgb, want)
    check(png_ok, "every image is a PNG")
    check(modes_ok, "every image is RGB or RGBA")
    check(square_ok, "every image is square")
    check(sizes_ok, "image sizes as requested (non-square resized to 256, or --image-size)")
    check(corner_ok, "pixels keep their colours (no R/B swap unless --swap-rb; JPEG decoded exactly)")
    copied_ok = True
    for key in exp["copied"]:
        with open(exp["images"][key][0], "rb") as a, open(os.path.join(img_dir, f"{key[0]}_{key[1]}.png"), "rb") as b:
            copied_ok &= a.read() == b.read()
    check(copied_ok, f"{len(exp['copied'])} plain 8-bit RGB/RGBA PNG(s) copied byte for byte")

    # --- pois.csv
    header, rows = read_csv(os.path.join(out, "pois.csv"))
    check(header == ["lon", "lat", "category", "weight"], "pois.csv header is lon,lat,category,weight", str(header))
    cat_index = {c: i for i, c in enumerate(exp["categories"])}
    rebuilt = {}
    bad_cat = bad_w = outside = bad_pix = dup = 0
    seen = set()
    weights = []
    for r in rows:
        lon, lat, cat, w = float(r[0]), float(r[1]), r[2], float(r[3])
        if cat not in cat_index:
            bad_cat += 1
            continue
        if not (math.isfinite(w) and w >= 0):
            bad_w += 1
        weights.append(w)
        tx, ty, row, col = spec_pixel(lon, lat, ZOOM, RS, RS)
        if (tx, ty) not in written:
            outside += 1
            continue
        if not (0 <= row < RS and 0 <= col < RS):
            bad_pix += 1
            continue
        cell = ((tx, ty), cat_index[cat], row, col)
        if cell in seen:
            dup += 1
        seen.add(cell)
        rebuilt.setdefault((tx, ty), np.zeros((C, RS, RS)))[cat_index[cat], row, col] += w
    check(bad_cat == 0, "every POI category is one of poi_categories", f"{bad_cat} bad")
    check(bad_w == 0, "every weight is finite and >= 0", f"{bad_w} bad")
    check(outside == 0, "every POI falls inside a written tile (spec formula)", f"{outside} outside")
    check(bad_pix == 0 and dup == 0, "every POI maps to its own pixel (no two POIs share a pixel+category)",
          f"{bad_pix} bad, {dup} shared")
    nonzero_total = 0
    raster_parts = []
    round_trip_ok = True
    for key in written:
        src = exp["rasters_chw"].get(key)
        if src is None:
            round_trip_ok &= key not in rebuilt
            continue
        nonzero_total += int(np.count_nonzero(src))
        raster_parts.append(math.fsum(src.ravel().tolist()))
        got = rebuilt.get(key, np.zeros_like(src))
        if not np.array_equal(got, src):
            round_trip_ok = False
            diff = np.argwhere(got != src)
            print(f"        tile {key}: {len(diff)} pixel(s) differ, e.g. (c,row,col)={tuple(diff[0])}")
    check(len(rows) == nonzero_total, f"one POI per non-zero raster pixel ({nonzero_total})", f"got {len(rows)}")
    check(round_trip_ok, "pixel round trip: recomputing tile and pixel from every written lon/lat "
          "(float64, spec formulas) rebuilds every raster exactly")
    w_total, r_total = math.fsum(weights), math.fsum(raster_parts)
    check(w_total == r_total, f"total POI weight {w_total!r} = sum of the written tiles' rasters {r_total!r}")

    # --- splits
    split_dir = os.path.join(out, "splits")
    want_names = sorted(exp["splits"])
    got_names = sorted(f[:-4] for f in os.listdir(split_dir)) if os.path.isdir(split_dir) else []
    check(got_names == want_names, f"split files {want_names}", str(got_names))
    for name, want in exp["splits"].items():
        p = os.path.join(split_dir, f"{name}.csv")
        if not os.path.isfile(p):
            continue
        header, rows = read_csv(p)
        check(header == ["x", "y", "split"], f"splits/{name}.csv header is x,y,split", str(header))
        got = {}
        ok = True
        for r in rows:
            key = (int(r[0]), int(r[1]))
            ok &= r[2] in ("train", "valid", "test") and key in written and key not in got
            got[key] = r[2]
        check(ok, f"splits/{name}.csv: valid parts, every tile a row of tiles.csv, none twice")
        check(got == want, f"splits/{name}.csv equals the published split minus unwritten tiles",
              f"got {got}, expected {want}")

    # --- the converter's summary
    with open(summary_path) as f:
        s = json.load(f)
    check(s["tiles_written"] == len(written), "summary: tiles written")
    want_drop = {r: exp["dropped"].get(r, 0) for r in s["tiles_dropped"]}
    check(s["tiles_dropped"] == want_drop, f"summary: tiles dropped by reason {exp['dropped']}",
          str(s["tiles_dropped"]))
    check(s["pois_written"] == nonzero_total, "summary: POIs written")
    check(s["poi_weight_total"] == r_total, "summary: total POI weight")
    check(s["inputs"]["other_files_in_images"] == 2, "summary: 2 non-tile files in the image folder ignored")
    unwritten = math.fsum(
        math.fsum(np.asarray(v, dtype=np.float64).ravel().tolist())
        for k, v in exp["rasters_chw_all"].items() if k not in written
    )
    check(s["poi_weight_in_unwritten_tiles"] == unwritten, "summary: POI weight of tiles not written")
    for name, want in exp["splits"].items():
        sw = s["splits"].get(name, {}).get("written", {})
        check(sw == {p: sum(1 for v in want.values() if v == p) for p in ("train", "valid", "test")},
              f"summary: split {name} sizes", str(sw))
    return s


def run_inspect(out, exp):
    if not os.access(BINARY, os.X_OK):
        print(f"  skip  opencarbon inspect: {BINARY} not found")
        return
    r = subprocess.run([BINARY, "inspect", out], capture_output=True, text=True, timeout=120)
    check(r.returncode == 0, f"opencarbon inspect {os.path.basename(out)} exits 0",
          f"rc {r.returncode}: {r.stderr.strip()}")
    if r.returncode == 0:
        print("        | " + "\n        | ".join(r.stdout.rstrip().splitlines()))
    r = subprocess.run([BINARY, "inspect", "--json", out], capture_output=True, text=True, timeout=120)
    if not check(r.returncode == 0, "opencarbon inspect --json exits 0", r.stderr.strip()):
        return
    st = json.loads(r.stdout)
    check(st["tiles"] == len(exp["written"]), "inspect: tile count", str(st["tiles"]))
    check(st["zoom"] == ZOOM and st["name"] == exp["name"], "inspect: name and zoom")
    per_cat = dict((c, w) for c, w in st["pois_per_category"])
    want = {c: 0.0 for c in exp["categories"]}
    for key in exp["written"]:
        src = exp["rasters_chw"].get(key)
        if src is not None:
            for i, c in enumerate(exp["categories"]):
                want[c] += float(src[i].sum())
    check(all(abs(per_cat.get(c, -1) - w) <= 1e-6 * max(1.0, w) for c, w in want.items()),
          "inspect: POI weight per category = raster sums", f"{per_cat} vs {want}")
    check(sorted(st["splits"]) == sorted(exp["splits"]), "inspect: split names", str(st["splits"]))
    check(st["warnings"] == [], "inspect: no warnings (no stray image, no POI outside the tiles)",
          str(st["warnings"]))


def run_converter(args):
    cmd = [sys.executable, CONVERTER] + args
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return r


# ----------------------------------------------------------------------------- tests


def test_geometry():
    print("geometry: pixel centres round-trip into their pixel at zoom 1..22")
    sys.dont_write_bytecode = True  # leave no __pycache__ next to the scripts
    spec = importlib.util.spec_from_file_location("convert_opencarbon_release", CONVERTER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rnd = random.Random(3)
    bad, total = 0, 0
    for zoom in range(1, 23):
        n = 2**zoom
        tiles = {(0, 0), (n - 1, n - 1), (0, n - 1), (n - 1, 0), (n // 2, n // 2)}
        tiles |= {(rnd.randrange(n), rnd.randrange(n)) for _ in range(6)}
        for h, w in ((256, 256), (16, 16), (12, 8)):
            rows = np.array([0, 0, h - 1, h - 1] + [rnd.randrange(h) for _ in range(6)])
            cols = np.array([0, w - 1, 0, w - 1] + [rnd.randrange(w) for _ in range(6)])
            for x, y in tiles:
                lon, lat = mod.pixel_centres(x, y, zoom, rows, cols, h, w)
                for r, c, lo, la in zip(rows.tolist(), cols.tolist(), lon.tolist(), lat.tolist()):
                    lo, la = float(repr(lo)), float(repr(la))
                    total += 1
                    if spec_pixel(lo, la, zoom, h, w) != (x, y, r, c):
                        bad += 1
                    if mod.locate(lo, la, zoom, h, w) != (x, y, r, c):
                        bad += 1
    check(bad == 0, f"{total} pixel centres (corner tiles and pixels included) land in their pixel",
          f"{bad} wrong")
    return mod


def make_expectation(rel_info, *, name, categories, unit, target_name, scale, written, dropped,
                     swap_rb, image_size, splits, layout_hwc=True):
    rasters_chw_all = {k: np.transpose(np.asarray(v, dtype=np.float64), (2, 0, 1))
                       for k, v in rel_info["rasters_hwc"].items()}
    copied = set()
    if not swap_rb and not image_size:
        copied = {k for k in written if rel_info["images"][k][1] in ("png", "rgba")}
    return {
        "name": name,
        "categories": categories,
        "unit": unit,
        "target_name": target_name,
        "scale": scale,
        "written": written,
        "dropped": dropped,
        "swap_rb": swap_rb,
        "image_size": image_size,
        "splits": splits,
        "copied": copied,
        "emissions": rel_info["emissions"],
        "images": rel_info["images"],
        "rasters_chw": {k: v for k, v in rasters_chw_all.items() if k in written},
        "rasters_chw_all": rasters_chw_all,
        "has_zero": any(float(np.asarray(rel_info["emissions"][k]).reshape(-1)[0]) == 0 for k in written),
    }


def main():
    keep = "--keep" in sys.argv[1:]
    tmp = tempfile.mkdtemp(prefix="oc-convert-test-")
    try:
        conv = test_geometry()

        info = make_release(tmp)
        rel = info["release"]
        fates = info["fates"]
        T = info["T"]
        print(f"fake release: {rel} ({len(fates)} tiles around ({LON0}, {LAT0}) at zoom {ZOOM}, "
              f"{C} channels, {RS}x{RS} rasters)")

        # ---------------------------------------------------------------- run 1: defaults
        out1 = os.path.join(tmp, "out", "testville")
        s1 = os.path.join(tmp, "summary1.json")
        print("run 1: the authors' layout, every file found automatically")
        r = run_converter([rel, out1, "--summary-json", s1])
        print("        | " + "\n        | ".join((r.stdout + r.stderr).rstrip().splitlines()))
        exp1 = None
        if check(r.returncode == 0, "converter exits 0", r.stderr.strip()):
            written = {k for k, f in fates.items() if f == "kept"}
            dropped = {}
            for f in fates.values():
                if f != "kept":
                    dropped[f] = dropped.get(f, 0) + 1
            exp1 = make_expectation(
                info, name=CITY, categories=[f"poi{i:02d}" for i in range(C)],
                unit=conv.DEFAULT_UNIT, target_name=conv.DEFAULT_TARGET_NAME, scale=1.0,
                written=written, dropped=dropped, swap_rb=False, image_size=None,
                splits={n: expected_split(p, written) for n, p in info["splits"].items()},
            )
            validate(out1, exp1, s1)

        # ---------------------------------------------------------------- run 2: variant
        print("run 2: C x H x W rasters in an .npz, explicit paths and options")
        rel2 = os.path.join(tmp, "variant")
        os.makedirs(rel2)
        chw = {k: np.transpose(v, (2, 0, 1)) for k, v in info["rasters_hwc"].items()}
        np.savez(os.path.join(rel2, "pois.npz"), poi_distribution=np.array(chw, dtype=object),
                 other=np.arange(3))
        em_keys = list(info["emissions"])
        idx = {k: i for i, k in enumerate(em_keys)}
        split_idx = ([idx[T(0, 0)], idx[T(0, 2)], idx[T(1, 2)]], [idx[T(3, 2)]],
                     np.array([idx[T(1, 1)], idx[T(2, 2)]], dtype=np.int64))
        with open(os.path.join(rel2, "idx_split.pkl"), "wb") as f:
            pickle.dump(split_idx, f)
        cats = ["food", "shops,retail", "health care", "other"]
        with open(os.path.join(rel2, "cats.txt"), "w") as f:
            f.write("# channel names\n" + "\n".join(cats) + "\n")
        out2 = os.path.join(tmp, "out", "variant")
        s2 = os.path.join(tmp, "summary2.json")
        scale = 44.0 / 12.0
        r = run_converter([
            rel, out2, "--name", "testville-b", "--zoom", str(ZOOM),
            "--emission", os.path.join(rel, f"til2carbon_{CITY}.npy"),
            "--poi", os.path.join(rel2, "pois.npz"), "--poi-key", "poi_distribution",
            "--poi-layout", "chw", "--images", info["images_dir"], "--no-tile-filter",
            "--keep-tiles-without-poi", "--categories", "@" + os.path.join(rel2, "cats.txt"),
            "--swap-rb", "--image-size", "24", "--emission-scale", repr(scale),
            "--unit", "t CO2 (ODIAC x 44/12)", "--target-name", "co2",
            "--split", "published=" + os.path.join(rel2, "idx_split.pkl"), "--split-indices", "emission",
            "--summary-json", s2,
        ])
        print("        | " + "\n        | ".join((r.stdout + r.stderr).rstrip().splitlines()))
        exp2 = None
        if check(r.returncode == 0, "converter exits 0", r.stderr.strip()):
            keep_fates = ("kept", "no_poi_raster", "not_in_tile_filter")
            written = {k for k, f in fates.items() if f in keep_fates}
            dropped = {}
            for f in fates.values():
                if f not in keep_fates:
                    dropped[f] = dropped.get(f, 0) + 1
            split_pairs = tuple([em_keys[i] for i in part] for part in split_idx)
            exp2 = make_expectation(
                info, name="testville-b", categories=cats, unit="t CO2 (ODIAC x 44/12)",
                target_name="co2", scale=scale, written=written, dropped=dropped, swap_rb=True,
                image_size=24, splits={"published": expected_split(split_pairs, written)},
            )
            validate(out2, exp2, s2)

        # ---------------------------------------------------------------- run 3: failures
        print("run 3: bad inputs fail with exit code 2 and leave nothing behind")
        bad = os.path.join(tmp, "bad")
        os.makedirs(bad)
        with open(os.path.join(bad, "leak.pkl"), "wb") as f:
            pickle.dump(([T(0, 0)], [T(0, 0)], []), f)
        with open(os.path.join(bad, "idx.pkl"), "wb") as f:
            pickle.dump(([0], [1], [2]), f)
        cases = [
            ("3 category names for 4 channels", ["--categories", "a,b,c"]),
            ("a tile in two parts of a split", ["--split", os.path.join(bad, "leak.pkl")]),
            ("a split of indices without --split-indices", ["--split", os.path.join(bad, "idx.pkl")]),
            ("tiles outside the grid of a wrong --zoom", ["--zoom", "10"]),
            ("--emission-scale without --unit", ["--emission-scale", "2"]),
            ("a missing image folder", ["--images", os.path.join(bad, "nope")]),
        ]
        for what, extra_args in cases:
            o = os.path.join(bad, "out")
            r = run_converter([rel, o] + extra_args)
            msg = (r.stderr.strip().splitlines() or [""])[-1]
            check(r.returncode == 2 and msg.startswith("error:") and not os.path.exists(o),
                  f"rejects {what}: {msg}", f"rc {r.returncode}")
        r = run_converter([rel, out1])
        check(r.returncode == 2 and "not an empty folder" in r.stderr,
              "refuses to write into a non-empty output folder", r.stderr.strip())
        leftovers = [f for f in os.listdir(os.path.join(tmp, "out")) if ".tmp-" in f]
        leftovers += [f for f in os.listdir(bad) if ".tmp-" in f]
        check(not leftovers, "no temporary folders left behind", str(leftovers))

        # ---------------------------------------------------------------- inspect
        print("opencarbon inspect on the outputs")
        if exp1:
            run_inspect(out1, exp1)
        if exp2:
            run_inspect(out2, exp2)
    finally:
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    if FAILURES:
        print(f"FAILED: {len(FAILURES)} of {N_CHECKS} checks")
        for f in FAILURES:
            print(f"  - {f}")
        return 1
    print(f"all {N_CHECKS} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

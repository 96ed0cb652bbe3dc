#!/usr/bin/env python3
"""Convert the OpenCarbon authors' published data layout into our city dataset format.

Usage:
    convert_opencarbon_release.py RELEASE_DIR OUT_DIR [options]

RELEASE_DIR is one city's folder of the authors' release (e.g. `beijing_data/`), OUT_DIR a
new dataset folder in the format of docs/dataset-format.md (`opencarbon-city/1`). Needs only
numpy and Pillow. Run `--help` for every option; `scripts/test_convert_opencarbon_release.py`
builds a tiny fake release in this layout and checks the output.

What the authors' layout is (from their training script, main_contrastive.py in
github.com/JinweiZzz/OpenCarbon, and our spec/opencarbon-model.md)
----------------------------------------------------------------------------------------
* `til2carbon_<city>.npy` (Beijing, London; note the missing "e") or `tile2carbon.npy`
  (Yinchuan): a dict pickled in a 0-d object array, (x, y) -> ODIAC value of the tile. The
  authors use it raw and train on log(value); tiles whose value is 0 stay in the grid as
  neighbours but are never targets (the same rule as our format).
* `tile2poi_distribution_<city>.npy` (or `tile2poi_distribution.npy`; the transfer cities use an
  `.npz` whose `poi_distribution` entry holds the dict): (x, y) -> POI raster. In their code the
  raster is stored channels-last, H x W x C (they call np.transpose(r, [2, 0, 1]) to feed the
  C x 256 x 256 input of the model); `--poi-layout auto` (default) tells H x W x C from
  C x H x W by which two axes are equal and stops if that is ambiguous (then say which).
* `tile2poi_count_<city>.npy` (or `tile2poi_count.npy`): a dict whose *keys* decide which tiles
  the authors load (an image is used only if its (x, y) is a key). Used here as a tile filter
  when present (`--tile-filter`, `--no-tile-filter`).
* `satellite_images_<city>/` with files `<x>_<y>.png`, possibly in sub-folders (Beijing has one
  per district); the authors read them with cv2.imread (BGR order in memory) and resize
  Yinchuan's to 256 x 256 with INTER_AREA.
* `train_test_split_<city>[_<name>].pkl` (Beijing: `train_test_split_beijing_fengtai.pkl`;
  Yinchuan: `train_test_split_yinchuan.pkl`; in their code folder, the parent of the data
  folder): pickle of (train, valid, test), each a list of (x, y) tuples.

Decisions, and assumptions where neither our spec nor their code says (each one an option)
----------------------------------------------------------------------------------------
* Zoom (`--zoom`, default 15): not stated in the release. 15 gives the paper's "about 1 km^2"
  tiles of 256 px at these latitudes and is what our synthetic cities use. Every tile index
  must lie in the zoom grid (else the zoom is wrong and the converter stops); the summary
  prints the lon/lat box of the converted tiles so a wrong zoom is easy to spot.
* Emission unit (`--unit`, `--target-name`, `--emission-scale`): the release does not say how
  the authors aggregated ODIAC (t C per 30" cell per month in its GeoTIFFs) to a tile or over
  which period. `emission` = the released value times `--emission-scale` (default 1, i.e. the
  value as released); the default unit text says exactly that. A scale other than 1 (e.g.
  44/12 for t CO2) requires an explicit `--unit`.
* POI category names (`--categories`): the release has channel indices only, no names (the
  model spec says C is about 14-15). Default names are neutral, `poi00`, `poi01`, ... in
  channel order; give `--categories a,b,c` or `--categories @file` (one name a line) to name
  them. Their number must equal C.
* Raster orientation: row 0 is the north edge and column 0 the west edge of the tile, like the
  tile image (`--poi-transpose` if a release stores rasters indexed [col, row]).
* POI rasters -> points: each non-zero pixel (c, row, col) of an H x W raster of tile (x, y) at
  zoom z becomes one pois.csv line at the pixel centre, X = x + (col + 0.5)/W,
  Y = y + (row + 0.5)/H, lon = X/n*360 - 180, lat = atan(sinh(pi(1 - 2Y/n))) in degrees
  (n = 2^z), with weight = the pixel value and category = categories[c]. Coordinates are
  written with Python's shortest round-trip repr of the float64, so a reader that applies the
  format's pixel formula (col = floor(frac_x*W), row = floor(frac_y*H)) lands in the same pixel;
  the converter re-derives tile and pixel of every point from the written numbers and stops if
  one differs. Integral weights are written as integers. Rasterised at the release's size
  (256) the data are reproduced exactly; at a size S dividing 256 each point falls in the
  S-pixel cell that contains its source pixel. Our reader keeps weights as f32 (exact for
  counts below 2^24). Negative or non-finite raster values stop the conversion.
* Which tiles are written. Candidates are all (x, y) seen in the images, the emission dict or
  the POI dict. A candidate is dropped, counted under the first reason that applies:
    emission_without_image   emission value but no image file (the format needs an image)
    image_without_emission   image but no emission value (the format needs an emission)
    poi_raster_only          only a POI raster
    invalid_emission         emission NaN, infinite or negative
    not_in_tile_filter       not a key of the tile filter (tile2poi_count), as the authors do
    no_poi_raster            no POI raster (the authors skip such tiles too); with
                             `--keep-tiles-without-poi` the tile is kept with no POIs
    unreadable_image         Pillow cannot decode the image (their Manchester code skips those)
  Emission 0 tiles are kept (valid neighbours, never targets), as in the authors' code.
  Rows of tiles.csv are sorted by (y, x).
* Images: a PNG on disk is RGB whatever library wrote it. cv2.imread gives BGR in memory and
  cv2.imwrite takes BGR and writes a normal RGB file, so a release written by OpenCV and read
  with Pillow needs no channel swap, and none is made (the authors' model saw BGR pixels; that
  is a property of their training code, not of the files). `--swap-rb` exists for a release
  whose files are known to hold swapped channels. An 8-bit RGB or RGBA PNG that needs no
  resizing is copied byte for byte to images/<x>_<y>.png; anything else (JPEG, palette, grey,
  16-bit, `--swap-rb`, resizing) is decoded with Pillow, converted to RGB and written as PNG.
  Non-square images are resized to `--image-size` (default 256, as the authors do for
  Yinchuan) with area averaging when shrinking (like INTER_AREA) and bilinear otherwise;
  `--image-size N` resizes every image to N x N. Image files are found recursively under the
  image folder by the name `<x>_<y>.<ext>` (png, jpg, jpeg, tif, tiff, bmp, webp); other files
  are ignored and counted; the same tile twice is an error.
* Splits (`--split [NAME=]PATH`, repeatable; by default `train_test_split_<city>*.pkl` in
  RELEASE_DIR and its parent): a pickle (or .npy) of (train, valid, test), or a dict with keys
  train, valid (or val), test. Items are (x, y) pairs as in the authors' code; integer
  indices are accepted too when `--split-indices emission|poi` says which dict's key order
  they index (insertion order of the loaded dict). The default name is the file stem without
  `train_test_split_` and without a leading `<city>_` (`train_test_split_beijing_fengtai.pkl`
  -> `fengtai`), lower-cased, other characters than [a-z0-9_-] replaced by `_`. Tiles of the
  split that were not written are left out and counted; a tile listed twice in one part is
  written once (counted); a tile in two parts stops the conversion. Written to
  splits/<name>.csv (header x,y,split), sorted by part then (y, x). London has no split file:
  the authors draw a random 60/20/20 split in their code (our `random` split kind).
* Output: OUT_DIR must not exist or be empty; everything is written to a temporary sibling
  folder that is renamed into place at the end, so a failed run leaves nothing behind. No
  other files than the format's are written into OUT_DIR (`--summary-json` writes the
  summary elsewhere).
* np.load(allow_pickle=True) and pickle.load run code stored in the files: convert only
  releases you trust.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import math
import os
import pickle
import re
import shutil
import sys
import tempfile

import numpy as np
from PIL import Image

FORMAT_TAG = "opencarbon-city/1"
DEFAULT_ZOOM = 15
DEFAULT_NONSQUARE_SIZE = 256
DEFAULT_TARGET_NAME = "odiac_ffco2"
DEFAULT_UNIT = (
    "ODIAC fossil-fuel CO2 emission as released by the OpenCarbon authors "
    "(tonnes of carbon; per-tile aggregation and period not stated in the release)"
)
IMAGE_EXTS = ("png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp")
IMAGE_NAME = re.compile(r"^(\d+)_(\d+)\.(%s)$" % "|".join(IMAGE_EXTS), re.IGNORECASE)
NAME_OK = re.compile(r"^[a-z0-9_-]+$")
PARTS = ("train", "valid", "test")
DROP_REASONS = (
    "emission_without_image",
    "image_without_emission",
    "poi_raster_only",
    "invalid_emission",
    "not_in_tile_filter",
    "no_poi_raster",
    "unreadable_image",
)


class ConversionError(Exception):
    """A problem with the input or the options; printed without a traceback."""


# ----------------------------------------------------------------------------- geometry


def pixel_centres(x, y, zoom, rows, cols, height, width):
    """lon, lat (float64 degrees) of the centres of pixels (rows, cols) of tile (x, y)."""
    n = float(2**zoom)
    big_x = x + (np.asarray(cols, dtype=np.float64) + 0.5) / width
    big_y = y + (np.asarray(rows, dtype=np.float64) + 0.5) / height
    lon = big_x / n * 360.0 - 180.0
    lat = np.degrees(np.arctan(np.sinh(np.pi * (1.0 - 2.0 * big_y / n))))
    return lon, lat


def locate(lon, lat, zoom, height, width):
    """Tile and pixel of a point by the format's formulas (scalar, float64): x, y, row, col."""
    n = float(2**zoom)
    fx = (lon + 180.0) / 360.0 * n
    fy = (1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n
    tx, ty = math.floor(fx), math.floor(fy)
    col = math.floor((fx - tx) * width)
    row = math.floor((fy - ty) * height)
    return tx, ty, row, col


def tile_bounds(x, y, zoom):
    """west, south, east, north of tile (x, y) in degrees."""
    n = float(2**zoom)
    west = x / n * 360.0 - 180.0
    east = (x + 1) / n * 360.0 - 180.0
    north = math.degrees(math.atan(math.sinh(math.pi * (1.0 - 2.0 * y / n))))
    south = math.degrees(math.atan(math.sinh(math.pi * (1.0 - 2.0 * (y + 1) / n))))
    return west, south, east, north


# ----------------------------------------------------------------------------- loading


def as_int(v, what):
    """An integer from an int, numpy integer or integral float; ConversionError otherwise."""
    if isinstance(v, (bool, np.bool_)):
        raise ConversionError(f"{what}: {v!r} is not an integer")
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer():
        return int(v)
    raise ConversionError(f"{what}: {v!r} is not an integer")


def tile_key(k, what):
    """(x, y) from a dict key: a 2-tuple/list/array of integers or a string 'x_y' / 'x,y'."""
    if isinstance(k, str):
        m = re.fullmatch(r"\s*(\d+)\s*[_,]\s*(\d+)\s*", k)
        if not m:
            raise ConversionError(f"{what}: key {k!r} is not a tile (x, y)")
        return int(m.group(1)), int(m.group(2))
    try:
        items = list(k)
    except TypeError:
        raise ConversionError(f"{what}: key {k!r} is not a tile (x, y)") from None
    if len(items) != 2:
        raise ConversionError(f"{what}: key {k!r} is not a tile (x, y)")
    return as_int(items[0], what), as_int(items[1], what)


def load_pickled(path, npz_key=None):
    """The object stored in an .npy (0-d object array), .npz entry or pickle file."""
    low = path.lower()
    try:
        if low.endswith(".npz"):
            with np.load(path, allow_pickle=True) as z:
                if npz_key is None:
                    if len(z.files) == 1:
                        npz_key = z.files[0]
                    elif "poi_distribution" in z.files:
                        npz_key = "poi_distribution"
                    else:
                        raise ConversionError(
                            f"{path}: holds {z.files}; say which with --poi-key"
                        )
                if npz_key not in z.files:
                    raise ConversionError(f"{path}: no entry {npz_key!r} (has {z.files})")
                obj = z[npz_key]
        elif low.endswith(".npy"):
            obj = np.load(path, allow_pickle=True)
        else:
            with open(path, "rb") as f:
                obj = pickle.load(f)
    except ConversionError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoding problem is the file's
        raise ConversionError(f"{path}: cannot load: {e}") from None
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj.item()
    return obj


def load_tile_dict(path, what, npz_key=None):
    obj = load_pickled(path, npz_key)
    if not isinstance(obj, dict):
        raise ConversionError(f"{path}: expected a dict (x, y) -> value, found {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        key = tile_key(k, f"{path} ({what})")
        if key in out:
            raise ConversionError(f"{path}: tile {key} appears twice among the keys")
        out[key] = v
    return out


def emission_value(v, path, key):
    a = np.asarray(v)
    if a.size != 1 or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise ConversionError(f"{path}: value of tile {key} is {v!r}, expected one number")
    return float(a.reshape(-1)[0])


def raster_chw(arr, layout, transpose, path, key):
    """A POI raster as a float64 C x H x W array."""
    a = np.asarray(arr)
    if not np.issubdtype(a.dtype, np.number):
        raise ConversionError(f"{path}: raster of tile {key} has dtype {a.dtype}, expected numbers")
    if a.ndim == 2:
        a = a[None, :, :] if layout != "hwc" else a[:, :, None]
    if a.ndim != 3:
        raise ConversionError(f"{path}: raster of tile {key} has shape {a.shape}, expected 3 axes")
    if layout == "auto":
        s = a.shape
        hwc = s[0] == s[1] and s[2] != s[0]
        chw = s[1] == s[2] and s[0] != s[1]
        if hwc == chw:
            raise ConversionError(
                f"{path}: cannot tell the layout of shape {s} (tile {key}); give --poi-layout hwc|chw"
            )
        layout = "hwc" if hwc else "chw"
    if layout == "hwc":
        a = np.transpose(a, (2, 0, 1))
    if transpose:
        a = np.transpose(a, (0, 2, 1))
    a = a.astype(np.float64, copy=False)
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ConversionError(f"{path}: raster of tile {key} has negative or non-finite values")
    return a, layout


def scan_images(root):
    """(x, y) -> path of every `<x>_<y>.<ext>` under root; number of other files."""
    found, other = {}, 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            m = IMAGE_NAME.match(fn)
            if not m:
                other += 1
                continue
            key = (int(m.group(1)), int(m.group(2)))
            path = os.path.join(dirpath, fn)
            if key in found:
                raise ConversionError(f"tile {key} has two images: {found[key]} and {path}")
            found[key] = path
    return found, other


def png_is_plain_rgb8(path):
    """True for an 8-bit RGB or RGBA PNG (what can be copied byte for byte)."""
    with open(path, "rb") as f:
        head = f.read(29)
    return (
        len(head) == 29
        and head[:8] == b"\x89PNG\r\n\x1a\n"
        and head[12:16] == b"IHDR"
        and head[24] == 8
        and head[25] in (2, 6)
    )


def convert_image(src, dst, image_size, swap_rb):
    """Write src as an RGB(A) PNG at dst; returns 'copied' or 're-encoded'. Raises on bad files."""
    with Image.open(src) as im:
        im.load()
        w, h = im.size
        fmt, mode = im.format, im.mode
        target = image_size if image_size else (None if w == h else DEFAULT_NONSQUARE_SIZE)
        resize = target is not None and (w, h) != (target, target)
        if (
            not swap_rb
            and not resize
            and fmt == "PNG"
            and mode in ("RGB", "RGBA")
            and png_is_plain_rgb8(src)
        ):
            shutil.copyfile(src, dst)
            return "copied"
        if mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        if mode in ("I;16", "I;16B", "I;16L", "I"):
            # 16-bit grey: scale to 8 bits rather than clip.
            a = np.asarray(im, dtype=np.float64)
            top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
            im = Image.fromarray(np.clip(np.round(a / top * 255.0), 0, 255).astype(np.uint8))
        rgb = im.convert("RGB")
        if resize:
            shrink = target <= w and target <= h
            rgb = rgb.resize(
                (target, target),
                Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR,
            )
        if swap_rb:
            r, g, b = rgb.split()
            rgb = Image.merge("RGB", (b, g, r))
        rgb.save(dst, format="PNG")
        return "re-encoded"


def load_split(path, indices_into, emission_keys, poi_keys):
    """{'train': [(x, y), ...], 'valid': [...], 'test': [...]} from an authors' split file."""
    obj = load_pickled(path)
    if isinstance(obj, dict):
        valid = obj.get("valid", obj.get("val"))
        if "train" not in obj or "test" not in obj or valid is None:
            raise ConversionError(f"{path}: dict split needs keys train, valid (or val), test")
        parts = [obj["train"], valid, obj["test"]]
    else:
        try:
            parts = list(obj)
        except TypeError:
            raise ConversionError(f"{path}: expected (train, valid, test)") from None
        if len(parts) != 3:
            raise ConversionError(f"{path}: expected (train, valid, test), found {len(parts)} parts")
    out = {}
    for name, part in zip(PARTS, parts):
        if isinstance(part, np.ndarray) and part.dtype != object:
            if part.ndim == 2 and part.shape[1] == 2:
                items = [tuple(r) for r in part.tolist()]
            elif part.ndim == 1:
                items = part.tolist()
            elif part.size == 0:
                items = []
            else:
                raise ConversionError(f"{path}: {name} part has shape {part.shape}")
        else:
            items = list(part)
        tiles = []
        for it in items:
            if isinstance(it, (int, np.integer, float, np.floating)) and not isinstance(it, bool):
                idx = as_int(it, f"{path} ({name})")
                if indices_into is None:
                    raise ConversionError(
                        f"{path}: the {name} part holds integer indices, not (x, y) tiles; say "
                        "which dict's key order they index with --split-indices emission|poi"
                    )
                keys = emission_keys if indices_into == "emission" else poi_keys
                if not 0 <= idx < len(keys):
                    raise ConversionError(
                        f"{path}: index {idx} of the {name} part is outside the {len(keys)} keys "
                        f"of the {indices_into} dict"
                    )
                tiles.append(keys[idx])
            else:
                tiles.append(tile_key(it, f"{path} ({name})"))
        out[name] = tiles
    return out


# ----------------------------------------------------------------------------- discovery


def find_one(release, patterns, what, required=True):
    for pat in patterns:
        hits = sorted(glob.glob(os.path.join(glob.escape(release), pat)))
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise ConversionError(
                f"several candidates for the {what} in {release}: "
                + ", ".join(os.path.basename(h) for h in hits)
                + "; choose one with its option"
            )
    if required:
        raise ConversionError(
            f"no {what} found in {release} (looked for {', '.join(patterns)}); give its path"
        )
    return None


def discover(args):
    rel, city = args.release, args.city
    emission = args.emission or find_one(
        rel,
        [f"til2carbon_{city}.npy", f"tile2carbon_{city}.npy", "til2carbon.npy",
         "tile2carbon.npy", "til*2carbon*.npy"],
        "emission dict (--emission)",
    )
    poi = args.poi or find_one(
        rel,
        [f"tile2poi_distribution_{city}.np[yz]", "tile2poi_distribution.np[yz]",
         "tile2poi_distribution*.np[yz]"],
        "POI raster dict (--poi)",
    )
    if args.no_tile_filter:
        tile_filter = None
    else:
        tile_filter = args.tile_filter or find_one(
            rel,
            [f"tile2poi_count_{city}.npy", "tile2poi_count.npy", "tile2poi_count*.npy"],
            "tile filter (--tile-filter)",
            required=False,
        )
    if args.images:
        images = args.images
    else:
        images = None
        for pat in (f"satellite_images_{city}", "satellite_images", "satellite_images*"):
            hits = [h for h in sorted(glob.glob(os.path.join(glob.escape(rel), pat))) if os.path.isdir(h)]
            if len(hits) == 1:
                images = hits[0]
                break
            if len(hits) > 1:
                raise ConversionError(f"several image folders in {rel}: {hits}; give --images")
        if images is None:
            raise ConversionError(f"no satellite_images* folder in {rel}; give --images")
    splits = []
    if args.split:
        for spec in args.split:
            name, sep, path = spec.partition("=")
            if not sep or os.path.exists(spec):
                name, path = None, spec
            splits.append((name, path))
    elif not args.no_auto_splits:
        seen = set()
        for d in (rel, os.path.dirname(os.path.abspath(rel))):
            for h in sorted(glob.glob(os.path.join(glob.escape(d), f"train_test_split_{city}*.pkl"))):
                real = os.path.realpath(h)
                if real not in seen:
                    seen.add(real)
                    splits.append((None, h))
    named = []
    for name, path in splits:
        if name is None:
            stem = os.path.splitext(os.path.basename(path))[0]
            if stem.startswith("train_test_split_"):
                stem = stem[len("train_test_split_"):]
            if stem.startswith(city + "_") and len(stem) > len(city) + 1:
                stem = stem[len(city) + 1:]
            name = sanitize(stem)
        if not NAME_OK.match(name):
            raise ConversionError(f"split name {name!r} is not [a-z0-9_-]+")
        named.append((name, path))
    if len({n for n, _ in named}) != len(named):
        raise ConversionError(f"two splits share a name: {[n for n, _ in named]}; use NAME=PATH")
    return emission, poi, tile_filter, images, named


def sanitize(s):
    return re.sub(r"[^a-z0-9_-]", "_", s.lower()).strip("_")


def parse_categories(spec, c):
    if spec is None:
        names = [f"poi{i:02d}" for i in range(c)]
    else:
        if spec.startswith("@"):
            with open(spec[1:], encoding="utf-8") as f:
                names = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
        else:
            names = [s.strip() for s in spec.split(",")]
    if len(names) != c:
        raise ConversionError(f"{len(names)} category names for {c} POI channels")
    for nm in names:
        if not nm or any(ch in nm for ch in "\r\n") or nm != nm.strip():
            raise ConversionError(f"category name {nm!r} is empty or has surrounding space")
    if len(set(names)) != len(names):
        raise ConversionError(f"category names repeat: {names}")
    return names


# ----------------------------------------------------------------------------- writing


def fmt_float(v):
    """Shortest text that parses back to exactly this float64."""
    return repr(float(v))


def fmt_weight(v):
    v = float(v)
    if v.is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(v)


def yaml_str(s):
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(s, ensure_ascii=True)


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def convert(args):
    if not 1 <= args.zoom <= 22:
        raise ConversionError(f"--zoom {args.zoom} is outside 1..22")
    if args.emission_scale != 1.0 and args.unit is None:
        raise ConversionError("--emission-scale changes the unit: give --unit too")
    if not (math.isfinite(args.emission_scale) and args.emission_scale > 0):
        raise ConversionError("--emission-scale must be a finite number > 0")
    unit = args.unit if args.unit is not None else DEFAULT_UNIT
    release = args.release.rstrip("/") or "/"
    if not os.path.isdir(release):
        raise ConversionError(f"{release} is not a folder")
    args.release = release
    if args.city is None:
        base = os.path.basename(os.path.abspath(release))
        args.city = base[: -len("_data")] if base.endswith("_data") else base
    name = args.name if args.name is not None else sanitize(args.city)
    if not NAME_OK.match(name):
        raise ConversionError(f"dataset name {name!r} is not [a-z0-9_-]+; give --name")
    out = args.out.rstrip("/") or "/"
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ConversionError(f"{out} exists and is not an empty folder")

    emission_path, poi_path, filter_path, images_dir, split_specs = discover(args)
    zoom, n = args.zoom, 2**args.zoom

    emissions = load_tile_dict(emission_path, "emission")
    pois = load_tile_dict(poi_path, "POI rasters", args.poi_key)
    tile_filter = set(load_tile_dict(filter_path, "tile filter")) if filter_path else None
    if not os.path.isdir(images_dir):
        raise ConversionError(f"{images_dir} is not a folder")
    images, other_files = scan_images(images_dir)

    for what, keys in (("emission dict", emissions), ("POI dict", pois), ("images", images)):
        bad = [k for k in keys if not (0 <= k[0] < n and 0 <= k[1] < n)]
        if bad:
            raise ConversionError(
                f"{len(bad)} tile(s) of the {what} lie outside the zoom-{zoom} grid "
                f"(0 <= x, y < {n}), e.g. {bad[0]}: is --zoom right?"
            )

    dropped = {r: 0 for r in DROP_REASONS}
    candidates = sorted(set(emissions) | set(pois) | set(images), key=lambda k: (k[1], k[0]))
    keep, values = [], {}
    for key in candidates:
        has_img, has_em, has_poi = key in images, key in emissions, key in pois
        if has_em and not has_img:
            dropped["emission_without_image"] += 1
            continue
        if has_img and not has_em:
            dropped["image_without_emission"] += 1
            continue
        if not has_img and not has_em:
            dropped["poi_raster_only"] += 1
            continue
        e = emission_value(emissions[key], emission_path, key) * args.emission_scale + 0.0
        if not math.isfinite(e) or e < 0:
            dropped["invalid_emission"] += 1
            continue
        if tile_filter is not None and key not in tile_filter:
            dropped["not_in_tile_filter"] += 1
            continue
        if not has_poi and not args.keep_tiles_without_poi:
            dropped["no_poi_raster"] += 1
            continue
        keep.append(key)
        values[key] = e

    # Channel count and layout from the POI rasters of the candidate tiles.
    layout, c = args.poi_layout, None
    for key in keep:
        if key in pois:
            r, layout = raster_chw(pois[key], layout, args.poi_transpose, poi_path, key)
            c = r.shape[0]
            break
    if c is None:  # no kept tile has a raster: take C from any raster of the dict
        for key, v in pois.items():
            r, layout = raster_chw(v, layout, args.poi_transpose, poi_path, key)
            c = r.shape[0]
            break
    if c is None:
        raise ConversionError(f"{poi_path}: the POI dict is empty")
    categories = parse_categories(args.categories, c)

    parent = os.path.dirname(os.path.abspath(out)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(os.path.abspath(out)) + ".tmp-", dir=parent)
    try:
        os.makedirs(os.path.join(tmp, "images"))
        image_modes = {"copied": 0, "re-encoded": 0}
        written = []
        for key in keep:
            dst = os.path.join(tmp, "images", f"{key[0]}_{key[1]}.png")
            try:
                how = convert_image(images[key], dst, args.image_size, args.swap_rb)
            except Exception as e:  # noqa: BLE001 - an unreadable file drops its tile
                if os.path.exists(dst):
                    os.remove(dst)
                dropped["unreadable_image"] += 1
                print(f"warning: {images[key]}: cannot decode ({e}); tile {key} dropped", file=sys.stderr)
                continue
            image_modes[how] += 1
            written.append(key)
        if not written:
            raise ConversionError("no tile has an image, an emission value and (if needed) a POI raster")
        written_set = set(written)

        write_csv(
            os.path.join(tmp, "tiles.csv"),
            ["x", "y", "emission"],
            ([x, y, fmt_float(values[(x, y)])] for x, y in written),
        )

        # POIs: one weighted point per non-zero pixel, checked back through the spec formulas.
        n_pois, raster_sum_parts, weight_parts = 0, [], []
        per_cat = [0.0] * c
        raster_sizes = set()
        with open(os.path.join(tmp, "pois.csv"), "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["lon", "lat", "category", "weight"])
            for key in written:
                if key not in pois:
                    continue
                r, layout = raster_chw(pois[key], layout, args.poi_transpose, poi_path, key)
                if r.shape[0] != c:
                    raise ConversionError(
                        f"{poi_path}: raster of tile {key} has {r.shape[0]} channels, others {c}"
                    )
                _, height, width = r.shape
                raster_sizes.add((height, width))
                raster_sum_parts.append(math.fsum(r[r != 0].tolist()))  # zeros add nothing
                cs, rows, cols = np.nonzero(r)
                if cs.size == 0:
                    continue
                vals = r[cs, rows, cols]
                lon, lat = pixel_centres(key[0], key[1], zoom, rows, cols, height, width)
                for ci, ro, co, lo, la, v in zip(
                    cs.tolist(), rows.tolist(), cols.tolist(), lon.tolist(), lat.tolist(), vals.tolist()
                ):
                    lo_s, la_s, w_s = fmt_float(lo), fmt_float(la), fmt_weight(v)
                    back = locate(float(lo_s), float(la_s), zoom, height, width)
                    if back != (key[0], key[1], ro, co):
                        raise ConversionError(
                            f"internal: pixel ({ro}, {co}) of tile {key} comes back as {back}"
                        )
                    w.writerow([lo_s, la_s, categories[ci], w_s])
                    weight_parts.append(float(w_s))
                    per_cat[ci] += float(w_s)
                n_pois += int(cs.size)
        raster_total = math.fsum(raster_sum_parts)
        weight_total = math.fsum(weight_parts)
        if raster_total != weight_total:
            raise ConversionError(
                f"internal: POI weights sum to {weight_total!r}, rasters to {raster_total!r}"
            )
        dropped_weight = math.fsum(
            math.fsum(a[a != 0].tolist())
            for a in (np.asarray(v, dtype=np.float64) for k, v in pois.items() if k not in written_set)
        )

        meta = [
            f"format: {FORMAT_TAG}",
            f"name: {yaml_str(name)}",
            f"zoom: {zoom}",
            "target:",
            f"  name: {yaml_str(args.target_name)}",
            f"  unit: {yaml_str(unit)}",
            "poi_categories: [" + ", ".join(yaml_str(s) for s in categories) + "]",
        ]
        source = args.source
        if source is None:
            files = [os.path.basename(p) for p in (emission_path, poi_path, filter_path) if p]
            source = (
                "OpenCarbon authors' data release (Zeng et al., IJCAI 2025, "
                "github.com/JinweiZzz/OpenCarbon; licence: see the release), city folder "
                f"{os.path.basename(os.path.abspath(release))}: {', '.join(files)}, "
                f"{os.path.basename(os.path.abspath(images_dir))}/; converted by "
                "scripts/convert_opencarbon_release.py"
                + (f" (emission x {args.emission_scale!r})" if args.emission_scale != 1.0 else "")
            )
        meta.append(f"source: {yaml_str(source)}")
        with open(os.path.join(tmp, "dataset.yaml"), "w", encoding="utf-8") as f:
            f.write("\n".join(meta) + "\n")

        split_report = {}
        if split_specs:
            os.makedirs(os.path.join(tmp, "splits"))
            em_keys, poi_keys = list(emissions), list(pois)
            for sname, spath in split_specs:
                parts = load_split(spath, args.split_indices, em_keys, poi_keys)
                owner, rows, rep = {}, [], {"file": spath}
                dup, missing = 0, {p: 0 for p in PARTS}
                for part in PARTS:
                    for key in parts[part]:
                        if key in owner:
                            if owner[key] != part:
                                raise ConversionError(
                                    f"{spath}: tile {key} is in both {owner[key]} and {part}"
                                )
                            dup += 1
                            continue
                        owner[key] = part
                        if key not in written_set:
                            missing[part] += 1
                            continue
                        rows.append((part, key))
                rows.sort(key=lambda pk: (PARTS.index(pk[0]), pk[1][1], pk[1][0]))
                write_csv(
                    os.path.join(tmp, "splits", f"{sname}.csv"),
                    ["x", "y", "split"],
                    ([k[0], k[1], p] for p, k in rows),
                )
                rep["written"] = {p: sum(1 for q, _ in rows if q == p) for p in PARTS}
                rep["zero_emission"] = sum(1 for _, k in rows if values[k] == 0)
                rep["not_written_tiles"] = missing
                rep["repeated_in_part"] = dup
                split_report[sname] = rep

        if os.path.isdir(out):
            os.rmdir(out)  # empty, checked above
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    box = [tile_bounds(x, y, zoom) for x, y in written]
    summary = {
        "out": out,
        "name": name,
        "zoom": zoom,
        "inputs": {
            "emission": emission_path,
            "poi": poi_path,
            "poi_layout": layout,
            "tile_filter": filter_path,
            "images": images_dir,
            "other_files_in_images": other_files,
        },
        "categories": categories,
        "raster_sizes": sorted(raster_sizes),
        "tiles_written": len(written),
        "zero_emission_tiles": sum(1 for k in written if values[k] == 0),
        "tiles_dropped": dropped,
        "images": image_modes,
        "pois_written": n_pois,
        "poi_weight_total": weight_total,
        "poi_weight_per_category": dict(zip(categories, per_cat)),
        "raster_total_written_tiles": raster_total,
        "poi_weight_in_unwritten_tiles": dropped_weight,
        "lonlat_box": [
            min(b[0] for b in box), min(b[1] for b in box),
            max(b[2] for b in box), max(b[3] for b in box),
        ],
        "splits": split_report,
    }
    return summary


def print_summary(s):
    p = print
    p(f"wrote {s['out']}  (dataset {s['name']}, zoom {s['zoom']})")
    i = s["inputs"]
    p(f"  emission:   {i['emission']}")
    p(f"  POI:        {i['poi']}  (layout {i['poi_layout']}, raster sizes {s['raster_sizes']})")
    p(f"  filter:     {i['tile_filter'] or '(none)'}")
    p(f"  images:     {i['images']}  ({i['other_files_in_images']} other file(s) ignored)")
    p(f"tiles written: {s['tiles_written']} ({s['zero_emission_tiles']} with emission 0, kept as neighbours)")
    p(f"  images copied {s['images']['copied']}, re-encoded {s['images']['re-encoded']}")
    total = sum(s["tiles_dropped"].values())
    p(f"tiles dropped: {total}")
    for reason, k in s["tiles_dropped"].items():
        if k:
            p(f"  {reason}: {k}")
    p(f"POIs written: {s['pois_written']}, total weight {s['poi_weight_total']!r} "
      f"(= sum of the written tiles' rasters {s['raster_total_written_tiles']!r})")
    p(f"  POI weight in rasters of tiles not written: {s['poi_weight_in_unwritten_tiles']!r}")
    p(f"  categories: {', '.join(s['categories'])}")
    w, so, e, no = s["lonlat_box"]
    p(f"lon/lat box of the tiles: lon {w:.5f}..{e:.5f}, lat {so:.5f}..{no:.5f}")
    for name, r in s["splits"].items():
        wr = r["written"]
        miss = r["not_written_tiles"]
        p(f"split {name} ({r['file']}): train {wr['train']}, valid {wr['valid']}, test {wr['test']}"
          f"; left out (tile not written) train {miss['train']}, valid {miss['valid']}, "
          f"test {miss['test']}; repeated {r['repeated_in_part']}; emission-0 tiles {r['zero_emission']}")
    if not s["splits"]:
        p("splits: none")


def build_parser():
    ap = argparse.ArgumentParser(
        description="Convert one city of the OpenCarbon authors' data release into our "
        "dataset format (see the module docstring for every assumption).",
    )
    ap.add_argument("release", help="the city's release folder, e.g. beijing_data")
    ap.add_argument("out", help="output dataset folder (must not exist or be empty)")
    ap.add_argument("--city", help="city name in the release's file names (default: the release "
                    "folder's name without a trailing _data)")
    ap.add_argument("--name", help="dataset name, [a-z0-9_-]+ (default: the city)")
    ap.add_argument("--zoom", type=int, default=DEFAULT_ZOOM, help="slippy-map zoom of the tile indices (default: %(default)s)")
    ap.add_argument("--emission", help="emission dict .npy (default: til2carbon_<city>.npy, "
                    "tile2carbon.npy, ... in the release)")
    ap.add_argument("--poi", help="POI raster dict .npy/.npz (default: tile2poi_distribution[_<city>].np[yz])")
    ap.add_argument("--poi-key", help="entry of an .npz POI file (default: its only entry, else poi_distribution)")
    ap.add_argument("--poi-layout", choices=("auto", "hwc", "chw"), default="auto",
                    help="axis order of the POI rasters (default: auto; the authors' code: hwc)")
    ap.add_argument("--poi-transpose", action="store_true",
                    help="rasters are indexed [col, row] instead of [row, col]")
    ap.add_argument("--tile-filter", help="dict whose keys are the tiles to use (default: "
                    "tile2poi_count[_<city>].npy when present)")
    ap.add_argument("--no-tile-filter", action="store_true", help="use no tile filter")
    ap.add_argument("--images", help="image folder, searched recursively (default: satellite_images[_<city>])")
    ap.add_argument("--image-size", type=int, help="resize every image to N x N (default: keep "
                    f"square images, resize others to {DEFAULT_NONSQUARE_SIZE})")
    ap.add_argument("--swap-rb", action="store_true",
                    help="swap red and blue (only for files known to hold BGR data)")
    ap.add_argument("--keep-tiles-without-poi", action="store_true",
                    help="keep tiles that have no POI raster (with no POIs) instead of dropping them")
    ap.add_argument("--categories", help="POI category names in channel order: a,b,c or @file "
                    "(default: poi00, poi01, ...)")
    ap.add_argument("--target-name", default=DEFAULT_TARGET_NAME, help="dataset.yaml target.name (default: %(default)s)")
    ap.add_argument("--unit", help="dataset.yaml target.unit (default: the released ODIAC value, see docstring)")
    ap.add_argument("--emission-scale", type=float, default=1.0,
                    help="multiply every emission by this (default: 1; another value requires --unit)")
    ap.add_argument("--source", help="dataset.yaml source text (default: names the release and files)")
    ap.add_argument("--split", action="append", metavar="[NAME=]PATH",
                    help="split pickle of (train, valid, test); repeatable (default: "
                    "train_test_split_<city>*.pkl in the release folder and its parent)")
    ap.add_argument("--no-auto-splits", action="store_true", help="do not look for split files")
    ap.add_argument("--split-indices", choices=("emission", "poi"),
                    help="splits hold integer indices into this dict's key order")
    ap.add_argument("--summary-json", help="also write the summary as JSON to this file")
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.image_size is not None and args.image_size < 1:
            raise ConversionError("--image-size must be >= 1")
        summary = convert(args)
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_summary(summary)
    if args.summary_json:
        with open(args.summary_json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

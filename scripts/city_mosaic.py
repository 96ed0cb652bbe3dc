#!/usr/bin/env python3
"""The figure of docs/synthetic-cities.md: the same window of a v5 and a v6 city side by side,
and one v6 tile at full resolution.

Usage (from the repository root, after `cargo build --release`):

    .venv/bin/pip install -r scripts/requirements-figures.txt
    .venv/bin/python scripts/city_mosaic.py [--v5 london] [--v6 london6] [--seed 100]
        [--window 6] [--out docs/figures/v5_v6_mosaic.png] [--binary target/release/opencarbon]

Both cities are generated into a temporary directory. The window is `window` × `window`
tiles around the middle of each city's tile range, drawn at 64 px a tile (what a model sees at
image_size 64); the right panel is the v6 window's centre tile at 256 px.
"""

import argparse
import os
import subprocess
import tempfile

from PIL import Image, ImageDraw


def tiles(city):
    names = [n for n in os.listdir(os.path.join(city, "images")) if n.endswith(".png")]
    return {tuple(map(int, n[:-4].split("_"))): os.path.join(city, "images", n) for n in names}


def window(city, k, px):
    t = tiles(city)
    xs, ys = sorted(x for x, _ in t), sorted(y for _, y in t)
    cx, cy = xs[len(xs) // 2], ys[len(ys) // 2]
    x0, y0 = cx - k // 2, cy - k // 2
    out = Image.new("RGB", (k * px, k * px), (0, 0, 0))
    for j in range(k):
        for i in range(k):
            path = t.get((x0 + i, y0 + j))
            if path:
                im = Image.open(path).convert("RGB").resize((px, px), Image.BOX)
                out.paste(im, (i * px, j * px))
    return out, t.get((cx, cy))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--v5", default="london")
    ap.add_argument("--v6", default="london6")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--window", type=int, default=6)
    ap.add_argument("--out", default="docs/figures/v5_v6_mosaic.png")
    ap.add_argument("--binary", default="target/release/opencarbon")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        cities = []
        for preset in (a.v5, a.v6):
            d = os.path.join(work, preset)
            subprocess.run([a.binary, "-q", "synth", preset, d, "--seed", str(a.seed)],
                           check=True, stdout=subprocess.DEVNULL)
            cities.append(d)
        left, _ = window(cities[0], a.window, 64)
        mid, centre = window(cities[1], a.window, 64)
        right = Image.open(centre).convert("RGB").resize((a.window * 64, a.window * 64), Image.NEAREST)
        gap, top = 12, 28
        w = a.window * 64
        fig = Image.new("RGB", (3 * w + 2 * gap, w + top), (255, 255, 255))
        for k, im in enumerate((left, mid, right)):
            fig.paste(im, (k * (w + gap), top))
        d = ImageDraw.Draw(fig)
        labels = (f"v5 {a.v5}, seed {a.seed}: {a.window}x{a.window} tiles at 64 px",
                  f"v6 {a.v6}, seed {a.seed}: the same at 64 px",
                  "v6: the middle tile at 256 px")
        for k, text in enumerate(labels):
            d.text((k * (w + gap) + 4, 8), text, fill=(0, 0, 0))
        fig.save(a.out)
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""One OpenCarbon training epoch on the synthetic London city in plain PyTorch, timed: the
"straightforward PyTorch implementation" baseline for our dfdx epoch time.

Run: python scripts/bench_epoch_torch.py [DATASET] [--threads 2] [--max-batches N]
     python scripts/bench_epoch_torch.py --same-algorithm --batches B.json [--threads 2]
     (B.json from `cargo bench --bench epoch -- --batches-out B.json`: exactly our batches;
     scripts/bench_speed.py runs both interleaved and prints the ratios)
     (DATASET defaults to .cache/cities/london-s0-v5; needs torch, numpy, pillow, see
     requirements-torch.txt). Prints one JSON line:
     {"impl": "pytorch-naive", "tiles_per_s": ..., "epoch_s": ..., "train_tiles": ..., ...}
tiles_per_s = training target tiles processed in the timed batches / their wall time.

What it mirrors (configs/models/opencarbon_cpu.yaml + src/models/opencarbon/network.rs,
src/nn/layers.rs, src/models/opencarbon/train.rs):
- inputs: RGB images resized to --image-size (32 px: the CPU configuration of
  experiments/ablation.yaml and docs/opencarbon.md; the experiment default is 64), normalised
  with the per-channel mean / std of all the city's pixels; POI rasters of --poi-size (64 px)
  cells, one channel per POI category (15), cell = log1p(summed POI weight), POIs placed by the
  dataset-format pixel formula; target = log(emission) standardised with the training mean and
  standard deviation; training tiles = a random 60 % of the tiles with emission > 0 (seed).
- network (d = 32, k = 1, M = 3, image_widths [16, 32, 64], SE on): small residual image
  encoder, SE-CNN POI encoder, aggregate attention on the centre, neighbourhood CNNs +
  aggregate attention, token self-attention (2 heads) with residuals, token cross-attention,
  head Linear(2d -> d) -> ReLU -> BatchNorm1d -> Linear(d -> 1). Layer list in `OpenCarbonNet`.
  Initialisation: PyTorch defaults (the same U(+-1/sqrt(fan_in)) bound as ours for conv and
  linear weights); the token-attention scalars U(-1, 1) and v U(+-1/sqrt(d)), as ours.
- loss: L1 summed over the batch + alpha * InfoNCE(centre image, centre POI embeddings)
  (logits = a b^T / tau, no normalisation, cross-entropy on the diagonal, mean). The term is
  always on here, as in every epoch >= contrastive_epoch (3) of the CPU configuration.
- optimiser: torch.optim.Adam(lr, weight_decay) (L2 added to the gradient, as our Adam).
- batches: batch_size 32 made of shuffled 3x3 spatial patches of targets (patch_tiles 3),
  batches of fewer than 2 targets skipped; batch norm in training mode (batch statistics,
  running statistics updated with momentum 0.1).
- missing neighbours: zero embeddings in the neighbourhood picture (never another tile's data).

With --same-algorithm it does what ours does instead: each distinct tile of a batch is
encoded once (in ours' order of first appearance) and the embeddings are gathered into the
neighbourhood pictures, a missing neighbour being a zero row that is never encoded; the loss
is the configuration's (`loss: huber` in the CPU recipe), and with --batches the steps are
exactly ours. What stays idiomatic PyTorch: the first POI convolution is dense (ours is
sparse over the non-empty cells), and PyTorch's default CPU backend (oneDNN) runs it.
Neither side applies the weight average (EMA) in these timed epochs (ours: `Trainer::epoch`).

Without --same-algorithm it is deliberately the straightforward version (as the reference
code does it):
- every one of the M*M = 9 tiles of every target's neighbourhood is encoded separately, so a
  batch of 32 targets runs both encoders on 32 * 9 = 288 tiles, although neighbouring targets
  share most of their tiles (ours encodes each distinct tile of a batch once). Patch batching
  therefore saves nothing here; it only makes the batches the same as ours.
- the batch is a fixed B * 9 stack: a missing neighbour is encoded too (all-zero image and
  POI raster) and its embedding then multiplied by 0. Consequence: those zero inputs take part
  in the encoders' batch-norm statistics, which ours (never encoding missing tiles) avoids.
- the POI raster is a dense (288, 15, R, R) tensor and the first POI convolution a dense
  convolution (ours is a sparse convolution over the non-empty cells).
- no validation pass; only the epoch's training steps are timed (batch assembly from the
  pre-decoded city included, PNG decoding and rasterisation excluded).
"""
import argparse
import csv
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


# ----------------------------------------------------------------------------- configuration

def _scalar(v):
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
        return v[1:-1]
    if v in ("true", "false"):
        return v == "true"
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def read_simple_yaml(path):
    """The top-level `key: value`, `key: [a, b]` and `key:` + `- item` entries of a YAML file
    (enough for the model configuration and dataset.yaml; nested mappings are skipped)."""
    out, key = {}, None
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0] not in " -":
                k, _, v = line.partition(":")
                key, v = k.strip(), v.strip()
                if v and v[0] not in "'\"" and " #" in v:
                    v = v.split(" #", 1)[0].strip()
                if v.startswith("[") and v.endswith("]"):
                    out[key] = [_scalar(x) for x in v[1:-1].split(",") if x.strip()]
                elif v:
                    out[key] = _scalar(v)
                else:
                    out[key] = None
            elif line.lstrip().startswith("- ") and key is not None:
                if not isinstance(out.get(key), list):
                    out[key] = []
                out[key].append(_scalar(line.lstrip()[2:]))
    return out


# ----------------------------------------------------------------------------- data

class City:
    """The dataset, decoded once: normalised images, sparse POI rasters, targets, neighbours."""

    def __init__(self, root, image_size, poi_size):
        meta = read_simple_yaml(os.path.join(root, "dataset.yaml"))
        self.zoom = int(meta["zoom"])
        self.categories = list(meta["poi_categories"])
        self.channels = len(self.categories)
        self.poi_size = poi_size
        xs, ys, em = [], [], []
        with open(os.path.join(root, "tiles.csv")) as f:
            for row in csv.DictReader(f):
                xs.append(int(row["x"]))
                ys.append(int(row["y"]))
                em.append(float(row["emission"]))
        self.x, self.y = np.array(xs), np.array(ys)
        self.emission = np.array(em)
        self.index = {(x, y): i for i, (x, y) in enumerate(zip(xs, ys))}
        n = len(xs)

        # Images: RGB, resized (bilinear with antialiasing, like the image crate's Triangle
        # filter), normalised per channel over every pixel of the city; row n = missing tile.
        imgs = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
        for i, (x, y) in enumerate(zip(xs, ys)):
            im = Image.open(os.path.join(root, "images", f"{x}_{y}.png")).convert("RGB")
            if im.size != (image_size, image_size):
                im = im.resize((image_size, image_size), Image.BILINEAR)
            imgs[i] = np.asarray(im)
        px = imgs.reshape(-1, 3).astype(np.float64) / 255.0
        mean, std = px.mean(0), np.sqrt(np.maximum(px.var(0), 1e-8))
        norm = (imgs.astype(np.float32) / 255.0 - mean.astype(np.float32)) / std.astype(np.float32)
        self.images = torch.cat([torch.from_numpy(norm).permute(0, 3, 1, 2).contiguous(),
                                 torch.zeros(1, 3, image_size, image_size)])

        # POI rasters, sparse: per tile its non-empty cells (flat c*R*R + row*R + col) and
        # log1p of the summed weights, CSR-style.
        lon, lat, cat, w = [], [], [], []
        cat_id = {c: i for i, c in enumerate(self.categories)}
        with open(os.path.join(root, "pois.csv")) as f:
            for row in csv.DictReader(f):
                lon.append(float(row["lon"]))
                lat.append(float(row["lat"]))
                cat.append(cat_id[row["category"]])
                w.append(float(row["weight"]) if row.get("weight") not in (None, "") else 1.0)
        lon, lat, cat, w = map(np.array, (lon, lat, cat, w))
        nz = float(1 << self.zoom)
        fx = (lon + 180.0) / 360.0 * nz
        fy = (1.0 - np.arcsinh(np.tan(np.radians(lat))) / math.pi) / 2.0 * nz
        tile = np.array([self.index.get((int(a), int(b)), -1)
                         for a, b in zip(np.floor(fx), np.floor(fy))])
        keep = tile >= 0
        r = poi_size
        col = np.minimum(np.floor((fx - np.floor(fx)) * r), r - 1).astype(np.int64)
        row_ = np.minimum(np.floor((fy - np.floor(fy)) * r), r - 1).astype(np.int64)
        crr = self.channels * r * r
        key = tile * crr + cat * r * r + row_ * r + col
        uniq, inv = np.unique(key[keep], return_inverse=True)
        sums = np.bincount(inv, weights=w[keep])
        self.poi_tile = uniq // crr
        self.poi_cell = torch.from_numpy(uniq % crr)
        self.poi_value = torch.from_numpy(np.log1p(sums).astype(np.float32))
        self.poi_ptr = np.searchsorted(self.poi_tile, np.arange(n + 1))

    def block(self, t, k):
        """Row-major (north to south, west to east) (2k+1)^2 block of tile t; -1 = missing."""
        x, y = int(self.x[t]), int(self.y[t])
        return [self.index.get((x + i, y + j), -1)
                for j in range(-k, k + 1) for i in range(-k, k + 1)]

    def poi_dense(self, slots):
        """Dense (len(slots), C, R, R) rasters; slot -1 = all zeros."""
        r, crr = self.poi_size, self.channels * self.poi_size ** 2
        cells, values = [], []
        for s, t in enumerate(slots):
            if t >= 0:
                a, b = self.poi_ptr[t], self.poi_ptr[t + 1]
                cells.append(self.poi_cell[a:b] + s * crr)
                values.append(self.poi_value[a:b])
        dense = torch.zeros(len(slots) * crr)
        if cells:
            dense[torch.cat(cells)] = torch.cat(values)
        return dense.view(len(slots), self.channels, r, r)


def make_batches(city, train, batch_size, patch_tiles, rng):
    """train.rs make_batches: whole shuffled patch_tiles^2 patches packed into batches of at
    most batch_size (a patch larger than that is a batch of its own); 0 = random batches."""
    train = list(train)
    if patch_tiles == 0:
        rng.shuffle(train)
        return [train[i:i + batch_size] for i in range(0, len(train), batch_size)]
    patches = {}
    for t in train:
        patches.setdefault((city.x[t] // patch_tiles, city.y[t] // patch_tiles), []).append(t)
    patches = [patches[k] for k in sorted(patches)]
    order = rng.permutation(len(patches))
    batches = [[]]
    for p in (patches[i] for i in order):
        if batches[-1] and len(batches[-1]) + len(p) > batch_size:
            batches.append([])
        batches[-1].extend(p)
    return batches


# ----------------------------------------------------------------------------- model

class ConvBnRelu(nn.Sequential):
    def __init__(self, cin, cout, k, s, p):
        super().__init__(nn.Conv2d(cin, cout, k, s, p, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class ImageEncoder(nn.Module):
    """Stride-2 conv-BN-ReLU stages, one residual block (two conv-BN-ReLU, then + skip, no ReLU
    after the sum), global average pooling, Linear(width -> d)."""

    def __init__(self, widths, d):
        super().__init__()
        stages, cin = [], 3
        for w in widths:
            stages.append(ConvBnRelu(cin, w, 3, 2, 1))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.res_a = ConvBnRelu(cin, cin, 3, 1, 1)
        self.res_b = ConvBnRelu(cin, cin, 3, 1, 1)
        self.proj = nn.Linear(cin, d)

    def forward(self, x):
        x = self.stages(x)
        return self.proj((self.res_b(self.res_a(x)) + x).mean(dim=(2, 3)))


class BasicBlock(nn.Module):
    """ResNet's basic block as ours (network.rs BasicBlock): relu(bn(conv3x3(relu(bn(conv3x3(x)))))
    + shortcut(x)), the shortcut a strided 1x1 conv + BN when the block changes size."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.a = ConvBnRelu(cin, cout, 3, stride, 1)
        self.b = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        shortcut = x if self.down is None else self.down(x)
        return F.relu(self.b(self.a(x)) + shortcut)


class ResNetEncoder(nn.Module):
    """Ours' ResNet-18-shaped encoder (network.rs ResNetEncoder): conv 7x7 s2 -> BN -> ReLU ->
    max-pool 3x3 s2 p1 -> stages of basic blocks (stride 2 entering every stage but the first)
    -> global average pooling -> Linear(last width -> d)."""

    def __init__(self, widths, blocks_per_stage, d):
        super().__init__()
        self.stem = ConvBnRelu(3, widths[0], 7, 2, 3)
        blocks, cin = [], widths[0]
        for stage, w in enumerate(widths):
            for i in range(blocks_per_stage):
                blocks.append(BasicBlock(cin, w, 2 if stage > 0 and i == 0 else 1))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.proj = nn.Linear(cin, d)

    def forward(self, x):
        h = self.blocks(F.max_pool2d(self.stem(x), 3, 2, 1))
        return self.proj(h.mean(dim=(2, 3)))


class SqueezeExcite(nn.Module):
    def __init__(self, c):
        super().__init__()
        hidden = max(c // 16, 8)
        self.reduce, self.expand = nn.Linear(c, hidden), nn.Linear(hidden, c)

    def forward(self, x):
        g = torch.sigmoid(self.expand(F.relu(self.reduce(x.mean(dim=(2, 3))))))
        return x * g[:, :, None, None]


def conv_out(size, k, s, p):
    return (size + 2 * p - k) // s + 1


class PoiEncoder(nn.Module):
    """SE-CNN: conv k7 s3 p3 -> BN -> ReLU -> SE -> conv k7 s3 p1 -> BN -> ReLU -> SE ->
    conv(32 -> 1) k3 s3 p1 (bias) -> flatten -> Linear(s3^2 -> d)."""

    def __init__(self, channels, raster, d, se):
        super().__init__()
        s3 = conv_out(conv_out(conv_out(raster, 7, 3, 3), 7, 3, 1), 3, 3, 1)
        self.c1 = ConvBnRelu(channels, 32, 7, 3, 3)
        self.se1 = SqueezeExcite(32) if se else nn.Identity()
        self.c2 = ConvBnRelu(32, 32, 7, 3, 1)
        self.se2 = SqueezeExcite(32) if se else nn.Identity()
        self.c3 = nn.Conv2d(32, 1, 3, 3, 1, bias=True)
        self.proj = nn.Linear(s3 * s3, d)

    def forward(self, x):
        h = self.c3(self.se2(self.c2(self.se1(self.c1(x)))))
        return self.proj(h.flatten(1))


class NeighbourhoodCnn(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(d, 64, 3, 1, 1), nn.Conv2d(64, 128, 3, 1, 1)
        self.proj = nn.Linear(128, d)

    def forward(self, x):  # (B, d, M, M)
        return self.proj(F.relu(self.c2(F.relu(self.c1(x)))).mean(dim=(2, 3)))


class AggregateAttention(nn.Module):
    """score_k = v^T tanh(W x_k + b), beta = softmax_k, out = sum_k beta_k x_k; x (N, K, d)."""

    def __init__(self, d):
        super().__init__()
        self.proj = nn.Linear(d, d)
        self.v = nn.Parameter(torch.empty(d).uniform_(-1 / math.sqrt(d), 1 / math.sqrt(d)))

    def forward(self, x):
        beta = torch.softmax(torch.tanh(self.proj(x)) @ self.v, dim=1)
        return (beta[:, :, None] * x).sum(dim=1), beta


class TokenAttention(nn.Module):
    """The d numbers of a vector as d one-dimensional tokens; per head h: q = wq_h x + bq_h
    (k, v likewise from the key input), softmax(q k^T) v (scale 1/sqrt(1)); Linear(heads -> 1)."""

    def __init__(self, heads=2):
        super().__init__()
        for name in ["wq", "bq", "wk", "bk", "wv", "bv"]:
            setattr(self, name, nn.Parameter(torch.empty(heads).uniform_(-1.0, 1.0)))
        self.out = nn.Linear(heads, 1)

    def forward(self, query, key_value):  # (N, d) each
        aff = lambda x, w, b: x[:, None, :] * w[None, :, None] + b[None, :, None]  # (N, h, d)
        q = aff(query, self.wq, self.bq)
        k = aff(key_value, self.wk, self.bk)
        v = aff(key_value, self.wv, self.bv)
        attn = torch.softmax(q[..., :, None] * k[..., None, :], dim=-1)  # (N, h, d, d)
        o = (attn * v[..., None, :]).sum(dim=-1)  # (N, h, d)
        return self.out(o.transpose(1, 2)).squeeze(-1)


class OpenCarbonNet(nn.Module):
    """Image + POI encoders, centre fusion, neighbourhood module, token attention, head."""

    def __init__(self, cfg, channels, raster):
        super().__init__()
        d, self.k = cfg["embedding_dim"], cfg["neighborhood_k"]
        self.d, self.m = d, 2 * self.k + 1
        if cfg["image_encoder"] == "resnet":
            self.image = ResNetEncoder(cfg["image_widths"], cfg["image_blocks"], d)
        else:
            self.image = ImageEncoder(cfg["image_widths"], d)
        self.poi = PoiEncoder(channels, raster, d, cfg["se"])
        self.fuse_centre = AggregateAttention(d)
        self.nb_image, self.nb_poi = NeighbourhoodCnn(d), NeighbourhoodCnn(d)
        self.fuse_nb = AggregateAttention(d)
        self.attn_g, self.attn_n, self.attn_c = TokenAttention(2), TokenAttention(2), TokenAttention(2)
        self.head1 = nn.Linear(2 * d, d)
        self.head_bn = nn.BatchNorm1d(d)
        self.head2 = nn.Linear(d, 1)

    def forward(self, images, pois, present):
        """images (B*M*M, 3, S, S), pois (B*M*M, C, R, R): every slot of every neighbourhood,
        encoded separately; present (B, M*M) 1/0 (missing neighbour -> zero embedding)."""
        b, m, d = present.shape[0], self.m, self.d
        mask = present[:, :, None]
        xs = self.image(images).view(b, m * m, d) * mask
        xp = self.poi(pois).view(b, m * m, d) * mask
        c = m * self.k + self.k
        return self.head(xs, xp, xs[:, c], xp[:, c])

    def forward_distinct(self, images, pois, centres, slots):
        """The same-algorithm forward (ours): images (T, 3, S, S) and pois (T, C, R, R) are the
        batch's T distinct tiles, each encoded once; centres (B,) index them; slots (B*M*M,)
        index them too, T = a missing neighbour (gathered as a zero row)."""
        xs, xp = self.image(images), self.poi(pois)
        b, m, d = centres.shape[0], self.m, self.d
        zero = xs.new_zeros(1, d)
        xs_nb = torch.cat([xs, zero])[slots].view(b, m * m, d)
        xp_nb = torch.cat([xp, zero])[slots].view(b, m * m, d)
        return self.head(xs_nb, xp_nb, xs[centres], xp[centres])

    def head(self, xs, xp, s_c, p_c):
        """Everything after the encoders: xs, xp (B, M*M, d) neighbourhood embeddings (zero
        rows for missing tiles), s_c, p_c (B, d) the centres'."""
        b, m, d = xs.shape[0], self.m, self.d
        x_g, _ = self.fuse_centre(torch.stack([s_c, p_c], dim=1))
        pic = lambda x: x.reshape(b, m, m, d).permute(0, 3, 1, 2)
        x_n, _ = self.fuse_nb(torch.stack([self.nb_image(pic(xs)), self.nb_poi(pic(xp))], dim=1))
        x_g2 = self.attn_g(x_g, x_g) + x_g
        x_n2 = self.attn_n(x_n, x_n) + x_n
        x_f = self.attn_c(x_n2, x_g2)
        h = self.head_bn(F.relu(self.head1(torch.cat([x_f, x_n2], dim=1))))
        return self.head2(h).squeeze(1), s_c, p_c


# ----------------------------------------------------------------------------- benchmark

def prediction_loss(pred, y, kind):
    """Summed over the batch, as ours (src/models/opencarbon/train.rs prediction_loss)."""
    if kind == "huber":
        return F.huber_loss(pred, y, reduction="sum", delta=1.0)
    if kind == "mse":
        return F.mse_loss(pred, y, reduction="sum")
    return (pred - y).abs().sum()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset", nargs="?", default=os.path.join(ROOT, ".cache/cities/london-s0-v5"))
    ap.add_argument("--config", default=os.path.join(ROOT, "configs/models/opencarbon_cpu.yaml"))
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--poi-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=3, help="untimed batches before the epoch")
    ap.add_argument("--max-batches", type=int, help="time only this many batches (quick check)")
    ap.add_argument("--same-algorithm", action="store_true",
                    help="encode each distinct tile of a batch once, as ours does")
    ap.add_argument("--batches", help="with --same-algorithm: the JSON `cargo bench --bench "
                    "epoch -- --batches-out` wrote; its first epoch warms up, its last is timed")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    cfg = read_simple_yaml(args.config)
    for key, default in [("embedding_dim", 32), ("neighborhood_k", 1), ("image_widths", [16, 32, 64]),
                         ("se", True), ("alpha", 0.001), ("temperature", 0.07), ("lr", 1e-3),
                         ("weight_decay", 5e-3), ("batch_size", 32), ("patch_tiles", 0),
                         ("loss", "l1"), ("image_encoder", "small"), ("image_blocks", 2)]:
        cfg.setdefault(key, default)
    if cfg["image_encoder"] not in ("small", "resnet"):
        raise SystemExit(f"image_encoder {cfg['image_encoder']!r} is not mirrored here")
    loss_kind = cfg["loss"] if args.same_algorithm else "l1"

    city = City(args.dataset, args.image_size, args.poi_size)
    if args.batches:
        with open(args.batches) as f:
            given = json.load(f)
        if given.get("image_size", args.image_size) != args.image_size:
            raise SystemExit(f"{args.batches} is for {given['image_size']} px, not {args.image_size}")
        epochs = given["batches"]
        train = sorted({t for e in epochs for b in e for t in b})
    else:
        epochs = None
        targets = np.flatnonzero(city.emission > 0)
        targets = targets[rng.permutation(len(targets))]
        train = [int(t) for t in np.sort(targets[:int(round(0.6 * len(targets)))])]
    log_y = np.log(city.emission[train])
    y_mean, y_std = log_y.mean(), max(log_y.std(), 1e-6)
    target = np.zeros(len(city.emission), dtype=np.float32)
    target[train] = (log_y - y_mean) / y_std
    k = cfg["neighborhood_k"]
    blocks = {t: city.block(t, k) for t in train}

    net = OpenCarbonNet(cfg, city.channels, args.poi_size)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    alpha, tau = float(cfg["alpha"]), float(cfg["temperature"])
    missing_row = city.images.shape[0] - 1

    def forward_naive(batch):
        slots = [s for t in batch for s in blocks[t]]  # B * M * M, every slot encoded
        present = torch.tensor([s >= 0 for s in slots], dtype=torch.float32).view(len(batch), -1)
        images = city.images[torch.tensor([s if s >= 0 else missing_row for s in slots])]
        return net(images, city.poi_dense(slots), present), len(slots)

    def forward_distinct(batch):
        # ours' layout (src/models/opencarbon/inputs.rs): distinct tiles in order of first
        # appearance, each target then its block row by row.
        local, tiles = {}, []
        def tile_id(t):
            if t not in local:
                local[t] = len(tiles)
                tiles.append(t)
            return local[t]
        centres, slots = [], []
        for t in batch:
            centres.append(tile_id(t))
            slots.extend(tile_id(s) if s >= 0 else -1 for s in blocks[t])
        n = len(tiles)
        slots = torch.tensor([s if s >= 0 else n for s in slots])
        images = city.images[torch.tensor(tiles)]
        return net.forward_distinct(images, city.poi_dense(tiles), torch.tensor(centres), slots), n

    forward = forward_distinct if args.same_algorithm else forward_naive

    def step(batch):
        (pred, s_c, p_c), encoded = forward(batch)
        y = torch.from_numpy(target[batch])
        logits = s_c @ p_c.T / tau
        loss = prediction_loss(pred, y, loss_kind) + alpha * F.cross_entropy(logits, torch.arange(len(batch)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item(), encoded

    def epoch_batches():
        bs = make_batches(city, train, cfg["batch_size"], cfg["patch_tiles"], rng)
        return [b for b in bs if len(b) >= 2]  # batch norm needs two samples

    if epochs is not None:
        warm, batches = (epochs[0] if len(epochs) > 1 else epochs[0][:args.warmup]), epochs[-1]
    else:
        warm, batches = epoch_batches()[:args.warmup], epoch_batches()
    for b in warm:
        step(b)
    full_batches = len(batches)
    if args.max_batches is not None:
        batches = batches[:args.max_batches]
    timed_tiles = sum(len(b) for b in batches)
    missing = sum(1 for b in batches for t in b for s in blocks[t] if s < 0)
    loss_sum, encodings = 0.0, 0
    t0 = time.perf_counter()
    for b in batches:
        loss, encoded = step(b)
        loss_sum += loss
        encodings += encoded
    epoch_s = time.perf_counter() - t0

    params = list(net.parameters())
    print(json.dumps({
        "impl": "pytorch-same-algorithm" if args.same_algorithm else "pytorch-naive",
        "tiles_per_s": round(timed_tiles / epoch_s, 2),
        "epoch_s": round(epoch_s, 4),
        "train_tiles": int(len(train)),
        "threads": args.threads,
        "torch": torch.__version__,
        "mkldnn": torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "timed_tiles": timed_tiles,
        "batches": len(batches),
        "partial": len(batches) < full_batches,
        "tile_encodings": encodings,
        "missing_slots": missing,
        "image_size": args.image_size,
        "poi_raster_size": args.poi_size,
        "loss": loss_kind,
        "param_tensors": len(params),
        "param_values": sum(p.numel() for p in params),
        "loss_per_tile": round(loss_sum / max(timed_tiles, 1), 4),
    }))


if __name__ == "__main__":
    main()

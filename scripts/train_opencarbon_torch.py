#!/usr/bin/env python3
"""Whole-training PyTorch peer of our OpenCarbon training (src/models/opencarbon/train.rs).

Run:
    python scripts/train_opencarbon_torch.py --run <run dir> [--seed N] [--threads N]
        [--out result.json] [--dataset DIR] [--cache-dir DIR] [--quiet]
(needs torch, numpy, pyyaml; pillow only when the derived-array cache cannot be found; pinned
versions in scripts/requirements-torch-peer.txt).

A run dir is what `opencarbon run` writes. From it the script reads
  config.yaml    the resolved job: datasets, model {model: {kind: opencarbon, ...}, inputs},
                 image_size, poi_raster_size, seed;
  split.csv      dataset,x,y,split of every labelled tile (the rows of the job, in order);
  manifest.json  each dataset's directory and content fingerprint;
  metrics.json / run.log (optional) our numbers and parameter count, for the comparison.
It trains the same network with the same hyperparameters and recipe from scratch, selects the
checkpoint on validation R², and prints (and writes with --out) one JSON object: train / valid
/ test R², RMSE, MAE, MAPE on log emission, best epoch, epochs run, wall seconds, torch
version, thread count, parameter counts, and our run's numbers next to them.

Inputs, as `prepare_dataset` (src/train/mod.rs) derives them:
- images: every tile's RGB image at `image_size` px, HWC u8. Read from our derived cache
  `<cache_dir>/derived/<fingerprint>/images_<size>.u8` (byte-identical to what the Rust run
  used). The cache dir is found from the dataset path (presets live in
  `<cache_dir>/cities/<name>-s<seed>-v<gen>`) or given with --cache-dir; the fingerprint comes
  from manifest.json (or is recomputed with the same SHA-256 recipe as `content_fingerprint`).
  Without a cache the PNGs are decoded with Pillow and resized with its BILINEAR filter
  (a triangle filter whose support widens when downscaling, like the `image` crate's
  `FilterType::Triangle` that we use; rounding can differ by one grey level on some pixels).
- POI rasters: read from `poi_raster_<size>_v2.bin` of the same cache, or rebuilt from pois.csv
  with the dataset-format formula (col = floor(frac_x·R), row = floor(frac_y·R), clamped to
  R − 1, weights of POIs in the same cell summed). Network input = log1p(cell weight).
- targets: log(emission) standardised with the training rows' mean and (population) standard
  deviation; images: (pixel/255 − mean_c)/std_c with per-channel statistics over the TRAINING
  TARGET tiles only; std = sqrt(max(E[x²] − mean², 1e-8)).

Network (src/models/opencarbon/network.rs, src/nn/layers.rs), built only from the parts the
job's inputs switch on, so that the parameter list has the same tensors as ours:
- image encoder `small`: per width a conv3×3 s2 p1 (no bias) → BN → ReLU stage, then a residual
  block y = ReLU(BN(conv(ReLU(BN(conv(x)))))) ; out = Linear(mean_hw(y + x) → d);
  `resnet`: 7×7 s2 stem → max-pool 3 s2 p1 → basic blocks → mean → Linear.
- POI encoder (SE-CNN): conv7 s3 p3 → BN → ReLU → SE → conv7 s3 p1 → BN → ReLU → SE →
  conv3 s3 p1 (bias) → flatten → Linear(→ d); SE = mean → Linear(32→8) → ReLU → Linear(8→32)
  → sigmoid → scale.
- every distinct tile of a batch is encoded once; its embeddings are gathered into the 3×3
  (M×M) neighbourhoods, a missing neighbour being a ZERO embedding.
- aggregate attention on the centre pair, neighbourhood CNNs (conv3 d→64 → ReLU → conv3
  64→128 → ReLU → mean → Linear(128→d)) per modality + aggregate attention, token self
  attention (2 heads, per-head scalar q/k/v affine maps, Linear(2→1) out) with residuals,
  token cross attention, head Linear(2d→d) → ReLU → BatchNorm1d → Linear(d→1).
- initialisation: U(±1/sqrt(fan_in)) for every conv / linear weight and bias (PyTorch's
  default bound, ours too), BN γ=1 β=0, aggregate-attention v U(±1/sqrt(d)), token-attention
  scalars U(−1, 1). BN momentum 0.1, eps 1e-5, unbiased running variance (same as ours).

Training (same recipe as train.rs):
- batches per epoch: `patch_tiles` = 0 → the shuffled training targets in chunks of
  batch_size; > 0 → patches keyed (dataset, x // p, y // p) in key order, shuffled, packed
  greedily into batches of about batch_size; batches of fewer than 2 targets are skipped.
- `augment`: one of the 8 dihedral transforms per batch (bit 2 transposes, bit 0 flips rows,
  bit 1 flips columns), applied to the images, POI rasters and neighbourhood arrangement.
- loss: prediction loss (l1 | huber δ=1 | mse) on the standardised target summed over the
  batch, + alpha · InfoNCE(x_s, x_p, tau) of the centre tiles (logits x_s x_pᵀ / tau, mean
  cross-entropy on the diagonal) from epoch `contrastive_epoch` on when both modalities are on
  and `contrastive` is true.
- Adam (torch.optim.Adam: betas 0.9/0.999, eps 1e-8, L2 weight decay added to the gradient);
  the learning rate of each epoch from the schedule (constant | cosine with warm-up | step),
  the same formula as nn::learner::LearningRate::at. Every parameter gets a gradient every
  step (a zero one if the loss did not reach it), so all are updated as our Adam does.
- `ema` > 0: after every step avg ← decay·avg + (1 − decay)·current over parameters and BN
  running statistics, decay = min(ema, (1 + n)/(10 + n)); validation, the kept checkpoint and
  the final predictions use the averaged weights.
- validation every `valid_every` epochs and at the last epoch; score = validation R² on log
  emission (−training loss per tile when there are no validation tiles); the best score
  (strictly greater) is kept; early stopping: not before `min_epochs`; `reset`: after
  `patience` non-improving validations in a row, `cumulative`: once more than `patience`
  non-improving validations were counted in total.
- metrics of every part from the best checkpoint, in evaluation mode (BN running statistics).

Deliberate / unavoidable differences from our Rust training:
- random streams: initial weights come from torch.manual_seed(seed), batch order and
  augmentation draws from numpy's PCG64 seeded with the seed (ours: dfdx's generator and
  ChaCha8 seeded with seed ^ 0x0CA2B0). Same distributions, different draws, so the two runs
  agree statistically, not bit for bit.
- arithmetic: dense PyTorch kernels (ours: our own conv kernels, a sparse first POI conv),
  so float32 rounding differs.
- PNG fallback only: Pillow's bilinear resize instead of the `image` crate's (see above).
- no side outputs (checkpoint file, embeddings.csv, modality weights, TensorBoard events).
"""

import argparse
import copy
import csv
import hashlib
import json
import math
import os
import sys
import time


def _threads_from_argv(argv):
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return "1"


# Thread counts must be set before torch (and its OpenMP runtime) is imported.
_T = _threads_from_argv(sys.argv[1:])
for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_v] = _T

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import yaml  # noqa: E402


# ------------------------------------------------------------------------------ configuration

OPENCARBON_DEFAULTS = {
    "embedding_dim": 32,
    "neighborhood_k": 1,
    "image_encoder": "small",
    "image_widths": [16, 32, 64],
    "image_blocks": 2,
    "se": True,
    "contrastive": True,
    "alpha": 0.001,
    "temperature": 0.07,
    "contrastive_epoch": 100,
    "lr": 1e-3,
    "weight_decay": 5e-3,
    "batch_size": 32,
    "max_epochs": 3000,
    "valid_every": 5,
    "patience": 30,
    "min_epochs": 100,
    "patch_tiles": 0,
    "loss": "l1",
    "schedule": "constant",
    "warmup_epochs": 0,
    "step_every": 0,
    "step_gamma": 0.1,
    "ema": 0.0,
    "augment": False,
    "patience_mode": "reset",
    "image_weights": None,
    "image_training": "fine_tune",
    "image_lr": None,
}


def model_config(job):
    """The OpenCarbon hyperparameters and input switches of a resolved job."""
    spec = job["model"]
    model = spec.get("model", spec)  # {model: {kind, ...fields}, inputs: {...}}
    # Serialised as `open_carbon` (serde snake_case of the variant); YAML files say `opencarbon`.
    if model.get("kind") not in ("opencarbon", "open_carbon"):
        raise SystemExit(f"the run's model is `{model.get('kind')}`, not opencarbon")
    unknown = set(model) - set(OPENCARBON_DEFAULTS) - {"kind"}
    if unknown:
        raise SystemExit(f"unknown OpenCarbon fields in config.yaml: {sorted(unknown)}")
    cfg = dict(OPENCARBON_DEFAULTS)
    cfg.update({k: v for k, v in model.items() if k != "kind"})
    inputs = {"image": True, "poi": True, "neighborhood": True}
    inputs.update(spec.get("inputs") or {})
    return cfg, inputs


def learning_rate(cfg, epoch):
    """OpenCarbonConfig::learning_rate: the rate of epoch `epoch` (from 0)."""
    lr, warm = cfg["lr"], cfg["warmup_epochs"]
    if cfg["schedule"] != "constant" and epoch < warm:
        return lr * (epoch + 1) / warm
    if cfg["schedule"] == "constant":
        return lr
    if cfg["schedule"] == "cosine":
        span = max(cfg["max_epochs"] - warm, 1)
        return 0.5 * lr * (1.0 + math.cos(math.pi * (epoch - warm) / span))
    if cfg["schedule"] == "step":
        return lr * cfg["step_gamma"] ** ((epoch - warm) // max(cfg["step_every"], 1))
    raise SystemExit(f"unknown schedule `{cfg['schedule']}`")


# ------------------------------------------------------------------------------------ data

def lonlat_to_tile(lon, lat, zoom):
    n = float(1 << zoom)
    x = (lon + 180.0) / 360.0 * n
    phi = math.radians(lat)
    y = (1.0 - math.asinh(math.tan(phi)) / math.pi) / 2.0 * n
    return x, y


def content_fingerprint(root, tiles, split_names):
    """The cache key of our derived arrays (src/data/format.rs `content_fingerprint`)."""
    h = hashlib.sha256()
    for name in ("dataset.yaml", "tiles.csv", "pois.csv"):
        h.update(name.encode())
        with open(os.path.join(root, name), "rb") as f:
            h.update(f.read())
    for x, y, _ in tiles:
        with open(os.path.join(root, "images", f"{x}_{y}.png"), "rb") as f:
            h.update(f.read())
    for s in sorted(split_names):
        h.update(s.encode())
        with open(os.path.join(root, "splits", s + ".csv"), "rb") as f:
            h.update(f.read())
    return h.digest()[:12].hex()


def read_poi_cache(data, n_tiles):
    """Decode `poi_raster_<size>_v2.bin`: per tile its merged (channel, row, col, weight) cells."""
    channels, size, n = np.frombuffer(data, dtype="<u8", count=3, offset=0)
    pos = 24
    cell = np.dtype([("c", "<u2"), ("r", "<u2"), ("k", "<u2"), ("w", "<f4")])
    tiles = []
    for _ in range(int(n)):
        (m,) = np.frombuffer(data, dtype="<u8", count=1, offset=pos)
        pos += 8
        tiles.append(np.frombuffer(data, dtype=cell, count=int(m), offset=pos))
        pos += int(m) * cell.itemsize
    if pos != len(data) or int(n) != n_tiles:
        return None
    return int(channels), int(size), tiles


class Dataset:
    """One city: tiles, images (N, S, S, 3) u8 and POI cells per tile."""

    def __init__(self, name, root, image_size, raster_size, cache_dir, fingerprint, log):
        self.name, self.root = name, root
        with open(os.path.join(root, "dataset.yaml")) as f:
            meta = yaml.safe_load(f)
        self.zoom = int(meta["zoom"])
        self.categories = list(meta["poi_categories"])
        self.tiles = []
        with open(os.path.join(root, "tiles.csv"), newline="") as f:
            for row in csv.DictReader(f):
                self.tiles.append((int(row["x"]), int(row["y"]), float(row["emission"])))
        self.index = {(x, y): i for i, (x, y, _) in enumerate(self.tiles)}
        n = len(self.tiles)
        splits_dir = os.path.join(root, "splits")
        split_names = (
            [f[:-4] for f in os.listdir(splits_dir) if f.endswith(".csv")]
            if os.path.isdir(splits_dir) else []
        )
        if fingerprint is None and cache_dir is not None:
            fingerprint = content_fingerprint(root, self.tiles, split_names)
        derived = (os.path.join(cache_dir, "derived", fingerprint)
                   if cache_dir is not None and fingerprint else None)

        img_path = derived and os.path.join(derived, f"images_{image_size}.u8")
        if img_path and os.path.isfile(img_path) and \
                os.path.getsize(img_path) == n * image_size * image_size * 3:
            self.images = np.fromfile(img_path, dtype=np.uint8).reshape(
                n, image_size, image_size, 3)
            log(f"{name}: images from our cache {img_path}")
        else:
            self.images = self._decode_images(image_size)
            log(f"{name}: images decoded from PNG with Pillow (no cache found)")

        poi_path = derived and os.path.join(derived, f"poi_raster_{raster_size}_v2.bin")
        parsed = None
        if poi_path and os.path.isfile(poi_path):
            with open(poi_path, "rb") as f:
                parsed = read_poi_cache(f.read(), n)
        if parsed is not None and parsed[0] == len(self.categories) and parsed[1] == raster_size:
            cells = parsed[2]
            log(f"{name}: POI rasters from our cache {poi_path}")
        else:
            cells = self._rasterise(raster_size)
            log(f"{name}: POI rasters rebuilt from pois.csv (no cache found)")
        self.channels, self.raster = len(self.categories), raster_size
        # Network input per cell: log1p of the summed weight, in float32 as ours.
        self.poi_cells = [
            (c["c"].astype(np.int64), c["r"].astype(np.int64), c["k"].astype(np.int64),
             np.log1p(c["w"].astype(np.float32)))
            for c in cells
        ]

    def _decode_images(self, size):
        from PIL import Image
        out = np.zeros((len(self.tiles), size, size, 3), dtype=np.uint8)
        for i, (x, y, _) in enumerate(self.tiles):
            img = Image.open(os.path.join(self.root, "images", f"{x}_{y}.png")).convert("RGB")
            if img.width != img.height:
                raise SystemExit(f"image {x}_{y}.png is not square")
            if img.width != size:
                img = img.resize((size, size), Image.BILINEAR)
            out[i] = np.asarray(img, dtype=np.uint8)
        return out

    def _rasterise(self, size):
        cat = {c: i for i, c in enumerate(self.categories)}
        merged = [dict() for _ in self.tiles]
        with open(os.path.join(self.root, "pois.csv"), newline="") as f:
            for row in csv.DictReader(f):
                lon, lat = float(row["lon"]), float(row["lat"])
                w = np.float32(row.get("weight") or 1.0)
                fx, fy = lonlat_to_tile(lon, lat, self.zoom)
                if fx < 0 or fy < 0:
                    continue
                t = self.index.get((math.floor(fx), math.floor(fy)))
                if t is None:
                    continue
                col = min(int(math.floor((fx - math.floor(fx)) * size)), size - 1)
                r = min(int(math.floor((fy - math.floor(fy)) * size)), size - 1)
                key = (cat[row["category"].strip()], r, col)
                merged[t][key] = np.float32(merged[t].get(key, np.float32(0.0)) + w)
        dt = np.dtype([("c", "<u2"), ("r", "<u2"), ("k", "<u2"), ("w", "<f4")])
        return [np.array([(c, r, k, w) for (c, r, k), w in sorted(m.items())], dtype=dt)
                for m in merged]


class City:
    """All datasets of a job, tiles numbered globally, with neighbourhood blocks."""

    def __init__(self, datasets, k):
        self.datasets = datasets
        self.offset, off = [], 0
        for d in datasets:
            self.offset.append(off)
            off += len(d.tiles)
        self.images = np.concatenate([d.images for d in datasets])
        self.poi_cells = [c for d in datasets for c in d.poi_cells]
        self.channels, self.raster = datasets[0].channels, datasets[0].raster
        self.coords = [(di, x, y) for di, d in enumerate(datasets) for x, y, _ in d.tiles]
        m = 2 * k + 1
        blocks = np.full((off, m * m), -1, dtype=np.int64)
        for g, (di, x, y) in enumerate(self.coords):
            idx = self.datasets[di].index
            s = 0
            for j in range(-k, k + 1):          # dy outer (north to south)
                for i in range(-k, k + 1):      # dx inner (west to east)
                    t = idx.get((x + i, y + j))
                    if t is not None:
                        blocks[g, s] = self.offset[di] + t
                    s += 1
        self.blocks, self.m = blocks, m

    def log_emission(self, g):
        di, x, y = self.coords[g]
        return math.log(self.datasets[di].tiles[self.datasets[di].index[(x, y)]][2])


def dihedral(x, t):
    """One of the 8 symmetries of the last two (square) axes: bit 2 transposes first, bit 0
    flips rows, bit 1 flips columns (train.rs `Dihedral`)."""
    if t & 4:
        x = x.transpose(-1, -2)
    if t & 1:
        x = x.flip(-2)
    if t & 2:
        x = x.flip(-1)
    return x


class Layout:
    """A batch of targets: distinct tiles (centres and neighbours), centre rows and slots."""

    def __init__(self, city, targets, half):
        local, tiles = {}, []

        def ident(g):
            if g not in local:
                local[g] = len(tiles)
                tiles.append(g)
            return local[g]

        centres, slots = [], []
        for g in targets:
            centres.append(ident(g))
            if half > 0:
                slots.append([ident(int(n)) if n >= 0 else -1 for n in city.blocks[g]])
            else:
                slots.append([centres[-1]])
        self.tiles = tiles
        self.centres = torch.tensor(centres, dtype=torch.long)
        u = len(tiles)
        # Index u is the appended zero row: a missing neighbour.
        self.slots = torch.tensor([[s if s >= 0 else u for s in b] for b in slots],
                                  dtype=torch.long)


# --------------------------------------------------------------------------------- network

def init_uniform_(t, fan_in):
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    with torch.no_grad():
        t.uniform_(-bound, bound)


class ConvBnRelu(nn.Module):
    def __init__(self, cin, cout, k, stride, pad):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, pad, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)

    def forward(self, x, relu=True):
        y = self.bn(self.conv(x))
        return F.relu(y) if relu else y


class SmallCnn(nn.Module):
    def __init__(self, widths, dim):
        super().__init__()
        stages, cin = [], 3
        for w in widths:
            stages.append(ConvBnRelu(cin, w, 3, 2, 1))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.res_a = ConvBnRelu(cin, cin, 3, 1, 1)
        self.res_b = ConvBnRelu(cin, cin, 3, 1, 1)
        self.proj = nn.Linear(cin, dim)

    def forward(self, x):
        for s in self.stages:
            x = s(x)
        y = self.res_b(self.res_a(x))
        return self.proj((y + x).mean(dim=(2, 3)))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.a = ConvBnRelu(cin, cout, 3, stride, 1)
        self.b = ConvBnRelu(cout, cout, 3, 1, 1)
        self.down = ConvBnRelu(cin, cout, 1, stride, 0) if (stride != 1 or cin != cout) else None

    def forward(self, x):
        short = self.down(x, relu=False) if self.down is not None else x
        return F.relu(self.b(self.a(x), relu=False) + short)


class ResNetEncoder(nn.Module):
    def __init__(self, widths, blocks_per_stage, dim):
        super().__init__()
        self.stem = ConvBnRelu(3, widths[0], 7, 2, 3)
        blocks, cin = [], widths[0]
        for stage, w in enumerate(widths):
            for i in range(blocks_per_stage):
                blocks.append(BasicBlock(cin, w, 2 if stage > 0 and i == 0 else 1))
                cin = w
        self.blocks = nn.ModuleList(blocks)
        self.proj = nn.Linear(cin, dim)

    def forward(self, x):
        h = F.max_pool2d(self.stem(x), 3, 2, 1)
        for b in self.blocks:
            h = b(h)
        return self.proj(h.mean(dim=(2, 3)))


def torchvision_to_peer(name, blocks):
    """The peer's ResNetEncoder name of a torchvision ResNet tensor (the mapping of
    src/models/opencarbon/pretrained.rs); None for what the encoder has no place for."""
    parts = name.split(".")
    bn_field = {"weight": "weight", "bias": "bias", "running_mean": "running_mean",
                "running_var": "running_var"}
    if parts[0] in ("conv1", "bn1") and len(parts) == 2:
        return f"stem.{'conv' if parts[0] == 'conv1' else 'bn'}.{parts[1]}"
    if not parts[0].startswith("layer") or len(parts) < 4:
        return None
    k = (int(parts[0][5:]) - 1) * blocks + int(parts[1])
    sub = {"conv1": "a.conv", "bn1": "a.bn", "conv2": "b.conv", "bn2": "b.bn",
           "downsample.0": "down.conv", "downsample.1": "down.bn"}.get(".".join(parts[2:-1]))
    if sub is None or parts[-1] not in bn_field:
        return None
    return f"blocks.{k}.{sub}.{parts[-1]}"


def load_pretrained_image(encoder, path, blocks):
    """Set a ResNetEncoder's body from a file of scripts/convert_torchvision_resnet.py;
    returns the normalisation (Norm) its metadata gives. Every tensor must fit."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if "input_mean" not in meta or "input_std" not in meta:
        raise SystemExit(f"{path}: no input_mean / input_std metadata")
    own = encoder.state_dict()
    body = {k for k in own if not k.startswith("proj.") and not k.endswith("num_batches_tracked")}
    loaded = {}
    for name, value in tensors.items():
        target = torchvision_to_peer(name, blocks)
        if target not in body or own[target].shape != value.shape:
            raise SystemExit(f"{path}: `{name}` does not fit the encoder")
        loaded[target] = value
    if set(loaded) != body:
        raise SystemExit(f"{path}: no tensor for {sorted(body - set(loaded))[:3]}")
    encoder.load_state_dict(loaded, strict=False)
    return Norm(json.loads(meta["input_mean"]), json.loads(meta["input_std"]))


def encoder_body(net):
    """The image encoder's modules other than its projection (frozen or own-rate)."""
    return [m for name, m in net.image.named_children() if name != "proj"] if net.image else []


class SqueezeExcite(nn.Module):
    def __init__(self, channels):
        super().__init__()
        hidden = max(channels // 16, 8)
        self.reduce = nn.Linear(channels, hidden)
        self.expand = nn.Linear(hidden, channels)

    def forward(self, x):
        gate = torch.sigmoid(self.expand(F.relu(self.reduce(x.mean(dim=(2, 3))))))
        return x * gate[:, :, None, None]


def conv_out(size, k, s, p):
    return (size + 2 * p - k) // s + 1


class PoiEncoder(nn.Module):
    def __init__(self, channels, raster, dim, se):
        super().__init__()
        s3 = conv_out(conv_out(conv_out(raster, 7, 3, 3), 7, 3, 1), 3, 3, 1)
        self.c1 = ConvBnRelu(channels, 32, 7, 3, 3)
        self.se1 = SqueezeExcite(32) if se else None
        self.c2 = ConvBnRelu(32, 32, 7, 3, 1)
        self.se2 = SqueezeExcite(32) if se else None
        self.c3 = nn.Conv2d(32, 1, 3, 3, 1, bias=True)
        self.proj = nn.Linear(s3 * s3, dim)

    def forward(self, x):
        h = self.c1(x)
        if self.se1 is not None:
            h = self.se1(h)
        h = self.c2(h)
        if self.se2 is not None:
            h = self.se2(h)
        h = self.c3(h)
        return self.proj(h.flatten(1))


class NeighbourhoodCnn(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.c1 = nn.Conv2d(dim, 64, 3, 1, 1)
        self.c2 = nn.Conv2d(64, 128, 3, 1, 1)
        self.proj = nn.Linear(128, dim)

    def forward(self, x):
        h = F.relu(self.c2(F.relu(self.c1(x))))
        return self.proj(h.mean(dim=(2, 3)))


class AggregateAttention(nn.Module):
    """score_k = vᵀ tanh(W x_k + b), β = softmax_k, out = Σ β_k x_k; x (N, K, d)."""

    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.v = nn.Parameter(torch.empty(dim))
        init_uniform_(self.v, dim)

    def forward(self, x):
        beta = torch.softmax(torch.tanh(self.proj(x)) @ self.v, dim=1)
        return (x * beta[:, :, None]).sum(dim=1), beta


class TokenAttention(nn.Module):
    """Attention over the d numbers of a vector as d one-dimensional tokens, `heads` heads
    with scalar q/k/v affine maps, softmax(q kᵀ) v (scale 1), Linear(heads → 1)."""

    def __init__(self, heads=2):
        super().__init__()
        for name in ("wq", "bq", "wk", "bk", "wv", "bv"):
            p = nn.Parameter(torch.empty(heads))
            init_uniform_(p, 1)
            setattr(self, name, p)
        self.out = nn.Linear(heads, 1)

    def forward(self, query, key_value):
        def affine(x, w, b):  # (N, d) → (N, h, d)
            return x[:, None, :] * w[None, :, None] + b[None, :, None]

        q = affine(query, self.wq, self.bq)
        k = affine(key_value, self.wk, self.bk)
        v = affine(key_value, self.wv, self.bv)
        attn = torch.softmax(q[..., :, None] * k[..., None, :], dim=-1)  # (N, h, d, d)
        o = (attn @ v[..., None]).squeeze(-1)  # (N, h, d)
        return self.out(o.transpose(1, 2)).squeeze(-1)  # (N, d)


class OpenCarbonNet(nn.Module):
    def __init__(self, cfg, inputs, poi_channels, poi_raster):
        super().__init__()
        d = cfg["embedding_dim"]
        self.dim, self.k, self.inputs = d, cfg["neighborhood_k"], inputs
        both = inputs["image"] and inputs["poi"]
        nb = inputs["neighborhood"]
        self.image = None
        if inputs["image"]:
            if cfg["image_encoder"] == "resnet":
                self.image = ResNetEncoder(cfg["image_widths"], cfg["image_blocks"], d)
            else:
                self.image = SmallCnn(cfg["image_widths"], d)
        self.poi = PoiEncoder(poi_channels, poi_raster, d, cfg["se"]) if inputs["poi"] else None
        self.fuse_centre = AggregateAttention(d) if both else None
        self.nb_image = NeighbourhoodCnn(d) if nb and inputs["image"] else None
        self.nb_poi = NeighbourhoodCnn(d) if nb and inputs["poi"] else None
        self.fuse_nb = AggregateAttention(d) if nb and both else None
        self.attn_g = TokenAttention(2) if nb else None
        self.attn_n = TokenAttention(2) if nb else None
        self.attn_c = TokenAttention(2) if nb else None
        self.head1 = nn.Linear(2 * d if nb else d, d)
        self.head_bn = nn.BatchNorm1d(d, eps=1e-5, momentum=0.1)
        self.head2 = nn.Linear(d, 1)
        # Every conv and linear weight and bias: U(±1/sqrt(fan_in)), as ours.
        for mod in self.modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                fan_in = mod.weight[0].numel()
                init_uniform_(mod.weight, fan_in)
                if mod.bias is not None:
                    init_uniform_(mod.bias, fan_in)

    def block_half_size(self):
        return self.k if self.inputs["neighborhood"] else 0

    def encode(self, images, pois):
        xs = self.image(images) if self.image is not None else None
        xp = self.poi(pois) if self.poi is not None else None
        return xs, xp

    def head(self, xs, xp, centres, slots, transform=0):
        """Returns (prediction (B,), centre pair or None, grid embedding)."""
        b, m, d = centres.shape[0], 2 * self.k + 1, self.dim
        xs_c = xs[centres] if xs is not None else None
        xp_c = xp[centres] if xp is not None else None
        if xs_c is not None and xp_c is not None:
            x_g, _ = self.fuse_centre(torch.stack([xs_c, xp_c], dim=1))
            pair = (xs_c, xp_c)
        else:
            x_g, pair = (xs_c if xs_c is not None else xp_c), None
        if self.inputs["neighborhood"]:
            def picture(x, cnn):
                padded = torch.cat([x, x.new_zeros(1, d)], dim=0)
                pic = padded[slots].reshape(b, m, m, d).permute(0, 3, 1, 2)
                return cnn(dihedral(pic, transform) if transform else pic)

            x_ns = picture(xs, self.nb_image) if xs is not None else None
            x_np = picture(xp, self.nb_poi) if xp is not None else None
            if x_ns is not None and x_np is not None:
                x_n, _ = self.fuse_nb(torch.stack([x_ns, x_np], dim=1))
            else:
                x_n = x_ns if x_ns is not None else x_np
            x_g2 = self.attn_g(x_g, x_g) + x_g
            x_n2 = self.attn_n(x_n, x_n) + x_n
            x_f = self.attn_c(x_n2, x_g2)
            hidden = torch.cat([x_f, x_n2], dim=1)
        else:
            hidden = x_g
        h = self.head_bn(F.relu(self.head1(hidden)))
        return self.head2(h).reshape(b), pair, x_g


# -------------------------------------------------------------------------------- training

class Norm:
    def __init__(self, mean, std):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)


def image_norm(city, train):
    """Per-channel pixel mean / deviation (pixel/255) over the training targets only."""
    s = np.zeros(3)
    sq = np.zeros(3)
    n = 0
    for g in train:
        px = city.images[g].reshape(-1, 3).astype(np.float64) / 255.0
        s += px.sum(0)
        sq += (px * px).sum(0)
        n += px.shape[0]
    mean = s / n
    std = np.sqrt(np.maximum(sq / n - mean * mean, 1e-8))
    return Norm(mean.astype(np.float32), std.astype(np.float32))


def tile_inputs(city, tiles, inputs, norm, transform=0):
    images = pois = None
    if inputs["image"]:
        raw = torch.from_numpy(city.images[tiles]).permute(0, 3, 1, 2).float()
        images = (raw / 255.0 - norm.mean) / norm.std
        if transform:
            images = dihedral(images, transform).contiguous()
    if inputs["poi"]:
        dense = np.zeros((len(tiles), city.channels, city.raster, city.raster), np.float32)
        for n, g in enumerate(tiles):
            c, r, k, v = city.poi_cells[g]
            dense[n, c, r, k] += v
        pois = torch.from_numpy(dense)
        if transform:
            pois = dihedral(pois, transform).contiguous()
    return images, pois


def make_batches(city, train, batch_size, patch_tiles, rng):
    """train.rs `make_batches` (train is shuffled in place only for random batches)."""
    if patch_tiles == 0:
        rng.shuffle(train)
        return [train[i:i + batch_size] for i in range(0, len(train), batch_size)]
    patches = {}
    for g in train:
        di, x, y = city.coords[g]
        patches.setdefault((di, x // patch_tiles, y // patch_tiles), []).append(g)
    order = [patches[key] for key in sorted(patches)]
    perm = rng.permutation(len(order))
    batches = [[]]
    for i in perm:
        p = order[i]
        if batches[-1] and len(batches[-1]) + len(p) > batch_size:
            batches.append([])
        batches[-1].extend(p)
    return batches


def prediction_loss(residual, kind):
    if kind == "l1":
        return residual.abs().sum()
    if kind == "mse":
        return (residual * residual).sum()
    if kind == "huber":
        return F.huber_loss(residual, torch.zeros_like(residual), reduction="sum", delta=1.0)
    raise SystemExit(f"unknown loss `{kind}`")


def info_nce(a, b, temperature):
    logits = a @ b.t() / temperature
    return F.cross_entropy(logits, torch.arange(a.shape[0]))


def state_copy(net):
    """Parameters and BN running statistics (what our snapshots hold)."""
    return {k: v.detach().clone() for k, v in net.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def load_state(net, state):
    net.load_state_dict(state, strict=False)


@torch.no_grad()
def evaluate(net, city, targets, inputs, norm):
    """Standardised predictions, evaluation mode: distinct tiles encoded once (chunks of 256),
    then neighbourhoods gathered (chunks of 512 targets). Each module's mode is restored
    afterwards (a frozen encoder's batch norms stay in evaluation mode)."""
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    lay = Layout(city, targets, net.block_half_size())
    xs_parts, xp_parts = [], []
    for i in range(0, len(lay.tiles), 256):
        img, poi = tile_inputs(city, lay.tiles[i:i + 256], inputs, norm)
        xs, xp = net.encode(img, poi)
        if xs is not None:
            xs_parts.append(xs)
        if xp is not None:
            xp_parts.append(xp)
    xs = torch.cat(xs_parts) if xs_parts else None
    xp = torch.cat(xp_parts) if xp_parts else None
    out = []
    for i in range(0, len(targets), 512):
        p, _, _ = net.head(xs, xp, lay.centres[i:i + 512], lay.slots[i:i + 512])
        out.append(p.double().numpy())
    for m, training in modes:
        m.train(training)
    return np.concatenate(out) if out else np.zeros(0)


def metrics(y, p):
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    ss_res = float(((y - p) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = (1.0 if ss_res == 0 else 0.0) if ss_tot == 0 else 1.0 - ss_res / ss_tot
    return {
        "n": int(len(y)),
        "r2": r2,
        "rmse": float(np.sqrt(((y - p) ** 2).mean())),
        "mae": float(np.abs(y - p).mean()),
        "mape": float((np.abs(y - p) / np.maximum(np.abs(y), np.finfo(float).eps)).mean()),
    }


def train_and_evaluate(cfg, inputs, city, rows, seed, log):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    parts = {p: [g for g, q in rows if q == p] for p in ("train", "valid", "test")}
    train, valid = list(parts["train"]), parts["valid"]
    if len(train) < 2:
        raise SystemExit("fewer than 2 training tiles")
    net = OpenCarbonNet(cfg, inputs, city.channels, city.raster)
    norm = image_norm(city, train)
    if cfg["image_weights"] and net.image is not None:
        norm = load_pretrained_image(net.image, cfg["image_weights"], cfg["image_blocks"])
        log(f"torch peer: pretrained weights {cfg['image_weights']}, {cfg['image_training']}")
    frozen = cfg["image_training"] == "frozen"
    body = encoder_body(net)
    body_params = {id(p) for m in body for p in m.parameters()}

    def train_mode():
        net.train()
        if frozen:  # batch norms keep the loaded statistics
            for m in body:
                m.eval()

    train_mode()
    params = list(net.parameters())
    n_tensors, n_values = len(params), sum(p.numel() for p in params)
    log(f"torch peer: {n_tensors} parameter tensors, {n_values} values; "
        f"{len(train)} train, {len(valid)} valid tiles")
    rest = [p for p in params if id(p) not in body_params]
    own = [p for p in params if id(p) in body_params]
    if frozen:
        for p in own:
            p.requires_grad_(False)
        groups = [{"params": rest, "scale": 1.0}]
    elif cfg["image_lr"] is not None and own:
        groups = [{"params": rest, "scale": 1.0}, {"params": own, "scale": cfg["image_lr"] / cfg["lr"]}]
    else:
        groups = [{"params": params, "scale": 1.0}]
    opt = torch.optim.Adam(groups, lr=cfg["lr"], betas=(0.9, 0.999), eps=1e-8,
                           weight_decay=cfg["weight_decay"])
    train_y = np.array([city.log_emission(g) for g in train])
    y_mean = float(train_y.mean())
    y_std = max(float(np.sqrt(((train_y - y_mean) ** 2).mean())), 1e-6)
    target_std = {g: (city.log_emission(g) - y_mean) / y_std for g in train}
    valid_y = np.array([city.log_emission(g) for g in valid])
    use_cl = cfg["contrastive"] and inputs["image"] and inputs["poi"]
    half = net.block_half_size()

    ema = None
    if cfg["ema"] > 0:
        ema = [state_copy(net), 0]

    def update_ema():
        avg, n = ema
        decay = min(cfg["ema"], (1.0 + n) / (10.0 + n))
        now = state_copy(net)
        for k in avg:
            # As ours: the average of an unchanged value (a frozen encoder) stays that value.
            blended = avg[k] * decay + now[k] * (1.0 - decay)
            avg[k] = torch.where(avg[k] == now[k], avg[k], blended)
        ema[1] = n + 1

    def evaluated(fn):
        if ema is None:
            return fn()
        live = state_copy(net)
        load_state(net, ema[0])
        try:
            return fn()
        finally:
            load_state(net, live)

    best, since_best, epochs_run = None, 0, 0
    started = time.time()
    for epoch in range(cfg["max_epochs"]):
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, epoch) * group["scale"]
        batches = make_batches(city, train, cfg["batch_size"], cfg["patch_tiles"], rng)
        loss_sum, tiles = 0.0, 0
        for batch in batches:
            if len(batch) < 2:
                continue
            lay = Layout(city, batch, half)
            transform = int(rng.integers(0, 8)) if cfg["augment"] else 0
            img, poi = tile_inputs(city, lay.tiles, inputs, norm, transform)
            xs, xp = net.encode(img, poi)
            pred, pair, _ = net.head(xs, xp, lay.centres, lay.slots, transform)
            y = torch.tensor([target_std[g] for g in batch], dtype=torch.float32)
            loss = prediction_loss(pred - y, cfg["loss"])
            if use_cl and pair is not None and epoch >= cfg["contrastive_epoch"]:
                loss = loss + cfg["alpha"] * info_nce(pair[0], pair[1], cfg["temperature"])
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()
            if ema is not None:
                update_ema()
            loss_sum += float(loss.detach())
            tiles += len(batch)
        epochs_run = epoch + 1
        last = epoch + 1 == cfg["max_epochs"]
        if (epoch + 1) % cfg["valid_every"] == 0 or last:
            if not valid:
                score = -loss_sum / max(tiles, 1)
            else:
                p = evaluated(lambda: evaluate(net, city, valid, inputs, norm)) * y_std + y_mean
                score = metrics(valid_y, p)["r2"]
            log(f"epoch {epoch + 1:>4}: train loss/tile (standardised) "
                f"{loss_sum / max(tiles, 1):.4f}, valid R² {score:.4f} "
                f"({time.time() - started:.0f} s)")
            if best is None or score > best[0]:
                best = (score, epoch + 1, evaluated(lambda: state_copy(net)))
                if cfg["patience_mode"] == "reset":
                    since_best = 0
            else:
                since_best += 1
            if epoch + 1 >= cfg["min_epochs"]:
                stop = (since_best >= cfg["patience"] if cfg["patience_mode"] == "reset"
                        else since_best > cfg["patience"])
                if stop:
                    log(f"early stop after epoch {epoch + 1}: {since_best} validations "
                        f"without a better validation R²")
                    break
    if best is None:
        raise SystemExit("no epoch was trained")
    load_state(net, best[2])
    log(f"best validation R² {best[0]:.4f} at epoch {best[1]}")
    out = {}
    for part, gs in parts.items():
        if not gs:
            out[part] = None
            continue
        p = evaluate(net, city, gs, inputs, norm) * y_std + y_mean
        out[part] = metrics([city.log_emission(g) for g in gs], p)
    return {
        "metrics": out,
        "best_epoch": best[1],
        "best_validation_score": best[0],
        "epochs_run": epochs_run,
        "train_seconds": time.time() - started,
        "parameter_tensors": n_tensors,
        "parameter_values": n_values,
        "target_norm": {"mean": y_mean, "std": y_std},
        "image_norm": {"mean": norm.mean.flatten().tolist(), "std": norm.std.flatten().tolist()},
    }


# ------------------------------------------------------------------------------------ main

def resolve_datasets(job, run_dir, args):
    """(name, directory, cache dir, fingerprint) of every dataset of the job."""
    manifest = {}
    mpath = os.path.join(run_dir, "manifest.json")
    if os.path.isfile(mpath):
        with open(mpath) as f:
            manifest = {d["name"]: d for d in json.load(f).get("datasets", [])}
    entries = job["datasets"]
    if args.dataset and len(entries) != len(args.dataset):
        raise SystemExit(f"the job has {len(entries)} datasets; give --dataset once per dataset")
    out = []
    for i, e in enumerate(entries):
        name, src = e["name"], e.get("source", e)
        stamp = manifest.get(name, {})
        fingerprint = stamp.get("fingerprint")
        if args.dataset:
            path, fingerprint = args.dataset[i], None
        elif stamp.get("path"):
            path = stamp["path"]
        elif "path" in src:
            path = src["path"]
        else:
            raise SystemExit(f"dataset `{name}`: no path in manifest.json; give --dataset")
        if not os.path.isabs(path) and not os.path.isdir(path):
            # Relative paths in our runs are relative to where `opencarbon run` ran: the repo.
            alt = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", path)
            path = alt if os.path.isdir(alt) else path
        cache = args.cache_dir
        if cache is None and "preset" in src:
            cache = os.path.dirname(os.path.dirname(os.path.abspath(path)))
        out.append((name, path, cache, fingerprint))
    return out


def our_parameter_count(run_dir):
    path = os.path.join(run_dir, "run.log")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        for line in f:
            if "opencarbon:" in line and "parameter tensors" in line:
                words = line.split("opencarbon:", 1)[1].split()
                return {"parameter_tensors": int(words[0]),
                        "parameter_values": int(words[3].rstrip(";"))}
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="run directory written by `opencarbon run`")
    ap.add_argument("--seed", type=int, default=None, help="default: the job's seed")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the result JSON here too")
    ap.add_argument("--dataset", action="append", default=None,
                    help="dataset directory (once per dataset of the job, in order)")
    ap.add_argument("--cache-dir", default=None,
                    help="our cache dir (its derived/ holds the decoded images and rasters)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr,
                                                                   flush=True))
    wall = time.time()

    if not os.path.isfile(os.path.join(args.run, "config.yaml")):
        raise SystemExit(f"{args.run}: not a run directory (no config.yaml)")
    with open(os.path.join(args.run, "config.yaml")) as f:
        resolved = yaml.safe_load(f)
    job = resolved.get("job", resolved)
    cfg, inputs = model_config(job)
    seed = job["seed"] if args.seed is None else args.seed
    image_size, raster_size = int(job["image_size"]), int(job["poi_raster_size"])

    datasets = [Dataset(name, path, image_size, raster_size, cache, fp, log)
                for name, path, cache, fp in resolve_datasets(job, args.run, args)]
    if len({tuple(d.categories) for d in datasets}) != 1:
        raise SystemExit("the job's datasets have different POI categories")
    city = City(datasets, cfg["neighborhood_k"])
    by_name = {d.name: i for i, d in enumerate(datasets)}
    rows = []
    with open(os.path.join(args.run, "split.csv"), newline="") as f:
        for r in csv.DictReader(f):
            di = by_name[r["dataset"]]
            t = datasets[di].index[(int(r["x"]), int(r["y"]))]
            rows.append((city.offset[di] + t, r["split"]))

    result = train_and_evaluate(cfg, inputs, city, rows, seed, log)
    ours = None
    mpath = os.path.join(args.run, "metrics.json")
    if os.path.isfile(mpath):
        with open(mpath) as f:
            m = json.load(f)
        ours = {p: ({k: m[p][k] for k in ("n", "r2", "rmse", "mae")} if m.get(p) else None)
                for p in ("train", "valid", "test")}
        ours["fit_seconds"] = m.get("fit_seconds")
        ours["model"] = m.get("model")
    ours_params = our_parameter_count(args.run)
    out = {
        "impl": "pytorch",
        "run": os.path.abspath(args.run),
        "run_id": resolved.get("run_id"),
        "seed": seed,
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "train": result["metrics"]["train"],
        "valid": result["metrics"]["valid"],
        "test": result["metrics"]["test"],
        "best_epoch": result["best_epoch"],
        "best_validation_score": result["best_validation_score"],
        "epochs_run": result["epochs_run"],
        "train_seconds": result["train_seconds"],
        "wall_seconds": time.time() - wall,
        "parameter_tensors": result["parameter_tensors"],
        "parameter_values": result["parameter_values"],
        "ours_parameters": ours_params,
        "parameter_count_matches": (
            None if ours_params is None else
            ours_params == {"parameter_tensors": result["parameter_tensors"],
                            "parameter_values": result["parameter_values"]}),
        "ours": ours,
        "target_norm": result["target_norm"],
        "image_norm": result["image_norm"],
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""torchvision oracle for loading pretrained ResNet weights (`image_weights`).

Run: python scripts/make_resnet_fixture.py   (needs torch, torchvision, safetensors, PyYAML:
scripts/requirements-torch.txt). Writes tests/fixtures/resnet18/fixture.json.

A torchvision ResNet-18 gets deterministic weights and batch-norm statistics from closed-form
formulas (below; the Rust test computes the same values), goes through
scripts/convert_torchvision_resnet.py's `convert`, and runs in evaluation mode on two 64 px
images of integer pixels normalised as the converted file's metadata says. The fixture holds
the converted file's tensor names, shapes and metadata (what the Rust test writes back as a
safetensors file) and the pooled features torchvision feeds its `fc` (2 x 512), computed in
float32, the precision both sides run at. Nothing is random, so the file is the same on
every run. It also checks that the PyTorch peer (scripts/train_opencarbon_torch.py) loads the
converted file into its own encoder with torchvision's features (issue 28 item 4).

Formulas, for the t-th tensor of the converted file in sorted name order and its i-th value
(row-major), computed in float64 and rounded to float32:
  conv weight (out, in, kh, kw):  sqrt(24 / (in*kh*kw)) * (((2654435761 i + 40503 t) mod 2^32) / 2^32 - 0.5)
                                  (uniform-looking, He's scale, exact in integers)
  batch norm weight:              1 + 0.2 sin(0.3 i + t)
  batch norm bias:                0.1 cos(0.5 i + t)
  batch norm running_mean:        0.1 sin(0.9 i + t)
  batch norm running_var:         1 + 0.5 sin(1.1 i + t)^2
Image b, channel c, row h, column w (64 x 64): pixel (37 (64 h + w) + 101 c + 53 b + (h w) mod 17) mod 256.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.dirname(__file__))
from convert_torchvision_resnet import convert  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "resnet18")
SIZE, BATCH = 64, 2


def value(name, shape, t):
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.float64)
    if name.endswith("running_mean"):
        v = 0.1 * np.sin(0.9 * i + t)
    elif name.endswith("running_var"):
        v = 1.0 + 0.5 * np.sin(1.1 * i + t) ** 2
    elif len(shape) == 4:
        fan_in = shape[1] * shape[2] * shape[3]
        k = np.arange(n, dtype=np.uint64)
        u = ((k * np.uint64(2654435761) + np.uint64(40503 * t)) % np.uint64(2**32)).astype(np.float64) / 2.0**32 - 0.5
        v = math.sqrt(24.0 / fan_in) * u
    elif name.endswith("weight"):
        v = 1.0 + 0.2 * np.sin(0.3 * i + t)
    elif name.endswith("bias"):
        v = 0.1 * np.cos(0.5 * i + t)
    else:
        raise SystemExit(f"no formula for {name}")
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def pixels():
    b, c, h, w = np.meshgrid(np.arange(BATCH), np.arange(3), np.arange(SIZE), np.arange(SIZE), indexing="ij")
    return (37 * (64 * h + w) + 101 * c + 53 * b + (h * w) % 17) % 256


def main():
    model = torchvision.models.resnet18(weights=None)
    state = model.state_dict()
    tensors, metadata = convert(state, source="formula (scripts/make_resnet_fixture.py)")
    names = sorted(tensors)
    for t, name in enumerate(names):
        tensors[name] = value(name, list(tensors[name].shape), t)
    # Back into the model (fc keeps its initialisation: it is replaced and never compared).
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    assert not unexpected and all(m.startswith("fc.") or m.endswith("num_batches_tracked") for m in missing), (missing, unexpected)
    model.fc = torch.nn.Identity()
    model.eval()
    mean = torch.tensor(json.loads(metadata["input_mean"]), dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(json.loads(metadata["input_std"]), dtype=torch.float32).view(1, 3, 1, 1)
    x = (torch.from_numpy(pixels().astype(np.float32)) / 255.0 - mean) / std
    with torch.no_grad():
        features = model(x)
    # The PyTorch peer (scripts/train_opencarbon_torch.py) loads the same converted file into
    # its own ResNet-shaped encoder: it must give torchvision's features too.
    import tempfile

    from safetensors.torch import save_file
    sys.argv = [sys.argv[0]]
    import train_opencarbon_torch as peer

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "w.safetensors")
        save_file(tensors, path, metadata=metadata)
        encoder = peer.ResNetEncoder([64, 128, 256, 512], 2, 8)
        norm = peer.load_pretrained_image(encoder, path, 2)
        encoder.eval()
        h = torch.nn.functional.max_pool2d(encoder.stem(x), 3, 2, 1)
        for block in encoder.blocks:
            h = block(h)
        with torch.no_grad():
            peer_features = h.mean(dim=(2, 3))
        assert torch.allclose(norm.mean, mean) and torch.allclose(norm.std, std)
        gap = (peer_features - features).abs().max().item()
        assert gap < 1e-5, f"the peer's loader gives features {gap} away from torchvision's"
        print(f"peer's loader: max |peer - torchvision| = {gap:.2e}")
    os.makedirs(OUT, exist_ok=True)
    fixture = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "image_size": SIZE,
        "batch": BATCH,
        "metadata": metadata,
        "tensors": [[name, list(tensors[name].shape)] for name in names],
        "features": {"shape": list(features.shape), "data": [float(v) for v in features.flatten()]},
    }
    with open(os.path.join(OUT, "fixture.json"), "w") as f:
        json.dump(fixture, f, indent=0)
    print(f"{len(names)} tensors, features {list(features.shape)}, |max| {features.abs().max():.4f}")


if __name__ == "__main__":
    main()

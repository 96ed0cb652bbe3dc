#!/usr/bin/env python3
"""Convert a torchvision ResNet state dict (.pth) into the safetensors file OpenCarbon's
`image_weights` reads.

    python scripts/convert_torchvision_resnet.py resnet18-5c106cde.pth resnet18.safetensors

Keeps torchvision's tensor names and layouts (conv weights (out, in, kh, kw); batch norms'
weight, bias, running_mean, running_var), drops the classifier (`fc.*`, replaced by
OpenCarbon's projection) and `num_batches_tracked`, stores every tensor as float32, and writes
the input normalisation the weights expect into the file's metadata (`input_mean`,
`input_std`, per channel, of pixels scaled to [0, 1]; ImageNet's by default, as torchvision's
weights were trained with). Needs torch and safetensors (scripts/requirements-torch.txt).
"""
import argparse
import json

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def convert(state_dict, mean=IMAGENET_MEAN, std=IMAGENET_STD, source=""):
    """(tensors, metadata) of the safetensors file for a torchvision ResNet state dict."""
    import torch

    tensors = {}
    for name, value in state_dict.items():
        if name.startswith("fc.") or name.endswith("num_batches_tracked"):
            continue
        tensors[name] = value.detach().to(torch.float32).contiguous()
    if "conv1.weight" not in tensors or not any(k.startswith("layer1.") for k in tensors):
        raise SystemExit("not a torchvision ResNet state dict: no conv1.weight / layer1.*")
    metadata = {
        "format": "torchvision-resnet",
        "input_mean": json.dumps([float(v) for v in mean]),
        "input_std": json.dumps([float(v) for v in std]),
        "source": source,
    }
    return tensors, metadata


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pth")
    ap.add_argument("out")
    ap.add_argument("--mean", type=float, nargs=3, default=IMAGENET_MEAN)
    ap.add_argument("--std", type=float, nargs=3, default=IMAGENET_STD)
    args = ap.parse_args()
    import os

    import torch
    from safetensors.torch import save_file

    state = torch.load(args.pth, map_location="cpu", weights_only=True)
    if "state_dict" in state:  # a training checkpoint around the weights
        state = state["state_dict"]
    tensors, metadata = convert(state, args.mean, args.std, os.path.basename(args.pth))
    save_file(tensors, args.out, metadata=metadata)
    print(f"{args.out}: {len(tensors)} tensors, input mean {args.mean}, std {args.std}")


if __name__ == "__main__":
    main()

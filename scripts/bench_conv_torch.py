#!/usr/bin/env python3
"""PyTorch CPU time of the convolution benchmarked by `cargo bench --bench conv`: 3x3 conv
32->32, batch 288, 16x16, stride 1, padding 1, forward + backward of sum(y), float32.

Run: python scripts/bench_conv_torch.py [--threads 2] [--ours-ms 131.3]
With --ours-ms (the number `cargo bench --bench conv` prints) it also prints the ratio.
"""
import argparse
import time

import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ours-ms", type=float)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(288, 32, 16, 16, requires_grad=True)
    w = torch.randn(32, 32, 3, 3, requires_grad=True)
    b = torch.randn(32, requires_grad=True)

    def step():
        y = F.conv2d(x, w, b, stride=1, padding=1)
        y.sum().backward()
        x.grad = w.grad = b.grad = None

    step()
    reps = 10
    t = time.perf_counter()
    for _ in range(reps):
        step()
    ms = (time.perf_counter() - t) * 1000 / reps
    print(f"pytorch {torch.__version__}, {args.threads} threads: {ms:.1f} ms per step")
    if args.ours_ms:
        print(f"opencarbon / pytorch = {args.ours_ms / ms:.2f}")


if __name__ == "__main__":
    main()

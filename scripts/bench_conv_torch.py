#!/usr/bin/env python3
"""PyTorch CPU time of the convolution benchmarked by `cargo bench --bench conv`: 3x3 conv
32->32, batch 288, 16x16, stride 1, padding 1, forward + backward of sum(y), float32.

Run: python scripts/bench_conv_torch.py [--threads 2] [--ours-ms 32.5]
Prints the median and minimum of 20 steps; with --ours-ms (the median `cargo bench --bench
conv` prints) it also prints the ratio of the medians.
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
    times = []
    for _ in range(20):
        t = time.perf_counter()
        step()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    med = times[len(times) // 2]
    print(f"pytorch {torch.__version__}, {args.threads} threads: median {med:.1f} ms, min {times[0]:.1f} ms per step")
    if args.ours_ms:
        print(f"opencarbon / pytorch (medians) = {args.ours_ms / med:.2f}")


if __name__ == "__main__":
    main()

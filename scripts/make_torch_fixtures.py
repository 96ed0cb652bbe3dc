#!/usr/bin/env python3
"""PyTorch oracle fixtures for the layers in src/nn (forward outputs and gradients).

Run: python scripts/make_torch_fixtures.py   (needs torch and numpy; see requirements-torch.txt)
Writes tests/fixtures/torch/*.json. Conventions (the Rust tests rely on them):
- a tensor is {"shape": [...], "data": [row-major floats]}; images NCHW; conv weights
  [out, in, kh, kw]; linear weights [out, in];
- each file has "inputs", "params", "output", "upstream" (R, same shape as the output) and
  "grads" (d/d input or param of loss = sum(output * R); dict outputs sum over their keys).
Computed in float64, deterministic.
"""
import json
import os

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "torch")


def t(x):
    x = x.detach()
    # 9 significant digits: more than the float32 the Rust side computes in, and small files.
    return {"shape": list(x.shape), "data": [float(f"{v:.9g}") for v in x.reshape(-1).tolist()]}


def run(name, inputs, params, fn, extra=None, grad_keys=None):
    """fn(inputs, params) -> tensor or dict of tensors (dict entries in grad_keys get upstream)."""
    for v in list(inputs.values()) + list(params.values()):
        v.requires_grad_(True)
    out = fn(inputs, params)
    if isinstance(out, dict):
        keys = grad_keys or list(out.keys())
        ups = {k: torch.randn_like(out[k]) for k in keys}
        loss = sum((out[k] * ups[k]).sum() for k in keys)
        upstream = {k: t(v) for k, v in ups.items()}
        output = {k: t(v) for k, v in out.items()}
    else:
        up = torch.ones_like(out) if out.dim() == 0 else torch.randn_like(out)
        loss = (out * up).sum()
        upstream, output = t(up), t(out)
    loss.backward()
    grads = {k: t(v.grad) for k, v in list(inputs.items()) + list(params.items()) if v.grad is not None}
    doc = {
        "torch_version": torch.__version__,
        "inputs": {k: t(v) for k, v in inputs.items()},
        "params": {k: t(v) for k, v in params.items()},
        "output": output,
        "upstream": upstream,
        "grads": grads,
    }
    doc.update(extra or {})
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(doc, f)


def n(*shape, scale=1.0):
    return torch.randn(*shape) * scale


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    for name, xs, ws, bias, stride, pad in [
        ("conv2d_k3s2p1.json", (2, 3, 7, 7), (4, 3, 3, 3), True, 2, 1),
        ("conv2d_k7s3p3.json", (1, 2, 11, 11), (3, 2, 7, 7), True, 3, 3),
        ("conv2d_k3s1p1.json", (2, 4, 6, 6), (3, 4, 3, 3), True, 1, 1),
        ("conv2d_k3s3p1_nobias.json", (1, 2, 11, 11), (2, 2, 3, 3), False, 3, 1),
    ]:
        params = {"weight": n(*ws, scale=0.5)}
        if bias:
            params["bias"] = n(ws[0], scale=0.5)
        run(name, {"x": n(*xs)}, params,
            lambda i, p, s=stride, q=pad: F.conv2d(i["x"], p["weight"], p.get("bias"), stride=s, padding=q),
            {"stride": stride, "padding": pad})

    # Batch norm 2d, training mode: normalise with the biased variance, update running
    # statistics with the unbiased one.
    def bn_train(i, p):
        rm, rv = torch.zeros(4), torch.ones(4)
        y = F.batch_norm(i["x"], rm, rv, p["gamma"], p["beta"], training=True, momentum=0.1, eps=1e-5)
        return {"y": y, "running_mean": rm, "running_var": rv}
    run("batchnorm2d_train.json", {"x": n(3, 4, 4, 4)}, {"gamma": 1 + n(4, scale=0.3), "beta": n(4, scale=0.3)},
        bn_train, {"eps": 1e-5, "momentum": 0.1}, grad_keys=["y"])

    rm, rv = n(6, scale=0.5), torch.rand(6) + 0.5
    run("batchnorm1d_eval.json", {"x": n(5, 6)},
        {"gamma": 1 + n(6, scale=0.3), "beta": n(6, scale=0.3), "running_mean": rm, "running_var": rv},
        lambda i, p: F.batch_norm(i["x"], p["running_mean"].detach(), p["running_var"].detach(), p["gamma"], p["beta"],
                                  training=False, eps=1e-5),
        {"eps": 1e-5})

    def se(i, p):
        s = i["x"].mean(dim=(2, 3))
        z = F.relu(s @ p["w1"].T + p["b1"])
        g = torch.sigmoid(z @ p["w2"].T + p["b2"])
        return i["x"] * g[:, :, None, None]
    run("se_block.json", {"x": n(1, 32, 2, 2)},
        {"w1": n(8, 32, scale=0.3), "b1": n(8, scale=0.3), "w2": n(32, 8, scale=0.3), "b2": n(32, scale=0.3)}, se)

    def agg(i, p):
        x = i["x"]  # (N, K, d)
        score = torch.tanh(x @ p["W"].T + p["b"]) @ p["v"]  # (N, K)
        beta = torch.softmax(score, dim=1)
        return {"out": (beta[:, :, None] * x).sum(dim=1), "beta": beta}
    run("aggregate_attention.json", {"x": n(3, 2, 12)},
        {"W": n(12, 12, scale=0.3), "b": n(12, scale=0.2), "v": n(12, scale=0.3)}, agg)

    def mha(i, p):
        q_in, kv_in = i["q_in"], i["kv_in"]  # (N, d)
        heads = []
        for h in range(2):
            q = p["wq"][h] * q_in + p["bq"][h]
            k = p["wk"][h] * kv_in + p["bk"][h]
            v = p["wv"][h] * kv_in + p["bv"][h]
            a = torch.softmax(q[:, :, None] * k[:, None, :], dim=2)  # (N, d, d), scale 1/sqrt(1)
            heads.append((a * v[:, None, :]).sum(dim=2))
        o = torch.stack(heads, dim=2)  # (N, d, 2)
        return (o @ p["wo"].T).squeeze(2) + p["bo"][0]
    run("token_mha.json", {"q_in": n(3, 8), "kv_in": n(3, 8)},
        {k: n(2, scale=0.7) for k in ["wq", "bq", "wk", "bk", "wv", "bv"]} | {"wo": n(1, 2, scale=0.7), "bo": n(1, scale=0.5)},
        mha)

    def infonce(i, p):
        logits = i["xs"] @ i["xp"].T / 0.07
        return F.cross_entropy(logits, torch.arange(logits.shape[0]))
    run("infonce.json", {"xs": n(6, 16, scale=0.4), "xp": n(6, 16, scale=0.4)}, {}, infonce, {"temperature": 0.07})

    run("linear.json", {"x": n(4, 7)}, {"weight": n(3, 7, scale=0.5), "bias": n(3, scale=0.5)},
        lambda i, p: i["x"] @ p["weight"].T + p["bias"])
    run("global_avg_pool.json", {"x": n(2, 3, 5, 4)}, {}, lambda i, p: i["x"].mean(dim=(2, 3)))

    # Appended last so that the fixtures above keep their random streams.
    run("max_pool2d_k3s2p1.json", {"x": n(2, 3, 7, 6)}, {},
        lambda i, p: F.max_pool2d(i["x"], 3, stride=2, padding=1), {"kernel": 3, "stride": 2, "padding": 1})

    for f in sorted(os.listdir(OUT)):
        print(f, os.path.getsize(os.path.join(OUT, f)))


if __name__ == "__main__":
    main()

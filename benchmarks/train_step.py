"""Milliseconds per training step: flopgrad vs PyTorch eager vs hand-written NumPy.

A step is forward, cross-entropy loss, backward and a plain SGD update, in float32 on
random data, with the same initial weights in all three implementations:

- MLP 784-128-64-10 (ReLU) at batch 64 and 512, MLP 784-1024-1024-10 at batch 256;
- GPT: fg.models.GPT(n_layer=4, n_head=4, d_model=256, ctx=128, vocab=256) at batch 8
  against an equivalent PyTorch model written here (pre-LayerNorm blocks, causal
  self-attention through F.scaled_dot_product_attention, 4x GELU(tanh) MLP, tied
  embeddings) and a hand-written NumPy forward + backward of the same math.

All numbers come from one run: after warm-up, the implementations alternate round by
round (drift hits them alike) and the median of the rounds is reported, with the minimum.
PyTorch runs with torch.set_num_threads(<threads of NumPy's BLAS>). Each sample starts
after --settle seconds idle plus one untimed step, because an idle OpenBLAS worker spins
for a while and, on a small machine, would halve PyTorch's speed right after NumPy ran.
Before timing, a check confirms that the three compute the same loss and the same
updated weights.
Targets (issue): flopgrad <= 1.0x PyTorch eager on every MLP shape, <= 1.5x on the GPT.

    python benchmarks/train_step.py [--repeat 15] [--seconds 0.2] [--settle 0.15] [--only gpt ...]
    python benchmarks/train_step.py --cprofile mlp-64 gpt   # where flopgrad's time goes

The BLAS kernel matters (OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, if the machine sets them,
are left as they are and printed); to let OpenBLAS pick its own kernel:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/train_step.py
"""

from __future__ import annotations

import argparse
import math
import statistics

import numpy as np
from _common import calibrate, cprofile_stats, interleaved, numpy_blas_threads, print_setup

import flopgrad as fg
from flopgrad.nn import functional as F

LR = 0.01
MLP_TARGET, GPT_TARGET = 1.0, 1.5

# name -> (kind, config, batch)
CONFIGS = {
    "mlp-64": ("mlp", (784, 128, 64, 10), 64),
    "mlp-512": ("mlp", (784, 128, 64, 10), 512),
    "mlp-large": ("mlp", (784, 1024, 1024, 10), 256),
    "gpt": ("gpt", dict(n_layer=4, n_head=4, d_model=256, ctx=128, vocab=256, dropout=0.0), 8),
}


def label(name: str) -> str:
    kind, cfg, batch = CONFIGS[name]
    if kind == "mlp":
        return f"MLP {'-'.join(map(str, cfg))} b{batch}"
    return f"GPT L{cfg['n_layer']} d{cfg['d_model']} h{cfg['n_head']} T{cfg['ctx']} b{batch}"


def make_data(name: str, seed: int = 0):
    kind, cfg, batch = CONFIGS[name]
    rng = np.random.default_rng(seed)
    if kind == "mlp":
        x = rng.standard_normal((batch, cfg[0]), dtype=np.float32)
        return x, rng.integers(0, cfg[-1], batch)
    shape = (batch, cfg["ctx"])
    return rng.integers(0, cfg["vocab"], shape), rng.integers(0, cfg["vocab"], shape)


def _sgd_step(opt, loss_fn):
    """One training step (flopgrad and PyTorch share the optimizer API); returns the loss."""
    def step():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        return loss.item()
    return step


# ---------------------------------------------------------------- flopgrad

def flopgrad_step(name: str, seed: int = 0):
    """(step closure returning the loss as a float, function giving {name: ndarray})."""
    kind, cfg, _ = CONFIGS[name]
    fg.manual_seed(seed)
    a, b = make_data(name, seed)
    if kind == "mlp":
        model = fg.models.MLP(cfg)
        x, y = fg.tensor(a), b

        def loss_fn():
            return F.cross_entropy(model(x), y)
    else:
        model = fg.models.GPT(fg.models.GPTConfig(**cfg))
        idx, tgt = fg.tensor(a), fg.tensor(b)

        def loss_fn():
            return model(idx, tgt)[1]
    opt = fg.optim.SGD(model.parameters(), lr=LR)
    return _sgd_step(opt, loss_fn), lambda: {k: p._data for k, p in model.named_parameters()}


# ---------------------------------------------------------------- PyTorch eager

def torch_models():
    """(TorchMLP, TorchGPT): flopgrad.torch.twins' MLP and GPT, the GPT built from
    GPTConfig's fields and returning the cross-entropy."""
    from flopgrad.torch import twins

    class TorchGPT(twins.GPT):
        def __init__(self, **cfg):
            super().__init__(fg.models.GPTConfig(**cfg))

        def forward(self, idx, targets):
            return super().forward(idx, targets)[1]

    return twins.MLP, TorchGPT


def torch_step(name: str, init: dict, seed: int = 0):
    import torch

    kind, cfg, _ = CONFIGS[name]
    TorchMLP, TorchGPT = torch_models()
    model = TorchMLP(cfg) if kind == "mlp" else TorchGPT(**cfg)
    params = dict(model.named_parameters())
    if set(params) != set(init):
        raise RuntimeError(f"torch model's parameters {sorted(params)} differ from "
                           f"flopgrad's {sorted(init)}")
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(torch.from_numpy(init[k]))
    a, b = make_data(name, seed)
    a, b = torch.from_numpy(a), torch.from_numpy(b)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    if kind == "mlp":
        def loss_fn():
            return torch.nn.functional.cross_entropy(model(a), b)
    else:
        def loss_fn():
            return model(a, b)

    return _sgd_step(opt, loss_fn), lambda: {k: p.detach().numpy() for k, p in params.items()}


# ---------------------------------------------------------------- hand-written NumPy

def _ce_grad(logits, y):
    """Mean cross-entropy and its gradient for (N, C) logits and integer targets."""
    n = logits.shape[0]
    m = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - m)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = float(np.mean(np.log(s[:, 0]) + m[:, 0] - logits[rows, y]))
    g = e / s
    g[rows, y] -= 1
    g *= np.float32(1 / n)
    return loss, g


def numpy_mlp_step(name: str, init: dict, seed: int = 0):
    _, cfg, _ = CONFIGS[name]
    n = len(cfg) - 1
    W = [init[f"fc{k + 1}.weight"].copy() for k in range(n)]
    b = [init[f"fc{k + 1}.bias"].copy() for k in range(n)]
    x, y = make_data(name, seed)
    lr = np.float32(LR)

    def step():
        hs = [x]  # the input of every layer
        for k in range(n):
            z = hs[-1] @ W[k].T
            z += b[k]
            if k < n - 1:
                np.maximum(z, 0, out=z)
            hs.append(z)
        loss, g = _ce_grad(hs[-1], y)
        for k in reversed(range(n)):
            dW, db = g.T @ hs[k], g.sum(axis=0)
            if k:
                g = g @ W[k]
                g *= hs[k] > 0  # ReLU: hs[k] = relu(z)
            W[k] -= lr * dW
            b[k] -= lr * db
        return loss

    def params():
        return {**{f"fc{k + 1}.weight": W[k] for k in range(n)},
                **{f"fc{k + 1}.bias": b[k] for k in range(n)}}

    return step, params


def _ln_fwd(x, w, b, eps=1e-5):
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    rstd = 1 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)
    xhat = xc * rstd
    return xhat * w + b, (xhat, rstd, w)


def _ln_bwd(dout, cache):
    xhat, rstd, w = cache
    dw = (dout * xhat).sum(axis=(0, 1))
    db = dout.sum(axis=(0, 1))
    dxhat = dout * w
    dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                 - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    return dx, dw, db


def _lin(x, w, b):
    return x @ w.T + b


def _lin_bwd(dout, x, w, grads, prefix):
    """Gradients of y = x @ w.T + b: stores dW, db and returns dx."""
    d = x.shape[-1]
    grads[prefix + ".weight"] = dout.reshape(-1, dout.shape[-1]).T @ x.reshape(-1, d)
    grads[prefix + ".bias"] = dout.sum(axis=(0, 1))
    return dout @ w


def numpy_gpt_step(name: str, init: dict, seed: int = 0):
    _, cfg, _ = CONFIGS[name]
    P = {k: v.copy() for k, v in init.items()}
    idx, tgt = make_data(name, seed)
    B, T = idx.shape
    L, H, D = cfg["n_layer"], cfg["n_head"], cfg["d_model"]
    hd = D // H
    scale = np.float32(1 / math.sqrt(hd))
    causal = np.triu(np.ones((T, T), dtype=bool), 1)  # True above the diagonal: masked
    c, a3 = np.float32(math.sqrt(2 / math.pi)), np.float32(0.044715)
    lr = np.float32(LR)

    def heads(z):  # (B, T, D) -> (B, H, T, hd)
        return z.reshape(B, T, H, hd).transpose(0, 2, 1, 3)

    def step():
        x = P["wte.weight"][idx] + P["wpe.weight"][:T]
        caches = []
        for i in range(L):
            p = f"blocks.{i}."
            a_in, ln1 = _ln_fwd(x, P[p + "ln_1.weight"], P[p + "ln_1.bias"])
            qkv = _lin(a_in, P[p + "attn.c_attn.weight"], P[p + "attn.c_attn.bias"])
            q, k, v = (heads(z) for z in np.split(qkv, 3, axis=2))
            s = (q @ k.transpose(0, 1, 3, 2)) * scale
            s[..., causal] = -np.inf
            s -= s.max(axis=-1, keepdims=True)
            att = np.exp(s)
            att /= att.sum(axis=-1, keepdims=True)
            y = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, D)
            x = x + _lin(y, P[p + "attn.c_proj.weight"], P[p + "attn.c_proj.bias"])
            m_in, ln2 = _ln_fwd(x, P[p + "ln_2.weight"], P[p + "ln_2.bias"])
            h = _lin(m_in, P[p + "mlp.c_fc.weight"], P[p + "mlp.c_fc.bias"])
            t = np.tanh(c * (h + a3 * h * h * h))
            gl = 0.5 * h * (1 + t)
            x = x + _lin(gl, P[p + "mlp.c_proj.weight"], P[p + "mlp.c_proj.bias"])
            caches.append((a_in, ln1, q, k, v, att, y, m_in, ln2, h, t, gl))
        xf, lnf = _ln_fwd(x, P["ln_f.weight"], P["ln_f.bias"])
        wte = P["wte.weight"]
        loss, dlogits = _ce_grad((xf @ wte.T).reshape(B * T, -1), tgt.reshape(-1))
        grads = {"wte.weight": dlogits.T @ xf.reshape(B * T, D)}
        dx, grads["ln_f.weight"], grads["ln_f.bias"] = _ln_bwd(
            (dlogits @ wte).reshape(B, T, D), lnf)
        for i in reversed(range(L)):
            p = f"blocks.{i}."
            a_in, ln1, q, k, v, att, y, m_in, ln2, h, t, gl = caches[i]
            dg = _lin_bwd(dx, gl, P[p + "mlp.c_proj.weight"], grads, p + "mlp.c_proj")
            dh = dg * (0.5 * (1 + t) + 0.5 * h * (1 - t * t) * c * (1 + 3 * a3 * h * h))
            dm = _lin_bwd(dh, m_in, P[p + "mlp.c_fc.weight"], grads, p + "mlp.c_fc")
            dm, grads[p + "ln_2.weight"], grads[p + "ln_2.bias"] = _ln_bwd(dm, ln2)
            dx = dx + dm
            dy = _lin_bwd(dx, y, P[p + "attn.c_proj.weight"], grads, p + "attn.c_proj")
            dy = heads(dy)
            datt = dy @ v.transpose(0, 1, 3, 2)
            dv = att.transpose(0, 1, 3, 2) @ dy
            ds = att * (datt - (datt * att).sum(axis=-1, keepdims=True))
            ds *= scale
            dq, dk = ds @ k, ds.transpose(0, 1, 3, 2) @ q
            dqkv = np.concatenate([z.transpose(0, 2, 1, 3).reshape(B, T, D)
                                   for z in (dq, dk, dv)], axis=2)
            da = _lin_bwd(dqkv, a_in, P[p + "attn.c_attn.weight"], grads, p + "attn.c_attn")
            da, grads[p + "ln_1.weight"], grads[p + "ln_1.bias"] = _ln_bwd(da, ln1)
            dx = dx + da
        grads["wpe.weight"] = np.zeros_like(P["wpe.weight"])
        grads["wpe.weight"][:T] = dx.sum(axis=0)
        np.add.at(grads["wte.weight"], idx.reshape(-1), dx.reshape(B * T, D))
        for key, g in grads.items():
            P[key] -= lr * g
        return loss

    return step, lambda: P


# ---------------------------------------------------------------- running

def build(name: str) -> dict:
    """{implementation: (step, live parameters)} with the same initial weights."""
    kind = CONFIGS[name][0]
    fg_step, fg_params = flopgrad_step(name)
    init = {k: v.copy() for k, v in fg_params().items()}
    impls = {"flopgrad": (fg_step, fg_params)}
    try:
        impls["pytorch"] = torch_step(name, init)
    except ImportError:
        pass
    impls["numpy"] = (numpy_mlp_step if kind == "mlp" else numpy_gpt_step)(name, init)
    return impls


def check(name: str, impls: dict) -> str:
    """One step of each from the same weights: the losses and updated weights must agree."""
    losses = {k: step() for k, (step, _) in impls.items()}
    ref = impls["flopgrad"][1]()
    worst_loss = max(abs(v - losses["flopgrad"]) for v in losses.values())
    worst_w = 0.0
    for _, get_params in impls.values():
        params = get_params()
        for key, arr in ref.items():
            scale = float(np.abs(arr).max()) or 1.0
            worst_w = max(worst_w, float(np.abs(params[key] - arr).max()) / scale)
    if worst_loss > 1e-3 * max(1.0, abs(losses["flopgrad"])) or worst_w > 1e-3:
        raise RuntimeError(f"{label(name)}: implementations disagree after one step: losses "
                           f"{losses}, max relative weight difference {worst_w:.2e}")
    return f"loss {losses['flopgrad']:.4f} (max diff {worst_loss:.1e}), weights after one " \
           f"step agree to {worst_w:.1e} (relative)"


def cprofile(names, top: int = 25, seconds: float = 2.0) -> None:
    """cProfile about `seconds` of flopgrad steps per shape; top lines by own time."""
    for name in names:
        step, _ = flopgrad_step(name)
        n = calibrate(step, seconds)
        stats = cprofile_stats(step, n)
        print(f"\n=== cProfile: flopgrad {label(name)}, {n} steps, "
              f"{stats.total_tt / n * 1e3:.3f} ms per step under the profiler, "
              f"{stats.total_calls / n:.0f} calls per step; top {top} by tottime ===")
        stats.strip_dirs().sort_stats("tottime").print_stats(top)


def ratios(a: list, b: list) -> tuple:
    """flopgrad/other: ratio of medians, median of per-round ratios, ratio of minima."""
    return (statistics.median(a) / statistics.median(b),
            statistics.median(x / y for x, y in zip(a, b, strict=True)), min(a) / min(b))


def _ratio_cells(r: tuple | None, width: int) -> str:
    if r is None:
        return f"{'-':>{width + 15}}"
    return f"{r[0]:>{width}.2f}x{r[1]:>7.2f}x{r[2]:>6.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15,
                        help="rounds (samples per implementation)")
    parser.add_argument("--seconds", type=float, default=0.2,
                        help="approximate length of one sample")
    parser.add_argument("--settle", type=float, default=0.15,
                        help="idle seconds before each sample, so the previous library's "
                             "spinning BLAS/OpenMP threads park (see _common.interleaved)")
    parser.add_argument("--only", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--cprofile", nargs="+", choices=list(CONFIGS),
                        help="instead of timing, cProfile flopgrad's step on these shapes")
    args = parser.parse_args()
    threads = numpy_blas_threads()
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        print("torch not installed: PyTorch column skipped")
    print_setup()
    if args.cprofile:
        cprofile(args.cprofile)
        return
    print(f"{args.repeat} samples per implementation of about {args.seconds}s each, "
          "interleaved; ms per step: median (min)")
    rows = []
    for name in args.only:
        impls = build(name)
        print(f"{label(name)}: check: {check(name, impls)}")
        steps = {k: step for k, (step, _) in impls.items()}
        number = calibrate(steps["flopgrad"], args.seconds)
        for fn in steps.values():  # warm-up: caches, allocator, thread pools
            for _ in range(3):
                fn()
        samples = interleaved(steps, args.repeat, number, settle=args.settle)
        rows.append((name, number, samples))
    impl_names = ["flopgrad", "pytorch", "numpy"]
    head = f"\n{'ms per step: median (min)':<30}" + "".join(f"{n:>19}" for n in impl_names)
    print(head)
    print("-" * (len(head) - 1))
    for name, number, t in rows:
        print(f"{label(name):<30}" + "".join(
            f"{statistics.median(t[n]) * 1e3:>9.3f} ({min(t[n]) * 1e3:>7.3f})" if n in t
            else f"{'-':>19}" for n in impl_names) + f"   {number} steps/sample")
    head = (f"\n{'ratios':<30}{'fg/pytorch: median':>19}{'paired':>8}{'min':>7}{'target':>8}"
            f"{'fg/numpy: median':>18}{'paired':>8}{'min':>7}")
    print(head)
    print("-" * (len(head) - 1))
    verdicts = []
    for name, _, t in rows:
        target = MLP_TARGET if CONFIGS[name][0] == "mlp" else GPT_TARGET
        r = {other: ratios(t["flopgrad"], t[other]) for other in ("pytorch", "numpy")
             if other in t}
        cells = (_ratio_cells(r.get("pytorch"), 18) + f"{target:>7.1f}x"
                 + _ratio_cells(r.get("numpy"), 17))
        if "pytorch" in r:
            paired = r["pytorch"][1]
            verdicts.append(f"{label(name)}: flopgrad/pytorch {paired:.2f}x (paired median; "
                            f"median/median {r['pytorch'][0]:.2f}x, min/min "
                            f"{r['pytorch'][2]:.2f}x) " + ("meets" if paired <= target
                                                           else "MISSES")
                            + f" the target <= {target}x")
        print(f"{label(name):<30}{cells}")
    print("paired = median over rounds of the ratio within a round (the two ran seconds "
          "apart, so a slow spell of the machine cancels)")
    for v in verdicts:
        print(v)


if __name__ == "__main__":
    main()

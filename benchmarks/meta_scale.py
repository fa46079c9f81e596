"""Billing a model of any size: flopgrad's meta bill vs PyTorch's meta device.

For each configuration, one training step (forward, cross-entropy, backward, AdamW) of a
GPT on one full-context sequence is billed in a fresh process, including the import:
flopgrad with `fg.meta()` and `fg.profile()`, PyTorch with `torch.device("meta")` and
`FlopCounterMode`. Wall time of the whole process and its peak resident memory are
measured, and the matmul FLOPs of both are printed (they must agree). Target (issue 5):
gpt3-175b in at most half PyTorch's time and no more memory (under 2 s and 0.3 GiB).

    python benchmarks/meta_scale.py [--repeat 3] [--models gpt2 gpt2-xl gpt3-175b]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

CONFIGS = {
    "gpt2": (12, 12, 768, 1024, 50257),
    "gpt2-xl": (48, 25, 1600, 1024, 50257),
    "gpt3-175b": (96, 96, 12288, 2048, 50257),
}

FLOPGRAD = """
import resource, sys
import numpy as np
import flopgrad as fg
from flopgrad.models import GPT, GPTConfig
cfg = GPTConfig(*{cfg})
with fg.meta():
    model = GPT(cfg)
opt = fg.optim.AdamW(model.parameters(), lr=1e-4)
idx = fg.tensor(np.zeros((1, cfg.ctx), dtype=np.int64))
with fg.profile() as bill:
    _, loss = model(idx, idx)
    loss.backward()
    opt.step()
flops = bill.flops("forward", kind="tensor") + bill.flops("backward", kind="tensor")
print(flops, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""

TORCH = """
import resource
import torch, torch.nn as nn, torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
n_layer, n_head, d, ctx, vocab = {cfg}

class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.c_attn, self.attn_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.c_fc, self.mlp_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, n_head, d // n_head).transpose(1, 2) for z in (q, k, v))
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block() for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for blk in self.blocks:
            x = blk(x)
        logits = self.ln_f(x) @ self.wte.weight.T
        return F.cross_entropy(logits.view(-1, vocab), targets.view(-1))

with torch.device("meta"):
    model = GPT()
    idx = torch.zeros((1, ctx), dtype=torch.long)
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=False)
with FlopCounterMode(display=False) as counter:
    loss = model(idx, idx)
    loss.backward()
    opt.step()
print(counter.get_total_flops(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def run(code: str) -> tuple[float, int, int]:
    """(wall seconds of the whole process, matmul FLOPs it printed, its peak RSS bytes)."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    flops, rss = out.stdout.split()[-2:]
    return wall, int(flops), int(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
        print("torch is not installed: the PyTorch columns are skipped")
    results = {}
    print(f"{'model':<11}{'flopgrad s':>11}{'GiB':>7}{'torch s':>10}{'GiB':>7}"
          f"{'time ratio':>12}{'mem ratio':>11}  matmul FLOPs (equal?)")
    for name in args.models:
        cfg = CONFIGS[name]
        fg_runs = [run(FLOPGRAD.format(cfg=cfg)) for _ in range(args.repeat)]
        fg_wall = statistics.median(r[0] for r in fg_runs)
        fg_rss = max(r[2] for r in fg_runs)
        line = f"{name:<11}{fg_wall:>11.2f}{fg_rss / 2**30:>7.3f}"
        row = {"flopgrad_s": fg_wall, "flopgrad_rss": fg_rss, "flops": fg_runs[0][1]}
        if have_torch:
            t_runs = [run(TORCH.format(cfg=cfg)) for _ in range(args.repeat)]
            t_wall = statistics.median(r[0] for r in t_runs)
            t_rss = max(r[2] for r in t_runs)
            same = "yes" if t_runs[0][1] == fg_runs[0][1] else f"NO: torch {t_runs[0][1]:,}"
            line += (f"{t_wall:>10.2f}{t_rss / 2**30:>7.3f}{fg_wall / t_wall:>11.2f}x"
                     f"{fg_rss / t_rss:>10.2f}x  {fg_runs[0][1]:,} ({same})")
            row.update(torch_s=t_wall, torch_rss=t_rss, torch_flops=t_runs[0][1])
        print(line)
        results[name] = row
    print(json.dumps(results))


if __name__ == "__main__":
    main()

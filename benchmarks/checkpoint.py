"""Activation checkpointing: what it costs in time and saves in memory, and the planner's speed.

1. fg.plan_checkpoints on a GPT-3 175B step (96 blocks, meta tensors) as a whole process
   (python -c ...: import, three meta steps, the dynamic program). Target: under 2 s.
2. A real training step of a GPT (n_layer 8, d_model 256, ctx 256, batch 8) without and
   with every block checkpointed: wall time and peak live bytes, flopgrad beside PyTorch
   (torch.utils.checkpoint, use_reentrant=False) on the same model, measured in this run.
   PyTorch has no CPU memory counter: its live bytes are tracked here by a dispatch mode
   that follows every tensor an op makes until it is freed (views are not copies), the
   convention of flopgrad's own ledger.

    python benchmarks/checkpoint.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import weakref

import numpy as np
from _common import interleaved, numpy_blas_threads, print_setup  # benchmarks/_common.py

import flopgrad as fg
from flopgrad.models import GPT, GPTConfig
from flopgrad.nn.utils import checkpoint_modules

CFG = dict(n_layer=8, n_head=4, d_model=256, ctx=256, vocab=512)
BATCH = 8
PLANNER = """
import flopgrad as fg
from flopgrad.models import GPT, GPTConfig
cfg = GPTConfig(96, 96, 12288, 2048, 50257)
with fg.meta():
    model = GPT(cfg)
idx = fg.randint(0, cfg.vocab, (8, cfg.ctx), device="meta")
def step(m):
    m(idx, targets=idx)[1].backward()
plan = fg.plan_checkpoints(model, step, "1.6TB")
print(len(plan.modules), plan.peak_bytes, plan.baseline_peak_bytes, plan.recompute_flops)
"""


def planner_seconds(repeat: int) -> tuple[float, str]:
    times, out = [], ""
    for _ in range(repeat):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", PLANNER], check=True, capture_output=True,
                             text=True).stdout
        times.append(time.perf_counter() - start)
    return min(times), out.strip()


def flopgrad_setup(init: dict, idx: np.ndarray):
    fg.manual_seed(0)
    model = GPT(GPTConfig(**CFG))
    for k, p in model.named_parameters():
        p._data[...] = init[k]
    x = fg.tensor(idx)

    def step():
        for p in model.parameters():
            p.grad = None
        model(x, targets=x)[1].backward()

    return model, step


def torch_setup(init: dict, idx: np.ndarray):
    import torch
    from torch.utils.checkpoint import checkpoint
    from train_step import torch_models  # benchmarks/train_step.py

    _, TorchGPT = torch_models()
    model = TorchGPT(**CFG)
    with torch.no_grad():
        for k, p in model.named_parameters():
            p.copy_(torch.from_numpy(init[k]))
    x = torch.from_numpy(idx)

    def step(ckpt: bool):
        model.zero_grad(set_to_none=True)
        b, t = x.shape
        h = model.wte(x) + model.wpe(torch.arange(t))
        for block in model.blocks:
            h = checkpoint(block, h, use_reentrant=False) if ckpt else block(h)
        logits = model.ln_f(h) @ model.wte.weight.T
        torch.nn.functional.cross_entropy(logits.reshape(b * t, -1), x.reshape(-1)).backward()

    return model, step


def torch_peak_bytes(fn) -> int:
    """Peak bytes of the tensors ops made while fn ran (a dispatch mode's count)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    state = {"live": 0, "peak": 0}

    def free(n):
        state["live"] -= n

    class Live(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and t._base is None and not t.is_meta:
                    n = t.untyped_storage().nbytes()
                    state["live"] += n
                    state["peak"] = max(state["peak"], state["live"])
                    weakref.finalize(t, free, n)
            return out

    with Live():
        fn()
    return state["peak"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print_setup()
    seconds, out = planner_seconds(3)
    n, peak, base, flops = out.split()
    print(f"\nplanner, gpt3-175b (96 blocks, meta, batch 8): {seconds:.2f} s as a whole process "
          f"(best of 3; target < 2 s); {n} blocks checkpointed, peak "
          f"{int(base) / 2**40:.2f} TiB -> {int(peak) / 2**40:.2f} TiB under 1.6 TB, "
          f"{int(flops) / 1e15:.1f} PFLOP recomputed")

    fg.manual_seed(0)
    init = {k: p._data.copy() for k, p in GPT(GPTConfig(**CFG)).named_parameters()}
    idx = np.random.default_rng(0).integers(0, CFG["vocab"], (BATCH, CFG["ctx"]))
    model, fg_step = flopgrad_setup(init, idx)
    fns = {}
    fns["flopgrad"] = fg_step

    def fg_full():
        checkpoint_modules(model, [f"blocks.{i}" for i in range(CFG["n_layer"])])
        try:
            fg_step()
        finally:
            checkpoint_modules(model, [])

    fns["flopgrad checkpointed"] = fg_full
    peaks = {}
    for name, fn in (("flopgrad", fg_step), ("flopgrad checkpointed", fg_full)):
        with fg.profile() as bill:
            fn()
        peaks[name] = bill.peak_bytes
    try:
        import torch

        torch.set_num_threads(numpy_blas_threads())  # the threads NumPy's BLAS has
        _, t_step = torch_setup(init, idx)
        fns["pytorch"] = lambda: t_step(False)
        fns["pytorch checkpointed"] = lambda: t_step(True)
        peaks["pytorch"] = torch_peak_bytes(lambda: t_step(False))
        peaks["pytorch checkpointed"] = torch_peak_bytes(lambda: t_step(True))
    except ImportError:
        print("torch not installed: PyTorch columns skipped")
    for fn in fns.values():
        fn()  # warm up
    samples = interleaved(fns, args.repeat, 1)
    med = {k: statistics.median(v) for k, v in samples.items()}
    layout = "GPT n_layer 8, d_model 256, n_head 4, ctx 256, vocab 512, batch 8"
    print(f"\ntraining step of a {layout} (median of {args.repeat}, interleaved):")
    print(f"{'':<24}{'s/step':>9}{'peak live':>12}")
    for k in fns:
        print(f"{k:<24}{med[k]:>9.3f}{peaks[k] / 2**20:>10.1f} MiB")
    for lib in ("flopgrad", "pytorch"):
        if lib in med:
            print(f"{lib}: checkpointing costs {med[lib + ' checkpointed'] / med[lib]:.2f}x the "
                  f"time (expect about 1.3x) and keeps "
                  f"{peaks[lib + ' checkpointed'] / peaks[lib]:.2f}x the peak live bytes")
    if "pytorch" in med:
        print(f"flopgrad / pytorch: {med['flopgrad'] / med['pytorch']:.2f}x plain, "
              f"{med['flopgrad checkpointed'] / med['pytorch checkpointed']:.2f}x checkpointed")


if __name__ == "__main__":
    main()

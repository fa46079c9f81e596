"""Per-op overhead: (x * 2 + 1).sum() forward plus backward on a 10-element float32 tensor.

Prints microseconds per op (3 ops: mul, add, sum; forward and backward together) for
flopgrad, PyTorch eager and hand-written NumPy, all measured in this one run, and the
ratios. Two variants: "reset" sets x.grad = None after each backward; "accumulate" lets
the gradient add into x.grad across calls (PyTorch is faster there: it accumulates in
place). Target (issue 2, issue 10): flopgrad <= 0.5x PyTorch's per-op time in both.

    python benchmarks/overhead.py [--repeat 7] [--number 20000]
"""

from __future__ import annotations

import argparse
import timeit

import numpy as np
from _common import blas_info  # benchmarks/_common.py (the script's directory is on sys.path)

import flopgrad as fg

OPS = 3


def flopgrad_step(x):
    y = (x * 2 + 1).sum()
    y.backward()
    x.grad = None


def flopgrad_accumulate(x):
    (x * 2 + 1).sum().backward()


def numpy_step(x):
    y = (x * 2 + 1).sum()  # forward
    g = np.ones_like(x)  # d sum / d (x*2+1), broadcast of dy = 1
    gx = g * 2  # d (x*2) / dx
    return y, gx


def best_us_per_op(fn, arg, repeat: int, number: int) -> float:
    times = timeit.repeat(lambda: fn(arg), repeat=repeat, number=number)
    return min(times) / number / OPS * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()
    rows = []
    x = fg.rand(10, requires_grad=True)
    rows.append(("flopgrad", best_us_per_op(flopgrad_step, x, args.repeat, args.number)))
    rows.append(("flopgrad accumulate",
                 best_us_per_op(flopgrad_accumulate, x, args.repeat, args.number)))
    rows.append(("numpy (hand-written)", best_us_per_op(numpy_step, np.random.rand(10).astype(
        np.float32), args.repeat, args.number)))
    try:
        import torch

        torch.set_num_threads(1)
        tx = torch.rand(10, requires_grad=True)

        def torch_step(t):
            y = (t * 2 + 1).sum()
            y.backward()
            t.grad = None

        def torch_accumulate(t):
            (t * 2 + 1).sum().backward()

        rows.append(("pytorch eager", best_us_per_op(torch_step, tx, args.repeat, args.number)))
        rows.append(("pytorch accumulate",
                     best_us_per_op(torch_accumulate, tx, args.repeat, args.number)))
    except ImportError:
        print("torch not installed: PyTorch column skipped")
    print(f"BLAS: {blas_info()}")
    print(f"{'implementation':<24}{'us/op':>10}")
    for name, us in rows:
        print(f"{name:<24}{us:>10.2f}")
    times = dict(rows)
    if "pytorch eager" in times:
        print(f"flopgrad / pytorch = {times['flopgrad'] / times['pytorch eager']:.2f}x "
              "(target <= 0.5x)")
        print(f"accumulate: flopgrad / pytorch = "
              f"{times['flopgrad accumulate'] / times['pytorch accumulate']:.2f}x (target <= 0.5x)")
    print(f"flopgrad / numpy   = {times['flopgrad'] / times['numpy (hand-written)']:.2f}x")


if __name__ == "__main__":
    main()

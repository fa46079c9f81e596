"""Cost of billing: one MLP training step with and without an active `fg.profile()`.

A step is forward, cross-entropy, backward and an SGD update (float32, random data). Each
shape runs three ways in one process: no profile, `fg.profile()` (memory=True, the
default: live/saved bytes are tracked too) and `fg.profile(memory=False)`, with a fresh
profile around every step. The three alternate round by round (so drift cancels), and the
median of the rounds is compared. Target (issue): <= 3% overhead (ratio <= 1.03x) at the
large shape, MLP 784-1024-1024-10 at batch 256.

    python benchmarks/ledger_overhead.py [--repeat 15] [--seconds 0.25]

The BLAS kernel matters (OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, if the machine sets them,
are left as they are and printed); to let OpenBLAS pick its own kernel:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/ledger_overhead.py
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

import flopgrad as fg
from _common import calibrate, interleaved, print_setup  # benchmarks/_common.py
from flopgrad.nn import functional as F

SHAPES = [  # (layer sizes, batch)
    ((784, 1024, 1024, 10), 256),
    ((784, 128, 64, 10), 64),
]
TARGET = 1.03  # at the first (large) shape


def make_step(sizes, batch: int, seed: int = 0):
    """A closure running one training step of a fresh MLP on fixed random data."""
    fg.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = fg.models.MLP(sizes)
    opt = fg.optim.SGD(model.parameters(), lr=0.01)
    x = fg.tensor(rng.standard_normal((batch, sizes[0]), dtype=np.float32))
    y = rng.integers(0, sizes[-1], batch)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def profiled(step, memory: bool):
    def run():
        with fg.profile(memory=memory):
            step()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="rounds (samples per variant)")
    parser.add_argument("--seconds", type=float, default=0.25,
                        help="approximate length of one sample")
    args = parser.parse_args()
    print_setup()
    print(f"one sample = about {args.seconds}s of steps; {args.repeat} samples per variant, "
          "interleaved; ms per step: median (min)")
    head = f"{'shape':<30}{'no profile':>16}{'memory=True':>16}{'memory=False':>16}"
    print(head + f"{'ratio mem=T':>13}{'ratio mem=F':>13}")
    verdicts = []
    for k, (sizes, batch) in enumerate(SHAPES):
        step = make_step(sizes, batch)
        with fg.profile() as bill:
            step()
        variants = {"off": step, "mem": profiled(step, True), "nomem": profiled(step, False)}
        number = calibrate(variants["mem"], args.seconds)
        for fn in variants.values():  # warm every variant (caches, allocator, BLAS threads)
            fn()
        samples = interleaved(variants, args.repeat, number)
        med = {n: statistics.median(s) * 1e3 for n, s in samples.items()}
        low = {n: min(s) * 1e3 for n, s in samples.items()}
        # ratio of medians, plus the median of the per-round ratios (paired, drift-free)
        paired = {n: statistics.median(a / b for a, b in zip(samples[n], samples["off"],
                                                               strict=True))
                  for n in ("mem", "nomem")}
        name = f"MLP {'-'.join(map(str, sizes))} b{batch}"
        cells = "".join(f"{med[n]:>8.3f} ({low[n]:.3f})".rjust(16)
                        for n in ("off", "mem", "nomem"))
        print(f"{name:<30}{cells}{med['mem'] / med['off']:>12.3f}x"
              f"{med['nomem'] / med['off']:>12.3f}x")
        print(f"{'':<30}{len(bill.events)} ops billed per step, {number} steps per sample; "
              f"paired per-round ratio: memory=True {paired['mem']:.3f}x, memory=False "
              f"{paired['nomem']:.3f}x; min/min: {low['mem'] / low['off']:.3f}x, "
              f"{low['nomem'] / low['off']:.3f}x")
        if k == 0:
            verdicts.append((name, med["mem"] / med["off"]))
    for name, ratio in verdicts:
        ok = "meets" if ratio <= TARGET else "MISSES"
        print(f"{name}: profile(memory=True) overhead {100 * (ratio - 1):+.1f}% "
              f"({ok} the target of <= {100 * (TARGET - 1):.0f}%)")


if __name__ == "__main__":
    main()

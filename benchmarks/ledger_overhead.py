"""Cost of billing: one MLP training step with and without an active `fg.profile()`.

A step is forward, cross-entropy, backward and an SGD update (float32, random data). Each
shape runs three ways in one process: no profile, `fg.profile()` (memory=True, the
default: live/saved bytes are tracked too) and `fg.profile(memory=False)`, with a fresh
profile around every step. The three alternate round by round (so drift cancels); the
medians, the minima and the geometric mean of the per-round ratios ("paired", with a ~95%
interval) are compared; the verdict uses the paired ratio and its interval.
Target (issue): <= 3% overhead (ratio <= 1.03x) at the large shape, MLP 784-1024-1024-10
at batch 256.

    python benchmarks/ledger_overhead.py [--repeat 60] [--seconds 0.1]

The BLAS kernel matters (OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, if the machine sets them,
are left as they are and printed); to let OpenBLAS pick its own kernel:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/ledger_overhead.py
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
from _common import calibrate, interleaved, paired_ratio, print_setup  # benchmarks/_common.py

import flopgrad as fg
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
    parser.add_argument("--repeat", type=int, default=60, help="rounds (samples per variant)")
    parser.add_argument("--seconds", type=float, default=0.1,
                        help="approximate length of one sample")
    args = parser.parse_args()
    print_setup()
    print(f"{args.repeat} samples per variant of about {args.seconds}s each, interleaved; "
          "ratio = with / without profile; paired = geometric mean of the per-round ratios "
          "[~95% interval]")
    head = (f"{'shape':<28}{'variant':<23}{'median ms':>10}{'min ms':>9}{'ratio med':>11}"
            f"{'ratio min':>11}{'paired':>9}{'interval':>17}{'us/op':>7}")
    print(head)
    print("-" * len(head))
    verdict = None
    for k, (sizes, batch) in enumerate(SHAPES):
        step = make_step(sizes, batch)
        with fg.profile() as bill:
            step()
        n_ops = len(bill.events)
        variants = {"no profile": step, "profile(memory=True)": profiled(step, True),
                    "profile(memory=False)": profiled(step, False)}
        number = calibrate(variants["profile(memory=True)"], args.seconds)
        for fn in variants.values():  # warm every variant (caches, allocator, BLAS threads)
            fn()
        samples = interleaved(variants, args.repeat, number)
        base = samples["no profile"]
        name = f"MLP {'-'.join(map(str, sizes))} b{batch}"
        for variant, s in samples.items():
            med, low = statistics.median(s), min(s)
            line = (f"{name if variant == 'no profile' else '':<28}{variant:<23}"
                    f"{med * 1e3:>10.3f}{low * 1e3:>9.3f}")
            if variant != "no profile":
                ratio, lo, hi = paired_ratio(s, base)
                per_op = (ratio - 1) * min(base) / n_ops  # billing's cost per op
                line += (f"{med / statistics.median(base):>10.3f}x{low / min(base):>10.3f}x"
                         f"{ratio:>8.3f}x   [{lo:.3f}, {hi:.3f}]{per_op * 1e6:>7.1f}")
                if k == 0 and variant == "profile(memory=True)":
                    verdict = (name, ratio, lo, hi)
            print(line)
        print(f"{'':<28}({n_ops} ops billed per step, {number} steps per sample; us/op = "
              "extra time per billed op)")
    name, ratio, lo, hi = verdict
    if hi <= TARGET:
        ok = "meets"
    elif lo > TARGET:
        ok = "MISSES"
    else:
        ok = "is within noise of"
    print(f"{name}: profile(memory=True) overhead {100 * (ratio - 1):+.1f}% "
          f"[{100 * (lo - 1):+.1f}%, {100 * (hi - 1):+.1f}%]: {ok} the target of <= "
          f"{100 * (TARGET - 1):.0f}%")


if __name__ == "__main__":
    main()

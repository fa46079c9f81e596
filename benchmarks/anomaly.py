"""Cost of anomaly mode: an MLP training step with and without `fg.detect_anomaly()`.

A step is forward, cross-entropy, backward and an SGD update (float32, random data; the
step of benchmarks/ledger_overhead.py), run three ways in one process: anomaly mode off,
with an empty listener (what having any listener costs: dispatch times the op, the
engine tells listeners about nodes), and inside `fg.detect_anomaly()` (one
`np.isfinite(out).all()` per op, and the user's line of every graph node). The variants
alternate round by round (so drift cancels); the table gives medians, the geometric mean
of the per-round ratios ("paired", ~95% interval) and the extra microseconds per op.
The first row is overhead.py's tiny step ((x * 2 + 1).sum() on 10 elements), where the
fixed cost per op shows. With --torch, PyTorch's MLP step with and without
torch.autograd.detect_anomaly() for comparison (it records a traceback per node).

    python benchmarks/anomaly.py [--repeat 30] [--seconds 0.2] [--torch]

On a machine shared with other jobs, OPENBLAS_NUM_THREADS=1 gives stable numbers (two
BLAS threads on two busy cores made the MLP intervals span 0.7x to 2.5x).
"""

from __future__ import annotations

import argparse
import statistics
import warnings

from _common import calibrate, interleaved, paired_ratio, print_setup  # benchmarks/_common.py
from ledger_overhead import make_step  # the same MLP step

import flopgrad as fg
from flopgrad.hooks import Listener, listen

SHAPES = [((784, 128, 64, 10), 64), ((784, 1024, 1024, 10), 256)]


def tiny_step():
    """overhead.py's step: 3 ops forward, their backward (10 float32 elements)."""
    x = fg.rand(10, requires_grad=True)

    def step():
        (x * 2 + 1).sum().backward()
        x.grad = None
    return step


def with_listener(step):
    def run():
        with listen(Listener()):
            step()
    return run


def with_anomaly(step):
    def run():
        with fg.detect_anomaly():
            step()
    return run


def count_ops(step) -> int:
    with fg.profile(memory=False) as bill:
        step()
    return len(bill.events)


def torch_step(sizes, batch: int, anomaly: bool):
    import torch

    torch.manual_seed(0)
    layers = []
    for k in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, sizes[0])
    y = torch.randint(0, sizes[-1], (batch,))

    def step():
        opt.zero_grad()
        if anomaly:
            with torch.autograd.detect_anomaly():
                torch.nn.functional.cross_entropy(model(x), y).backward()
        else:
            torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def report(name: str, variants: dict, n_ops: int, repeat: int, seconds: float) -> None:
    slowest = list(variants.values())[-1]
    number = sorted(calibrate(slowest, seconds) for _ in range(3))[1]  # one slow call: not 1
    for fn in variants.values():  # warm every variant (caches, allocator, BLAS threads)
        fn()
    samples = interleaved(variants, repeat, number)
    base_name = next(iter(variants))
    base = samples[base_name]
    for variant, s in samples.items():
        med = statistics.median(s)
        line = f"{name if variant == base_name else '':<30}{variant:<22}{med * 1e3:>10.3f}"
        if variant != base_name:
            ratio, lo, hi = paired_ratio(s, base)
            per_op = (ratio - 1) * statistics.median(base) / n_ops
            line += f"{ratio:>9.3f}x   [{lo:.3f}, {hi:.3f}]{per_op * 1e6:>9.2f}"
        print(line)
    print(f"{'':<30}({n_ops} ops per step, {number} steps per sample)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30, help="rounds (samples per variant)")
    parser.add_argument("--seconds", type=float, default=0.2,
                        help="approximate length of one sample")
    parser.add_argument("--torch", action="store_true",
                        help="also PyTorch's step with and without its detect_anomaly")
    args = parser.parse_args()
    print_setup()
    print(f"{args.repeat} samples per variant of about {args.seconds}s each, interleaved; "
          "paired = geometric mean of the per-round ratios to the first variant [~95% "
          "interval]; us/op = extra time per op")
    head = f"{'step':<30}{'variant':<22}{'median ms':>10}{'paired':>10}{'interval':>17}" \
           f"{'us/op':>9}"
    print(head)
    print("-" * len(head))
    tiny = tiny_step()
    report("(x*2+1).sum() on 10 floats", {
        "off": tiny, "empty listener": with_listener(tiny), "detect_anomaly": with_anomaly(tiny)},
        count_ops(tiny), args.repeat, args.seconds)
    for sizes, batch in SHAPES:
        step = make_step(sizes, batch)
        report(f"MLP {'-'.join(map(str, sizes))} b{batch}", {
            "off": step, "empty listener": with_listener(step),
            "detect_anomaly": with_anomaly(step)}, count_ops(step), args.repeat, args.seconds)
    if args.torch:
        import torch

        torch.set_num_threads(1)
        warnings.simplefilter("ignore")  # torch warns that anomaly mode is slow
        sizes, batch = SHAPES[0]
        n_ops = count_ops(make_step(sizes, batch))  # flopgrad's count, for a per-op scale
        report(f"torch MLP {'-'.join(map(str, sizes))} b{batch}", {
            "off": torch_step(sizes, batch, False),
            "detect_anomaly": torch_step(sizes, batch, True)}, n_ops, args.repeat,
            args.seconds)


if __name__ == "__main__":
    main()

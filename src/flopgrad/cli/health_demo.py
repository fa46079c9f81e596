"""`flopgrad health-demo`: vanishing and exploding gradients, measured on eight 20-layer
networks trained on digits (flopgrad.diagnostics.health_demo), with the ratio of the
first layer's gradient norm to the last layer's for each."""

from __future__ import annotations

import argparse

from flopgrad.cli._args import whole
from flopgrad.diagnostics.health_demo import BATCH, DEPTH, LR, MOMENTUM, WIDTH, health_demo


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The `health-demo` command and its options."""
    demo = subparsers.add_parser(
        "health-demo", help="gradient health of 20-layer networks: vanishing, exploding, cured")
    demo.add_argument("--steps", type=whole(1), default=100, help="SGD steps per network")
    demo.add_argument("--seed", type=whole(0), default=0)
    demo.add_argument("--tables", action="store_true",
                      help="print each network's health table at step 1")
    demo.set_defaults(func=run)
    return demo


def run(args: argparse.Namespace) -> int:
    """Train each demonstration network; print its health at step 1 and its loss."""
    print(f"flopgrad health-demo: {DEPTH} linear layers of width {WIDTH} on digits, SGD lr "
          f"{LR:g} momentum {MOMENTUM:g}, batch {BATCH}, {args.steps} steps; health measured "
          "at step 1\n")
    for case in health_demo(steps=args.steps, seed=args.seed):
        print(case.summary())
        if args.tables:
            print(f"\n{case.report.table()}\n")
    return 0

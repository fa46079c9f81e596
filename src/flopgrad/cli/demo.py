"""`flopgrad demo`: train seed 000's MLP on digits, report accuracy, print one step's bill."""

from __future__ import annotations

import argparse
import time

from flopgrad import data, models, optim, training
from flopgrad.cli._args import save_path, whole
from flopgrad.creation import manual_seed
from flopgrad.report.terminal import show_table

DEMO_SIZES = [64, 128, 64, 10]  # seed 000's 784-128-64-10 MLP, on 8x8 digits


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The `demo` command and its options."""
    demo = subparsers.add_parser("demo", help="train seed 000's MLP on digits and print its bill")
    demo.add_argument("--epochs", type=whole(1), default=30)
    demo.add_argument("--seed", type=whole(0), default=0)
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.add_argument("--html", metavar="PATH", type=save_path, default=None,
                      help="also write the step's bill as an HTML page")
    demo.set_defaults(func=run)
    return demo


def run(args: argparse.Namespace) -> int:
    """Train seed 000's MLP on digits, report accuracy, print the bill of one step."""
    manual_seed(args.seed)
    train_set, test_set = data.digits(train=True), data.digits(train=False)
    model = models.MLP(DEMO_SIZES)
    loader = data.DataLoader(train_set, batch_size=32, shuffle=True, seed=args.seed)
    opt = optim.Adam(model.parameters(), lr=2e-3)
    print(f"flopgrad demo: MLP {'-'.join(map(str, DEMO_SIZES))} ({model.num_parameters():,} "
          f"parameters) on scikit-learn's 8x8 digits: {len(train_set)} train, "
          f"{len(test_set)} test images")
    start = time.perf_counter()
    training.fit(model, loader, opt, epochs=args.epochs, progress=not args.quiet)
    seconds = time.perf_counter() - start
    acc = training.evaluate(model, data.DataLoader(test_set, batch_size=256))
    print(f"test accuracy {100 * acc:.2f}% after {args.epochs} epochs "
          f"({seconds:.1f} s, {args.epochs * len(loader) / seconds:.0f} steps/s)")
    batch = next(iter(data.DataLoader(train_set, batch_size=32, shuffle=True, seed=1)))
    bill = training.step_bill(model, batch, opt)
    print("\nThe bill of one training step (batch 32), by layer:")
    show_table(bill, by="scope")
    if args.html:
        bill.to_html(args.html, "flopgrad demo: one training step of seed 000's MLP")
        print(f"\nwrote {args.html}")
    return 0

"""`flopgrad budget`: GPU-hours, days and cost of a training run, from fg.budget."""

from __future__ import annotations

import argparse

from flopgrad.cli._args import add_checkpoint_options, check_checkpoint_options, real, whole
from flopgrad.planning import budget


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The `budget` command and its options."""
    count = whole(1)
    bu = subparsers.add_parser("budget", help="GPU-hours, days and cost of a training run")
    bu.add_argument("--params", type=count, help="parameters N (6ND); 7e9 is fine")
    bu.add_argument("--model", help="a preset, for an exact count per token")
    bu.add_argument("--tokens", type=count, required=True, help="training tokens D")
    bu.add_argument("--gpu", default="h100")
    bu.add_argument("--gpus", type=count, default=1)
    bu.add_argument("--mfu", type=real("mfu must be in (0, 1]", lambda v: 0 < v <= 1),
                    default=0.4, help="model FLOPs utilisation (0, 1]")
    bu.add_argument("--price-per-gpu-hour", default=None,
                    type=real("must be finite and >= 0", lambda v: v >= 0))
    add_checkpoint_options(bu)
    bu.set_defaults(func=run)
    return bu


def run(args: argparse.Namespace) -> int:
    """GPU-hours, days and cost of a training run."""
    if args.params is None and args.model is None:
        raise ValueError("give --params N (for 6ND) or --model PRESET (for an exact count)")
    check_checkpoint_options(args)
    b = budget(params=args.params, tokens=args.tokens, model=args.model, gpu=args.gpu,
               gpus=args.gpus, mfu=args.mfu, price_per_gpu_hour=args.price_per_gpu_hour,
               checkpoint=args.checkpoint, memory_budget=args.memory_budget)
    print(b.summary())
    print(f"(peak {b.gpu.peak_flops / 1e12:.0f} TFLOP/s: {b.gpu.source})")
    return 0

"""`flopgrad plan`: does a training run fit, on how many GPUs, how fast: the per-GPU plan
for data, tensor, pipeline and sequence parallelism with ZeRO (fg.plan), or with --search
every layout ranked. The numbers come from flopgrad.planning; this module prints them."""

from __future__ import annotations

import argparse
import collections

from flopgrad.cli._args import real, save_path, whole
from flopgrad.planning import parallel, plan, search
from flopgrad.planning.plan import to_html
from flopgrad.report import human_bytes


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The `plan` command and its options."""
    count = whole(1)
    pl = subparsers.add_parser("plan", help="per-GPU memory, communication and step time of "
                                            "a parallel training run (ZeRO, tp, pp, sp)")
    pl.add_argument("model", help="a preset: gpt2, gpt3-175b, llama-7b-style, ...")
    pl.add_argument("--gpus", type=count, required=True)
    pl.add_argument("--batch", type=count, default=512, help="global batch, in sequences")
    pl.add_argument("--seq", type=count, default=None, help="tokens a sequence (default ctx)")
    pl.add_argument("--dp", type=count, default=None, help="default: gpus / (tp x pp)")
    pl.add_argument("--tp", type=count, default=1)
    pl.add_argument("--pp", type=count, default=1)
    pl.add_argument("--sp", action="store_true", help="sequence parallelism (needs tp > 1)")
    pl.add_argument("--zero", type=int, choices=(0, 1, 2, 3), default=0)
    pl.add_argument("--micro-batch", type=count, default=1)
    pl.add_argument("--interleave", type=count, default=1, help="model chunks per GPU")
    pl.add_argument("--recompute", choices=(*parallel.RECOMPUTE, "auto"), default="none",
                    help="auto: the least recompute that fits")
    pl.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16")
    pl.add_argument("--gpu", default="h100")
    pl.add_argument("--convention", choices=sorted(parallel.BYTES_PER_PARAM), default="zero",
                    help="bytes per parameter of mixed-precision Adam (16, 18 or 20)")
    pl.add_argument("--efficiency", default=0.75,
                    type=real("must be in (0, 1]", lambda v: 0 < v <= 1),
                    help="share of the dense peak a matmul reaches (default 0.75)")
    pl.add_argument("--tokens", type=count, default=None, help="training tokens, for days")
    pl.add_argument("--price-per-gpu-hour", default=None,
                    type=real("must be finite and >= 0", lambda v: v >= 0))
    pl.add_argument("--search", action="store_true",
                    help="every layout of --gpus GPUs, ranked by step time")
    pl.add_argument("--top", type=count, default=10, help="layouts listed with --search")
    pl.add_argument("--html", metavar="PATH", type=save_path, default=None,
                    help="also write the plan (or the ranked layouts) as an HTML page")
    pl.set_defaults(func=run)
    return pl


def run(args: argparse.Namespace) -> int:
    """Print one plan, or with --search the best layouts and why the rest do not fit."""
    common = dict(batch=args.batch, seq=args.seq, dtype=args.dtype, gpu=args.gpu,
                  convention=args.convention, efficiency=args.efficiency, tokens=args.tokens,
                  price_per_gpu_hour=args.price_per_gpu_hour)
    if not args.search:
        one = plan(args.model, args.gpus, dp=args.dp, tp=args.tp, pp=args.pp, sp=args.sp,
                   zero=args.zero, micro_batch=args.micro_batch, recompute=args.recompute,
                   interleave=args.interleave, **common)
        print(one)
        if args.html:
            to_html([one], args.html, f"flopgrad plan {args.model} on {args.gpus} GPUs")
            print(f"\nwrote {args.html}")
        return 0
    plans = search(args.model, args.gpus, **common)
    fitting = [p for p in plans if p.fits]
    print(f"{args.model} on {args.gpus} x {args.gpu}, batch {args.batch}: {len(plans)} layouts, "
          f"{len(fitting)} fit")
    if fitting:
        print("\nthe best:\n" + fitting[0].summary())
        print(f"\n{'dp':>5}{'tp':>4}{'pp':>4}{'sp':>4}{'zero':>5}{'recompute':>11}{'mb':>4}"
              f"{'memory':>11}{'step s':>9}{'MFU':>7}")
        for p in fitting[:args.top]:
            print(f"{p.dp:>5}{p.tp:>4}{p.pp:>4}{'y' if p.sp else '-':>4}{p.zero:>5}"
                  f"{p.recompute:>11}{p.micro_batch:>4}{human_bytes(p.memory['total']):>11}"
                  f"{p.step_seconds:>9.3g}{100 * p.mfu:>6.1f}%")
    failing = [p for p in plans if not p.fits]
    if failing:
        why = collections.Counter("activations" if p.memory["activations"] > p.memory["total"]
                                  - p.memory["activations"] else "model states" for p in failing)
        closest = min(failing, key=lambda p: p.memory["total"])
        print(f"\n{len(failing)} layouts do not fit (larger part: "
              + ", ".join(f"{k} in {n}" for k, n in why.items())
              + f"); the closest: dp {closest.dp} tp {closest.tp} pp {closest.pp} ZeRO "
              f"{closest.zero} recompute {closest.recompute}: {closest.reason}")
    if args.html:
        to_html(fitting + failing, args.html, f"flopgrad plan {args.model} on {args.gpus} "
                "GPUs: the layouts ranked", top=args.top)
        print(f"\nwrote {args.html}")
    return 0

"""`flopgrad bill`: the exact bill of one training step of a GPT of any size, counted on
meta tensors, with its memory and the published formulas beside it. The numbers come from
flopgrad.planning; this module prints them."""

from __future__ import annotations

import argparse
import dataclasses
import time

from flopgrad.cli._args import (
    add_checkpoint_options,
    check_checkpoint_options,
    save_path,
    whole,
)
from flopgrad.models import GPTConfig
from flopgrad.planning import (
    checkpointed_step_bill,
    formula_table,
    model_config,
    step_bill,
    step_memory,
    training_flops,
)
from flopgrad.report import human, human_bytes
from flopgrad.report.terminal import show_table

_SIZES = ("n_layer", "n_head", "d_model", "ctx", "vocab")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The `bill` command and its options."""
    count = whole(1)
    bl = subparsers.add_parser("bill", help="exact FLOPs and memory of one training step of a "
                                            "GPT of any size (meta tensors: nothing is allocated)")
    bl.add_argument("model", nargs="?", help="a preset: gpt2, gpt2-xl, gpt3-175b, "
                                             "llama-7b-style, ... (or give all the sizes); "
                                             "sizes given with a preset override its own")
    sizes = bl.add_argument_group("sizes", "all five without a preset; with a preset, "
                                           "each one given overrides the preset's")
    for k in _SIZES:
        sizes.add_argument(f"--{k.replace('_', '-')}", type=count)
    bl.add_argument("--batch", type=count, default=1)
    bl.add_argument("--depth", type=count, default=3, help="scope depth of the table")
    add_checkpoint_options(bl)
    bl.add_argument("--html", metavar="PATH", type=save_path, default=None,
                    help="also write the bill as an HTML page")
    bl.set_defaults(func=run)
    return bl


def _config_from_args(args: argparse.Namespace) -> GPTConfig:
    """A preset with the sizes given as options overriding its fields, or all the sizes."""
    sizes = {k: getattr(args, k) for k in _SIZES if getattr(args, k) is not None}
    if args.model:
        return dataclasses.replace(model_config(args.model), **sizes)
    missing = [f"--{k.replace('_', '-')}" for k in _SIZES if k not in sizes]
    if missing:
        raise ValueError(f"give a preset MODEL or all of {', '.join(missing)}")
    return GPTConfig(**sizes)


def run(args: argparse.Namespace) -> int:
    """The exact bill of one training step of a GPT, counted on meta tensors."""
    cfg = _config_from_args(args)
    check_checkpoint_options(args)
    start = time.perf_counter()
    bill, plan = checkpointed_step_bill(cfg, args.checkpoint, args.batch,
                                        memory_budget=args.memory_budget)
    seconds = time.perf_counter() - start
    n = cfg.num_params()
    tokens = args.batch * cfg.ctx
    given = [f"--{k.replace('_', '-')} {getattr(args, k)}" for k in _SIZES
             if getattr(args, k) is not None]
    name = (args.model + (" with " + ", ".join(given) if given else "") if args.model
            else "custom GPT")
    print(f"{name}: n_layer {cfg.n_layer}, n_head {cfg.n_head}, "
          f"d_model {cfg.d_model}, ctx {cfg.ctx}, vocab {cfg.vocab}: {n:,} parameters; "
          f"one AdamW step on {args.batch} x {cfg.ctx} tokens (meta tensors, counted in "
          f"{seconds:.2f} s)\n")
    show_table(bill, by="layer", depth=args.depth, rules=False)
    memory, hb = step_memory(bill), human_bytes
    print(f"\nmemory (float32 as run, measured on the meta step): weights "
          f"{hb(memory.weights)}, gradients {hb(memory.gradients)}, AdamW state "
          f"{hb(memory.optimizer_state)}, activations saved for backward "
          f"{hb(memory.activations)}; peak {hb(memory.peak)} in this first step, at most "
          f"{hb(memory.later_peak)} in a later step (the AdamW state stays alive)")
    if args.checkpoint != "none":
        _print_checkpointing(cfg, args, bill, plan)
    print("\npublished formulas beside the count:")
    for r in formula_table(cfg, bill, args.batch):
        print(f"  {r['formula']:<42} {r['value']:>12.4g}  counted {r['counted']:>12.4g}  "
              f"ratio {r['ratio']:.4f}")
        print(f"      {r['reason']}")
    train = training_flops(bill)
    print(f"\ntraining FLOPs per token {train / tokens:.4g} = "
          f"{train / tokens / n:.3f} x N (the rule of thumb says 6)")
    for rule in bill.rules(params=n, tokens=tokens)[:2]:
        print(f"  - {rule}")
    if args.html:
        bill.to_html(args.html, f"flopgrad bill: {name}", formula_table(cfg, bill, args.batch),
                     depth=args.depth)
        print(f"\nwrote {args.html}")
    return 0


def _print_checkpointing(cfg: GPTConfig, args: argparse.Namespace, bill, plan) -> None:
    """Peak memory and FLOPs of the step without and with the checkpoint policy."""
    base, _ = step_bill(dataclasses.replace(cfg, checkpoint="none"), batch=args.batch)
    hb, recompute = human_bytes, bill.flops("recompute")
    print(f"\ncheckpoint {args.checkpoint}: peak memory {hb(base.peak_bytes)} -> "
          f"{hb(bill.peak_bytes)}, FLOPs {human(base.flops())} -> {human(bill.flops())} "
          f"(+{100 * recompute / max(base.flops(), 1):.1f}%: {human(recompute)} recomputed)")
    if plan is not None:
        print(plan.table())

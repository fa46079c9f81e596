"""`flopgrad bill`: the exact bill of one training step of a GPT of any size, counted on
meta tensors, with its memory and the published formulas beside it; or, with `--torch
FILE.py:FUNCTION`, of one training step of your own PyTorch model. The numbers come from
flopgrad.planning and flopgrad.torch.step (torch imported only with --torch); this module
prints them."""

from __future__ import annotations

import argparse
import dataclasses
import sys
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
                                            "GPT of any size (meta tensors: nothing is "
                                            "allocated), or of your own PyTorch model "
                                            "(--torch FILE.py:FUNCTION)")
    bl.add_argument("--torch", metavar="FILE.py:FUNCTION", default=None,
                    help="bill one training step of your own PyTorch model instead: "
                         "FUNCTION() returns (model, batch); the forward is model(batch), "
                         "model(*batch) for a tuple, model(**batch) for a dict; the loss is "
                         "a 0-d output, else output.loss (Hugging Face, given labels), else "
                         "the first element of a tuple or dict, else output.float().mean(); "
                         "then loss.backward() and one AdamW step (needs flopgrad[torch])")
    bl.add_argument("model", nargs="?", help="a preset: gpt2, gpt2-xl, gpt3-175b, "
                                             "llama-7b-style, ... (or give all the sizes); "
                                             "sizes given with a preset override its own")
    sizes = bl.add_argument_group("sizes", "all five without a preset; with a preset, "
                                           "each one given overrides the preset's")
    for k in _SIZES:
        sizes.add_argument(f"--{k.replace('_', '-')}", type=count)
    bl.add_argument("--batch", type=count, default=None, help="sequences per step "
                                                                "(default 1)")
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
    """The exact bill of one training step of a GPT, counted on meta tensors (or of the
    model that --torch names)."""
    if args.torch is not None:
        return _run_torch(args)
    if args.batch is None:
        args.batch = 1
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


def _refuse_preset_options(args: argparse.Namespace) -> None:
    """--torch bills the model and batch the function returns: preset options are refused."""
    given = [f"the preset {args.model}"] if args.model else []
    given += [f"--{k.replace('_', '-')}" for k in _SIZES if getattr(args, k) is not None]
    given += ["--batch"] if args.batch is not None else []
    given += ["--checkpoint"] if args.checkpoint != "none" else []
    given += ["--memory-budget"] if args.memory_budget is not None else []
    if given:
        listed = (given[0] if len(given) == 1
                  else ", ".join(given[:-1]) + " and " + given[-1])
        raise ValueError(f"--torch bills the model and batch that FUNCTION returns: drop "
                         f"{listed} ({'it is' if len(given) == 1 else 'they are'} for "
                         f"presets)")


def _run_torch(args: argparse.Namespace) -> int:
    """`flopgrad bill --torch FILE.py:FUNCTION`: the tables of a preset for one AdamW step
    of the model FUNCTION returns, on the batch it returns."""
    _refuse_preset_options(args)
    try:
        from flopgrad.torch.step import formula_rows, step_report
    except ImportError as err:
        raise ValueError(f'--torch needs PyTorch, which cannot be imported ({err}): '
                         f'pip install "flopgrad[torch]"') from None
    step = step_report(args.torch)
    bill, hb = step.bill, human_bytes
    trainable = f" ({step.trainable:,} trainable)" if step.trainable != step.params else ""
    print(f"{args.torch}: {step.model_class}, {step.params:,} parameters{trainable} "
          f"({step.dtypes}); one AdamW step on a batch of {step.batch} ({step.device} "
          f"tensors, counted in {step.seconds:.2f} s)\n")
    show_table(bill, by="layer", depth=args.depth, rules=False)
    print(f"\nexact FLOPs: forward {bill.flops('forward'):,}, backward "
          f"{bill.flops('backward'):,} (dX {bill.flops('backward', role='input'):,}, dW "
          f"{bill.flops('backward', role='weight'):,}), optimizer {bill.flops('optimizer'):,}; "
          f"tensor (matmul/conv) forward {bill.flops('forward', kind='tensor'):,}, backward "
          f"{bill.flops('backward', kind='tensor'):,}")
    buffers = f" (+ buffers {hb(step.buffers)})" if step.buffers else ""
    print(f"\nmemory (as run, measured on the step): weights {hb(step.weights)}{buffers}, "
          f"gradients {hb(step.gradients)}, AdamW state {hb(step.optimizer_state)}, "
          f"activations saved for backward {hb(step.activations)}; "
          + (f"peak {hb(bill.peak_bytes)} in this step" if bill.memory and bill.peak_bytes
             else "the peak is not in this bill (it counts the ops' tensors, not torch's "
                  "allocator)"))
    unknown = bill.unknown_ops()
    if unknown:
        print(f"\nUNKNOWN COST: {len(unknown)} aten op(s) have no formula and are billed as "
              f"0 FLOPs, so the totals are low by their cost: {', '.join(unknown)}")
        print(f"flopgrad bill: warning: {len(unknown)} aten op(s) billed as 0 FLOPs (no "
              f"formula): {', '.join(unknown)}", file=sys.stderr)
    formulas = formula_rows(step)
    if formulas:
        print("\npublished formulas beside the count (forward + backward matmul FLOPs):")
        for r in formulas:
            print(f"  {r['formula']:<42} {r['value']:>12.4g}  counted {r['counted']:>12.4g}  "
                  f"ratio {r['ratio']:.4f}")
            print(f"      {r['reason']}")
    tokens = f" and {step.tokens:,} tokens" if step.tokens else ""
    print(f"\nrules of thumb checked on this step ({step.params:,} parameters{tokens}):")
    for rule in bill.rules(params=step.params, tokens=step.tokens):
        print(f"  - {rule}")
    if args.html:
        bill.to_html(args.html, f"flopgrad bill --torch {args.torch}", formulas or None,
                     depth=args.depth)
        print(f"\nwrote {args.html}")
    return 0

"""The flopgrad command line: `flopgrad demo | train {mlp,cnn,gpt} | bill | budget`.

Every mistake in the arguments or the inputs is one line on stderr and exit status 2:
options are checked when parsed (finite, positive, whole where they count something; a
--save path that can be written), data files before training starts. A closed pipe
(`flopgrad bill gpt2 | head -1`) ends quietly, Ctrl-C with status 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import struct
import sys
import time
import zipfile

import numpy as np

import flopgrad
from flopgrad import data, models, optim, training
from flopgrad.creation import manual_seed
from flopgrad.files import writable_target
from flopgrad.serialization import save

DEMO_SIZES = [64, 128, 64, 10]  # seed 000's 784-128-64-10 MLP, on 8x8 digits


def cmd_demo(args) -> int:
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
    print(bill.table(by="scope"))
    return 0


_DATA_ERRORS = (ValueError, KeyError, OSError, EOFError, struct.error, zipfile.BadZipFile)


def _check_labels(ds, path: str, split: str) -> None:
    x, y = ds.arrays
    if len(y) == 0:
        raise ValueError(f"--data {path}: the {split} set is empty")
    bad = np.flatnonzero((y < 0) | (y >= 10))
    if bad.size:
        raise ValueError(f"--data {path}: {split} label {y[bad[0]]} (example {bad[0]}) is not "
                         "a class 0-9")
    if not np.isfinite(x).all():
        raise ValueError(f"--data {path}: the {split} images hold NaN or infinite values")


def _classifier_data(kind: str, path: str | None):
    image = kind == "cnn"
    if not path:
        return data.digits(train=True, image=image), data.digits(train=False, image=image), 8
    try:
        sets = [data.mnist(path, train=split, image=image) for split in (True, False)]
    except FileNotFoundError:
        raise
    except _DATA_ERRORS as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise ValueError(f"--data {path}: not a usable MNIST file or folder: {msg}") from None
    for ds, split in zip(sets, ("train", "test"), strict=True):
        _check_labels(ds, path, split)
    return sets[0], sets[1], 28


def cmd_train(args) -> int:
    """Train an MLP, a CNN or a GPT; optionally save the weights and print the step bill."""
    manual_seed(args.seed)
    if args.model in ("mlp", "cnn"):
        train_set, test_set, side = _classifier_data(args.model, args.data)
        if args.model == "mlp":
            model = models.MLP([side * side, 128, 64, 10])
        else:
            model = models.CNN(image_size=side)
        loader = data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                                 seed=args.seed)
        opt = optim.Adam(model.parameters(), lr=2e-3 if args.lr is None else args.lr)
        loss_fn = training._loss_fn
        print(f"train {args.model}: {model.num_parameters():,} parameters, "
              f"{len(train_set)} train / {len(test_set)} test examples")
        training.fit(model, loader, opt, loss_fn, epochs=args.epochs or 10, steps=args.steps,
                     progress=not args.quiet)
        acc = training.evaluate(model, data.DataLoader(test_set, batch_size=256))
        print(f"test accuracy {100 * acc:.2f}%")
        tokens = None
    else:
        ctx = 64
        corpus = data.text(args.data, ctx=ctx)
        cfg = models.GPTConfig(n_layer=2, n_head=4, d_model=128, ctx=ctx, vocab=len(corpus.vocab))
        model = models.GPT(cfg)
        loader = data.DataLoader(corpus, batch_size=args.batch_size, shuffle=True,
                                 seed=args.seed)
        opt = optim.AdamW(model.parameters(), lr=3e-3 if args.lr is None else args.lr,
                          weight_decay=0.01)

        def loss_fn(m, batch):
            return m(batch[0], batch[1])[1]

        steps = 200 if args.steps is None and args.epochs is None else args.steps
        print(f"train gpt: {model.num_parameters():,} parameters, vocab {cfg.vocab}, "
              f"{len(corpus.tokens):,} characters")
        losses = training.fit(model, loader, opt, loss_fn, epochs=args.epochs or 1, steps=steps,
                              clip=1.0, progress=not args.quiet)
        print(f"final loss {sum(losses[-10:]) / len(losses[-10:]):.3f} (uniform would be "
              f"{__import__('math').log(cfg.vocab):.3f})")
        tokens = args.batch_size * ctx
    if args.save:
        save(model.state_dict(), args.save)
        print(f"saved weights to {args.save}")
    if args.bill:
        batch = next(iter(loader))
        bill = training.step_bill(model, batch, opt, loss_fn)
        print("\nThe bill of one training step, by layer:")
        print(bill.table(by="scope", depth=2, rules=False))
        for rule in bill.rules(tokens=tokens):
            print(f"  - {rule}")
    return 0


_SIZES = ("n_layer", "n_head", "d_model", "ctx", "vocab")


def _config_from_args(args):
    """A preset with the sizes given as options overriding its fields, or all the sizes."""
    from flopgrad.planning import model_config
    sizes = {k: getattr(args, k) for k in _SIZES if getattr(args, k) is not None}
    if args.model:
        return dataclasses.replace(model_config(args.model), **sizes)
    missing = [f"--{k.replace('_', '-')}" for k in _SIZES if k not in sizes]
    if missing:
        raise ValueError(f"give a preset MODEL or all of {', '.join(missing)}")
    return models.GPTConfig(**sizes)


def cmd_bill(args) -> int:
    """The exact bill of one training step of a GPT, counted on meta tensors."""
    from flopgrad import report
    from flopgrad.planning import formula_table, step_bill
    cfg = _config_from_args(args)
    start = time.perf_counter()
    bill, model = step_bill(cfg, batch=args.batch)
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
    print(bill.table(by="layer", depth=args.depth, rules=False))
    memory = bill.memory_breakdown()
    live = memory["live"]
    activations = sum(e["bytes"] for e in bill.saved() if not e["leaf"])
    # the first step makes the AdamW state; a later step starts with all of it alive, so
    # its peak is at most this step's plus the whole state
    later = bill.peak_bytes + live["optimizer_state"]
    hb = report.human_bytes
    print(f"\nmemory (float32 as run, measured on the meta step): weights "
          f"{hb(live['parameters'])}, gradients {hb(live['gradients'])}, AdamW state "
          f"{hb(live['optimizer_state'])}, activations saved for backward {hb(activations)}; "
          f"peak {hb(bill.peak_bytes)} in this first step, at most {hb(later)} in a later "
          f"step (the AdamW state stays alive)")
    print("\npublished formulas beside the count:")
    for r in formula_table(cfg, bill, args.batch):
        print(f"  {r['formula']:<42} {r['value']:>12.4g}  counted {r['counted']:>12.4g}  "
              f"ratio {r['ratio']:.4f}")
        print(f"      {r['reason']}")
    train = bill.flops("forward") + bill.flops("backward")
    print(f"\ntraining FLOPs per token {train / tokens:.4g} = "
          f"{train / tokens / n:.3f} x N (the rule of thumb says 6)")
    for rule in bill.rules(params=n, tokens=tokens)[:2]:
        print(f"  - {rule}")
    return 0


def cmd_budget(args) -> int:
    """GPU-hours, days and cost of a training run."""
    from flopgrad.planning import budget
    if args.params is None and args.model is None:
        raise ValueError("give --params N (for 6ND) or --model PRESET (for an exact count)")
    b = budget(params=args.params, tokens=args.tokens, model=args.model, gpu=args.gpu,
               gpus=args.gpus, mfu=args.mfu, price_per_gpu_hour=args.price_per_gpu_hour)
    print(b.summary())
    print(f"(peak {b.gpu.peak_flops / 1e12:.0f} TFLOP/s: {b.gpu.source})")
    return 0


# Every character str.splitlines() breaks at: error messages quote them, one line each.
_LINE_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in
                              "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


def _one_line(text) -> str:
    return str(text).translate(_LINE_BREAKS)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): `flopgrad bill: error: ...`."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


_LARGEST = 10**300  # whole numbers stay below float's range (budgets compute in floats)


def _whole(minimum: int):
    """Parse a whole number >= minimum; float notation is fine if exact (7e9, 1e3)."""
    def whole(s: str) -> int:
        rule = (f"must be positive and whole, got {s!r}" if minimum == 1 else
                f"must be a whole number >= {minimum}, got {s!r}")
        try:
            v = int(s)
        except ValueError:
            try:
                f = float(s)
            except ValueError:
                f = math.nan
            if not (math.isfinite(f) and f.is_integer()):
                raise argparse.ArgumentTypeError(rule) from None
            v = int(f)
        if v < minimum or v > _LARGEST:
            raise argparse.ArgumentTypeError(rule if v < minimum else f"is too large: {s!r}")
        return v
    return whole


def _real(rule: str, ok):
    """Parse a finite number for which ok(value) holds; the error says `rule`."""
    def real(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            v = math.nan
        if not (math.isfinite(v) and ok(v)):
            raise argparse.ArgumentTypeError(f"{rule}, got {s!r}")
        return v
    return real


def _path(s: str) -> str:
    if not s:
        raise argparse.ArgumentTypeError("must not be empty")
    return s


def _save_path(s: str) -> str:
    """--save: checked writable before training, so a long run never ends in an error."""
    try:
        writable_target(s)
    except (OSError, ValueError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return s


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="flopgrad",
        description="Automatic differentiation for NumPy that hands you the bill.")
    parser.add_argument("--version", action="version", version=f"flopgrad {flopgrad.__version__}")
    sub = parser.add_subparsers(dest="command", title="commands")
    count, seed = _whole(1), _whole(0)
    demo = sub.add_parser("demo", help="train seed 000's MLP on digits and print its bill")
    demo.add_argument("--epochs", type=count, default=30)
    demo.add_argument("--seed", type=seed, default=0)
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=cmd_demo)
    tr = sub.add_parser("train", help="train an MLP, a CNN or a small GPT")
    tr.add_argument("model", choices=["mlp", "cnn", "gpt"])
    tr.add_argument("--data", type=_path,
                    help="MNIST folder/.npz (mlp, cnn) or a text file (gpt); "
                         "default: scikit-learn digits / Python's own sources")
    tr.add_argument("--epochs", type=count, default=None,
                    help="passes over the data (default: 10 for mlp and cnn; gpt trains 200 "
                         "steps unless --epochs or --steps is given)")
    tr.add_argument("--steps", type=count, default=None,
                    help="train exactly this many steps (overrides --epochs)")
    tr.add_argument("--batch-size", type=count, default=32)
    tr.add_argument("--lr", type=_real("must be positive and finite", lambda v: v > 0),
                    default=None, help="learning rate (default 2e-3 for mlp and cnn, 3e-3 for gpt)")
    tr.add_argument("--seed", type=seed, default=0)
    tr.add_argument("--save", metavar="PATH", type=_save_path,
                    help="write the weights (safetensors); checked writable before training")
    tr.add_argument("--bill", action="store_true", help="print the bill of one training step")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=cmd_train)
    bl = sub.add_parser("bill", help="exact FLOPs and memory of one training step of a GPT "
                                     "of any size (meta tensors: nothing is allocated)")
    bl.add_argument("model", nargs="?", help="a preset: gpt2, gpt2-xl, gpt3-175b, "
                                             "llama-7b-style, ... (or give all the sizes); "
                                             "sizes given with a preset override its own")
    sizes = bl.add_argument_group("sizes", "all five without a preset; with a preset, "
                                           "each one given overrides the preset's")
    for k in ("n-layer", "n-head", "d-model", "ctx", "vocab"):
        sizes.add_argument(f"--{k}", type=count)
    bl.add_argument("--batch", type=count, default=1)
    bl.add_argument("--depth", type=count, default=3, help="scope depth of the table")
    bl.set_defaults(func=cmd_bill)
    bu = sub.add_parser("budget", help="GPU-hours, days and cost of a training run")
    bu.add_argument("--params", type=count, help="parameters N (6ND); 7e9 is fine")
    bu.add_argument("--model", help="a preset, for an exact count per token")
    bu.add_argument("--tokens", type=count, required=True, help="training tokens D")
    bu.add_argument("--gpu", default="h100")
    bu.add_argument("--gpus", type=count, default=1)
    bu.add_argument("--mfu", type=_real("mfu must be in (0, 1]", lambda v: 0 < v <= 1),
                    default=0.4, help="model FLOPs utilisation (0, 1]")
    bu.add_argument("--price-per-gpu-hour", default=None,
                    type=_real("must be finite and >= 0", lambda v: v >= 0))
    bu.set_defaults(func=cmd_budget)
    return parser


def _silence_stdout() -> None:
    """After a broken pipe: send what is left to devnull, so that the flush at exit does
    not raise again (the recipe of the Python docs, `signal` module, note on SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # a stdout without a descriptor
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - open until the process exits


def main(argv: list[str] | None = None) -> int:
    """Entry point of `flopgrad` and `python -m flopgrad`: returns the exit status (0 done,
    1 output pipe closed, 2 bad arguments or inputs, 130 interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or an argument error already printed
        return done.code if isinstance(done.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stdout)
        return 0
    try:
        status = args.func(args)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        _silence_stdout()
        return 1
    except KeyboardInterrupt:
        newline = "\n" if getattr(sys.stderr, "isatty", lambda: False)() else ""
        print(f"{newline}flopgrad {args.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"flopgrad {args.command}: error: out of memory", file=sys.stderr)
        return 2
    except (OSError, ValueError, KeyError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"flopgrad {args.command}: error: {_one_line(msg)}", file=sys.stderr)
        return 2

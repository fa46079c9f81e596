"""`flopgrad train {mlp,cnn,gpt}`: train a model, optionally save its weights, print the
gradient health table every N steps (--health N) and the bill of one step. Data files are
checked before training starts."""

from __future__ import annotations

import argparse
import math
import struct
import zipfile

import numpy as np

from flopgrad import data, models, optim, training
from flopgrad.cli._args import path, real, save_path, whole
from flopgrad.creation import manual_seed
from flopgrad.diagnostics import Health
from flopgrad.report.terminal import show_rules, show_table
from flopgrad.serialization import save

_DATA_ERRORS = (ValueError, KeyError, OSError, EOFError, struct.error, zipfile.BadZipFile)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The `train` command and its options."""
    count = whole(1)
    tr = subparsers.add_parser("train", help="train an MLP, a CNN or a small GPT")
    tr.add_argument("model", choices=["mlp", "cnn", "gpt"])
    tr.add_argument("--data", type=path,
                    help="MNIST folder/.npz (mlp, cnn) or a text file (gpt); "
                         "default: scikit-learn digits / Python's own sources")
    tr.add_argument("--epochs", type=count, default=None,
                    help="passes over the data (default: 10 for mlp and cnn; gpt trains 200 "
                         "steps unless --epochs or --steps is given)")
    tr.add_argument("--steps", type=count, default=None,
                    help="train exactly this many steps (overrides --epochs)")
    tr.add_argument("--batch-size", type=count, default=32)
    tr.add_argument("--lr", type=real("must be positive and finite", lambda v: v > 0),
                    default=None, help="learning rate (default 2e-3 for mlp and cnn, 3e-3 for gpt)")
    tr.add_argument("--seed", type=whole(0), default=0)
    tr.add_argument("--save", metavar="PATH", type=save_path,
                    help="write the weights (safetensors); checked writable before training")
    tr.add_argument("--bill", action="store_true", help="print the bill of one training step")
    tr.add_argument("--html", metavar="PATH", type=save_path, default=None,
                    help="write the bill of one training step as an HTML page")
    tr.add_argument("--health", type=count, metavar="N", default=None,
                    help="print the gradient health table (per layer: gradient and weight "
                         "norms, update ratio, dead ReLUs, verdict) every N steps")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=run)
    return tr


def _check_labels(ds: data.TensorDataset, path: str, split: str) -> None:
    """Refuse an empty split, a label outside 0-9 or images that are not finite."""
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
    """Train set, test set and image side for mlp/cnn: digits, or MNIST from `path`."""
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


def _fit(args, model, loader, opt, loss_fn, reference=None, **kwargs) -> list[float]:
    """training.fit, with the health table printed every --health N steps."""
    if args.health is None:
        return training.fit(model, loader, opt, loss_fn, progress=not args.quiet, **kwargs)
    with Health(model, every=args.health, out=print, reference=reference) as health:
        return training.fit(model, loader, opt, loss_fn, progress=not args.quiet,
                            callback=health, **kwargs)


def run(args: argparse.Namespace) -> int:
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
        _fit(args, model, loader, opt, loss_fn, epochs=args.epochs or 10, steps=args.steps)
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
        losses = _fit(args, model, loader, opt, loss_fn, epochs=args.epochs or 1, steps=steps,
                      clip=1.0, reference="wte" if cfg.tied_embeddings else "lm_head")
        print(f"final loss {sum(losses[-10:]) / len(losses[-10:]):.3f} (uniform would be "
              f"{math.log(cfg.vocab):.3f})")
        tokens = args.batch_size * ctx
    if args.save:
        save(model.state_dict(), args.save)
        print(f"saved weights to {args.save}")
    if args.bill or args.html:
        batch = next(iter(loader))
        bill = training.step_bill(model, batch, opt, loss_fn)
    if args.bill:
        print("\nThe bill of one training step, by layer:")
        show_table(bill, by="scope", depth=2, rules=False)
        show_rules(bill.rules(tokens=tokens))
    if args.html:
        bill.to_html(args.html, f"flopgrad train {args.model}: one training step")
        print(f"wrote {args.html}")
    return 0

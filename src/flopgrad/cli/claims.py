"""`flopgrad claims`: every claim of the five seed documents run as an experiment and
printed with its verdict. The experiments are in flopgrad.claims; this module prints them."""

from __future__ import annotations

import argparse
import time

from flopgrad import claims
from flopgrad.claims.core import to_html
from flopgrad.cli._args import save_path, whole


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The `claims` command and its options.

    >>> sub = argparse.ArgumentParser().add_subparsers()
    >>> add_parser(sub).parse_args(["exact-2x", "--repeats", "3"]).repeats
    3
    """
    cl = subparsers.add_parser(
        "claims", help="run every claim of the seed documents (matmul's share, backward = "
                       "2x forward, 6ND, finite differences, ...) and say if it holds")
    cl.add_argument("keys", nargs="*", metavar="CLAIM",
                    help="claims to run (default: all; --list names them)")
    cl.add_argument("--repeats", type=whole(1), default=5,
                    help="best of K runs for every wall-time measurement (default 5)")
    cl.add_argument("--list", action="store_true", help="list the claims and exit")
    cl.add_argument("--html", metavar="PATH", type=save_path, default=None,
                    help="also write the results as an HTML page")
    cl.set_defaults(func=run)
    return cl


def run(args: argparse.Namespace) -> int:
    """Run the claims and print each result, then a summary line (or list them).

    >>> run(argparse.Namespace(list=True, keys=[], repeats=1, html=None))  # doctest: +ELLIPSIS
    matmul-flops         seed 000  matmul's share of the FLOPs
    ...
    0
    """
    if args.list:
        for key in claims.keys():
            c = claims.REGISTRY[key]
            print(f"{key:<20} seed {c.seed}  {c.title}")
        return 0
    start = time.perf_counter()
    results = claims.run(args.keys or None, repeats=args.repeats)
    for r in results:
        print(r, end="\n\n")
    held, n = sum(r.holds for r in results), len(results)
    print(f"{n} claim{'s' * (n != 1)}: {held} hold{'s' * (held == 1)}, {n - held} "
          f"differ{'s' * (n - held == 1)} "
          f"({time.perf_counter() - start:.1f} s; FLOPs and memory from bills, times the best "
          f"of {args.repeats} or more runs on one BLAS thread)")
    if args.html:
        to_html(results, args.html)
        print(f"wrote {args.html}")
    return 0

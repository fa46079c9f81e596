"""The flopgrad command line."""

from __future__ import annotations

import argparse
import sys

import flopgrad


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flopgrad",
        description="Automatic differentiation for NumPy that hands you the bill.")
    parser.add_argument("--version", action="version", version=f"flopgrad {flopgrad.__version__}")
    parser.add_subparsers(dest="command", title="commands")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `flopgrad` and `python -m flopgrad`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stdout)
        return 0
    return 0

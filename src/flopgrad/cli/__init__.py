"""The flopgrad command line: `flopgrad demo | train {mlp,cnn,gpt} | bill | budget | plan |
health-demo | claims`.

Every mistake in the arguments or the inputs is one line on stderr and exit status 2:
options are checked when parsed (finite, positive, whole where they count something; a
--save path that can be written), data files before training starts. A closed pipe
(`flopgrad bill gpt2 | head -1`) ends quietly, Ctrl-C with status 130.

One module a command (`demo`, `train`, `bill`, `budget`, `plan`, `health_demo`,
`claims`), each with `add_parser(subparsers)` and `run(args) -> int`; what they share is in
`_args`. The commands print: the numbers come from the library (flopgrad.training,
flopgrad.planning, flopgrad.diagnostics, flopgrad.claims).
"""

from __future__ import annotations

import argparse
import os
import sys

import flopgrad
from flopgrad.cli import bill, budget, claims, demo, health_demo, plan, train
from flopgrad.cli._args import Parser, one_line
from flopgrad.cli.demo import DEMO_SIZES

__all__ = ["main", "build_parser", "COMMANDS", "DEMO_SIZES"]

COMMANDS = (demo, train, bill, budget, plan, health_demo, claims)  # the order of --help

# the command functions under their earlier names
cmd_demo, cmd_train, cmd_bill, cmd_budget, cmd_plan, cmd_claims = (
    command.run for command in (demo, train, bill, budget, plan, claims))


def build_parser() -> argparse.ArgumentParser:
    """The `flopgrad` parser with every command of COMMANDS.

    >>> sorted(build_parser().parse_args(["bill", "gpt2"]).__dict__)[:3]
    ['batch', 'checkpoint', 'command']
    """
    parser = Parser(
        prog="flopgrad",
        description="Automatic differentiation for NumPy that hands you the bill.")
    parser.add_argument("--version", action="version", version=f"flopgrad {flopgrad.__version__}")
    sub = parser.add_subparsers(dest="command", title="commands")
    for command in COMMANDS:
        command.add_parser(sub)
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
    1 output pipe closed, 2 bad arguments or inputs, 130 interrupted).

    >>> main(["budget", "--params", "1e9", "--tokens", "2e10"])  # doctest: +ELLIPSIS
    1,000,000,000 parameters x 2e+10 tokens: 1.2e+20 FLOPs (6e+09 per token, 6·N per token)
    ...
    0
    """
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
        print(f"flopgrad {args.command}: error: {one_line(msg)}", file=sys.stderr)
        return 2

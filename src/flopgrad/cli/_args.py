"""What every command shares: the parser with one-line errors, the option checkers, and
the one-line form of a message.

>>> whole(1)("7e9")
7000000000
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from flopgrad.files import writable_target
from flopgrad.planning import CHECKPOINT_CHOICES, parse_bytes

# Every character str.splitlines() breaks at: error messages quote them, one line each.
_LINE_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in
                              "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})

_LARGEST = 10**300  # whole numbers stay below float's range (budgets compute in floats)


def one_line(text: object) -> str:
    """The text with its line breaks written as escapes.

    >>> one_line("a\\nb")
    'a\\\\nb'
    """
    return str(text).translate(_LINE_BREAKS)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): `flopgrad bill: error: ...`."""

    def error(self, message: str):
        """Exit with status 2 and the message on one line.

        >>> import contextlib, io
        >>> with contextlib.redirect_stderr(io.StringIO()) as err:
        ...     try:
        ...         Parser(prog="flopgrad").error("no\\nway")
        ...     except SystemExit as done:
        ...         print(done.code)
        2
        >>> err.getvalue()
        'flopgrad: error: no\\\\nway (see flopgrad --help)\\n'
        """
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def whole(minimum: int) -> Callable[[str], int]:
    """Parse a whole number >= minimum; float notation is fine if exact (7e9, 1e3).

    >>> whole(0)("1e3"), whole(1)("12")
    (1000, 12)
    >>> whole(1)("0.5")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be positive and whole, got '0.5'
    """
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


def real(rule: str, ok: Callable[[float], bool]) -> Callable[[str], float]:
    """Parse a finite number for which ok(value) holds; the error says `rule`.

    >>> real("must be >= 0", lambda v: v >= 0)("2.5")
    2.5
    >>> real("must be >= 0", lambda v: v >= 0)("nan")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be >= 0, got 'nan'
    """
    def real(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            v = math.nan
        if not (math.isfinite(v) and ok(v)):
            raise argparse.ArgumentTypeError(f"{rule}, got {s!r}")
        return v
    return real


def memory_size(s: str) -> str:
    """--memory-budget: bytes with a unit, checked here (kept as given for the planner).

    >>> memory_size("80GiB")
    '80GiB'
    >>> memory_size("lots")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    argparse.ArgumentTypeError: memory budget: cannot read 'lots'; write bytes with a unit, ...
    """
    try:
        parse_bytes(s)
    except (TypeError, ValueError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return s


def add_checkpoint_options(parser: argparse.ArgumentParser) -> None:
    """--checkpoint and --memory-budget, shared by `bill` and `budget`."""
    parser.add_argument("--checkpoint", choices=CHECKPOINT_CHOICES, default="none",
                        help="recompute activations: every block (full), attention cores "
                             "(selective), or the planner's blocks under --memory-budget "
                             "(auto)")
    parser.add_argument("--memory-budget", type=memory_size, default=None,
                        help="bytes for --checkpoint auto, e.g. 80GiB")


def check_checkpoint_options(args: argparse.Namespace) -> None:
    """--memory-budget goes with --checkpoint auto."""
    if args.memory_budget is not None and args.checkpoint != "auto":
        raise ValueError("--memory-budget is the budget of --checkpoint auto; add "
                         "--checkpoint auto (or drop --memory-budget)")


def path(s: str) -> str:
    """A path that is not empty.

    >>> path("digits.npz")
    'digits.npz'
    """
    if not s:
        raise argparse.ArgumentTypeError("must not be empty")
    return s


def save_path(s: str) -> str:
    """--save: checked writable before training, so a long run never ends in an error.

    >>> save_path(".")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: cannot write .: it is a directory
    """
    try:
        writable_target(s)
    except (OSError, ValueError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return s

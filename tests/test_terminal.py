"""The terminal: rich tables on a terminal that fit 80 columns, plain text elsewhere."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

import flopgrad as fg
from flopgrad.planning import step_bill
from flopgrad.planning.presets import model_config
from flopgrad.report.tables import rows
from flopgrad.report.terminal import show_rules, show_table, use_colour


@pytest.fixture(scope="module")
def bill():
    return step_bill(model_config("gpt2"))[0]


def _render(bill, width: int, **kw) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    show_table(bill, by="layer", depth=3, console=console, **kw)
    return console.file.getvalue()


def test_a_wide_table_fits_80_columns_and_shows_every_layer(bill):
    out = _render(bill, 80, rules=False)
    assert max(len(line) for line in out.splitlines()) <= 80
    for r in rows(bill, "layer", 3):
        assert r.key in out
    assert "bwd dX" in out and "bwd dW" in out and "bytes" not in out.splitlines()[2]
    wide = _render(bill, 120, rules=False)
    assert "saved" in wide and max(len(line) for line in wide.splitlines()) <= 120


def test_colour_marks_the_phases_and_the_rules(bill):
    console = Console(file=io.StringIO(), width=100, force_terminal=True,
                      color_system="standard")
    show_table(bill, by="layer", depth=3, console=console)
    text = console.file.getvalue()
    assert "\x1b[" in text and "holds" in text  # ANSI colours, rule checks


def test_plain_text_when_not_a_terminal_or_no_color(bill, capsys, monkeypatch):
    assert not use_colour(io.StringIO())
    show_table(bill, by="layer", depth=3, rules=False)  # capsys: not a terminal
    assert capsys.readouterr().out == bill.table("layer", 3, False) + "\n"
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour()
    show_rules([fg.Rule("r", 1.0, 2.0, False, "why")])
    assert capsys.readouterr().out == "  - r: measured 1, folklore 2 (differs). why\n"


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_progress_bar_colours_a_terminal_and_says_the_time_left(monkeypatch):
    out = _Terminal()
    bar = fg.training.Progress(10, stream=out)
    bar.update(5, loss=0.5)
    bar.update(10, loss=0.25, note="loss became non-finite at step 7")
    text = out.getvalue()
    assert "\x1b[32m" in text and "left" in text and "in all" in text  # green bar, times
    assert text.endswith("\n") and "non-finite at step 7" in text
    monkeypatch.setenv("NO_COLOR", "1")
    plain = _Terminal()
    fg.training.Progress(4, stream=plain).update(4, loss=1.0)
    assert "\x1b[32m" not in plain.getvalue() and "[####" in plain.getvalue()
    pipe = io.StringIO()  # not a terminal: one plain line a report
    fg.training.Progress(4, stream=pipe).update(4, loss=1.0)
    assert pipe.getvalue().startswith("train [####") and "\x1b" not in pipe.getvalue()

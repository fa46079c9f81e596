"""bill.plot: the report's charts as matplotlib figures (the plot extra)."""

from __future__ import annotations

import sys

import pytest

import flopgrad as fg
from flopgrad.models import MLP
from flopgrad.nn import functional as F
from flopgrad.report.tables import rows

pytest.importorskip("matplotlib")


def _bill():
    fg.manual_seed(0)
    model = MLP([64, 128, 10])
    with fg.profile() as bill:
        F.cross_entropy(model(fg.randn(32, 64)), fg.randint(0, 10, (32,))).backward()
    return bill


def test_each_kind_draws_the_bills_numbers(tmp_path):
    bill = _bill()
    layers = bill.plot("layers")
    n_layers = len([r for r in rows(bill, "layer", 3) if r.total])
    assert len(layers.axes[0].patches) == 5 * n_layers  # one bar per phase and layer
    memory = bill.plot("memory")
    assert len(memory.axes[0].collections) == 5  # the five categories
    roof = bill.plot("roofline")
    ops = [o for o in bill.roofline().ops if o.flops and o.bytes and o.measured > 0]
    assert len(roof.axes[0].lines[0].get_xdata()) == len(ops)
    for suffix in ("png", "svg"):
        path = tmp_path / f"layers.{suffix}"
        bill.plot("layers", path)
        assert path.stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layers.png", "layers.svg"]


def test_bad_kind_and_missing_matplotlib_are_clear_errors(monkeypatch):
    bill = _bill()
    with pytest.raises(ValueError, match="kind must be one of"):
        bill.plot("pie")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "flopgrad\[plot\]"'):
        bill.plot("layers")

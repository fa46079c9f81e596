"""Time beside FLOPs: bill.seconds, fg.machine, bill.roofline and the time-share rule."""

from __future__ import annotations

import pytest

import flopgrad as fg
from flopgrad.models import MLP
from flopgrad.nn import functional as F
from flopgrad.report.roofline import Machine


def _bill(events=True):
    fg.manual_seed(0)
    model = MLP([784, 128, 64, 10])
    x, y = fg.randn(64, 784), fg.randint(0, 10, (64,))
    with fg.profile(events=events) as bill:
        F.cross_entropy(model(x), y).backward()
    return bill


def test_seconds_add_up_and_filter_like_flops():
    bill = _bill()
    total = sum(ev[11] - ev[10] for ev in bill.events) / 1e9  # END - START
    assert bill.seconds() == pytest.approx(total)
    parts = bill.seconds("forward") + bill.seconds("backward")
    assert parts == pytest.approx(total)
    assert bill.seconds("backward", role="weight") + bill.seconds("backward", role="input") \
        == pytest.approx(bill.seconds("backward"))
    assert 0 < bill.seconds(op="matmul") < total
    agg = _bill(events=False)
    assert agg.seconds() > 0 and agg.seconds(op="matmul") > 0
    with pytest.raises(ValueError, match="phase must be one of"):
        bill.seconds("sideways")


def test_the_roofline_is_a_lower_bound_with_this_machines_and_a_gpus_figures():
    m = fg.machine()
    assert m is fg.machine()  # measured once
    assert m.peak_flops > 1e9 and m.bandwidth > 1e8 and m.ridge == m.peak_flops / m.bandwidth
    bill = _bill()
    r = bill.roofline()
    assert r.predicted <= r.measured
    by = {o.op: o for o in r.ops}
    mm = by["matmul"]
    assert mm.flops == bill.flops(op="matmul") and mm.bytes == bill.bytes(op="matmul")
    assert mm.roofline == pytest.approx(sum(
        max((c[0] + c[1]) / m.peak_flops, c[3] / m.bandwidth)
        for ev, c in zip(bill.events, bill.costs(), strict=True)
        if fg.ledger.attributed_op(ev) == "matmul"))
    assert by["relu"].intensity < mm.intensity  # elementwise: memory-bound
    assert r.far_below(1.0)  # on a small MLP, Python overhead puts ops below their roof
    h100 = bill.roofline(gpu="h100")
    assert h100.predicted < r.predicted and "H100" in str(h100)
    slow = Machine("slow", 1e9, 1e9)
    assert bill.roofline(slow).predicted > r.predicted
    with pytest.raises(KeyError, match="no bandwidth figures"):
        bill.roofline(gpu="l4")


def test_matmuls_share_of_time_differs_from_its_share_of_flops_on_a_small_model():
    bill = _bill()
    assert all("time" not in r.name for r in bill.rules())  # off by default: not deterministic
    rule = bill.rules(time=True)[-1]
    assert rule.name == "matmul's share of time beside its share of FLOPs"
    assert rule.folklore > 0.99  # matmul is >99% of the FLOPs
    assert 0 < rule.measured < 1 and "time" in rule.reason


def test_the_table_can_show_the_time_share_beside_the_flops_share():
    bill = _bill()
    text = bill.table(rules=False, time=True)
    assert text.splitlines()[0].endswith("time %")
    shares = [float(line.split()[-1].rstrip("%")) for line in text.splitlines()[2:5]]
    assert 0 < sum(shares) <= 100.1
    assert "time %" not in bill.table(rules=False)  # off by default

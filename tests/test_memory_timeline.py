"""The memory timeline (bill.timeline()), its Chrome-trace counters, and the memory rules."""

from __future__ import annotations

import json

import flopgrad as fg
from flopgrad.models import MLP
from flopgrad.nn import functional as F
from flopgrad.nn.utils import checkpoint_modules

PARTS = ("parameters", "gradients", "optimizer_state", "saved_activations", "temporaries")


def _step(model, batch: int, width: int = 32):
    x, y = fg.randn(batch, width), fg.randint(0, 10, (batch,))
    with fg.profile() as bill:
        F.cross_entropy(model(x), y).backward()
    return bill


def test_the_timeline_adds_up_and_its_peak_is_the_bills():
    fg.manual_seed(0)
    bill = _step(MLP([32, 64, 64, 10]), 128)
    rows = bill.timeline()
    assert rows and all(sum(r[k] for k in PARTS) == r["live_bytes"] for r in rows)
    assert all(r["temporaries"] >= 0 and r["saved_activations"] >= 0 for r in rows)
    peak = max(rows, key=lambda r: r["live_bytes"])
    assert peak["live_bytes"] == bill.peak_bytes
    assert peak["saved_activations"] == bill.memory_breakdown()["saved_activations_at_peak"]
    assert [r["op_index"] for r in rows] == sorted(r["op_index"] for r in rows)
    assert {r["phase"] for r in rows} == {"forward", "backward"}
    assert any(r["scope"].startswith("fc") for r in rows)


def test_the_chrome_trace_carries_the_breakdown_as_counters(tmp_path):
    fg.manual_seed(0)
    bill = _step(MLP([32, 64, 10]), 16)
    bill.to_chrome_trace(tmp_path / "t.json")
    counters = [e for e in json.loads((tmp_path / "t.json").read_text())["traceEvents"]
                if e["ph"] == "C" and e["name"] == "memory by category"]
    assert len(counters) == len(bill.timeline())
    assert set(counters[0]["args"]) == set(PARTS)


def test_the_memory_rule_measures_seed_004s_claim_both_ways():
    fg.manual_seed(0)
    model = MLP([32, 256, 256, 10])
    big = next(r for r in _step(model, 4096).rules() if r.name.startswith("activations"))
    small = next(r for r in _step(model, 2).rules() if r.name.startswith("activations"))
    assert big.holds and big.measured > 0.4  # a large batch: activations are the main cost
    assert not small.holds and "outweigh" in small.reason  # batch 2: the weights are


def test_the_checkpoint_rule_says_what_recomputing_cost():
    fg.manual_seed(0)
    model = MLP([32, 64, 64, 64, 10], activation="tanh")
    checkpoint_modules(model, ["act1", "act2", "act3"])
    bill = _step(model, 64)
    rule = next(r for r in bill.rules() if r.name.startswith("checkpointing"))
    work = bill.flops("forward") + bill.flops("backward")
    assert rule.measured == bill.flops("recompute") / work
    assert rule.holds and "more FLOPs" in rule.reason
    assert bill.ledger.recomputed_saved_bytes == 3 * 64 * 64 * 4  # each tanh output, again
    assert not [r for r in _step(MLP([32, 10]), 4).rules() if r.name.startswith("checkpoint")]

"""fg.plan_checkpoints: optimal against brute force, predictions equal to measured runs;
Korthikanti et al.'s activation memory; binomial schedules against an exact program."""

from __future__ import annotations

import itertools
import math

import pytest

import flopgrad as fg
from flopgrad.models import GPT, GPTConfig
from flopgrad.nn.utils import checkpoint_modules
from flopgrad.planning import step_bill

WIDTHS = (8, 40, 24, 64, 16, 48, 32, 56)


def _chain(hidden, d=16):
    fg.manual_seed(0)
    return fg.nn.Sequential(*[fg.nn.Sequential(fg.nn.Linear(d, h), fg.nn.Tanh(),
                                               fg.nn.Linear(h, d), fg.nn.Tanh())
                              for h in hidden])


def _step(model):
    fg.manual_seed(1)
    model(fg.randn(32, 16)).sum().backward()


def _measured(model, subset) -> tuple[int, int]:
    checkpoint_modules(model, list(subset))
    for p in model.parameters():
        p.grad = None
    with fg.profile() as bill:
        _step(model)
    checkpoint_modules(model, [])
    return bill.peak_bytes, bill.flops("recompute")


@pytest.mark.parametrize("n_blocks", [6, 8])
def test_the_plan_is_optimal_and_its_predictions_are_measured(n_blocks):
    model = _chain(WIDTHS[:n_blocks])
    paths = [str(k) for k in range(n_blocks)]
    measured = {s: _measured(model, s) for r in range(n_blocks + 1)
                for s in itertools.combinations(paths, r)}
    roomy = fg.plan_checkpoints(model, _step, "1GiB")
    for subset, (peak, flops) in measured.items():  # the model of the step is exact
        assert roomy.predict(subset) == (peak, flops), subset
    lowest = min(p for p, _ in measured.values())
    highest = max(p for p, _ in measured.values())
    for budget in sorted({lowest, (lowest + highest) // 2, highest - 1, highest,
                          lowest + (highest - lowest) // 4}):
        fits = {s: f for s, (p, f) in measured.items() if p <= budget}
        plan = fg.plan_checkpoints(model, _step, budget)
        assert plan.recompute_flops == min(fits.values())  # brute force agrees
        assert (plan.peak_bytes, plan.recompute_flops) == measured[tuple(plan.modules)]
        assert plan.peak_bytes == plan.predicted_peak_bytes <= budget
        assert plan.baseline_peak_bytes == measured[()][0]
    with pytest.raises(fg.memory.CheckpointBudgetError,
                       match="smallest peak reachable is .* holding parameters"):
        fg.plan_checkpoints(model, _step, lowest - 1)
    assert not any(m._checkpointed for m in model.modules())  # the model is left as it was


def test_apply_then_a_profiled_step_measures_the_plan():
    model = _chain(WIDTHS[:6])
    roomy = fg.plan_checkpoints(model, _step, 10**9)
    lowest, _ = roomy.predict([c.path for c in roomy.candidates])
    plan = fg.plan_checkpoints(model, _step, (lowest + roomy.peak_bytes) // 2)
    assert plan.modules and plan.apply(model) == plan.modules
    with fg.profile() as bill:
        _step(model)
    assert (bill.peak_bytes, bill.flops("recompute")) == (plan.peak_bytes, plan.recompute_flops)
    assert "peak memory" in plan.table() and plan.modules[0] in str(plan)


def test_a_gpt_plan_predicts_every_subset_exactly():
    fg.manual_seed(0)
    model = GPT(GPTConfig(3, 2, 32, 16, 50))
    idx = fg.randint(0, 50, (4, 16))

    def step(m):
        m(idx, targets=idx)[1].backward()

    plan = fg.plan_checkpoints(model, step, "1GiB")
    assert [c.path for c in plan.candidates] == ["blocks.0", "blocks.1", "blocks.2"]
    for r in range(4):
        for subset in itertools.combinations(["blocks.0", "blocks.1", "blocks.2"], r):
            checkpoint_modules(model, list(subset))
            with fg.profile() as bill:
                step(model)
            checkpoint_modules(model, [])
            for p in model.parameters():
                p.grad = None
            assert plan.predict(subset) == (bill.peak_bytes, bill.flops("recompute")), subset


def test_bad_budgets_and_candidates_are_clear_errors():
    model = _chain(WIDTHS[:2])
    for bad, err in (("lots", ValueError), (-5, ValueError), (True, TypeError), ([], TypeError)):
        with pytest.raises(err, match="memory budget"):
            fg.plan_checkpoints(model, _step, bad)
    with pytest.raises(ValueError, match="no submodule 'x'"):
        fg.plan_checkpoints(model, _step, "1GB", candidates=["x"])
    with pytest.raises(ValueError, match="nested"):
        fg.plan_checkpoints(model, _step, "1GB", candidates=["0", "0.1"])
    with pytest.raises(ValueError, match="one after another"):
        fg.plan_checkpoints(model, _step, "1GB", candidates=["1", "0"])
    assert fg.memory.parse_bytes("80GiB") == 80 * 2**30 and fg.memory.parse_bytes("2.5 GB") == 2.5e9


def _activation_bytes_per_layer(bill, layer: int = 0) -> int:
    """Bytes a block's forward saves for backward that are not its parameters."""
    scope = f"blocks.{layer}"
    return sum(e["bytes"] for e in bill.saved()
               if (e["scope"] == scope or e["scope"].startswith(scope + "."))
               and not e["leaf"] and e["phase"] == "forward")


def test_activation_memory_beside_korthikanti_et_al():
    """s·b·h·(34 + 5·a·s/h) bytes per layer in fp16 with dropout (Korthikanti et al. 2022,
    Table 2); flopgrad bills float32 (x2) and keeps no dropout masks or dropout outputs when
    dropout is 0 (2·s·b·h + a·s²·b of masks, 2·a·s²·b of softmax-dropout output): 64·s·b·h +
    4·a·s²·b (the causal mask is a where whose gradient needs no saved value). Selective
    recompute keeps 34·s·b·h in fp16 with dropout, 64·s·b·h here."""
    s, b, h, a = 64, 2, 96, 4
    cfg = GPTConfig(n_layer=2, n_head=a, d_model=h, ctx=s, vocab=128)
    korthikanti = s * b * h * (34 + 5 * a * s / h)
    no_dropout_fp32 = 2 * (korthikanti - (2 * s * b * h + a * s * s * b) - 2 * a * s * s * b)
    plain, _ = step_bill(cfg, batch=b)
    assert _activation_bytes_per_layer(plain) == no_dropout_fp32
    assert no_dropout_fp32 == 64 * s * b * h + 4 * a * s * s * b
    selective, _ = step_bill(GPTConfig(**{**cfg.to_dict(), "checkpoint": "selective"}), batch=b)
    kept = _activation_bytes_per_layer(selective)
    assert kept == 64 * s * b * h == 2 * (34 - 2) * s * b * h
    full, _ = step_bill(GPTConfig(**{**cfg.to_dict(), "checkpoint": "full"}), batch=b)
    assert full.flops("recompute") > selective.flops("recompute") > 0


def test_gpt3_175b_activation_memory_per_layer_with_and_without_selective_recompute():
    s, b, h, a = 2048, 1, 12288, 96
    cfg = GPTConfig(n_layer=2, n_head=a, d_model=h, ctx=s, vocab=50257)  # GPT-3's layers
    plain, _ = step_bill(cfg, batch=b)
    selective, _ = step_bill(GPTConfig(**{**cfg.to_dict(), "checkpoint": "selective"}))
    assert _activation_bytes_per_layer(plain) == 64 * s * b * h + 4 * a * s * s * b
    assert _activation_bytes_per_layer(selective) == 64 * s * b * h
    korthikanti = s * b * h * (34 + 5 * a * s / h)  # fp16 with dropout: 2.87 GB a layer
    # a·s/h = 16: float32 without dropout keeps (64 + 4·16) / (34 + 5·16) = 1.12x Korthikanti's
    assert _activation_bytes_per_layer(plain) / korthikanti == pytest.approx(128 / 114)


def test_a_gpt3_175b_plan_in_meta_mode():
    cfg = GPTConfig(96, 96, 12288, 2048, 50257)
    with fg.meta():
        model = GPT(cfg)
    idx = fg.randint(0, cfg.vocab, (8, cfg.ctx), device="meta")  # at batch 1 weights and
    # gradients (1.4 TB in float32) hold the peak, and no checkpointing lowers it

    def step(m):
        m(idx, targets=idx)[1].backward()

    roomy = fg.plan_checkpoints(model, step, "100TiB")
    full_peak, full_flops = roomy.predict([c.path for c in roomy.candidates])
    target = (roomy.baseline_peak_bytes + full_peak) // 2
    plan = fg.plan_checkpoints(model, step, target)
    assert plan.peak_bytes == plan.predicted_peak_bytes <= target
    assert 0 < plan.recompute_flops < full_flops
    assert len(plan.modules) < 96
    per_layer = roomy.candidates[0].retained
    assert per_layer[0] > per_layer[1]  # checkpointing a block keeps only its input


def test_binomial_schedules_are_optimal():
    assert fg.memory.binomial_forward_steps(100, 19) == 179
    assert fg.memory.uniform_forward_steps(100, 10) == 99 + 90
    for n in range(1, 60):
        for slots in range(1, 6):
            t = fg.memory.binomial_forward_steps(n, slots)
            assert t == fg.memory.optimal_forward_steps(n, slots), (n, slots)
            schedule = fg.memory.binomial_schedule(n, slots)
            assert schedule.forward_steps == t and schedule.max_slots_used() <= slots
            _replay(schedule)
    r = 3  # the closed form by hand for n = 10, s = 2: C(2 + 3, 2) = 10 >= 10
    assert fg.memory.binomial_forward_steps(10, 2) == r * 10 - math.comb(2 + r, 3)


def _replay(schedule) -> None:
    """Run the actions on a chain: every step reversed once, last to first, from a state
    that is there."""
    stored, here, reversed_ = {0}, 0, []
    for action in schedule.actions:
        kind, i = action[0], action[1]
        if kind == "store":
            assert here == i
            stored.add(i)
        elif kind == "advance":
            assert here == i or i in stored
            here = action[2]
        elif kind == "reverse":
            assert here == i or i in stored
            reversed_.append(i)
            here = None
        else:
            stored.discard(i)
    assert reversed_ == list(range(schedule.n_steps - 1, -1, -1))

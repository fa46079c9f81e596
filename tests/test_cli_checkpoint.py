"""`flopgrad bill|budget --checkpoint {none,full,selective,auto} [--memory-budget]`."""

from __future__ import annotations

import re

import pytest

import flopgrad as fg
from flopgrad.cli import main
from flopgrad.models import GPTConfig
from flopgrad.report import human_bytes

SMALL = ["--n-layer", "4", "--n-head", "2", "--d-model", "64", "--ctx", "64", "--vocab", "32",
         "--batch", "16"]


def _peaks(out: str) -> tuple[str, str]:
    m = re.search(r"checkpoint \w+: peak memory (.+?) -> (.+?), FLOPs", out)
    assert m, out
    return m.group(1), m.group(2)


@pytest.mark.parametrize("policy", ["full", "selective"])
def test_bill_shows_peak_and_flops_before_and_after(policy, capsys):
    assert main(["bill", *SMALL, "--checkpoint", policy]) == 0
    out = capsys.readouterr().out
    before, after = _peaks(out)
    base, _ = fg.planning.step_bill(GPTConfig(4, 2, 64, 64, 32), batch=16)
    ckpt, _ = fg.planning.step_bill(GPTConfig(4, 2, 64, 64, 32, checkpoint=policy), batch=16)
    assert (before, after) == (human_bytes(base.peak_bytes), human_bytes(ckpt.peak_bytes))


def test_bill_auto_plans_under_the_budget_and_says_so(capsys):
    assert main(["bill", *SMALL, "--checkpoint", "auto", "--memory-budget", "15MiB"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint plan under 15 MiB: 2 of 4 candidates" in out
    plan = fg.planning.plan_gpt_checkpoints(GPTConfig(4, 2, 64, 64, 32), "15MiB", batch=16)
    assert _peaks(out)[1] == human_bytes(plan.peak_bytes)


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint", "auto"], "needs a memory budget"),
    (["--memory-budget", "1GB"], "--memory-budget is the budget of --checkpoint auto"),
    (["--checkpoint", "auto", "--memory-budget", "lots"], "cannot read 'lots'"),
    (["--checkpoint", "auto", "--memory-budget", "1MB"], "smallest peak reachable"),
    (["--checkpoint", "some"], "invalid choice"),
])
def test_bad_checkpoint_options_are_one_line_errors(argv, message, capsys):
    assert main(["bill", *SMALL, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_budget_counts_the_recompute_per_token(capsys):
    assert main(["budget", "--model", "gpt2", "--tokens", "1e9"]) == 0
    plain = capsys.readouterr().out
    assert main(["budget", "--model", "gpt2", "--tokens", "1e9", "--checkpoint", "full"]) == 0
    full = capsys.readouterr().out
    per_token = [float(re.search(r"FLOPs \(([0-9.e+]+) per token", o).group(1))
                 for o in (plain, full)]
    assert per_token[1] > per_token[0] and "checkpoint full" in full
    b = fg.budget(model="gpt2", tokens=1e9, checkpoint="full")
    assert b.memory_breakdown["activations"] < fg.budget(model="gpt2", tokens=1e9
                                                         ).memory_breakdown["activations"]
    with pytest.raises(ValueError, match="needs model="):
        fg.budget(params=1e9, tokens=1e9, checkpoint="full")
    assert main(["budget", "--params", "1e9", "--tokens", "1e9", "--checkpoint", "full"]) == 2

"""flopgrad.torch.profile: the Bill of ordinary PyTorch code."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import flopgrad as fg
import flopgrad.torch as fgt
from flopgrad.models import MLP
from flopgrad.nn import functional as F


def _torch_mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(),
                               torch.nn.Linear(128, 64), torch.nn.ReLU(),
                               torch.nn.Linear(64, 10))


def test_tensor_flops_equal_flop_counter_mode_and_the_native_bill():
    model = _torch_mlp()
    x, y = torch.randn(32, 784), torch.randint(0, 10, (32,))
    with fgt.profile(model) as bill:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    ours = bill.flops("forward", kind="tensor") + bill.flops("backward", kind="tensor")
    assert ours == counter.get_total_flops()
    fg.manual_seed(0)
    native_model = MLP([784, 128, 64, 10])
    with fg.profile() as native:
        F.cross_entropy(native_model(fg.randn(32, 784)), fg.randint(0, 10, (32,))).backward()
    for phase, role in (("forward", None), ("backward", "weight"), ("backward", "input")):
        assert bill.flops(phase, role=role, kind="tensor") == native.flops(
            phase, role=role, kind="tensor"), (phase, role)
    assert bill.flops("forward", op="matmul") == native.flops("forward", op="matmul")


def test_phases_scopes_and_roles():
    model = _torch_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with fgt.profile(model) as bill:
        torch.nn.functional.cross_entropy(model(torch.randn(8, 784)),
                                          torch.randint(0, 10, (8,))).backward()
        opt.step()
    assert bill.flops("optimizer") > 0 and bill.flops("backward") > 0
    scopes = {r.key for r in bill.rows("scope")}
    assert {"0", "2", "4"} <= scopes
    # dW of the first layer: the weight's GEMM and the bias's sum over the batch
    assert bill.flops("backward", role="weight", scope="0") == 2 * 8 * 784 * 128 + 7 * 128
    assert bill.flops("backward", role="input", scope="0", kind="tensor") == 0  # data: no dX
    assert bill.unknown_ops() == []


def test_ops_without_a_formula_are_listed_not_counted_as_zero():
    x = torch.randn(4, 5, requires_grad=True)
    with fgt.profile() as bill:
        torch.cumprod(x, 1).sum().backward()
    assert "cumprod" in bill.unknown_ops()
    assert "UNKNOWN COST" in bill.table()


def test_saved_bytes_of_100_linears_on_the_meta_device():
    """torchinfo#144: 100 applications of one Linear(1024, 1024) to a float32 (10240, 1024)
    input save 4,194,304,000 bytes of activations for backward (the tool printed 84 MB)."""
    with torch.device("meta"):
        layer = torch.nn.Linear(1024, 1024)
        x = torch.randn(10240, 1024)
    start = time.perf_counter()
    with fgt.profile(layer) as bill:
        h = x
        for _ in range(100):
            h = layer(h)
    assert time.perf_counter() - start < 5  # well under a second when the machine is idle
    saved = [e for e in bill.saved() if not e["leaf"]]
    assert sum(e["bytes"] for e in saved) == 4_194_304_000
    assert all(e["shape"] == (10240, 1024) for e in saved)
    assert bill.flops("forward", kind="tensor") == 100 * 2 * 10240 * 1024 * 1024


def test_values_are_untouched():
    model = _torch_mlp()
    x = torch.randn(4, 784)
    plain = model(x).detach().numpy()
    with fgt.profile(model):
        inside = model(x).detach().numpy()
    assert np.array_equal(plain, inside)
    with pytest.raises(TypeError):
        fgt.profile(model=3)


def test_the_core_never_imports_torch():
    import subprocess
    import sys

    code = ("import sys, flopgrad; flopgrad.plan('gpt2', gpus=8, batch=64); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("groups", [1, 4])
def test_convolution_against_flop_counter_mode_and_the_native_conv(groups):
    """torch 2.13's FlopCounterMode bills a grouped convolution's weight gradient `groups`
    times too high; flopgrad's count is the native conv's."""
    conv = torch.nn.Conv2d(8, 16, 3, padding=1, groups=groups)
    x = torch.randn(2, 8, 8, 8, requires_grad=True)
    with fgt.profile(conv) as bill:
        conv(x).sum().backward()
    with FlopCounterMode(display=False) as counter:
        conv(x).sum().backward()
    counts = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    fwd = bill.flops("forward", kind="tensor")
    dx = bill.flops("backward", role="input", kind="tensor")
    dw = bill.flops("backward", role="weight", kind="tensor")
    assert fwd == counts["aten.convolution"] == dx == dw
    assert counts["aten.convolution_backward"] == dx + groups * dw
    native_conv = fg.nn.Conv2d(8, 16, 3, padding=1, groups=groups)
    xn = fg.randn(2, 8, 8, 8, requires_grad=True)
    with fg.profile() as native:
        native_conv(xn).sum().backward()
    assert native.flops("forward", kind="tensor") == fwd
    assert native.flops("backward", role="weight", kind="tensor") == dw
    assert native.flops("backward", role="input", kind="tensor") == dx

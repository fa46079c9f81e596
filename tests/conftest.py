"""Shared helpers for comparing flopgrad with PyTorch (CPU, float64).

A test case is a pair of functions with the same signature, one written with flopgrad and
one with torch, plus input specs. `check_against_torch` runs both on the same float64
values and compares outputs, reverse-mode gradients (backward with a random cotangent)
and forward-mode JVPs (fg.jvp against torch.func.jvp with random tangents).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

import flopgrad as fg

RTOL = 1e-7
ATOL = 1e-10


# ---------------------------------------------------------------- input specs

def real(*shape) -> Callable:
    """Standard normal values."""
    return lambda rng: rng.standard_normal(shape)


def pos(*shape, lo: float = 0.5, hi: float = 2.0) -> Callable:
    """Values in [lo, hi): for log, sqrt, division, pow bases."""
    return lambda rng: rng.uniform(lo, hi, shape)


def unit(*shape) -> Callable:
    """Values in (-0.9, 0.9)."""
    return lambda rng: rng.uniform(-0.9, 0.9, shape)


def fixed(values) -> Callable:
    """Exactly these values (ties, zeros, bounds)."""
    arr = np.array(values, dtype=np.float64)
    return lambda rng: arr.copy()


def away_from(points, *shape, gap: float = 0.05) -> Callable:
    """Normal values pushed at least `gap` away from each kink in `points` (relu, clamp)."""
    def make(rng):
        x = rng.standard_normal(shape)
        for p in points:
            near = np.abs(x - p) < gap
            x = np.where(near, p + np.where(x >= p, gap, -gap) * 2, x)
        return x
    return make


def make_inputs(specs, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.asarray(s(rng), dtype=np.float64) for s in specs]


def noncontiguous(arr: np.ndarray) -> np.ndarray:
    """The same values in a transposed, strided view (neither C- nor F-contiguous)."""
    if arr.ndim == 0:
        return arr
    rev = arr.T
    k = int(np.argmax(rev.shape))  # stride over the longest dim, so the view is not contiguous
    big = list(rev.shape)
    big[k] *= 2
    buf = np.zeros(big)
    view = buf[(slice(None),) * k + (slice(None, None, 2),)]
    view[...] = rev
    out = view.T
    assert out.shape == arr.shape
    contiguous = out.flags.c_contiguous or out.flags.f_contiguous
    assert max(arr.shape) <= 1 or arr.size == 0 or not contiguous
    return out


# ---------------------------------------------------------------- conversions

def to_torch(arr: np.ndarray, requires_grad: bool = False) -> torch.Tensor:
    t = torch.tensor(np.array(arr), dtype=torch.float64)
    return t.requires_grad_(requires_grad)


def to_fg(arr: np.ndarray, requires_grad: bool = False) -> fg.Tensor:
    """A flopgrad tensor sharing `arr`'s memory (keeps a non-contiguous layout)."""
    t = fg.from_numpy(arr)
    assert t.dtype == np.float64
    return t.requires_grad_(requires_grad)


def tt(values, dtype=None) -> torch.Tensor:
    """A torch constant from NumPy values (index arrays, masks, targets)."""
    return torch.as_tensor(np.array(values), dtype=dtype)


def ft(values, dtype=None) -> fg.Tensor:
    """A flopgrad constant from NumPy values."""
    return fg.tensor(np.array(values), dtype=dtype)


def as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().numpy()
    if isinstance(x, fg.Tensor):
        return x.detach().numpy()
    return np.asarray(x)


def outputs(out) -> list:
    return list(out) if isinstance(out, list | tuple) else [out]


def assert_close(actual, expected, what: str, rtol: float = RTOL, atol: float = ATOL) -> None:
    a, e = as_numpy(actual), as_numpy(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != torch's {e.shape}"
    assert a.dtype == e.dtype, f"{what}: dtype {a.dtype} != torch's {e.dtype}"
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


# ---------------------------------------------------------------- the comparison

@dataclass
class Case:
    """One op under test: flopgrad and torch functions of the same float64 inputs."""

    name: str
    fg_fn: Callable
    torch_fn: Callable
    inputs: list
    grad: bool = True  # compare reverse-mode gradients
    jvp: bool = True  # compare forward-mode tangents
    gradcheck: bool = True  # finite differences (off at kinks and ties)
    rtol: float = RTOL
    atol: float = ATOL
    marks: list = field(default_factory=list)

    def param(self):
        return pytest.param(self, id=self.name, marks=self.marks)


def check_against_torch(case: Case, arrays: list[np.ndarray], seed: int = 0) -> None:
    """Values, gradients (random cotangent) and JVPs (random tangents) against torch."""
    rng = np.random.default_rng(seed + 1000)
    tol = {"rtol": case.rtol, "atol": case.atol}

    # values and reverse mode
    originals = [a.copy() for a in arrays]
    fx = [to_fg(a, requires_grad=case.grad) for a in arrays]
    tx = [to_torch(a, requires_grad=case.grad) for a in arrays]
    f_out, t_out = outputs(case.fg_fn(*fx)), outputs(case.torch_fn(*tx))
    assert len(f_out) == len(t_out), f"{case.name}: {len(f_out)} outputs, torch {len(t_out)}"
    for k, (f, t) in enumerate(zip(f_out, t_out, strict=True)):
        assert_close(f, t, f"{case.name}: output {k}", **tol)

    if case.grad:
        pairs = [(f, t) for f, t in zip(f_out, t_out, strict=True) if t.requires_grad]
        assert pairs, f"{case.name}: no differentiable output"
        for f, _ in pairs:
            assert f.requires_grad, f"{case.name}: flopgrad output does not require grad"
        cots = [rng.standard_normal(t.shape) for _, t in pairs]
        fg.autograd.backward([f for f, _ in pairs], [fg.from_numpy(c) for c in cots])
        torch.autograd.backward([t for _, t in pairs], [torch.from_numpy(c) for c in cots])
        for k, (f, t) in enumerate(zip(fx, tx, strict=True)):
            expected = t.grad if t.grad is not None else torch.zeros_like(t)
            got = f.grad if f.grad is not None else np.zeros_like(f._data)
            assert_close(got, expected, f"{case.name}: gradient of input {k}", **tol)

    for a, o in zip(arrays, originals, strict=True):
        np.testing.assert_array_equal(a, o, err_msg=f"{case.name}: an input was modified")

    # forward mode
    if case.jvp:
        tangents = [rng.standard_normal(a.shape) for a in arrays]
        f_prim = [to_fg(a) for a in arrays]
        t_prim = tuple(to_torch(a) for a in arrays)
        f_val, f_tan = fg.jvp(case.fg_fn, tuple(f_prim), tuple(fg.from_numpy(t) for t in tangents))
        t_val, t_tan = torch.func.jvp(case.torch_fn, t_prim,
                                      tuple(torch.from_numpy(t) for t in tangents))
        for k, (f, t) in enumerate(zip(outputs(f_val), outputs(t_val), strict=True)):
            assert_close(f, t, f"{case.name}: jvp primal output {k}", **tol)
        for k, (f, t) in enumerate(zip(outputs(f_tan), outputs(t_tan), strict=True)):
            assert_close(f, t, f"{case.name}: jvp tangent {k}", **tol)

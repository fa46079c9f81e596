"""Every binary op over random broadcastable shape pairs (hypothesis), against PyTorch.

Shapes include 0-d, size-1 and size-0 dims; both operands get gradients (reduced back over
the broadcast dims by the engine) and tangents; some examples use strided inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import Case, check_against_torch, noncontiguous, pos, real
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import flopgrad as fg

BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b, real, real),
    "sub": (lambda a, b: a - b, lambda a, b: a - b, real, real),
    "mul": (lambda a, b: a * b, lambda a, b: a * b, real, real),
    "div": (lambda a, b: a / b, lambda a, b: a / b, real, pos),
    "pow": (lambda a, b: a ** b, lambda a, b: a ** b, pos, real),
    "maximum": (fg.maximum, torch.maximum, real, real),
    "minimum": (fg.minimum, torch.minimum, real, real),
}

SHAPES = mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, min_side=0,
                                       max_side=3)
SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)


@pytest.mark.parametrize("name", list(BINARY))
@SETTINGS
@given(shapes=SHAPES, seed=st.integers(0, 2**16), strided=st.booleans())
def test_binary_op_broadcasting(name, shapes, seed, strided):
    f, t, dom_a, dom_b = BINARY[name]
    shape_a, shape_b = shapes.input_shapes
    case = Case(f"{name}{shape_a}{shape_b}", f, t, [dom_a(*shape_a), dom_b(*shape_b)])
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(spec(rng), dtype=np.float64) for spec in case.inputs]
    if strided:
        arrays = [noncontiguous(a) for a in arrays]
    check_against_torch(case, arrays, seed=seed)


@SETTINGS
@given(shapes=mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=4, min_side=0,
                                            max_side=3),
       seed=st.integers(0, 2**16), strided=st.booleans())
def test_where_broadcasting(shapes, seed, strided):
    shape_c, shape_x, shape_y = shapes.input_shapes
    rng = np.random.default_rng(seed)
    cond = rng.random(shape_c) < 0.5
    case = Case(f"where{shape_c}{shape_x}{shape_y}",
                lambda x, y: fg.where(fg.tensor(cond), x, y),
                lambda x, y: torch.where(torch.as_tensor(cond), x, y),
                [real(*shape_x), real(*shape_y)])
    arrays = [np.asarray(spec(rng), dtype=np.float64) for spec in case.inputs]
    if strided:
        arrays = [noncontiguous(a) for a in arrays]
    check_against_torch(case, arrays, seed=seed)


def _with_scalar(fn, scalar, first, as_tensor):
    """fn with one operand fixed to a Python scalar (a 0-d tensor where torch needs one)."""
    c = torch.tensor(scalar, dtype=torch.float64) if as_tensor else scalar
    return (lambda x: fn(c, x)) if first else (lambda x: fn(x, c))


@pytest.mark.parametrize("name", list(BINARY))
@SETTINGS
@given(shape=st.lists(st.integers(0, 3), max_size=3).map(tuple),
       scalar=st.floats(0.25, 3.0), first=st.booleans(), seed=st.integers(0, 2**16))
def test_binary_op_with_python_scalar(name, shape, scalar, first, seed):
    f, t, dom_a, dom_b = BINARY[name]
    needs_tensor = name in ("maximum", "minimum")  # torch.maximum takes no Python scalar
    case = Case(f"{name}-scalar", _with_scalar(f, scalar, first, False),
                _with_scalar(t, scalar, first, needs_tensor), [(dom_b if first else dom_a)(*shape)])
    arrays = [np.asarray(case.inputs[0](np.random.default_rng(seed)), dtype=np.float64)]
    check_against_torch(case, arrays, seed=seed)

"""The primitive op registry: flopgrad's single table of derivative and cost rules.

Each primitive is declared once with
- `forward(*arrays, *params)` on backend arrays,
- `vjp(node, g, i)`: the gradient for input slot `i`, written with flopgrad ops so the
  backward pass is itself a sequence of counted (and differentiable) primitives,
- `jvp(primals, tangents)`: the output tangent (forward mode), also with flopgrad ops,
- `uses`: for each input slot, which values its gradient needs (input indices; -1 is the
  output). Only those are saved for backward, so saved memory is exact.
- `cost`: a named formula of `flopgrad.costs`, `(out_shape, in_shapes, params) -> Cost`
  (tensor FLOPs, other FLOPs, transcendentals); bytes read and written are counted
  centrally from the arrays (zero for views),
- `meta`: the shape rule on shape-only arrays (a function of `flopgrad.shapes`).

The declarations live by family (elementwise, movement, reduce, contract, fused); the
NumPy code they run is in `flopgrad.kernels`. Every primitive is importable from here
(`flopgrad.ops.ADD`). The engine reduces a gradient to its input's shape when
broadcasting made it larger, so the vjps return gradients in the shape of the output's
broadcast.
"""

from __future__ import annotations

from flopgrad.ops._op import REGISTRY, Op, prim, size
from flopgrad.ops.contract import (
    EINSUM,
    EINSUM1,
    MATMUL,
)
from flopgrad.ops.elementwise import (
    ABS,
    ADD,
    ADD_,
    CAST,
    CEIL,
    CLAMP,
    CLAMP_T,
    COS,
    DIV,
    DIV_,
    DIV_ROUND,
    EQ,
    ERF,
    EXP,
    FLOOR,
    GE,
    GT,
    LE,
    LOG,
    LOG1P,
    LOGICAL_AND,
    LOGICAL_NOT,
    LOGICAL_OR,
    LT,
    MAXIMUM,
    MINIMUM,
    MUL,
    MUL_,
    NE,
    NEG,
    POW,
    POW_SCALAR,
    RELU,
    RELU_BACKWARD,
    ROUND,
    RSQRT,
    SIGMOID,
    SIGN,
    SIN,
    SQRT,
    SUB,
    SUB_,
    TANH,
    TRUNC,
    WHERE,
)
from flopgrad.ops.fused import (
    CROSS_ENTROPY,
    GELU,
    GELU_GRAD,
    LAYER_NORM,
    LAYER_NORM_DX,
    LINEAR,
    LOG_SOFTMAX,
    SOFTMAX,
)
from flopgrad.ops.movement import (
    CAT,
    EXPAND,
    FLIP,
    FOLD,
    GETITEM,
    INDEX,
    INDEX_PUT,
    PAD,
    PERMUTE,
    RESHAPE,
    ROLL,
    UNFOLD,
)
from flopgrad.ops.reduce import (
    ALL,
    AMAX,
    AMIN,
    ANY,
    ARGMAX,
    ARGMIN,
    CUMSUM,
    MAX_ALL,
    MIN_ALL,
    PROD,
    PROD_OTHERS,
    SUM,
    SUM_F32,
)

__all__ = [
    "REGISTRY", "Op", "prim", "size", "ADD", "SUB", "MUL", "DIV", "DIV_ROUND", "FLOOR",
    "CEIL", "TRUNC", "ROUND", "POW", "MAXIMUM", "MINIMUM", "EQ", "NE", "LT", "LE", "GT",
    "GE", "LOGICAL_AND", "LOGICAL_OR", "LOGICAL_NOT", "SIGN", "WHERE", "ADD_", "SUB_",
    "MUL_", "DIV_", "NEG", "EXP", "LOG", "LOG1P", "SQRT", "ABS", "SIN", "COS", "TANH",
    "SIGMOID", "ERF", "RELU", "RELU_BACKWARD", "POW_SCALAR", "RSQRT", "CLAMP", "CLAMP_T",
    "CAST", "RESHAPE", "PERMUTE", "EXPAND", "FLIP", "ROLL", "GETITEM", "INDEX", "INDEX_PUT",
    "CAT", "PAD", "UNFOLD", "FOLD", "SUM", "SUM_F32", "AMAX", "AMIN", "MAX_ALL", "MIN_ALL",
    "PROD_OTHERS", "PROD", "CUMSUM", "ARGMAX", "ARGMIN", "ALL", "ANY", "MATMUL", "EINSUM",
    "EINSUM1", "LAYER_NORM", "LAYER_NORM_DX", "GELU", "GELU_GRAD", "SOFTMAX", "LOG_SOFTMAX",
    "CROSS_ENTROPY", "LINEAR",
]

_missing = sorted(op.key for op in REGISTRY.values() if op.meta is None)
if _missing:  # pragma: no cover - guarded by a test as well
    raise RuntimeError(f"primitives without a shape rule: {_missing}")

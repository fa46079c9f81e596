"""fg.autocast: mixed precision by op, PyTorch's CUDA autocast lists (the bill is for GPUs).

Inside `with fg.autocast(dtype=fg.bfloat16):` each primitive's floating inputs are cast by
its entry in POLICY before it runs; the casts are ops of their own (billed: bytes, no FLOPs;
their backward casts the gradient back, so weights get float32 gradients):
- "lower": matmul, F.linear and einsum (hence conv and attention) run on the low dtype;
  their float32 accumulation is the kernels' (flopgrad computes bfloat16 contractions in
  float32 and rounds the result once), their output is low precision;
- "fp32": softmax, log_softmax, layer norm, cross-entropy, sums and the transcendental
  functions PyTorch keeps in float32 (exp, log, pow, rsqrt, ...) run in float32;
- every other op runs in whatever dtype its inputs have (promotion: bfloat16 with float32
  is float32, as in PyTorch's "promote" list).

PyTorch's CPU autocast lists differ: they keep softmax, layer_norm, sum and the pointwise
functions in bfloat16 (only some losses and reductions go to float32). flopgrad follows the
CUDA lists. Unlike PyTorch, a weight used twice in one region is cast twice (no cache).

>>> import flopgrad as fg
>>> x, w = fg.randn(4, 8), fg.nn.Parameter(fg.randn(3, 8))
>>> with fg.autocast(dtype=fg.bfloat16):
...     y = fg.nn.functional.linear(x, w)
...     p = y.softmax(-1)
>>> y.dtype, p.dtype
(dtype(bfloat16), dtype('float32'))
"""

from __future__ import annotations

from typing import Any

from flopgrad import ops as O
from flopgrad.dispatch import apply, override
from flopgrad.dtypes import as_dtype, bfloat16, float16, float32

POLICY: dict[str, str] = {
    # PyTorch's CUDA "lower precision" list, as flopgrad's primitives
    "matmul": "lower", "linear": "lower", "einsum": "lower", "einsum1": "lower",
    # PyTorch's CUDA "float32" list
    "softmax": "fp32", "log_softmax": "fp32", "layer_norm": "fp32", "layer_norm_dx": "fp32",
    "cross_entropy": "fp32", "sum": "fp32", "sum_f32": "fp32", "prod": "fp32",
    "cumsum": "fp32", "exp": "fp32", "log": "fp32", "log1p": "fp32", "pow": "fp32",
    "pow_scalar": "fp32", "rsqrt": "fp32",
}


class _Policy:
    """What fg.autocast puts in the Mode: the low dtype, and the cast of an op's inputs."""

    __slots__ = ("dtype",)

    def __init__(self, dtype):
        self.dtype = dtype

    def cast(self, op, args: tuple) -> tuple:
        rule = POLICY.get(op.key)
        if rule is None:
            return args
        target = self.dtype if rule == "lower" else float32
        out = None
        for i, a in enumerate(args):
            if type(a).__name__ in ("Tensor", "Parameter") and a._data.dtype.kind in "fV":
                dtype = a._data.dtype
                if dtype != target and (rule == "lower" or dtype in (float16, bfloat16)):
                    if out is None:
                        out = list(args)
                    out[i] = apply(O.CAST, (a,), (target, dtype))
        return args if out is None else tuple(out)


class autocast(override):
    """Run matmul-like ops in `dtype` and precision-sensitive ones in float32 (PyTorch's
    CUDA lists: see the module docstring). enabled=False turns it off inside an outer one.

    >>> import flopgrad as fg
    >>> with fg.autocast(dtype=fg.bfloat16), fg.profile() as bill:
    ...     _ = fg.ones(64, 64) @ fg.ones(64, 64)
    >>> bill.bytes(op="matmul"), bill.flops()   # 2-byte inputs and output; FLOPs unchanged
    (24576, 524288)
    """

    def __init__(self, device_type: str = "cuda", dtype: Any = bfloat16, enabled: bool = True,
                 cache_enabled: bool | None = None):
        low = as_dtype(dtype)
        if low not in (float16, bfloat16):
            raise ValueError(f"autocast: dtype must be fg.bfloat16 or fg.float16, got {dtype!r}")
        if not isinstance(enabled, bool):
            raise TypeError(f"autocast: enabled must be True or False, got {enabled!r}")
        self.device_type, self.dtype = device_type, low
        policy = _Policy(low) if enabled else None
        super().__init__(autocast=policy, pre_op=None if policy is None else policy.cast)

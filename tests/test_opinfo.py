"""flopgrad against PyTorch's own OpInfo database (torch.testing._internal).

Every OpInfo that maps to a flopgrad function (the explicit table `MAP` below: OpInfo name
-> a callable taking flopgrad tensors and the sample's args/kwargs) runs its float64
sample inputs through both libraries, comparing

- whether it raises: flopgrad must raise exactly when torch does;
- every output's shape, dtype and values;
- the gradients of every input that requires grad, for a random cotangent on every
  differentiable output (`torch.autograd.grad` against `fg.grad`);
- for the ops PyTorch's FlopCounterMode counts (`FLOP_COUNTED`), the tensor FLOPs of the
  forward and the backward against flopgrad's bill.

`op.reference_inputs` run the same way (where an OpInfo has its own), and
`op.error_inputs` must make flopgrad raise too. Samples that are known not to match are
listed in `SKIPS`, each with the reason; nothing else is skipped. Each op's samples are cut
to at most `MAX_SAMPLES` (evenly spaced, so deterministic) to keep the file fast.

`python tests/test_opinfo.py` prints the counts: OpInfos mapped, samples run / passed /
skipped by reason, error inputs checked. With OPINFO_CHECK_SKIPS=1 the skipped samples run
too and the ones that now pass are listed (skips to remove).
"""

from __future__ import annotations

import os
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch.testing._internal.common_methods_invocations import op_db
from torch.utils.flop_counter import FlopCounterMode

import flopgrad as fg
import flopgrad.nn.functional as F

# the samples hold NaN, inf and zeros on purpose (NumPy warns), and torch warns about
# some of its own error inputs
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning")

# per OpInfo and kind of input (sample / reference / error); OPINFO_MAX_SAMPLES=100000
# runs every one (minutes)
MAX_SAMPLES = int(os.environ.get("OPINFO_MAX_SAMPLES", 24))
MAX_FLOAT32_SAMPLES = 8  # the float32 pass: a few samples per op, for dtypes above all
FLOAT32_TOL = (1e-4, 1e-4)  # torch's float32 kernels (SDPA's) differ from float64 by ~1e-5
MAX_REFERENCE_NUMEL = 20_000  # larger reference inputs (up to 1024 x 1024) are not run
RTOL, ATOL = 1e-7, 1e-10


# ---------------------------------------------------------------- the mapping

def _method(name: str) -> Callable:
    return lambda x, *args, **kwargs: getattr(x, name)(*args, **kwargs)


def _no_kwargs(fn: Callable, *allowed: str) -> Callable:
    """fn, refusing (with a clear error) any torch keyword it does not take."""
    def call(*args, **kwargs):
        extra = sorted(set(kwargs) - set(allowed))
        if extra:
            raise TypeError(f"unsupported keyword(s) {extra}")
        return fn(*args, **kwargs)
    return call


def _correction(kwargs: dict) -> dict:
    """torch's var/std: correction=None means the default (1)."""
    if kwargs.get("correction", 0) is None:
        kwargs = {k: v for k, v in kwargs.items() if k != "correction"}
    return kwargs


def _where(x, cond, other):
    return fg.where(cond, x, other)


def _einsum(operands, equation):
    return fg.einsum(equation, *operands)


def _embedding(weight, idx, **kwargs):
    return F.embedding(idx, weight, **kwargs)


def _reflected(name: str) -> Callable:
    """x.__rop__(other), as torch's OpInfo calls it; NotImplemented (x a Python number)
    is a refusal."""
    def call(x, other):
        out = getattr(x, name)(other)
        if out is NotImplemented:
            raise TypeError(f"{type(x).__name__}.{name} returns NotImplemented")
        return out
    return call


def _rsub(x, other, alpha=1):
    return other - x * alpha if alpha != 1 else other - x


MAP: dict[str, Callable] = {
    # elementwise unary
    **{name: _method(name) for name in (
        "abs", "exp", "log", "log1p", "sqrt", "rsqrt", "sign", "sin", "cos", "tanh", "sigmoid",
        "erf", "square", "neg", "floor", "ceil", "trunc", "round")},
    "clone": lambda x, memory_format=None: x.clone(),  # flopgrad has no memory formats:
    "contiguous": lambda x, memory_format=None: x.contiguous(),  # the values are the same
    "positive": lambda x: +x,
    "sgn": _method("sign"),  # sgn is sign for real tensors
    "nn.functional.relu": F.relu,
    "nn.functional.gelu": F.gelu,
    "nn.functional.silu": _no_kwargs(F.silu),
    "nn.functional.softplus": F.softplus,
    "nn.functional.leaky_relu": _no_kwargs(F.leaky_relu, "negative_slope"),
    "nn.functional.hardtanh": _no_kwargs(F.hardtanh, "min_val", "max_val"),
    "nn.functional.relu6": _no_kwargs(F.relu6),
    "nn.functional.elu": _no_kwargs(F.elu, "alpha"),
    "nn.functional.logsigmoid": F.logsigmoid,
    "nn.functional.mish": _no_kwargs(F.mish),
    "nn.functional.softmin": F.softmin,
    "nn.functional.softmin.with_dtype": F.softmin,
    "tril": _method("tril"),
    "triu": _method("triu"),
    "clamp": lambda x, min=None, max=None: x.clamp(min, max),
    "clamp_min": lambda x, min: x.clamp(min=min),
    "clamp_max": lambda x, max: x.clamp(max=max),
    # elementwise binary
    "add": fg.add, "sub": fg.sub, "mul": fg.mul, "pow": fg.pow,
    "div.no_rounding_mode": fg.div,
    "div.trunc_rounding": fg.div,
    "div.floor_rounding": fg.div,
    "true_divide": fg.div,
    "floor_divide": fg.floor_divide,
    "rsub": _rsub,
    "__radd__": _reflected("__radd__"),
    "__rsub__": _reflected("__rsub__"),
    "__rmul__": _reflected("__rmul__"),
    "__rdiv__": _reflected("__rtruediv__"),
    "__rpow__": lambda x, other: other ** x,  # torch's takes a Python number as self too
    "__rmatmul__": _reflected("__rmatmul__"),
    "maximum": fg.maximum,
    "minimum": fg.minimum,
    "max.binary": fg.maximum,
    "min.binary": fg.minimum,
    "eq": lambda x, o: x == o, "ne": lambda x, o: x != o, "lt": lambda x, o: x < o,
    "le": lambda x, o: x <= o, "gt": lambda x, o: x > o, "ge": lambda x, o: x >= o,
    "logical_and": lambda x, o: fg.tensor(x).bool() & fg.tensor(o).bool(),
    "logical_or": lambda x, o: fg.tensor(x).bool() | fg.tensor(o).bool(),
    "logical_not": lambda x: ~x.bool(),
    "where": _where,
    "masked_fill": _method("masked_fill"),
    # reductions
    **{name: _method(name) for name in (
        "sum", "mean", "prod", "amax", "amin", "argmax", "argmin", "cumsum", "logsumexp",
        "all", "any", "softmax", "log_softmax")},
    "softmax.with_dtype": _method("softmax"),
    "log_softmax.with_dtype": _method("log_softmax"),
    "var": lambda x, *a, **k: x.var(*a, **_correction(k)),
    "std": lambda x, *a, **k: x.std(*a, **_correction(k)),
    "var.unbiased": lambda x, unbiased: x.var(unbiased=unbiased),
    "std.unbiased": lambda x, unbiased: x.std(unbiased=unbiased),
    "max.reduction_with_dim": _method("max"),
    "max.reduction_no_dim": _method("max"),
    "min.reduction_with_dim": _method("min"),
    "min.reduction_no_dim": _method("min"),
    # shape and movement
    **{name: _method(name) for name in (
        "reshape", "view", "view_as", "flatten", "permute", "transpose", "t", "squeeze",
        "unsqueeze", "expand", "expand_as", "broadcast_to", "repeat", "tile", "flip", "roll",
        "split", "chunk", "gather", "scatter_add", "index_select")},
    "squeeze.multiple": _method("squeeze"),
    **{f"{name}_copy": _method(name) for name in (
        "view", "permute", "t", "transpose", "unsqueeze", "squeeze", "expand")},
    "reshape_as": _method("view_as"),
    "split_with_sizes": lambda x, sizes, dim=0: x.split(list(sizes), dim),
    "unsafe_split": _method("split"),
    "unsafe_chunk": _method("chunk"),
    "split.list_args": _method("split"),
    "T": lambda x: x.T,
    "mT": lambda x: x.mT,
    "cat": lambda tensors, dim=0: fg.cat(tensors, dim),
    "stack": lambda tensors, dim=0: fg.stack(tensors, dim),
    "__getitem__": lambda x, idx: x[idx],
    # contractions
    "matmul": fg.matmul,
    "mm": fg.matmul,
    "bmm": fg.matmul,
    "mv": fg.matmul,
    "outer": fg.outer,
    "einsum": _einsum,
    "nn.functional.linear": F.linear,
    "nn.functional.conv1d": F.conv1d,
    "nn.functional.conv2d": F.conv2d,
    # nn
    "nn.functional.max_pool1d": F.max_pool1d,
    "nn.functional.max_pool2d": F.max_pool2d,
    "nn.functional.avg_pool1d": F.avg_pool1d,
    "nn.functional.avg_pool2d": F.avg_pool2d,
    "nn.functional.pad.constant": F.pad,
    "nn.functional.pad.reflect": F.pad,
    "nn.functional.pad.replicate": F.pad,
    "nn.functional.pad.replicate_negative": F.pad,
    "nn.functional.pad.circular": F.pad,
    "nn.functional.embedding": _embedding,
    "nn.functional.one_hot": F.one_hot,
    "nn.functional.dropout": F.dropout,
    "ones_like": fg.ones_like, "zeros_like": fg.zeros_like, "full_like": fg.full_like,
    "nn.functional.layer_norm": F.layer_norm,
    "nn.functional.rms_norm": F.rms_norm,
    "nn.functional.batch_norm": F.batch_norm,
    "nn.functional.cross_entropy": F.cross_entropy,
    "nn.functional.nll_loss": F.nll_loss,
    "nn.functional.mse_loss": F.mse_loss,
    "nn.functional.l1_loss": F.l1_loss,
    "nn.functional.smooth_l1_loss": F.smooth_l1_loss,
    "nn.functional.huber_loss": F.huber_loss,
    "nn.functional.binary_cross_entropy_with_logits": F.binary_cross_entropy_with_logits,
    "nn.functional.scaled_dot_product_attention": F.scaled_dot_product_attention,
}

# the ops FlopCounterMode counts: their tensor FLOPs are compared with flopgrad's bill
FLOP_COUNTED = {"matmul", "mm", "bmm", "__rmatmul__", "einsum", "nn.functional.linear",
                "nn.functional.conv1d", "nn.functional.conv2d",
                # no contraction: both must bill 0 tensor FLOPs, forward and backward
                "nn.functional.max_pool1d", "nn.functional.max_pool2d",
                "nn.functional.avg_pool1d", "nn.functional.avg_pool2d",
                "nn.functional.pad.constant", "nn.functional.pad.reflect",
                "nn.functional.pad.replicate", "nn.functional.pad.circular",
                "div.trunc_rounding", "div.floor_rounding", "floor_divide"}


# a matmul with a 1-D operand runs torch's mv or dot, which FlopCounterMode does not count
VECTOR_MATMULS = {"matmul", "__rmatmul__"}
# torch's einsum backward runs through its bmm decomposition: it bills an outer product's
# gradient as 0 and a contraction of length 1 as a bmm, flopgrad the contraction it runs
FORWARD_FLOPS_ONLY = {"einsum"}


def key(op) -> str:
    return op.name + (f".{op.variant_test_name}" if op.variant_test_name else "")


# ---------------------------------------------------------------- skips

@dataclass(frozen=True)
class Skip:
    """Samples of an OpInfo not run, and why (`when(sample)` picks them; None: all)."""

    name: str
    reason: str
    when: Callable | None = None
    kinds: tuple = ("sample", "reference", "error")  # "sample" covers the float32 pass too
    group: str = "known"  # "pending": fixed by the semantics work in tensor.py/ops.py

    def applies(self, name: str, kind: str, sample) -> bool:
        kinds = self.kinds + (("float32",) if "sample" in self.kinds else ())  # same samples
        return name == self.name and kind in kinds and (
            self.when is None or bool(self.when(sample)))


def _kw(name, value=None, present=True):
    """Predicate: the sample passes keyword `name` (with `value`, when given)."""
    def pred(s):
        if name not in s.kwargs:
            return not present
        return value is None or s.kwargs[name] == value
    return pred


def _shape(s):
    return tuple(s.input.shape) if isinstance(s.input, torch.Tensor) else None


def _scalar_operands(s):
    """Error inputs with a Python number as an operand."""
    return any(isinstance(v, int | float) for v in (s.input, *s.args))


def _has_nan(s):
    return bool(s.input.isnan().any())


def _numbers_only(s):
    return all(isinstance(v, int | float) for v in (s.input, *s.args))


def _vector_operand(s):
    return any(isinstance(t, torch.Tensor) and t.ndim == 1 for t in (s.input, *s.args))


DEFECT = "defect"  # a flopgrad defect found here and not fixed (too broad for this change)
PENDING = "pending"  # fixed by the semantics work on tensor.py/ops.py (another engineer)
LENIENT = "lenient"  # flopgrad accepts what torch refuses, by design
TORCH = "torch"  # a torch-side quirk or something flopgrad does not model
UNSUPPORTED = "unsupported"  # a feature flopgrad does not have (it raises a clear error)

SKIPS: list[Skip] = [
    # ---- lenient by design
    *(Skip(name, "flopgrad's functions take Python numbers for every operand (torch's "
           "functional form needs a tensor first)", _scalar_operands, ("error",), LENIENT)
      for name in ("eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "pow",
                   "rsub")),
    *(Skip(name, "two Python numbers: Python's own arithmetic, no flopgrad call",
           _numbers_only, ("error",), LENIENT) for name in ("__radd__", "__rmul__", "__rdiv__")),
    *(Skip(name, "flopgrad's maximum/minimum take a Python number for either operand "
           "(torch needs two tensors)", None, ("error",), LENIENT)
      for name in ("maximum", "minimum", "max.binary", "min.binary")),
    # ---- torch-side quirks, or what flopgrad does not model
    *(Skip(name, "this error input does not raise in torch 2.13 either",
           lambda s: isinstance(s.input, torch.Tensor), ("error",), TORCH)
      for name in ("clamp_min", "clamp_max")),
    *(Skip(name, "this error input does not raise in torch 2.13 either", _numbers_only,
           ("error",), TORCH) for name in ("__rpow__", "__rsub__")),
    *(Skip(name, "torch's gradient at NaN depends on the element's position (its vectorised "
           "kernel gives one value, the scalar tail another)", _has_nan, ("reference",), TORCH)
      for name in ("nn.functional.hardtanh", "nn.functional.relu6", "nn.functional.elu")),
    Skip("nn.functional.dropout", "0 < p < 1 in training draws a random mask (flopgrad's "
         "generator is not torch's)", lambda s: 0 < s.kwargs.get("p", 0.5) < 1 and s.kwargs.get(
             "training", True), ("sample", "reference"), TORCH),
    Skip("nn.functional.scaled_dot_product_attention", "dropout_p > 0 draws a random mask "
         "(flopgrad's generator is not torch's)", lambda s: s.kwargs.get("dropout_p", 0) > 0,
         ("sample", "reference"), TORCH),
    Skip("cat", "torch's legacy rule skips a 1-D empty tensor among tensors of more dims",
         lambda s: any(t.shape == (0,) for t in s.input) and any(t.ndim > 1 for t in s.input),
         ("sample", "reference"), TORCH),
    Skip("gather", "torch lets an empty index have more dims than the input",
         lambda s: s.args[1].numel() == 0 and s.args[1].ndim > s.input.ndim,
         ("sample", "reference"), TORCH),
    Skip("nn.functional.batch_norm", "a 1-D input of size 0 (no channel dim): torch "
         "returns it, flopgrad needs (N, C, ...)", lambda s: s.input.ndim == 1,
         ("sample", "reference"), TORCH),
    # ---- unsupported (flopgrad raises a clear error)
    Skip("einsum", "einsum with '...' or an index repeated within one operand",
         lambda s: "..." in s.args[0] or any(
             len(set(t)) != len(t) for t in s.args[0].split("->")[0].split(",")),
         ("sample", "reference"), UNSUPPORTED),
]


def skip_reason(name: str, kind: str, sample) -> str | None:
    for s in SKIPS:
        if s.applies(name, kind, sample):
            return f"[{s.group}] {s.reason}"
    return None


# ---------------------------------------------------------------- conversion

_DTYPES = {torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16,
           torch.int64: np.int64, torch.int32: np.int32, torch.int16: np.int16,
           torch.int8: np.int8, torch.uint8: np.uint8, torch.bool: np.bool_}


def to_fg(value, memo: dict):
    """A torch value as flopgrad sees it: tensors copied (one flopgrad tensor per torch
    tensor, so shared inputs stay shared), dtypes as NumPy dtypes, containers rebuilt."""
    if isinstance(value, torch.Tensor):
        if id(value) not in memo:
            if value.dtype not in _DTYPES:
                raise TypeError(f"no flopgrad dtype for {value.dtype}")
            arr = np.array(value.detach().numpy())  # a copy: torch may update it in place
            t = fg.from_numpy(arr)
            if value.requires_grad:
                t.requires_grad_(True)
            memo[id(value)] = (value, t)
        return memo[id(value)][1]
    if isinstance(value, torch.dtype):
        if value not in _DTYPES:
            raise TypeError(f"no flopgrad dtype for {value}")
        return np.dtype(_DTYPES[value])
    if isinstance(value, torch.Size):
        return tuple(value)
    if isinstance(value, list | tuple):
        return type(value)(to_fg(v, memo) for v in value)
    if isinstance(value, dict):
        return {k: to_fg(v, memo) for k, v in value.items()}
    return value


def flatten(out) -> list:
    if isinstance(out, list | tuple):
        return [y for x in out for y in flatten(x)]
    return [out]


def as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().numpy(force=True)  # force: a ZeroTensor gradient (sgn's) too
    if isinstance(x, fg.Tensor):
        return np.asarray(x.detach().numpy())
    return np.asarray(x)


def describe(sample) -> str:
    def d(v):
        if isinstance(v, torch.Tensor):
            return f"Tensor{tuple(v.shape)}:{str(v.dtype).removeprefix('torch.')}"
        if isinstance(v, list | tuple):
            inner = ", ".join(d(x) for x in v)
            return f"[{inner}]" if isinstance(v, list) else f"({inner})"
        return repr(v)
    kw = ", ".join(f"{k}={d(v)}" for k, v in sample.kwargs.items())
    return f"({d(sample.input)}, *{d(tuple(sample.args))}, {kw})"


# ---------------------------------------------------------------- one sample

class Mismatch(AssertionError):
    pass


def _compare(got, expected, what: str, rtol: float, atol: float) -> None:
    g, e = as_numpy(got), as_numpy(expected)
    if g.shape != e.shape:
        raise Mismatch(f"{what}: shape {g.shape}, torch {e.shape}")
    if g.dtype != e.dtype:
        raise Mismatch(f"{what}: dtype {g.dtype}, torch {e.dtype}")
    if e.dtype.kind in "fc":
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)
    else:
        np.testing.assert_array_equal(g, e, err_msg=what)


def _torch_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def check_sample(name: str, op, sample, fn: Callable, seed: int, tol: tuple | None = None
                 ) -> bool:
    """Run one sample through torch and flopgrad; raise Mismatch on any difference.
    Returns whether tensor FLOPs were compared with FlopCounterMode."""
    memo: dict = {}
    f_input = to_fg(sample.input, memo)
    f_args = to_fg(tuple(sample.args), memo)
    f_kwargs = to_fg(dict(sample.kwargs), memo)
    counted = name in FLOP_COUNTED and not (name in VECTOR_MATMULS and _vector_operand(sample))
    try:
        if counted:
            holder = []
            t_flops = _torch_flops(lambda: holder.append(
                op(sample.input, *sample.args, **sample.kwargs)))
            t_out = holder[0]
        else:
            t_out = op(sample.input, *sample.args, **sample.kwargs)
        if t_out is NotImplemented:  # a reflected operator (__rsub__) refusing its operands
            raise TypeError(f"{name} returns NotImplemented")
    except Exception as err:  # torch refuses: flopgrad must refuse too
        try:
            fn(f_input, *f_args, **f_kwargs)
        except Exception:
            return False
        raise Mismatch(f"torch raises {type(err).__name__}: {err}; flopgrad does not") from None
    try:
        with fg.profile(memory=False) as bill:
            f_out = fn(f_input, *f_args, **f_kwargs)
    except Exception as err:
        raise Mismatch(f"flopgrad raises {type(err).__name__}: {err}; torch does not") from err
    t_flat, f_flat = flatten(t_out), flatten(f_out)
    if len(t_flat) != len(f_flat):
        raise Mismatch(f"{len(f_flat)} outputs, torch {len(t_flat)}")
    rtol, atol = tol or TOLERANCE.get(name, (RTOL, ATOL))
    for k, (f, t) in enumerate(zip(f_flat, t_flat, strict=True)):
        _compare(f, t, f"output {k}", rtol, atol)
    if counted:
        got = bill.flops("forward", kind="tensor")
        if got != t_flops:
            raise Mismatch(f"forward tensor FLOPs {got}, FlopCounterMode {t_flops}")

    # reverse mode: a random cotangent on every differentiable output
    leaves = [(t, f) for t, f in memo.values() if t.requires_grad]
    pairs = [(f, t) for f, t in zip(f_flat, t_flat, strict=True)
             if isinstance(t, torch.Tensor) and t.requires_grad]
    if not leaves or not pairs:
        return counted
    rng = np.random.default_rng(seed)
    cots = [rng.standard_normal(t.shape) for _, t in pairs]
    t_leaves = [t for t, _ in leaves]

    def torch_grads():
        return torch.autograd.grad([t for _, t in pairs], t_leaves,
                                   [torch.from_numpy(c) for c in cots], allow_unused=True)

    if counted:
        holder = []
        t_flops = _torch_flops(lambda: holder.append(torch_grads()))
        t_grads = holder[0]
    else:
        t_grads = torch_grads()
    live = [(f, c) for (f, _), c in zip(pairs, cots, strict=True)
            if isinstance(f, fg.Tensor) and f.requires_grad]
    f_grads: tuple = (None,) * len(leaves)
    if live:  # an output that does not require grad has a zero gradient
        try:
            with fg.profile(memory=False) as bill:
                f_grads = fg.grad([f for f, _ in live], [f for _, f in leaves],
                                  [fg.from_numpy(c) for _, c in live], allow_unused=True)
        except Exception as err:
            raise Mismatch(f"flopgrad's backward raises {type(err).__name__}: {err}") from err
        if counted:
            got = bill.flops("backward", kind="tensor")
            if got != t_flops and not _grouped_conv(name, sample) and (
                    name not in FORWARD_FLOPS_ONLY):
                raise Mismatch(f"backward tensor FLOPs {got}, FlopCounterMode {t_flops}")
    for k, ((t, _), tg, fgrad) in enumerate(zip(leaves, t_grads, f_grads, strict=True)):
        expected = tg if tg is not None else torch.zeros_like(t)
        got = fgrad if fgrad is not None else np.zeros(t.shape, as_numpy(expected).dtype)
        _compare(got, expected, f"gradient of input {k}", rtol, atol)
    return counted


def _grouped_conv(name: str, sample) -> bool:
    """torch 2.13 bills a grouped convolution's weight gradient `groups` times too high
    (docs/counting.md): flopgrad's backward is not compared with it."""
    return name.startswith("nn.functional.conv") and sample.kwargs.get("groups", 1) > 1


TOLERANCE: dict[str, tuple] = {}


# ---------------------------------------------------------------- running an OpInfo

def _spread(items: list, n: int) -> list:
    """At most n items, evenly spaced (deterministic), first and last included."""
    if len(items) <= n:
        return items
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def samples_of(op, kind: str) -> list:
    torch.manual_seed(zlib.crc32(f"{key(op)}/{kind}".encode()))  # the same samples every run
    if kind == "error":
        return [] if op.error_inputs_func is None else _spread(list(op.error_inputs("cpu")),
                                                                MAX_SAMPLES)
    dtype = torch.float64 if torch.float64 in op.dtypes else torch.int64  # one_hot: integers
    if kind == "float32":
        dtype = torch.float32 if torch.float32 in op.dtypes else dtype
    grad = op.supports_autograd and key(op) not in NO_GRAD_REFERENCES and dtype.is_floating_point
    if kind in ("sample", "float32"):
        items = op.sample_inputs("cpu", dtype, requires_grad=grad)
        if kind == "float32":
            return [_leaves(s) for s in _spread(list(items), MAX_FLOAT32_SAMPLES)]
    elif op.reference_inputs_func is None:  # its reference inputs are its samples
        return []
    else:
        items = [s for s in op.reference_inputs("cpu", dtype, requires_grad=grad)
                 if _numel(s) <= MAX_REFERENCE_NUMEL]
    return [_leaves(s) for s in _spread(list(items), MAX_SAMPLES)]


def _numel(sample) -> int:
    def n(v):
        if isinstance(v, torch.Tensor):
            return v.numel()
        if isinstance(v, list | tuple):
            return sum(n(x) for x in v)
        return 0
    return n(sample.input) + n(tuple(sample.args)) + n(tuple(sample.kwargs.values()))


# reference inputs that torch cannot make with requires_grad=True (an integer operand
# among them): these run without gradients
NO_GRAD_REFERENCES = {"where", "clamp"}


def _leaves(sample):
    """Every tensor that requires grad made a true leaf: some reference inputs are views
    (an expanded or strided tensor) of a leaf, made under no_grad, that torch's graph does
    not connect to. detach() keeps the strides, so aliasing views stay aliasing."""
    def fix(v):
        if isinstance(v, torch.Tensor) and v.requires_grad and v.grad_fn is None:
            return v.detach().requires_grad_(True)
        if isinstance(v, list | tuple):
            return type(v)(fix(x) for x in v)
        return v
    return sample.transform(fix) if hasattr(sample, "transform") else sample


def run(name: str, op, kind: str, check_skips: bool = False) -> tuple[Counter, list]:
    """Run one OpInfo's samples of one kind: (counts, failure messages)."""
    counts: Counter = Counter()
    failures: list[str] = []
    fn = MAP[name]
    for i, item in enumerate(samples_of(op, kind)):
        sample = item.sample_input if kind == "error" else item
        reason = skip_reason(name, kind, sample)
        if reason is not None and not check_skips:
            counts[f"skipped: {reason}"] += 1
            continue
        try:
            if kind == "error":
                check_error(op, item, fn)
            elif check_sample(name, op, sample, fn, seed=i,
                              tol=FLOAT32_TOL if kind == "float32" else None):
                counts["FLOPs compared with FlopCounterMode"] += 1
        except Exception as err:  # reported, never swallowed: the test fails with all of them
            if reason is not None:
                counts[f"skipped: {reason}"] += 1
                continue
            message = str(err).strip().replace("\n\n", "\n")
            failures.append(f"{kind} {i} {describe(sample)}: {type(err).__name__}: {message}")
            counts["failed"] += 1
        else:
            counts["passed"] += 1
            if reason is not None:
                failures.append(f"{kind} {i} {describe(sample)} passes: remove the skip "
                                f"{reason!r}")
    return counts, failures


def check_error(op, error_input, fn: Callable) -> None:
    """torch raises the documented error; flopgrad must raise as well."""
    s = error_input.sample_input
    try:
        op(s.input, *s.args, **s.kwargs)
    except error_input.error_type:
        pass
    else:
        raise Mismatch(f"torch does not raise {error_input.error_type.__name__}")
    try:
        memo: dict = {}
        fn(to_fg(s.input, memo), *to_fg(tuple(s.args), memo), **to_fg(dict(s.kwargs), memo))
    except Exception:
        return
    raise Mismatch(f"flopgrad does not raise (torch: {error_input.error_type.__name__} "
                   f"{error_input.error_regex!r})")


OPS = [op for op in op_db if key(op) in MAP]


def _params(kind: str) -> list:
    return [pytest.param(op, id=key(op)) for op in OPS]


def test_mapping_names_exist():
    """Every entry of the table names an OpInfo of this torch version."""
    assert sorted(set(MAP) - {key(op) for op in op_db}) == []
    assert sorted({s.name for s in SKIPS} - set(MAP)) == []


@pytest.mark.parametrize("op", _params("sample"))
def test_samples(op):
    _check(op, "sample")


@pytest.mark.parametrize("op", _params("reference"))
def test_reference_inputs(op):
    _check(op, "reference")


@pytest.mark.parametrize("op", _params("error"))
def test_error_inputs(op):
    _check(op, "error")


@pytest.mark.parametrize("op", _params("float32"))
def test_float32_samples(op):
    """The samples again in float32 (fewer, looser tolerance): dtypes must stay float32."""
    _check(op, "float32")


def _check(op, kind):
    counts, failures = run(key(op), op, kind)
    if failures:
        pytest.fail(f"{key(op)}: {len(failures)} of {sum(counts.values())} {kind}s differ "
                    "from torch:\n" + "\n".join(failures), pytrace=False)


# ---------------------------------------------------------------- counts

def main() -> None:  # pragma: no cover - a report, run by hand
    check = os.environ.get("OPINFO_CHECK_SKIPS") == "1"
    total: dict = {kind: Counter() for kind in ("sample", "reference", "error", "float32")}
    only = os.environ.get("OPINFO_ONLY")
    for op in OPS:
        if only and key(op) not in only.split(","):
            continue
        for kind in total:
            counts, failures = run(key(op), op, kind, check_skips=check)
            total[kind].update(counts)
            for f in failures:
                print(f"{key(op)}: {f}".splitlines()[0][:400])
    print(f"OpInfos mapped: {len(OPS)} (table entries {len(MAP)})")
    for kind, counts in total.items():
        run_ = counts["passed"] + counts["failed"]
        print(f"{kind}s: run {run_}, passed {counts['passed']}, failed {counts['failed']}")
        for reason, n in sorted(counts.items()):
            if reason not in ("passed", "failed"):
                print(f"    {n:4d} {reason}")


if __name__ == "__main__":  # pragma: no cover
    main()

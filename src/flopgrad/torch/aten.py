"""aten ops on flopgrad's cost formulas: {aten op name: (billed name, formula, view)}.

Each formula is one of `flopgrad.costs` (the very functions the native primitives use), fed
the aten op's output shape and input shapes; a few aten ops that fuse what flopgrad bills
as several primitives (softmax's backward, nll_loss) get a formula here with its reason.
An aten op not in the table is billed as unknown, and said so, never as zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from flopgrad import costs as C
from flopgrad.costs import Cost
from flopgrad.torch import composites


def _n(shape) -> int:
    return math.prod(shape)


def _addmm(out, ins, params):  # bias, a, b: 2mkn tensor FLOPs, the bias add m·n other
    return C.linear(out, [ins[1], ins[2], ins[0]], params)


def _baddbmm(out, ins, params):
    return Cost(2 * _n(out) * ins[1][-1], _n(out), 0)


def _last_dim(params) -> tuple:
    return (params[0] if params else -1,)


def _softmax(out, ins, params):
    return C.softmax(out, ins, _last_dim(params))


def _log_softmax(out, ins, params):
    return C.log_softmax(out, ins, _last_dim(params))


def _softmax_backward(out, ins, params):
    """(g - sum(g·y)) · y, flopgrad's softmax vjp: mul, sum, sub, mul."""
    n, rows = _n(out), _n(out) // max(out[params[0]] if out else 1, 1)
    return Cost(0, 4 * n - rows, 0)


def _log_softmax_backward(out, ins, params):
    """g - exp(y) · sum(g), flopgrad's log_softmax vjp: exp, sum, mul, sub."""
    n, rows = _n(out), _n(out) // max(out[params[0]] if out else 1, 1)
    return Cost(0, 4 * n - rows, n)


def _mean(out, ins, params):  # a sum and one division per output
    return Cost(0, max(_n(ins[0]) - _n(out), 0) + _n(out), 0)


def _layer_norm(out, ins, params):  # input, normalized_shape, weight, bias, eps
    n_dims = len(params[0]) if params else 1
    return C.layer_norm(out, [ins[0], ins[1] if len(ins) > 1 else (), ins[2]
                              if len(ins) > 2 else ()], (n_dims,))


def _layer_norm_backward(out, ins, params):  # grad, input, ...: flopgrad's layer_norm_dx
    n_dims = len(params[0]) if params else 1
    return C.layer_norm_dx(out, [ins[0], ins[1], ins[4] if len(ins) > 4 else ()], (n_dims,))


def _nll_loss(out, ins, params):
    """The pick (free) and the reduction: N - 1 adds and a division for a mean."""
    return Cost(0, _n(ins[0][:1]), 0)


def _gelu(out, ins, params):
    return C.gelu(out, ins, (params[0] if params else "none",))


def _gelu_backward(out, ins, params):  # gelu's derivative times the gradient, as natively
    d = C.gelu_grad(out, ins, (params[0] if params else "none",))
    return Cost(0, d.other + _n(out), d.transcendental)


def _norm_parts(n: int, groups: int, kept: int, scaled: bool, mask) -> list[tuple]:
    """Layer norm's backward over n entries in `groups` statistics, its weight of
    `kept` entries: dX as flopgrad's layer_norm_dx (statistics and xhat recomputed, 5n +
    2·groups, then 8n, 7n without a weight); dW xhat times the gradient summed to the
    weight's shape; db that sum alone."""
    stats = 5 * n + 2 * groups
    parts = []
    if mask[0]:
        parts.append(("input", Cost(0, stats + (7 + scaled) * n, groups)))
    if mask[1]:
        parts.append(("weight", Cost(0, stats + n + n - kept, groups)))
    if len(mask) > 2 and mask[2]:
        parts.append(("weight", Cost(0, n - kept, 0)))
    return parts


def layer_norm_parts(grad_out: tuple, normalized: tuple, weight: tuple, mask) -> list[tuple]:
    """native_layer_norm_backward's work as (role, Cost) parts, on flopgrad's formulas (the
    same as C.layer_norm_dx for dX).

    >>> [(r, c.other) for r, c in layer_norm_parts((2, 4), (4,), (4,), [True, True, True])]
    [('input', 108), ('weight', 56), ('weight', 4)]
    """
    n, d = _n(grad_out), _n(normalized)
    return _norm_parts(n, n // max(d, 1), d, weight != (), mask)


def batch_norm_parts(grad_out: tuple, training: bool, mask) -> list[tuple]:
    """native_batch_norm_backward's work as (role, Cost) parts, as torch's kernel computes
    it from the saved statistics (flopgrad's own batch_norm is a composite, with no fused
    rule to share): per channel the gradient's sum (db, n - C) and its dot with x - mean
    (dW, 3n - C: subtract, multiply, add; then one scale per channel); dX in training
    (x - mean)·dot·invstd²/N subtracted with the mean gradient, times invstd·w (7n + 2C),
    in eval g·invstd·w (n + C, the rsqrt of the running variance C transcendentals).

    >>> [(r, c.other) for r, c in batch_norm_parts((2, 3, 4, 4), True, [True, True, True])]
    [('input', 678), ('weight', 288), ('weight', 93)]
    """
    n, c = _n(grad_out), grad_out[1] if len(grad_out) > 1 else 1
    parts = []
    if mask[0]:
        parts.append(("input", Cost(0, 7 * n + 2 * c, 0) if training else Cost(0, n + c, c)))
    if mask[1]:
        parts.append(("weight", Cost(0, 3 * n, 0)))
    if len(mask) > 2 and mask[2]:
        parts.append(("weight", Cost(0, n - c, 0)))
    return parts


def _batch_norm(out, ins, params):
    """Per channel, as flopgrad's composite F.batch_norm: in training the two means,
    subtract, square, + eps, rsqrt and normalise (5n + 2C, C transcendentals) and the
    running statistics' update (6C); in eval (x - mean) · rsqrt(var + eps) (2n + 2C);
    n more each for the scale and the shift. params ends with which of input, weight,
    bias, running_mean, running_var were given."""
    given = params[-1]
    n, c = _n(ins[0]), ins[0][1] if len(ins[0]) > 1 else 1
    training = isinstance(params[0], bool) and params[0]
    other = 5 * n + 2 * c + (6 * c if given[3] and given[4] else 0) if training else 2 * n + 2 * c
    return Cost(0, other + (given[1] + given[2]) * n, c)


def _k(k: int, trans: int = 0) -> Callable:
    def cost(out, ins, params):
        n = _n(out)
        return Cost(0, k * n, trans * n)
    cost.__doc__ = f"{k} per output element" + (f", {trans} transcendental" if trans else "")
    return cost


ELEMENTWISE = {"add", "sub", "mul", "div", "neg", "relu", "threshold_backward", "maximum",
               "minimum", "abs", "sign", "clamp", "clamp_min", "clamp_max", "where", "eq",
               "ne", "lt", "le", "gt", "ge", "masked_fill", "add_", "sub_", "mul_", "div_",
               "neg_", "rsub", "reciprocal", "square", "pow", "leaky_relu",
               "hardtanh", "relu_", "zero_", "fill_"}
TRANSCENDENTAL = {"exp", "log", "log1p", "sqrt", "rsqrt", "tanh", "sigmoid", "sin", "cos",
                  "erf", "sqrt_", "exp_", "silu"}
REDUCTION = {"sum", "amax", "amin", "max", "min", "argmax", "argmin", "prod", "any", "all"}
VIEWS = {"view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "unsqueeze",
         "squeeze", "detach", "alias", "slice", "select", "as_strided", "split",
         "split_with_sizes", "unbind", "chunk", "_reshape_alias", "view_as", "narrow",
         "unfold", "diagonal", "expand_as", "lift_fresh", "_to_copy", "clone", "copy_",
         "contiguous", "empty", "empty_like", "zeros", "zeros_like", "ones", "ones_like",
         "full", "full_like", "arange", "new_empty", "new_zeros", "new_ones", "new_full",
         "embedding", "index_select", "gather", "cat", "stack",
         "_log_softmax_backward_data_", "scalar_tensor", "empty_strided", "rand", "randn",
         "bernoulli_", "native_dropout", "lift_fresh_copy", "isfinite", "isinf", "isnan",
         "randint", "randint_like", "randperm", "normal_", "uniform_", "random_", "rand_like",
         "randn_like",
         "_local_scalar_dense", "item"}
COPIES = {"_to_copy", "clone", "copy_", "contiguous", "embedding",
          "index_select", "gather", "cat", "stack"}  # bytes move; 0 FLOPs

FORMULAS: dict[str, tuple[str, Callable]] = {
    "mm": ("matmul", C.matmul), "bmm": ("matmul", C.matmul), "matmul": ("matmul", C.matmul),
    "addmm": ("matmul", _addmm), "baddbmm": ("matmul", _baddbmm),
    "_softmax": ("softmax", _softmax), "_log_softmax": ("log_softmax", _log_softmax),
    "_softmax_backward_data": ("softmax", _softmax_backward),
    "_log_softmax_backward_data": ("log_softmax", _log_softmax_backward),
    "mean": ("mean", _mean), "native_layer_norm": ("layer_norm", _layer_norm),
    "native_layer_norm_backward": ("layer_norm", _layer_norm_backward),
    "nll_loss_forward": ("nll_loss", _nll_loss), "nll_loss_backward": ("nll_loss", _nll_loss),
    "gelu": ("gelu", _gelu), "gelu_backward": ("gelu", _gelu_backward),
    "tanh_backward": ("tanh", _k(3)), "sigmoid_backward": ("sigmoid", _k(3)),
    "addcmul_": ("addcmul_", _k(2)), "addcdiv_": ("addcdiv_", _k(2)), "lerp_": ("lerp_", _k(3)),
    "cumsum": ("cumsum", C.cumsum),
}
for _name in ELEMENTWISE:
    FORMULAS.setdefault(_name, (_name, C.elementwise))
for _name in TRANSCENDENTAL:
    FORMULAS.setdefault(_name, (_name, C.transcendental))
for _name in REDUCTION:
    FORMULAS.setdefault(_name, (_name, C.reduction))
for _name in VIEWS:
    FORMULAS.setdefault(_name, (_name, C.free))


def convolution(out, ins, params):
    """input, weight[, bias]: 2 · prod(out) · (C_in/groups · kernel) tensor FLOPs (exactly
    flopgrad's F.conv2d: unfold plus one batched matmul), a bias add prod(out) other."""
    w = ins[1]
    bias = _n(out) if len(ins) > 2 and ins[2] else 0
    return Cost(2 * _n(out) * _n(w[1:]), bias, 0)


def convolution_parts(grad_out: tuple, inp: tuple, weight: tuple, mask) -> list[tuple]:
    """convolution_backward's work as (role, Cost) parts: dX and dW each cost the forward's
    2 · prod(grad_out) · (C_in/groups · kernel) (torch 2.13's FlopCounterMode bills a grouped
    conv's dW `groups` times higher), the bias gradient a sum over all but the channels.

    >>> [(r, c.tensor) for r, c in convolution_parts((2, 8, 4, 4), (2, 3, 4, 4), (8, 3, 3, 3),
    ...                                               [True, True, False])]
    [('input', 13824), ('weight', 13824)]
    """
    flops = 2 * _n(grad_out) * _n(weight[1:])
    parts = []
    if mask[0]:
        parts.append(("input", Cost(flops, 0, 0)))
    if mask[1]:
        parts.append(("weight", Cost(flops, 0, 0)))
    if len(mask) > 2 and mask[2]:
        parts.append(("weight", Cost(0, max(_n(grad_out) - grad_out[1], 0), 0)))
    return parts


FORMULAS["convolution"] = ("matmul", convolution)


def attention(out, ins, params):
    """Fused scaled-dot-product attention on q (b, h, s_q, d), k (b, h, s_k, d), v: QKᵀ and
    the product with V, 4·b·h·s_q·s_k·d tensor FLOPs; the scale and softmax on the scores
    (6 per score) other, as flopgrad's composite attention costs."""
    q, k = ins[0], ins[1]
    scores = _n(q[:-1]) * k[-2]
    return Cost(4 * scores * q[-1], 6 * scores, scores)


def attention_backward(out, ins, params):
    """The fused kernel's backward as it runs: QKᵀ recomputed, then dV, dP, dQ and dK,
    10·b·h·s_q·s_k·d tensor FLOPs (FlopCounterMode's formula), the softmax backward (4 per
    score) other. flopgrad's own attention saves the scores and does not recompute them."""
    q, k = ins[1], ins[2]  # grad_out, q, k, v, ...
    scores = _n(q[:-1]) * k[-2]
    return Cost(10 * scores * q[-1], 4 * scores, 0)


for _name in ("_scaled_dot_product_flash_attention_for_cpu",
              "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
              "_scaled_dot_product_cudnn_attention"):
    FORMULAS[_name] = ("attention", attention)
    FORMULAS[_name + "_backward"] = ("attention", attention_backward)
FORMULAS["_safe_softmax"] = ("softmax", _softmax)
# the rows' gradients added into the table: 1 add per value, flopgrad's index_put
FORMULAS["embedding_dense_backward"] = ("embedding", lambda out, ins, params: Cost(
    0, _n(ins[0]), 0))
FORMULAS["silu_backward"] = ("silu", _k(4, 1))  # g · s · (1 + x (1 - s)), s = sigmoid(x)
for _name in ("constant_pad_nd", "slice_backward", "select_backward", "tril", "triu",
              "masked_fill_", "index", "index_put", "scatter", "_unsafe_index"):
    FORMULAS.setdefault(_name, (_name, C.free))


for _name in ("native_batch_norm", "_native_batch_norm_legit",
              "_native_batch_norm_legit_no_training", "_native_batch_norm_legit_functional"):
    FORMULAS[_name] = ("batch_norm", _batch_norm)
BATCH_NORMS = {"native_batch_norm", "_native_batch_norm_legit",
               "_native_batch_norm_legit_no_training", "_native_batch_norm_legit_functional",
               "native_group_norm"}  # whose formula needs to know which tensors were None
FORMULAS["sgn"] = ("sgn", C.elementwise)
FORMULAS["_conj"] = ("_conj", C.free)


def _max_pool(out, ins, params):
    """(window - 1) comparisons per output, flopgrad's argmax over the unfolded windows."""
    return Cost(0, _n(out) * max(_n(params[0]) - 1, 0) if params else 0, 0)


def _max_pool_backward(out, ins, params):
    """Each output's gradient added into its window's maximum: one add per output."""
    return Cost(0, _n(ins[0]), 0)


def _avg_pool(out, ins, params):
    """window - 1 adds and one division per output."""
    return Cost(0, _n(out) * _n(params[0]) if params else 0, 0)


def _avg_pool_backward(out, ins, params):
    """Each output's gradient divided once and added into every input of its window."""
    return Cost(0, _n(ins[0]) * (1 + _n(params[0])) if params else 0, 0)


for _d in ("1d", "2d", "3d"):
    FORMULAS[f"max_pool{_d}_with_indices"] = ("max_pool", _max_pool)
    FORMULAS[f"max_pool{_d}_with_indices_backward"] = ("max_pool", _max_pool_backward)
    FORMULAS[f"avg_pool{_d}"] = ("avg_pool", _avg_pool)
    FORMULAS[f"avg_pool{_d}_backward"] = ("avg_pool", _avg_pool_backward)


def _group_norm(out, ins, params):
    """native_group_norm(input, weight, bias, N, C, HxW, groups, eps): layer norm's formula
    with N·groups statistics (params end with which tensors were given)."""
    given, groups = params[-1], params[0] * params[3]
    n = _n(ins[0])
    return Cost(0, 5 * n + 2 * groups + (given[1] + given[2]) * n, groups)


def group_norm_parts(grad_out: tuple, groups: int, channels: int, scaled: bool,
                     mask) -> list[tuple]:
    """native_group_norm_backward's work as (role, Cost) parts: layer norm's formulas with
    `groups` statistics (N·G) and a weight of one entry per channel.

    >>> [(r, c.other) for r, c in group_norm_parts((2, 4, 3, 3), 4, 4, True, [1, 1, 1])]
    [('input', 944), ('weight', 508), ('weight', 68)]
    """
    return _norm_parts(_n(grad_out), groups, channels, scaled, mask)


def _vector_norm(out, ins, params):
    """The 2-norm: a square and an add per entry, a square root per result."""
    return Cost(0, 2 * _n(ins[0]), _n(out))


FORMULAS["native_group_norm"] = ("group_norm", _group_norm)
FORMULAS["linalg_vector_norm"] = ("linalg_vector_norm", _vector_norm)
FORMULAS["hardswish_backward"] = ("hardswish", _k(3))  # compare twice, then g · (2x + 3)/6
FORMULAS["_prelu_kernel_backward"] = ("prelu", _k(3))
FORMULAS.update(composites.formulas())  # F.mse_loss, F.softplus, ...: their composites' cost
ELEMENTWISE_MORE = ("bitwise_not", "clamp_min_", "clamp_", "hardtanh_backward", "logical_not",
                    "_prelu_kernel", "hardsigmoid", "hardswish", "xlogy")
for _name in ELEMENTWISE_MORE:
    FORMULAS.setdefault(_name, (_name, C.elementwise))
for _name in ("sigmoid_", "tanh_", "log_", "exp2", "expm1", "log2", "log10"):
    FORMULAS.setdefault(_name, (_name, C.transcendental))
for _name in ("repeat", "new_empty_strided", "unsafe_split", "pixel_shuffle", "pixel_unshuffle",
              "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "flip", "roll"):
    FORMULAS.setdefault(_name, (_name, C.free))
for _name in ("upsample_nearest1d_backward", "upsample_nearest2d_backward",
              "upsample_nearest3d_backward"):  # each input's gradient sums its copies
    FORMULAS.setdefault(_name, (_name, lambda out, ins, params: Cost(
        0, max(_n(ins[0]) - _n(out), 0), 0)))


def lookup(name: str) -> tuple[str, Callable, bool] | None:
    """(billed name, cost formula, is a view) of an aten op, or None when flopgrad has no
    formula for it.

    >>> lookup("mm")[0], lookup("view")[2], lookup("cumprod")
    ('matmul', True, None)
    """
    entry = FORMULAS.get(name)
    if entry is None:
        return None
    return entry[0], entry[1], name in VIEWS and name not in COPIES

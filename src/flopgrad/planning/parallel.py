"""Per-GPU memory, communication and pipeline formulas of large-model training, each a
named function with its source: model states under ZeRO (Rajbhandari et al. 2020),
activations under tensor, sequence and pipeline parallelism (Korthikanti et al. 2022),
collective volumes (ring all-reduce, reduce-scatter, all-gather) and the pipeline bubble
(Narayanan et al. 2021). A plan combines them with the exact counts of a meta step.

The ZeRO paper's example, 7.5B parameters on 64 GPUs, stage 1:

>>> from flopgrad.planning import model_state_bytes
>>> model_state_bytes(7_500_000_000, gpus=64, zero=1)["total"] / 1e9
31.40625

Sizes are counted in bytes; GB is 1e9 bytes and GiB 2**30.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["Convention", "BYTES_PER_PARAM", "RECOMPUTE", "model_state_bytes",
           "korthikanti_layer_bytes", "korthikanti_activation_bytes", "korthikanti_extra_bytes",
           "all_reduce_bytes", "reduce_scatter_bytes", "all_gather_bytes", "data_parallel_bytes",
           "tensor_parallel_bytes", "pipeline_p2p_bytes", "pipeline_bubble",
           "pipeline_bubble_share", "check_layout"]


@dataclass(frozen=True)
class Convention:
    """Bytes per parameter of the model states of mixed-precision Adam, split the way ZeRO
    shards them: `optimizer_state` from stage 1, `gradients` from stage 2, `weights` at
    stage 3. `weights` and `gradients` are also the bytes per parameter that data
    parallelism gathers and reduces.

    >>> from flopgrad.planning import BYTES_PER_PARAM
    >>> c = BYTES_PER_PARAM["fp32-grads"]
    >>> c.weights, c.gradients, c.optimizer_state, c.total
    (2, 4, 12, 18)
    """

    weights: int  # the copy forward and backward read
    gradients: int  # the buffer backward writes and data parallelism reduces
    optimizer_state: int  # what the optimizer keeps: fp32 master weights, moments, copies
    counts: str
    source: str

    @property
    def total(self) -> int:
        """All bytes per parameter, unsharded (ZeRO stage 0).

        >>> from flopgrad.planning import BYTES_PER_PARAM
        >>> [c.total for c in BYTES_PER_PARAM.values()]
        [16, 18, 20, 16]
        """
        return self.weights + self.gradients + self.optimizer_state


BYTES_PER_PARAM: dict[str, Convention] = {
    "zero": Convention(
        2, 2, 12,
        "fp16/bf16 weights (2) and gradients (2); fp32 master weights, Adam momentum and "
        "variance (4 + 4 + 4 = K = 12)",
        "Rajbhandari et al. 2020 (ZeRO), Section 3.1: 2Ψ + 2Ψ + KΨ with K = 12"),
    "fp32-grads": Convention(
        2, 4, 12,
        "bf16 weights (2); gradients accumulated and reduced in an fp32 buffer (4, "
        "Megatron's main_grad); fp32 master weights, momentum, variance (12)",
        "Megatron-LM distributed optimizer docs: bf16 parameters with fp32 gradients, 18 "
        "(6 + 12/d sharded); Megatron-LM theoretical_memory_usage.py (18); Hugging Face "
        "Transformers, Model training anatomy: 18 = 6 weights (fp32 and 16-bit copies) + 4 "
        "fp32 gradients + 8 AdamW states"),
    "fp32-main-grads": Convention(
        2, 2, 16,
        "fp16/bf16 weights (2) and gradients (2); the optimizer's fp32 copy of the "
        "gradients (4), fp32 master weights, momentum, variance (12)",
        "Megatron-LM distributed optimizer docs: fp16 parameters with fp16 gradients, 20 "
        "(4 + 16/d sharded); DeepSpeed estimate_zero2_model_states_mem_needs: 2 + 18/N "
        "with 18 = 2 grads_16bit + 4 grads_32bit + 4 params_32bit + 8 optimizer states; "
        "Hugging Face Ultra-Scale Playbook: bf16 weights and gradients, fp32 copies of both "
        "(12), Adam states (8)"),
    "fp32": Convention(
        4, 4, 8,
        "fp32 weights (4) and gradients (4), Adam momentum and variance (8); no master copy",
        "Megatron-LM distributed optimizer docs: fp32 parameters with fp32 gradients, 16 "
        "(8 + 8/d sharded)"),
}

RECOMPUTE = ("none", "selective", "full")


def _count(name: str, value, minimum: int = 1) -> int:
    """`value` as an int, or a ValueError naming it (integral floats such as 7.5e9 pass)."""
    if (isinstance(value, bool) or not isinstance(value, int | float | Fraction)
            or not math.isfinite(value) or value != int(value)):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def _convention(name: str) -> Convention:
    if name not in BYTES_PER_PARAM:
        raise ValueError(f"unknown bytes-per-parameter convention {name!r}; known: "
                         f"{', '.join(BYTES_PER_PARAM)}")
    return BYTES_PER_PARAM[name]


def _zero(zero) -> int:
    if isinstance(zero, bool) or zero not in (0, 1, 2, 3):
        raise ValueError(f"ZeRO stage must be 0, 1, 2 or 3, got {zero!r}")
    return int(zero)


def _recompute(recompute: str) -> str:
    if recompute not in RECOMPUTE:
        raise ValueError(f"recompute must be one of {', '.join(RECOMPUTE)}, got {recompute!r}")
    return recompute


def _divides(part: str, k: int, whole: str, n: int) -> None:
    if n % k:
        raise ValueError(f"{part} {k} does not divide {n} {whole}")


def model_state_bytes(params, gpus: int = 1, zero: int = 0,
                      convention: str = "zero") -> dict[str, int]:
    """Bytes per GPU of weights, gradients and optimizer state under ZeRO stage `zero`
    (Rajbhandari et al. 2020), for `params` parameters data-parallel over `gpus` GPUs
    (with tensor or pipeline parallelism: the parameters of one model-parallel shard):

        stage 0: (w + g + o)·Ψ        stage 2: w·Ψ + (g + o)·Ψ/N
        stage 1: (w + g)·Ψ + o·Ψ/N    stage 3: (w + g + o)·Ψ/N

    with w, g, o the convention's bytes per parameter (`BYTES_PER_PARAM`) and Ψ/N rounded
    up to whole parameters (a shard holds whole elements; the ZeRO paper's sizes divide
    evenly). The paper's example (7.5B parameters, 64 GPUs, K = 12): 120, 31.4, 16.6 and
    1.875 GB per GPU at stages 0 to 3.

    >>> from flopgrad.planning import model_state_bytes
    >>> [model_state_bytes(7.5e9, 64, z)["total"] / 1e9 for z in range(4)]
    [120.0, 31.40625, 16.640625, 1.875]
    >>> model_state_bytes(1000, gpus=4, zero=2, convention="fp32-grads")
    {'weights': 2000, 'gradients': 1000, 'optimizer_state': 3000, 'total': 6000}
    """
    n, stage, c = _count("params", params), _zero(zero), _convention(convention)
    gpus = _count("gpus", gpus)
    shard = -(-n // gpus)  # ceil(Ψ/N)
    out = {"weights": c.weights * (shard if stage >= 3 else n),
           "gradients": c.gradients * (shard if stage >= 2 else n),
           "optimizer_state": c.optimizer_state * (shard if stage >= 1 else n)}
    out["total"] = sum(out.values())
    return out


def _layer_exact(s: int, b: int, h: int, a: int, t: int, sp: bool, recompute: str) -> Fraction:
    sbh = s * b * h
    if recompute == "full":
        return Fraction(2 * sbh)
    replicated = Fraction(10, t) if sp else Fraction(10)  # layer norms, dropouts: SP splits
    per = replicated + Fraction(24, t)
    if recompute == "none":
        per += Fraction(5 * a * s, h * t)  # QK^T, softmax, its dropout, attention over V
    return sbh * per


def _check_tensor_parallel(h: int, a: int, t: int) -> None:
    _divides("tensor parallel size", t, "attention heads", a)
    _divides("tensor parallel size", t, "hidden size", h)


def korthikanti_layer_bytes(s: int, b: int, h: int, a: int, t: int = 1, sp: bool = False,
                            recompute: str = "none") -> float:
    """Activation bytes of one transformer layer on one GPU, Korthikanti et al. 2022,
    Table 2 (16-bit activations, 1-byte dropout masks), for sequence s, micro-batch b,
    hidden size h, a heads, tensor parallel size t, sequence parallelism `sp`:

        no parallelism (t = 1)             sbh(34 + 5as/h)
        tensor parallel                    sbh(10 + 24/t + 5as/(ht))
        tensor + sequence parallel         sbh/t·(34 + 5as/h)
        tensor parallel + selective        sbh(10 + 24/t)
        tensor + sequence + selective      34·sbh/t
        full recompute                     2sbh (the layer's 16-bit input only)

    Full recompute keeps 2sbh whatever t and `sp` are: the paper's Table 2 (Section 5
    remarks that keeping only 1/t of it, 2sbh/t, would cost an extra all-gather and leaves
    it out). At t = 1 every row with the same recompute agrees with and without `sp`.

    >>> from flopgrad.planning import korthikanti_layer_bytes
    >>> korthikanti_layer_bytes(2048, 1, 12288, 96, t=8) / 2**20  # GPT-3 175B
    552.0
    >>> korthikanti_layer_bytes(2048, 1, 12288, 96, t=8, sp=True, recompute="selective") / 2**20
    102.0
    """
    s, b, h, a, t = (_count(k, v) for k, v in zip("sbhat", (s, b, h, a, t), strict=True))
    _check_tensor_parallel(h, a, t)
    return float(_layer_exact(s, b, h, a, t, sp, _recompute(recompute)))


def korthikanti_activation_bytes(s: int, b: int, h: int, a: int, L: int, t: int = 1,
                                 p: int = 1, sp: bool = False, recompute: str = "none",
                                 interleave: int = 1) -> float:
    """Activation bytes on the busiest GPU, the first pipeline stage, Korthikanti et al.
    2022, Equations 5 and 6: with the 1F1B schedule it holds p micro-batches of L/p
    layers, L layers' worth whatever p is; the interleaved schedule with m = `interleave`
    model chunks per GPU holds L·(1 + (p − 1)/(p·m)) layers' worth (Section 4.2.3):

        L · korthikanti_layer_bytes(s, b, h, a, t, sp, recompute) · (1 + (p − 1)/(p·m))

    (the factor is 1 without interleaving, m = 1: 1F1B is not the m = 1 case of the
    interleaved schedule, which would hold 2p − 1 micro-batches). The embedding, last
    layer-norm and output-layer terms are left out, as the paper does
    (`korthikanti_extra_bytes`). GPT-3 175B at t = 8, p = 8 with the paper's m = 3
    (Section 6: three interleaving stages for 175B and 530B), tested:

    >>> from flopgrad.planning import korthikanti_activation_bytes
    >>> gpt3 = dict(s=2048, b=1, h=12288, a=96, L=96, t=8, p=8, interleave=3)
    >>> korthikanti_activation_bytes(**gpt3) / 2**30
    66.84375
    >>> korthikanti_activation_bytes(**gpt3, sp=True, recompute="selective") / 2**30
    12.3515625
    """
    s, b, h, a, L, t, p, m = (_count(k, v) for k, v in zip(
        ("s", "b", "h", "a", "L", "t", "p", "interleave"), (s, b, h, a, L, t, p, interleave),
        strict=True))
    _check_tensor_parallel(h, a, t)
    _divides("pipeline size" if m == 1 else f"pipeline size {p} × interleaved chunks {m} =",
             p * m, "layers", L)
    factor = 1 if m == 1 else 1 + Fraction(p - 1, p * m)
    return float(L * _layer_exact(s, b, h, a, t, sp, _recompute(recompute)) * factor)


def korthikanti_extra_bytes(s: int, b: int, h: int, v: int, t: int = 1, p: int = 1) -> float:
    """The activation bytes Korthikanti et al. 2022 (Section 4.3) add for the input
    embeddings, the last layer norm and the output layer, on the first pipeline stage with
    sequence parallelism: the embedding dropout mask of p micro-batches, sbhp/t, and,
    without pipeline parallelism only (the first stage then holds the output layer too),
    4sbh/t·(1 + v/h): the last layer norm's input (2sbh/t), the output projection's input
    (2sbh/t) and the fp32 logits (4sbv/t). The paper finds them negligible and drops them;
    `korthikanti_activation_bytes` does too (its GPT-3 numbers come out only without them).

    >>> from flopgrad.planning import korthikanti_extra_bytes
    >>> korthikanti_extra_bytes(2048, 1, 12288, 51200, t=8, p=8) / 2**20  # sbhp/t
    24.0
    >>> korthikanti_extra_bytes(2048, 1, 12288, 51200, t=8, p=1) / 2**20
    65.0
    """
    s, b, h, v, t, p = (_count(k, x) for k, x in zip("sbhvtp", (s, b, h, v, t, p), strict=True))
    sbh = s * b * h
    extra = Fraction(sbh * p, t)
    if p == 1:
        extra += Fraction(4 * sbh, t) * (1 + Fraction(v, h))
    return float(extra)


def all_reduce_bytes(nbytes, n: int) -> float:
    """Bytes each of n GPUs sends (and receives) in a ring all-reduce of an `nbytes` tensor:
    2(n − 1)/n · nbytes (a reduce-scatter, then an all-gather; Patarasuk and Yuan 2009).

    >>> from flopgrad.planning import all_reduce_bytes
    >>> all_reduce_bytes(1000, 4), all_reduce_bytes(1000, 1)
    (1500.0, 0.0)
    """
    return float(2 * _collective(nbytes, n))


def reduce_scatter_bytes(nbytes, n: int) -> float:
    """Bytes each of n GPUs sends in a ring reduce-scatter of an `nbytes` tensor (each ends
    with 1/n of the sum): (n − 1)/n · nbytes.

    >>> from flopgrad.planning import reduce_scatter_bytes
    >>> reduce_scatter_bytes(1000, 4)
    750.0
    """
    return float(_collective(nbytes, n))


def all_gather_bytes(nbytes, n: int) -> float:
    """Bytes each of n GPUs sends in a ring all-gather whose result is an `nbytes` tensor
    (each holds 1/n of it before): (n − 1)/n · nbytes.

    >>> from flopgrad.planning import all_gather_bytes
    >>> all_gather_bytes(1000, 4)
    750.0
    """
    return float(_collective(nbytes, n))


def _collective(nbytes, n: int) -> Fraction:
    if (isinstance(nbytes, bool) or not isinstance(nbytes, int | float | Fraction)
            or not math.isfinite(nbytes) or nbytes < 0):
        raise ValueError(f"bytes must be a number >= 0, got {nbytes!r}")
    n = _count("GPUs in the group", n)
    return Fraction(nbytes) * Fraction(n - 1, n)


def data_parallel_bytes(params, dp: int, zero: int = 0, convention: str = "zero",
                        micro_batches: int = 1) -> dict[str, float]:
    """Bytes each GPU sends per step for data parallelism over `dp` GPUs of `params`
    parameters (one model-parallel shard's), with the convention's gradient and weight
    bytes per parameter g and w (Rajbhandari et al. 2020, Section 7):

        stage 0: all-reduce of the gradients       2(n − 1)/n · gΨ
        stages 1, 2: reduce-scatter of the gradients, all-gather of the updated weights
                                                   (n − 1)/n · gΨ + (n − 1)/n · wΨ
        stage 3: reduce-scatter of the gradients, all-gather of the weights in forward
                 and again in backward             (n − 1)/n · (gΨ + 2wΨ)

    Stages 1 and 2 move what stage 0 does (2Ψ with g = w) and stage 3 1.5 times that, as
    the paper says. With gradient accumulation over `micro_batches`, stages 0 and 1 reduce
    once per step; stage 2 reduces each micro-batch's gradients (a GPU keeps only its
    shard of them) and stage 3 also gathers the weights for each micro-batch.

    >>> from flopgrad.planning import data_parallel_bytes
    >>> data_parallel_bytes(1000, dp=4)
    {'gradients': 3000.0, 'weights': 0.0, 'total': 3000.0}
    >>> data_parallel_bytes(1000, dp=4, zero=3)
    {'gradients': 1500.0, 'weights': 3000.0, 'total': 4500.0}
    """
    n, stage, c = _count("params", params), _zero(zero), _convention(convention)
    dp, m = _count("dp", dp), _count("micro_batches", micro_batches)
    grads, weights = c.gradients * n, c.weights * n
    if stage == 0:
        g, w = all_reduce_bytes(grads, dp), 0.0
    elif stage == 1:
        g, w = reduce_scatter_bytes(grads, dp), all_gather_bytes(weights, dp)
    elif stage == 2:
        g, w = m * reduce_scatter_bytes(grads, dp), all_gather_bytes(weights, dp)
    else:
        g, w = m * reduce_scatter_bytes(grads, dp), 2 * m * all_gather_bytes(weights, dp)
    return {"gradients": g, "weights": w, "total": g + w}


def tensor_parallel_bytes(s: int, b: int, h: int, layers: int, t: int,
                          micro_batches: int = 1, sp: bool = False, recompute: str = "none",
                          dtype_bytes: int = 2) -> float:
    """Bytes each GPU sends per step for Megatron tensor parallelism over t GPUs (Shoeybi
    et al. 2019; Korthikanti et al. 2022, Section 4.2.2): each transformer layer
    all-reduces its s·b·h activations twice in forward (after attention and after the
    MLP) and twice in backward (their inputs' gradients), per micro-batch:

        4 · 2(t − 1)/t · s·b·h·dtype_bytes · layers · micro_batches

    `layers` are the layers on this GPU (L/p with pipeline parallelism). With sequence
    parallelism (`sp`) the four all-reduces become four all-gathers and four
    reduce-scatters, the same volume (a ring all-reduce is the two). Full recompute runs
    each layer's forward again in backward, and its two collectives: 6 instead of 4
    (selective recompute repeats no collective). Not counted: the extra backward
    all-gather of the sequence-parallel linear inputs the paper keeps sharded.

    >>> from flopgrad.planning import tensor_parallel_bytes
    >>> tensor_parallel_bytes(2048, 1, 12288, layers=12, t=8) / 2**30  # GPT-3 175B, p = 8
    3.9375
    >>> tensor_parallel_bytes(2048, 1, 12288, layers=12, t=8, recompute="full") / 2**30
    5.90625
    """
    s, b, h, L, t, m, nb = (_count(k, v) for k, v in zip(
        ("s", "b", "h", "layers", "t", "micro_batches", "dtype_bytes"),
        (s, b, h, layers, t, micro_batches, dtype_bytes), strict=True))
    passes = 6 if _recompute(recompute) == "full" else 4
    activation = s * b * h * nb
    if sp:
        per_layer = passes * (all_gather_bytes(activation, t) + reduce_scatter_bytes(activation, t))
    else:
        per_layer = passes * all_reduce_bytes(activation, t)
    return per_layer * L * m


def pipeline_p2p_bytes(s: int, b: int, h: int, p: int, micro_batches: int = 1,
                       interleave: int = 1, dtype_bytes: int = 2) -> float:
    """Bytes the busiest GPU sends per step point to point for pipeline parallelism over p
    stages (Narayanan et al. 2021): each micro-batch's s·b·h activations cross every stage
    boundary forward, and their gradients cross it backward. With v = `interleave` model
    chunks per GPU there are p·v − 1 boundaries; a GPU sends forward from each chunk but
    the model's last and backward from each but the first:

        p = 1: 0      p = 2: (2v − 1)·m·s·b·h·dtype_bytes      p > 2: 2v·m·s·b·h·dtype_bytes

    for m micro-batches (interleaving multiplies the point-to-point volume by v, as the
    paper says).

    >>> from flopgrad.planning import pipeline_p2p_bytes
    >>> pipeline_p2p_bytes(2048, 1, 12288, p=8, micro_batches=64) / 2**30  # GPT-3 175B
    6.0
    >>> pipeline_p2p_bytes(2048, 1, 12288, p=8, micro_batches=64, interleave=3) / 2**30
    18.0
    """
    s, b, h, p, m, v, nb = (_count(k, x) for k, x in zip(
        ("s", "b", "h", "p", "micro_batches", "interleave", "dtype_bytes"),
        (s, b, h, p, micro_batches, interleave, dtype_bytes), strict=True))
    sends = 0 if p == 1 else 2 * v - 1 if p == 2 else 2 * v
    return float(sends * m * s * b * h * nb)


def pipeline_bubble(p: int, micro_batches: int, interleave: int = 1) -> Fraction:
    """Pipeline bubble time over ideal compute time (Narayanan et al. 2021, Section 2.2):
    (p − 1)/m for p stages and m micro-batches, (p − 1)/(v·m) with the interleaved
    schedule of v = `interleave` model chunks per GPU. Exact (a Fraction).

    >>> from flopgrad.planning import pipeline_bubble
    >>> pipeline_bubble(8, 64), pipeline_bubble(8, 64, interleave=3)
    (Fraction(7, 64), Fraction(7, 192))
    """
    p, m, v = _bubble_args(p, micro_batches, interleave)
    return Fraction(p - 1, v * m)


def pipeline_bubble_share(p: int, micro_batches: int, interleave: int = 1) -> Fraction:
    """The bubble's share of the whole step: bubble / (bubble + ideal compute) =
    (p − 1)/(m + p − 1), interleaved (p − 1)/(v·m + p − 1). Exact (a Fraction).

    >>> from flopgrad.planning import pipeline_bubble_share
    >>> pipeline_bubble_share(8, 64), pipeline_bubble_share(8, 64, interleave=3)
    (Fraction(7, 71), Fraction(7, 199))
    """
    p, m, v = _bubble_args(p, micro_batches, interleave)
    return Fraction(p - 1, v * m + p - 1)


def _bubble_args(p, micro_batches, interleave) -> tuple[int, int, int]:
    return _count("p", p), _count("micro_batches", micro_batches), _count("interleave", interleave)


def check_layout(n_layer: int, n_head: int, d_model: int, gpus: int, dp: int | None = None,
                 tp: int = 1, pp: int = 1) -> int:
    """The data-parallel size of a layout of `gpus` GPUs as dp × tp × pp (dp computed from
    the others when None), or a ValueError naming the numbers: tp must divide the heads
    and the hidden size, pp the layers, and dp × tp × pp must be the GPUs.

    >>> from flopgrad.planning import check_layout
    >>> check_layout(96, 96, 12288, gpus=1024, tp=8, pp=8)
    16
    >>> check_layout(96, 96, 12288, gpus=64, dp=2, tp=8, pp=8)
    Traceback (most recent call last):
    ...
    ValueError: gpus 64 != dp 2 × tp 8 × pp 8 = 128
    """
    n_layer, n_head, d_model, gpus, tp, pp = (_count(k, v) for k, v in zip(
        ("n_layer", "n_head", "d_model", "gpus", "tp", "pp"),
        (n_layer, n_head, d_model, gpus, tp, pp), strict=True))
    _divides("tp", tp, "attention heads", n_head)
    _divides("tp", tp, "hidden size (d_model)", d_model)
    _divides("pp", pp, "layers", n_layer)
    if dp is None:
        if gpus % (tp * pp):
            raise ValueError(f"tp {tp} × pp {pp} = {tp * pp} does not divide gpus {gpus}")
        return gpus // (tp * pp)
    dp = _count("dp", dp)
    if dp * tp * pp != gpus:
        raise ValueError(f"gpus {gpus} != dp {dp} × tp {tp} × pp {pp} = {dp * tp * pp}")
    return dp


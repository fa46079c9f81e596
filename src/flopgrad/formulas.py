"""Published FLOP and memory formulas for transformers, to set beside flopgrad's exact count.

Every function states its assumptions; `docs/formulas.md` compares each with the count.

>>> from flopgrad import formulas
>>> formulas.six_nd(7e9, 2e12)
8.4e+22
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "six_nd", "kaplan", "palm_per_token", "chinchilla_forward", "narayanan_per_iteration",
    "korthikanti_activation_bytes", "KaplanCount",
]


def six_nd(params: float, tokens: float) -> float:
    """Training FLOPs ~ 6·N·D: 2 FLOPs per parameter per token forward, 4 backward
    (dW and dX). Ignores attention over the context, embeddings' lack of matmuls and every
    non-matmul op.

    >>> from flopgrad import formulas
    >>> formulas.six_nd(124e6, 1e9)  # GPT-2 small on a billion tokens
    7.44e+17
    """
    return 6.0 * params * tokens


@dataclass(frozen=True)
class KaplanCount:
    """Kaplan et al. 2020, Table 1 (per token).

    >>> from flopgrad import formulas
    >>> formulas.KaplanCount(params=100, forward_flops=250)
    KaplanCount(params=100, forward_flops=250)
    """

    params: int  # N = 2·d_model·n_layer·(2·d_attn + d_ff), embeddings excluded
    forward_flops: int  # C_forward = 2N + 2·n_layer·n_ctx·d_attn

    @property
    def training_flops(self) -> int:
        """C ≈ 3·C_forward (backward = 2x forward).

        >>> from flopgrad import formulas
        >>> formulas.KaplanCount(params=100, forward_flops=250).training_flops
        750
        """
        return 3 * self.forward_flops


def kaplan(n_layer: int, d_model: int, n_ctx: int, d_attn: int | None = None,
           d_ff: int | None = None) -> KaplanCount:
    """Kaplan et al. 2020, Table 1. Assumptions: non-embedding parameters only (no
    embeddings, no unembedding, no biases or layer norms), d_attn = d_model and
    d_ff = 4·d_model by default, and the attention context term counted once
    (2·n_layer·n_ctx·d_attn per token) although QK^T and the attention-weighted sum of V are
    two products of that size.

    >>> from flopgrad import formulas
    >>> formulas.kaplan(n_layer=12, d_model=768, n_ctx=1024)
    KaplanCount(params=84934656, forward_flops=188743680)
    """
    d_attn = d_model if d_attn is None else d_attn
    d_ff = 4 * d_model if d_ff is None else d_ff
    n = 2 * d_model * n_layer * (2 * d_attn + d_ff)
    return KaplanCount(n, 2 * n + 2 * n_layer * n_ctx * d_attn)


def palm_per_token(params: int, n_layer: int, n_head: int, head_dim: int, seq: int) -> int:
    """PaLM (Chowdhery et al. 2022, Appendix B) and nanoGPT: training FLOPs per token
    6N + 12·L·H·Q·T, with N the non-embedding parameters and the attention term counting
    both QK^T and AV, forward and backward (no causal-mask savings).

    >>> from flopgrad import formulas
    >>> formulas.palm_per_token(85_000_000, n_layer=12, n_head=12, head_dim=64, seq=1024)
    623246208
    """
    return 6 * params + 12 * n_layer * n_head * head_dim * seq


def chinchilla_forward(n_layer: int, d_model: int, n_head: int, seq: int, vocab: int,
                       key_size: int | None = None, ffw_size: int | None = None) -> int:
    """Hoffmann et al. 2022, Appendix F: forward FLOPs of one sequence, counting embeddings
    as a matmul (2·seq·vocab·d_model), the softmax (3·heads·seq²), the attention products
    and the logits. Training ≈ 3x this (backward = 2x forward).

    >>> from flopgrad import formulas
    >>> formulas.chinchilla_forward(n_layer=12, d_model=768, n_head=12, seq=1024, vocab=50257)
    371148718080
    """
    key_size = d_model // n_head if key_size is None else key_size
    ffw_size = 4 * d_model if ffw_size is None else ffw_size
    inner = key_size * n_head
    embeddings = 2 * seq * vocab * d_model
    attention = (2 * 3 * seq * d_model * inner  # q, k, v projections
                 + 2 * seq * seq * inner  # QK^T logits
                 + 3 * n_head * seq * seq  # softmax
                 + 2 * seq * seq * inner  # softmax @ V
                 + 2 * seq * inner * d_model)  # output projection
    dense = 2 * seq * (d_model * ffw_size + d_model * ffw_size)
    logits = 2 * seq * d_model * vocab
    return embeddings + n_layer * (attention + dense) + logits


def narayanan_per_iteration(batch: int, seq: int, n_layer: int, d_model: int, vocab: int,
                            recompute: bool = True) -> float:
    """Narayanan et al. 2021 (Megatron-LM), FLOPs per training iteration of B sequences:
    96·B·s·l·h²·(1 + s/(6h) + V/(16·l·h)) with full activation recomputation (an extra
    forward pass), 72·B·s·l·h²·(1 + s/(6h) + V/(12·l·h)) without. Assumes d_ff = 4h and
    counts only matmuls.

    >>> from flopgrad import formulas
    >>> formulas.narayanan_per_iteration(1, 1024, 12, 768, 50257, recompute=False)
    874944921600.0
    """
    b, s, l, h, v = batch, seq, n_layer, d_model, vocab
    if recompute:
        return 96 * b * s * l * h * h * (1 + s / (6 * h) + v / (16 * l * h))
    return 72 * b * s * l * h * h * (1 + s / (6 * h) + v / (12 * l * h))


def korthikanti_activation_bytes(seq: int, batch: int, d_model: int, n_head: int) -> float:
    """Korthikanti et al. 2022: activation memory of one transformer layer, in bytes, with
    16-bit activations, no tensor/sequence parallelism and no recomputation:
    s·b·h·(34 + 5·a·s/h). Includes dropout masks (1 byte per element) and the softmax
    output; a model without dropout keeps less.

    >>> from flopgrad import formulas
    >>> formulas.korthikanti_activation_bytes(seq=1024, batch=1, d_model=768, n_head=12)
    89653248.0
    """
    return seq * batch * d_model * (34 + 5 * n_head * seq / d_model)

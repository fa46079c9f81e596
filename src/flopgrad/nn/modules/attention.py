"""MultiheadAttention with torch.nn.MultiheadAttention's parameters and masks."""

from __future__ import annotations

import numpy as np

from flopgrad import creation
from flopgrad.backend import MetaArray
from flopgrad.nn import functional as F
from flopgrad.nn import init
from flopgrad.nn.modules.linear import Linear
from flopgrad.nn.modules.module import Module
from flopgrad.tensor import Parameter, Tensor, _t, where

__all__ = ["MultiheadAttention"]


class MultiheadAttention(Module):
    """Multi-head attention with PyTorch's parameter layout (batch_first only).

    forward(query, key, value, attn_mask=None, is_causal=False, need_weights=False,
    key_padding_mask=None) returns (output, None); weights are not returned (they would need
    a second softmax). The masks mean what they mean in torch.nn.MultiheadAttention: a
    boolean attn_mask ((L, S) or (N * num_heads, L, S)) or key_padding_mask ((N, S)) is True
    where attention is NOT allowed (the opposite of F.scaled_dot_product_attention's boolean
    mask); a float mask is added to the scores. With an attn_mask, is_causal is only a hint
    (torch uses the mask as given).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> attn, x = fg.nn.MultiheadAttention(8, num_heads=2), fg.ones(2, 5, 8)
    >>> out, weights = attn(x, x, x, is_causal=True)
    >>> out.shape, weights
    ((2, 5, 8), None)
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 batch_first: bool = True, dtype=None):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim {embed_dim} is not divisible by "
                             f"num_heads {num_heads}")
        if not batch_first:
            raise ValueError("MultiheadAttention: only batch_first=True is supported")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.in_proj_weight = Parameter(creation.empty(3 * embed_dim, embed_dim, dtype=dtype))
        init.xavier_uniform_(self.in_proj_weight)
        self.register_parameter(
            "in_proj_bias", Parameter(creation.zeros(3 * embed_dim, dtype=dtype)) if bias
            else None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        if bias:
            init.zeros_(self.out_proj.bias)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, attn_mask=None,
                is_causal: bool = False, need_weights: bool = False,
                key_padding_mask=None) -> tuple[Tensor, None]:
        """(attention output of shape (N, L, embed_dim), None)."""
        if need_weights:
            raise ValueError("MultiheadAttention: need_weights=True is not supported")
        e, h = self.embed_dim, self.num_heads
        w = self.in_proj_weight
        b = self.in_proj_bias
        wq, wk, wv = w[:e], w[e:2 * e], w[2 * e:]
        bq, bk, bv = (b[:e], b[e:2 * e], b[2 * e:]) if b is not None else (None, None, None)
        q, k, v = F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)

        def heads(t):
            n, s, _ = t.shape
            return t.reshape(n, s, h, e // h).transpose(1, 2)

        if is_causal and attn_mask is None and key_padding_mask is not None:
            shape = (q.shape[1], k.shape[1])  # the causal mask, True above the diagonal
            attn_mask = Tensor(MetaArray(shape, np.bool_) if q.is_meta else ~np.tri(
                *shape, dtype=bool))
        mask = _attention_mask(attn_mask, key_padding_mask, q.shape[0], h, q.dtype)
        out = F.scaled_dot_product_attention(
            heads(q), heads(k), heads(v), attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal and mask is None)
        n, _, s, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(n, s, e)), None


def _attention_mask(attn_mask, key_padding_mask, n: int, heads: int, dtype):
    """torch.nn.MultiheadAttention's masks (boolean True = masked out, float = added) as one
    mask for F.scaled_dot_product_attention over (N, heads, L, S) scores: boolean masks stay
    boolean (True = may attend), a float mask makes the result additive."""
    masks = []
    if attn_mask is not None:
        m = _t(attn_mask)
        if m.ndim == 3:  # (N * heads, L, S)
            m = m.reshape(n, heads, m.shape[1], m.shape[2])
        elif m.ndim != 2:
            raise ValueError(f"MultiheadAttention: attn_mask must be (L, S) or "
                             f"(N * num_heads, L, S), got shape {m.shape}")
        masks.append(m)
    if key_padding_mask is not None:
        m = _t(key_padding_mask)
        if m.ndim != 2 or m.shape[0] != n:
            raise ValueError(f"MultiheadAttention: key_padding_mask must be (N, S) with N = "
                             f"{n}, got shape {m.shape}")
        masks.append(m.reshape(n, 1, 1, m.shape[1]))
    if not masks:
        return None
    if all(m.dtype == np.bool_ for m in masks):
        allowed = ~masks[0]
        for m in masks[1:]:
            allowed = allowed & ~m
        return allowed
    total = None
    for m in masks:
        if m.dtype == np.bool_:
            m = where(m, float("-inf"), 0.0).to(dtype)
        total = m if total is None else total + m
    return total

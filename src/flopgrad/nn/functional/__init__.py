"""Neural-network functions (PyTorch's torch.nn.functional), one module per family.

Most are compositions of flopgrad's primitives (`flopgrad.ops`), billed as the ops they
run. Some are primitives of their own in flopgrad.ops, each with its own cost and derivative
rules: `relu` and constant `pad` (one NumPy call each), and, fused as PyTorch's kernels
are, `linear` (GEMM plus bias, billed as matmul), `gelu`, `softmax`, `log_softmax`,
`layer_norm` and `cross_entropy` (in its common case: class indices over (N, C) logits, no
weight, label smoothing or ignored target). Convolution and pooling run on the im2col
windows of the `unfold` primitive (whose gradient is `fold`); convolution is those windows
followed by one batched matmul, so its FLOPs are matmul FLOPs.

The families: `activation`, `dense` (linear), `sparse` (embedding, one_hot), `padding`,
`conv`, `pooling`, `normalization`, `regularization` (dropout), `loss` and `attention`; no
module shares a function's name, so F.linear and F.dropout are always the functions.
"""

from flopgrad.nn.functional.activation import (
    elu,
    gelu,
    hardtanh,
    leaky_relu,
    log_softmax,
    logsigmoid,
    mish,
    relu,
    relu6,
    sigmoid,
    silu,
    softmax,
    softmin,
    softplus,
    tanh,
)
from flopgrad.nn.functional.attention import scaled_dot_product_attention
from flopgrad.nn.functional.conv import conv1d, conv2d
from flopgrad.nn.functional.dense import linear
from flopgrad.nn.functional.loss import (
    binary_cross_entropy_with_logits,
    cross_entropy,
    huber_loss,
    l1_loss,
    mse_loss,
    nll_loss,
    smooth_l1_loss,
)
from flopgrad.nn.functional.normalization import batch_norm, layer_norm, rms_norm
from flopgrad.nn.functional.padding import pad
from flopgrad.nn.functional.pooling import avg_pool1d, avg_pool2d, max_pool1d, max_pool2d
from flopgrad.nn.functional.regularization import dropout
from flopgrad.nn.functional.sparse import embedding
from flopgrad.nn.functional.sparse import one_hot as one_hot  # an F name, not in __all__

__all__ = [
    "linear", "conv1d", "conv2d", "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d",
    "embedding", "layer_norm",
    "rms_norm", "batch_norm", "dropout", "cross_entropy", "nll_loss", "mse_loss",
    "binary_cross_entropy_with_logits", "scaled_dot_product_attention", "relu", "leaky_relu",
    "gelu", "silu", "softplus", "sigmoid", "tanh", "softmax", "log_softmax", "pad",
    "hardtanh", "relu6", "elu", "logsigmoid", "mish", "softmin", "l1_loss", "smooth_l1_loss",
    "huber_loss",
]

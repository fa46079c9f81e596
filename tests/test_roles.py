"""The dW/dX split: a backward op is "weight" only when the gradient it computes is for a
weight (an nn.Parameter or a tensor made from weights alone); anything that depends on data
of any dtype (token ids, masks, targets, images) is an activation, and its gradient is dX."""

import numpy as np
import pytest

import flopgrad as fg
from flopgrad.models import GPT, GPTConfig
from flopgrad.nn import Parameter
from flopgrad.nn import functional as F


def _gpt_bill(n_layer=3):
    fg.manual_seed(0)
    model = GPT(GPTConfig(vocab=50, ctx=16, n_layer=n_layer, n_head=2, d_model=32))
    ids = fg.randint(0, 50, (2, 16))
    with fg.profile() as bill:
        logits = model(ids)
        F.cross_entropy(logits.reshape(-1, 50), ids.reshape(-1)).backward()
    return bill


def test_identical_transformer_blocks_bill_identically():
    bill = _gpt_bill()
    splits = [(bill.flops("backward", role="input", scope=f"blocks.{i}"),
               bill.flops("backward", role="weight", scope=f"blocks.{i}")) for i in range(3)]
    assert splits[0] == splits[1] == splits[2]
    dx, dw = splits[0]
    assert dx > 0 and dw > 0


def test_the_first_block_matmuls_split_as_two_gemms_each():
    """Each linear in a block has dX = dW = its forward GEMM (no bias term in the matmul)."""
    bill = _gpt_bill(n_layer=1)
    for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
        s = f"blocks.0.{name}"
        fwd = bill.flops("forward", kind="tensor", scope=s)
        assert bill.flops("backward", role="input", kind="tensor", scope=s) == fwd
        assert bill.flops("backward", role="weight", kind="tensor", scope=s) == fwd


def test_embedding_feeding_a_linear_has_an_input_gradient():
    fg.manual_seed(0)
    emb, lin = fg.nn.Embedding(10, 4), fg.nn.Linear(4, 3)
    with fg.profile() as bill:
        lin(emb(fg.tensor([1, 2, 3]))).sum().backward()
    # the linear's dX is a (3, 3) @ (3, 4) GEMM: 2*3*3*4 FLOPs
    assert bill.flops("backward", role="input", kind="tensor") == 2 * 3 * 3 * 4
    assert bill.flops("backward", role="weight", kind="tensor") == 2 * 3 * 3 * 4


@pytest.mark.parametrize("index_kind", ["tensor", "numpy"])
def test_gathered_weights_are_activations(index_kind):
    W = Parameter(fg.randn(6, 5))
    idx = np.array([0, 2, 2])
    index = fg.tensor(idx) if index_kind == "tensor" else idx
    x = W[index]                     # depends on token ids: an activation
    v = Parameter(fg.randn(5, 2))
    with fg.profile() as bill:
        (x @ v).sum().backward()
    assert bill.flops("backward", role="input", kind="tensor") == 2 * 3 * 2 * 5


def test_weights_made_from_weights_alone_stay_weights():
    """W.T, a reshape, a cast and a tied copy are still weights; a masked weight is not."""
    W = Parameter(fg.randn(4, 6, dtype=fg.float64))
    x = fg.randn(3, 4, dtype=fg.float64)
    with fg.profile() as bill:
        y = x @ W.T.T.reshape(4, 6).to(fg.float32).to(fg.float64)
        y.sum().backward()
    assert bill.flops("backward", role="input") == 0
    assert bill.flops("backward", role="weight", kind="tensor") == 2 * 3 * 4 * 6

    mask = fg.tensor(np.tril(np.ones((4, 6))) > 0)
    with fg.profile() as bill:
        (x @ fg.where(mask, W, 0.0)).sum().backward()
    # the masked weight depends on data: the GEMM's gradient into it is dX
    assert bill.flops("backward", role="input", kind="tensor") == 2 * 3 * 4 * 6


def test_a_weight_times_a_python_number_is_still_a_weight():
    W = Parameter(fg.randn(4, 6))
    with fg.profile() as bill:
        (fg.randn(3, 4) @ (W * 0.5)).sum().backward()
    assert bill.flops("backward", role="input", kind="tensor") == 0


def test_conv_on_images_and_targets_split_like_a_linear():
    fg.manual_seed(0)
    conv = fg.nn.Conv2d(2, 3, 3)
    img = fg.randn(2, 2, 6, 6)
    target = fg.tensor([1, 0])
    head = fg.nn.Linear(3 * 4 * 4, 2)
    with fg.profile() as bill:
        h = conv(img).relu().flatten(1)
        F.cross_entropy(head(h), target).backward()
    fwd_head = 2 * 2 * 48 * 2  # the head's GEMM: batch 2, 48 features, 2 classes
    assert bill.flops("backward", role="input", kind="tensor") == fwd_head  # only head's dX
    assert bill.flops("backward", role="weight", kind="tensor") == bill.flops(
        "forward", kind="tensor")

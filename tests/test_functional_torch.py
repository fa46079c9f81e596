"""flopgrad.nn.functional against torch.nn.functional (CPU, float64).

Same table-driven check as test_ops_torch: values, gradients, JVPs (contiguous and
strided inputs) and gradcheck; plus stateful or random functions (batch_norm running
statistics, dropout) tested on their own.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from conftest import (
    Case,
    away_from,
    check_against_torch,
    fixed,
    ft,
    make_inputs,
    noncontiguous,
    pos,
    real,
    to_fg,
    to_torch,
    tt,
)
from torch.nn.attention import SDPBackend, sdpa_kernel

import flopgrad as fg
import flopgrad.nn.functional as F

C = Case

TARGET = np.array([1, 0, 4, 2])  # class indices for (4, 5) logits
TARGET_IGN = np.array([1, -100, 4, 2])
TARGET_12 = np.array([1, 0, 4, 2, 3, 3, 0, 1, 4, 4, 2, 0])  # for (12, 5): more rows than classes
TARGET_IGN2 = np.array([1, 2, 4, 2])  # with ignore_index=2
TARGET_K = np.array([[0, 4, 2], [1, 1, 3]])  # (2, 3) for (2, 5, 3) logits
CLASS_W = np.array([0.5, 1.0, 2.0, 0.25, 1.5])
_p = np.random.default_rng(7).uniform(0.1, 1.0, (4, 5))
PROBS = _p / _p.sum(1, keepdims=True)
BIN_T = np.random.default_rng(8).uniform(0.0, 1.0, (4, 3))
BIN_W = np.array([[1.0], [0.5], [2.0], [0.0]])
POS_W = np.array([0.5, 2.0, 3.0])
EMB_IDX = np.array([[0, 2, 5], [2, 2, 1]])
CAUSAL_MASK = np.tril(np.ones((3, 5), dtype=bool))
BOOL_MASK = np.array([[True, False, True, True, False], [True, True, False, False, False],
                      [False, True, True, True, True]])
FLOAT_MASK = np.random.default_rng(9).standard_normal((3, 5))
HEAD_MASK = np.random.default_rng(10).uniform(size=(1, 2, 3, 5)) > 0.3
HEAD_MASK[..., 0] = True  # no fully masked row here
_pk = np.random.default_rng(15).uniform(0.1, 1.0, (2, 5, 3))
PROBS_K = _pk / _pk.sum(1, keepdims=True)
ALL_IGNORED = np.array([-100, -100])
NEG_INF_ROW = FLOAT_MASK.copy()
NEG_INF_ROW[1] = -np.inf
NEG_INF_ROW[0, 2] = -np.inf
RUN_MEAN = np.array([0.1, -0.2, 0.3])
RUN_VAR = np.array([0.5, 1.5, 2.0])


ACTIVATIONS = [
    C("relu", F.relu, TF.relu, [away_from([0.0], 3, 4)]),
    C("leaky_relu", F.leaky_relu, TF.leaky_relu, [away_from([0.0], 3, 4)]),
    C("leaky_relu-slope", lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2),
      [away_from([0.0], 3, 4)]),
    C("leaky_relu-at-0", lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2),
      [fixed([-1.0, 0.0, 1.0])], gradcheck=False),
    C("gelu", F.gelu, TF.gelu, [real(3, 4)]),
    C("gelu-tanh", lambda x: F.gelu(x, approximate="tanh"),
      lambda x: TF.gelu(x, approximate="tanh"), [real(3, 4)]),
    C("silu", F.silu, TF.silu, [real(3, 4)]),
    C("softplus", F.softplus, TF.softplus, [real(3, 4)]),
    C("softplus-beta", lambda x: F.softplus(x, beta=2.0), lambda x: TF.softplus(x, beta=2.0),
      [real(3, 4)]),
    C("softplus-threshold", lambda x: F.softplus(x, beta=2.0, threshold=1.0),
      lambda x: TF.softplus(x, beta=2.0, threshold=1.0), [away_from([0.5], 3, 4)]),
    C("softplus-large", F.softplus, TF.softplus, [fixed([-50.0, -3.0, 0.0, 19.0, 21.0, 60.0])]),
    C("F.sigmoid", F.sigmoid, TF.sigmoid, [real(3, 4)]),
    C("F.tanh", F.tanh, TF.tanh, [real(3, 4)]),
    C("F.softmax", lambda x: F.softmax(x, 1), lambda x: TF.softmax(x, 1), [real(2, 3, 4)]),
    C("F.log_softmax", lambda x: F.log_softmax(x, -1), lambda x: TF.log_softmax(x, -1),
      [real(2, 3, 4)]),
]

PAD = [
    C("pad-last", lambda x: F.pad(x, (1, 2)), lambda x: TF.pad(x, (1, 2)), [real(2, 3)]),
    C("pad-two-dims", lambda x: F.pad(x, (1, 0, 2, 1)), lambda x: TF.pad(x, (1, 0, 2, 1)),
      [real(2, 3, 4)]),
    C("pad-value", lambda x: F.pad(x, (0, 1, 1, 0), value=1.5),
      lambda x: TF.pad(x, (0, 1, 1, 0), value=1.5), [real(3, 4)]),
    C("pad-4d", lambda x: F.pad(x, (1, 1, 0, 2, 1, 0)),
      lambda x: TF.pad(x, (1, 1, 0, 2, 1, 0)), [real(2, 1, 2, 3)]),
    C("pad-zero", lambda x: F.pad(x, (0, 0)), lambda x: TF.pad(x, (0, 0)), [real(3, 4)]),
]

LAYERS = [
    C("linear", F.linear, TF.linear, [real(4, 3), real(5, 3), real(5)]),
    C("linear-nobias", F.linear, TF.linear, [real(4, 3), real(5, 3)]),
    C("linear-batched", F.linear, TF.linear, [real(2, 4, 3), real(5, 3), real(5)]),
    C("linear-1d", F.linear, TF.linear, [real(3), real(5, 3), real(5)]),
    C("conv1d", F.conv1d, TF.conv1d, [real(2, 3, 7), real(4, 3, 3), real(4)]),
    C("conv1d-all", lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=1, dilation=2, groups=2),
      lambda x, w, b: TF.conv1d(x, w, b, stride=2, padding=1, dilation=2, groups=2),
      [real(2, 4, 9), real(6, 2, 3), real(6)]),
    C("conv1d-same", lambda x, w: F.conv1d(x, w, padding="same", dilation=2),
      lambda x, w: TF.conv1d(x, w, padding="same", dilation=2), [real(1, 2, 8), real(3, 2, 4)]),
    C("conv2d", F.conv2d, TF.conv2d, [real(2, 3, 5, 4), real(4, 3, 3, 2), real(4)]),
    C("conv2d-nobias", F.conv2d, TF.conv2d, [real(1, 2, 4, 4), real(3, 2, 2, 2)]),
    C("conv2d-stride-pad", lambda x, w: F.conv2d(x, w, stride=(2, 1), padding=(1, 2)),
      lambda x, w: TF.conv2d(x, w, stride=(2, 1), padding=(1, 2)),
      [real(2, 2, 5, 4), real(3, 2, 3, 3)]),
    C("conv2d-dilation", lambda x, w, b: F.conv2d(x, w, b, dilation=(2, 1), padding=1),
      lambda x, w, b: TF.conv2d(x, w, b, dilation=(2, 1), padding=1),
      [real(1, 2, 6, 5), real(2, 2, 2, 3), real(2)]),
    C("conv2d-groups", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, groups=2),
      lambda x, w, b: TF.conv2d(x, w, b, stride=2, padding=1, groups=2),
      [real(2, 4, 5, 5), real(6, 2, 3, 3), real(6)]),
    C("conv2d-depthwise", lambda x, w: F.conv2d(x, w, groups=3),
      lambda x, w: TF.conv2d(x, w, groups=3), [real(1, 3, 4, 4), real(3, 1, 2, 2)]),
    C("conv1d-tuples", lambda x, w: F.conv1d(x, w, stride=(2,), padding=(2,), dilation=(1,)),
      lambda x, w: TF.conv1d(x, w, stride=(2,), padding=(2,), dilation=(1,)),
      [real(1, 2, 7), real(2, 2, 3)]),
    C("conv2d-same-dilated", lambda x, w: F.conv2d(x, w, padding="same", dilation=2),
      lambda x, w: TF.conv2d(x, w, padding="same", dilation=2),
      [real(1, 2, 6, 5), real(2, 2, 3, 2)]),
    C("conv2d-same", lambda x, w: F.conv2d(x, w, padding="same"),
      lambda x, w: TF.conv2d(x, w, padding="same"), [real(1, 2, 5, 4), real(2, 2, 2, 3)]),
    C("conv2d-valid", lambda x, w: F.conv2d(x, w, padding="valid"),
      lambda x, w: TF.conv2d(x, w, padding="valid"), [real(1, 2, 5, 4), real(2, 2, 2, 3)]),
    C("max_pool2d", lambda x: F.max_pool2d(x, 2), lambda x: TF.max_pool2d(x, 2),
      [real(2, 3, 4, 5)]),
    C("max_pool2d-all", lambda x: F.max_pool2d(x, (3, 2), stride=(2, 1), padding=1),
      lambda x: TF.max_pool2d(x, (3, 2), stride=(2, 1), padding=1), [real(1, 2, 5, 4)]),
    C("max_pool2d-dilation", lambda x: F.max_pool2d(x, 2, stride=1, dilation=2),
      lambda x: TF.max_pool2d(x, 2, stride=1, dilation=2), [real(1, 2, 5, 5)]),
    C("max_pool2d-big-stride", lambda x: F.max_pool2d(x, 2, stride=3),
      lambda x: TF.max_pool2d(x, 2, stride=3), [real(1, 2, 7, 5)]),
    C("max_pool2d-unbatched", lambda x: F.max_pool2d(x, 2), lambda x: TF.max_pool2d(x, 2),
      [real(2, 4, 4)]),
    C("max_pool2d-ties", lambda x: F.max_pool2d(x, 2, stride=1),
      lambda x: TF.max_pool2d(x, 2, stride=1),
      [fixed([[[[1.0, 1.0, 0.0], [1.0, 1.0, 2.0], [2.0, 0.0, 2.0]]]])], gradcheck=False),
    C("avg_pool2d", lambda x: F.avg_pool2d(x, 2), lambda x: TF.avg_pool2d(x, 2),
      [real(2, 3, 4, 5)]),
    C("avg_pool2d-pad", lambda x: F.avg_pool2d(x, 3, stride=2, padding=1),
      lambda x: TF.avg_pool2d(x, 3, stride=2, padding=1), [real(1, 2, 5, 4)]),
    C("avg_pool2d-exclude-pad",
      lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False),
      lambda x: TF.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False),
      [real(1, 2, 5, 4)]),
    C("avg_pool2d-unbatched", lambda x: F.avg_pool2d(x, (2, 1)),
      lambda x: TF.avg_pool2d(x, (2, 1)), [real(2, 4, 3)]),
    C("embedding", lambda w: F.embedding(EMB_IDX, w), lambda w: TF.embedding(tt(EMB_IDX), w),
      [real(6, 3)]),
    C("embedding-0d-index", lambda w: F.embedding(np.array(4), w),
      lambda w: TF.embedding(tt(4), w), [real(6, 3)]),
    C("embedding-tensor-index", lambda w: F.embedding(ft(EMB_IDX[0]), w),
      lambda w: TF.embedding(tt(EMB_IDX[0]), w), [real(6, 3)]),
    # padding_idx: torch only masks the backward (its JVP still moves the padding rows, so
    # its jacfwd and jacrev disagree); flopgrad keeps both modes consistent, with the padding
    # rows constant. Compare values and gradients; the JVP is checked in its own test.
    C("embedding-padding_idx", lambda w: F.embedding(EMB_IDX, w, padding_idx=2),
      lambda w: TF.embedding(tt(EMB_IDX), w, padding_idx=2), [real(6, 3)], jvp=False,
      gradcheck=False),
]

NORMS = [
    C("layer_norm", lambda x, w, b: F.layer_norm(x, (4,), w, b),
      lambda x, w, b: TF.layer_norm(x, (4,), w, b), [real(2, 3, 4), real(4), real(4)]),
    C("layer_norm-2d-shape", lambda x, w: F.layer_norm(x, (3, 4), w, eps=1e-3),
      lambda x, w: TF.layer_norm(x, (3, 4), w, eps=1e-3), [real(2, 3, 4), real(3, 4)]),
    C("layer_norm-plain", lambda x: F.layer_norm(x, 5), lambda x: TF.layer_norm(x, (5,)),
      [real(3, 5)]),
    C("rms_norm", lambda x, w: F.rms_norm(x, (4,), w), lambda x, w: TF.rms_norm(x, (4,), w),
      [real(2, 3, 4), real(4)]),
    C("rms_norm-eps", lambda x: F.rms_norm(x, (3, 4), eps=1e-2),
      lambda x: TF.rms_norm(x, (3, 4), eps=1e-2), [real(2, 3, 4)]),
    C("batch_norm-train", lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
      lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True),
      [real(4, 3, 2, 2), real(3), real(3)]),
    C("batch_norm-train-1d", lambda x: F.batch_norm(x, None, None, training=True, eps=1e-3),
      lambda x: TF.batch_norm(x, None, None, training=True, eps=1e-3), [real(5, 3)]),
    C("batch_norm-train-3d", lambda x, w: F.batch_norm(x, None, None, w, training=True),
      lambda x, w: TF.batch_norm(x, None, None, w, training=True), [real(2, 3, 4), real(3)]),
    C("batch_norm-eval", lambda x, w, b: F.batch_norm(x, ft(RUN_MEAN), ft(RUN_VAR), w, b),
      lambda x, w, b: TF.batch_norm(x, tt(RUN_MEAN), tt(RUN_VAR), w, b),
      [real(2, 3, 2, 2), real(3), real(3)]),
    C("batch_norm-eval-3d", lambda x, w: F.batch_norm(x, ft(RUN_MEAN), ft(RUN_VAR), w),
      lambda x, w: TF.batch_norm(x, tt(RUN_MEAN), tt(RUN_VAR), w), [real(2, 3, 4), real(3)]),
    C("layer_norm-bias-only", lambda x, b: F.layer_norm(x, (4,), bias=b),
      lambda x, b: TF.layer_norm(x, (4,), bias=b), [real(3, 4), real(4)]),
    C("batch_norm-eval-1d", lambda x: F.batch_norm(x, ft(RUN_MEAN), ft(RUN_VAR), eps=0.1),
      lambda x: TF.batch_norm(x, tt(RUN_MEAN), tt(RUN_VAR), eps=0.1), [real(4, 3)]),
]

LOSSES = [
    C("cross_entropy", lambda x: F.cross_entropy(x, TARGET),
      lambda x: TF.cross_entropy(x, tt(TARGET)), [real(4, 5)]),
    C("cross_entropy-short-rows", lambda x: F.cross_entropy(x, TARGET_12),
      lambda x: TF.cross_entropy(x, tt(TARGET_12)), [real(12, 5)]),
    C("cross_entropy-tensor-target", lambda x: F.cross_entropy(x, ft(TARGET)),
      lambda x: TF.cross_entropy(x, tt(TARGET)), [real(4, 5)]),
    C("cross_entropy-sum", lambda x: F.cross_entropy(x, TARGET, reduction="sum"),
      lambda x: TF.cross_entropy(x, tt(TARGET), reduction="sum"), [real(4, 5)]),
    C("cross_entropy-none", lambda x: F.cross_entropy(x, TARGET, reduction="none"),
      lambda x: TF.cross_entropy(x, tt(TARGET), reduction="none"), [real(4, 5)]),
    C("cross_entropy-smoothing", lambda x: F.cross_entropy(x, TARGET, label_smoothing=0.1),
      lambda x: TF.cross_entropy(x, tt(TARGET), label_smoothing=0.1), [real(4, 5)]),
    C("cross_entropy-smoothing-none",
      lambda x: F.cross_entropy(x, TARGET_IGN, label_smoothing=0.2, reduction="none"),
      lambda x: TF.cross_entropy(x, tt(TARGET_IGN), label_smoothing=0.2, reduction="none"),
      [real(4, 5)]),
    C("cross_entropy-ignore", lambda x: F.cross_entropy(x, TARGET_IGN),
      lambda x: TF.cross_entropy(x, tt(TARGET_IGN)), [real(4, 5)]),
    C("cross_entropy-ignore_index",
      lambda x: F.cross_entropy(x, TARGET_IGN2, ignore_index=2, reduction="sum"),
      lambda x: TF.cross_entropy(x, tt(TARGET_IGN2), ignore_index=2, reduction="sum"),
      [real(4, 5)]),
    C("cross_entropy-weight", lambda x: F.cross_entropy(x, TARGET, weight=ft(CLASS_W)),
      lambda x: TF.cross_entropy(x, tt(TARGET), weight=tt(CLASS_W)), [real(4, 5)]),
    C("cross_entropy-weight-ignore-smoothing",
      lambda x: F.cross_entropy(x, TARGET_IGN, weight=ft(CLASS_W), label_smoothing=0.3),
      lambda x: TF.cross_entropy(x, tt(TARGET_IGN), weight=tt(CLASS_W), label_smoothing=0.3),
      [real(4, 5)]),
    C("cross_entropy-weight-smoothing-sum",
      lambda x: F.cross_entropy(x, TARGET, weight=ft(CLASS_W), label_smoothing=0.3,
                                reduction="sum"),
      lambda x: TF.cross_entropy(x, tt(TARGET), weight=tt(CLASS_W), label_smoothing=0.3,
                                 reduction="sum"), [real(4, 5)]),
    C("cross_entropy-probs", lambda x: F.cross_entropy(x, PROBS),
      lambda x: TF.cross_entropy(x, tt(PROBS)), [real(4, 5)]),
    C("cross_entropy-probs-all",
      lambda x: F.cross_entropy(x, ft(PROBS), weight=ft(CLASS_W), label_smoothing=0.1),
      lambda x: TF.cross_entropy(x, tt(PROBS), weight=tt(CLASS_W), label_smoothing=0.1),
      [real(4, 5)]),
    C("cross_entropy-probs-none", lambda x: F.cross_entropy(x, PROBS, reduction="none"),
      lambda x: TF.cross_entropy(x, tt(PROBS), reduction="none"), [real(4, 5)]),
    C("cross_entropy-kdim", lambda x: F.cross_entropy(x, TARGET_K),
      lambda x: TF.cross_entropy(x, tt(TARGET_K)), [real(2, 5, 3)]),
    C("cross_entropy-kdim-smoothing",
      lambda x: F.cross_entropy(x, TARGET_K, weight=ft(CLASS_W), label_smoothing=0.1),
      lambda x: TF.cross_entropy(x, tt(TARGET_K), weight=tt(CLASS_W), label_smoothing=0.1),
      [real(2, 5, 3)]),
    C("cross_entropy-probs-kdim", lambda x: F.cross_entropy(x, PROBS_K, label_smoothing=0.2),
      lambda x: TF.cross_entropy(x, tt(PROBS_K), label_smoothing=0.2), [real(2, 5, 3)]),
    # every target ignored: the mean is NaN (0 / 0) but the gradient is 0, as in torch
    C("cross_entropy-all-ignored", lambda x: F.cross_entropy(x, ALL_IGNORED),
      lambda x: TF.cross_entropy(x, tt(ALL_IGNORED)), [real(2, 5)], gradcheck=False),
    C("cross_entropy-all-ignored-smoothing",
      lambda x: F.cross_entropy(x, ALL_IGNORED, label_smoothing=0.1),
      lambda x: TF.cross_entropy(x, tt(ALL_IGNORED), label_smoothing=0.1), [real(2, 5)],
      gradcheck=False),
    C("cross_entropy-all-ignored-weight",
      lambda x: F.cross_entropy(x, ALL_IGNORED, weight=ft(CLASS_W), label_smoothing=0.1),
      lambda x: TF.cross_entropy(x, tt(ALL_IGNORED), weight=tt(CLASS_W), label_smoothing=0.1),
      [real(2, 5)], gradcheck=False),
    C("cross_entropy-all-ignored-sum", lambda x: F.cross_entropy(x, ALL_IGNORED, reduction="sum",
                                                               label_smoothing=0.1),
      lambda x: TF.cross_entropy(x, tt(ALL_IGNORED), reduction="sum", label_smoothing=0.1),
      [real(2, 5)]),
    C("cross_entropy-ignored-inf-logits", lambda x: F.cross_entropy(x, TARGET_IGN,
                                                                  label_smoothing=0.1),
      lambda x: TF.cross_entropy(x, tt(TARGET_IGN), label_smoothing=0.1),
      [fixed([[0.5, 1.0, -1.0, 0.0, 2.0], [-np.inf, 1.0, -np.inf, 0.0, 2.0],
              [0.1, 0.2, 0.3, 0.4, 0.5], [1.0, -1.0, 0.0, 3.0, 0.0]])], gradcheck=False),
    C("cross_entropy-unbatched", lambda x: F.cross_entropy(x, np.array(3)),
      lambda x: TF.cross_entropy(x, tt(3)), [real(5)]),
    C("nll_loss", lambda x: F.nll_loss(x, TARGET), lambda x: TF.nll_loss(x, tt(TARGET)),
      [real(4, 5)]),
    C("nll_loss-weight-ignore", lambda x: F.nll_loss(x, TARGET_IGN, weight=ft(CLASS_W)),
      lambda x: TF.nll_loss(x, tt(TARGET_IGN), weight=tt(CLASS_W)), [real(4, 5)]),
    C("nll_loss-none", lambda x: F.nll_loss(x, TARGET_IGN2, ignore_index=2, reduction="none"),
      lambda x: TF.nll_loss(x, tt(TARGET_IGN2), ignore_index=2, reduction="none"),
      [real(4, 5)]),
    C("nll_loss-unbatched", lambda x: F.nll_loss(x, np.array(2)),
      lambda x: TF.nll_loss(x, tt(2)), [real(5)]),
    C("nll_loss-sum-kdim", lambda x: F.nll_loss(x, TARGET_K, reduction="sum"),
      lambda x: TF.nll_loss(x, tt(TARGET_K), reduction="sum"), [real(2, 5, 3)]),
    C("mse_loss", F.mse_loss, TF.mse_loss, [real(3, 4), real(3, 4)]),
    C("mse_loss-sum", lambda x, y: F.mse_loss(x, y, reduction="sum"),
      lambda x, y: TF.mse_loss(x, y, reduction="sum"), [real(3, 4), real(3, 4)]),
    C("mse_loss-none", lambda x, y: F.mse_loss(x, y, reduction="none"),
      lambda x, y: TF.mse_loss(x, y, reduction="none"), [real(3, 4), real(3, 4)]),
    C("bce_logits", lambda x: F.binary_cross_entropy_with_logits(x, BIN_T),
      lambda x: TF.binary_cross_entropy_with_logits(x, tt(BIN_T)), [real(4, 3)]),
    C("bce_logits-target-grad", F.binary_cross_entropy_with_logits,
      TF.binary_cross_entropy_with_logits, [real(4, 3), pos(4, 3, lo=0.0, hi=1.0)]),
    C("bce_logits-weight-sum",
      lambda x: F.binary_cross_entropy_with_logits(x, BIN_T, weight=ft(BIN_W), reduction="sum"),
      lambda x: TF.binary_cross_entropy_with_logits(x, tt(BIN_T), weight=tt(BIN_W),
                                                    reduction="sum"), [real(4, 3)]),
    C("bce_logits-pos_weight",
      lambda x: F.binary_cross_entropy_with_logits(x, BIN_T, pos_weight=ft(POS_W)),
      lambda x: TF.binary_cross_entropy_with_logits(x, tt(BIN_T), pos_weight=tt(POS_W)),
      [real(4, 3)]),
    C("bce_logits-pos_weight-none",
      lambda x: F.binary_cross_entropy_with_logits(x, BIN_T, weight=ft(BIN_W),
                                                   pos_weight=ft(POS_W), reduction="none"),
      lambda x: TF.binary_cross_entropy_with_logits(x, tt(BIN_T), weight=tt(BIN_W),
                                                    pos_weight=tt(POS_W), reduction="none"),
      [real(4, 3)]),
    C("bce_logits-at-0", lambda x: F.binary_cross_entropy_with_logits(x, BIN_T[:2]),
      lambda x: TF.binary_cross_entropy_with_logits(x, tt(BIN_T[:2])),
      [fixed([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])]),
    C("bce_logits-pos_weight-at-0",
      lambda x: F.binary_cross_entropy_with_logits(x, BIN_T[:2], pos_weight=ft(POS_W)),
      lambda x: TF.binary_cross_entropy_with_logits(x, tt(BIN_T[:2]), pos_weight=tt(POS_W)),
      [fixed([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])]),
    C("bce_logits-large", lambda x: F.binary_cross_entropy_with_logits(x, BIN_T[0]),
      lambda x: TF.binary_cross_entropy_with_logits(x, tt(BIN_T[0])),
      [fixed([-80.0, 0.5, 80.0])]),
]

def t_sdpa(*args, **kw):
    """torch's attention on its math backend (its fused CPU kernels have no forward AD)."""
    with sdpa_kernel(SDPBackend.MATH):
        return TF.scaled_dot_product_attention(*args, **kw)


ATTENTION = [
    C("sdpa", F.scaled_dot_product_attention, t_sdpa,
      [real(2, 3, 4), real(2, 5, 4), real(2, 5, 6)]),
    C("sdpa-heads", F.scaled_dot_product_attention, t_sdpa,
      [real(1, 2, 3, 4), real(1, 2, 3, 4), real(1, 2, 3, 4)]),
    C("sdpa-causal", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
      lambda q, k, v: t_sdpa(q, k, v, is_causal=True),
      [real(2, 4, 3), real(2, 4, 3), real(2, 4, 2)]),
    C("sdpa-causal-rect", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
      lambda q, k, v: t_sdpa(q, k, v, is_causal=True),
      [real(1, 3, 4), real(1, 5, 4), real(1, 5, 2)]),
    C("sdpa-bool-mask",
      lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=ft(BOOL_MASK)),
      lambda q, k, v: t_sdpa(q, k, v, attn_mask=tt(BOOL_MASK)),
      [real(2, 3, 4), real(2, 5, 4), real(2, 5, 6)]),
    C("sdpa-bool-mask-heads",
      lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=HEAD_MASK),
      lambda q, k, v: t_sdpa(q, k, v, attn_mask=tt(HEAD_MASK)),
      [real(2, 2, 3, 4), real(2, 2, 5, 4), real(2, 2, 5, 3)]),
    C("sdpa-float-mask",
      lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=ft(FLOAT_MASK)),
      lambda q, k, v: t_sdpa(q, k, v, attn_mask=tt(FLOAT_MASK)),
      [real(2, 3, 4), real(2, 5, 4), real(2, 5, 6)]),
    C("sdpa-float-mask-grad", lambda q, k, v, m: F.scaled_dot_product_attention(
        q, k, v, attn_mask=m), lambda q, k, v, m: t_sdpa(
        q, k, v, attn_mask=m), [real(1, 3, 4), real(1, 5, 4), real(1, 5, 2), real(3, 5)]),
    C("sdpa-float-mask-neg-inf",
      lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=ft(NEG_INF_ROW)),
      lambda q, k, v: t_sdpa(q, k, v, attn_mask=tt(NEG_INF_ROW)),
      [real(2, 3, 4), real(2, 5, 4), real(2, 5, 6)]),
    C("sdpa-scale", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, scale=0.3),
      lambda q, k, v: t_sdpa(q, k, v, scale=0.3),
      [real(2, 3, 4), real(2, 5, 4), real(2, 5, 6)]),
    # a query that may attend to nothing: torch outputs 0 there (and passes no NaN back)
    C("sdpa-fully-masked-row", lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, attn_mask=ft(BOOL_MASK & np.array([[True], [False], [True]]))),
      lambda q, k, v: t_sdpa(
        q, k, v, attn_mask=tt(BOOL_MASK & np.array([[True], [False], [True]]))),
      [real(2, 3, 4), real(2, 5, 4), real(2, 5, 6)]),
]

CASES = ACTIVATIONS + PAD + LAYERS + NORMS + LOSSES + ATTENTION


def test_case_names_are_unique():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_functional_matches_torch(case, layout):
    arrays = make_inputs(case.inputs, seed=0)
    if layout == "strided":
        arrays = [noncontiguous(a) for a in arrays]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0 / 0 when every target is ignored
        check_against_torch(case, arrays)


@pytest.mark.parametrize("case", [c.param() for c in CASES if c.gradcheck])
def test_functional_gradcheck(case):
    arrays = make_inputs(case.inputs, seed=1)
    inputs = tuple(to_fg(a, requires_grad=True) for a in arrays)
    assert fg.gradcheck(case.fg_fn, inputs, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- batch_norm running stats

@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5), (3, 3, 2, 2)])
@pytest.mark.parametrize("momentum", [0.1, 0.5])
def test_batch_norm_running_stats(shape, momentum):
    x = np.random.default_rng(3).standard_normal(shape) * 2 + 1
    w, b = np.array([1.0, 0.5, 2.0]), np.array([0.0, 1.0, -1.0])
    f_mean, f_var = ft(RUN_MEAN), ft(RUN_VAR)
    t_mean, t_var = tt(RUN_MEAN), tt(RUN_VAR)
    fx, tx = to_fg(x, requires_grad=True), to_torch(x, requires_grad=True)
    for _ in range(2):  # two steps: the update composes with the previous state
        f_out = F.batch_norm(fx, f_mean, f_var, to_fg(w), to_fg(b), training=True,
                             momentum=momentum)
        t_out = TF.batch_norm(tx, t_mean, t_var, tt(w), tt(b), training=True, momentum=momentum)
        np.testing.assert_allclose(f_out.detach().numpy(), t_out.detach().numpy(), rtol=1e-7,
                                   atol=1e-10)
        np.testing.assert_allclose(f_mean.numpy(), t_mean.numpy(), rtol=1e-7)
        np.testing.assert_allclose(f_var.numpy(), t_var.numpy(), rtol=1e-7)
    assert not np.allclose(f_mean.numpy(), RUN_MEAN)  # really updated
    cot = np.random.default_rng(4).standard_normal(shape)
    f_out.backward(fg.from_numpy(cot))
    t_out.backward(torch.from_numpy(cot))
    np.testing.assert_allclose(fx.grad.numpy(), tx.grad.numpy(), rtol=1e-7, atol=1e-10)
    # eval mode then uses the updated statistics
    f_eval = F.batch_norm(to_fg(x), f_mean, f_var, training=False)
    t_eval = TF.batch_norm(tt(x), t_mean, t_var, training=False)
    np.testing.assert_allclose(f_eval.numpy(), t_eval.numpy(), rtol=1e-7, atol=1e-10)


def test_batch_norm_eval_needs_running_stats():
    with pytest.raises(ValueError):
        F.batch_norm(fg.ones(2, 3), None, None, training=False)


# ---------------------------------------------------------------- dropout

@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_dropout_scaling_and_mask(p):
    x = to_fg(np.random.default_rng(5).uniform(1.0, 2.0, (50, 40)), requires_grad=True)
    fg.manual_seed(123)
    out = F.dropout(x, p)
    kept = out.detach().numpy() != 0
    # kept entries are scaled by 1 / (1 - p), dropped ones are exactly 0
    np.testing.assert_allclose(out.detach().numpy()[kept], x.detach().numpy()[kept] / (1 - p),
                               rtol=1e-12)
    assert abs((1 - kept.mean()) - p) < 0.05
    # the gradient is the same mask and scale (as torch: grad = mask / (1 - p))
    out.backward(fg.ones(50, 40, dtype=fg.float64))
    np.testing.assert_allclose(x.grad.numpy(), kept / (1 - p), rtol=1e-12)
    # same seed, same mask; another seed, another mask
    fg.manual_seed(123)
    again = F.dropout(x.detach(), p).numpy() != 0
    np.testing.assert_array_equal(again, kept)
    fg.manual_seed(124)
    assert (F.dropout(x.detach(), p).numpy() != 0).tolist() != kept.tolist()


def test_dropout_edge_cases_match_torch():
    x = np.random.default_rng(6).standard_normal((3, 4))
    for p, training in [(0.0, True), (0.5, False), (1.0, True)]:
        f = F.dropout(to_fg(x), p, training=training)
        t = TF.dropout(tt(x), p, training=training)
        np.testing.assert_array_equal(f.numpy(), t.numpy())
    with pytest.raises(ValueError):
        F.dropout(to_fg(x), 1.5)


def test_sdpa_dropout_is_seeded():
    q = to_fg(np.random.default_rng(11).standard_normal((2, 3, 4)))
    fg.manual_seed(0)
    a = F.scaled_dot_product_attention(q, q, q, dropout_p=0.5)
    fg.manual_seed(0)
    b = F.scaled_dot_product_attention(q, q, q, dropout_p=0.5)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.allclose(a.numpy(), F.scaled_dot_product_attention(q, q, q).numpy())


def test_embedding_padding_rows_are_constant_in_both_modes():
    w = np.random.default_rng(13).standard_normal((6, 3))
    tangent = np.random.default_rng(14).standard_normal((6, 3))
    out, tan = fg.jvp(lambda w: F.embedding(EMB_IDX, w, padding_idx=2), (to_fg(w),),
                      (to_fg(tangent),))
    expected = tangent[EMB_IDX] * (EMB_IDX != 2)[..., None]
    np.testing.assert_allclose(tan.numpy(), expected, rtol=1e-12)
    jf = fg.jacfwd(lambda w: F.embedding(EMB_IDX, w, padding_idx=2))(to_fg(w))
    jr = fg.jacrev(lambda w: F.embedding(EMB_IDX, w, padding_idx=2))(to_fg(w))
    np.testing.assert_array_equal(jf.numpy(), jr.numpy())


def test_embedding_padding_row_gets_no_gradient():
    w = to_fg(np.random.default_rng(12).standard_normal((6, 3)), requires_grad=True)
    F.embedding(EMB_IDX, w, padding_idx=2).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy()[2], 0.0)
    np.testing.assert_array_equal(w.grad.numpy()[:, 0], [1.0, 1.0, 0.0, 0.0, 0.0, 1.0])



@pytest.mark.parametrize("name", ["gelu", "gelu-tanh", "softmax", "log_softmax"])
def test_fused_elementwise_ops_on_zero_dim_tensors_match_torch(name):
    fns = {
        "gelu": (F.gelu, TF.gelu),
        "gelu-tanh": (lambda x: F.gelu(x, approximate="tanh"),
                      lambda x: TF.gelu(x, approximate="tanh")),
        "softmax": (lambda x: x.softmax(0), lambda x: x.softmax(0)),
        "log_softmax": (lambda x: x.log_softmax(-1), lambda x: x.log_softmax(-1)),
    }
    ours, theirs = fns[name]
    x = fg.tensor(0.7, dtype=np.float64, requires_grad=True)
    tx = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    y, ty = ours(x), theirs(tx)
    y.backward()
    ty.backward()
    assert y.shape == () and y.item() == pytest.approx(ty.item(), rel=1e-12)
    assert x.grad.item() == pytest.approx(tx.grad.item(), rel=1e-12, abs=1e-15)

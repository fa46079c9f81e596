"""planning/parallel.py: the published per-GPU formulas, every number exact."""

from fractions import Fraction

import pytest

from flopgrad import formulas
from flopgrad.planning import (
    BYTES_PER_PARAM,
    all_gather_bytes,
    all_reduce_bytes,
    check_layout,
    data_parallel_bytes,
    korthikanti_activation_bytes,
    korthikanti_extra_bytes,
    korthikanti_layer_bytes,
    model_state_bytes,
    pipeline_bubble,
    pipeline_bubble_share,
    pipeline_p2p_bytes,
    reduce_scatter_bytes,
    tensor_parallel_bytes,
)

GiB = 2**30
GPT3 = dict(s=2048, b=1, h=12288, a=96, L=96)  # GPT-3 175B, Korthikanti et al. Table 3
SBH = 2048 * 12288


# ZeRO (Rajbhandari et al. 2020): 7.5B parameters, 64 GPUs, K = 12

@pytest.mark.parametrize("zero, total, rounded", [
    (0, 120_000_000_000, 120.0),
    (1, 31_406_250_000, 31.4),  # 2Ψ + 2Ψ + 12Ψ/N
    (2, 16_640_625_000, 16.6),  # 2Ψ + 14Ψ/N
    (3, 1_875_000_000, 1.875),  # 16Ψ/N
])
def test_the_zero_papers_example(zero, total, rounded):
    m = model_state_bytes(7_500_000_000, gpus=64, zero=zero)
    assert m["total"] == total == m["weights"] + m["gradients"] + m["optimizer_state"]
    assert round(total / 1e9, 3 if zero == 3 else 1) == rounded
    assert model_state_bytes(7.5e9, gpus=64, zero=zero) == m  # an integral float is fine


def test_zero_stages_shard_optimizer_state_then_gradients_then_weights():
    psi, n = 7_500_000_000, 64
    assert [tuple(model_state_bytes(psi, n, z).values())[:3] for z in range(4)] == [
        (2 * psi, 2 * psi, 12 * psi),
        (2 * psi, 2 * psi, 12 * psi // n),
        (2 * psi, 2 * psi // n, 12 * psi // n),
        (2 * psi // n, 2 * psi // n, 12 * psi // n)]


def test_a_shard_holds_whole_parameters():
    assert model_state_bytes(10, gpus=4, zero=3)["total"] == 16 * 3  # ceil(10 / 4)


def test_the_conventions_and_what_they_count():
    assert {k: (c.weights, c.gradients, c.optimizer_state, c.total)
            for k, c in BYTES_PER_PARAM.items()} == {
        "zero": (2, 2, 12, 16), "fp32-grads": (2, 4, 12, 18),
        "fp32-main-grads": (2, 2, 16, 20), "fp32": (4, 4, 8, 16)}
    assert all(c.counts and c.source for c in BYTES_PER_PARAM.values())


@pytest.mark.parametrize("convention, unsharded, replicated, sharded", [
    ("fp32-main-grads", 20, 4, 16),  # Megatron: fp16 params, fp16 grads: 20, 4 + 16/d
    ("fp32-grads", 18, 6, 12),  # bf16 params, fp32 grads: 18, 6 + 12/d
    ("fp32", 16, 8, 8),  # fp32 params, fp32 grads: 16, 8 + 8/d
])
def test_megatrons_distributed_optimizer_table_is_zero_stage_1(convention, unsharded,
                                                               replicated, sharded):
    psi, d = 8_000_000, 8
    assert model_state_bytes(psi, d, 0, convention)["total"] == unsharded * psi
    stage_1 = model_state_bytes(psi, d, 1, convention)["total"]
    assert stage_1 == replicated * psi + sharded * psi // d


def test_deepspeeds_zero2_estimator_is_the_20_byte_convention_at_stage_2():
    psi, n = 8_000_000, 8  # gpu_mem = 2 * total_params + 18 * total_params / total_gpus
    assert model_state_bytes(psi, n, 2, "fp32-main-grads")["total"] == 2 * psi + 18 * psi // n


# Korthikanti et al. 2022, Table 2 (bytes per layer)

def test_table_2_per_layer():
    s, b, h, a, t = 2048, 1, 12288, 96, 8
    sbh, attn = s * b * h, Fraction(5 * a * s, h)
    rows = {
        (1, False, "none"): sbh * (34 + attn),
        (t, False, "none"): sbh * (10 + Fraction(24, t) + attn / t),
        (t, True, "none"): Fraction(sbh, t) * (34 + attn),
        (t, False, "selective"): sbh * (10 + Fraction(24, t)),
        (t, True, "selective"): Fraction(34 * sbh, t),
        (t, False, "full"): 2 * sbh, (t, True, "full"): 2 * sbh, (1, False, "full"): 2 * sbh,
    }
    for (tp, sp, rc), want in rows.items():
        assert korthikanti_layer_bytes(s, b, h, a, t=tp, sp=sp, recompute=rc) == want
    assert sbh * (10 + Fraction(24, t) + attn / t) == 23 * sbh  # 5as/(ht) = 10 for GPT-3


def test_without_parallelism_sequence_parallelism_changes_nothing():
    for rc in ("none", "selective", "full"):
        assert (korthikanti_layer_bytes(1024, 2, 768, 12, sp=True, recompute=rc)
                == korthikanti_layer_bytes(1024, 2, 768, 12, recompute=rc))


def test_the_layer_formula_is_fg_formulas_korthikanti_without_parallelism():
    assert korthikanti_layer_bytes(1024, 1, 768, 12) == formulas.korthikanti_activation_bytes(
        seq=1024, batch=1, d_model=768, n_head=12) == 89_653_248


def test_gpt3_175b_first_stage_with_the_papers_three_interleaved_chunks():
    factor = 1 + Fraction(8 - 1, 8 * 3)  # 31/24
    base = korthikanti_activation_bytes(**GPT3, t=8, p=8, interleave=3)
    assert base == 96 * 23 * SBH * factor == 71_772_930_048
    assert Fraction(base) / GiB == Fraction(2139, 32) == Fraction("66.84375")
    best = korthikanti_activation_bytes(**GPT3, t=8, p=8, interleave=3, sp=True,
                                        recompute="selective")
    assert best == 96 * Fraction(34 * SBH, 8) * factor == 13_262_389_248
    assert Fraction(best) / GiB == Fraction(1581, 128) == Fraction("12.3515625")


def test_1f1b_holds_L_layers_whatever_p():
    one = korthikanti_activation_bytes(**GPT3, t=8, p=1)
    assert one == korthikanti_activation_bytes(**GPT3, t=8, p=8) == 96 * 23 * SBH
    assert one / GiB == 51.75
    assert korthikanti_activation_bytes(**GPT3, t=8, p=8, sp=True,
                                        recompute="selective") / GiB == 9.5625
    assert korthikanti_activation_bytes(**GPT3, t=8, p=8, recompute="full") == 96 * 2 * SBH


def test_the_extra_terms_are_left_out_of_the_two_numbers():
    v = 51200  # Korthikanti et al. Section 6
    assert korthikanti_extra_bytes(2048, 1, 12288, v, t=8, p=8) == SBH * 8 / 8  # sbhp/t
    assert korthikanti_extra_bytes(2048, 1, 12288, v, t=8, p=1) == (
        SBH / 8 + Fraction(4 * SBH, 8) * (1 + Fraction(v, 12288)))
    base = korthikanti_activation_bytes(**GPT3, t=8, p=8, interleave=3)
    assert (base + korthikanti_extra_bytes(2048, 1, 12288, v, t=8, p=8)) / GiB != 66.84375


# communication

def test_collectives():
    assert all_reduce_bytes(8000, 8) == 14000 == 2 * Fraction(7, 8) * 8000
    assert reduce_scatter_bytes(8000, 8) == all_gather_bytes(8000, 8) == 7000
    assert all_reduce_bytes(8000, 8) == reduce_scatter_bytes(8000, 8) + all_gather_bytes(8000, 8)
    assert all_reduce_bytes(8000, 1) == 0


def test_data_parallel_volumes_follow_the_zero_paper():
    psi, n = 8_000_000, 8
    base = data_parallel_bytes(psi, n, zero=0)["total"]
    assert base == 2 * Fraction(n - 1, n) * 2 * psi  # all-reduce of 2-byte gradients
    assert data_parallel_bytes(psi, n, zero=1)["total"] == base  # reduce-scatter + all-gather
    assert data_parallel_bytes(psi, n, zero=2)["total"] == base
    assert data_parallel_bytes(psi, n, zero=3)["total"] == Fraction(3, 2) * base  # 3Ψ
    z3 = data_parallel_bytes(psi, n, zero=3)
    assert z3["weights"] == 2 * z3["gradients"]  # gathered in forward and again in backward


def test_data_parallel_with_gradient_accumulation_and_fp32_gradients():
    psi, n, m = 8_000_000, 8, 4
    rs, ag = Fraction(7, 8) * 2 * psi, Fraction(7, 8) * 2 * psi
    assert data_parallel_bytes(psi, n, 0, micro_batches=m)["total"] == 2 * rs
    assert data_parallel_bytes(psi, n, 1, micro_batches=m)["total"] == rs + ag
    assert data_parallel_bytes(psi, n, 2, micro_batches=m)["total"] == m * rs + ag
    assert data_parallel_bytes(psi, n, 3, micro_batches=m)["total"] == m * (rs + 2 * ag)
    assert data_parallel_bytes(psi, n, 0, "fp32-grads")["gradients"] == 2 * Fraction(7, 8) * 4 * psi


def test_tensor_parallel_all_reduces_and_their_sequence_parallel_pairs():
    act = SBH * 2  # one micro-batch's 16-bit s·b·h activations
    per_layer = 4 * 2 * Fraction(7, 8) * act
    assert tensor_parallel_bytes(2048, 1, 12288, layers=12, t=8, micro_batches=3) == (
        per_layer * 12 * 3)
    assert tensor_parallel_bytes(2048, 1, 12288, 12, 8, 3, sp=True) == per_layer * 12 * 3
    assert tensor_parallel_bytes(2048, 1, 12288, 12, 8, recompute="full") == (
        Fraction(6, 4) * per_layer * 12)
    assert tensor_parallel_bytes(2048, 1, 12288, 12, 8, recompute="selective") == per_layer * 12
    assert tensor_parallel_bytes(2048, 1, 12288, 12, t=1) == 0


def test_pipeline_point_to_point():
    act = SBH * 2
    assert pipeline_p2p_bytes(2048, 1, 12288, p=8, micro_batches=64) == 2 * 64 * act
    assert pipeline_p2p_bytes(2048, 1, 12288, p=8, micro_batches=64, interleave=3) == 6 * 64 * act
    assert pipeline_p2p_bytes(2048, 1, 12288, p=2, micro_batches=64, interleave=3) == 5 * 64 * act
    assert pipeline_p2p_bytes(2048, 1, 12288, p=2, micro_batches=64) == 64 * act
    assert pipeline_p2p_bytes(2048, 1, 12288, p=1, micro_batches=64) == 0


# the pipeline bubble (Narayanan et al. 2021)

def test_the_bubble():
    assert pipeline_bubble(8, 64) == Fraction(7, 64) == 0.109375
    assert pipeline_bubble_share(8, 64) == Fraction(7, 71)
    assert round(float(pipeline_bubble_share(8, 64)), 4) == 0.0986
    assert pipeline_bubble(8, 64, interleave=3) == Fraction(7, 192)
    assert round(float(pipeline_bubble(8, 64, interleave=3)), 4) == 0.0365
    assert pipeline_bubble_share(8, 64, interleave=3) == Fraction(7, 199)
    assert pipeline_bubble(1, 64) == 0 == pipeline_bubble_share(1, 64)


# validation

def test_check_layout():
    assert check_layout(96, 96, 12288, gpus=64, tp=8, pp=8) == 1
    assert check_layout(96, 96, 12288, gpus=1024, dp=16, tp=8, pp=8) == 16
    assert check_layout(12, 12, 768, gpus=1) == 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(gpus=64, tp=5), "tp 5 does not divide 96 attention heads"),
    (dict(gpus=64, tp=3, n_head=12, d_model=12290), "tp 3 does not divide 12290 hidden size"),
    (dict(gpus=64, tp=8, pp=5), "pp 5 does not divide 96 layers"),
    (dict(gpus=64, dp=2, tp=8, pp=8), "gpus 64 != dp 2 × tp 8 × pp 8 = 128"),
    (dict(gpus=60, tp=8, pp=8), "tp 8 × pp 8 = 64 does not divide gpus 60"),
    (dict(gpus=0), "gpus must be >= 1, got 0"),
    (dict(gpus=8, tp=-2), "tp must be >= 1, got -2"),
    (dict(gpus=8, dp=1.5), "dp must be a whole number, got 1.5"),
])
def test_check_layout_errors_name_the_numbers(kwargs, message):
    args = dict(n_layer=96, n_head=96, d_model=12288) | kwargs
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        check_layout(**args)


@pytest.mark.parametrize("call, message", [
    (lambda: model_state_bytes(1000, 4, zero=4), "ZeRO stage must be 0, 1, 2 or 3, got 4"),
    (lambda: model_state_bytes(1000, 4, zero=True), "ZeRO stage must be 0, 1, 2 or 3, got True"),
    (lambda: model_state_bytes(1000, 4, convention="fp8"),
     "unknown bytes-per-parameter convention 'fp8'; known: zero, fp32-grads"),
    (lambda: model_state_bytes(0, 4), "params must be >= 1, got 0"),
    (lambda: model_state_bytes(1000, 0), "gpus must be >= 1, got 0"),
    (lambda: model_state_bytes(10.5, 4), "params must be a whole number, got 10.5"),
    (lambda: data_parallel_bytes(1000, 4, zero=-1), "ZeRO stage must be 0, 1, 2 or 3, got -1"),
    (lambda: korthikanti_layer_bytes(2048, 1, 12288, 96, t=5),
     "tensor parallel size 5 does not divide 96 attention heads"),
    (lambda: korthikanti_layer_bytes(2048, 1, 12289, 10, t=5),
     "tensor parallel size 5 does not divide 12289 hidden size"),
    (lambda: korthikanti_layer_bytes(2048, 1, 12288, 96, recompute="some"),
     "recompute must be one of none, selective, full, got 'some'"),
    (lambda: korthikanti_layer_bytes(0, 1, 12288, 96), "s must be >= 1, got 0"),
    (lambda: korthikanti_activation_bytes(**GPT3, p=5),
     "pipeline size 5 does not divide 96 layers"),
    (lambda: korthikanti_activation_bytes(**GPT3, p=8, interleave=5),
     "pipeline size 8 × interleaved chunks 5 = 40 does not divide 96 layers"),
    (lambda: all_reduce_bytes(-1, 8), "bytes must be a number >= 0, got -1"),
    (lambda: all_reduce_bytes(float("nan"), 8), "bytes must be a number >= 0, got nan"),
    (lambda: model_state_bytes(float("inf"), 8), "params must be a whole number, got inf"),
    (lambda: all_gather_bytes(100, 0), "GPUs in the group must be >= 1, got 0"),
    (lambda: pipeline_bubble(8, 0), "micro_batches must be >= 1, got 0"),
    (lambda: pipeline_bubble_share(0, 8), "p must be >= 1, got 0"),
    (lambda: tensor_parallel_bytes(2048, 1, 12288, 12, t=0), "t must be >= 1, got 0"),
])
def test_bad_inputs_name_the_numbers(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        call()

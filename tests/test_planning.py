"""Published formulas beside exact counts; the budget planner and its command line."""

import subprocess
import sys

import pytest

import flopgrad as fg
from flopgrad import formulas
from flopgrad.cli import main
from flopgrad.models import GPTConfig
from flopgrad.planning import GPUS, PLANNING_PRESETS, budget, formula_table, step_bill


def _matmul_forward(cfg: GPTConfig, batch: int = 1) -> int:
    """Forward matmul FLOPs of one step, written out layer by layer (an independent count)."""
    t, d, L, v = cfg.ctx, cfg.d_model, cfg.n_layer, cfg.vocab
    per_layer = 2 * t * d * 3 * d + 2 * t * t * d * 2 + 2 * t * d * d + 2 * t * d * 4 * d * 2
    return batch * (L * per_layer + 2 * t * d * v)


@pytest.fixture(scope="module")
def nanogpt_124m():
    cfg = GPTConfig(12, 12, 768, 1024, 50257, bias=False, tied_embeddings=True)
    bill, model = step_bill(cfg)
    return cfg, bill, model


def test_nanogpt_gpt2_124m_table(nanogpt_124m):
    cfg, bill, model = nanogpt_124m
    assert model.num_parameters() == 124_337_664 == cfg.num_params()
    # nanoGPT's transformer_sizing notebook: forward 291,648,307,200 FLOPs per sequence
    assert bill.flops("forward", kind="tensor") == 291_648_307_200 == _matmul_forward(cfg)
    assert bill.flops("backward", kind="tensor") == 583_296_614_400


def test_kaplan_reconstructed_exactly_once_excluded_terms_are_removed(nanogpt_124m):
    cfg, bill, _ = nanogpt_124m
    t, d, L = cfg.ctx, cfg.d_model, cfg.n_layer
    k = formulas.kaplan(L, d, t)
    assert k.params == 12 * L * d * d
    counted = bill.flops("forward", kind="tensor")
    unembedding = 2 * t * d * cfg.vocab
    second_attention_product = 2 * L * t * d * t  # AV: Kaplan counts QK^T's term only
    assert counted - unembedding - second_attention_product == k.forward_flops * t
    row = formula_table(cfg, bill)[0]
    assert row["formula"].startswith("Kaplan")
    assert f"{counted:.6g}" in row["reason"]


def test_narayanan_without_recomputation_matches_the_matmul_count(nanogpt_124m):
    cfg, bill, _ = nanogpt_124m
    f = formulas.narayanan_per_iteration(1, cfg.ctx, cfg.n_layer, cfg.d_model, cfg.vocab,
                                         recompute=False)
    counted = bill.flops("forward", kind="tensor") + bill.flops("backward", kind="tensor")
    assert counted == pytest.approx(f, rel=1e-12)
    with_recompute = formulas.narayanan_per_iteration(1, cfg.ctx, cfg.n_layer, cfg.d_model,
                                                      cfg.vocab, recompute=True)
    # recomputation adds one more forward of the layers (not of the logits)
    assert with_recompute - f == pytest.approx(
        _matmul_forward(cfg) - 2 * cfg.ctx * cfg.d_model * cfg.vocab, rel=1e-12)


def test_palm_and_chinchilla_formulas():
    assert formulas.palm_per_token(100, 2, 3, 4, 5) == 600 + 12 * 2 * 3 * 4 * 5
    c = formulas.chinchilla_forward(n_layer=1, d_model=4, n_head=2, seq=3, vocab=5)
    inner = 4
    expected = (2 * 3 * 5 * 4 + (2 * 3 * 3 * 4 * inner + 2 * 9 * inner + 3 * 2 * 9
                                  + 2 * 9 * inner + 2 * 3 * inner * 4)
                + 2 * 3 * (4 * 16 + 4 * 16) + 2 * 3 * 4 * 5)
    assert c == expected
    assert formulas.korthikanti_activation_bytes(2048, 1, 12288, 96) == pytest.approx(
        2048 * 12288 * (34 + 5 * 96 * 2048 / 12288))


def test_flops_per_token_over_6n_for_every_gpt2_preset_falls_with_width():
    ratios = []
    for name in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"):
        cfg = PLANNING_PRESETS[name]
        bill, _ = step_bill(cfg)
        per_token = (bill.flops("forward") + bill.flops("backward")) / cfg.ctx
        ratios.append(per_token / (6 * cfg.num_params()))
    # ctx is 1024 for all four while d_model grows: the attention term (12·L·ctx·d per token
    # against 72·L·d² in 6N) shrinks relative to 6N
    assert all(a > b for a, b in zip(ratios, ratios[1:], strict=False))
    assert 1.0 < ratios[-1] < ratios[0] < 1.25


def test_six_nd_and_gpu_hours():
    assert formulas.six_nd(7e9, 2e12) == pytest.approx(8.4e22, rel=1e-15)
    b = budget(params=7e9, tokens=2e12, gpu="h100", gpus=512, mfu=0.4, price_per_gpu_hour=2.5)
    assert b.flops == pytest.approx(8.4e22, rel=1e-15)
    hours = 8.4e22 / (GPUS["h100"].peak_flops * 0.4) / 3600
    assert b.gpu_hours == pytest.approx(hours, rel=1e-12)
    assert b.days == pytest.approx(hours / 512 / 24, rel=1e-12)
    assert b.cost == pytest.approx(hours * 2.5, rel=1e-12)
    assert b.chinchilla_tokens == pytest.approx(1.4e11)
    assert not b.fits and any("does not fit" in w for w in b.warnings)  # 112 GB > 80 GB


def test_budget_from_a_model_counts_exactly():
    b = budget(tokens=1e9, model="gpt2", gpu="a100", mfu=0.5)
    bill, _ = step_bill(PLANNING_PRESETS["gpt2"])
    per_token = (bill.flops("forward") + bill.flops("backward")) / 1024
    assert b.flops_per_token == pytest.approx(per_token)
    assert b.flops == pytest.approx(per_token * 1e9)
    assert b.memory_breakdown["activations"] > 0 and b.fits


@pytest.mark.parametrize("kwargs,match", [
    (dict(params=-1, tokens=1e9), "params must be a positive"),
    (dict(params=1e9, tokens=0), "tokens must be a positive"),
    (dict(params=1e9, tokens=1e9, mfu=0), r"mfu must be in \(0, 1\]"),
    (dict(params=1e9, tokens=1e9, mfu=1.5), r"mfu must be in \(0, 1\]"),
    (dict(params=1e9, tokens=1e9, gpus=0), "gpus must be"),
    (dict(params=1e9, tokens=1e9, gpu="tpu9"), "unknown gpu 'tpu9'; known: a100"),
    (dict(tokens=1e9, model="gpt5"), "unknown model 'gpt5'; known presets: .*gpt2"),
    (dict(tokens=1e9), "give params= .* or model="),
])
def test_budget_bad_input(kwargs, match):
    with pytest.raises((ValueError, KeyError), match=match):
        budget(**kwargs)


def test_gpt3_175b_bill_is_exact_and_quick():
    cfg = PLANNING_PRESETS["gpt3-175b"]
    bill, model = step_bill(cfg)
    assert model.num_parameters() == cfg.num_params() == 174_604_259_328
    assert bill.flops("forward", kind="tensor") == _matmul_forward(cfg)
    assert bill.flops("backward", kind="tensor") == 2 * _matmul_forward(cfg)


def test_cli_bill_and_budget(capsys):
    assert main(["bill", "--n-layer", "2", "--n-head", "2", "--d-model", "32", "--ctx", "16",
                 "--vocab", "50"]) == 0
    out = capsys.readouterr().out
    assert "Kaplan" in out and "blocks.*.attn" in out and "x N" in out
    assert main(["budget", "--params", "7e9", "--tokens", "2e12", "--gpus", "1024"]) == 0
    out = capsys.readouterr().out
    assert "8.4e+22 FLOPs" in out and "GPU-hours" in out


@pytest.mark.parametrize("argv,match", [
    (["bill", "gpt5"], "unknown model 'gpt5'"),
    (["bill"], "give a preset MODEL or all of"),
    (["budget", "--params", "1e9", "--tokens", "1e9", "--mfu", "2"], "mfu must be"),
])
def test_cli_errors_exit_nonzero(argv, match, capsys):
    assert main(argv) == 2
    assert match in capsys.readouterr().err


def test_cli_rejects_nonpositive_sizes():
    r = subprocess.run([sys.executable, "-m", "flopgrad", "budget", "--params", "-5",
                        "--tokens", "1e9"], capture_output=True, text=True)
    assert r.returncode != 0 and "must be positive" in r.stderr
    r = subprocess.run([sys.executable, "-m", "flopgrad", "budget", "--params", "1e9",
                        "--tokens", "1e9", "--gpus", "0"], capture_output=True, text=True)
    assert r.returncode != 0 and "must be positive" in r.stderr


def test_version_and_help():
    r = subprocess.run([sys.executable, "-m", "flopgrad", "--version"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and r.stdout.strip() == f"flopgrad {fg.__version__}"
    r = subprocess.run([sys.executable, "-m", "flopgrad"], capture_output=True, text=True)
    assert r.returncode == 0
    for cmd in ("demo", "train", "bill", "budget"):
        assert cmd in r.stdout

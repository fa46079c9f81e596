"""fg.plan and flopgrad plan: per-GPU memory from a meta run of one tensor-parallel shard,
beside Korthikanti et al.; layouts checked; the search ranks by step time."""

from __future__ import annotations

import re

import pytest

import flopgrad as fg
from flopgrad.cli import main
from flopgrad.models import GPT, GPTConfig
from flopgrad.planning import parallel as P

GPT3 = GPTConfig(96, 96, 12288, 2048, 50257)


def _shard_saved(cfg: GPTConfig, tp: int, b: int, dtype=fg.bfloat16) -> int:
    """Saved activation bytes of one layer of a tensor-parallel shard, from a meta step."""
    one = GPTConfig(**{**cfg.to_dict(), "n_layer": 1, "tp": tp})
    with fg.meta():
        model = GPT(one)
    model.to(dtype)
    idx = fg.randint(0, one.vocab, (b, one.ctx), device="meta")
    with fg.profile() as bill:
        model(idx, targets=idx)[1].backward()
    return sum(e["bytes"] for e in bill.saved() if e["scope"].startswith("blocks.0")
               and not e["leaf"] and e["phase"] == "forward")


def test_one_gpt3_layer_at_tp8_beside_korthikanti():
    """Exactly 15·s·b·h bytes in bf16 without dropout; Korthikanti's tensor-parallel row
    is (10 + 24/t + 5as/(ht))·sbh = 23·sbh: the difference is dropout's, which flopgrad does
    not keep at p = 0: the two masks of the replicated region (2·sbh) and the attention
    dropout's mask and output (3·a·s²·b/t = 6·sbh here)."""
    s, b, h, a, t = 2048, 1, 12288, 96, 8
    ours = _shard_saved(GPT3, t, b)
    assert ours == 15 * s * b * h == (8 + 24 / t + 2 * a * s / (h * t)) * s * b * h
    assert P.korthikanti_layer_bytes(s, b, h, a, t) == 23 * s * b * h
    assert P.korthikanti_layer_bytes(s, b, h, a, t) - ours == 2 * s * b * h + 3 * a * s * s * b / t


def test_the_plans_memory_is_the_meta_run_of_the_shard():
    p = fg.plan("gpt3-175b", gpus=64, tp=8, pp=8, batch=8)  # dp 1, 8 micro-batches
    layer = _shard_saved(GPT3, 8, 1)
    assert p.memory["activations"] == layer * (96 // 8) * 8  # 12 layers, 8 in flight
    interleaved = fg.plan("gpt3-175b", gpus=64, tp=8, pp=8, batch=8, interleave=3)
    assert interleaved.memory["activations"] == int(layer * 12 * 8 * (1 + 7 / 24))
    assert interleaved.korthikanti / 2**30 == 66.84375
    selective = fg.plan("gpt3-175b", gpus=64, tp=8, pp=8, sp=True, recompute="selective",
                        batch=8, interleave=3)
    assert selective.korthikanti / 2**30 == 12.3515625
    # sequence parallelism splits the full-width (replicated) tensors: 8·sbh of the 15
    s, h = 2048, 12288
    assert selective.memory["activations"] == int((8 / 8 + 3) * s * h * 12 * 8 * (1 + 7 / 24))
    params = (GPTConfig(2, 96, 12288, 2048, 50257, tp=8).num_params()
              - GPTConfig(1, 96, 12288, 2048, 50257, tp=8).num_params()) * 12 \
        + 50257 * 12288 // 8 + 2048 * 12288
    assert p.memory["weights"] == P.model_state_bytes(params, 1, 0)["weights"]
    zero3 = fg.plan("gpt3-175b", gpus=512, tp=8, pp=8, zero=3, batch=64)
    assert zero3.memory["optimizer_state"] == P.model_state_bytes(params, 8, 3)["optimizer_state"]


def test_bfloat16_halves_the_bytes_of_every_row_that_holds_floats():
    cfg = GPTConfig(1, 2, 32, 16, 64)
    bills = {}
    for dtype in (fg.float32, fg.bfloat16):
        with fg.meta():
            model = GPT(cfg)
        model.to(dtype)
        idx = fg.randint(0, 64, (2, 16), device="meta")
        with fg.profile() as bill:
            model(idx, targets=idx)[1].backward()
        bills[dtype] = {r.key: r for r in bill.rows()}
    assert bills[fg.float32].keys() == bills[fg.bfloat16].keys()
    for key, r32 in bills[fg.float32].items():
        r16 = bills[fg.bfloat16][key]
        assert r16.total == r32.total, key  # FLOPs do not change
        if key not in ("index", "index_put", "cross_entropy", "where"):  # ids and a bool mask
            assert 2 * r16.bytes == r32.bytes, key
            assert 2 * r16.saved_bytes == r32.saved_bytes, key


def test_communication_and_the_bubble_follow_the_formulas():
    p = fg.plan("gpt3-175b", gpus=1024, tp=8, pp=8, batch=1024)
    assert p.dp == 16 and p.micro_batches == 64
    assert p.bubble == pytest.approx(7 / 64)
    s, h = 2048, 12288
    assert p.communication["tp"] == P.tensor_parallel_bytes(s, 1, h, 12, 8, 64)
    assert p.communication["pp"] == P.pipeline_p2p_bytes(s, 1, h, 8, 64)
    assert 0 < p.mfu < 1 and p.step_seconds > 0
    assert p.tokens_per_second == pytest.approx(1024 * 2048 / p.step_seconds)
    run = fg.plan("gpt3-175b", gpus=1024, tp=8, pp=8, batch=1024, tokens=3e11,
                  price_per_gpu_hour=2.0).run
    assert run["days"] == pytest.approx(3e11 / p.tokens_per_second / 86400)
    assert run["cost"] == pytest.approx(run["days"] * 24 * 1024 * 2.0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(gpus=64, tp=5), "tp 5 does not divide"),
    (dict(gpus=64, pp=7), "pp 7 does not divide 96 layers"),
    (dict(gpus=64, dp=2, tp=8, pp=8), "gpus 64 != dp 2"),
    (dict(gpus=64, sp=True), "sequence parallelism"),
    (dict(gpus=64, batch=100, micro_batch=3), "not a whole number of micro-batches"),
    (dict(gpus=64, dtype="fp8"), "dtype must be one of"),
    (dict(gpus=64, gpu="l4"), "no bandwidth figures for l4"),
])
def test_bad_layouts_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fg.plan("gpt3-175b", **kwargs)


def test_search_ranks_the_layouts_that_fit_by_step_time(capsys):
    plans = fg.planning.search("gpt3-175b", gpus=1024, batch=1536)
    fitting = [p for p in plans if p.fits]
    assert fitting and plans[:len(fitting)] == fitting
    times = [p.step_seconds for p in fitting]
    assert times == sorted(times)
    assert all(p.reason and "GB >" in p.reason for p in plans[len(fitting):])
    assert main(["plan", "gpt3-175b", "--gpus", "1024", "--search", "--batch", "1536"]) == 0
    out = capsys.readouterr().out
    assert "the best:" in out and re.search(r"\d+ layouts do not fit", out)


def test_the_plan_command_prints_one_plan_and_refuses_bad_input(capsys):
    assert main(["plan", "gpt3-175b", "--gpus", "1024", "--tp", "8", "--pp", "8", "--sp",
                 "--recompute", "selective", "--zero", "1", "--batch", "1536"]) == 0
    out = capsys.readouterr().out
    assert "dp 16 x tp 8 x pp 8 (sp)" in out and "Korthikanti" in out
    assert main(["plan", "gpt3-175b", "--gpus", "100", "--tp", "8"]) == 2
    err = capsys.readouterr().err
    assert "100" in err and len(err.strip().splitlines()) == 1


def test_recompute_auto_takes_the_least_that_fits_and_a_gpt_model_is_accepted():
    tight = fg.plan("gpt3-175b", gpus=1024, tp=8, pp=8, batch=1536, micro_batch=2,
                    recompute="auto")
    none = fg.plan("gpt3-175b", gpus=1024, tp=8, pp=8, batch=1536, micro_batch=2)
    assert not none.fits and tight.fits and tight.recompute in ("selective", "full")
    with fg.meta():
        model = GPT(GPTConfig(2, 2, 32, 16, 64))
    assert fg.plan(model, gpus=2, batch=4).dp == 2


def test_the_plan_as_an_html_page(tmp_path, capsys):
    out = tmp_path / "plan.html"
    assert main(["plan", "gpt3-175b", "--gpus", "1024", "--search", "--batch", "1536",
                 "--top", "7", "--html", str(out)]) == 0
    text = out.read_text()
    assert text.count("<rect class='bar'") == 4 * 7  # four memory parts per layout shown
    assert text.count("<tr>") == 1 + 7 and "http" not in text.replace("http://www.w3.org", "")
    assert main(["plan", "gpt2", "--gpus", "8", "--batch", "64", "--html",
                 str(tmp_path / "one.html")]) == 0
    assert (tmp_path / "one.html").read_text().count("<rect class='bar'") == 4

"""flopgrad.torch on Hugging Face transformers models that no one here wrote, built from their
configs with random weights (no download): small configs of Llama, GPT-2 and BERT on the
CPU, and Llama-7B and GPT-2 at their real sizes on the meta device, beside the published
formulas."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import flopgrad.torch as fgt  # noqa: E402
from flopgrad import formulas  # noqa: E402


def _llama(**kw):
    cfg = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**cfg, **kw}))


def _gpt2():
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=2, n_embd=64, n_head=4, vocab_size=256, n_positions=32,
        bos_token_id=0, eos_token_id=0))


def _bert():
    return transformers.BertForMaskedLM(transformers.BertConfig(
        num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128,
        vocab_size=256, max_position_embeddings=32))


def _step(model, ids, attn="eager"):
    model.config._attn_implementation = attn
    with fgt.profile(model) as bill:
        model(input_ids=ids, labels=ids).loss.backward()
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    return bill, counter


def _meta_step(build, vocab: int, tokens: int):
    """A model built on the meta device and the bill of one forward and backward on one
    sequence of `tokens` ids, with eager attention."""
    with torch.device("meta"):
        model = build()
        ids = torch.randint(0, vocab, (1, tokens))
    model.config._attn_implementation = "eager"
    with fgt.profile(model) as bill:
        model(input_ids=ids, labels=ids).loss.backward()
    return model, bill


def _tensor(bill) -> int:
    return bill.flops("forward", kind="tensor") + bill.flops("backward", kind="tensor")


@pytest.mark.parametrize("family", ["llama", "gpt2", "bert"])
def test_a_small_config_of_each_family_bills_every_op(family):
    torch.manual_seed(0)
    model = {"llama": _llama, "gpt2": _gpt2, "bert": _bert}[family]()
    ids = torch.randint(0, 256, (2, 16))
    bill, counter = _step(model, ids)
    assert bill.unknown_ops() == []
    assert _tensor(bill) == counter.get_total_flops()  # the matmuls, as FlopCounterMode
    assert bill.flops("forward", kind="other") > 0  # and the rest it does not count
    assert bill.flops("backward", role="weight") > 0 and bill.flops("backward", role="input") > 0
    layer = {"llama": "model.layers.0", "gpt2": "transformer.h.0", "bert": "bert.encoder.layer.0"}
    scopes = {r.key for r in bill.rows("scope", depth=3 if family != "bert" else 4)}
    assert layer[family] in scopes
    # every projection's dW and dX each cost its forward matmul, filed under its own scope
    # (k_proj's dX has its weight's shape at 32 tokens: told apart by what the op reads)
    projections = [name for name, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear | transformers.pytorch_utils.Conv1D)]
    assert len(projections) >= 2 * 4 + 1
    for name in projections:
        fwd = bill.flops("forward", scope=name, kind="tensor")
        assert fwd > 0, name
        assert bill.flops("backward", role="weight", scope=name, kind="tensor") == fwd, name
        assert bill.flops("backward", role="input", scope=name, kind="tensor") == fwd, name

def test_llamas_fused_attention_is_counted_where_flop_counter_mode_misses_it():
    """torch 2.13's FlopCounterMode has no formula for the CPU flash-attention kernel that
    Llama's sdpa path runs; flopgrad bills it: 4·b·h·s²·d forward, 10·b·h·s²·d backward
    (the kernel recomputes QKᵀ)."""
    torch.manual_seed(0)
    model = _llama()
    ids = torch.randint(0, 256, (2, 16))
    bill, counter = _step(model, ids, attn="sdpa")
    attention = 2 * 2 * 16 * 16 * 64  # layers · batch · s² · d_model (heads · head dim)
    assert bill.flops("forward", op="attention", kind="tensor") == 4 * attention
    assert bill.flops("backward", op="attention", kind="tensor") == 10 * attention
    assert _tensor(bill) == counter.get_total_flops() + 14 * attention


def test_llama_7b_on_the_meta_device_beside_6nd_and_palm():
    """One training step of Llama-7B's shape (32 layers, d 4096, SwiGLU 11008, vocab 32000)
    on 2048 tokens, counted on the meta device: the matmul FLOPs are exactly
    6·M·T + 12·L·T·s·d with M the matmul weights (not the embedding, which is a lookup),
    against 6·N·D's and PaLM's 6N + 12·L·H·Q·T's estimates."""
    config = transformers.LlamaConfig(hidden_size=4096, intermediate_size=11008,
                                      num_hidden_layers=32, num_attention_heads=32,
                                      num_key_value_heads=32, vocab_size=32000)
    model, bill = _meta_step(lambda: transformers.LlamaForCausalLM(config), 32000, 2048)
    n = sum(p.numel() for p in model.parameters())
    assert n == 6_738_415_616
    L, d, ff, V, T = 32, 4096, 11008, 32000, 2048
    matmul_weights = L * (4 * d * d + 3 * d * ff) + d * V  # q k v o, gate up down, lm_head
    counted = _tensor(bill)
    assert counted == 6 * matmul_weights * T + 12 * L * T * T * d
    six_nd = formulas.six_nd(n, T)
    palm = formulas.palm_per_token(n, L, 32, d // 32, T) * T
    not_matmul = n - matmul_weights
    assert not_matmul == V * d + (2 * L + 1) * d  # the embedding lookup and the RMSNorms
    # 6ND leaves out attention (+12·L·T²·d) and bills those weights as if they were matmuls
    assert counted - six_nd == 12 * L * T * T * d - 6 * not_matmul * T
    # PaLM's formula has the same attention term: off by those weights only (1.8%)
    assert palm - counted == 6 * not_matmul * T
    assert bill.unknown_ops() == []
    assert bill.memory_breakdown()["at_peak"]["parameters"] == 4 * n  # float32, on no memory


def test_gpt2_at_its_real_size_on_the_meta_device():
    """GPT-2 small (124M, tied embeddings) at 1024 tokens: 6·N·D with N all parameters, and
    the exact count: the tied wte stands for the unembedding matmul; the position
    embeddings are a lookup."""
    model, bill = _meta_step(lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config()),
                             50257, 1024)
    n = sum(p.numel() for p in model.parameters())
    assert n == 124_439_808
    L, d, V, T = 12, 768, 50257, 1024
    matmul_weights = L * 12 * d * d + d * V  # c_attn 3d², c_proj d², mlp 8d²; lm_head
    assert _tensor(bill) == 6 * matmul_weights * T + 12 * L * T * T * d
    assert bill.unknown_ops() == []

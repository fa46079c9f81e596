"""The memory half of the bill by category (parameters, gradients, optimizer state,
activations), and long profiles that aggregate instead of keeping every event."""

import numpy as np
import pytest

import flopgrad as fg
from flopgrad.models import MLP
from flopgrad.nn import functional as F


def _step(model, opt, x, y):
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()


def _param_bytes(model):
    return sum(p._data.nbytes for p in model.parameters())


@pytest.mark.parametrize("make, state_per_param", [
    (lambda ps: fg.optim.AdamW(ps, lr=1e-3), 2),
    (lambda ps: fg.optim.SGD(ps, lr=0.1, momentum=0.9), 1),
    (lambda ps: fg.optim.SGD(ps, lr=0.1), 0),
])
def test_a_step_bills_parameters_gradients_and_optimizer_state(make, state_per_param):
    fg.manual_seed(0)
    model = MLP([20, 32, 10])          # made before the profile: counted once touched
    opt = make(model.parameters())
    x, y = fg.randn(8, 20), fg.randint(0, 10, (8,))
    with fg.profile() as bill:
        _step(model, opt, x, y)
    n = _param_bytes(model)
    m = bill.memory_breakdown()
    assert m["live"]["parameters"] == n
    assert m["live"]["gradients"] == n
    assert m["live"]["optimizer_state"] == state_per_param * n
    assert m["peak_by_category"]["optimizer_state"] == state_per_param * n
    assert bill.peak_bytes >= (2 + state_per_param) * n  # all three live at the end
    assert sum(m["at_peak"].values()) == bill.peak_bytes
    assert "optimizer state" in bill.table()


def test_the_moments_are_in_the_peak_the_bill_reports():
    """Before: an AdamW step's moments were not tracked and the peak undercounted."""
    fg.manual_seed(0)
    model = MLP([64, 64, 10])
    opt = fg.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = fg.randn(4, 64), fg.randint(0, 10, (4,))
    with fg.profile() as bill:
        _step(model, opt, x, y)
    n = _param_bytes(model)
    assert bill.peak_bytes >= 4 * n  # weights + gradients + two moments


def test_parameters_made_inside_the_profile_move_to_their_category():
    with fg.profile() as bill:
        fg.manual_seed(0)
        lin = fg.nn.Linear(16, 8)
        lin(fg.randn(2, 16)).sum().backward()
    n = lin.weight._data.nbytes + lin.bias._data.nbytes
    m = bill.memory_breakdown()
    assert m["live"]["parameters"] == n and m["live"]["gradients"] == n


def test_accumulated_gradients_stay_gradients():
    w = fg.nn.Parameter(fg.ones(100))
    with fg.profile() as bill:
        for _ in range(3):  # .grad = .grad + g: a new array each time, the old one freed
            (w * 2).sum().backward()
    assert bill.memory_breakdown()["live"]["gradients"] == w._data.nbytes
    np.testing.assert_array_equal(w.grad.numpy(), np.full(100, 6.0, np.float32))


def test_meta_and_real_bills_break_memory_down_alike():
    def bill_of(meta):
        fg.manual_seed(0)
        if meta:
            with fg.meta():
                model = MLP([20, 30, 10])
                x, y = fg.randn(4, 20), fg.randint(0, 10, (4,))
        else:
            model = MLP([20, 30, 10])
            x, y = fg.randn(4, 20), fg.randint(0, 10, (4,))
        opt = fg.optim.AdamW(model.parameters(), lr=1e-3)
        with fg.profile() as bill:
            for _ in range(2):
                _step(model, opt, x, y)
        return bill.memory_breakdown()

    assert bill_of(True) == bill_of(False)


# ---------------------------------------------------------------- long profiles

def _train(steps, events):
    fg.manual_seed(0)
    model = MLP([20, 32, 10])
    opt = fg.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = fg.randn(8, 20), fg.randint(0, 10, (8,))
    with fg.profile(events=events) as bill:
        for _ in range(steps):
            _step(model, opt, x, y)
    return bill


def test_an_aggregated_profile_has_the_same_totals_and_tables():
    full, agg = _train(6, events=True), _train(6, events=False)
    assert agg.to_dict()["totals"] == full.to_dict()["totals"]
    assert agg.table() == full.table()
    assert agg.rows("scope") == full.rows("scope")
    assert agg.peak_bytes == full.peak_bytes
    assert agg.backward_forward_ratio() == full.backward_forward_ratio()
    assert sum(r["count"] for r in agg.event_rows()) == len(full.events)
    assert sum(e["count"] for e in agg.saved()) == len(full.saved())
    assert sum(e["bytes"] for e in agg.saved()) == sum(e["bytes"] for e in full.saved())
    assert repr(agg) == repr(full)


def test_an_aggregated_profile_stays_the_size_of_one_step():
    short, long = _train(3, events=False), _train(30, events=False)
    assert len(long.events) == len(short.events)
    assert len(long.saved()) == len(short.saved())
    assert long.timeline() == [] and short.timeline() == []
    assert long.flops() == 10 * short.flops()
    full = _train(30, events=True)
    assert len(full.events) > 9 * len(long.events)


def test_an_aggregated_profile_has_no_trace(tmp_path):
    agg = _train(1, events=False)
    with pytest.raises(ValueError, match="events=False"):
        agg.to_chrome_trace(tmp_path / "t.json")
    assert not (tmp_path / "t.json").exists()
    agg.to_csv(tmp_path / "bill.csv")
    assert "count" in (tmp_path / "bill.csv").read_text().splitlines()[0]


def test_aggregation_keys_index_params_by_shape():
    """Embedding lookups with different token ids are the same event (same cost)."""
    emb = fg.nn.Embedding(10, 4)
    with fg.profile(events=False) as bill:
        for k in range(5):
            emb(fg.tensor([k, k + 1])).sum().backward()
    assert [r["count"] for r in bill.event_rows() if r["primitive"] == "index"] == [5]


def test_step_bill_measures_weights_gradients_and_adamw_state():
    """`flopgrad bill`'s memory line comes from the meta bill, not from arithmetic: it must
    agree with the model, and a second step's peak lies between the printed bounds."""
    from flopgrad.models import GPT, GPTConfig

    cfg = GPTConfig(n_layer=2, n_head=2, d_model=32, ctx=16, vocab=64)
    bill, model = fg.planning.step_bill(cfg, batch=3)
    n = sum(p._data.nbytes for p in model.parameters())
    live = bill.memory_breakdown()["live"]
    assert n == 4 * cfg.num_params()
    assert (live["parameters"], live["gradients"], live["optimizer_state"]) == (n, n, 2 * n)

    with fg.meta():
        model = GPT(cfg)
    opt = fg.optim.AdamW(model.parameters(), lr=1e-4)
    idx = fg.randint(0, cfg.vocab, (3, 16), device="meta")
    with fg.profile() as two:
        for _ in range(2):
            opt.zero_grad()
            _, loss = model(idx, idx)
            loss.backward()
            opt.step()
    assert bill.peak_bytes < two.peak_bytes <= bill.peak_bytes + 2 * n


def test_bill_cli_prints_the_measured_memory(capsys):
    from flopgrad.cli import main

    assert main(["bill", "--n-layer", "2", "--n-head", "2", "--d-model", "32", "--ctx", "16",
                 "--vocab", "64"]) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("memory (float"))
    n = 4 * (2 * 12 * 32 * 32 + 2 * 13 * 32 + 2 * 32 + 64 * 32 + 16 * 32)
    from flopgrad.report import human_bytes
    assert f"weights {human_bytes(n)}, gradients {human_bytes(n)}, AdamW state " \
           f"{human_bytes(2 * n)}" in line


@pytest.mark.parametrize("kwargs", [{"events": "no"}, {"memory": None}, {"events": 2}])
def test_profile_options_must_be_booleans(kwargs):
    with pytest.raises(TypeError, match="True or False"):
        fg.profile(**kwargs)

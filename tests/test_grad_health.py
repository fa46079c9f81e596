"""Gradient health (fg.health, fg.Health): the verdicts on the demonstration networks, the
numbers against an independent computation, dead ReLUs, the training callback, the command
line and bad input."""

import json
import math
import pathlib

import numpy as np
import pytest

import flopgrad as fg
import flopgrad.nn.functional as F
from flopgrad import nn
from flopgrad.cli import main
from flopgrad.diagnostics import health_demo
from flopgrad.diagnostics.grad_health import DEAD, EXPLODING, GRAD_TO_WEIGHT, VANISHING
from flopgrad.hooks import Listener


@pytest.fixture(scope="module")
def demo():
    return {case.name: case for case in health_demo(steps=50)}


def _linear_rows(report):
    return [r for r in report.layers if r.kind == "Linear"]


# ---------------------------------------------------------------- the demonstration

def test_default_init_sigmoid_relu_and_tanh_vanish_in_their_first_layers(demo):
    for name, below in (("sigmoid", 1e-12), ("relu", 1e-5), ("tanh", 1e-3)):
        case = demo[name]
        rows = _linear_rows(case.report)
        assert len(rows) == 20
        assert case.ratio < below, (name, case.ratio)
        assert rows[0].verdict == rows[1].verdict == "vanishing", name
        assert rows[-1].verdict == "healthy" and rows[-1].grad_ratio == 1.0
        # the ratio is the first row's grad norm over the last's
        assert case.ratio == pytest.approx(rows[0].grad_norm / rows[-1].grad_norm)
    # with the default init the signal shrinks until the biases decide: many dead ReLUs
    relus = [r for r in demo["relu"].report.layers if r.kind == "ReLU"]
    assert len(relus) == 19 and sum(r.verdict == "dead" for r in relus) >= 3
    assert not any(r.verdict == "dead" for r in demo["relu-kaiming"].report.layers)
    sigmoid = _linear_rows(demo["sigmoid"].report)
    assert [r.verdict for r in sigmoid[:16]] == ["vanishing"] * 16
    # the first layer's update is below float32's resolution: its weights did not move
    assert sigmoid[0].update_ratio == 0.0


def test_kaiming_residual_and_layernorm_are_healthy_and_learn(demo):
    for name in ("relu-kaiming", "residual", "layernorm"):
        case = demo[name]
        assert set(case.report.verdicts().values()) == {"healthy"}, name
        assert 1e-2 < case.ratio < 1e2, (name, case.ratio)
        assert len(_linear_rows(case.report)) == 20
    for name in ("residual", "layernorm"):
        assert demo[name].final_loss() < 0.7 * demo[name].losses[0], name
    # the sick twins do not learn in the same steps
    for name in ("sigmoid", "tanh", "relu"):
        assert demo[name].final_loss() > 2.2, name


def test_bad_init_explodes_and_clipping_keeps_it_trainable(demo):
    bad, clipped = demo["bad-init"], demo["bad-init-clipped"]
    rows = _linear_rows(bad.report)
    assert all(r.verdict == "exploding" for r in rows)
    assert all("x its weight norm" in r.why for r in rows)
    assert max(r.update_ratio for r in rows) > 1  # one step moved the weights past their norm
    assert not math.isfinite(bad.losses[-1])
    assert np.isfinite(clipped.losses).all()
    assert clipped.final_loss() < clipped.losses[0] / 100
    # the report reads the gradients after clipping: those are healthy
    assert set(clipped.report.verdicts().values()) == {"healthy"}
    assert clipped.ratio == pytest.approx(bad.ratio)


def test_the_demo_prints_a_ratio_per_network(demo):
    for case in demo.values():
        line = case.summary().splitlines()[1]
        assert f"first/last layer grad norm {case.ratio:.3g}" in line


# ---------------------------------------------------------------- the numbers

def _trained_mlp():
    fg.manual_seed(0)
    model = fg.models.MLP([64, 32, 16, 10])
    x, y = fg.data.digits()[:48]
    return model, fg.tensor(x), fg.tensor(y)


def test_norms_match_numpy():
    model, x, y = _trained_mlp()
    F.cross_entropy(model(x), y).backward()
    report = fg.health(model)
    for t, (name, p) in zip(report.tensors, model.named_parameters(), strict=True):
        assert t.name == name
        assert t.grad_norm == pytest.approx(np.linalg.norm(p.grad.numpy()), rel=1e-5)
        assert t.weight_norm == pytest.approx(np.linalg.norm(p.detach().numpy()), rel=1e-5)
    for k in (1, 2, 3):
        fc = getattr(model, f"fc{k}")
        row = report.layer(f"fc{k}")
        both = np.concatenate([fc.weight.grad.numpy().ravel(), fc.bias.grad.numpy().ravel()])
        assert row.grad_norm == pytest.approx(np.linalg.norm(both), rel=1e-5)
        assert row.params == fc.weight.numel() + fc.bias.numel()
        last = np.linalg.norm(np.concatenate([model.fc3.weight.grad.numpy().ravel(),
                                              model.fc3.bias.grad.numpy().ravel()]))
        assert row.grad_ratio == pytest.approx(np.linalg.norm(both) / last, rel=1e-5)
    assert report.reference == "fc3"


def test_update_ratio_matches_the_weights_before_and_after_a_step():
    model, x, y = _trained_mlp()
    opt = fg.optim.Adam(model.parameters(), lr=1e-2)
    h = fg.Health(model)
    before = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    F.cross_entropy(model(x), y).backward()
    opt.step()
    report = h.report()
    after = {n: p.detach().numpy() for n, p in model.named_parameters()}
    for t in report.tensors:
        want = np.linalg.norm(after[t.name] - before[t.name]) / np.linalg.norm(before[t.name])
        assert t.update_ratio == pytest.approx(want, rel=1e-4)
    row = report.layer("fc2")
    delta = np.concatenate([(after[k] - before[k]).ravel() for k in ("fc2.weight", "fc2.bias")])
    w0 = np.concatenate([before[k].ravel() for k in ("fc2.weight", "fc2.bias")])
    assert row.update_ratio == pytest.approx(np.linalg.norm(delta) / np.linalg.norm(w0), rel=1e-4)


def test_the_callback_compares_with_the_step_before_each_report():
    model, x, y = _trained_mlp()
    loader = fg.data.DataLoader(fg.data.TensorDataset(x.numpy(), y.numpy()), batch_size=16)
    opt = fg.optim.SGD(model.parameters(), lr=0.5)
    weights, calls = [], []

    def keep(step, loss):
        calls.append((step, loss))
        weights.append(model.fc1.weight.detach().numpy().copy())

    with fg.Health(model, every=3) as h:
        def both(step, loss):
            h(step, loss)
            keep(step, loss)
        losses = fg.training.fit(model, loader, opt, steps=6, progress=False, callback=both)
    assert calls == list(enumerate(losses, start=1))
    assert [r.step for r in h.reports] == [3, 6]
    assert h.reports[-1].loss == losses[5]
    want = np.linalg.norm(weights[5] - weights[4]) / np.linalg.norm(weights[4])
    fc1 = next(t for t in h.reports[-1].tensors if t.name == "fc1.weight")
    assert fc1.update_ratio == pytest.approx(want, rel=1e-4)


def test_activation_mean_and_std_are_the_module_outputs():
    model, x, y = _trained_mlp()
    with fg.Health(model) as h:
        F.cross_entropy(model(x), y).backward()
    report = h.report()
    with fg.no_grad():
        h1 = model.fc1(x)
        a1 = model.act1(h1)
    for name, out in (("fc1", h1), ("act1", a1)):
        row = report.layer(name)
        assert row.act_mean == pytest.approx(float(out.numpy().mean()), rel=1e-5, abs=1e-7)
        assert row.act_std == pytest.approx(float(out.numpy().std()), rel=1e-5)
    dead = (a1.numpy() == 0).all(axis=0).mean()
    assert report.layer("act1").dead == pytest.approx(dead)
    assert report.watched and "activations not seen" not in report.table()


def test_a_large_negative_bias_kills_every_unit():
    fg.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with fg.no_grad():
        model[0].bias.fill_(-100.0)
    with fg.Health(model) as h:
        F.cross_entropy(model(fg.randn(32, 4)), fg.randint(0, 2, (32,))).backward()
    relu = h.report().layer("1")
    assert relu.dead == 1.0 and relu.verdict == "dead"
    assert f"{100:.0f}% of its ReLU units" in relu.why
    assert h.report().layer("0").grad_norm == 0.0  # nothing flows back through dead units


def test_dead_is_more_than_half_and_counts_the_relus_of_a_scope():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 8)

        def forward(self, x):
            return F.relu(self.fc(x))

    fg.manual_seed(0)
    model = nn.Sequential(Block(), nn.Linear(8, 2))
    with fg.no_grad():
        model[0].fc.bias.copy_(fg.tensor([-100.0] * 5 + [100.0] * 3))
    with fg.Health(model) as h:
        model(fg.randn(16, 4)).sum().backward()
    assert h.report().layer("0").dead == 5 / 8 > DEAD
    assert h.report().layer("0").verdict == "dead"
    with fg.no_grad():
        model[0].fc.bias.copy_(fg.tensor([-100.0] * 4 + [100.0] * 4))
    with h:
        model(fg.randn(16, 4)).sum().backward()
    assert h.report().layer("0").dead == 0.5 and h.report().layer("0").verdict == "healthy"


def test_non_finite_gradients_explode_and_thresholds_are_documented():
    model, x, y = _trained_mlp()
    F.cross_entropy(model(x), y).backward()
    model.fc1.weight.grad._data[0, 0] = np.nan
    row = fg.health(model).layer("fc1")
    assert row.verdict == "exploding" and "non-finite" in row.why
    text = (pathlib.Path(__file__).parent.parent / "docs" / "health.md").read_text()
    for shown, value in (("**1e-3**", VANISHING), ("**1e3**", EXPLODING),
                         ("**100**", GRAD_TO_WEIGHT), ("**50%**", 100 * DEAD)):
        assert shown in text and float(shown.strip("*%")) == value


def test_table_and_dict():
    model, x, y = _trained_mlp()
    F.cross_entropy(model(x), y).backward()
    report = fg.health(model)
    text = str(report)
    assert text == report.table() and "activations not seen" in text
    for word in ("grad norm", "weight norm", "update/weight", "dead", "verdict", "fc2"):
        assert word in text
    assert "fc1.weight" in report.table(tensors=True)
    d = json.loads(json.dumps(report.to_dict()))
    assert [r["name"] for r in d["layers"]] == ["fc1", "fc2", "fc3"]
    assert d["tensors"][0]["shape"] == [32, 64] and d["thresholds"]["dead"] == DEAD
    assert repr(report) == "<HealthReport: 3 layers: 3 healthy>"


def test_the_listener_is_only_on_inside_with():
    from flopgrad.dispatch import mode
    model, x, y = _trained_mlp()
    h = fg.Health(model)
    with h:
        assert any(isinstance(l, Listener) for l in mode().listeners)
    assert mode().listeners == ()


# ---------------------------------------------------------------- the command line

def test_health_demo_command(capsys):
    assert main(["health-demo", "--steps", "2", "--tables"]) == 0
    out = capsys.readouterr().out
    for name in ("relu", "relu-kaiming", "sigmoid", "residual", "tanh", "layernorm",
                 "bad-init", "bad-init-clipped"):
        assert f"\n{name}: " in out
    assert out.count("first/last layer grad norm") == 8
    assert "vanishing" in out and "exploding" in out and "update/weight" in out


def test_train_prints_health_every_n_steps(capsys):
    assert main(["train", "mlp", "--steps", "6", "--health", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "gradient health at step 3" in out and "gradient health at step 6" in out
    assert out.count("gradient health at step") == 2
    assert "act1" in out and "test accuracy" in out
    assert main(["train", "gpt", "--steps", "2", "--health", "2", "--quiet", "--batch-size",
                 "2"]) == 0
    out = capsys.readouterr().out
    assert "grad/last against wte's grad norm" in out and "blocks.1.mlp.c_fc" in out


# ---------------------------------------------------------------- bad input

def _one_line(text: str) -> str:
    assert "\n" not in text.strip() and "Traceback" not in text, text
    return text


@pytest.mark.parametrize("call,error,words", [
    (lambda m: fg.health([m]), TypeError, "expected a flopgrad.nn.Module, got list"),
    (lambda m: fg.Health("mlp"), TypeError, "expected a flopgrad.nn.Module, got str"),
    (lambda m: fg.Health(m, every=0), ValueError, "every must be a positive whole number"),
    (lambda m: fg.Health(m, every=2.5), ValueError, "got 2.5"),
    (lambda m: fg.health(m), ValueError, "has a gradient; call loss.backward() first"),
    (lambda m: health_demo(cases=["nope"]), ValueError, "no case 'nope'"),
    (lambda m: health_demo(steps=0), ValueError, "steps must be a positive whole number"),
])
def test_bad_input_is_one_line(call, error, words):
    fg.manual_seed(0)
    with pytest.raises(error) as info:
        call(fg.models.MLP([4, 3, 2]))
    assert words in _one_line(str(info.value))


def test_bad_reference_and_meta_are_one_line():
    model, x, y = _trained_mlp()
    F.cross_entropy(model(x), y).backward()
    with pytest.raises(ValueError) as info:
        fg.health(model, reference="fc9")
    assert "those are fc1, fc2, fc3" in _one_line(str(info.value))
    assert fg.health(model, reference="fc2").layer("fc2").grad_ratio == 1.0
    with pytest.raises(ValueError) as info:
        fg.health(fg.models.MLP([4, 2]).to("meta"))
    assert "meta tensor" in _one_line(str(info.value))


@pytest.mark.parametrize("argv,words", [
    (["train", "mlp", "--health", "0"], "argument --health: must be positive and whole"),
    (["train", "mlp", "--health", "-2"], "argument --health"),
    (["health-demo", "--steps", "0"], "argument --steps: must be positive and whole"),
])
def test_bad_cli_arguments_are_one_line(capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err

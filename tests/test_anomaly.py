"""fg.detect_anomaly: the first op that turns finite inputs into NaN or inf raises, naming
the op, its scope, the user's line, the input shapes and the count; compared with
torch.autograd.detect_anomaly where they overlap. Also the training loop's non-finite
message and the bill's rule."""

from __future__ import annotations

import inspect
import io
import os
import threading
import warnings

import numpy as np
import pytest
import torch

import flopgrad as fg
import flopgrad.nn.functional as F
from flopgrad.diagnostics import AnomalyDetector, is_anomaly_enabled

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's log(-1), 1/0
HERE = os.path.basename(__file__)


def _next_line() -> int:
    """The line number after the caller's line (where the op under test is)."""
    return inspect.currentframe().f_back.f_lineno + 1


def _torch_raises(fn) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anomaly mode warns that it slows things down
        try:
            with torch.autograd.detect_anomaly():
                fn()
        except RuntimeError:
            return True
    return False


# ---------------------------------------------------------------- forward ops

def test_log_of_negative_raises_in_forward_naming_op_line_shapes_and_count():
    x = fg.tensor([-1.0, 2.0, 3.0], requires_grad=True)
    with pytest.raises(fg.AnomalyError) as info, fg.detect_anomaly():
        line = _next_line()
        x.log()
    err = info.value
    assert isinstance(err, RuntimeError)
    assert (err.op, err.phase, err.grad_of, err.scope) == ("log", "forward", None, "")
    assert err.line == (__file__, line)
    assert (err.shapes, err.dtypes) == (((3,),), ("float32",))
    assert (err.nan, err.inf, err.count, err.size) == (1, 0, 1, 3)
    msg = str(err)
    assert "log made 1 of 3 entries non-finite (1 NaN) from finite inputs" in msg
    assert f"{HERE}:{line}  x.log()" in msg
    assert "inputs: (3,) float32" in msg
    # torch checks backward only, for NaN: log's gradient 1/x = -1 is finite, so no error
    tx = torch.tensor([-1.0, 2.0, 3.0], requires_grad=True)
    assert not _torch_raises(lambda: tx.log().sum().backward())


def test_float16_overflow_raises_at_the_multiply():
    x = fg.tensor([300.0, 2.0], dtype=fg.float16, requires_grad=True)
    with pytest.raises(fg.AnomalyError) as info, fg.detect_anomaly():
        line = _next_line()
        x * x
    err = info.value
    assert (err.op, err.phase, err.inf, err.nan, err.count) == ("mul", "forward", 1, 0, 1)
    assert err.dtypes == ("float16", "float16") and err.line == (__file__, line)
    assert "inputs: (2,) float16, (2,) float16" in str(err)
    tx = torch.tensor([300.0, 2.0], dtype=torch.float16, requires_grad=True)
    assert not _torch_raises(lambda: (tx * tx).float().sum().backward())  # inf, not NaN


def test_a_cast_to_float16_that_overflows_is_caught():
    x = fg.tensor([1e5, 1.0])
    with pytest.raises(fg.AnomalyError) as info, fg.detect_anomaly():
        x.to(fg.float16)
    assert info.value.op == "cast" and info.value.inf == 1


def test_inside_a_module_the_scope_and_the_callers_line_are_named():
    fg.manual_seed(0)
    model = fg.models.MLP([4, 8, 2])
    with fg.no_grad():
        model.fc1.weight.mul_(1e30)  # finite, but x @ W.T overflows float32
    x = fg.full((3, 4), 1e10)
    with pytest.raises(fg.AnomalyError) as info, fg.detect_anomaly():
        line = _next_line()
        model(x)
    err = info.value
    assert err.scope == "fc1" and err.phase == "forward"
    assert err.line == (__file__, line)  # the user's call, not models.py
    assert err.shapes[:2] == ((3, 4), (8, 4))
    assert "scope:  fc1" in str(err)


class _Root(fg.nn.Module):
    def forward(self, x):
        return x.sqrt()


class _Net(fg.nn.Module):
    def __init__(self):
        super().__init__()
        self.root = _Root()

    def forward(self, x):
        return self.root(x) * 3


# ---------------------------------------------------------------- backward ops

def test_sqrt_at_zero_finite_forward_inf_backward():
    x = fg.tensor([0.0, 4.0], requires_grad=True)
    with pytest.raises(fg.AnomalyError) as info, fg.detect_anomaly():
        line = _next_line()
        y = x.sqrt()
        assert np.isfinite(y.detach().numpy()).all()  # sqrt(0) = 0: the forward passes
        y.sum().backward()
    err = info.value
    assert err.phase == "backward" and err.grad_of == ("sqrt", 0)
    assert err.op == "div" and (err.inf, err.nan) == (1, 0)
    assert err.line == (__file__, line)  # the forward sqrt's line
    msg = str(err)
    assert "div in backward, in the gradient of sqrt (input 0)" in msg
    assert f"{HERE}:{line} (the forward sqrt)  y = x.sqrt()" in msg
    # torch: d sqrt / dx at 0 is inf, which its NaN check lets through
    tx = torch.tensor([0.0, 4.0], requires_grad=True)
    assert not _torch_raises(lambda: tx.sqrt().sum().backward())


def test_zero_over_zero_in_backward_both_raise():
    """0 * inf: sqrt at 0 with a zero upstream gradient; torch raises NaN in SqrtBackward0,
    flopgrad at the first backward primitive that leaves the finite numbers (the inf)."""
    x = fg.tensor([0.0, 4.0], requires_grad=True)
    with pytest.raises(fg.AnomalyError) as info, fg.detect_anomaly():
        (x.sqrt() * 0).sum().backward()
    assert info.value.grad_of == ("sqrt", 0)
    tx = torch.tensor([0.0, 4.0], requires_grad=True)
    with warnings.catch_warnings(), pytest.raises(RuntimeError, match="SqrtBackward0"):
        warnings.simplefilter("ignore")
        with torch.autograd.detect_anomaly():
            (tx.sqrt() * 0).sum().backward()


def _scale(base):
    """y = 2x as a `base` (fg.Function or torch.autograd.Function) whose backward computes
    g * x / x * 2: 0/0 at x = 0."""

    class Scale(base):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return 2 * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * x / x * 2

    return Scale


def test_nan_from_zero_over_zero_in_a_backward_op():
    x = fg.tensor([0.0, 1.0], requires_grad=True)
    with pytest.raises(fg.AnomalyError) as info, fg.detect_anomaly():
        line = _next_line()
        y = _scale(fg.Function).apply(x)  # forward 2 * 0 = 0, finite
        y.sum().backward()
    err = info.value
    assert (err.op, err.phase, err.nan, err.inf) == ("div", "backward", 1, 0)
    assert err.grad_of == ("Scale", 0) and err.line == (__file__, line)
    # torch raises in the same Function's backward (a NaN output)
    tx = torch.tensor([0.0, 1.0], requires_grad=True)
    assert _torch_raises(lambda: _scale(torch.autograd.Function).apply(tx).sum().backward())


def test_backward_in_a_module_names_the_forward_scope():
    net = _Net()
    x = fg.tensor([0.0, 1.0], requires_grad=True)
    with pytest.raises(fg.AnomalyError) as info, fg.detect_anomaly():
        net(x).sum().backward()
    err = info.value
    # the innermost user frame: the module's own forward, `return x.sqrt()`
    line = inspect.getsourcelines(_Root.forward)[1] + 1
    assert err.scope == "root" and err.grad_of == ("sqrt", 0) and err.line == (__file__, line)
    assert "(the forward sqrt)  return x.sqrt()" in str(err)


def test_forward_outside_anomaly_mode_backward_inside_line_unknown():
    x = fg.tensor([0.0, 4.0], requires_grad=True)
    y = x.sqrt()
    with pytest.raises(fg.AnomalyError) as info, fg.detect_anomaly():
        y.sum().backward()
    assert info.value.line is None and info.value.grad_of == ("sqrt", 0)
    assert "the forward sqrt ran outside fg.detect_anomaly()" in str(info.value)


# ---------------------------------------------------------------- fg.checkpoint

def test_inside_checkpoint_backward_names_the_op_and_its_line():
    x = fg.tensor([0.0, 4.0], requires_grad=True)
    with pytest.raises(fg.AnomalyError) as info, fg.detect_anomaly():
        line = _next_line()
        y = fg.checkpoint(lambda h: (h * 1.0).sqrt() * 2, x)
        y.sum().backward()
    err = info.value
    assert err.phase == "backward" and err.grad_of == ("sqrt", 0)
    assert err.line == (__file__, line)


def test_checkpoint_forward_outside_the_recompute_gives_the_line():
    x = fg.tensor([0.0, 4.0], requires_grad=True)
    line = _next_line()
    y = fg.checkpoint(lambda h: (h * 1.0).sqrt() * 2, x)
    with pytest.raises(fg.AnomalyError) as info, fg.detect_anomaly():
        y.sum().backward()  # the recompute (phase "recompute") records sqrt's line
    assert info.value.line == (__file__, line) and info.value.grad_of == ("sqrt", 0)


def test_the_recompute_itself_raises_in_phase_recompute():
    x = fg.tensor([-1.0, 4.0], requires_grad=True)
    line = _next_line()
    y = fg.checkpoint(lambda h: (h * 1.0).log().exp(), x)  # NaN made outside anomaly mode
    with pytest.raises(fg.AnomalyError) as info, fg.detect_anomaly():
        y.sum().backward()
    err = info.value
    assert (err.op, err.phase, err.nan) == ("log", "recompute", 1)
    assert err.line == (__file__, line)
    assert "log recomputed by fg.checkpoint in backward" in str(err)


# ---------------------------------------------------------------- no false alarms

def test_minus_inf_attention_mask_then_softmax_is_no_anomaly():
    fg.manual_seed(0)
    s = fg.randn(4, 4, requires_grad=True)
    mask = fg.tensor(np.triu(np.ones((4, 4), bool), 1))
    with fg.detect_anomaly():
        p = s.masked_fill(mask, float("-inf")).softmax(-1)  # the -inf comes in as an input
        p.sum().backward()
    assert np.isfinite(p.detach().numpy()).all() and np.isfinite(s.grad.numpy()).all()
    ts = torch.tensor(s.detach().numpy(), requires_grad=True)
    tmask = torch.from_numpy(mask.numpy())
    assert not _torch_raises(lambda: ts.masked_fill(tmask, float("-inf")).softmax(-1)
                             .sum().backward())


def test_causal_attention_and_a_gpt_step_are_no_anomaly():
    fg.manual_seed(0)
    q = fg.randn(1, 2, 4, 8, requires_grad=True)
    cfg = fg.models.GPTConfig(n_layer=1, n_head=2, d_model=16, ctx=8, vocab=11)
    gpt = fg.models.GPT(cfg)
    idx = fg.randint(0, 11, (2, 8))
    with fg.detect_anomaly():
        F.scaled_dot_product_attention(q, q, q, is_causal=True).sum().backward()
        logits = gpt(idx)
        F.cross_entropy(logits.reshape(-1, 11), idx.reshape(-1)).backward()
    assert all(np.isfinite(p.grad.numpy()).all() for p in gpt.parameters())


def test_inputs_already_non_finite_do_not_raise_again():
    x = fg.tensor([float("nan"), 1.0, float("inf")], requires_grad=True)
    with fg.detect_anomaly():
        y = (x * 2).exp().sum()
        y.backward()
        fully_masked = fg.full((1, 3), float("-inf")).softmax(-1)  # NaN from -inf inputs
    assert np.isnan(y.item()) and np.isnan(fully_masked.numpy()).all()


def test_meta_tensors_are_not_checked():
    with fg.detect_anomaly(), fg.meta():
        y = fg.zeros(3, 4).log()  # no values: nothing to check
    assert y.is_meta


def test_integer_and_boolean_ops_are_not_checked():
    with fg.detect_anomaly():
        assert (fg.tensor([1, 2]) // fg.tensor([1, 1])).tolist() == [1, 2]
        assert (fg.tensor([1.0, float("nan")]) > 0).tolist() == [True, False]


# ---------------------------------------------------------------- in place, optimizer

def test_in_place_overflow_raises_and_says_in_place():
    p = fg.full((2,), 3e38)
    with pytest.raises(fg.AnomalyError) as info, fg.detect_anomaly(), fg.no_grad():
        p.mul_(10)
    assert info.value.op == "mul_" and info.value.inplace
    assert "in place" in str(info.value)


def test_an_optimizer_step_on_nan_gradients_does_not_raise_again():
    w = fg.nn.Parameter(fg.ones(2))
    w.grad = fg.tensor([float("nan"), 1.0])
    with fg.detect_anomaly():
        fg.optim.SGD([w], lr=0.1).step()
    assert np.isnan(w.detach().numpy()[0])


# ---------------------------------------------------------------- the mode

def test_off_by_default_and_restored_on_exit():
    assert not is_anomaly_enabled()
    with fg.detect_anomaly():
        assert is_anomaly_enabled()
    assert not is_anomaly_enabled()
    assert np.isnan(fg.tensor([-1.0]).log().item())  # no error outside


def test_nested_blocks_share_one_detector_and_restore():
    with fg.detect_anomaly():
        with fg.detect_anomaly():
            n = sum(type(x) is AnomalyDetector for x in fg.dispatch.mode().listeners)
        assert n == 1 and is_anomaly_enabled()
        with pytest.raises(fg.AnomalyError):
            fg.tensor([-1.0]).log()
    assert not is_anomaly_enabled() and fg.dispatch.mode().listeners == ()


def test_error_inside_the_block_still_removes_the_detector():
    with pytest.raises(fg.AnomalyError), fg.detect_anomaly():
        fg.tensor([0.0]).log()
    assert not is_anomaly_enabled()


def test_decorator_form_and_recursion():
    @fg.detect_anomaly()
    def f(x, depth=0):
        assert is_anomaly_enabled()
        return f(x, depth + 1) if depth < 2 else x.log()

    assert f(fg.tensor([2.0])).item() == pytest.approx(np.log(2.0))
    assert not is_anomaly_enabled()
    with pytest.raises(fg.AnomalyError, match="log made 1 of 1"):
        f(fg.tensor([-2.0]))
    assert f.__name__ == "f"


def test_per_thread():
    """A detector in one thread neither checks nor is seen by another thread's ops."""
    barrier = threading.Barrier(2, timeout=10)
    seen: dict = {}

    def checked():
        try:
            with fg.detect_anomaly():
                barrier.wait()  # both threads are now inside their blocks
                barrier.wait()  # the other thread has run its log(-1)
                fg.tensor([-1.0]).log()
        except fg.AnomalyError as err:
            seen["checked"] = err.op

    def unchecked():
        barrier.wait()
        seen["enabled_here"] = is_anomaly_enabled()
        seen["unchecked"] = bool(np.isnan(fg.tensor([-1.0]).log().item()))
        barrier.wait()

    threads = [threading.Thread(target=checked), threading.Thread(target=unchecked)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"checked": "log", "enabled_here": False, "unchecked": True}


def test_a_new_thread_starts_without_anomaly_mode():
    out = {}
    with fg.detect_anomaly():
        t = threading.Thread(target=lambda: out.setdefault("on", is_anomaly_enabled()))
        t.start()
        t.join()
    assert out == {"on": False}


def test_public_names():
    assert fg.autograd.detect_anomaly is fg.detect_anomaly
    assert fg.diagnostics.AnomalyError is fg.AnomalyError
    assert issubclass(fg.AnomalyError, RuntimeError)


def test_works_together_with_a_profile():
    x = fg.tensor([0.0, 4.0], requires_grad=True)
    with fg.profile() as bill, pytest.raises(fg.AnomalyError), fg.detect_anomaly():
        x.sqrt().sum().backward()
    assert bill.events  # the ops before the error are billed as usual


# ---------------------------------------------------------------- without anomaly mode

def _root_loss(model, batch, bad_step, calls):
    """Cross-entropy, plus sqrt(0 * bias) (0, a NaN gradient) from step `bad_step` on."""
    calls.append(1)
    x, y = batch
    loss = F.cross_entropy(model(x), y)
    if len(calls) >= bad_step:
        loss = loss + (model.bias * 0).sqrt().sum()
    return loss


def _loader():
    batch = (fg.ones(4, 3), fg.tensor([0, 1, 1, 0]))
    return fg.data.DataLoader(fg.data.TensorDataset(*batch), batch_size=4)


def test_training_loop_names_the_parameter_whose_gradient_became_non_finite(capsys):
    fg.manual_seed(0)
    model = fg.nn.Linear(3, 2)
    calls: list = []
    losses = fg.training.fit(model, _loader(), fg.optim.SGD(model.parameters(), lr=0.1),
                             lambda m, b: _root_loss(m, b, 2, calls), steps=4)
    err = capsys.readouterr().err
    assert np.isfinite(losses[1]) and np.isnan(losses[2])  # NaN bias after step 2's update
    assert "gradient of bias non-finite at step 2" in err
    assert "loss became non-finite" not in err  # only the first alarm is kept


def test_training_loop_says_when_the_loss_became_non_finite(capsys):
    fg.manual_seed(0)
    model = fg.nn.Linear(3, 2)
    calls: list = []

    def loss_fn(m, b):
        calls.append(1)
        loss = F.cross_entropy(m(b[0]), b[1])
        return loss * float("nan") if len(calls) == 3 else loss

    fg.training.fit(model, _loader(), fg.optim.SGD(model.parameters(), lr=0.1), loss_fn,
                    steps=5)
    assert "loss became non-finite at step 3" in capsys.readouterr().err


def test_progress_shows_a_new_note_at_once():
    bar = fg.training.Progress(100, stream=io.StringIO())
    bar.update(1, loss=1.0)
    bar.update(2, note="loss became non-finite at step 2", loss=float("nan"))
    bar.update(3, note="loss became non-finite at step 2", loss=float("nan"))  # throttled
    lines = bar.stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].endswith("loss became non-finite at step 2")


def test_nonfinite_check_of_float16_gradients_does_not_overflow_the_sum():
    w = fg.nn.Parameter(fg.ones(70000, dtype=fg.float16))
    w.grad = fg.full((70000,), 60000.0, dtype=fg.float16)  # finite, sum beyond float16
    assert fg.training.nonfinite(1.0, [("w", w)], 1) is None


def test_bill_rule_only_when_a_gradient_is_non_finite():
    fg.manual_seed(0)
    model = fg.nn.Linear(3, 2)
    opt = fg.optim.SGD(model.parameters(), lr=0.1)
    batch = next(iter(_loader()))
    healthy = fg.training.step_bill(model, batch, opt)
    assert "gradients non-finite" not in [r.name for r in healthy.rules()]
    bill = fg.training.step_bill(model, batch, opt, lambda m, b: _root_loss(m, b, 1, []))
    rule = next(r for r in bill.rules() if r.name == "gradients non-finite")
    assert not rule.holds and rule.measured == 1  # the bias's gradient
    assert "shape (2,) float32, 2 NaN of 2 entries" in rule.reason
    assert "fg.detect_anomaly()" in rule.reason
    assert fg.report.rules.nonfinite_gradients(bill) == [
        {"shape": (2,), "dtype": "float32", "nan": 2, "inf": 0, "size": 2}]


def test_bill_rule_needs_memory_tracking():
    x = fg.tensor([0.0], requires_grad=True)
    with fg.profile(memory=False) as bill:
        x.sqrt().sum().backward()
    assert "gradients non-finite" not in [r.name for r in bill.rules()]

"""Reverse-mode engine semantics: accumulation, retain_graph, create_graph, memory, fg.grad,
grad modes, and the Tensor API basics the engine relies on. Values are compared with
PyTorch (CPU, float64)."""

from __future__ import annotations

import gc
import time
import weakref

import numpy as np
import pytest
import torch

import flopgrad as fg
from flopgrad import ops as O

F64 = fg.float64


def t64(values, requires_grad: bool = False) -> fg.Tensor:
    return fg.tensor(np.asarray(values, dtype=np.float64), requires_grad=requires_grad)


def th(values, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.asarray(values, dtype=np.float64), requires_grad=requires_grad)


def close(a, b, rtol=1e-10, atol=1e-12) -> None:
    a = a.detach().numpy() if isinstance(a, fg.Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


RNG = np.random.default_rng(0)
XA = RNG.standard_normal((3, 4))
WA = RNG.standard_normal((4, 2))


# ---------------------------------------------------------------- iterative backward

def test_long_chain_backward_is_iterative_and_fast():
    x = fg.tensor(0.5, dtype=F64, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0 + 0.0
    start = time.perf_counter()
    y.backward()
    elapsed = time.perf_counter() - start
    assert x.grad.item() == 1.0
    assert elapsed < 10.0
    del y  # freeing a 200,000-node chain must not overflow the C stack either


def test_long_chain_fg_grad():
    x = fg.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    y = x
    for _ in range(20_000):
        y = y.sin().cos()
    (gx,) = fg.grad(y.sum(), x)
    xt = th([1.0, 2.0], True)
    yt = xt
    for _ in range(20_000):
        yt = yt.sin().cos()
    yt.sum().backward()
    close(gx, xt.grad)


# ---------------------------------------------------------------- accumulation

def test_two_backward_calls_sum_into_leaf_grad():
    x, w = t64(XA, True), t64(WA, True)
    xt, wt = th(XA, True), th(WA, True)
    for _ in range(2):
        ((x @ w).tanh() ** 2).sum().backward()
        ((xt @ wt).tanh() ** 2).sum().backward()
    close(x.grad, xt.grad)
    close(w.grad, wt.grad)


def test_shared_subexpression_gradients_do_not_pile_up_across_calls():
    x = t64([0.3, -1.2, 2.0], True)
    xt = th([0.3, -1.2, 2.0], True)
    h, ht = x.exp(), xt.exp()  # used twice below, backed through twice
    grads = []
    for _ in range(3):
        loss = (h * h.sin()).sum() + h.sum()
        (g,) = fg.grad(loss, x, retain_graph=True)
        grads.append(g.numpy().copy())
    lt = (ht * ht.sin()).sum() + ht.sum()
    (gt,) = torch.autograd.grad(lt, xt)
    for g in grads:
        close(g, gt)
    assert x.grad is None


@pytest.mark.parametrize("name,fn", [
    ("x*x", lambda a: a * a),
    ("a+a", lambda a: a + a),
    ("x*x*x", lambda a: a * a * a),
    ("diamond", lambda a: (lambda h: h.sin() * h.cos() + h)(a.exp())),
    ("deep diamond", lambda a: (lambda h: (h * 2).tanh() + (h * 3).sigmoid() * h)(a * a)),
    ("reuse in matmul", lambda a: (a.reshape(1, 3) @ a.reshape(3, 1)).reshape(())),
])
def test_tensor_used_twice_in_one_graph(name, fn):
    x = t64([0.5, -0.7, 1.1], True)
    xt = th([0.5, -0.7, 1.1], True)
    fn(x).sum().backward()
    fn(xt).sum().backward()
    close(x.grad, xt.grad)


def test_two_roots_backward_together():
    x = t64([0.5, 2.0], True)
    xt = th([0.5, 2.0], True)
    y1, y2 = x.exp(), (x * 3).sin()
    fg.autograd.backward([y1, y2], [t64([1.0, 2.0]), t64([-1.0, 0.5])])
    torch.autograd.backward([xt.exp(), (xt * 3).sin()], [th([1.0, 2.0]), th([-1.0, 0.5])])
    close(x.grad, xt.grad)


def test_root_that_feeds_another_root():
    x = t64([0.5, 2.0], True)
    xt = th([0.5, 2.0], True)
    y = x.exp()
    z = (y * y).sum()
    fg.autograd.backward([y.sum(), z])
    yt = xt.exp()
    torch.autograd.backward([yt.sum(), (yt * yt).sum()])
    close(x.grad, xt.grad)


def test_backward_on_a_leaf():
    x = fg.tensor(3.0, requires_grad=True)
    x.backward()
    assert x.grad.item() == 1.0


def test_grad_buffers_are_not_shared():
    a = t64([1.0, 2.0], True)
    b = t64([3.0, 4.0], True)
    (a + b).sum().backward()  # add hands the same gradient to both
    assert not np.shares_memory(a.grad.numpy(), b.grad.numpy())
    a.grad.add_(1)
    assert b.grad.tolist() == [1.0, 1.0]
    g = t64([5.0, 6.0])
    c = t64([0.0, 0.0], True)
    (c + 0).backward(g)
    assert not np.shares_memory(c.grad.numpy(), g.numpy())


def test_leaf_grad_has_leaf_dtype():
    x = fg.tensor([1.0, 2.0], requires_grad=True)  # float32
    y = x * np.array([1.0, 3.0])  # NumPy float64 constant promotes the output
    assert y.dtype == np.float64
    y.sum().backward()
    xt = torch.tensor([1.0, 2.0], dtype=torch.float32, requires_grad=True)
    (xt * torch.tensor([1.0, 3.0], dtype=torch.float64)).sum().backward()
    assert x.grad.dtype == np.float32 and xt.grad.dtype == torch.float32
    close(x.grad, xt.grad)
    h = x * 1.0
    (gh,) = fg.grad((h * np.array([1.0, 3.0])).sum(), h)
    assert gh.dtype == np.float32


def test_backward_inputs_accumulates_only_into_inputs():
    x, w = t64(XA, True), t64(WA, True)
    h = x @ w
    loss = (h.tanh() * h).sum()
    loss.backward(inputs=[w, h], retain_graph=True)
    assert x.grad is None
    xt, wt = th(XA, True), th(WA, True)
    ht = xt @ wt
    ht.retain_grad()
    (ht.tanh() * ht).sum().backward()
    close(w.grad, wt.grad)
    close(h.grad, ht.grad)
    loss.backward(inputs=w)
    close(w.grad, 2 * wt.grad)


# ---------------------------------------------------------------- retain_graph and release

def test_retain_graph_allows_second_backward():
    x = t64([0.5, 1.5], True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    y.backward()
    close(x.grad, 2 * first)


def test_second_backward_without_retain_graph_raises():
    x = t64([0.5, 1.5], True)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_graph_without_saved_values_can_be_reused():
    x = t64([0.5, 1.5], True)
    y = (x + 1).sum()  # add and sum save nothing: like PyTorch, a second pass is fine
    y.backward()
    y.backward()
    assert x.grad.tolist() == [2.0, 2.0]


def test_saved_values_released_after_backward_unless_retained():
    x = t64([0.5, 1.5], True)
    h = x.exp()
    z = h * x
    z.sum().backward(retain_graph=True)
    assert h.grad_fn.out_data is not None and z.grad_fn.saved is not None
    z.sum().backward()
    assert h.grad_fn.out_data is None
    assert z.grad_fn.saved is None
    assert h.grad_fn.released and z.grad_fn.released


def test_fg_grad_releases_by_default_and_retains_with_create_graph():
    x = t64([0.5, 1.5], True)
    z = x.sin() * x
    fg.grad(z.sum(), x)
    assert z.grad_fn.saved is None
    z = x.sin() * x
    fg.grad(z.sum(), x, create_graph=True)
    assert z.grad_fn.saved is not None


def _graph(x):
    h = (x * 2.0).exp()
    z = h.sin() * h + x.tanh()
    return h, z, z.sum()


def test_no_node_survives_backward_and_del():
    x = t64([0.1, 0.2, 0.3], True)
    h, z, loss = _graph(x)
    refs = [weakref.ref(t.grad_fn) for t in (h, z, loss)]
    loss.backward()
    del h, z, loss
    gc.collect()
    assert all(r() is None for r in refs)


def test_graph_has_no_reference_cycles():
    x = t64([0.1, 0.2, 0.3], True)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        h, z, loss = _graph(x)
        nodes = [weakref.ref(t.grad_fn) for t in (h, z, loss)]
        loss.backward()
        del h, z, loss
        assert all(r() is None for r in nodes), "nodes kept alive by a reference cycle"
        # also without running backward, and with a higher-order graph
        h, z, loss = _graph(x)
        nodes = [weakref.ref(t.grad_fn) for t in (h, z, loss)]
        (g,) = fg.grad(loss, x, create_graph=True)
        nodes.append(weakref.ref(g.grad_fn))
        g.sum().backward()
        del h, z, loss, g
        x.grad = None
        assert all(r() is None for r in nodes), "higher-order graph kept alive by a cycle"
    finally:
        if was_enabled:
            gc.enable()


def test_function_graph_has_no_reference_cycles():
    class Square(fg.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a * a

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_tensors
            return g * 2 * fg.tensor(a)

    _assert_create_graph_frees_without_gc(Square.apply, lambda y: (y * y).sum(),
                                          t64([0.1, 0.2], True))


def _assert_create_graph_frees_without_gc(op, loss_of, x):
    """After fg.grad(..., create_graph=True) and del, reference counting alone frees the graph."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        y = op(x)
        loss = loss_of(y)
        refs = [weakref.ref(y.grad_fn), weakref.ref(loss.grad_fn)]
        (g,) = fg.grad(loss, x, create_graph=True)
        del y, loss, g
        assert all(r() is None for r in refs)
    finally:
        if was_enabled:
            gc.enable()


# ---------------------------------------------------------------- create_graph

def test_third_derivative_of_x_to_the_fourth():
    x = fg.tensor(1.5, dtype=F64, requires_grad=True)
    (d1,) = fg.grad(x ** 4, x, create_graph=True)
    (d2,) = fg.grad(d1, x, create_graph=True)
    (d3,) = fg.grad(d2, x)
    xt = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    (e1,) = torch.autograd.grad(xt ** 4, xt, create_graph=True)
    (e2,) = torch.autograd.grad(e1, xt, create_graph=True)
    (e3,) = torch.autograd.grad(e2, xt)
    close(d1, e1)
    close(d2, e2)
    close(d3, e3)
    assert d3.item() == pytest.approx(24 * 1.5)


def test_mixed_partials_match_torch():
    def f(lib_x, lib_y):
        return (lib_x * lib_y).sin() * lib_x.exp() + (lib_y ** 3) * lib_x

    x, y = t64([0.3, -0.4], True), t64([1.2, 0.7], True)
    xt, yt = th([0.3, -0.4], True), th([1.2, 0.7], True)
    (gx,) = fg.grad(f(x, y).sum(), x, create_graph=True)
    (gxy,) = fg.grad(gx.sum(), y)
    (gtx,) = torch.autograd.grad(f(xt, yt).sum(), xt, create_graph=True)
    (gtxy,) = torch.autograd.grad(gtx.sum(), yt)
    close(gx, gtx)
    close(gxy, gtxy)


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
def test_backward_create_graph_then_backward_of_grad():
    x = t64([0.5, 1.0], True)
    (x.sin() * x).sum().backward(create_graph=True)
    assert x.grad.requires_grad
    g = x.grad
    x.grad = None
    g.sum().backward()
    xt = th([0.5, 1.0], True)
    (xt.sin() * xt).sum().backward(create_graph=True)
    gt = xt.grad
    xt.grad = None
    gt.sum().backward()
    close(x.grad, xt.grad)


# ---------------------------------------------------------------- fg.grad

def test_grad_wrt_leaves_and_non_leaves():
    x, w = t64(XA, True), t64(WA, True)
    h = x @ w
    loss = (h.tanh() ** 2).sum()
    gx, gh, gw = fg.grad(loss, [x, h, w])
    xt, wt = th(XA, True), th(WA, True)
    ht = xt @ wt
    gxt, ght, gwt = torch.autograd.grad((ht.tanh() ** 2).sum(), [xt, ht, wt])
    close(gx, gxt)
    close(gh, ght)
    close(gw, gwt)
    assert x.grad is None and w.grad is None and h.grad is None


def test_grad_with_grad_outputs_and_several_outputs():
    x = t64([0.2, 0.4, 0.6], True)
    xt = th([0.2, 0.4, 0.6], True)
    v1, v2 = [1.0, -2.0, 0.5], [0.3, 0.3, -1.0]
    gs = fg.grad([x.exp(), x * x], x, grad_outputs=[t64(v1), np.array(v2)])
    gts = torch.autograd.grad([xt.exp(), xt * xt], xt, grad_outputs=[th(v1), th(v2)])
    close(gs[0], gts[0])
    (g,) = fg.grad(x.sin(), [x], grad_outputs=t64(v1))
    (gt,) = torch.autograd.grad(xt.sin(), [xt], grad_outputs=th(v1))
    close(g, gt)


@pytest.mark.parametrize("gradient", [
    np.array([1.0, 3.0]), [1.0, 3.0], (1.0, 3.0), [np.array([1.0, 3.0])], [[1.0, 3.0]],
    fg.tensor([1.0, 3.0]), [fg.tensor([1.0, 3.0])],
])
def test_gradient_given_as_array_like(gradient):
    x = t64([1.0, 2.0], True)
    (x * 2).backward(gradient)
    assert x.grad.tolist() == [2.0, 6.0]
    (g,) = fg.grad(x * 2, x, grad_outputs=gradient)
    assert g.tolist() == [2.0, 6.0]


def test_scalar_gradient_forms():
    x = t64([1.0, 2.0], True)
    for gradient in (2.0, [2.0], np.array(2.0), fg.tensor(2.0)):
        (g,) = fg.grad(x.sum(), x, grad_outputs=gradient)
        assert g.tolist() == [2.0, 2.0]
    (g,) = fg.grad([x.sum(), x * 3], x, grad_outputs=[2.0, np.ones(2)])
    assert g.tolist() == [5.0, 5.0]


def test_grad_of_output_wrt_itself_and_root_leaf():
    x = t64([1.0, 2.0], True)
    y = x * 3
    (gy,) = fg.grad(y.sum(), [y])
    assert gy.tolist() == [1.0, 1.0]
    (gx,) = fg.grad(x.sum(), x)
    assert gx.tolist() == [1.0, 1.0]


def test_grad_wrt_a_root_that_is_also_inside_the_graph():
    x = t64([1.0, 2.0], True)
    y = x.exp()
    (g,) = fg.grad([y.sum(), (y * y).sum()], y)
    xt = th([1.0, 2.0], True)
    yt = xt.exp()
    (gt,) = torch.autograd.grad([yt.sum(), (yt * yt).sum()], yt)
    close(g, gt)


def test_allow_unused_gives_none():
    x, u = t64([1.0, 2.0], True), t64([3.0], True)
    gx, gu = fg.grad((x * x).sum(), [x, u], allow_unused=True)
    assert gu is None
    assert gx.tolist() == [2.0, 4.0]


def test_grad_only_runs_needed_vjp_slots(monkeypatch):
    calls = []
    inner = O.MATMUL.vjp

    def counting(n, g, i):
        calls.append(i)
        return inner(n, g, i)

    monkeypatch.setattr(O.MATMUL, "vjp", counting)
    a, b = t64(XA, True), t64(WA, True)
    loss = (a @ b).sum()
    (gb,) = fg.grad(loss, b, retain_graph=True)
    assert calls == [1]
    calls.clear()
    (ga,) = fg.grad(loss, a, retain_graph=True)
    assert calls == [0]
    calls.clear()
    loss.backward()
    assert sorted(calls) == [0, 1]
    close(ga, a.grad)
    close(gb, b.grad)


def test_grad_skips_branches_that_do_not_lead_to_the_input(monkeypatch):
    ran = []
    inner = O.EXP.vjp
    monkeypatch.setattr(O.EXP, "vjp", lambda n, g, i: ran.append(1) or inner(n, g, i))
    x, y = t64([1.0], True), t64([2.0], True)
    loss = (x.exp() + y * 2).sum()
    (gy,) = fg.grad(loss, y)
    assert ran == []
    assert gy.tolist() == [2.0]


def test_failed_backward_accumulates_nothing_and_restores_state():
    a = t64([1.0, 2.0], True)
    b = t64([3.0, 4.0], True)
    w = t64([5.0, 6.0], True)
    loss = (a * 2).sum() + (b * w).sum()
    with fg.no_grad():
        w.add_(1)
    with pytest.raises(RuntimeError, match="in place"):
        loss.backward(create_graph=True)
    assert a.grad is None and b.grad is None and w.grad is None
    assert fg.is_grad_enabled()
    with fg.no_grad():
        with pytest.raises(RuntimeError, match="in place"):
            loss.backward(create_graph=True)
        assert not fg.is_grad_enabled()


def test_grad_inside_no_grad_still_works():
    x = t64([1.0, 2.0], True)
    y = (x ** 3).sum()
    with fg.no_grad():
        (g,) = fg.grad(y, x)
    assert g.tolist() == [3.0, 12.0]


def test_non_scalar_backward_with_gradient_matches_torch():
    x = t64(XA, True)
    v = RNG.standard_normal((3, 4))
    (x.sin() * x).backward(t64(v))
    xt = th(XA, True)
    (xt.sin() * xt).backward(th(v))
    close(x.grad, xt.grad)


def test_broadcast_gradients_reduce_to_input_shapes():
    a = t64(RNG.standard_normal((3, 1, 4)), True)
    b = t64(RNG.standard_normal((5, 1)), True)
    c = t64(2.0, True)
    ((a * b + c) ** 2).sum().backward()
    at, bt, ct = th(a.detach().numpy(), True), th(b.detach().numpy(), True), th(2.0, True)
    ((at * bt + ct) ** 2).sum().backward()
    close(a.grad, at.grad)
    close(b.grad, bt.grad)
    close(c.grad, ct.grad)


# ---------------------------------------------------------------- grad modes

def test_no_grad_context_and_nesting():
    x = fg.ones(2, requires_grad=True)
    with fg.no_grad():
        assert not fg.is_grad_enabled()
        assert not (x * 2).requires_grad
        with fg.enable_grad():
            assert fg.is_grad_enabled()
            assert (x * 2).requires_grad
            with fg.no_grad():
                assert not (x * 2).requires_grad
            assert fg.is_grad_enabled()
        assert not fg.is_grad_enabled()
    assert fg.is_grad_enabled()
    assert (x * 2).requires_grad


def test_grad_mode_restored_after_exception():
    with pytest.raises(ZeroDivisionError), fg.no_grad():
        _ = 1 / 0
    assert fg.is_grad_enabled()


def test_grad_mode_decorators():
    x = fg.ones(2, requires_grad=True)

    @fg.no_grad()
    def f_no():
        return x * 2

    @fg.no_grad
    def f_bare():
        return x * 2

    @fg.enable_grad()
    def f_yes():
        return x * 2

    @fg.set_grad_enabled(False)
    def f_set():
        return x * 2

    assert fg.is_grad_enabled()  # decorating switches nothing
    assert not f_no().requires_grad
    assert not f_bare().requires_grad
    assert not f_set().requires_grad
    with fg.no_grad():
        assert f_yes().requires_grad
    assert f_no.__name__ == "f_no"
    assert fg.is_grad_enabled()


def test_decorated_recursion_nests():
    x = fg.ones(1, requires_grad=True)
    seen = []

    @fg.no_grad()
    def rec(k):
        seen.append(fg.is_grad_enabled())
        if k:
            rec(k - 1)
        return x * 2

    assert not rec(3).requires_grad
    assert seen == [False] * 4 and fg.is_grad_enabled()


def test_set_grad_enabled_as_context_and_call():
    x = fg.ones(2, requires_grad=True)
    with fg.set_grad_enabled(False):
        assert not (x * 2).requires_grad
        with fg.set_grad_enabled(True):
            assert (x * 2).requires_grad
        assert not fg.is_grad_enabled()
    assert fg.is_grad_enabled()
    try:
        fg.set_grad_enabled(False)  # as a plain call it switches the mode, like torch
        assert not fg.is_grad_enabled()
        assert not (x * 2).requires_grad
    finally:
        fg.set_grad_enabled(True)
    assert fg.is_grad_enabled()


def test_same_no_grad_object_reentered():
    ng = fg.no_grad()
    with ng:
        with ng:
            assert not fg.is_grad_enabled()
        assert not fg.is_grad_enabled()
    assert fg.is_grad_enabled()


# ---------------------------------------------------------------- Tensor API basics

def test_tensor_dtype_rules():
    assert fg.tensor(1.5).dtype == np.float32
    assert fg.tensor([1.0, 2.0]).dtype == np.float32
    assert fg.tensor([1, 2]).dtype == np.int64
    assert fg.tensor(3).dtype == np.int64
    assert fg.tensor([1, 2.5]).dtype == np.float32
    assert fg.tensor([True, False]).dtype == np.bool_
    for dt in (np.float64, np.float16, np.int32, np.uint8):
        assert fg.tensor(np.zeros(2, dtype=dt)).dtype == dt
    assert fg.tensor([1, 2], dtype=fg.float64).dtype == np.float64
    assert fg.tensor([1, 2], dtype="float32").dtype == np.float32


def test_tensor_copies_but_from_numpy_shares():
    a = np.array([1.0, 2.0])
    t = fg.tensor(a)
    s = fg.from_numpy(a)
    a[0] = 9.0
    assert t.tolist() == [1.0, 2.0]
    assert s.tolist() == [9.0, 2.0]
    assert s.dtype == np.float64
    s.numpy()[1] = 7.0
    assert a[1] == 7.0


def test_factories():
    assert fg.zeros(2, 3).shape == (2, 3) and fg.zeros(2, 3).dtype == np.float32
    assert fg.zeros((2, 3)).shape == (2, 3)
    assert fg.ones(4).tolist() == [1.0] * 4
    assert fg.full((2,), 7).dtype == np.int64
    assert fg.full((2,), 7.0).tolist() == [7.0, 7.0]
    assert fg.empty(3, dtype=F64).dtype == np.float64
    assert fg.arange(5).tolist() == [0, 1, 2, 3, 4] and fg.arange(5).dtype == np.int64
    assert fg.arange(0, 1, 0.25).tolist() == [0.0, 0.25, 0.5, 0.75]
    close(fg.linspace(0, 1, 5), torch.linspace(0, 1, 5, dtype=torch.float32).numpy())
    assert fg.eye(3).tolist() == np.eye(3).tolist()
    assert fg.eye(2, 3).shape == (2, 3)
    r = fg.rand(100)
    assert r.dtype == np.float32 and 0 <= r.numpy().min() and r.numpy().max() < 1
    assert fg.randn(2, 3, dtype=F64).dtype == np.float64
    ri = fg.randint(0, 10, (50,))
    assert ri.dtype == np.int64 and ri.numpy().min() >= 0 and ri.numpy().max() < 10
    x = fg.ones(2, 3, dtype=F64)
    for like in (fg.zeros_like, fg.ones_like, fg.empty_like, fg.rand_like, fg.randn_like):
        y = like(x)
        assert y.shape == (2, 3) and y.dtype == np.float64
    assert fg.full_like(x, 4.0).tolist() == [[4.0] * 3] * 2
    assert fg.randint_like(x, 0, 3).shape == (2, 3)
    assert fg.zeros(2, requires_grad=True).requires_grad


def test_manual_seed_reproducibility():
    fg.manual_seed(123)
    a = (fg.rand(3), fg.randn(3), fg.randint(0, 100, (3,)))
    fg.manual_seed(123)
    b = (fg.rand(3), fg.randn(3), fg.randint(0, 100, (3,)))
    for u, v in zip(a, b, strict=True):
        assert u.tolist() == v.tolist()
    fg.manual_seed(124)
    assert fg.rand(3).tolist() != a[0].tolist()


def test_attributes():
    x = fg.ones(2, 3, requires_grad=True)
    assert x.shape == (2, 3) and x.ndim == 2 and x.dim() == 2 and x.dtype == np.float32
    assert x.T.shape == (3, 2) and x.is_leaf and x.requires_grad and x.grad is None
    assert x.size() == (2, 3) and x.size(1) == 3 and x.numel() == 6
    y = x * 2
    assert not y.is_leaf and y.requires_grad and y.grad_fn is not None
    assert y.grad_fn.name() == "mul"


def test_conversions():
    x = fg.tensor([[1.0, 2.0]], requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        x.numpy()
    d = x.detach()
    assert not d.requires_grad and d.is_leaf and np.shares_memory(d.numpy(), x.detach().numpy())
    assert x.tolist() == [[1.0, 2.0]]
    assert fg.tensor([2.5]).item() == 2.5
    assert isinstance(fg.tensor(3).item(), int)
    assert np.asarray(fg.tensor([1.0, 2.0])).tolist() == [1.0, 2.0]
    assert np.asarray(fg.tensor([1.0]), dtype=np.float64).dtype == np.float64
    z = fg.zeros(2)
    assert z.requires_grad_() is z and z.requires_grad
    z.requires_grad_(False)
    assert not z.requires_grad


def test_np_array_copies_but_asarray_shares():
    t = fg.tensor([1.0, 2.0])
    assert np.shares_memory(np.asarray(t), t.numpy())
    a = np.array(t)
    a[0] = 99.0
    assert t.tolist() == [1.0, 2.0]


def test_repr_shows_values_and_grad_fn():
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    assert repr(x) == "tensor([1., 2.], requires_grad=True)"
    r = repr(x * 3)
    assert "3., 6." in r and "grad_fn=<MulBackward>" in r
    assert repr(fg.tensor([1, 2])) == "tensor([1, 2])"
    assert "dtype=float64" in repr(fg.zeros(1, dtype=F64))


def test_dim_axis_and_keepdim_aliases():
    a = RNG.standard_normal((2, 3))
    x = t64(a)
    close(x.sum(dim=1), a.sum(axis=1))
    close(x.sum(axis=1), a.sum(axis=1))
    close(x.sum(1, keepdim=True), a.sum(axis=1, keepdims=True))
    close(x.sum(axis=1, keepdims=True), a.sum(axis=1, keepdims=True))
    close(x.mean(dim=(0, 1)), a.mean())
    close(x.amax(axis=0, keepdims=True), a.max(axis=0, keepdims=True))
    close(x.cumsum(axis=1), np.cumsum(a, axis=1))
    with pytest.raises(TypeError, match="dim or axis"):
        x.sum(dim=0, axis=1)


@pytest.mark.parametrize("method", ["softmax", "log_softmax"])
def test_softmax_accepts_axis(method):
    a = RNG.standard_normal((2, 3))
    close(getattr(t64(a), method)(axis=0), getattr(torch, method)(th(a), dim=0))


def test_relu_backward_zeroes_masked_inf_and_nan_like_torch():
    torch = pytest.importorskip("torch")
    data = [-1.0, 2.0, -3.0, 0.0, 4.0, -5.0]
    upstream = [np.inf, np.inf, np.nan, 1.0, -2.0, -7.0]
    x = fg.tensor(data, requires_grad=True)
    x.relu().backward(fg.tensor(upstream))
    tx = torch.tensor(data, requires_grad=True)
    tx.relu().backward(torch.tensor(upstream))
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())
    assert not np.signbit(x.grad.numpy()[[0, 2, 3, 5]]).any()  # +0.0, never -0.0


def test_where_with_zero_keeps_values_and_gives_positive_zero():
    v = np.array([[-1.5, np.inf], [np.nan, -0.0]], dtype=np.float32)
    keep = np.array([[False, True], [False, True]])
    got = fg.where(fg.tensor(keep), fg.tensor(v), 0.0).numpy()
    np.testing.assert_array_equal(got, np.where(keep, v, 0))
    assert got.dtype == np.float32 and not np.signbit(got[0, 0])


@pytest.mark.filterwarnings("error")
def test_softmax_of_an_all_masked_row_is_nan_silently_like_torch():
    x = np.array([[-np.inf, -np.inf], [0.0, 1.0]], dtype=np.float32)
    got = fg.tensor(x).softmax(-1).numpy()
    got_log = fg.tensor(x).log_softmax(-1).numpy()
    np.testing.assert_allclose(got, torch.tensor(x).softmax(-1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(got_log, torch.tensor(x).log_softmax(-1).numpy(), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scaled_inplace_add_matches_torch(dtype):
    rng = np.random.default_rng(0)
    a, b = rng.random((4, 5)).astype(dtype), rng.random((4, 5)).astype(dtype)
    want = torch.tensor(a).add_(torch.tensor(b), alpha=-0.3).numpy()
    np.testing.assert_allclose(fg.tensor(a).add_(fg.tensor(b), alpha=-0.3).numpy(), want,
                               rtol=1e-6, atol=1e-7)
    strided = fg.tensor(rng.random((5, 4)).astype(dtype)).T  # not contiguous
    want = torch.tensor(a).sub_(torch.tensor(strided.numpy()), alpha=2.0).numpy()
    np.testing.assert_allclose(fg.tensor(a).sub_(strided, alpha=2.0).numpy(), want, rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_allclose(fg.tensor(a).add_(1.5, alpha=2.0).numpy(), a + 3.0, rtol=1e-6)


def test_layer_norm_graph_has_no_reference_cycles_under_create_graph():
    x = fg.tensor(np.linspace(-1.0, 1.0, 8).reshape(2, 4), requires_grad=True)
    _assert_create_graph_frees_without_gc(lambda z: fg.nn.functional.layer_norm(z, (4,)),
                                          lambda y: (y * y * y).sum(), x)

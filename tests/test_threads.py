"""Engine modes are per thread, as PyTorch's grad mode is: one thread's no_grad, profile,
scope, phase or meta never changes what another thread's ops do or where they are billed."""

import threading

import numpy as np

import flopgrad as fg
from flopgrad.dispatch import Mode, mode, override


def _in_threads(*bodies, timeout=30):
    """Run each body in its own thread, all of them inside each other's modes (a barrier
    makes them overlap), and re-raise the first failure."""
    barrier = threading.Barrier(len(bodies))
    errors = []

    def run(body):
        try:
            body(barrier)
        except BaseException as err:  # noqa: BLE001 - reported in the main thread
            errors.append(err)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a thread hung"
    if errors:
        raise errors[0]


def test_no_grad_in_one_thread_does_not_stop_training_in_another():
    steps_ok = []

    def evaluator(barrier):
        with fg.no_grad():
            barrier.wait()  # the trainer runs while this thread sits in no_grad
            barrier.wait()
            assert not fg.is_grad_enabled()

    def trainer(barrier):
        barrier.wait()
        w = fg.randn(4, 3, requires_grad=True)
        for _ in range(20):
            loss = (fg.ones(2, 4) @ w).sum()
            assert loss.requires_grad
            loss.backward()
            steps_ok.append(w.grad is not None)
        barrier.wait()

    _in_threads(evaluator, trainer)
    assert steps_ok == [True] * 20


def test_each_thread_profile_bills_only_its_own_ops():
    bills = {}

    def worker(n):
        def body(barrier):
            a = fg.ones(n, n)
            with fg.profile() as bill:
                barrier.wait()
                for _ in range(10):
                    _ = a @ a
                barrier.wait()
            bills[n] = bill.flops(kind="tensor")
        return body

    _in_threads(worker(8), worker(16))
    assert bills == {8: 10 * 2 * 8 ** 3, 16: 10 * 2 * 16 ** 3}


def test_meta_scope_and_phase_stay_in_their_thread():
    seen = {}

    def meta_thread(barrier):
        with fg.meta(), fg.scope("outer"), fg.phase("optimizer"):
            barrier.wait()
            seen["meta"] = fg.zeros(3).is_meta
            barrier.wait()

    def real_thread(barrier):
        barrier.wait()
        with fg.profile() as bill:
            x = fg.zeros(3)
            _ = x + 1
        seen["real"] = x.is_meta
        seen["scopes"] = {r["scope"] for r in bill.event_rows()}
        seen["phases"] = {r["phase"] for r in bill.event_rows()}
        barrier.wait()

    _in_threads(meta_thread, real_thread)
    assert seen["meta"] is True and seen["real"] is False
    assert seen["scopes"] == {""} and seen["phases"] == {"forward"}


def test_a_new_thread_starts_with_the_default_mode_whatever_the_parent_set():
    got = {}
    with fg.no_grad(), fg.meta():
        t = threading.Thread(target=lambda: got.update(
            grad=fg.is_grad_enabled(), meta=fg.zeros(1).is_meta))
        t.start()
        t.join(10)
    assert got == {"grad": True, "meta": False}


def test_meta_tensors_made_in_one_thread_run_as_meta_in_another():
    with fg.meta():
        w = fg.randn(1000, 1000)
    out = {}
    t = threading.Thread(target=lambda: out.update(y=(w @ w).is_meta))
    t.start()
    t.join(10)
    assert out == {"y": True}


def test_override_restores_and_rejects_unknown_fields():
    before = repr(mode())
    with override(grad_enabled=False, phase="optimizer"):
        assert mode().grad_enabled is False and mode().phase == "optimizer"
        with override(grad_enabled=True):
            assert mode().grad_enabled is True
        assert mode().grad_enabled is False
    assert repr(mode()) == before
    try:
        override(grad=False)
    except TypeError as err:
        assert "grad" in str(err) and "grad_enabled" in str(err)
    else:
        raise AssertionError("an unknown mode field was accepted")
    assert set(Mode.__slots__) >= {"grad_enabled", "meta", "listeners", "phase", "scope"}


def test_override_as_decorator_nests_in_recursion_and_restores_after_errors():
    @override(grad_enabled=False)
    def depth(n):
        assert not fg.is_grad_enabled()
        if n:
            return depth(n - 1)
        raise KeyError("bottom")

    try:
        depth(5)
    except KeyError:
        pass
    assert fg.is_grad_enabled()

    @fg.scope("blk")
    def layer(x):
        return x * 2

    with fg.profile() as bill, fg.scope("model"):
        layer(fg.ones(3))
        layer(fg.ones(3))
    assert {r["scope"] for r in bill.event_rows()} == {"model.blk"}


def test_threads_training_concurrently_get_their_own_exact_gradients():
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((5, 4)) for _ in range(4)]
    grads = {}

    def worker(k):
        def body(barrier):
            w = fg.tensor(np.ones((4, 2)), requires_grad=True)
            barrier.wait()
            with fg.profile():
                for _ in range(50):
                    w.grad = None
                    ((fg.tensor(xs[k]) @ w) ** 2).sum().backward()
            grads[k] = w.grad.numpy()
        return body

    _in_threads(*(worker(k) for k in range(4)))
    for k in range(4):
        expected = 2 * xs[k].T @ (xs[k] @ np.ones((4, 2)))
        np.testing.assert_allclose(grads[k], expected, rtol=1e-12)

"""fg.amp.GradScaler against torch.amp.GradScaler("cpu"): scripted training runs with inf and
NaN injected into chosen steps give the same scale after every update, skip the same steps
and leave the same weights; the documented unscale_ / clip / step pattern; torch's errors;
enabled=False; state_dict round trips.

Each run is one program written against a small namespace (`FG` or `TORCH`), so both
libraries execute the same steps on the same float values. Gradients are x * scale (exact for
the scales used) and the learning rate is a power of two: every product is exact, so the
weights are compared bit for bit (with lr=0.1, torch's add_(alpha=) rounds once where
flopgrad's small-tensor SGD rounds twice: 1 ulp apart, not the scaler's doing).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import flopgrad as fg
from flopgrad.amp.grad_scaler import OptState

# overflowing gradients are the point here: NumPy's warnings about them are expected
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                                        "ignore:invalid value encountered:RuntimeWarning")

FG = SimpleNamespace(
    name="flopgrad", tensor=lambda a: fg.tensor(np.array(a)), Parameter=fg.nn.Parameter,
    SGD=fg.optim.SGD, scaler=lambda **kw: fg.amp.GradScaler(**kw),
    clip=fg.nn.utils.clip_grad_norm_, float16=fg.float16, float32=fg.float32,
    numpy=lambda t: np.array(t.detach()._data))
TORCH = SimpleNamespace(
    name="torch", tensor=lambda a: torch.from_numpy(np.array(a)), Parameter=torch.nn.Parameter,
    SGD=torch.optim.SGD, scaler=lambda **kw: torch.amp.GradScaler("cpu", **kw),
    clip=torch.nn.utils.clip_grad_norm_, float16=torch.float16, float32=torch.float32,
    numpy=lambda t: t.detach().numpy().copy())

INF, NAN = math.inf, math.nan


def _values(dtype, steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    w0 = [rng.standard_normal((2, 3)).astype(dtype), rng.standard_normal(3).astype(dtype)]
    xs = [rng.standard_normal((2, 3)).astype(dtype) for _ in range(steps)]
    return w0, xs


def run(lib, steps: int = 14, bad: dict | None = None, dtype=np.float32, groups=((0, 1),),
        lr: float = 0.125, half_forward: bool = False, clip: float | None = None,
        edit=None, **scaler_kw) -> list[dict]:
    """A scripted run: per step, loss = sum(w * x) + sum(b * b) (w * x in float16 when
    half_forward), scaled and backpropagated; bad[step] = (param, flat index, value) put into
    that gradient; optionally unscale_ then clip_grad_norm_; step each optimizer, update.
    edit(step, scaler) may change settings before a step. Returns one record per step."""
    w0, xs = _values(dtype, steps)
    params = [lib.Parameter(lib.tensor(w)) for w in w0]
    opts = [lib.SGD([params[i] for i in g], lr=lr) for g in groups]
    scaler = lib.scaler(**scaler_kw)
    records = []
    for step in range(steps):
        if edit is not None:
            edit(step, scaler)
        for opt in opts:
            opt.zero_grad()
        w, b = params
        x = lib.tensor(xs[step])
        prod = (w.to(lib.float16) * x.to(lib.float16)).to(lib.float32) if half_forward \
            else w * x
        scaler.scale(prod.sum() + (b * b).sum()).backward()
        if bad and step in bad:
            which, index, value = bad[step]
            grad = params[which].grad
            grad.view(-1)[index] = value
        before = [lib.numpy(p) for p in params]
        if clip is not None:
            for opt in opts:
                scaler.unscale_(opt)
            lib.clip(params, clip)
        returned = [scaler.step(opt) for opt in opts]
        scaler.update()
        after = [lib.numpy(p) for p in params]
        records.append({
            "scale": scaler.get_scale(), "state": scaler.state_dict(), "returned": returned,
            "skipped": [all(np.array_equal(before[i], after[i]) for i in g) for g in groups],
            "weights": after})
    return records


def assert_same_runs(ours: list[dict], theirs: list[dict], exact: bool = True) -> None:
    assert len(ours) == len(theirs)
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        where = f"step {step}"
        assert a["scale"] == b["scale"], where
        assert a["state"] == b["state"], where
        assert a["skipped"] == b["skipped"], where
        assert a["returned"] == b["returned"], where
        for wa, wb in zip(a["weights"], b["weights"], strict=True):
            assert wa.dtype == wb.dtype, where
            if exact:
                np.testing.assert_array_equal(wa, wb, err_msg=where)
            else:
                np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7, err_msg=where)


def both(**kw) -> tuple[list[dict], list[dict]]:
    return run(FG, **kw), run(TORCH, **kw)


BAD_3_4_10 = {3: (0, 1, INF), 4: (1, 2, NAN), 10: (0, 5, -INF)}

SEQUENCES = {
    "defaults, inf/nan at 3, 4, 10": dict(bad=BAD_3_4_10),
    "growth_interval=3, inf/nan at 3, 4, 10": dict(bad=BAD_3_4_10, growth_interval=3,
                                                     steps=16),
    "growth_interval=1, clean": dict(growth_interval=1, steps=6),
    "odd factors (1000, x3, x0.3, every 2)": dict(
        bad={0: (0, 0, INF), 5: (1, 0, NAN), 6: (0, 3, INF)}, init_scale=1000.0,
        growth_factor=3.0, backoff_factor=0.3, growth_interval=2, steps=12),
    "float64 params, growth_interval=3": dict(bad=BAD_3_4_10, dtype=np.float64,
                                              growth_interval=3, steps=12),
    "gradients overflow float32 (2**127, every step)": dict(init_scale=2.0 ** 127,
                                                            growth_interval=1, steps=8),
    "float16 forward overflows at 2**16": dict(half_forward=True, growth_interval=3,
                                                bad={6: (1, 0, INF)}, steps=10),
    "two optimizers, one overflows": dict(groups=((0,), (1,)), growth_interval=3,
                                          bad={2: (1, 0, INF), 7: (0, 4, NAN)}, steps=10),
}


@pytest.mark.parametrize("kw", SEQUENCES.values(), ids=SEQUENCES.keys())
def test_scale_skips_and_weights_match_torch_step_by_step(kw):
    ours, theirs = both(**kw)
    assert_same_runs(ours, theirs)


def test_the_sequences_do_what_they_say():
    """The scripted runs exercise backoff, growth and skipping (not a vacuous match)."""
    runs = {k: run(FG, **kw) for k, kw in SEQUENCES.items()}
    skipped = {k: [s for s, r in enumerate(rs) if any(r["skipped"])] for k, rs in runs.items()}
    assert skipped["defaults, inf/nan at 3, 4, 10"] == [3, 4, 10]
    assert skipped["growth_interval=3, inf/nan at 3, 4, 10"] == [3, 4, 10]
    scales = [r["scale"] for r in runs["growth_interval=3, inf/nan at 3, 4, 10"]]
    assert scales[:6] == [65536.0, 65536.0, 131072.0, 65536.0, 32768.0, 32768.0]
    assert [r["scale"] for r in runs["defaults, inf/nan at 3, 4, 10"]][-1] == 2.0 ** 13
    assert skipped["float16 forward overflows at 2**16"][:1] == [0]  # 65536 is inf in fp16
    overflow = [r["scale"] for r in runs["gradients overflow float32 (2**127, every step)"]]
    assert overflow[:3] == [2.0 ** 126, 2.0 ** 127, 2.0 ** 127]  # 2**128 is inf: not grown
    two = runs["two optimizers, one overflows"]
    assert two[2]["skipped"] == [False, True] and two[7]["skipped"] == [True, False]
    assert two[2]["returned"] == [None, None]


def test_unscale_then_clip_then_step_matches_torch():
    """The documented pattern: unscale_, clip_grad_norm_ on true gradients, step, update
    (the clipping norm is summed in another order than torch's: weights to 1e-6)."""
    kw = dict(clip=0.5, bad=BAD_3_4_10, growth_interval=3, steps=12)
    ours, theirs = both(**kw)
    assert_same_runs(ours, theirs, exact=False)
    assert [s for s, r in enumerate(ours) if r["skipped"][0]] == [3, 4, 10]


def test_unscale_divides_the_grads_in_place_and_bills_them_as_optimizer_work():
    w = fg.nn.Parameter(fg.ones(4, 5))
    opt, scaler = fg.optim.SGD([w], lr=0.5), fg.amp.GradScaler(init_scale=1024.0)
    with fg.profile() as bill:
        scaler.scale(w.sum()).backward()
        grad = w.grad
        scaler.unscale_(opt)
    assert w.grad is grad and w.grad.tolist() == [[1.0] * 5] * 4
    assert bill.flops("optimizer", scope="grad_scaler") == 20
    assert bill.flops("forward", op="mul") == 1  # the scale's multiply: one scalar op
    scaler.step(opt)
    assert w.tolist() == [[0.5] * 5] * 4


def test_a_read_only_gradient_is_unscaled_into_its_own_copy():
    w = fg.nn.Parameter(fg.zeros(3))
    opt, scaler = fg.optim.SGD([w], lr=1.0), fg.amp.GradScaler(init_scale=4.0)
    scaler.scale(w.sum())
    w.grad = fg.full((1,), 8.0).expand(3)  # a broadcast view: not writable
    scaler.step(opt)
    assert w.grad.tolist() == [2.0] * 3 and w.tolist() == [-2.0] * 3


def test_meta_gradients_count_as_finite():
    with fg.meta():
        w = fg.nn.Parameter(fg.ones(3, 4))
    opt, scaler = fg.optim.SGD([w], lr=0.1), fg.amp.GradScaler(growth_interval=1)
    with fg.profile() as bill:
        scaler.scale((w * w).sum()).backward()
        scaler.step(opt)
        scaler.update()
    assert scaler.get_scale() == 2.0 ** 17  # a clean step: grown
    assert bill.flops("optimizer", scope="grad_scaler") == 12
    assert bill.flops("optimizer", scope="optimizer") > 0  # the step ran


def test_scale_of_nested_outputs_keeps_their_containers_like_torch():
    ours, theirs = FG.scaler(init_scale=1024.0), TORCH.scaler(init_scale=1024.0)
    data = [np.array([1.5, -2.0], np.float32), np.array([3.0], np.float16)]
    a = ours.scale((FG.tensor(data[0]), [FG.tensor(data[1]), (FG.tensor(data[0]),)]))
    b = theirs.scale((TORCH.tensor(data[0]), [TORCH.tensor(data[1]), (TORCH.tensor(data[0]),)]))
    assert type(a) is tuple and type(a[1]) is list and type(a[1][1]) is tuple
    for x, y in [(a[0], b[0]), (a[1][0], b[1][0]), (a[1][1][0], b[1][1][0])]:
        assert np.array_equal(FG.numpy(x), TORCH.numpy(y))
        assert FG.numpy(x).dtype == TORCH.numpy(y).dtype
    lazy = ours.scale(t for t in [FG.tensor(data[0])])
    assert isinstance(lazy, map) and next(lazy).tolist() == [1536.0, -2048.0]
    assert ours.scale([]) == [] and ours.scale(()) == ()


def test_scale_is_differentiated_and_billed_as_an_ordinary_multiply():
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    scaler = fg.amp.GradScaler(init_scale=8.0)
    with fg.profile() as bill:
        scaler.scale(x).sum().backward()
    assert x.grad.tolist() == [8.0, 8.0]
    assert bill.flops("forward", op="mul") == 2 and bill.flops("backward", op="mul") == 2


# ---------------------------------------------------------------- errors, as torch's

def _one_step(lib, scaler):
    w = lib.Parameter(lib.tensor(np.ones(3, np.float32)))
    opt = lib.SGD([w], lr=0.125)
    scaler.scale(w.sum()).backward()
    return w, opt


def _same_error(fg_fn, torch_fn, same_message: bool = True):
    with pytest.raises(Exception) as ours:
        fg_fn()
    with pytest.raises(Exception) as theirs:
        torch_fn()
    assert type(ours.value) is type(theirs.value)
    if same_message:
        assert str(ours.value) == str(theirs.value)
    return ours.value


def _in_state(lib, how):
    """A scaler and optimizer after one step's backward and `how`'s calls."""
    scaler = lib.scaler()
    w, opt = _one_step(lib, scaler)
    how(scaler, opt)
    return scaler, opt, w


ERRORS = {
    "unscale_ twice": (lambda s, o: s.unscale_(o), lambda s, o, w: s.unscale_(o)),
    "unscale_ after step": (lambda s, o: s.step(o), lambda s, o, w: s.unscale_(o)),
    "step after step without update": (lambda s, o: s.step(o), lambda s, o, w: s.step(o)),
    "step with a closure": (lambda s, o: None, lambda s, o, w: s.step(o, closure=None)),
    "update before any step": (lambda s, o: None, lambda s, o, w: s.update()),
    "step with no gradients": (lambda s, o: o.zero_grad(), lambda s, o, w: s.step(o)),
    "new_scale that requires grad": (
        lambda s, o: s.step(o), lambda s, o, w: s.update(new_scale=w.sum())),
}


@pytest.mark.parametrize("how, call", ERRORS.values(), ids=ERRORS.keys())
def test_misuse_raises_torchs_error(how, call):
    def attempt(lib):
        scaler, opt, w = _in_state(lib, how)
        return lambda: call(scaler, opt, w)
    _same_error(attempt(FG), attempt(TORCH), same_message=not _new_scale_case(call))


def _new_scale_case(call) -> bool:
    """torch's new_scale message names torch.cuda.FloatTensor: flopgrad's says Tensor."""
    return call is ERRORS["new_scale that requires grad"][1]


def test_unscale_twice_names_the_problem():
    scaler, opt, _ = _in_state(FG, lambda s, o: s.unscale_(o))
    with pytest.raises(RuntimeError, match=r"unscale_\(\) has already been called on this "
                                           r"optimizer since the last update\(\)"):
        scaler.unscale_(opt)
    scaler.step(opt)
    scaler.update()
    scaler.unscale_(opt)  # a new iteration: allowed again


@pytest.mark.parametrize("method", ["step", "unscale_", "update"])
def test_calls_before_the_first_scale_raise_torchs_error(method):
    def attempt(lib):
        w = lib.Parameter(lib.tensor(np.ones(2, np.float32)))
        opt, scaler = lib.SGD([w], lr=0.1), lib.scaler()
        return lambda: getattr(scaler, method)(*(() if method == "update" else (opt,)))
    _same_error(attempt(FG), attempt(TORCH))


@pytest.mark.parametrize("kw", [dict(growth_factor=1.0), dict(growth_factor=0.5),
                                dict(backoff_factor=1.0), dict(backoff_factor=2.0)])
def test_bad_constructor_arguments_raise_torchs_error(kw):
    _same_error(lambda: FG.scaler(**kw), lambda: TORCH.scaler(**kw))
    FG.scaler(enabled=False, **kw)  # as torch: a disabled scaler checks nothing
    TORCH.scaler(enabled=False, **kw)


def test_a_device_string_is_refused_with_a_hint():
    with pytest.raises(TypeError, match="takes no device argument"):
        fg.amp.GradScaler("cuda")


def test_scale_of_a_non_tensor_and_fp16_gradients_raise_torchs_errors():
    _same_error(lambda: FG.scaler().scale(3.0), lambda: TORCH.scaler().scale(3.0))

    def fp16(lib):
        scaler = lib.scaler()
        w = lib.Parameter(lib.tensor(np.ones(2, np.float16)))
        opt = lib.SGD([w], lr=0.1)
        scaler.scale(w.sum()).backward()
        return lambda: scaler.step(opt)
    _same_error(fp16(FG), fp16(TORCH))


def test_state_tracks_each_optimizer_and_update_resets_it():
    scaler = fg.amp.GradScaler()
    w, opt = _one_step(FG, scaler)
    state = lambda: scaler._per_optimizer_states[id(opt)]["stage"]  # noqa: E731
    scaler.unscale_(opt)
    assert state() is OptState.UNSCALED
    scaler.step(opt)
    assert state() is OptState.STEPPED
    scaler.update()
    assert scaler._per_optimizer_states == {}


# ---------------------------------------------------------------- update(new_scale), settings

@pytest.mark.parametrize("ours, theirs", [(512.0, 512.0), (3, 3.0), ("tensor", "tensor")])
def test_update_with_new_scale_matches_torch(ours, theirs):
    """new_scale replaces the scale and leaves the growth tracker alone (torch takes only a
    float or a tensor: an int fails on .device there; flopgrad takes an int as its float)."""
    def go(lib, new_scale):
        scaler = lib.scaler(growth_interval=3)
        sds = []
        for step in range(4):
            w, opt = _one_step(lib, scaler)
            scaler.step(opt)
            value = lib.tensor(np.float32(256.0)) if new_scale == "tensor" else new_scale
            scaler.update(value if step == 1 else None)
            sds.append(scaler.state_dict())
        return sds
    got = go(FG, ours)
    assert got == go(TORCH, theirs)
    assert got[2]["_growth_tracker"] == 2 and got[3]["scale"] == 2 * got[1]["scale"]


def test_settings_changed_midway_match_torch():
    """set_growth_interval below the count of clean steps: as torch, the scale does not grow
    until a backoff resets the count; set_growth_factor / set_backoff_factor apply next."""
    def edit(step, scaler):
        if step == 2:
            scaler.set_growth_interval(1)
        if step == 6:
            scaler.set_growth_factor(4.0)
            scaler.set_backoff_factor(0.25)
    kw = dict(growth_interval=5, bad={4: (0, 0, INF), 9: (1, 1, NAN)}, steps=12, edit=edit)
    ours, theirs = both(**kw)
    assert_same_runs(ours, theirs)
    assert [r["scale"] for r in ours][2:5] == [65536.0, 65536.0, 32768.0]


def test_getters_match_torch():
    kw = dict(init_scale=100.0, growth_factor=3.0, backoff_factor=0.2, growth_interval=7)
    ours, theirs = FG.scaler(**kw), TORCH.scaler(**kw)
    for name in ["get_scale", "get_growth_factor", "get_backoff_factor",
                 "get_growth_interval", "is_enabled", "state_dict"]:
        assert getattr(ours, name)() == getattr(theirs, name)(), name


# ---------------------------------------------------------------- enabled=False

def test_disabled_scaler_passes_everything_through_like_torch():
    def go(lib):
        scaler = lib.scaler(enabled=False)
        w = lib.Parameter(lib.tensor(np.ones(3, np.float32)))
        opt = lib.SGD([w], lr=0.5)
        loss = w.sum()
        assert scaler.scale(loss) is loss
        outputs = [loss]
        assert scaler.scale(outputs) is outputs
        scaler.scale(loss).backward()
        w.grad[0] = INF
        scaler.unscale_(opt)
        grad = lib.numpy(w.grad)
        returned = scaler.step(opt)  # not skipped: a disabled scaler checks nothing
        scaler.update()
        scaler.load_state_dict({})
        return (grad, lib.numpy(w), returned, scaler.get_scale(), scaler.state_dict(),
                scaler.is_enabled())
    ours, theirs = go(FG), go(TORCH)
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_array_equal(ours[1], theirs[1])
    assert ours[2:] == theirs[2:] == (None, 1.0, {}, False)


# ---------------------------------------------------------------- state_dict

def test_state_dict_round_trip_continues_the_same_run():
    bad = {1: (0, 0, INF), 6: (1, 0, NAN)}
    full = run(FG, steps=12, bad=bad, growth_interval=3)
    saved = {}

    def save(step, scaler):
        if step == 5:
            saved.update(scaler.state_dict())
    run(FG, steps=6, bad=bad, growth_interval=3, edit=save)
    assert saved == full[4]["state"]

    def resume(lib):
        def load(step, scaler):
            if step == 0:
                scaler.load_state_dict(dict(saved))
        shifted = {s - 5: v for s, v in bad.items() if s >= 5}
        return [r["scale"] for r in run(lib, steps=7, bad=shifted, edit=load)]
    assert resume(FG) == resume(TORCH) == [r["scale"] for r in full[5:]]


def test_load_state_dict_before_and_after_the_first_scale_like_torch():
    sd = {"scale": 3.3, "growth_factor": 4.0, "backoff_factor": 0.25, "growth_interval": 2,
          "_growth_tracker": 1}

    def go(lib):
        early, late = lib.scaler(), lib.scaler()
        early.load_state_dict(sd)
        before = early.state_dict()  # the loaded float, not yet rounded to float32
        _one_step(lib, late)
        late.load_state_dict(sd)
        return before, late.state_dict(), early.get_scale()
    assert go(FG) == go(TORCH)
    assert go(FG)[0] == sd
    _same_error(lambda: FG.scaler().load_state_dict({}),
                lambda: TORCH.scaler().load_state_dict({}))


def test_a_torch_state_dict_loads_into_flopgrad():
    theirs = run(TORCH, steps=6, bad={2: (0, 0, INF)}, growth_interval=2)[-1]["state"]
    scaler = fg.amp.GradScaler()
    scaler.load_state_dict(theirs)
    assert scaler.state_dict() == theirs


def test_fg_amp_is_importable_from_the_top_level():
    assert fg.amp.GradScaler is fg.amp.grad_scaler.GradScaler
    assert "GradScaler" in fg.amp.__all__

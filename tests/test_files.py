"""fg.save / fg.load and the atomic writes under them: shapes, name clashes, symlinks,
special files, modes, stale temporaries of a killed save, unreadable files."""

from __future__ import annotations

import os

import numpy as np
import pytest

import flopgrad as fg

# ---------------------------------------------------------------- shapes


class Scaled(fg.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = fg.nn.Parameter(fg.tensor(2.0))  # a 0-d parameter
        self.fc = fg.nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x) * self.scale


def test_a_scalar_parameter_and_its_adam_state_round_trip(tmp_path):
    fg.manual_seed(0)
    model = Scaled()
    opt = fg.optim.Adam(model.parameters(), lr=0.1)
    model(fg.randn(4, 3)).sum().backward()
    opt.step()
    path = tmp_path / "ck.safetensors"
    fg.save({"model": model.state_dict(), "opt": opt.state_dict()}, path)
    loaded = fg.load(path)
    assert loaded["model"]["scale"].shape == ()
    state = loaded["opt"]["state"][0]
    assert state["exp_avg"].shape == () and state["exp_avg_sq"].shape == ()
    fresh = Scaled()
    fresh_opt = fg.optim.Adam(fresh.parameters(), lr=0.5)
    fresh.load_state_dict(loaded["model"])
    fresh_opt.load_state_dict(loaded["opt"])
    assert fresh.scale.item() == model.scale.item()
    fresh_opt.state_dict()  # usable: a further step runs on the restored state
    fresh(fg.randn(4, 3)).sum().backward()
    fresh_opt.step()


@pytest.mark.parametrize("shape", [(), (0,), (1,), (2, 0, 3), (1, 1, 1)])
def test_every_shape_round_trips_exactly(tmp_path, shape):
    arr = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    fg.save({"a": fg.tensor(arr), "n": arr.T}, tmp_path / "s.safetensors")
    out = fg.load(tmp_path / "s.safetensors")
    assert out["a"].shape == shape and out["n"].shape == arr.T.shape
    np.testing.assert_array_equal(out["n"].numpy(), arr.T)


def test_a_bare_tensor_and_nested_containers_round_trip(tmp_path):
    fg.save(fg.tensor(3.0), tmp_path / "t.safetensors")
    assert fg.load(tmp_path / "t.safetensors").shape == ()
    obj = {0: [fg.ones(1), (1, "x", None)], "k": {"deep": True}, 7: 2.5}
    fg.save(obj, tmp_path / "o.safetensors")
    out = fg.load(tmp_path / "o.safetensors")
    assert out[0][1] == (1, "x", None) and out["k"] == {"deep": True} and out[7] == 2.5


# ---------------------------------------------------------------- name clashes

@pytest.mark.parametrize("obj,match", [
    ({"a.b": fg.ones(1), "a": {"b": fg.zeros(1)}}, "two tensors would be stored as 'a.b'"),
    ({"a": {"b": fg.zeros(1)}, "a.b": fg.ones(1)}, "two tensors would be stored as 'a.b'"),
    ({"x.0": fg.ones(1), "x": [fg.zeros(1)]}, "'x.0'"),
    ({1: fg.ones(1), "1": fg.zeros(1)}, "keys 1 and '1' would both be stored as '1'"),
    ({"s": {"1": 5, 1: 6}}, r"keys '1' and 1 in 's'"),
    ({"__metadata__": fg.ones(2)}, "'__metadata__': safetensors reserves"),
    ({"": fg.ones(1), "tensor": fg.zeros(1)}, "'tensor'"),
])
def test_every_clash_raises_before_anything_is_written(tmp_path, obj, match):
    path = tmp_path / "w.safetensors"
    fg.save({"old": fg.ones(1)}, path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=match):
        fg.save(obj, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["w.safetensors"]


@pytest.mark.parametrize("key", [True, 1.5, None, (1, 2)])
def test_keys_that_would_not_load_back_are_refused(tmp_path, key):
    with pytest.raises(TypeError, match="dict keys must be str or int"):
        fg.save({"ok": 1, key: 2}, tmp_path / "w.safetensors")
    assert not os.listdir(tmp_path)


def test_int_keys_and_a_metadata_named_subtree_still_round_trip(tmp_path):
    obj = {np.int64(3): fg.ones(1), "__metadata__": {"x": fg.ones(2)}, "m": {"__metadata__": 1}}
    fg.save(obj, tmp_path / "w.safetensors")
    out = fg.load(tmp_path / "w.safetensors")
    assert set(out) == {3, "__metadata__", "m"} and out["__metadata__"]["x"].shape == (2,)

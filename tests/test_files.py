"""fg.save / fg.load and the atomic writes under them: shapes, name clashes, symlinks,
special files, modes, stale temporaries of a killed save, unreadable files."""

from __future__ import annotations

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

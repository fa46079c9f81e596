"""fg.save / fg.load and the atomic writes under them: shapes, name clashes, symlinks,
special files, modes, stale temporaries of a killed save, unreadable files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from safetensors.numpy import save as st_save

import flopgrad as fg
from flopgrad.files import remove_stale_temporaries, write_atomic_bytes
from flopgrad.serialization import FileFormatError

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


# ---------------------------------------------------------------- symlinks, special files

def test_save_writes_through_a_symlink(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "w.safetensors"
    fg.save({"w": fg.zeros(2)}, target)
    link = tmp_path / "link.safetensors"
    link.symlink_to(target)
    fg.save({"w": fg.ones(2)}, link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert fg.load(target)["w"].tolist() == [1.0, 1.0]
    assert sorted(os.listdir(tmp_path / "real")) == ["w.safetensors"]
    assert sorted(os.listdir(tmp_path)) == ["link.safetensors", "real"]


def test_save_through_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.safetensors"
    link.symlink_to("made.safetensors")
    fg.save({"w": fg.ones(1)}, link)
    assert link.is_symlink() and (tmp_path / "made.safetensors").is_file()


def test_a_directory_or_special_file_is_refused(tmp_path):
    with pytest.raises(IsADirectoryError, match="it is a directory"):
        fg.save({"w": fg.ones(1)}, tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="it is a FIFO, not a regular file"):
        fg.save({"w": fg.ones(1)}, fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    to_null = tmp_path / "null.safetensors"
    to_null.symlink_to(os.devnull)
    with pytest.raises(ValueError, match="character device"):
        fg.save({"w": fg.ones(1)}, to_null)
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["null.safetensors", "pipe"]
    with pytest.raises(ValueError, match="empty path"):
        fg.save({"w": fg.ones(1)}, "")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fg.save({"w": fg.ones(1)}, tmp_path / "no" / "w.safetensors")


# ---------------------------------------------------------------- modes

@pytest.fixture
def umask():
    old = os.umask(0o022)
    os.umask(old)

    def set_(mask):
        os.umask(mask)
    yield set_
    os.umask(old)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664),
                                       (0o000, 0o666)])
def test_a_new_file_gets_0666_minus_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    fg.save({"w": fg.ones(1)}, tmp_path / "w.safetensors")
    assert stat.S_IMODE(os.stat(tmp_path / "w.safetensors").st_mode) == mode


def test_a_replaced_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "w.safetensors"
    fg.save({"w": fg.ones(1)}, path)
    os.chmod(path, 0o604)
    fg.save({"w": fg.zeros(1)}, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o604
    assert fg.load(path)["w"].tolist() == [0.0]


# ---------------------------------------------------------------- stale temporaries

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_dead_processes_are_removed_by_the_next_save(tmp_path):
    path = tmp_path / "w.safetensors"
    stale = [f".w.safetensors.flopgrad-tmp-{_dead_pid()}-0123abcd",
             f".w.safetensors.flopgrad-tmp-{os.getpid()}-00ff00ff"]  # ours, not in flight
    kept = [f".w.safetensors.flopgrad-tmp-{os.getppid()}-0123abcd",  # a live writer
            f".other.flopgrad-tmp-{_dead_pid()}-0123abcd",  # another file's
            ".w.safetensors.flopgrad-tmp-notapid", "w.safetensors.bak"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"half")
    fg.save({"w": fg.ones(1)}, path)
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["w.safetensors"])
    assert remove_stale_temporaries(str(tmp_path), "w.safetensors") == []


def test_a_save_killed_mid_write_is_cleaned_up_by_the_next(tmp_path):
    path = tmp_path / "w.safetensors"
    fg.save({"w": fg.zeros(3)}, path)
    child = textwrap.dedent("""
        import os, sys, time
        import flopgrad as fg
        def stall(fd):  # the data is written, not yet renamed: be killed here
            print("writing", flush=True)
            time.sleep(60)
        os.fsync = stall
        fg.save({"w": fg.ones(3)}, sys.argv[1])
    """)
    proc = subprocess.Popen([sys.executable, "-c", child, str(path)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline() == "writing\n"
        proc.kill()
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
    leftovers = [n for n in os.listdir(tmp_path) if n != "w.safetensors"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".w.safetensors.flopgrad-tmp-")
    assert fg.load(path)["w"].tolist() == [0.0, 0.0, 0.0]  # the old file is intact
    fg.save({"w": fg.full((3,), 2.0)}, path)
    assert os.listdir(tmp_path) == ["w.safetensors"]
    assert fg.load(path)["w"].tolist() == [2.0, 2.0, 2.0]


def test_a_long_name_gets_a_temporary_that_fits(tmp_path):
    name = "é" * 120 + ".safetensors"  # 252 bytes: no room to add a suffix in full
    write_atomic_bytes(tmp_path / name, b"data")
    assert os.listdir(tmp_path) == [name]


# ---------------------------------------------------------------- unreadable files

def test_a_bfloat16_file_written_by_torch_loads_exactly_and_round_trips(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file
    path = tmp_path / "bf16.safetensors"
    values = torch.tensor([1.0, -2.5, 3.14159, 1e-3]).to(torch.bfloat16)
    save_file({"ok": torch.ones(2), "emb.weight": values}, str(path))
    loaded = fg.load(path)
    assert loaded["emb.weight"].dtype == fg.bfloat16
    assert loaded["emb.weight"].numpy().astype(np.float32).tolist() == values.float().tolist()
    fg.save(loaded, tmp_path / "again.safetensors")  # and back: torch reads flopgrad's file
    again = load_file(str(tmp_path / "again.safetensors"))
    assert again["emb.weight"].dtype == torch.bfloat16 and torch.equal(again["emb.weight"], values)


def test_a_float8_file_written_by_torch_names_the_tensor(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file
    path = tmp_path / "f8.safetensors"
    save_file({"ok": torch.ones(2), "emb.weight": torch.ones(2).to(torch.float8_e4m3fn)},
              str(path))
    with pytest.raises(FileFormatError, match=r"f8.safetensors: tensor 'emb.weight' has dtype"):
        fg.load(path)


def _with_tree(tmp_path, tree, arrays=None) -> str:
    path = tmp_path / "edited.safetensors"
    meta = {"flopgrad.tree": tree if isinstance(tree, str) else json.dumps(tree)}
    path.write_bytes(st_save(arrays if arrays is not None else {"w": np.ones(2)},
                             metadata=meta))
    return str(path)


W = {"__tensor__": "w"}


@pytest.mark.parametrize("tree,match", [
    ("{not json", "flopgrad.tree is not JSON"),
    ({"__tensor__": "missing"}, "refers to tensor 'missing'"),
    ({"__tensor__": 5}, "refers to tensor '5'"),
    ({"__dict__": [1, 2]}, "a dict entry"),
    ({"__dict__": {"a": W}, "__intkeys__": 5}, "a dict entry"),
    ({"__dict__": {"a": W}, "__intkeys__": [{}]}, "a dict entry"),
    ({"__dict__": {"a": W}, "__intkeys__": ["a"]}, "integer key 'a'"),
    ({"__dict__": {"1": W, "01": 2}, "__intkeys__": ["1", "01"]}, "integer key '01'"),
    ({"__list__": {"a": 1}}, "a list entry"),
    ({"__list__": [W], "__tuple__": "yes"}, "a list entry"),
    ({"weird": 1}, "no __tensor__, __dict__ or __list__"),
    ([W], "unexpected list"),
    ({"__dict__": {}}, r"tensors \['w'\] are not part of the saved object"),
    pytest.param("[" * 100_000 + "]" * 100_000, "flopgrad.tree is", id="deep"),
])
def test_broken_flopgrad_metadata_is_one_clear_error(tmp_path, tree, match):
    path = _with_tree(tmp_path, tree)
    with pytest.raises(FileFormatError, match=match) as err:
        fg.load(path)
    assert str(err.value).startswith(f"load: {path} has broken flopgrad metadata: ")


def _raw(header: dict | bytes, body: bytes = b"") -> bytes:
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return len(h).to_bytes(8, "little") + h + body


@pytest.mark.parametrize("blob,match", [
    (b"", "fewer than 8 bytes"),
    ((10**6).to_bytes(8, "little") + b"{}", "runs past the end"),
    (_raw(b"\xff\xfe"), "not UTF-8 JSON"),
    (_raw([1, 2]), "not a JSON object"),
    (_raw({"__metadata__": {"a": 1}}), "__metadata__ is not a map of strings"),
    (_raw({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8),
     "not a valid safetensors file: "),
    (_raw({"a": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}}, b"\0"),
     "tensor 'a' has dtype 'F8_E4M3'"),
], ids=["empty", "long-header", "not-utf8", "not-object", "metadata", "offsets", "float8"])
def test_a_malformed_file_is_one_clear_error(tmp_path, blob, match):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(blob)
    with pytest.raises(FileFormatError, match=match) as err:
        fg.load(path)
    assert str(path) in str(err.value)


def test_loading_a_directory_says_so(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        fg.load(tmp_path)


def test_a_plain_safetensors_file_still_loads(tmp_path):
    path = tmp_path / "plain.safetensors"
    path.write_bytes(st_save({"a": np.array(3.0), "b": np.arange(3)}))
    out = fg.load(path)
    assert out["a"].shape == () and out["b"].tolist() == [0, 1, 2]

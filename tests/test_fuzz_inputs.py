"""Acceptance fuzz of the inputs users type or hand over: the command line's arguments and
the files given to fg.load. Whatever the input, the answer is a result or one clear error,
never a traceback."""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save as st_save

import flopgrad as fg
from flopgrad import training
from flopgrad.cli import main
from flopgrad.serialization import FileFormatError

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- the command line

# No "/" and no digits in free text: a garbage token can neither name a path outside the
# fuzz folder nor become a size that makes a bill slow (sizes come from SMALL below).
GARBAGE = st.text(alphabet="abcxyz-=._ é\n\t\x85\u2028", max_size=6)
SMALL = st.integers(-2, 6).map(str)
NUMBERS = st.sampled_from(["0", "1", "2", "0.5", "-1", "1e9", "7e9", "2_000", "1e400", "nan",
                           "inf", "-inf", "1.0", "3e-3", "0x10", "1" + "0" * 400, "", "1e12",
                           "0.4", "2.5"])
VALID_COUNT = st.sampled_from(["1", "2", "3", "1.0", "2e0", "1e3"])
COUNT = st.one_of(VALID_COUNT, VALID_COUNT, SMALL, st.sampled_from(["0.5", "nan", "-0"]),
                  GARBAGE)


def _paths(folder: str) -> st.SearchStrategy[str]:
    """--save / --data values: everything lands in (or is refused in) the fuzz folder."""
    return st.one_of(st.sampled_from([
        folder, os.path.join(folder, "w.safetensors"), os.path.join(folder, "no", "w"),
        os.path.join(folder, "fifo"), os.path.join(folder, "mnist.npz"),
        os.path.join(folder, "bad.npz"), os.path.join(folder, "tiny.txt"),
        os.path.join(folder, "link"), "", ".", ".."]), GARBAGE)


def _options(folder: str) -> dict[str, dict[str, st.SearchStrategy | None]]:
    """The real subcommands and their flags (None: a flag without a value)."""
    path = _paths(folder)
    sizes = {f"--{k}": SMALL for k in ("n-layer", "n-head", "d-model", "ctx", "vocab")}
    return {
        "demo": {"--epochs": COUNT, "--seed": COUNT, "--quiet": None},
        "train": {"--data": path, "--epochs": COUNT, "--steps": COUNT, "--batch-size": COUNT,
                  "--lr": NUMBERS, "--seed": COUNT, "--save": path, "--bill": None,
                  "--quiet": None},
        "bill": {**sizes, "--batch": st.one_of(st.integers(-1, 3).map(str), GARBAGE),
                 "--depth": COUNT},
        "budget": {"--params": NUMBERS, "--model": st.sampled_from(["gpt2", "gpt5", ""]),
                   "--tokens": NUMBERS, "--gpu": st.sampled_from(["h100", "a100", "tpu"]),
                   "--gpus": st.one_of(COUNT, NUMBERS), "--mfu": NUMBERS,
                   "--price-per-gpu-hour": NUMBERS},
    }


POSITIONALS = {"train": st.sampled_from(["mlp", "cnn", "gpt", "rnn"]),
               "bill": st.sampled_from(["gpt2", "no-such-model", "--n-layer"])}


@st.composite
def argvs(draw, folder: str) -> list[str]:
    options = _options(folder)
    command = draw(st.sampled_from([*options, "help", "--version", "-h", ""]))
    if command not in options:
        return [command] if command else []
    argv = [command]
    if command in POSITIONALS and draw(st.integers(0, 4)):
        argv.append(draw(POSITIONALS[command]))
    flags = options[command]
    for flag in draw(st.lists(st.sampled_from(sorted(flags)), max_size=5)):
        value = flags[flag]
        if value is None:
            argv.append(flag)
        elif draw(st.booleans()):
            argv += [flag, draw(value)]
        else:
            argv.append(f"{flag}={draw(value)}")
    if draw(st.integers(0, 6)) == 0:  # a garbage token somewhere
        argv.insert(draw(st.integers(0, len(argv))), draw(GARBAGE))
    if command == "bill" and not {"gpt2", "no-such-model"} & set(argv):
        argv += [f"--{k}={v}" for k, v in draw(st.fixed_dictionaries(
            {k: st.integers(1, 4) for k in ("n-layer", "n-head", "ctx", "vocab")})).items()]
        argv.append(f"--d-model={4 * draw(st.integers(1, 4))}")
    return argv


@pytest.fixture(scope="module")
def fuzz_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-fuzz")
    np.savez(folder / "mnist.npz", x_train=np.zeros((5, 28, 28), np.uint8),
             y_train=np.array([0, 1, 2, 3, 12]), x_test=np.zeros((2, 28, 28), np.uint8),
             y_test=np.array([0, 1]))
    (folder / "bad.npz").write_bytes(b"PK\x03\x04 not really")
    (folder / "tiny.txt").write_text("to be or not to be, that is the question. " * 3)
    os.mkfifo(folder / "fifo")
    (folder / "link").symlink_to("w.safetensors")
    return str(folder)


def _no_training(model, loader, optimizer, loss_fn=None, epochs=1, steps=None, **kwargs):
    return [1.0]


def test_the_command_line_answers_every_argv_with_a_result_or_one_line(fuzz_folder):
    @FUZZ
    @given(argv=argvs(fuzz_folder))
    def run(argv):
        out, err = io.StringIO(), io.StringIO()
        cwd = os.getcwd()
        os.chdir(fuzz_folder)  # relative garbage paths stay in the fuzz folder
        try:
            with mock.patch.object(training, "fit", _no_training), \
                    mock.patch.object(training, "evaluate", lambda model, loader: 0.5), \
                    contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = main(argv)
        finally:
            os.chdir(cwd)
        message = err.getvalue()
        assert status in (0, 2), (argv, status, message)
        if status == 2:
            assert message.endswith("\n") and message.count("\n") == 1, (argv, message)
            assert message.startswith("flopgrad") and ": error: " in message, (argv, message)
        assert "Traceback" not in message
    run()


# ---------------------------------------------------------------- files given to fg.load

def _valid_files() -> list[bytes]:
    fg.manual_seed(0)
    p = fg.nn.Parameter(fg.tensor(2.0))
    w = fg.nn.Parameter(fg.randn(2, 3))
    opt = fg.optim.Adam([p, w], lr=0.1)
    p.grad, w.grad = fg.tensor(1.0), fg.ones(2, 3)
    opt.step()
    state = {"model": {"scale": p, "w": w, 3: [fg.zeros(0), (1, "x", None)]},
             "opt": opt.state_dict(), "epoch": 7}
    blobs = []
    for obj in (state, {"w": fg.ones(2)}, fg.tensor(1.5)):
        buf = io.BytesIO()
        arrays: dict = {}
        tree = fg.serialization._flatten(obj, "", arrays)
        buf.write(st_save(arrays, metadata={"flopgrad.tree": json.dumps(tree)}))
        blobs.append(buf.getvalue())
    blobs.append(st_save({"a": np.arange(6, dtype=np.int16).reshape(2, 3),
                          "b": np.array(True)}))
    return blobs


VALID = _valid_files()
JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=4),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["__tensor__", "__dict__", "__list__",
                                                       "__intkeys__", "__tuple__", "w", "1"]),
                                      inner, max_size=3), max_leaves=8)


def _split(blob: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8: 8 + n]), blob[8 + n:]


def _join(header: dict, body: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def _replace_somewhere(node, new, path: list[int]):
    """node with one sub-node (chosen by the numbers in path) replaced by new."""
    if not path or not isinstance(node, dict | list) or not node:
        return new
    keys = list(node) if isinstance(node, dict) else list(range(len(node)))
    key = keys[path[0] % len(keys)]
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[key] = _replace_somewhere(node[key], new, path[1:])
    return copy


@st.composite
def broken_files(draw) -> bytes:
    blob = draw(st.sampled_from(VALID))
    how = draw(st.sampled_from(["random", "flip", "cut", "tree", "header", "dtype"]))
    if how == "random":
        return draw(st.binary(max_size=120))
    if how == "flip":
        data = bytearray(blob)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if how == "cut":
        return blob[: draw(st.integers(0, len(blob) - 1))]
    header, body = _split(blob)
    path = draw(st.lists(st.integers(0, 5), max_size=6))
    if how == "tree" and "flopgrad.tree" in header.get("__metadata__", {}):
        tree = json.loads(header["__metadata__"]["flopgrad.tree"])
        tree = _replace_somewhere(tree, draw(JSON), path)
        header["__metadata__"]["flopgrad.tree"] = json.dumps(tree)
        return _join(header, body)
    if how == "dtype":
        name = draw(st.sampled_from([k for k in header if k != "__metadata__"]))
        header[name]["dtype"] = draw(st.sampled_from(["BF16", "F8_E4M3", "F64", "U8", "X"]))
        return _join(header, body)
    return _join(_replace_somewhere(header, draw(JSON), path), body)


def test_load_answers_every_file_with_its_contents_or_one_error(tmp_path_factory):
    folder = tmp_path_factory.mktemp("load-fuzz")
    path = str(folder / "fuzzed.safetensors")

    @FUZZ
    @given(blob=broken_files())
    def run(blob):
        with open(path, "wb") as f:
            f.write(blob)
        try:
            fg.load(path)
        except FileFormatError as err:
            assert path in str(err) and "\n" not in str(err)
    run()


def test_the_valid_files_of_the_fuzz_load(tmp_path):
    for i, blob in enumerate(VALID):
        (tmp_path / f"{i}.safetensors").write_bytes(blob)
        fg.load(tmp_path / f"{i}.safetensors")

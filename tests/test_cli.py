"""The command line: the main job (`flopgrad demo`) and `flopgrad train`."""

import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

import flopgrad as fg
from flopgrad import training
from flopgrad.cli import main


def test_demo_trains_to_96_percent_and_prints_the_bill(capsys):
    assert main(["demo", "--quiet"]) == 0
    out = capsys.readouterr().out
    acc = float(re.search(r"test accuracy ([\d.]+)%", out).group(1))
    assert acc >= 96.0
    for column in ("forward", "bwd dX", "bwd dW", "bytes", "saved"):
        assert column in out
    for layer in ("fc1", "fc2", "fc3", "optimizer"):
        assert re.search(rf"^{layer}\s", out, re.M)
    assert "rule checks" in out and "never computed" in out


def test_train_mlp_saves_weights_and_bills_a_step(tmp_path, capsys):
    path = tmp_path / "mlp.safetensors"
    assert main(["train", "mlp", "--steps", "30", "--quiet", "--save", str(path),
                 "--bill"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "fc1" in out and "bwd dW" in out
    state = fg.load(path)
    model = fg.models.MLP([64, 128, 64, 10])
    model.load_state_dict(state)
    assert np.isfinite(model.fc1.weight.detach().numpy()).all()


def test_train_cnn_and_gpt_run(capsys):
    assert main(["train", "cnn", "--steps", "5", "--quiet"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["train", "gpt", "--steps", "5", "--quiet", "--batch-size", "4", "--bill"]) == 0
    out = capsys.readouterr().out
    assert "final loss" in out and "FLOPs per parameter per token" in out


def test_train_reports_missing_data_clearly(tmp_path, capsys):
    assert main(["train", "mlp", "--data", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "train-images-idx3-ubyte" in capsys.readouterr().err


# ---------------------------------------------------------------- errors are one line

def _one_line(err: str) -> str:
    assert "Traceback" not in err and err.endswith("\n") and err.count("\n") == 1, err
    return err


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if a command starts training (its inputs should have been refused)."""
    def fit(*args, **kwargs):
        raise AssertionError("training started")
    monkeypatch.setattr(training, "fit", fit)


@pytest.mark.parametrize("argv,words", [
    (["bill", "no-such-model"], ["flopgrad bill: error: unknown model 'no-such-model'; known"]),
    (["budget", "--params", "-1", "--tokens", "1e9"], ["argument --params", "-1"]),
    (["train", "mlp", "--steps", "2", "--quiet", "--save", "."],
     ["argument --save", "cannot write .: it is a directory"]),
    (["bill", "gpt2", "--batch", "0"], ["argument --batch", "must be positive"]),
])
def test_the_commands_of_issue_9_print_one_line(capsys, no_training, argv, words):
    assert main(argv) == 2
    err = _one_line(capsys.readouterr().err)
    for word in words:
        assert word in err


def test_save_path_is_checked_before_training(tmp_path, capsys, no_training):
    for bad, why in [(tmp_path, "is a directory"), ("", "empty path"),
                     (tmp_path / "no" / "w.safetensors", "does not exist")]:
        assert main(["train", "mlp", "--quiet", "--save", str(bad)]) == 2
        assert why in _one_line(capsys.readouterr().err)
    os.mkfifo(tmp_path / "fifo")
    assert main(["train", "gpt", "--quiet", "--save", str(tmp_path / "fifo")]) == 2
    assert "not a regular file" in _one_line(capsys.readouterr().err)


def _npz(tmp_path, y_train, x_train=None):
    path = tmp_path / f"mnist{len(os.listdir(tmp_path))}.npz"
    x = np.zeros((len(y_train), 28, 28), np.uint8) if x_train is None else x_train
    np.savez(path, x_train=x, y_train=np.asarray(y_train), x_test=np.zeros((2, 28, 28)),
             y_test=np.array([0, 9]))
    return str(path)


def test_bad_data_files_are_refused_before_training(tmp_path, capsys, no_training):
    cases = [(_npz(tmp_path, [0, 10, 3]), r"train label 10 \(example 1\) is not a class 0-9"),
             (_npz(tmp_path, [-1]), "train label -1"),
             (_npz(tmp_path, []), "the train set is empty|cannot reshape array of size 0"),
             (_npz(tmp_path, [1], np.zeros((1, 5, 5))), "not a usable MNIST file"),
             (_npz(tmp_path, [1], np.full((1, 28, 28), np.nan)), "NaN or infinite")]
    for path, why in cases:
        for model in ("mlp", "cnn"):
            assert main(["train", model, "--data", path, "--quiet"]) == 2
            err = _one_line(capsys.readouterr().err)
            assert err.startswith(f"flopgrad train: error: --data {path}: ")
            assert re.search(why, err)
    (tmp_path / "junk.npz").write_bytes(b"PK not a zip")
    idx = tmp_path / "idx"
    idx.mkdir()
    (idx / "train-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03\0")  # header cut short
    (idx / "train-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01\0\0\0\0")
    for path in (tmp_path / "junk.npz", idx):
        assert main(["train", "mlp", "--data", str(path), "--quiet"]) == 2
        assert "not a usable MNIST file" in _one_line(capsys.readouterr().err)
    (tmp_path / "short.txt").write_text("too short")
    assert main(["train", "gpt", "--data", str(tmp_path / "short.txt"), "--quiet"]) == 2
    assert "need more than ctx=64" in _one_line(capsys.readouterr().err)


def test_a_closed_output_pipe_ends_quietly():
    proc = subprocess.Popen([sys.executable, "-m", "flopgrad", "budget", "--params", "1e9",
                             "--tokens", "1e9"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # like `| head -0`, before the command writes anything
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 1 and err == b""


def test_ctrl_c_exits_130_without_a_traceback(capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(training, "fit", interrupted)
    assert main(["train", "mlp", "--quiet"]) == 130
    assert _one_line(capsys.readouterr().err) == "flopgrad train: interrupted\n"


def test_sigint_during_training_exits_130():
    proc = subprocess.Popen([sys.executable, "-u", "-m", "flopgrad", "train", "mlp", "--epochs",
                             "1000", "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("train mlp:")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130 and err == "flopgrad train: interrupted\n"


# ---------------------------------------------------------------- flags do what they say

def test_bill_preset_sizes_are_overridden_by_options(capsys):
    assert main(["bill", "gpt2", "--n-layer", "2", "--ctx", "64", "--depth", "1"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("gpt2 with --n-layer 2, --ctx 64: n_layer 2, n_head 12, "
                            "d_model 768, ctx 64, vocab 50257: ")
    n = fg.models.GPTConfig(n_layer=2, ctx=64).num_params()
    assert f"{n:,} parameters" in first
    assert main(["bill", "gpt2", "--n-head", "5"]) == 2
    assert "not divisible by n_head 5" in _one_line(capsys.readouterr().err)


def test_train_gpt_honours_epochs_and_steps(tmp_path, capsys, monkeypatch):
    calls = []
    real_fit = training.fit

    def fit(*args, **kwargs):
        calls.append(len(real_fit(*args, **kwargs)))
        return [1.0] * calls[-1]
    monkeypatch.setattr(training, "fit", fit)
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 3)  # 135 chars
    # 71 windows of 64 characters, 3 batches of 32 per epoch
    assert main(["train", "gpt", "--data", str(corpus), "--epochs", "2", "--quiet"]) == 0
    assert main(["train", "gpt", "--data", str(corpus), "--steps", "1", "--quiet",
                 "--epochs", "5"]) == 0
    assert calls == [6, 1]
    assert "final loss" in capsys.readouterr().out


@pytest.mark.parametrize("argv,option", [
    (["train", "mlp", "--lr", "nan"], "--lr"), (["train", "mlp", "--lr", "inf"], "--lr"),
    (["train", "mlp", "--lr", "-1e-3"], "--lr"), (["train", "mlp", "--lr", "0"], "--lr"),
    (["train", "mlp", "--lr", "fast"], "--lr"), (["train", "mlp", "--save="], "--save"),
    (["train", "mlp", "--data="], "--data"), (["train", "mlp", "--epochs", "1.5"], "--epochs"),
    (["train", "gpt", "--epochs", "0"], "--epochs"), (["train", "cnn", "--steps", "-2"], "--steps"),
    (["train", "mlp", "--batch-size", "0"], "--batch-size"),
    (["train", "mlp", "--seed", "-1"], "--seed"), (["demo", "--seed", "0.5"], "--seed"),
    (["demo", "--epochs", "nan"], "--epochs"),
    (["budget", "--params", "0.5", "--tokens", "1e9"], "--params"),
    (["budget", "--params", "1e9", "--tokens", "0"], "--tokens"),
    (["budget", "--params", "1e9", "--tokens", "nan"], "--tokens"),
    (["budget", "--params", "1e400", "--tokens", "1e9"], "--params"),
    (["budget", "--params", "1" + "0" * 400, "--tokens", "1e9"], "--params"),
    (["budget", "--params", "1e9", "--tokens", "1e9", "--price-per-gpu-hour", "nan"],
     "--price-per-gpu-hour"),
    (["budget", "--params", "1e9", "--tokens", "1e9", "--price-per-gpu-hour", "-1"],
     "--price-per-gpu-hour"),
    (["budget", "--params", "1e9", "--tokens", "1e9", "--mfu", "0"], "--mfu"),
    (["budget", "--params", "1e9", "--tokens", "1e9", "--mfu", "1.01"], "--mfu"),
    (["budget", "--params", "1e9", "--tokens", "1e9", "--gpus", "2.5"], "--gpus"),
    (["bill", "gpt2", "--depth", "0"], "--depth"), (["bill", "--n-layer", "-3"], "--n-layer"),
    (["bill", "gpt2", "--batch", "1.5"], "--batch"),
    (["bill", "gpt2", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["budget"], "the following arguments are required: --tokens"),
])
def test_every_bad_number_is_an_argparse_error_naming_the_option(capsys, no_training, argv,
                                                                 option):
    assert main(argv) == 2
    err = _one_line(capsys.readouterr().err)
    assert re.match(rf"flopgrad( {argv[0]})?: error: ", err) and option in err


def test_good_numbers_in_any_notation_are_accepted(capsys):
    assert main(["budget", "--params", "7e9", "--tokens", "2_000_000", "--gpus", "8.0",
                 "--mfu", "1", "--price-per-gpu-hour", "0"]) == 0
    out = capsys.readouterr().out
    assert "7e+09" in out or "7,000,000,000" in out
    assert main(["budget", "--tokens", "1e9"]) == 2
    assert "give --params N" in _one_line(capsys.readouterr().err)


def test_help_and_version_exit_0(capsys):
    assert main(["--version"]) == 0
    assert main(["bill", "--help"]) == 0
    assert "overrides the preset's" in " ".join(capsys.readouterr().out.split())

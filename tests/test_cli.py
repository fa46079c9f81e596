"""The command line: the main job (`flopgrad demo`) and `flopgrad train`."""

import re

import numpy as np

import flopgrad as fg
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

"""`flopgrad bill --torch FILE.py:FUNCTION`: the bill of one training step of your own
PyTorch model, its tensor FLOPs checked against torch's FlopCounterMode, and every bad
input one line on stderr."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from flopgrad.cli import main
from flopgrad.torch.step import load_model_and_batch, step_report, train_step_bill

ROOT = pathlib.Path(__file__).parent.parent

MLP = """
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(64, 32)
        self.act = torch.nn.ReLU()
        self.fc2 = torch.nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))

def build():
    torch.manual_seed(0)
    return Net(), (torch.randn(8, 64),)
"""

GPT2 = """
import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

transformers.logging.set_verbosity_error()

def build():
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=256, n_positions=32,
                        bos_token_id=0, eos_token_id=0)
    ids = torch.randint(0, 256, (2, 16))
    return GPT2LMHeadModel(config), {"input_ids": ids, "labels": ids}
"""

META = """
import torch

def build():
    with torch.device("meta"):
        model = torch.nn.Sequential()
        model.add_module("up", torch.nn.Linear(1024, 4096))
        model.add_module("gelu", torch.nn.GELU())
        model.add_module("down", torch.nn.Linear(4096, 1024))
        x = torch.randn(512, 1024)
    return model, x
"""


def _write(tmp_path: pathlib.Path, text: str, name: str = "model.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def _printed_tensor_flops(out: str) -> tuple[int, int]:
    m = re.search(r"tensor \(matmul/conv\) forward ([\d,]+), backward ([\d,]+)", out)
    assert m, out
    return tuple(int(g.replace(",", "")) for g in m.groups())


def _oracle(model, batch) -> int:
    """FlopCounterMode's total for the same step: zero_grad, forward, loss, backward,
    AdamW step."""
    opt = torch.optim.AdamW(model.parameters())
    with FlopCounterMode(display=False) as counter:
        opt.zero_grad()
        if isinstance(batch, dict):
            out = model(**batch)
            loss = out.loss
        else:
            out = model(*batch) if isinstance(batch, tuple) else model(batch)
            loss = out if out.dim() == 0 else out.float().mean()
        loss.backward()
        opt.step()
    return counter.get_total_flops()


@pytest.mark.parametrize("source, scopes, device", [
    (MLP, ["fc1", "fc2", "act"], "cpu"),
    (GPT2, ["transformer.h.*", "lm_head", "transformer.wte"], "cpu"),
    (META, ["up", "down", "gelu"], "meta"),
], ids=["mlp", "gpt2", "meta"])
def test_the_table_and_the_flops_equal_train_step_bill_and_flop_counter_mode(
        tmp_path, capsys, source, scopes, device):
    if source is GPT2:
        pytest.importorskip("transformers")
    spec = _write(tmp_path, source) + ":build"
    assert main(["bill", "--torch", spec]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    assert header.startswith(f"{spec}: ") and f"({device} tensors, counted in" in header
    table = out[:out.index("TOTAL")]
    for scope in scopes:
        assert re.search(rf"^{re.escape(scope)} ", table, re.M), (scope, table)
    assert "memory (as run, measured on the step): weights" in out
    assert "UNKNOWN COST" not in out
    forward, backward = _printed_tensor_flops(out)
    bill = train_step_bill(*load_model_and_batch(spec))
    assert (forward, backward) == (bill.flops("forward", kind="tensor"),
                                   bill.flops("backward", kind="tensor"))
    assert forward + backward == _oracle(*load_model_and_batch(spec))
    assert forward > 0 and backward > forward  # dW and dX both ran past the first layer


def test_gpt2_header_tokens_and_rules(tmp_path, capsys):
    pytest.importorskip("transformers")
    spec = _write(tmp_path, GPT2) + ":build"
    assert main(["bill", "--torch", spec, "--depth", "2"]) == 0
    out = capsys.readouterr().out
    model, _ = load_model_and_batch(spec)
    n = sum(p.numel() for p in model.parameters())
    assert f"GPT2LMHeadModel, {n:,} parameters (float32)" in out
    assert "input_ids (2, 16) int64, labels (2, 16) int64" in out
    assert f"({n:,} parameters and 32 tokens)" in out
    assert "FLOPs per parameter per token" in out
    assert "transformer.h.*.attn" not in out  # --depth 2 cuts the scopes at two names


def test_step_report_measures_weights_gradients_and_adamw_state(tmp_path):
    step = step_report(_write(tmp_path, MLP) + ":build")
    n = 64 * 32 + 32 + 32 * 10 + 10
    assert (step.model_class, step.params, step.trainable) == ("Net", n, n)
    assert step.weights == step.gradients == 4 * n
    assert step.optimizer_state == 2 * 4 * n + 4 * 4  # exp_avg, exp_avg_sq, 4 step counts
    # saved for backward and made by the step: relu's output (fc2's input shares it); not
    # fc1's input (the batch) and no weight
    assert step.activations == 4 * 8 * 32
    assert step.tokens is None and step.batch == "(8, 64) float32"


def test_the_example_file(capsys):
    spec = str(ROOT / "examples" / "torch_mlp.py") + ":model_and_batch"
    assert main(["bill", "--torch", spec]) == 0
    out = capsys.readouterr().out
    assert "DigitsMLP, 9,610 parameters" in out
    assert "(32, 64) float32, (32,) int64" in out
    for scope in ("hidden", "act", "out"):
        assert re.search(rf"^{scope} ", out, re.M)


def test_html(tmp_path, capsys):
    page = tmp_path / "bill.html"
    assert main(["bill", "--torch", _write(tmp_path, MLP) + ":build",
                 "--html", str(page)]) == 0
    assert f"wrote {page}" in capsys.readouterr().out
    assert "<html" in page.read_text()


def test_a_module_name_and_sys_path_left_as_it_was(tmp_path, monkeypatch):
    _write(tmp_path, MLP, "my_nets.py")
    before = list(sys.path)
    model, batch = load_model_and_batch(str(tmp_path / "my_nets.py") + ":build")
    assert sys.path == before and type(model).__name__ == "Net"
    (tmp_path / "beside").mkdir()
    _write(tmp_path / "beside", "import torch\nWIDTH = 6\n", "fg_test_helpers_beside.py")
    path = _write(tmp_path / "beside", "import torch\nimport fg_test_helpers_beside as helpers\n"
                  "def build():\n    return torch.nn.Linear(helpers.WIDTH, 2), "
                  "torch.ones(1, helpers.WIDTH)\n", "uses_helpers.py")
    model, batch = load_model_and_batch(path + ":build")
    assert model.in_features == 6 and sys.path == before
    monkeypatch.syspath_prepend(str(tmp_path))
    model, batch = load_model_and_batch("my_nets:build")
    assert type(model).__name__ == "Net" and isinstance(batch, tuple)


def test_ops_without_a_formula_are_listed_loudly(tmp_path, capsys):
    spec = _write(tmp_path, """
        import torch

        class Cum(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = torch.nn.Linear(4, 4)

            def forward(self, x):
                return torch.cumprod(self.lin(x), 1)

        def build():
            return Cum(), torch.randn(2, 4)
        """) + ":build"
    assert main(["bill", "--torch", spec]) == 0
    out, err = capsys.readouterr()
    assert "UNKNOWN COST" in out and "cumprod" in out
    assert "warning" in err and "cumprod" in err


def _bad(tmp_path, kind):
    """The arguments of one bad input, and words its one line must hold."""
    ok = _write(tmp_path, MLP, "ok.py")
    if kind == "no colon":
        return [ok], ["FILE.py:FUNCTION", "ok.py"]
    if kind == "missing file":
        return [str(tmp_path / "nowhere.py") + ":build"], ["nowhere.py", "no such file"]
    if kind == "not a .py file":
        (tmp_path / "notes.txt").write_text("hello")
        return [str(tmp_path / "notes.txt") + ":build"], ["notes.txt", "not a .py file"]
    if kind == "import error":
        path = _write(tmp_path, "import torch\nimport no_such_module_anywhere\n", "broken.py")
        return [path + ":build"], ["broken.py", "importing it raised ModuleNotFoundError",
                                   "no_such_module_anywhere"]
    if kind == "syntax error":
        path = _write(tmp_path, "def build(:\n    pass\n", "typo.py")
        return [path + ":build"], ["typo.py", "SyntaxError"]
    if kind == "function missing":
        return [ok + ":nope"], ["no function 'nope'", "its functions: build"]
    if kind == "function raises":
        path = _write(tmp_path, "def build():\n    raise RuntimeError('boom')\n", "raises.py")
        return [path + ":build"], ["build() raised RuntimeError: boom"]
    if kind == "function needs arguments":
        path = _write(tmp_path, "def build(size):\n    pass\n", "args.py")
        return [path + ":build"], ["build() is called with no arguments", "size"]
    if kind == "returns one thing":
        path = _write(tmp_path, "import torch\ndef build():\n    return torch.nn.Linear(2, 2)\n",
                      "one.py")
        return [path + ":build"], ["must return (model, batch)", "got a Linear"]
    if kind == "not a module":
        path = _write(tmp_path, "import torch\ndef build():\n    return 3, torch.ones(2)\n",
                      "three.py")
        return [path + ":build"], ["torch.nn.Module", "got an int"]
    if kind == "forward fails":
        path = _write(tmp_path, "import torch\ndef build():\n"
                                "    return torch.nn.Linear(4, 2), torch.ones(3, 5)\n", "shape.py")
        return [path + ":build"], ["shape.py:build", "the model's forward raised RuntimeError",
                                   "mat1 and mat2"]
    if kind == "no loss":
        path = _write(tmp_path, "import torch\nclass M(torch.nn.Module):\n"
                                "    def __init__(self):\n        super().__init__()\n"
                                "        self.lin = torch.nn.Linear(2, 2)\n"
                                "    def forward(self, x):\n        return 'done'\n"
                                "def build():\n    return M(), torch.ones(1, 2)\n", "noloss.py")
        return [path + ":build"], ["returned a str", "no loss"]
    presets = {"preset": ["gpt2"], "batch": ["--batch", "4"],
               "checkpoint": ["--checkpoint", "full"], "size": ["--n-layer", "2"]}
    return [ok + ":build", *presets[kind]], ["--torch", "for presets"]


@pytest.mark.parametrize("kind", [
    "no colon", "missing file", "not a .py file", "import error", "syntax error",
    "function missing", "function raises", "function needs arguments", "returns one thing",
    "not a module", "forward fails", "no loss", "preset", "batch", "checkpoint", "size"])
def test_every_bad_input_is_one_line(tmp_path, capsys, kind):
    argv, words = _bad(tmp_path, kind)
    assert main(["bill", "--torch", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("flopgrad bill: error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_without_torch_installed_the_line_says_how_to_install_it(tmp_path):
    spec = _write(tmp_path, MLP) + ":build"
    done = _run("import sys; sys.modules['torch'] = None\n"
                "from flopgrad.cli import main\n"
                f"sys.exit(main(['bill', '--torch', {spec!r}]))")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and 'pip install "flopgrad[torch]"' in lines[0], done.stderr


def test_the_cli_imports_torch_only_for_torch():
    done = _run("import sys\nfrom flopgrad.cli import main\n"
                "assert main(['bill', 'gpt2', '--n-layer', '1', '--ctx', '8']) == 0\n"
                "print('torch' in sys.modules, file=sys.stderr)")
    assert done.returncode == 0 and done.stderr.strip() == "False", done.stderr


def test_a_transformer_gets_the_published_formulas_beside_its_count(tmp_path, capsys):
    """GPT-2 (2 layers, d 64, vocab 256, 2 x 16 tokens): 6·N·D and PaLM's formula beside the
    counted matmul FLOPs, and 6·M·D + 12·L·s·d·D, with M the matmul weights, equal to it."""
    from flopgrad.torch.step import formula_rows

    spec = _write(tmp_path, GPT2) + ":build"
    step = step_report(spec)
    rows = {r["formula"]: r for r in formula_rows(step)}
    L, d, V, s, T = 2, 64, 256, 16, 32
    matmul_weights = L * 12 * d * d + d * V  # c_attn, c_proj, mlp; the tied lm_head
    assert step.params - matmul_weights == 32 * d + L * (4 * d + 9 * d) + 2 * d  # wpe, b, ln
    attention = 12 * L * s * d * T
    counted = 6 * matmul_weights * T + attention
    assert rows["6·N·D (N = all parameters)"]["value"] == 6 * step.params * T
    assert rows["PaLM 6N + 12·L·H·Q·T"]["value"] == 6 * step.params * T + attention
    assert {r["counted"] for r in rows.values()} == {counted}
    assert f"{counted:,}" in rows["PaLM 6N + 12·L·H·Q·T"]["reason"]
    assert main(["bill", "--torch", spec]) == 0
    assert "published formulas beside the count" in capsys.readouterr().out

"""One training step of a user's PyTorch model, billed: what `flopgrad bill --torch
FILE.py:FUNCTION` runs (the command prints; the work is here).

- `load_model_and_batch(spec)`: import FILE.py (or a module) and call FUNCTION(), which
  returns (model, batch);
- `train_step_bill(model, batch)`: one step (zero_grad, forward, loss, backward, AdamW
  step) under `flopgrad.torch.profile(model)`, returning its Bill;
- `step_report(spec)`: both, with what the command's header and memory line print.

Every mistake in the file, the function, what it returns or the step itself is a
ValueError of one clear sentence (the CLI prints it as one line).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import itertools
import pathlib
import sys
import time
from collections.abc import Mapping

import torch

from flopgrad.report import Bill
from flopgrad.torch.bill import profile

__all__ = ["load_model_and_batch", "train_step_bill", "step_report", "TorchStep"]

_LOADED = itertools.count()  # a unique module name per file imported


def _first_line(err: BaseException) -> str:
    """`Type: first line of the message` (torch's messages run to many lines)."""
    lines = [s for s in str(err).splitlines() if s.strip()]
    text = lines[0].strip() if lines else ""
    if len(lines) > 1:
        text += " ..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _split(spec: str) -> tuple[str, str]:
    where, colon, name = str(spec).rpartition(":")
    if not colon or not where or not name:
        raise ValueError(f"--torch wants FILE.py:FUNCTION (a file and the function in it "
                         f"that returns (model, batch)), got {spec!r}")
    if not name.isidentifier():
        raise ValueError(f"{spec}: {name!r} is not a function name")
    return where, name


def _import_file(path: pathlib.Path):
    """Import a .py file under a module name of its own (a fresh one each time)."""
    name = f"_flopgrad_user_{path.stem if path.stem.isidentifier() else 'file'}_{next(_LOADED)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{path}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as err:
        del sys.modules[name]
        raise ValueError(f"{path}: importing it raised {_first_line(err)}") from err
    return module


def _import(where: str):
    path = pathlib.Path(where)
    if where.endswith(".py"):
        if not path.is_file():
            raise ValueError(f"{where}: no such file" if not path.exists()
                             else f"{where}: not a file")
        return _import_file(path.resolve())
    if path.exists() or not all(p.isidentifier() for p in where.split(".")):
        raise ValueError(f"{where}: not a .py file" if path.exists()
                         else f"{where}: no such .py file")
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as err:
        if err.name is not None and where.startswith(err.name):
            raise ValueError(f"{where}: no such .py file or module") from err
        raise ValueError(f"{where}: importing it raised {_first_line(err)}") from err
    except (Exception, SystemExit) as err:
        raise ValueError(f"{where}: importing it raised {_first_line(err)}") from err


def _functions(module) -> list[str]:
    return sorted(n for n, v in vars(module).items() if inspect.isfunction(v)
                  and v.__module__ == module.__name__ and not n.startswith("_"))


def _check_no_arguments(spec: str, name: str, function) -> None:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin without one: calling it will tell
        return
    needed = [p.name for p in signature.parameters.values() if p.default is p.empty
              and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if needed:
        raise ValueError(f"{spec}: {name}() is called with no arguments, but it needs "
                         f"{', '.join(needed)}")


def load_model_and_batch(spec: str) -> tuple[torch.nn.Module, object]:
    """Import "path/to/file.py:function" (or "package.module:function") and return what
    function() returns: (model, batch), model a torch.nn.Module and batch a Tensor, a
    tuple or list of inputs, or a dict of keyword inputs. The file is imported under a
    module name of its own, with its folder on sys.path while it is imported and the
    function runs (so that it can import the files beside it).

    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "net.py")
    ...     with open(path, "w") as f:
    ...         _ = f.write("import torch\\n"
    ...                     "def build():\\n"
    ...                     "    return torch.nn.Linear(8, 4), torch.randn(16, 8)\\n")
    ...     model, batch = load_model_and_batch(path + ":build")
    >>> type(model).__name__, tuple(batch.shape)
    ('Linear', (16, 8))
    >>> load_model_and_batch("net.py")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: --torch wants FILE.py:FUNCTION (a file and the function in it ...), got 'net.py'
    """
    where, name = _split(spec)
    folder = str(pathlib.Path(where).resolve().parent) if where.endswith(".py") else None
    if folder is not None:
        sys.path.insert(0, folder)
    try:
        module = _import(where)
        if not hasattr(module, name):
            found = _functions(module)
            raise ValueError(f"{where} has no function {name!r}; "
                             + (f"its functions: {', '.join(found)}" if found
                                else "it defines no functions"))
        function = getattr(module, name)
        if not callable(function):
            raise ValueError(f"{spec}: {name} is {_a(type(function).__name__)}, not a "
                             f"function")
        _check_no_arguments(spec, name, function)
        try:
            got = function()
        except (Exception, SystemExit) as err:
            raise ValueError(f"{spec}: {name}() raised {_first_line(err)}") from err
    finally:
        if folder is not None and folder in sys.path:
            sys.path.remove(folder)
    if not (isinstance(got, tuple | list) and len(got) == 2):
        what = _a(type(got).__name__) + (f" of {len(got)}" if isinstance(got, tuple | list)
                                          else "")
        raise ValueError(f"{spec}: {name}() must return (model, batch), got {what}")
    model, batch = got
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"{spec}: {name}() must return (model, batch) with model a "
                         f"torch.nn.Module, got {_a(type(model).__name__)}")
    if not isinstance(batch, torch.Tensor | tuple | list | Mapping):
        raise ValueError(f"{spec}: {name}() must return (model, batch) with batch a Tensor "
                         f"(model(batch)), a tuple or list (model(*batch)) or a dict "
                         f"(model(**batch)), got {_a(type(batch).__name__)}")
    return model, batch


def _loss(out, depth: int = 0) -> torch.Tensor:
    """The loss of a forward's output, by the rule of train_step_bill's docstring."""
    if isinstance(out, torch.Tensor) and out.dim() == 0:
        return out
    found = out.get("loss") if isinstance(out, Mapping) else getattr(out, "loss", None)
    if isinstance(found, torch.Tensor):
        return _loss(found, depth + 1)
    if depth < 4 and isinstance(out, tuple | list) and out:
        return _loss(out[0], depth + 1)
    if depth < 4 and isinstance(out, Mapping) and out:
        return _loss(next(iter(out.values())), depth + 1)
    if isinstance(out, torch.Tensor) and (out.is_floating_point() or out.is_complex()):
        return out.float().mean()
    raise ValueError(f"the model's forward returned {_kind(out)}, from which no loss can be "
                     f"taken: return a 0-d loss, an object with .loss, or a floating tensor")


def _a(name: str) -> str:
    """'a Linear', 'an int'."""
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _kind(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"a {str(x.dtype).removeprefix('torch.')} tensor of shape {tuple(x.shape)}"
    return _a(type(x).__name__)


def train_step_bill(model: torch.nn.Module, batch, optimizer="adamw") -> Bill:
    """The flopgrad Bill of ONE training step of `model` on `batch`, run under
    `flopgrad.torch.profile(model)`: zero_grad, forward, loss, loss.backward(), step.

    The forward is model(batch) for a Tensor, model(*batch) for a tuple or list,
    model(**batch) for a dict. The loss is taken from the output by the first rule
    that applies:
    1. a 0-d tensor is the loss;
    2. an output with a tensor `.loss` (a Hugging Face model given labels), or a dict
       with a "loss" key: that;
    3. a tuple or list, or a dict without a loss: its first element, by these rules;
    4. a floating tensor of any other shape: `out.float().mean()`, a stand-in loss (one
       mean, billed at the top level; the model's own backward costs what it would cost
       under any loss).
    `optimizer` is "adamw" (torch.optim.AdamW with its defaults, over the parameters
    that require grad) or a torch.optim.Optimizer to step. The model runs in the mode it
    is in (train() or eval()) on the device its tensors are on: meta works.

    >>> lin = torch.nn.Linear(8, 4)
    >>> bill = train_step_bill(lin, torch.randn(16, 8))
    >>> bill.flops("forward", kind="tensor"), bill.flops("optimizer") > 0
    (1024, True)
    """
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"train_step_bill: model must be a torch.nn.Module, "
                         f"got {_a(type(model).__name__)}")
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError(f"the model ({type(model).__name__}) has no parameters that "
                         f"require grad: there is nothing to train")
    if isinstance(optimizer, torch.optim.Optimizer):
        opt = optimizer
    elif optimizer == "adamw":
        opt = torch.optim.AdamW(trainable)
    else:
        raise ValueError(f"train_step_bill: optimizer must be 'adamw' or a "
                         f"torch.optim.Optimizer, got {optimizer!r}")
    if isinstance(batch, torch.Tensor):
        args, kwargs = (batch,), {}
    elif isinstance(batch, Mapping):
        if not all(isinstance(k, str) for k in batch):
            raise ValueError(f"the batch is a dict passed as model(**batch): its keys must "
                             f"be names, got {sorted(map(repr, batch))}")
        args, kwargs = (), dict(batch)
    elif isinstance(batch, tuple | list):
        args, kwargs = tuple(batch), {}
    else:
        raise ValueError(f"the batch must be a Tensor, a tuple or list, or a dict; "
                         f"got {_a(type(batch).__name__)}")
    with profile(model) as bill:
        opt.zero_grad()
        out = _run("the model's forward", model, *args, **kwargs)
        loss = _loss(out)
        if not loss.requires_grad:
            raise ValueError(f"the loss ({_kind(loss)}) does not require grad: no "
                             f"trainable parameter reaches the model's output")
        _run("loss.backward()", loss.backward)
        _run("the optimizer's step", opt.step)
    return bill


def _run(what: str, f, /, *args, **kwargs):
    """f(*args, **kwargs), whatever it raises turned into one ValueError naming `what`."""
    try:
        return f(*args, **kwargs)
    except Exception as err:
        raise ValueError(f"{what} raised {_first_line(err)}") from err


def _describe(batch) -> str:
    def one(x) -> str:
        if isinstance(x, torch.Tensor):
            return f"{tuple(x.shape)} {str(x.dtype).removeprefix('torch.')}"
        return type(x).__name__
    if isinstance(batch, Mapping):
        return ", ".join(f"{k} {one(v)}" for k, v in batch.items())
    if isinstance(batch, tuple | list):
        return ", ".join(one(x) for x in batch)
    return one(batch)


def _tokens(batch) -> int | None:
    """b * s when the batch's first tensor is an integer (b, s) tensor (token ids)."""
    items = (list(batch.values()) if isinstance(batch, Mapping) else
             list(batch) if isinstance(batch, tuple | list) else [batch])
    first = next((x for x in items if isinstance(x, torch.Tensor)), None)
    if (first is None or first.dim() != 2 or first.is_floating_point()
            or first.is_complex() or first.dtype == torch.bool):
        return None
    return first.shape[0] * first.shape[1]


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


@dataclasses.dataclass
class TorchStep:
    """What `flopgrad bill --torch` prints: the step's Bill and, measured on the model
    after the step, its parameters and the bytes of weights, gradients and optimizer
    state; `activations` is the bytes saved for backward that the step made (each buffer
    once; not the weights, nor the batch, which was alive before the step). `tokens` is
    b * s for an integer (b, s) first input, else None."""

    spec: str
    model_class: str
    params: int
    trainable: int
    dtypes: str
    batch: str
    device: str
    tokens: int | None
    seconds: float
    bill: Bill
    weights: int
    buffers: int
    gradients: int
    optimizer_state: int
    activations: int
    shape: tuple | None = None  # (layers, d_model, seq) of a transformer's config


def _transformer_shape(model, batch) -> tuple | None:
    """(layers, d_model, seq) from a Hugging Face-style config and the token ids."""
    cfg = getattr(model, "config", None)
    layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None)
    width = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None)
    tokens = _tokens(batch)
    if not (isinstance(layers, int) and isinstance(width, int) and tokens):
        return None
    items = (list(batch.values()) if isinstance(batch, Mapping) else
             list(batch) if isinstance(batch, tuple | list) else [batch])
    ids = next(x for x in items if isinstance(x, torch.Tensor))
    return layers, width, ids.shape[1]


def formula_rows(step: TorchStep) -> list[dict]:
    """6·N·D and PaLM's 6N + 12·L·H·Q·T beside the step's counted matmul FLOPs (forward and
    backward tensor FLOPs), with the reasons they differ, for a transformer whose config
    gives its layers and width (else []). M, the parameters that matmuls use, is read off
    the bill: every matmul weight's dW costs 2 FLOPs per token.

    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     net = pathlib.Path(tmp, "net.py")
    ...     _ = net.write_text("import torch\\ndef build():\\n"
    ...                        "    return torch.nn.Linear(8, 4), torch.randn(16, 8)\\n")
    ...     formula_rows(step_report(f"{net}:build"))  # no transformer config: no rows
    []
    """
    if step.shape is None or not step.tokens:
        return []
    layers, d, seq = step.shape
    bill, n, tokens = step.bill, step.params, step.tokens
    counted = bill.flops("forward", kind="tensor") + bill.flops("backward", kind="tensor")
    matmul_weights = bill.flops("backward", role="weight", kind="tensor") // (2 * tokens)
    lookup = n - matmul_weights
    attention = 12 * layers * seq * d * tokens
    rest = counted - 6 * matmul_weights * tokens - attention
    fused = (f"; the other {rest:,} are the fused attention kernel's recomputed QKᵀ and any "
             f"matmul without a weight" if rest else "")
    rows = [
        {"formula": "6·N·D (N = all parameters)", "value": 6 * n * tokens,
         "counted": counted,
         "reason": f"leaves out attention over the context (12·L·s·d per token: "
                   f"{attention:,} in all) and bills the {lookup:,} parameters no matmul "
                   f"uses (embedding lookups, norms, biases) as if they were matmul weights"},
        {"formula": "PaLM 6N + 12·L·H·Q·T", "value": 6 * n * tokens + attention,
         "counted": counted,
         "reason": f"the same attention term; N counts the {lookup:,} parameters no matmul "
                   f"uses: 6·M·D + 12·L·H·Q·T with M = {matmul_weights:,} gives "
                   f"{6 * matmul_weights * tokens + attention:,}{fused}"},
    ]
    for r in rows:
        r["ratio"] = r["counted"] / r["value"]
    return rows


def step_report(spec: str) -> TorchStep:
    """Load "FILE.py:FUNCTION", bill one AdamW training step of its model on its batch
    (train_step_bill) and measure what the step left: the TorchStep the CLI prints.

    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     net = pathlib.Path(tmp, "net.py")
    ...     _ = net.write_text("import torch\\ndef build():\\n"
    ...                        "    net = torch.nn.Sequential(torch.nn.Linear(8, 4), "
    ...                        "torch.nn.Tanh())\\n    return net, torch.randn(16, 8)\\n")
    ...     step = step_report(f"{net}:build")
    >>> step.params, step.batch, step.weights, step.optimizer_state, step.activations
    (36, '(16, 8) float32', 144, 296, 256)
    """
    model, batch = load_model_and_batch(spec)
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    opt = torch.optim.AdamW(trainable) if trainable else "adamw"
    start = time.perf_counter()
    try:
        bill = train_step_bill(model, batch, opt)
    except ValueError as err:
        raise ValueError(f"{spec}: {err}") from err
    seconds = time.perf_counter() - start
    devices = sorted({str(p.device) for p in params}) or ["cpu"]
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in params})
    state = [v for s in opt.state.values() for v in s.values()]
    return TorchStep(
        spec=spec, model_class=type(model).__name__, params=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in trainable), dtypes=", ".join(dtypes),
        batch=_describe(batch), device=", ".join(devices), tokens=_tokens(batch),
        seconds=seconds, bill=bill, weights=_nbytes(params), buffers=_nbytes(model.buffers()),
        gradients=_nbytes(p.grad for p in trainable), optimizer_state=_nbytes(state),
        activations=sum(e["bytes"] for e in bill.saved() if not e["leaf"]),
        shape=_transformer_shape(model, batch))

"""flopgrad.torch.profile: the flopgrad Bill of ordinary PyTorch code.

A TorchDispatchMode sees every aten op (forward, backward, optimizer) and appends one
flopgrad ledger Event for it, costed by `flopgrad.torch.aten`'s table of the same formulas
the native primitives use:
- phase: "backward" while autograd runs a graph task, "optimizer" inside an optimizer step
  (torch's global step hooks), "forward" otherwise;
- scope: the innermost module (flopgrad.torch.scopes) in forward; in backward, the scope of
  the forward op whose autograd node runs (matched by the node's sequence number);
- role, in backward: "weight" (dW) when the op's output has the shape of an nn.Parameter
  that the running autograd node accumulates into, else "input" (dX): read off the
  autograd graph (`torch._C._current_autograd_node()`'s next functions);
- saved tensors: `torch.autograd.graph.saved_tensors_hooks`, each once per storage, with
  shape, dtype, bytes, scope and the user's line; tensors sharing a parameter's storage
  are marked `leaf` (they are weights, not activations);
- memory: live bytes per storage by category, their peak and timeline
  (flopgrad.torch.memory);
- "recompute" for the forward ops torch.utils.checkpoint re-runs in backward, and
  "communication" for torch.distributed's collectives (DDP's gradient all-reduce), billed
  by the bytes of the tensors they reduce.
Ops without a formula are billed as unknown and listed (`bill.unknown_ops()`).
torch is imported only when this module is.
"""

from __future__ import annotations

import re
import threading
import time
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from flopgrad.ledger import Ledger, _user_frame
from flopgrad.ops import Op
from flopgrad.report import Bill
from flopgrad.torch.aten import (
    BATCH_NORMS,
    batch_norm_parts,
    convolution_parts,
    group_norm_parts,
    layer_norm_parts,
    lookup,
)
from flopgrad.torch.memory import ACTIVATIONS, GRADIENTS, OPTIMIZER_STATE, PARAMETERS, StorageMemory
from flopgrad.torch.scopes import ModuleScopes

_OPS: dict[str, Op] = {}
_PART_OPS: dict = {}  # convolution_backward's parts, one Op per cost


def _op(name: str) -> Op:
    """The flopgrad Op an aten op is billed as (one per aten name, cached)."""
    op = _OPS.get(name)
    if op is None:
        found = lookup(name)
        if found is None:
            op = Op(name, forward=None, unknown_cost=True)
        else:
            billed, cost, view = found
            op = Op(billed, forward=None, cost=cost, view=view, key=name)
        _OPS[name] = op
    return op


_ALIASES: dict = {}  # aten overload -> whether its outputs alias an input (views, in-place)
_COLLECTIVES = {"c10d", "_c10d_functional"}


def _aliases(func) -> bool:
    found = _ALIASES.get(func)
    if found is None:
        found = _ALIASES[func] = any(r.alias_info is not None for r in func._schema.returns)
    return found


def _phase_in_graph_task() -> str:
    """"recompute" while torch.utils.checkpoint re-runs a forward inside backward (its
    recomputation hook is the innermost saved-tensors hook), else "backward"."""
    hooks = torch._C._autograd._top_saved_tensors_default_hooks(False)
    if hooks is not None and "_recomputation_hook" in getattr(hooks[0], "__qualname__", ""):
        return "recompute"
    return "backward"


# backward ops that compute dX, dW (and db) at once: billed as one event per gradient
_SPLIT = {"convolution_backward", "native_layer_norm_backward", "native_batch_norm_backward",
          "native_group_norm_backward"}
_SKIP = {"_record_function_enter_new", "_record_function_exit", "_record_function_enter"}
_THROUGH = {"TBackward0", "ViewBackward0", "UnsafeViewBackward0", "PermuteBackward0",
            "TransposeBackward0", "ExpandBackward0", "ReshapeAliasBackward0"}


_FORWARD_NAMES: dict[str, str] = {}


def _forward_name(node_name: str) -> str:
    """_find_forward_name, once per autograd node type."""
    found = _FORWARD_NAMES.get(node_name)
    if found is None:
        found = _FORWARD_NAMES[node_name] = _find_forward_name(node_name)
    return found


def _find_forward_name(node_name: str) -> str:
    """The billed name of the forward op an autograd node differentiates: AddmmBackward0 ->
    addmm -> matmul, LogSoftmaxBackward0 -> log_softmax."""
    base = node_name.rsplit("Backward", 1)[0]
    snake = "".join("_" + c.lower() if c.isupper() else c for c in base).lstrip("_")
    snake = re.sub(r"(\d)_d", r"\1d", snake)  # MaxPool2D -> max_pool2d
    for name in (snake, "_" + snake, snake.replace("_", "")):
        found = lookup(name)
        if found is not None:
            return found[0]
    return snake


def _leaf_behind(fn):
    """The leaf tensor an autograd edge accumulates into, through view-like nodes."""
    for _ in range(8):
        if fn is None:
            return None
        var = getattr(fn, "variable", None)
        if var is not None:
            return var
        if type(fn).__name__ not in _THROUGH or not fn.next_functions:
            return None
        fn = fn.next_functions[0][0]
    return None


def _tensors(*groups) -> list:
    """The tensors among the values of groups, and in lists and tuples among them (an aten
    op's arguments and results nest no deeper; cheaper than a pytree flatten)."""
    found = []
    for group in groups:
        for a in group:
            if isinstance(a, torch.Tensor):
                found.append(a)
            elif isinstance(a, list | tuple):
                found.extend(t for t in a if isinstance(t, torch.Tensor))
    return found


def _shape(x) -> tuple:
    return tuple(x.shape) if isinstance(x, torch.Tensor) else ()


class _Mode(TorchDispatchMode):
    def __init__(self, ledger: Ledger, scopes: ModuleScopes, params: set):
        super().__init__()
        self.ledger, self.params = ledger, params
        self.scope = scopes.current
        self.phase = "forward"  # outside a graph task
        self.now, self.where = "forward", ""  # the phase and scope of the op running last
        self.scope_of_node: dict[int, str] = {}  # autograd node sequence number -> scope
        self.last_seq = -1
        self.saved_keys: set = set()
        self.memory = StorageMemory(ledger, lambda: (self.now, self.where))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        start = time.perf_counter_ns()
        out = func(*args, **kwargs)
        end = time.perf_counter_ns()
        name = func.overloadpacket.__name__
        if name in _SKIP:  # the profiler's own markers, not work
            return out
        tensors = _tensors(args, kwargs.values())
        outs = ([out] if isinstance(out, torch.Tensor)
                else _tensors(out) if isinstance(out, list | tuple) else [])
        first = outs[0] if outs else None
        params = tuple(a for a in (*args, *kwargs.values()) if not isinstance(a, torch.Tensor)
                       and isinstance(a, int | float | bool | str | list | tuple))
        if name in BATCH_NORMS:  # which optional tensors were given (None is not one)
            params += (tuple(a is not None for a in args[:5]),)
        if func.namespace in _COLLECTIVES:
            self.now, self.where = "communication", self.scope()
            self._communication(name, tensors, start, end)
            return out
        role = grad_of = None
        if torch._C._current_graph_task_id() == -1:
            phase = self.phase
            scope = "optimizer" if phase == "optimizer" else self.scope()  # as natively
            seq = torch._C._autograd._get_sequence_nr()
            if seq != self.last_seq:  # the op made an autograd node, numbered seq - 1
                self.scope_of_node[seq - 1] = scope
                self.last_seq = seq
        else:
            phase = _phase_in_graph_task()
            node = torch._C._current_autograd_node()
            scope = None
            if phase == "backward":
                if node is not None:  # where the forward op this node differentiates ran
                    scope = self.scope_of_node.get(node._sequence_nr())
                if first is not None:
                    role, grad_of = self._role(node, first, tensors)
            if scope is None:
                scope = self.scope()
        self.now, self.where = phase, scope
        if first is not None and first.is_meta:
            self.ledger.saw_meta = True  # no op ran on data: measured times are not the ops'
        if not _aliases(func):
            for o in outs:
                self.memory.track(o, ACTIVATIONS)
        if name in _SPLIT:
            self._split(name, args, tensors, outs, phase, scope, start, end)
            return out
        ev = (_op(name), tuple(tuple(t.shape) for t in tensors),
              tuple(t.element_size() for t in tensors), _shape(first),
              first.element_size() if first is not None else 0, params, phase, role,
              grad_of, scope, start, end, False, ())
        self.ledger.events.append(ev)
        return out

    def _communication(self, name: str, tensors: list, start: int, end: int) -> None:
        """A collective: its bytes are the tensors it reduces, gathers or sends."""
        op = _OPS.get(("communication", name))
        if op is None:
            op = _OPS[("communication", name)] = Op(name, forward=None, key=name)
        self.ledger.events.append(
            (op, tuple(tuple(t.shape) for t in tensors),
             tuple(t.element_size() for t in tensors), (), 0, (), "communication", None, None,
             self.scope(), start, end, False, ()))

    def _split(self, key: str, args, tensors, outs, phase, scope, start, end) -> None:
        """An aten backward op that computes dX, dW (and db) at once: one event each."""
        if key == "convolution_backward":
            grad_out, inp, weight = (tuple(t.shape) for t in args[:3])
            parts = convolution_parts(grad_out, inp, weight, args[-1])
            billed = ("matmul", "sum")
        elif key == "native_group_norm_backward":  # (grad, x, mean, rstd, w, N, C, HxW, G, mask)
            parts = group_norm_parts(tuple(args[0].shape), args[5] * args[8], args[6],
                                     args[4] is not None, args[-1])
            billed = ("group_norm", "group_norm")
        elif key == "native_batch_norm_backward":  # (grad, input, weight, ..., train, eps, mask)
            parts = batch_norm_parts(tuple(args[0].shape), bool(args[7]), args[-1])
            billed = ("batch_norm", "batch_norm")
        else:  # native_layer_norm_backward(grad, input, shape, mean, rstd, weight, bias, mask)
            weight = _shape(args[5]) if len(args) > 5 else ()
            parts = layer_norm_parts(tuple(args[0].shape), tuple(args[2]), weight, args[-1])
            billed = ("layer_norm", "layer_norm")
        grads = [o for o, m in zip(outs, [m for m in args[-1] if m], strict=False)]
        for slot, ((role, cost), grad) in enumerate(zip(parts, grads, strict=False)):
            name = billed[0] if cost.tensor or key != "convolution_backward" else billed[1]
            op = _PART_OPS.setdefault((name, cost), Op(name, forward=None,
                                                       cost=lambda o, i, p, c=cost: c, key=key))
            self.ledger.events.append(
                (op, tuple(tuple(t.shape) for t in tensors),
                 tuple(t.element_size() for t in tensors), tuple(grad.shape),
                 grad.element_size(), (), phase, role, (billed[0], slot), scope, start, end,
                 False, ()))

    def _role(self, node, out, tensors) -> tuple:
        """dW when out has the shape of a parameter the node accumulates into and the op
        does not read that parameter (dX = g·W reads W; dW = gᵀ·X does not: this tells
        them apart when X's gradient has W's shape)."""
        if node is None:
            return "input", None
        forward = _forward_name(type(node).__name__)
        shape = sorted(d for d in out.shape if d != 1)  # (1, n) and (n,) alike, W.T and W
        for slot, (fn, _) in enumerate(node.next_functions):
            var = _leaf_behind(fn)
            if (isinstance(var, torch.nn.Parameter)
                    and sorted(d for d in var.shape if d != 1) == shape):
                key = var.untyped_storage()._cdata
                if any(t.untyped_storage()._cdata == key for t in tensors):
                    break
                return "weight", (forward, slot)
        return "input", (forward, 0)

    def pack(self, t: torch.Tensor):
        storage = t.untyped_storage()
        key = storage._cdata
        shared = key in self.saved_keys
        self.saved_keys.add(key)
        nbytes = storage.nbytes()
        made = self.memory.alive.get(key)  # not an activation: a weight, or data made before
        leaf = key in self.params or made is None or made.category != ACTIVATIONS
        entry = ["saved", "tensor", tuple(t.shape), t.dtype, 0 if shared else nbytes,
                 t.numel() * t.element_size(), self.scope(), _user_frame(), leaf, shared, 1,
                 "forward" if torch._C._current_graph_task_id() == -1 else "recompute"]
        self.ledger._saved_raw.append(entry)
        return self.memory.save(t, key)

    def accumulated(self, param: torch.Tensor) -> None:
        """A parameter's .grad was accumulated: its storage is a gradient from now on."""
        if param.grad is not None:
            self.memory.track(param.grad, GRADIENTS)

    def stepping(self) -> None:
        self.phase = self.now = "optimizer"
        self.step_start = len(self.ledger.timeline)

    def stepped(self, optimizer) -> None:
        """After an optimizer step: its state tensors are optimizer state (from when the
        step made them)."""
        state = [v for s in optimizer.state.values() for v in s.values()
                 if isinstance(v, torch.Tensor) and v.numel() > 1]
        self.memory.refile(state, OPTIMIZER_STATE, self.step_start)
        self.phase = self.now = "forward"


class profile:
    """Bill ordinary PyTorch code: `with flopgrad.torch.profile(model) as bill:` around its
    forward, `loss.backward()` and `optimizer.step()` (CPU, meta or CUDA tensors).

    >>> import torch, flopgrad.torch
    >>> lin = torch.nn.Linear(8, 4)
    >>> with flopgrad.torch.profile(lin) as bill:
    ...     lin(torch.randn(16, 8)).sum().backward()
    >>> bill.flops("forward", kind="tensor"), bill.flops("backward", role="weight", kind="tensor")
    (1024, 1024)
    """

    def __init__(self, model: torch.nn.Module | None = None):
        if model is not None and not isinstance(model, torch.nn.Module):
            raise TypeError(f"flopgrad.torch.profile: model must be a torch.nn.Module or "
                            f"None, got {type(model).__name__}")
        self.model = model
        self.ledger = Ledger(memory=True, events=True)
        self.bill = Bill(self.ledger)
        self._params = list(model.parameters()) if model is not None else []
        params = {p.untyped_storage()._cdata for p in self._params}
        self._scopes = ModuleScopes(model)
        self._mode = _Mode(self.ledger, self._scopes, params)
        self._hooks: list = []
        self._saved = None

    def __enter__(self) -> Bill:
        mode = self._mode
        ref = weakref.ref(mode)

        thread = threading.get_ident()

        def pre(optimizer, args, kwargs):  # torch's step hooks are global: this thread's
            m = ref()
            if m is not None and threading.get_ident() == thread:
                m.stepping()

        def post(optimizer, args, kwargs):
            m = ref()
            if m is not None and threading.get_ident() == thread:
                m.stepped(optimizer)

        def accumulated(param):
            m = ref()
            if m is not None:
                m.accumulated(param)

        from torch.optim.optimizer import (
            register_optimizer_step_post_hook,
            register_optimizer_step_pre_hook,
        )

        self._hooks = [register_optimizer_step_pre_hook(pre),
                       register_optimizer_step_post_hook(post)]
        self.ledger.t0 = time.perf_counter_ns()
        self.ledger.active = True
        for p in self._params:
            mode.memory.track(p, PARAMETERS)
            if p.grad is not None:
                mode.memory.track(p.grad, GRADIENTS)
            if p.requires_grad:
                self._hooks.append(p.register_post_accumulate_grad_hook(accumulated))
        self._scopes.__enter__()
        self._saved = torch.autograd.graph.saved_tensors_hooks(mode.pack, _unpack)
        self._saved.__enter__()
        mode.__enter__()
        return self.bill

    def __exit__(self, *exc) -> bool:
        self._mode.__exit__(*exc)
        self._saved.__exit__(*exc)
        self._scopes.__exit__(*exc)
        for h in self._hooks:
            h.remove()
        self.ledger.active = False
        return False


def _unpack(saved):
    return saved.tensor

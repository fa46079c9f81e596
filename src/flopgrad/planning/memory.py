"""The memory of a training step, in one place: the bytes of weights, gradients and
optimizer state planned from a parameter count (by optimizer and dtype), and the same
categories measured on the bill of a step.

`fg.budget` plans with `state_bytes` and `flopgrad bill` prints `step_memory`; a meta step
of float32 AdamW measures what `state_bytes` plans:

>>> import flopgrad as fg
>>> cfg = fg.models.GPTConfig(n_layer=1, n_head=1, d_model=8, ctx=4, vocab=16)
>>> m = fg.planning.step_memory(fg.planning.step_bill(cfg)[0])
>>> planned = fg.planning.state_bytes(cfg.num_params(), optimizer="adamw", dtype="float32")
>>> (m.weights, m.gradients, m.optimizer_state) == tuple(planned.values())
True
"""

from __future__ import annotations

from dataclasses import dataclass

from flopgrad.report import Bill

__all__ = ["DTYPE_BYTES", "STATE_TENSORS", "state_bytes", "saved_activation_bytes",
           "StepMemory", "step_memory"]

DTYPE_BYTES: dict[str, int] = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}

# Tensors of optimizer state per parameter tensor, each the parameter's shape and dtype:
# SGD keeps none (one momentum buffer with momentum), Adam and AdamW two moments.
STATE_TENSORS: dict[str, int] = {"sgd": 0, "sgd-momentum": 1, "adam": 2, "adamw": 2}


def state_bytes(params: int, optimizer: str = "adamw",
                dtype: str = "float32") -> dict[str, int]:
    """Bytes of the weights, gradients and optimizer state of `params` parameters: what
    stays alive from one training step to the next, activations aside.

    >>> import flopgrad as fg
    >>> fg.planning.state_bytes(1000)
    {'weights': 4000, 'gradients': 4000, 'optimizer state': 8000}
    >>> fg.planning.state_bytes(1000, optimizer="sgd-momentum", dtype="bfloat16")
    {'weights': 2000, 'gradients': 2000, 'optimizer state': 2000}
    """
    if optimizer not in STATE_TENSORS:
        raise KeyError(f"unknown optimizer {optimizer!r}; known: "
                       f"{', '.join(sorted(STATE_TENSORS))}")
    if dtype not in DTYPE_BYTES:
        raise KeyError(f"unknown dtype {dtype!r}; known: {', '.join(sorted(DTYPE_BYTES))}")
    tensor = DTYPE_BYTES[dtype] * params
    return {"weights": tensor, "gradients": tensor,
            "optimizer state": STATE_TENSORS[optimizer] * tensor}


def saved_activation_bytes(bill: Bill) -> int:
    """Bytes a step saved for backward that are not leaves (parameters and inputs are
    counted elsewhere): the activations, kept from the forward to the backward (values a
    checkpoint recomputes in backward are not among them; its kept inputs are).

    >>> import flopgrad as fg
    >>> w = fg.nn.Parameter(fg.ones(4, 4))
    >>> with fg.profile() as bill:
    ...     fg.tanh(fg.ones(2, 4) @ w).sum().backward()
    >>> fg.planning.saved_activation_bytes(bill)  # tanh keeps its 2 x 4 float32 output
    32
    """
    return sum(e["bytes"] for e in bill.saved() if not e["leaf"] and e["phase"] != "recompute")


@dataclass(frozen=True)
class StepMemory:
    """Live bytes of one training step by category, as measured on its bill.

    >>> import flopgrad as fg
    >>> m = fg.planning.StepMemory(weights=4, gradients=4, optimizer_state=8,
    ...                            activations=2, peak=20)
    >>> m.peak, m.later_peak
    (20, 28)
    """

    weights: int
    gradients: int
    optimizer_state: int
    activations: int  # saved for backward, leaves aside
    peak: int  # peak live bytes of this step

    @property
    def later_peak(self) -> int:
        """At most the peak of a later step: the first step makes the optimizer state, a
        later one starts with all of it alive, so its peak is at most this one's plus the
        whole state.

        >>> import flopgrad as fg
        >>> fg.planning.StepMemory(weights=4, gradients=4, optimizer_state=8,
        ...                        activations=0, peak=16).later_peak
        24
        """
        return self.peak + self.optimizer_state


def step_memory(bill: Bill) -> StepMemory:
    """The memory of the step a bill records: weights, gradients and optimizer state alive
    at its end, activations saved for backward, and its peak.

    >>> import flopgrad as fg
    >>> cfg = fg.models.GPTConfig(n_layer=2, n_head=2, d_model=16, ctx=8, vocab=32)
    >>> m = fg.planning.step_memory(fg.planning.step_bill(cfg)[0])
    >>> m.weights == 4 * cfg.num_params(), m.optimizer_state == 2 * m.weights
    (True, True)
    """
    live = bill.memory_breakdown()["live"]
    return StepMemory(weights=live["parameters"], gradients=live["gradients"],
                      optimizer_state=live["optimizer_state"],
                      activations=saved_activation_bytes(bill), peak=bill.peak_bytes)

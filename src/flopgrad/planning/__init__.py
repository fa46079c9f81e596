"""The training-budget planner: exact FLOPs per token from a meta step, GPU-hours and money.

>>> import flopgrad as fg
>>> b = fg.budget(params=7e9, tokens=2e12, gpu="h100", gpus=1024, mfu=0.4)
>>> f"{b.flops:.3g}", round(b.days, 1)
('8.4e+22', 2.4)

The parts: `hardware` (the GPU table), `presets` (configurations by name), `bill` (the
meta step and the published formulas beside it), `memory` (the bytes of weights, gradients,
optimizer state and activations of a step: planned and measured), `budgets` (budget()),
`checkpoint` (which blocks to recompute under a memory budget), `schedules` (binomial
checkpoint schedules for chains of equal steps) and `parallel` (per-GPU model states under
ZeRO, activations under tensor/sequence/pipeline parallelism, communication volumes and
the pipeline bubble, each a published formula).
"""

from __future__ import annotations

from flopgrad.planning.bill import (
    CHECKPOINT_CHOICES,
    checkpointed_step_bill,
    formula_table,
    gpt_step,
    plan_gpt_checkpoints,
    step_bill,
    training_flops,
)
from flopgrad.planning.budgets import Budget, budget
from flopgrad.planning.checkpoint import CheckpointPlan, parse_bytes, plan_checkpoints
from flopgrad.planning.hardware import GPU, GPUS
from flopgrad.planning.memory import (
    DTYPE_BYTES,
    STATE_TENSORS,
    StepMemory,
    saved_activation_bytes,
    state_bytes,
    step_memory,
)
from flopgrad.planning.parallel import (
    BYTES_PER_PARAM,
    RECOMPUTE,
    Convention,
    all_gather_bytes,
    all_reduce_bytes,
    check_layout,
    data_parallel_bytes,
    korthikanti_activation_bytes,
    korthikanti_extra_bytes,
    korthikanti_layer_bytes,
    model_state_bytes,
    pipeline_bubble,
    pipeline_bubble_share,
    pipeline_p2p_bytes,
    reduce_scatter_bytes,
    tensor_parallel_bytes,
)
from flopgrad.planning.plan import Plan, plan, search
from flopgrad.planning.presets import PLANNING_PRESETS, model_config

__all__ = ["Plan", "plan", "search", "GPUS", "GPU", "Budget", "budget", "step_bill",
           "model_config", "PLANNING_PRESETS", "formula_table", "training_flops", "state_bytes",
           "saved_activation_bytes", "StepMemory", "step_memory", "DTYPE_BYTES",
           "STATE_TENSORS", "CheckpointPlan", "parse_bytes", "plan_checkpoints", "gpt_step",
           "plan_gpt_checkpoints", "checkpointed_step_bill", "CHECKPOINT_CHOICES",
           "Convention", "BYTES_PER_PARAM", "RECOMPUTE", "model_state_bytes",
           "korthikanti_layer_bytes", "korthikanti_activation_bytes", "korthikanti_extra_bytes",
           "all_reduce_bytes", "reduce_scatter_bytes", "all_gather_bytes", "data_parallel_bytes",
           "tensor_parallel_bytes", "pipeline_p2p_bytes", "pipeline_bubble",
           "pipeline_bubble_share", "check_layout"]

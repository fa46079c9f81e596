"""fg.memory: the memory half of the bill. Checkpoint plans under a budget, the optimal
(binomial) schedule for a chain of equal steps, and byte sizes.

>>> import flopgrad as fg
>>> fg.memory.binomial_forward_steps(100, 19), fg.memory.uniform_forward_steps(100, 10)
(179, 189)
>>> fg.memory.parse_bytes("1.5KiB")
1536
"""

from __future__ import annotations

from flopgrad.planning.checkpoint import (
    Candidate,
    CheckpointBudgetError,
    CheckpointPlan,
    default_candidates,
    parse_bytes,
    plan_checkpoints,
)
from flopgrad.planning.schedules import (
    Schedule,
    binomial_forward_steps,
    binomial_schedule,
    optimal_forward_steps,
    schedule_table,
    uniform_forward_steps,
)

__all__ = ["Candidate", "CheckpointBudgetError", "CheckpointPlan", "Schedule",
           "binomial_forward_steps", "binomial_schedule", "default_candidates",
           "optimal_forward_steps", "parse_bytes", "plan_checkpoints", "schedule_table",
           "uniform_forward_steps"]

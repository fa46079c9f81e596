"""Mixed precision: fg.autocast (per-op casting) and GradScaler (loss scaling for float16).

>>> import flopgrad as fg
>>> fg.amp.GradScaler().get_scale(), fg.amp.autocast is fg.autocast
(65536.0, True)
"""

from __future__ import annotations

from flopgrad.amp.autocast import POLICY, autocast
from flopgrad.amp.grad_scaler import GradScaler

__all__ = ["POLICY", "GradScaler", "autocast"]

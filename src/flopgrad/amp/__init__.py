"""Mixed precision: fg.autocast (per-op casting) and GradScaler (loss scaling for float16)."""

from __future__ import annotations

from flopgrad.amp.autocast import POLICY, autocast

__all__ = ["POLICY", "autocast"]

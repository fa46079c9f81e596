"""fg.amp: mixed-precision training helpers (PyTorch's torch.amp).

>>> import flopgrad as fg
>>> fg.amp.GradScaler(init_scale=1024.0).get_scale()
1024.0
"""

from flopgrad.amp.grad_scaler import GradScaler

__all__ = ["GradScaler"]

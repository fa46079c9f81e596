"""flopgrad's bill for PyTorch code (`pip install "flopgrad[torch]"`): `profile` yields a
flopgrad Bill for ordinary torch code; `aten` maps aten ops onto flopgrad's cost formulas.
The core of flopgrad never imports torch; importing this package does.
"""

from __future__ import annotations

from flopgrad.torch.bill import profile

__all__ = ["profile"]

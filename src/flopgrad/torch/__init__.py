"""flopgrad's bill for PyTorch code (`pip install "flopgrad[torch]"`): `profile` yields a
flopgrad Bill for ordinary torch code; `twin` builds the torch twin of a flopgrad model;
`aten` maps aten ops onto flopgrad's cost formulas.
The core of flopgrad never imports torch; importing this package does.
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as err:  # one line that says what to do, not torch's own traceback
    raise ImportError(f'flopgrad.torch needs PyTorch, which cannot be imported ({err}): '
                      f'pip install "flopgrad[torch]"') from None

from flopgrad.torch.bill import profile  # noqa: E402
from flopgrad.torch.twins import twin  # noqa: E402

__all__ = ["profile", "twin"]

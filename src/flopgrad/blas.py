"""a += alpha * b in one pass, through the BLAS that NumPy itself links.

NumPy has no fused multiply-add ufunc, so `a += alpha * b` costs a temporary the size of
`b` and two passes over memory; the optimizers do it for every parameter at every step.
BLAS's axpy does it in one. NumPy's Linux wheels ship OpenBLAS as
`numpy.libs/libscipy_openblas64_*.so`, the library NumPy's own matmul runs on (so its
thread pool is the one the GEMMs use, not a second one competing for the cores). Where that
library is not found (other platforms and builds), `axpy` returns False and the caller
uses the two NumPy passes.
"""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

MIN_SIZE = 1 << 15  # below this, the foreign call costs more than NumPy's two passes
_axpy: dict | None = None  # dtype -> BLAS function, loaded on first use


def _load() -> dict:
    site = os.path.dirname(os.path.dirname(np.__file__))
    for path in sorted(glob.glob(os.path.join(site, "numpy.libs", "libscipy_openblas64_*"))):
        try:
            lib = ctypes.CDLL(path)
            found = {np.dtype(np.float32): (lib.scipy_cblas_saxpy64_, ctypes.c_float),
                     np.dtype(np.float64): (lib.scipy_cblas_daxpy64_, ctypes.c_double)}
        except (OSError, AttributeError):
            continue
        for fn, scalar in found.values():
            fn.restype = None
            fn.argtypes = [ctypes.c_int64, scalar, ctypes.c_void_p, ctypes.c_int64,
                           ctypes.c_void_p, ctypes.c_int64]
        return {dtype: fn for dtype, (fn, _) in found.items()}
    return {}


def axpy(a: np.ndarray, b: np.ndarray, alpha: float) -> bool:
    """a += alpha * b in place with one BLAS pass; False (a untouched) where BLAS can't do it.

    >>> import numpy as np
    >>> from flopgrad import blas
    >>> a, b = np.ones(blas.MIN_SIZE, np.float32), np.full(blas.MIN_SIZE, 2, np.float32)
    >>> done = blas.axpy(a, b, 0.5)
    >>> float(a[0]) if done else 2.0
    2.0
    """
    global _axpy
    if _axpy is None:
        _axpy = _load()
    fn = _axpy.get(a.dtype)
    if (fn is None or a.size < MIN_SIZE or b.dtype != a.dtype or b.shape != a.shape
            or not (a.flags.c_contiguous and b.flags.c_contiguous and a.flags.writeable)
            or (a is not b and np.may_share_memory(a, b))):
        return False
    fn(a.size, float(alpha), b.ctypes.data, 1, a.ctypes.data, 1)
    return True

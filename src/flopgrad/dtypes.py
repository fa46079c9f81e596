"""The dtypes flopgrad computes with, by name, and the one function that normalises them."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

# bfloat16 through ml_dtypes: NumPy's dtype kind "V"; flopgrad's floating checks accept it
bfloat16 = np.dtype(ml_dtypes.bfloat16)

DTYPES = {
    "float16": np.float16, "half": np.float16, "bfloat16": bfloat16, "float32": np.float32,
    "float": np.float32,
    "float64": np.float64, "double": np.float64, "int8": np.int8, "int16": np.int16,
    "int32": np.int32, "int64": np.int64, "long": np.int64, "uint8": np.uint8, "bool": np.bool_,
}
float16, float32, float64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
int32, int64, bool_ = np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.bool_)

_DEFAULT_FLOAT = np.dtype(np.float32)


def as_dtype(dtype: Any) -> np.dtype | None:
    """Normalise a dtype given as a NumPy dtype, a type, or a name ("float32", "double").

    >>> import flopgrad as fg
    >>> from flopgrad.tensor import as_dtype
    >>> as_dtype("double"), as_dtype(float), as_dtype(None)
    (dtype('float64'), dtype('float32'), None)
    """
    if dtype is None:
        return None
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise TypeError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)}")
        return np.dtype(DTYPES[dtype])
    if dtype is float:
        return _DEFAULT_FLOAT
    dt = np.dtype(dtype)
    if dt.kind not in "biuf" and dt != bfloat16:
        raise TypeError(_bad_dtype(dt))
    return dt


def _bad_dtype(dtype: np.dtype, source: str = "") -> str:
    what = {"c": "complex numbers are", "O": "Python objects (e.g. None, mixed types) are"}.get(
        dtype.kind, "this dtype is")
    return (f"cannot make a tensor {source}of dtype {dtype}: {what} not supported; flopgrad "
            "tensors hold bool, integer or floating-point values")

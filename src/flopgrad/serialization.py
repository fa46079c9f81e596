"""fg.save / fg.load: state dicts in the safetensors format, written atomically.

Tensors go in the safetensors body; everything else (optimizer step counts and
hyper-parameters, nesting) goes in the header's metadata as JSON.

>>> import flopgrad as fg, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
>>> fg.save({"w": fg.ones(2)}, path)
>>> fg.load(path)["w"]
tensor([1., 1.])
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save

from flopgrad.files import write_atomic_bytes
from flopgrad.tensor import Tensor

_TREE_KEY = "flopgrad.tree"
_HEADER_KEY = "__metadata__"  # safetensors' reserved header entry: no tensor may use it


def _key_name(key, prefix: str) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, int | np.integer) and not isinstance(key, bool | np.bool_):
        return str(int(key))
    raise TypeError(f"save: dict keys must be str or int, got {type(key).__name__} {key!r}"
                    f"{f' in {prefix!r}' if prefix else ''}")


def _flatten(obj, prefix: str, arrays: dict):
    """Replace arrays by {"__tensor__": key} markers, collecting them in `arrays`.

    Raises ValueError on every name clash (two tensors under one name, or two dict keys
    that are stored alike), before anything is written."""
    if isinstance(obj, Tensor | np.ndarray):
        arr = obj._data if isinstance(obj, Tensor) else obj
        key = prefix or "tensor"
        if key == _HEADER_KEY:
            raise ValueError(f"save: a tensor cannot be stored as {key!r}: safetensors "
                             "reserves that name for the file's metadata; rename the key")
        if key in arrays:
            raise ValueError(f"save: two tensors would be stored as {key!r} (a key with a "
                             f"dot clashes with the nested keys it spells); rename one")
        arrays[key] = np.require(arr, requirements="C")  # keeps 0-d arrays 0-d
        return {"__tensor__": key}
    if isinstance(obj, dict):
        out, original = {}, {}
        for k, v in obj.items():
            name = _key_name(k, prefix)
            if name in out:
                raise ValueError(f"save: keys {original[name]!r} and {k!r}"
                                 f"{f' in {prefix!r}' if prefix else ''} would both be "
                                 f"stored as {name!r}; rename one")
            original[name] = k
            out[name] = _flatten(v, f"{prefix}.{name}" if prefix else name, arrays)
        return {"__dict__": out,
                "__intkeys__": [n for n, k in original.items() if not isinstance(k, str)]}
    if isinstance(obj, list | tuple):
        return {"__list__": [_flatten(v, f"{prefix}.{i}", arrays) for i, v in enumerate(obj)],
                "__tuple__": isinstance(obj, tuple)}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"save: cannot store {type(obj).__name__} at {prefix!r}; state dicts hold "
                    "tensors, numbers, strings, lists and dicts")


def _unflatten(obj, arrays: dict):
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return Tensor(arrays[obj["__tensor__"]])
        if "__dict__" in obj:
            ints = set(obj.get("__intkeys__", []))
            return {(int(k) if k in ints else k): _unflatten(v, arrays)
                    for k, v in obj["__dict__"].items()}
        if "__list__" in obj:
            items = [_unflatten(v, arrays) for v in obj["__list__"]]
            return tuple(items) if obj.get("__tuple__") else items
    return obj


def save(obj, path: str | os.PathLike) -> None:
    """Write a state dict (model or optimizer, or a dict of them) to a .safetensors file.

    The file is written to a temporary name and renamed, so a crash never leaves a broken
    file in place. Tensors keep their shape, 0-d included. Keys that would be stored under
    the same name (`"a.b"` beside `{"a": {"b": ...}}`, `1` beside `"1"`) and a tensor named
    `__metadata__` raise ValueError before anything is written.

    >>> import flopgrad as fg, os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     fg.save({"w": fg.ones(2), "epoch": 3}, os.path.join(tmp, "ck.safetensors"))
    ...     sorted(os.listdir(tmp))
    ['ck.safetensors']
    """
    arrays: dict = {}
    tree = _flatten(obj, "", arrays)
    blob = _st_save(arrays, metadata={_TREE_KEY: json.dumps(tree)})
    write_atomic_bytes(path, blob)


def _metadata(blob: bytes) -> dict:
    if len(blob) < 8:
        raise ValueError("load: file is too short to be safetensors")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise ValueError("load: corrupt safetensors header (length past the end of the file)")
    header = json.loads(blob[8: 8 + n])
    return header.get("__metadata__", {}) or {}


def load(path: str | os.PathLike):
    """Read what save() wrote (a plain safetensors file loads as a dict of tensors).

    >>> import flopgrad as fg, os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "ck.safetensors")
    ...     fg.save({"model": {"w": fg.ones(2)}, "epoch": 3}, path)
    ...     fg.load(path)
    {'model': {'w': tensor([1., 1.])}, 'epoch': 3}
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load: {path} does not exist")
    with open(path, "rb") as f:
        blob = f.read()
    try:
        meta = _metadata(blob)
        arrays = _st_load(blob)
    except Exception as err:
        raise ValueError(f"load: {path} is not a valid safetensors file: {err}") from None
    if _TREE_KEY not in meta:
        return {k: Tensor(v) for k, v in arrays.items()}
    return _unflatten(json.loads(meta[_TREE_KEY]), arrays)

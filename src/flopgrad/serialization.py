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

from flopgrad.dtypes import bfloat16
from flopgrad.files import write_atomic_bytes
from flopgrad.tensor import Tensor

_TREE_KEY = "flopgrad.tree"
_HEADER_KEY = "__metadata__"  # safetensors' reserved header entry: no tensor may use it
# safetensors dtypes flopgrad holds (bfloat16 through ml_dtypes); the float8/6/4 are not
_NUMPY_DTYPES = {"BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64", "F16", "BF16",
                 "F32", "F64", "C64"}


class FileFormatError(ValueError):
    """fg.load: the file is not one flopgrad can read; the message names the file and why.

    >>> import flopgrad as fg, os, tempfile
    >>> from flopgrad.serialization import FileFormatError
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "junk.safetensors")
    ...     with open(path, "wb") as f:
    ...         _ = f.write(b"junk")
    ...     try:
    ...         fg.load(path)
    ...     except FileFormatError as err:
    ...         str(err).endswith("is not a valid safetensors file: fewer than 8 bytes")
    True
    """


class _Malformed(Exception):
    """Raised inside load's checks; load turns it into a FileFormatError naming the file."""


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


def _int_key(name) -> int:
    try:
        value = int(name)
    except (TypeError, ValueError):
        value = None
    if not isinstance(name, str) or str(value) != name:
        raise _Malformed(f"integer key {name!r} is not an integer")
    return value


def _unflatten(node, arrays: dict, used: set):
    """The object save() flattened; _Malformed for anything save() never writes."""
    if node is None or isinstance(node, bool | int | float | str):
        return node
    if not isinstance(node, dict):
        raise _Malformed(f"unexpected {type(node).__name__} {str(node)[:40]}")
    if "__tensor__" in node:
        key = node["__tensor__"]
        if not isinstance(key, str) or key not in arrays:
            raise _Malformed(f"refers to tensor {str(key)[:60]!r}, which the file does not hold")
        used.add(key)
        return Tensor(arrays[key])
    if "__dict__" in node:
        items, ints = node["__dict__"], node.get("__intkeys__", [])
        if (not isinstance(items, dict) or not isinstance(ints, list)
                or not all(isinstance(k, str) for k in ints)):
            raise _Malformed("a dict entry without a dict of items and a list of integer keys")
        ints = set(ints)
        out = {}
        for k, v in items.items():
            key = _int_key(k) if k in ints else k
            if key in out:
                raise _Malformed(f"key {k!r} appears twice")
            out[key] = _unflatten(v, arrays, used)
        return out
    if "__list__" in node:
        items = node["__list__"]
        if not isinstance(items, list) or not isinstance(node.get("__tuple__", False), bool):
            raise _Malformed("a list entry without a list of items")
        out = [_unflatten(v, arrays, used) for v in items]
        return tuple(out) if node.get("__tuple__") else out
    raise _Malformed(f"an entry with keys {sorted(node)[:5]} and no __tensor__, __dict__ or "
                     "__list__")


def save(obj, path: str | os.PathLike) -> None:
    """Write a state dict (model or optimizer, or a dict of them) to a .safetensors file.

    The file is written to a temporary name and renamed, so a crash never leaves a broken
    file in place (flopgrad.files: symlinks, modes, stale temporaries). Tensors keep their
    shape, 0-d included. Keys that would be stored under the same name (`"a.b"` beside
    `{"a": {"b": ...}}`, `1` beside `"1"`) and a tensor named `__metadata__` raise
    ValueError before anything is written.

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


def _header(blob: bytes) -> dict:
    """The safetensors header of blob, checked; _Malformed if it is not one."""
    if len(blob) < 8:
        raise _Malformed("fewer than 8 bytes")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise _Malformed(f"the header length {n} runs past the end of the file")
    try:
        header = json.loads(blob[8: 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _Malformed("the header is not UTF-8 JSON") from None
    if not isinstance(header, dict):
        raise _Malformed("the header is not a JSON object")
    meta = header.get(_HEADER_KEY) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _Malformed("the header's __metadata__ is not a map of strings")
    return header


def _bfloat16_as_uint16(blob: bytes, header: dict) -> tuple[bytes, list[str]]:
    """safetensors' NumPy loader has no bfloat16 (it writes it): the header names those
    tensors uint16 (the same 2 bytes) and the caller views them as bfloat16."""
    keys = [k for k, info in header.items()
            if k != _HEADER_KEY and isinstance(info, dict) and info.get("dtype") == "BF16"]
    if not keys:
        return blob, keys
    (n,) = struct.unpack("<Q", blob[:8])
    renamed = {k: ({**info, "dtype": "U16"} if k in keys else info) for k, info in header.items()}
    text = json.dumps(renamed, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads its header with spaces to 8 bytes
    return struct.pack("<Q", len(text)) + text + blob[8 + n:], keys


def _check_dtypes(header: dict, path: str) -> None:
    for key, info in header.items():
        dtype = info.get("dtype") if isinstance(info, dict) else None
        if key == _HEADER_KEY or not isinstance(dtype, str) or dtype in _NUMPY_DTYPES:
            continue  # a malformed entry is safetensors' to report
        raise FileFormatError(f"load: {path}: tensor {key!r} has dtype {dtype[:20]!r}, which "
                              "flopgrad does not support")


def _restore(text: str, arrays: dict):
    try:
        tree = json.loads(text)
    except (ValueError, RecursionError):
        raise _Malformed(f"{_TREE_KEY} is not JSON") from None
    used: set = set()
    try:
        obj = _unflatten(tree, arrays, used)
    except RecursionError:
        raise _Malformed(f"{_TREE_KEY} is nested too deeply") from None
    unused = sorted(set(arrays) - used)
    if unused:
        raise _Malformed(f"tensors {unused[:5]} are not part of the saved object")
    return obj


def load(path: str | os.PathLike):
    """Read what save() wrote (a plain safetensors file loads as a dict of tensors).

    A file that is not valid safetensors, holds a dtype flopgrad lacks (float8, ...) or
    carries broken flopgrad metadata raises FileFormatError (a ValueError) naming the file.

    >>> import flopgrad as fg, os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "ck.safetensors")
    ...     fg.save({"model": {"w": fg.ones(2)}, "epoch": 3}, path)
    ...     fg.load(path)
    {'model': {'w': tensor([1., 1.])}, 'epoch': 3}
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"load: {path} is a directory")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load: {path} does not exist")
    with open(path, "rb") as f:
        blob = f.read()
    try:
        header = _header(blob)
    except _Malformed as err:
        raise FileFormatError(f"load: {path} is not a valid safetensors file: {err}") from None
    _check_dtypes(header, path)
    blob, bf16 = _bfloat16_as_uint16(blob, header)
    try:
        arrays = _st_load(blob)
    except Exception as err:  # safetensors' own checks (offsets, shapes, dtypes)
        raise FileFormatError(f"load: {path} is not a valid safetensors file: {err}") from None
    for key in bf16:
        arrays[key] = arrays[key].view(bfloat16)
    meta = header.get(_HEADER_KEY) or {}
    if _TREE_KEY not in meta:
        return {k: Tensor(v) for k, v in arrays.items()}
    try:
        return _restore(meta[_TREE_KEY], arrays)
    except _Malformed as err:
        raise FileFormatError(f"load: {path} has broken flopgrad metadata: {err}") from None

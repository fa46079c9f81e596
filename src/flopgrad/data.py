"""Datasets and a DataLoader. Everything here works offline.

- `digits()`: scikit-learn's 8x8 handwritten digits (1,797 images, shipped with sklearn).
- `mnist(path)`: MNIST from local IDX or .npz files.
- `text(path=None)`: characters for language modelling; the default corpus is the Python
  standard library's own source code.

>>> import flopgrad as fg
>>> train = fg.data.digits(train=True)
>>> x, y = next(iter(fg.data.DataLoader(train, batch_size=32, shuffle=True, seed=0)))
>>> x.shape, y.shape
((32, 64), (32,))
"""

from __future__ import annotations

import gzip
import os
import struct
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from flopgrad.tensor import Tensor

__all__ = ["TensorDataset", "DataLoader", "digits", "mnist", "text", "TextDataset"]


class TensorDataset:
    """Aligned arrays: item i is (a[i], b[i], ...).

    >>> import flopgrad as fg
    >>> ds = fg.data.TensorDataset(fg.arange(6).reshape(3, 2), fg.tensor([7, 8, 9]))
    >>> len(ds), [a.tolist() for a in ds[1]]
    (3, [[2, 3], 8])
    """

    def __init__(self, *arrays):
        arrays = tuple(a._data if isinstance(a, Tensor) else np.asarray(a) for a in arrays)
        if not arrays:
            raise ValueError("TensorDataset: give at least one array")
        n = len(arrays[0])
        for a in arrays:
            if len(a) != n:
                raise ValueError(f"TensorDataset: arrays have different lengths "
                                 f"{[len(x) for x in arrays]}")
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, idx):
        return tuple(a[idx] for a in self.arrays)


class DataLoader:
    """Mini-batches of a dataset as Tensors, optionally shuffled with a seed (each epoch
    reshuffles from the seeded generator, so a run is reproducible).

    >>> import flopgrad as fg
    >>> loader = fg.data.DataLoader(fg.data.TensorDataset(fg.arange(10)), batch_size=4)
    >>> len(loader), [x.tolist() for (x,) in loader]
    (3, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]])
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False,
                 seed: int | None = None, drop_last: bool = False):
        if batch_size <= 0:
            raise ValueError(f"DataLoader: batch_size must be positive, got {batch_size}")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = (
            dataset, batch_size, shuffle, drop_last)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple]:
        n = len(self.dataset)
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start: start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                return
            yield tuple(Tensor(np.ascontiguousarray(a)) for a in self.dataset[idx])


def _split(x: np.ndarray, y: np.ndarray, train: bool, test_fraction: float, seed: int):
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    idx = order[n_test:] if train else order[:n_test]
    return TensorDataset(x[idx], y[idx])


def digits(train: bool = True, test_fraction: float = 0.2, seed: int = 0,
           image: bool = False) -> TensorDataset:
    """scikit-learn's 8x8 digits scaled to [0, 1]: (N, 64) float32, or (N, 1, 8, 8) with
    image=True; labels int64. A fixed seeded split gives disjoint train and test sets.

    >>> import flopgrad as fg
    >>> test = fg.data.digits(train=False, image=True)
    >>> len(test), test[0][0].shape, test[0][1].dtype
    (359, (1, 8, 8), dtype('int64'))
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - scikit-learn is a dependency
        raise ImportError("digits() needs scikit-learn: pip install scikit-learn") from err
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    if image:
        x = x.reshape(-1, 1, 8, 8)
    return _split(x, d.target.astype(np.int64), train, test_fraction, seed)


_MNIST_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    shape = struct.unpack(">" + "I" * ndim, data[4: 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {arr.size} bytes")
    return arr.reshape(shape)


def mnist(path: str | os.PathLike, train: bool = True, image: bool = True) -> TensorDataset:
    """MNIST from a folder of IDX files (optionally .gz) or an .npz with x_train, y_train,
    x_test, y_test. Images scaled to [0, 1] as (N, 1, 28, 28) float32 (or (N, 784)).

    >>> import flopgrad as fg, numpy as np, os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "mnist.npz")
    ...     np.savez(path, x_train=np.zeros((5, 28, 28), np.uint8), y_train=np.arange(5),
    ...              x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.arange(2))
    ...     fg.data.mnist(path).arrays[0].shape, len(fg.data.mnist(path, train=False))
    ((5, 1, 28, 28), 2)
    """
    p = Path(path)
    if p.suffix == ".npz" and p.is_file():
        with np.load(p) as f:
            key = "train" if train else "test"
            missing = [k for k in (f"x_{key}", f"y_{key}") if k not in f]
            if missing:
                raise KeyError(f"mnist: {p} has no {missing}; expected x_train, y_train, "
                               "x_test, y_test")
            x, y = f[f"x_{key}"], f[f"y_{key}"]
    else:
        names = _MNIST_FILES[train]
        found = []
        for name in names:
            for cand in (p / name, p / (name + ".gz")):
                if cand.is_file():
                    found.append(cand)
                    break
        if len(found) != 2:
            raise FileNotFoundError(
                f"mnist: did not find {names[0]}[.gz] and {names[1]}[.gz] in {p}. Download the "
                "four IDX files of MNIST (e.g. from the dataset's home page or a mirror) into "
                "that folder, or pass an .npz with x_train, y_train, x_test, y_test.")
        x, y = _read_idx(found[0]), _read_idx(found[1])
    x = (x.astype(np.float32) / 255.0).reshape(len(x), 1, 28, 28)
    if not image:
        x = x.reshape(len(x), -1)
    return TensorDataset(x, y.astype(np.int64))


class TextDataset:
    """Character-level language modelling: item i is (tokens[i:i+ctx], tokens[i+1:i+ctx+1]).

    >>> import flopgrad as fg
    >>> ds = fg.data.TextDataset("hello", ctx=2)
    >>> ds.vocab, len(ds), [a.tolist() for a in ds[0]]
    (['e', 'h', 'l', 'o'], 3, [[[1, 0]], [[0, 2]]])
    """

    def __init__(self, text_: str, ctx: int, vocab: list[str] | None = None):
        if len(text_) <= ctx:
            raise ValueError(f"text: the corpus has {len(text_)} characters, need more than "
                             f"ctx={ctx}")
        self.vocab = vocab or sorted(set(text_))
        self.stoi = {c: i for i, c in enumerate(self.vocab)}
        unknown = set(text_) - set(self.stoi)
        if unknown:
            raise ValueError(f"text: characters {sorted(unknown)[:10]} are not in the vocab")
        self.tokens = np.array([self.stoi[c] for c in text_], dtype=np.int64)
        self.ctx = ctx

    def __len__(self) -> int:
        return len(self.tokens) - self.ctx

    def __getitem__(self, idx):
        idx = np.atleast_1d(np.asarray(idx))
        offsets = idx[:, None] + np.arange(self.ctx + 1)
        windows = self.tokens[offsets]
        return windows[:, :-1], windows[:, 1:]

    def encode(self, s: str) -> list[int]:
        """Characters to token ids.

        >>> import flopgrad as fg
        >>> fg.data.TextDataset("hello", ctx=2).encode("hole")
        [1, 3, 2, 0]
        """
        return [self.stoi[c] for c in s]

    def decode(self, ids) -> str:
        """Token ids to characters.

        >>> import flopgrad as fg
        >>> fg.data.TextDataset("hello", ctx=2).decode([1, 3, 2, 0])
        'hole'
        """
        return "".join(self.vocab[int(i)] for i in ids)


def _stdlib_corpus(max_chars: int) -> str:
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for name in ("this.py", "functools.py", "textwrap.py", "string.py", "abc.py", "bisect.py",
                 "heapq.py", "keyword.py", "colorsys.py", "glob.py", "fnmatch.py", "random.py"):
        f = root / name
        if f.is_file():
            s = f.read_text(encoding="utf-8", errors="replace")
            parts.append(s)
            total += len(s)
            if total >= max_chars:
                break
    if not parts:
        raise FileNotFoundError(f"text: no Python standard-library sources found under {root}")
    return "".join(parts)[:max_chars]


def text(path: str | os.PathLike | None = None, ctx: int = 64,
         max_chars: int = 200_000) -> TextDataset:
    """A character-level dataset of `path` (UTF-8 text), or by default of Python standard
    library source files, which every Python install has.

    >>> import flopgrad as fg
    >>> ds = fg.data.text(ctx=8, max_chars=1000)
    >>> len(ds), [x.shape for x in ds[0]]
    (992, [(1, 8), (1, 8)])
    """
    if path is None:
        corpus = _stdlib_corpus(max_chars)
    else:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"text: {p} does not exist; pass a UTF-8 text file or "
                                    "nothing for the default corpus")
        corpus = p.read_text(encoding="utf-8", errors="replace")[:max_chars]
    return TextDataset(corpus, ctx)

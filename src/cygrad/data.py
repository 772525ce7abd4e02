"""Batching: Dataset, TensorDataset, Subset, random_split and DataLoader, with PyTorch's
names and semantics.

    loader = DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True, generator=0)
    for xb, yb in loader:      # xb: Tensor (batch, features); yb: int64 NumPy array (batch,)
        loss = F.cross_entropy(model(xb), yb)

A batch field made of floating-point values becomes a `Tensor`. A field of integers or
booleans (class labels, masks) stays a NumPy array: a Tensor holds float32/float64 only,
and `cross_entropy` takes integer class indices as they are.
"""
from __future__ import annotations

import collections.abc
import math
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import creation
from .tensor import Tensor

__all__ = ["Dataset", "TensorDataset", "Subset", "random_split", "DataLoader",
           "default_collate"]

GeneratorLike = Union[None, int, np.random.Generator]


class Dataset:
    """A map-style dataset: `dataset[i]` is the i-th sample, `len(dataset)` their number.
    Subclass it and define both (the DataLoader asks for indices 0 .. len - 1)."""

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define __getitem__()")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} does not define __len__()")


def _field_array(value: object, name: str) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.data
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a Tensor or an array of numbers, got "
                        f"{type(value).__name__} of dtype {array.dtype}")
    return array


def _as_batch_field(array: np.ndarray) -> Union[Tensor, np.ndarray]:
    """Floating values become a Tensor (the model's input); integers and booleans stay a
    NumPy array, since a Tensor would turn class labels into floats."""
    return Tensor(array) if array.dtype.kind == "f" else array


class TensorDataset(Dataset):
    """Samples are the rows of several arrays of the same length: `dataset[i]` is
    `(tensors[0][i], tensors[1][i], ...)`. Each of `tensors` is a Tensor or a NumPy array
    (features as floats, labels as integers). The DataLoader batches it with one indexing
    operation per field and batch, instead of collating sample by sample."""

    def __init__(self, *tensors: Union[Tensor, np.ndarray]):
        if not tensors:
            raise ValueError("tensors: expected at least one Tensor or array, got none")
        arrays = [_field_array(t, f"tensors[{i}]") for i, t in enumerate(tensors)]
        for i, array in enumerate(arrays):
            if array.ndim == 0:
                raise ValueError(f"tensors[{i}]: expected at least one dimension (the "
                                 "samples), got a scalar")
            if len(array) != len(arrays[0]):
                raise ValueError(f"tensors[{i}]: expected {len(arrays[0])} samples (the "
                                 f"length of tensors[0]), got {len(array)}")
        self.tensors: Tuple[Union[Tensor, np.ndarray], ...] = tensors
        self._arrays = arrays

    def __getitem__(self, index: int) -> tuple:
        return tuple(Tensor(a[index]) if isinstance(t, Tensor) else a[index]
                     for t, a in zip(self.tensors, self._arrays))

    def __len__(self) -> int:
        return len(self._arrays[0])

    def _batch(self, indices: Union[slice, np.ndarray]) -> tuple:
        # Always a copy, so that a batch changed in place leaves the dataset as it was:
        # `take` gathers shuffled rows into a new array (in one pass, faster than fancy
        # indexing), and a slice of rows in order is copied.
        if isinstance(indices, slice):
            return tuple(_as_batch_field(a[indices].copy()) for a in self._arrays)
        return tuple(_as_batch_field(a.take(indices, axis=0)) for a in self._arrays)


class Subset(Dataset):
    """The samples of `dataset` at `indices`, in that order: `subset[i]` is
    `dataset[indices[i]]`. The DataLoader batches a Subset of a TensorDataset with one
    indexing operation per field, as it does the TensorDataset."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]):
        positions = np.asarray(indices)
        if positions.ndim != 1 or (positions.size and positions.dtype.kind not in "iu"):
            raise TypeError(f"indices: expected a sequence of ints, got "
                            f"{type(indices).__name__} of shape {positions.shape} and dtype "
                            f"{positions.dtype}")
        n = len(dataset)
        if positions.size and (positions.min() < 0 or positions.max() >= n):
            raise ValueError(f"indices: expected values in [0, {n}) (the dataset's length), "
                             f"got values from {positions.min()} to {positions.max()}")
        self.dataset, self.indices = dataset, indices
        self._positions = positions.astype(np.intp)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[int(self._positions[index])]

    def __len__(self) -> int:
        return len(self._positions)

    def _batch(self, indices: Union[slice, np.ndarray]) -> tuple:
        return self.dataset._batch(self._positions[indices])


def _sliceable(dataset: Dataset) -> bool:
    """Whether batches can be cut from the dataset's arrays in one indexing operation."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return isinstance(dataset, TensorDataset)


def random_split(dataset: Dataset, lengths: Sequence[Union[int, float]],
                 generator: GeneratorLike = None) -> List[Subset]:
    """Splits `dataset` at random into Subsets of the given lengths, which are either
    counts that add up to `len(dataset)` or fractions that add up to 1 (each split then
    gets floor(fraction * len) samples, and the samples left over go one each to the
    first splits, as in PyTorch). `generator`: an int seed, a numpy Generator, or None for
    cygrad's default generator (see `cg.manual_seed`)."""
    n = len(dataset)
    values = list(lengths)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float, np.integer,
                                                                    np.floating)) or v < 0
                         for v in values):
        raise ValueError(f"lengths: expected non-negative counts or fractions, got {lengths!r}")
    if all(isinstance(v, (int, np.integer)) for v in values):
        counts = [int(v) for v in values]
    elif math.isclose(sum(values), 1) and all(v <= 1 for v in values):
        counts = [math.floor(n * v) for v in values]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
    else:
        raise ValueError(f"lengths: fractions must add up to 1, got {sum(values)}")
    if sum(counts) != n:
        raise ValueError(f"lengths: expected counts that add up to {n} (the dataset's "
                         f"length), got {counts} (total {sum(counts)})")
    rng = creation.default_generator() if generator is None else _check_generator(generator)
    order = rng.permutation(n)
    ends = np.cumsum(counts)
    return [Subset(dataset, order[end - count:end]) for count, end in zip(counts, ends)]


def default_collate(batch: Sequence[Any]) -> Any:
    """Stacks a list of samples into a batch, field by field, as PyTorch's default_collate:
    Tensors and arrays are stacked along a new first axis (floats give a Tensor; integers
    and booleans an int/bool NumPy array); Python floats give a float64 Tensor, ints an
    int64 array, bools a bool array; tuples, lists and dicts are collated per field and
    keep their type; strings are returned as a list."""
    first = batch[0]
    if isinstance(first, (Tensor, np.ndarray, np.generic)):
        arrays = [s.data if isinstance(s, Tensor) else np.asarray(s) for s in batch]
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise ValueError(f"default_collate: samples have different shapes "
                             f"({sorted(shapes)}); pad them, or pass collate_fn= to the "
                             "DataLoader to batch them your own way")
        return _as_batch_field(np.stack(arrays))
    if isinstance(first, bool):
        return np.array(batch, dtype=bool)
    if isinstance(first, int):
        return np.array(batch, dtype=np.int64)
    if isinstance(first, float):
        return Tensor(np.array(batch, dtype=np.float64))
    if isinstance(first, str):
        return list(batch)
    if isinstance(first, collections.abc.Mapping):
        return {key: default_collate([sample[key] for sample in batch]) for key in first}
    if isinstance(first, (tuple, list)):
        if any(len(sample) != len(first) for sample in batch):
            raise ValueError("default_collate: samples have different numbers of fields; "
                             "each sample must be a tuple of the same length")
        fields = [default_collate(list(samples)) for samples in zip(*batch)]
        if isinstance(first, tuple) and hasattr(first, "_fields"):  # a namedtuple
            return type(first)(*fields)
        return tuple(fields) if isinstance(first, tuple) else fields
    raise TypeError(f"default_collate: cannot batch samples of type {type(first).__name__}; "
                    "expected Tensors, arrays, numbers, strings, or tuples/lists/dicts of "
                    "them, or pass collate_fn= to the DataLoader")


def _check_generator(generator: GeneratorLike) -> np.random.Generator:
    if not isinstance(generator, np.random.Generator) and (
            isinstance(generator, bool) or not isinstance(generator, (int, np.integer))
            or generator < 0):
        raise TypeError(f"generator: expected None, a non-negative int seed or a "
                        f"numpy.random.Generator, got {generator!r}")
    return np.random.default_rng(generator)


def _check_flag(value: object, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


class DataLoader:
    """Iterates over `dataset` in batches of `batch_size` samples.

    - `shuffle=False`: samples in order 0 .. len - 1. `shuffle=True`: a new random order
      every epoch (every `iter(loader)`), drawn from `generator`.
    - `generator`: an int seed or a `numpy.random.Generator`. With a seed, two loaders made
      with the same seed give the same sequence of epochs. With None, the orders come from
      cygrad's default generator, which `cg.manual_seed(seed)` makes reproducible (as
      torch.manual_seed does for PyTorch's loaders).
    - `drop_last=True` drops a last batch smaller than `batch_size`.
    - `collate_fn(samples)` makes a batch from a list of samples (`default_collate`).
    - `len(loader)` is the number of batches per epoch.

    Unlike PyTorch, the arguments after `shuffle` are keyword-only: PyTorch's positional
    order (sampler, batch_sampler, num_workers, ...) has no counterpart here, and a
    positional value landing on the wrong parameter would be a silent error.
    """

    def __init__(self, dataset: Dataset, batch_size: int = 1, shuffle: bool = False, *,
                 drop_last: bool = False, generator: GeneratorLike = None,
                 collate_fn: Optional[Callable[[List[Any]], Any]] = None):
        if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
            raise TypeError(f"dataset: expected a map-style dataset (with __getitem__ and "
                            f"__len__, such as TensorDataset), got {type(dataset).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"collate_fn: expected a function of a list of samples, got "
                            f"{type(collate_fn).__name__}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = _check_flag(shuffle, "shuffle")
        self.drop_last = _check_flag(drop_last, "drop_last")
        self.generator = generator
        self.collate_fn = collate_fn if collate_fn is not None else default_collate
        # One Generator for the loader's life: each epoch draws the next order from it.
        self._rng = None if generator is None else _check_generator(generator)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        n, size = len(self.dataset), self.batch_size
        # The default generator is looked up each epoch: manual_seed replaces it.
        rng = creation.default_generator() if self._rng is None else self._rng
        order = rng.permutation(n) if self.shuffle else None
        stop_at = n - n % size if self.drop_last else n
        fast = _sliceable(self.dataset) and self.collate_fn is default_collate
        for start in range(0, stop_at, size):
            end = min(start + size, n)
            indices = slice(start, end) if order is None else order[start:end]
            if fast:
                yield self.dataset._batch(indices)
            else:
                picked = range(start, end) if order is None else order[start:end].tolist()
                yield self.collate_fn([self.dataset[i] for i in picked])

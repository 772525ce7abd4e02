"""Ops that move elements without changing them: reshape/view/flatten/squeeze/unsqueeze,
expand, transpose/permute, indexing, cat and stack. Their backward routes each gradient
element back to its place."""
from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np

from ..tensor import Tensor, TensorLike
from ._common import as_tensor, normalize_dim, send

Shape = Union[int, Sequence[int]]


def _shape_args(op: str, shape: tuple) -> tuple:
    """`f(2, 3)` and `f((2, 3))` alike, as PyTorch takes them."""
    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
        shape = tuple(shape[0])
    if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in shape):
        raise TypeError(f"{op}: shape: expected ints, got {shape!r}")
    return shape


def reshape(a: Tensor, *shape: Shape) -> Tensor:
    """The same elements in a new shape (one dimension may be -1: inferred), in C order.
    `view` is the same op: a NumPy array can always be viewed in C order or copied."""
    shape = _shape_args("reshape", shape)
    try:
        out = a.data.reshape(shape)
    except ValueError:
        raise ValueError(f"reshape: shape: cannot arrange {a.data.size} elements of a "
                         f"tensor of shape {a.shape} as {shape}") from None

    def backward(g: np.ndarray) -> None:
        send(a, g.reshape(a.data.shape))

    return Tensor.from_op(out, (a,), backward, "reshape")


def flatten(a: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Axes start_dim..end_dim (inclusive) merged into one, as torch.flatten; a 0-d tensor
    becomes 1-D with one element."""
    if a.data.ndim == 0:
        return reshape(a, 1)
    start = normalize_dim("flatten", start_dim, a.data.ndim)
    end = normalize_dim("flatten", end_dim, a.data.ndim)
    if start > end:
        raise ValueError(f"flatten: start_dim ({start_dim}) must not come after end_dim "
                         f"({end_dim}) for a tensor of {a.data.ndim} dimension(s)")
    shape = a.shape[:start] + (math.prod(a.shape[start:end + 1]),) + a.shape[end + 1:]
    return reshape(a, shape)


def squeeze(a: Tensor, dim: object = None) -> Tensor:
    """The tensor without its size-1 axes (all of them, or those of `dim`, an int or a
    tuple; an axis of another size is kept), as torch.squeeze."""
    if dim is None:
        axes = [i for i, n in enumerate(a.shape) if n == 1]
    else:
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        axes = [normalize_dim("squeeze", d, a.ndim) for d in dims] if a.ndim else []
    shape = tuple(n for i, n in enumerate(a.shape) if not (i in axes and n == 1))
    return reshape(a, shape)


def unsqueeze(a: Tensor, dim: int) -> Tensor:
    """The tensor with a new axis of size 1 at `dim` (-ndim-1 <= dim <= ndim), as
    torch.unsqueeze."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"unsqueeze: dim: expected an int, got {dim!r}")
    if not -a.ndim - 1 <= dim <= a.ndim:
        raise ValueError(f"unsqueeze: dim: {dim} is out of range for a tensor of {a.ndim} "
                         f"dimension(s): expected a value in [{-a.ndim - 1}, {a.ndim}]")
    position = dim % (a.ndim + 1)
    return reshape(a, a.shape[:position] + (1,) + a.shape[position:])


def expand(a: Tensor, *sizes: Shape) -> Tensor:
    """The tensor broadcast to `sizes` (-1 keeps an axis; new axes go first; only size-1
    axes grow), as torch.Tensor.expand. Its gradient is summed over the grown axes."""
    sizes = _shape_args("expand", sizes)
    lead = len(sizes) - a.ndim
    if lead < 0:
        raise ValueError(f"expand: sizes: {sizes} has fewer dimensions than the tensor's "
                         f"shape {a.shape}")
    shape = tuple(n if i < lead or n != -1 else a.shape[i - lead]
                  for i, n in enumerate(sizes))
    for i, n in enumerate(a.shape):
        if n != shape[lead + i] and n != 1:
            raise ValueError(f"expand: sizes: cannot expand axis {i} of size {n} to "
                             f"{shape[lead + i]}; only axes of size 1 grow")
    if any(n < 0 for n in shape[:lead]):
        raise ValueError(f"expand: sizes: -1 cannot be a new leading axis, got {sizes}")

    def backward(g: np.ndarray) -> None:
        send(a, g)  # sums the axes that were grown

    return Tensor.from_op(np.broadcast_to(a.data, shape), (a,), backward, "expand")


def _permuted(a: Tensor, perm: tuple, op: str) -> Tensor:
    inverse = np.argsort([ax % a.ndim for ax in perm])  # negative axes count from the end

    def backward(g: np.ndarray) -> None:
        send(a, g.transpose(inverse))

    return Tensor.from_op(a.data.transpose(perm), (a,), backward, op)


def permute(a: Tensor, *dims: Shape) -> Tensor:
    """The axes in the order `dims` gives (`permute(2, 0, 1)` or `permute((2, 0, 1))`), as
    torch.permute (NumPy calls it ndarray.transpose)."""
    dims = _shape_args("permute", dims)
    axes = [normalize_dim("permute", d, a.ndim) for d in dims] if a.ndim else list(dims)
    if sorted(axes) != list(range(a.ndim)):
        raise ValueError(f"permute: dims: expected each of the {a.ndim} axes once, got "
                         f"{dims!r}")
    return _permuted(a, tuple(axes), "permute")


def transpose(a: Tensor, *dims: int) -> Tensor:
    """`transpose(dim0, dim1)`: the two axes swapped, as torch.transpose (`x.transpose(0,
    1)` of a matrix is its transpose). For any order of all the axes, `permute`."""
    if len(dims) != 2:
        raise TypeError(f"transpose: expected the two dims to swap, as torch.transpose takes "
                        f"them, got {dims!r}: for an order of all the axes (NumPy's "
                        f"transpose), use permute{dims if len(dims) > 1 else '(...)'}")
    perm = list(range(a.ndim))
    i, j = (normalize_dim("transpose", d, a.ndim) for d in dims)
    if a.ndim:
        perm[i], perm[j] = perm[j], perm[i]
    return _permuted(a, tuple(perm), "transpose")


def reversed_axes(a: Tensor) -> Tensor:
    """The tensor with its axes reversed (`.T`; a matrix's transpose)."""
    return _permuted(a, tuple(reversed(range(a.ndim))), "transpose")


def _index_part(part: object) -> object:
    """A Tensor inside an index holds integer positions (stored as floats)."""
    if isinstance(part, Tensor):
        positions = part.data.astype(np.intp)
        if not np.array_equal(positions, part.data):
            raise TypeError("index: a Tensor used as an index must hold whole numbers "
                            "(positions); for a mask, index with a boolean array such as "
                            "`t > 0`")
        return positions
    return part


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_int(part: object) -> bool:
    return isinstance(part, (int, np.integer)) and not isinstance(part, bool)


def _is_advanced(part: object) -> bool:
    return isinstance(part, (list, np.ndarray)) and not _is_int(part)


def _split_ints(index: tuple) -> tuple:
    """(ints_first, rest): PyTorch's reading of an index that holds both ints and arrays.

    PyTorch selects with each int first (as basic indexing) and only then applies the
    arrays; NumPy counts an int as one more array, broadcast with the others, so that
    with a slice between them the indexed axes move to the front ((2, 3, 4)[0, :, [1]]
    is (1, 3) in NumPy, (3, 1) in PyTorch). `a[ints_first][rest]` is PyTorch's result:
    `ints_first` keeps ints, slices, None and Ellipsis and takes all of each axis an
    array indexes; `rest` keeps the arrays and takes all of every other remaining axis."""
    first, rest = [], []
    for part in index:
        if _is_int(part):
            first.append(part)
        elif _is_advanced(part):
            array = np.asarray(part)
            axes = array.ndim if array.dtype == bool else 1  # a mask spans its ndim axes
            first.extend([slice(None)] * axes)
            rest.append(part)
        elif part is Ellipsis:
            first.append(part)
            rest.append(part)
        else:  # a slice or None: done in the first step, its axis stays for the second
            first.append(part)
            rest.append(slice(None))
    return tuple(first), tuple(rest)


def getitem(a: Tensor, index: object) -> Tensor:
    """a[index]: ints, slices, None, Ellipsis, integer arrays and boolean masks (such as
    `a > 0`), with PyTorch's result shape. That is NumPy's, except for an index holding
    both an int and an array: PyTorch applies the ints first, then the arrays
    ((2, 3, 4)[0, :, [1]] has shape (3, 1); NumPy gives (1, 3)), and so does cygrad.
    The gradient is added back at the indexed places; a position indexed several times
    receives the sum of its gradients."""
    if isinstance(index, list) and any(
            part is None or part is Ellipsis or isinstance(
                part, (list, tuple, slice, np.ndarray, Tensor)) for part in index):
        raise TypeError(f"index: {_short(index)} is read as a tuple of indices by PyTorch "
                        f"and as one array by NumPy: write the tuple (t[[0, 1], [1, 0]], "
                        f"PyTorch's reading) or pass np.array(...) (NumPy's)")
    if isinstance(index, tuple):
        index = tuple(_index_part(part) for part in index)
    else:
        index = _index_part(index)
    steps = (index,)
    if isinstance(index, tuple) and any(map(_is_int, index)) \
            and any(map(_is_advanced, index)):
        steps = _split_ints(index)
    out = a.data
    for step in steps:
        out = out[step]

    def backward(g: np.ndarray) -> None:
        full = np.zeros(a.data.shape, a.data.dtype)
        target = full if len(steps) == 1 else full[steps[0]]  # a view into `full`
        np.add.at(target, steps[-1], g)  # repeated indices add up
        send(a, full, owned=True)

    return Tensor.from_op(np.asarray(out), (a,), backward, "getitem")


def _tensors(op: str, tensors: Sequence[TensorLike]) -> list:
    if isinstance(tensors, (Tensor, np.ndarray)) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{op}: tensors: expected a list or tuple of tensors, got "
                        f"{type(tensors).__name__}")
    if not tensors:
        raise ValueError(f"{op}: tensors: expected at least one tensor, got none")
    return [as_tensor(t) for t in tensors]


def cat(tensors: Sequence[TensorLike], dim: int = 0) -> Tensor:
    """The tensors joined along an existing axis `dim`; all other axes must match. The
    result's dtype is float64 if any input is float64 (each input's gradient comes back
    in its own dtype). As torch.cat; `concatenate` is the NumPy name for it."""
    parts = _tensors("cat", tensors)
    ndim = parts[0].data.ndim
    if ndim == 0 or any(p.data.ndim != ndim for p in parts):
        raise ValueError(f"cat: tensors: expected tensors of one number of dimensions (at "
                         f"least 1), got shapes {[p.shape for p in parts]}")
    axis = normalize_dim("cat", dim, ndim)
    if any(p.shape[:axis] + p.shape[axis + 1:] != parts[0].shape[:axis] +
           parts[0].shape[axis + 1:] for p in parts):
        raise ValueError(f"cat: tensors: expected shapes that differ only in dim {dim}, "
                         f"got {[p.shape for p in parts]}")
    ends = np.cumsum([p.shape[axis] for p in parts])[:-1]

    def backward(g: np.ndarray) -> None:
        for p, piece in zip(parts, np.split(g, ends, axis=axis)):
            send(p, piece)

    return Tensor.from_op(np.concatenate([p.data for p in parts], axis=axis), parts,
                          backward, "cat")


def stack(tensors: Sequence[TensorLike], dim: int = 0) -> Tensor:
    """The tensors, all of one shape, joined along a new axis `dim` (in [-ndim-1, ndim]),
    as torch.stack. The result's dtype is float64 if any input is float64."""
    parts = _tensors("stack", tensors)
    if any(p.shape != parts[0].shape for p in parts):
        raise ValueError(f"stack: tensors: expected tensors of one shape, got "
                         f"{[p.shape for p in parts]}")
    axis = normalize_dim("stack", dim, parts[0].data.ndim + 1)

    def backward(g: np.ndarray) -> None:
        for i, p in enumerate(parts):
            send(p, np.take(g, i, axis=axis), owned=True)

    return Tensor.from_op(np.stack([p.data for p in parts], axis=axis), parts, backward,
                          "stack")

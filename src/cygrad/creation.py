"""Tensor constructors with PyTorch's names: zeros, ones, full, eye, arange, rand, randn
and their `_like` forms.

Tensors made from nothing but a size default to float32, as in PyTorch and as
nn.Linear's parameters, so that `model(cg.randn(8, 4))` works; `dtype=` chooses float64.
The `_like` forms take the given tensor's shape and dtype.

Random numbers come from a NumPy Generator: the one passed as `generator=` (a
`numpy.random.Generator`, or an int seed for a new one), else cygrad's default
generator, which `manual_seed(seed)` resets.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np

from .tensor import Tensor, float_dtype

Size = Union[int, Sequence[int]]
GeneratorLike = Union[None, int, np.random.Generator]

_default_generator = np.random.default_rng()  # seeded from the OS until manual_seed

# Told the constructor's name when random numbers are drawn (cg.compile sets it while it
# records a step: a replay would repeat the numbers).
on_draw: Optional[Callable[[str], None]] = None


def manual_seed(seed: int) -> np.random.Generator:
    """Reset the default generator of rand/randn/rand_like/randn_like to `seed` (as
    torch.manual_seed); returns it."""
    global _default_generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    _default_generator = np.random.default_rng(seed)
    return _default_generator


def default_generator() -> np.random.Generator:
    """The generator rand/randn use when no `generator=` is given."""
    return _default_generator


def _generator(generator: GeneratorLike, op: str) -> np.random.Generator:
    if on_draw is not None:
        on_draw(op)
    if generator is None:
        return _default_generator
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return np.random.default_rng(generator)
    raise TypeError(f"generator: expected a numpy.random.Generator, an int seed or None, "
                    f"got {type(generator).__name__}")


def _size(size: tuple, op: str) -> Tuple[int, ...]:
    """`f(2, 3)` and `f((2, 3))` alike, as PyTorch takes them."""
    if len(size) == 1 and isinstance(size[0], (list, tuple)):
        size = tuple(size[0])
    for n in size:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"{op}: size: expected non-negative ints, got {size!r}")
    return tuple(int(n) for n in size)


def _make(data: np.ndarray, dtype: object, requires_grad: bool) -> Tensor:
    return Tensor(data.astype(float_dtype(dtype), copy=False), requires_grad=requires_grad)


def zeros(*size: Size, dtype: object = np.float32, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros of shape `size`."""
    return _make(np.zeros(_size(size, "zeros"), float_dtype(dtype)), dtype, requires_grad)


def ones(*size: Size, dtype: object = np.float32, requires_grad: bool = False) -> Tensor:
    """A tensor of ones of shape `size`."""
    return _make(np.ones(_size(size, "ones"), float_dtype(dtype)), dtype, requires_grad)


def full(size: Size, fill_value: float, dtype: object = np.float32,
         requires_grad: bool = False) -> Tensor:
    """A tensor of shape `size` filled with `fill_value`."""
    sizes = (size,) if isinstance(size, (int, np.integer)) else (tuple(size),)
    shape = _size(sizes, "full")
    return _make(np.full(shape, fill_value, float_dtype(dtype)), dtype, requires_grad)


def eye(n: int, m: Optional[int] = None, dtype: object = np.float32,
        requires_grad: bool = False) -> Tensor:
    """An n x m matrix (m = n by default) with ones on the diagonal, zeros elsewhere."""
    n, m = _size((n, n if m is None else m), "eye")
    return _make(np.eye(n, m, dtype=float_dtype(dtype)), dtype, requires_grad)


def arange(start: float, end: Optional[float] = None, step: float = 1,
           dtype: object = np.float32, requires_grad: bool = False) -> Tensor:
    """start, start + step, ... up to but excluding `end`; `arange(n)` is 0 .. n-1. The
    values are computed in float64, then converted to `dtype`."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step: expected a non-zero number, got 0")
    return _make(np.arange(start, end, step, dtype=np.float64), dtype, requires_grad)


def rand(*size: Size, generator: GeneratorLike = None, dtype: object = np.float32,
         requires_grad: bool = False) -> Tensor:
    """Uniform random numbers in [0, 1), of shape `size`."""
    values = _generator(generator, "rand").random(_size(size, "rand"),
                                                  dtype=float_dtype(dtype))
    return _make(values, dtype, requires_grad)


def randn(*size: Size, generator: GeneratorLike = None, dtype: object = np.float32,
          requires_grad: bool = False) -> Tensor:
    """Standard normal random numbers (mean 0, variance 1), of shape `size`."""
    values = _generator(generator, "randn").standard_normal(_size(size, "randn"),
                                                            dtype=float_dtype(dtype))
    return _make(values, dtype, requires_grad)


def _like(t: Tensor, dtype: object) -> Tuple[Tuple[int, ...], object]:
    if not isinstance(t, Tensor):
        raise TypeError(f"input: expected a Tensor, got {type(t).__name__}")
    return t.shape, t.dtype if dtype is None else dtype


def zeros_like(t: Tensor, dtype: object = None, requires_grad: bool = False) -> Tensor:
    """Zeros of `t`'s shape and dtype (or `dtype`)."""
    shape, dtype = _like(t, dtype)
    return zeros(shape, dtype=dtype, requires_grad=requires_grad)


def ones_like(t: Tensor, dtype: object = None, requires_grad: bool = False) -> Tensor:
    """Ones of `t`'s shape and dtype (or `dtype`)."""
    shape, dtype = _like(t, dtype)
    return ones(shape, dtype=dtype, requires_grad=requires_grad)


def full_like(t: Tensor, fill_value: float, dtype: object = None,
              requires_grad: bool = False) -> Tensor:
    """`fill_value` in `t`'s shape and dtype (or `dtype`)."""
    shape, dtype = _like(t, dtype)
    return full(shape, fill_value, dtype=dtype, requires_grad=requires_grad)


def rand_like(t: Tensor, generator: GeneratorLike = None, dtype: object = None,
              requires_grad: bool = False) -> Tensor:
    """`rand` in `t`'s shape and dtype (or `dtype`)."""
    shape, dtype = _like(t, dtype)
    return rand(shape, generator=generator, dtype=dtype, requires_grad=requires_grad)


def randn_like(t: Tensor, generator: GeneratorLike = None, dtype: object = None,
               requires_grad: bool = False) -> Tensor:
    """`randn` in `t`'s shape and dtype (or `dtype`)."""
    shape, dtype = _like(t, dtype)
    return randn(shape, generator=generator, dtype=dtype, requires_grad=requires_grad)

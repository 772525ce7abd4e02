"""Property tests (hypothesis): every kernel on random shapes (0-size axes, batch 1, sizes
that run threaded), both dtypes, inputs in any memory layout (strided, transposed, Fortran,
reversed, broadcast, read-only, unaligned), outputs that are or overlap inputs, values with
NaN and infinities; the compiled backend against the reference. Random argument errors get
the same ValueError/TypeError from both backends and write nothing. Random small expression
graphs give the same values and gradients on both backends. Calls that could take the
interpreter down (the private compiled modules, extreme shapes) run in a subprocess.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cygrad as cg
from cygrad import functional as F
from cygrad.backends import cython as compiled
from cygrad.backends import reference

# The whole file runs in well under 30 s on two cores; a failure prints its example.
FUZZ = settings(max_examples=100, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]
SPECIALS = [math.nan, math.inf, -math.inf]
# Shapes with more elements than the compiled loops' threading threshold (262144).
THREADED_SHAPES = [(270000,), (3, 90000), (521, 521)]
KERNELS = ["sigmoid_forward", "sigmoid_backward", "bias_backward", "linear_forward",
           "linear_backward", "matmul_backward"]
OUTPUTS = {"sigmoid_forward": ("out",), "sigmoid_backward": ("out",),
           "bias_backward": ("out",), "linear_forward": ("out",),
           "linear_backward": ("grad_x", "grad_w", "grad_b"),
           "matmul_backward": ("grad_a", "grad_b")}
FLAGS = {"sigmoid_backward": ("accumulate",), "bias_backward": ("accumulate",),
         "linear_backward": ("accumulate", "need_grad_x", "need_grad_w", "need_grad_b"),
         "matmul_backward": ("accumulate", "need_grad_a", "need_grad_b")}
NEED = {"grad_x": "need_grad_x", "grad_w": "need_grad_w", "grad_b": "need_grad_b",
        "grad_a": "need_grad_a"}
# Sums (the reduction, the matrix products) may add in any order: their finite values are
# kept to |v| <= 1000 so that no partial sum overflows. Then whether a result is NaN or
# infinite does not depend on the order (a NaN term, or an inf and a -inf term, make NaN),
# and NaN positions must match the reference exactly.
SUM_LIMIT = 1000.0


# ---------------------------------------------------------------------- value strategies

def _width(dtype: np.dtype) -> int:
    return 8 * dtype.itemsize


def element_strategy(dtype: np.dtype, kind: str) -> st.SearchStrategy:
    """'any': every float of the dtype, NaN and +-inf included (and drawn often); 'finite':
    every finite one; 'sum' / 'sum-finite': |v| <= SUM_LIMIT, with or without NaN and
    +-inf."""
    width = _width(dtype)
    if kind == "any":
        return st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=width),
                         st.sampled_from(SPECIALS))
    if kind == "finite":
        return st.floats(allow_nan=False, allow_infinity=False, width=width)
    bounded = st.floats(-SUM_LIMIT, SUM_LIMIT, width=width)
    if kind == "sum-finite":
        return bounded
    return st.one_of(bounded, bounded, bounded, st.sampled_from(SPECIALS))


def values(dtype: np.dtype, shape: tuple, kind: str) -> st.SearchStrategy:
    return hnp.arrays(dtype, shape, elements=element_strategy(dtype, kind))


def small_shapes(min_dims: int = 0, max_dims: int = 4) -> st.SearchStrategy:
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=5)


# ---------------------------------------------------------------------- memory layouts

LAYOUTS = ["c", "fortran", "transposed", "strided", "reversed", "broadcast", "readonly",
           "unaligned"]


def relayout(a: np.ndarray, layout: str, step: int = 2) -> np.ndarray:
    """An array of `a`'s shape in another memory layout. The values are `a`'s, except for
    'broadcast', which repeats a's first entry along axis 0 (a zero stride)."""
    if layout == "c" or (a.ndim == 0 and layout in ("strided", "reversed")):
        return a  # a 0-d array has no strides to change
    if layout == "fortran":  # (np.asfortranarray would make a 0-d array 1-d)
        return np.array(a, order="F")
    if layout == "transposed":
        return np.array(a.T, order="C").T
    if layout == "strided":
        big = np.zeros(tuple(step * n + 1 for n in a.shape), a.dtype)
        v = big[tuple(slice(1, None, step) for _ in a.shape)]
        v[...] = a
        return v
    if layout == "reversed":
        flip = tuple(slice(None, None, -1) for _ in a.shape)
        return a[flip].copy()[flip]
    if layout == "broadcast":
        if a.ndim == 0 or a.shape[0] == 0:
            return a
        return np.broadcast_to(a[:1], a.shape)
    if layout == "readonly":
        v = a.copy()
        v.flags.writeable = False
        return v
    if layout == "unaligned":
        raw = np.zeros(a.nbytes + a.itemsize + 1, np.uint8)
        v = raw[1:1 + a.nbytes].view(a.dtype).reshape(a.shape)
        v[...] = a
        return v
    raise AssertionError(layout)


# ---------------------------------------------------------------------- cases

@dataclass
class Placement:
    """Where an argument lives: its own array ('own', in `layout`), a view of the shared
    buffer ('shared', at `offset`, every `step`-th element, reversed if step < 0), or the
    very array of another argument ('alias')."""
    kind: str
    layout: str = "c"
    offset: int = 0
    step: int = 1
    target: str = ""


@dataclass
class Case:
    kernel: str
    dtype: np.dtype
    shapes: Dict[str, Optional[tuple]]           # every input; None: an optional input left out
    out_shapes: Dict[str, tuple]
    given_outputs: List[str]                     # outputs passed in (the rest: None)
    flags: Dict[str, bool]
    own: Dict[str, np.ndarray]                   # values of arguments with their own array
    buffer: Optional[np.ndarray]                 # values of the shared buffer
    placements: Dict[str, Placement] = field(default_factory=dict)

    def build(self) -> Tuple[dict, dict, Optional[np.ndarray]]:
        """Fresh argument arrays: (inputs, outputs, the shared buffer they may view)."""
        buffer = None if self.buffer is None else self.buffer.copy()
        made: Dict[str, Optional[np.ndarray]] = {}

        def view(name: str, shape: tuple) -> np.ndarray:
            p = self.placements[name]
            if p.kind == "own":
                return relayout(self.own[name].copy(), p.layout)
            n = math.prod(shape)
            span = buffer[p.offset:p.offset + max(1, abs(p.step) * n)]
            v = span[::p.step] if p.step > 0 else span[::-1][::-p.step]
            v = v[:n].reshape(shape)
            assert n == 0 or np.may_share_memory(v, buffer)
            return v

        for name in self.given_outputs:  # first: an input may be an alias of an output
            made[name] = view(name, self.out_shapes[name])
        inputs = {}
        for name, shape in self.shapes.items():
            p = self.placements.get(name)
            if shape is None:
                inputs[name] = None
            elif p is not None and p.kind == "alias":
                inputs[name] = made[p.target]
            else:
                inputs[name] = view(name, shape)
        outputs = {name: made.get(name) for name in OUTPUTS[self.kernel]}
        return inputs, outputs, buffer


def output_shapes(kernel: str, s: Dict[str, Optional[tuple]]) -> Dict[str, tuple]:
    if kernel in ("sigmoid_forward",):
        return {"out": s["x"]}
    if kernel == "sigmoid_backward":
        return {"out": s["grad_out"]}
    if kernel == "bias_backward":
        return {"out": s["grad_out"][-1:]}
    if kernel == "linear_forward":
        return {"out": s["x"][:-1] + s["w"][:1]}
    if kernel == "linear_backward":
        return {"grad_x": s["x"], "grad_w": s["w"], "grad_b": s["w"][:1]}
    return {"grad_a": s["a"], "grad_b": s["b"]}


@st.composite
def input_shapes(draw, kernel: str) -> Dict[str, Optional[tuple]]:
    big = draw(st.integers(0, 7)) == 0  # now and then a size that runs threaded
    if kernel in ("sigmoid_forward", "sigmoid_backward", "bias_backward"):
        if big:
            shape = draw(st.sampled_from(THREADED_SHAPES))
        else:
            shape = draw(small_shapes(min_dims=1 if kernel == "bias_backward" else 0))
        if kernel == "sigmoid_forward":
            return {"x": shape}
        if kernel == "sigmoid_backward":
            return {"grad_out": shape, "y": shape}
        return {"grad_out": shape}
    dim = st.integers(0, 6)
    if kernel == "matmul_backward":
        m, k, n = (draw(st.integers(0, 70)) if big else draw(dim) for _ in range(3))
        return {"grad_out": (m, n), "a": (m, k), "b": (k, n)}
    lead = (draw(st.sampled_from([(9000,), (40, 250)])) if big
            else draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=4)))
    in_f, out_f = draw(dim), draw(st.integers(4, 5) if big else dim)
    shapes = {"x": lead + (in_f,), "w": (out_f, in_f)}
    if kernel == "linear_forward":
        shapes["b"] = (out_f,) if draw(st.booleans()) else None
    else:
        shapes = {"grad_out": lead + (out_f,), **shapes}
    return shapes


def _value_kind(kernel: str, special: bool) -> str:
    if kernel in ("sigmoid_forward", "sigmoid_backward"):
        return "any" if special else "finite"
    return "sum" if special else "sum-finite"


@st.composite
def cases(draw, kernel: str, aliasing: bool = True) -> Case:
    """A valid call of `kernel`: shapes, layouts, outputs given or not, flags, and (with
    `aliasing`) arguments that share one buffer, so that outputs may be inputs or overlap
    them. Outputs never overlap each other."""
    dtype = draw(st.sampled_from(DTYPES))
    kind = _value_kind(kernel, draw(st.booleans()))
    shapes = draw(input_shapes(kernel))
    out_shapes = output_shapes(kernel, shapes)
    flags = {name: draw(st.booleans()) for name in FLAGS.get(kernel, ())}
    often = st.sampled_from([True, True, True, False]) if aliasing else st.booleans()
    given_outputs = [n for n in OUTPUTS[kernel] if draw(often)]
    placements: Dict[str, Placement] = {}
    own: Dict[str, np.ndarray] = {}
    shared_size = 0
    # outputs: own arrays, or disjoint regions of the shared buffer
    for name in given_outputs:
        if aliasing and draw(often):
            offset = shared_size + draw(st.integers(0, 3))
            placements[name] = Placement("shared", offset=offset)
            shared_size = offset + math.prod(out_shapes[name])
        else:
            placements[name] = Placement("own")
    shared_outputs = [n for n in given_outputs if placements[n].kind == "shared"]
    extent = max([shared_size] + [math.prod(s) * 2 for s in shapes.values() if s])
    buffer_size = shared_size + extent + 4
    for name, shape in shapes.items():
        if shape is None:
            continue
        n = math.prod(shape)
        same_shape = [o for o in given_outputs if out_shapes[o] == shape]
        choice = draw(st.sampled_from(
            ["own"] + (["shared", "near-output", "near-output"] if aliasing else []) +
            (["alias", "alias"] if aliasing and same_shape else [])))
        if choice == "alias":
            placements[name] = Placement("alias", target=draw(st.sampled_from(same_shape)))
        elif choice in ("shared", "near-output"):
            step = draw(st.sampled_from([1, 1, 2, -1]))
            width = max(1, abs(step) * n)
            if choice == "near-output" and shared_outputs:
                anchor = placements[draw(st.sampled_from(shared_outputs))].offset
                offset = anchor + draw(st.integers(-3, 3))
            else:
                offset = draw(st.integers(0, buffer_size))
            offset = min(max(0, offset), buffer_size - width) if width <= buffer_size else 0
            buffer_size = max(buffer_size, offset + width)
            placements[name] = Placement("shared", offset=offset, step=step)
        else:
            layout = draw(st.sampled_from(LAYOUTS))
            placements[name] = Placement("own", layout=layout)
            own[name] = draw(values(dtype, shape, kind))
    for name in given_outputs:
        if placements[name].kind == "own":
            own[name] = draw(values(dtype, out_shapes[name], kind))
    buffer = draw(values(dtype, (buffer_size,), kind)) if aliasing else None
    return Case(kernel, dtype, shapes, out_shapes, given_outputs, flags, own, buffer,
                placements)


# ---------------------------------------------------------------------- the oracle

def call(backend, kernel: str, inputs: dict, outputs: dict, flags: dict) -> Dict[str, object]:
    """Run `kernel` on `backend`; its result(s) by output name."""
    result = getattr(backend, kernel)(**inputs, **outputs, **flags)
    names = OUTPUTS[kernel]
    return dict(zip(names, result if isinstance(result, tuple) else (result,)))


def _abs(a: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """|a| in float64 with non-finite entries as 0: the size of the terms of a finite sum
    (a finite result had no non-finite term)."""
    if a is None:
        return None
    a = np.abs(np.asarray(a, np.float64))
    a[~np.isfinite(a)] = 0
    return a


def error_bounds(kernel: str, inputs: dict, starts: dict, accumulate: bool) -> dict:
    """Per output, (terms, S): the result is a sum of `terms` terms whose absolute values
    add up to S (elementwise: S = 0, compared by rtol alone). A sum in any order is then
    within about terms * eps * S of the exact one."""
    rows = lambda a: a.reshape(math.prod(a.shape[:-1]), a.shape[-1])  # noqa: E731
    if kernel in ("sigmoid_forward", "sigmoid_backward"):
        return {"out": (1, 0.0)}
    i = {k: _abs(v) for k, v in inputs.items()}
    if kernel == "bias_backward":
        g = i["grad_out"]
        bounds = {"out": (max(1, g.size // max(1, g.shape[-1])), rows(g).sum(axis=0))}
    elif kernel == "linear_forward":
        s = rows(i["x"]) @ i["w"].T + (0 if i["b"] is None else i["b"])
        shape = inputs["x"].shape[:-1] + inputs["w"].shape[:1]
        bounds = {"out": (i["x"].shape[-1] + 1, s.reshape(shape))}
    elif kernel == "linear_backward":
        g2, x2, w = rows(i["grad_out"]), rows(i["x"]), i["w"]
        batch = g2.shape[0]
        bounds = {"grad_x": (w.shape[0], (g2 @ w).reshape(inputs["x"].shape)),
                  "grad_w": (batch, g2.T @ x2), "grad_b": (batch, g2.sum(axis=0))}
    else:
        g, a, b = i["grad_out"], i["a"], i["b"]
        bounds = {"grad_a": (b.shape[1], g @ b.T), "grad_b": (a.shape[0], a.T @ g)}
    if accumulate:
        bounds = {name: (terms + 1, s + (0 if starts.get(name) is None else
                                          _abs(starts[name])))
                  for name, (terms, s) in bounds.items()}
    return bounds


def assert_matches(got: np.ndarray, want: np.ndarray, terms: int, s, what: str) -> None:
    """NaN exactly where the reference has NaN; infinities of the same sign where it has
    them (but for a result at the overflow threshold, which may round either way); finite
    values within the rounding of a sum of `terms` terms of total size `s`."""
    dtype = want.dtype
    assert type(got) is np.ndarray and got.dtype == dtype and got.shape == want.shape, \
        f"{what}: got {type(got).__name__} {got.dtype} {got.shape}, want {dtype} {want.shape}"
    nan_got, nan_want = np.isnan(got), np.isnan(want)
    if not np.array_equal(nan_got, nan_want):
        where = np.argwhere(nan_got != nan_want)[:5].tolist()
        raise AssertionError(f"{what}: NaN positions differ from the reference at {where}: "
                             f"got {got[nan_got != nan_want][:5]}, "
                             f"want {want[nan_got != nan_want][:5]}")
    info = np.finfo(dtype)
    inf_got, inf_want = np.isinf(got), np.isinf(want)
    edge = np.abs(np.where(inf_got, want, got)) >= info.max * (1 - 4 * info.eps)
    bad_inf = (inf_got != inf_want) & ~edge
    bad_inf |= inf_got & inf_want & (np.sign(got) != np.sign(want))
    assert not bad_inf.any(), (f"{what}: infinities differ at "
                               f"{np.argwhere(bad_inf)[:5].tolist()}: got {got[bad_inf][:5]}, "
                               f"want {want[bad_inf][:5]}")
    finite = np.isfinite(got) & np.isfinite(want)
    eps = float(info.eps)
    with np.errstate(over="ignore", invalid="ignore"):
        err = np.abs(got.astype(np.float64) - want.astype(np.float64))
        allowed = (8 * eps * np.abs(want.astype(np.float64)) + 4 * float(info.tiny)
                   + 2 * (terms + 1) * eps * np.asarray(s, np.float64))
    bad = finite & ~(err <= allowed)
    assert not bad.any(), (f"{what}: off by more than rounding at "
                           f"{np.argwhere(bad)[:5].tolist()}: got {got[bad][:5]}, "
                           f"want {want[bad][:5]}")


def _snapshot(a: Optional[np.ndarray]) -> Optional[bytes]:
    return None if a is None else np.ascontiguousarray(a).tobytes()


def _record_events(case: Case, inputs: dict, outputs: dict) -> None:
    """What the case exercises (shown by pytest --hypothesis-show-statistics)."""
    arrays = [a for a in list(inputs.values()) + list(outputs.values()) if a is not None]
    if any(a.size > 262144 for a in arrays):
        event("threaded size")
    if any(a.size == 0 for a in arrays):
        event("0-size array")
    if any(not np.isfinite(a).all() for a in arrays):
        event("NaN or inf")
    given = [o for o in outputs.values() if o is not None]
    for name, a in inputs.items():
        if a is None:
            continue
        if any(a is o for o in given):
            event("an output is an input")
        elif any(a.size and np.may_share_memory(a, o) for o in given):
            event("an output overlaps an input")
        if case.placements.get(name, Placement("own")).kind == "own":
            event(f"layout: {case.placements[name].layout}")


def check_case(case: Case) -> None:
    """Both backends, on the case's (possibly aliased) arrays, give what the reference gives
    on separate C-contiguous copies of the inputs as they were at the call; they write
    their outputs and nothing else."""
    with np.errstate(all="ignore"):  # NaN and inf are the point here
        _check_case(case)


def _check_case(case: Case) -> None:
    inputs, outputs, _ = case.build()
    _record_events(case, inputs, outputs)
    copies = {k: None if v is None else np.array(v, order="C") for k, v in inputs.items()}
    starts = {k: None if v is None else v.copy() for k, v in outputs.items()}
    accumulate = case.flags.get("accumulate", False)
    want = call(reference, case.kernel, copies,
                {k: None if v is None else v.copy() for k, v in starts.items()}, case.flags)
    bounds = error_bounds(case.kernel, copies, starts, accumulate)
    for backend in (compiled, reference):
        inputs, outputs, buffer = case.build()
        before = {k: _snapshot(v) for k, v in inputs.items()}
        buffer_before = None if buffer is None else buffer.copy()
        got = call(backend, case.kernel, inputs, outputs, case.flags)
        label = f"{backend.name}.{case.kernel}"
        written = []
        for name in OUTPUTS[case.kernel]:
            if not case.flags.get(NEED.get(name, ""), True):
                assert got[name] is None, f"{label}: {name} was not needed"
                if outputs[name] is not None:
                    assert _snapshot(outputs[name]) == _snapshot(starts[name]), \
                        f"{label}: {name} was not needed but was written"
                continue
            if outputs[name] is not None:
                assert got[name] is outputs[name], f"{label}: {name} is not the array given"
                written.append(outputs[name])
            assert_matches(got[name], want[name], *bounds[name], f"{label}: {name}")
        # nothing but the outputs was written: the inputs of their own, the rest of the buffer
        for name, v in inputs.items():
            if v is not None and case.placements.get(name, Placement("own")).kind == "own" \
                    and not any(np.may_share_memory(v, o) for o in written):
                assert _snapshot(v) == before[name], f"{label}: input {name} was written"
        if buffer is not None:
            untouched = np.ones(buffer.shape, bool)
            for o in written:
                if o.size and np.may_share_memory(o, buffer):
                    start = (o.__array_interface__["data"][0]
                             - buffer.__array_interface__["data"][0]) // buffer.itemsize
                    untouched[start:start + o.size] = False
            assert buffer[untouched].tobytes() == buffer_before[untouched].tobytes(), \
                f"{label}: wrote outside its outputs"


# ---------------------------------------------------------------------- kernel properties

@pytest.mark.parametrize("kernel", KERNELS)
@FUZZ
@given(data=st.data())
def test_kernel_matches_reference_in_any_layout(kernel, data):
    """Own arrays in every layout; outputs given or not, accumulated or not."""
    check_case(data.draw(cases(kernel, aliasing=False), label="case"))


@pytest.mark.parametrize("kernel", KERNELS)
@FUZZ
@given(data=st.data())
def test_kernel_with_outputs_that_alias_inputs(kernel, data):
    """Arguments drawn as views of one buffer: an output may be an input, overlap one
    (ahead, behind, strided, reversed), or be apart from all of them."""
    check_case(data.draw(cases(kernel, aliasing=True), label="case"))


@FUZZ
@given(data=st.data())
def test_sigmoid_of_finite_input_is_finite(data):
    """Any finite x: sigmoid(x) is finite and in [0, 1] (no overflow in exp), on both
    backends; and the backward of it, for any finite grad_out, is finite (|y (1 - y)| <=
    1/4)."""
    dtype = data.draw(st.sampled_from(DTYPES))
    shape = data.draw(st.one_of(small_shapes(), st.sampled_from(THREADED_SHAPES)))
    x = data.draw(values(dtype, shape, "finite"))
    g = data.draw(values(dtype, shape, "finite"))
    for backend in (compiled, reference):
        with np.errstate(over="raise", invalid="raise"):
            y = backend.sigmoid_forward(x)
        assert np.isfinite(y).all() and (y >= 0).all() and (y <= 1).all(), backend.name
        assert (y[x >= 0] >= 0.5).all() and (y[x <= 0] <= 0.5).all(), backend.name
        with np.errstate(over="ignore"):  # g * y may overflow in float32 before * (1 - y)
            dy = backend.sigmoid_backward(g, y)
        finite = np.isfinite(dy)
        # a finite grad times y (1 - y) <= 1/4 is finite unless g * y overflowed first
        assert finite[np.abs(g) < np.finfo(dtype).max / 2].all(), backend.name


@FUZZ
@given(data=st.data())
def test_nan_and_infinity_through_sigmoid(data):
    """NaN in, NaN out, at exactly the same positions and nowhere else; +inf -> 1, -inf
    -> 0; on both backends, in place too."""
    dtype = data.draw(st.sampled_from(DTYPES))
    shape = data.draw(st.one_of(small_shapes(), st.sampled_from(THREADED_SHAPES)))
    x = data.draw(values(dtype, shape, "any"))
    for backend in (compiled, reference):
        for y in (backend.sigmoid_forward(x), backend.sigmoid_forward(relayout(x, "reversed"))):
            np.testing.assert_array_equal(np.isnan(y), np.isnan(x))
            assert (y[x == np.inf] == 1).all() and (y[x == -np.inf] == 0).all()
        inplace = x.copy()
        assert backend.sigmoid_forward(inplace, out=inplace) is inplace
        np.testing.assert_array_equal(np.isnan(inplace), np.isnan(x))


# ---------------------------------------------------------------------- argument errors

BAD_DTYPES = [np.float16, np.int32, np.int64, np.complex64, np.bool_, np.dtype(">f8"),
              np.dtype(">f4"), object]


@st.composite
def broken_cases(draw, kernel: str):
    """A valid case with one or two arguments spoiled: a wrong dtype (the other float
    included), a wrong shape, not an array, or an output that is strided / read-only /
    unaligned; or a flag that is not a bool."""
    case = draw(cases(kernel, aliasing=False))
    inputs, outputs, _ = case.build()
    args = {**inputs, **{k: v for k, v in outputs.items() if v is not None}}
    flags = dict(case.flags)
    names = [k for k, v in args.items() if v is not None] + list(flags)
    for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True)):
        if name in flags:
            flags[name] = draw(st.sampled_from([1, 0, None, "yes", 1.0, np.float64(1)]))
            continue
        a = args[name]
        how = draw(st.sampled_from(["dtype", "other-float", "shape", "list", "scalar",
                                    "none", "layout"]))
        event(f"spoiled: {how}")
        if how == "dtype":
            with np.errstate(all="ignore"):  # NaN to int: the values do not matter here
                args[name] = a.astype(draw(st.sampled_from(BAD_DTYPES)))
        elif how == "other-float":
            with np.errstate(all="ignore"):
                args[name] = a.astype(np.float64 if a.dtype == np.float32 else np.float32)
        elif how == "shape":
            args[name] = np.zeros(draw(small_shapes()), a.dtype)
        elif how == "list":
            args[name] = a.tolist()
        elif how == "scalar":
            args[name] = a.dtype.type(1.5)
        elif how == "none":
            args[name] = None
        else:
            args[name] = relayout(np.array(a, order="C"), draw(st.sampled_from(
                ["fortran", "transposed", "strided", "reversed", "readonly", "unaligned"])))
    return kernel, args, flags


@pytest.mark.parametrize("kernel", KERNELS)
@FUZZ
@given(data=st.data())
def test_bad_arguments_raise_the_same_error_on_both_backends(kernel, data):
    """A spoiled call either still is a valid one (then both backends agree) or raises
    ValueError/TypeError - the same type and words on both backends - and leaves every
    output array exactly as it was."""
    kernel, args, flags = data.draw(broken_cases(kernel), label="call")
    outcomes = []
    for backend in (compiled, reference):
        mine = {k: (v.copy() if isinstance(v, np.ndarray) and v.flags.c_contiguous
                    and v.flags.writeable and v.flags.aligned else v)
                for k, v in args.items()}
        before = {k: _snapshot(v) for k, v in mine.items() if isinstance(v, np.ndarray)}
        try:
            with np.errstate(all="ignore"):
                result = getattr(backend, kernel)(**mine, **flags)
        except (ValueError, TypeError) as exc:
            for k, v in mine.items():
                if isinstance(v, np.ndarray):
                    assert _snapshot(v) == before[k], f"{backend.name}: {k} written on error"
            outcomes.append(Raised(type(exc), str(exc)))
        else:
            outcomes.append(result if isinstance(result, tuple) else (result,))
    compiled_outcome, reference_outcome = outcomes
    if isinstance(compiled_outcome, Raised) or isinstance(reference_outcome, Raised):
        assert compiled_outcome == reference_outcome
        return
    for got, want in zip(compiled_outcome, reference_outcome):
        assert (got is None) == (want is None)
        if got is not None:
            assert type(got) is np.ndarray and got.shape == want.shape
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


@dataclass(frozen=True)
class Raised:
    type: type
    message: str


# ---------------------------------------------------------------------- graph layer

@dataclass
class Node:
    tensor: cg.Tensor
    bound: float       # |value| <= bound (NaN and inf aside)
    smooth: bool       # made by ops whose values both backends compute identically


# The ops that run kernels first: hypothesis draws the first entries of a list most often.
OPS = ["linear", "sigmoid", "add", "matmul", "mul", "sub", "tanh", "relu", "maximum", "neg",
       "exp_tanh", "square", "scale", "sum", "mean", "max", "reshape", "transpose", "getitem",
       "div_const"]


def _apply(op: str, nodes: List[Node], picks: List[int], param: int) -> Optional[Node]:
    """One op on the chosen nodes, or None where it does not apply. Ops at a kink (relu,
    max, maximum) only take inputs computed identically on both backends (upstream of no
    compiled forward), so that a rounding difference cannot pick another branch."""
    a = nodes[picks[0] % len(nodes)]
    t = a.tensor
    if op in ("relu", "max") and not a.smooth:
        return None
    if op == "sigmoid":
        return Node(F.sigmoid(t), 1.0, False)
    if op == "tanh":
        return Node(t.tanh(), 1.0, a.smooth)
    if op == "relu":
        return Node(t.relu(), a.bound, True)
    if op == "neg":
        return Node(-t, a.bound, a.smooth)
    if op == "exp_tanh":
        return Node(t.tanh().exp(), math.e, a.smooth)
    if op == "square":
        return Node(t ** 2, a.bound ** 2, a.smooth) if a.bound <= 100 else None
    if op == "scale":
        return Node(t * 0.5 + 0.25, a.bound * 0.5 + 0.25, a.smooth)
    if op in ("sum", "mean", "max"):
        if t.ndim == 0 or (op == "max" and t.size == 0):
            return None
        axis = param % (t.ndim + 1)
        axis = None if axis == t.ndim else axis
        keep = bool(param & 4)
        if op == "max" and axis is not None and t.shape[axis] == 0:
            return None
        out = getattr(t, op)(axis=axis, keepdims=keep)
        size = t.size if axis is None else t.shape[axis]
        return Node(out, a.bound * (size if op == "sum" else 1), a.smooth)
    if op == "reshape":
        return Node(t.reshape(-1), a.bound, a.smooth)
    if op == "transpose":
        return Node(t.T, a.bound, a.smooth) if t.ndim >= 2 else None
    if op == "getitem":
        if t.ndim == 0 or t.shape[0] == 0:
            return None
        index = [param % t.shape[0], 0, param % t.shape[0]]  # repeats add up
        return Node(t[index], a.bound, a.smooth)
    if op == "div_const":
        return Node(t / 4.0, a.bound / 4, a.smooth)
    # A binary op takes one of the pairs of nodes it applies to.
    fits = {"linear": lambda p, q: p.ndim >= 1 and q.ndim == 2 and q.shape[1] == p.shape[-1],
            "matmul": lambda p, q: p.ndim == 2 and q.ndim == 2 and p.shape[1] == q.shape[0]}
    fit = fits.get(op, _broadcastable)
    pairs = [(p, q) for p in nodes for q in nodes if fit(p.tensor, q.tensor)]
    if not pairs:
        return None
    a, b = pairs[(picks[0] * 61 + picks[1]) % len(pairs)]
    t, u = a.tensor, b.tensor
    if op == "maximum" and not (a.smooth and b.smooth):
        return None
    if op in ("add", "sub", "mul", "maximum"):
        bound = a.bound * b.bound if op == "mul" else a.bound + b.bound
        if bound > 1e4:
            return None
        fn = {"add": lambda: t + u, "sub": lambda: t - u, "mul": lambda: t * u,
              "maximum": lambda: cg.maximum(t, u)}[op]
        return Node(fn(), bound, a.smooth and b.smooth)
    bound = t.shape[-1] * a.bound * b.bound + 2
    if bound > 1e4:
        return None
    if op == "linear":  # x (..., in), w (out, in), the bias leaf (out,) when it fits
        bias = nodes[0].tensor if nodes[0].tensor.shape == (u.shape[0],) else None
        return Node(F.linear(t, u, bias), bound, False)
    if op == "matmul":
        return Node(t @ u, bound, a.smooth and b.smooth)
    raise AssertionError(op)


def _broadcastable(p, q) -> bool:
    try:
        np.broadcast_shapes(p.shape, q.shape)
    except ValueError:
        return False
    return True


@st.composite
def graphs(draw):
    """Leaves (a bias (M,), a batch x (B, N), weights (M, N) and (N, M), a vector (N,), a
    scalar) and a program of 2 to 8 ops over them and earlier results."""
    dtype = draw(st.sampled_from(DTYPES))
    batch, n, m = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    leaf = lambda shape: values(dtype, shape, "sum-finite").map(  # noqa: E731
        lambda a: np.clip(a, -2, 2).astype(dtype))
    leaves = [draw(leaf((m,))), draw(leaf((batch, n))), draw(leaf((m, n))),
              draw(leaf((n, m))), draw(leaf((n,))), draw(leaf(()))]
    if draw(st.integers(0, 3)) == 0:
        # A NaN in one leaf. (Not an infinity: inf * 0 is NaN but inf * 1e-40 is inf, and
        # the compiled sigmoid may round a result below the normal range to 0 where NumPy
        # keeps a subnormal; the kernel tests cover infinities.)
        i = draw(st.integers(0, 4))
        flat = leaves[i].reshape(-1)
        flat[draw(st.integers(0, flat.size - 1))] = math.nan
    ops = draw(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 50),
                                  st.integers(0, 50), st.integers(0, 50)),
                        min_size=2, max_size=8))
    weights = draw(st.lists(st.sampled_from([1.0, -0.5, 2.0]), min_size=12, max_size=12))
    return dtype, leaves, ops, weights


def run_graph(backend: str, leaves: List[np.ndarray], ops, weights) -> Tuple[list, list]:
    """Build the program's graph on `backend`, backward from a weighted sum of every result;
    return (every result's value, every leaf's gradient)."""
    with cg.use_backend(backend):
        tensors = [cg.Tensor(a.copy(), requires_grad=True) for a in leaves]
        nodes = [Node(t, 2.0, True) for t in tensors]
        for op, i, j, param in ops:
            node = _apply(op, nodes, [i, j], param)
            if node is not None:
                nodes.append(node)
                event(f"op: {op}")
        results = nodes[len(leaves):]
        if not results:
            return [], []
        loss = results[0].tensor.sum() * weights[0]
        for w, node in zip(weights[1:], results[1:]):
            loss = loss + node.tensor.sum() * w
        with np.errstate(all="ignore"):
            loss.backward()
        return ([n.tensor.data for n in results] + [loss.data],
                [t.grad for t in tensors])


def assert_close_with_nan(got, want, dtype, what: str) -> None:
    if got is None or want is None:
        assert got is None and want is None, what
        return
    assert got.shape == want.shape and got.dtype == want.dtype, what
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=what)
    # Relative to the array's largest value: a gradient summed in another order may cancel.
    finite = np.abs(want[np.isfinite(want)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got, want, equal_nan=True, err_msg=what, rtol=rtol,
                               atol=rtol * scale)


@FUZZ
@given(graphs())
def test_random_graphs_agree_on_both_backends(graph):
    """Values and gradients of random expression graphs (forks, broadcasting, every kernel
    through linear/sigmoid/matmul/bias reduction, NaN in the leaves) are the same
    on both backends (up to rounding: the compiled kernels sum in another order)."""
    dtype, leaves, ops, weights = graph
    with np.errstate(all="ignore"):
        values_c, grads_c = run_graph("cython", leaves, ops, weights)
        values_r, grads_r = run_graph("reference", leaves, ops, weights)
    assume(values_c)
    assert len(values_c) == len(values_r)
    for i, (vc, vr) in enumerate(zip(values_c, values_r)):
        assert_close_with_nan(vc, vr, dtype, f"result {i}")
    for i, (gc_, gr) in enumerate(zip(grads_c, grads_r)):
        assert_close_with_nan(gc_, gr, dtype, f"gradient of leaf {i}")


# ---------------------------------------------------------------------- in a subprocess

def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CYGRAD_BACKEND"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=timeout)


PRIVATE_ELEMENTWISE_FUZZ = """
    import numpy as np
    from cygrad import _elementwise as E
    rng = np.random.default_rng(0)

    def array():
        kind = rng.integers(12)
        if kind == 0:
            return None
        if kind == 1:
            return [1.0, 2.0]
        if kind == 2:
            return "abc"
        dtype = [np.float32, np.float64, np.float16, np.int32, np.complex64,
                 np.dtype(">f8")][rng.integers(6) if kind == 3 else rng.integers(2)]
        n = int(rng.choice([0, 1, 5, 6, 40000]))
        a = np.ones(n, dtype)
        layout = rng.integers(6)
        if layout == 1 and n > 1:
            a = np.ones(2 * n, dtype)[::2]
        elif layout == 2:
            a.flags.writeable = False
        elif layout == 3 and dtype in (np.float32, np.float64):
            raw = np.zeros(a.nbytes + 1, np.uint8)
            a = raw[1:].view(dtype)
        elif layout == 4:
            a = a.reshape(1, -1)
        return a

    calls = 0
    for _ in range(3000):
        if rng.integers(2):
            fn, args = E.sigmoid_forward, (array(), array())
        else:
            fn, args = E.sigmoid_backward, (array(), array(), array(), bool(rng.integers(2)))
        try:
            fn(*args)
        except (TypeError, ValueError):
            pass
        calls += 1
    print("alive", calls)
    """


@pytest.mark.subprocess
def test_private_elementwise_module_survives_any_arguments():
    """The compiled element-wise functions check dtype, size and the output's layout
    themselves ("it keeps a direct call safe"): 3000 calls with random arrays (wrong dtype,
    size, layout, read-only, unaligned, 2-D), None, lists and strings return or raise
    TypeError/ValueError; the process survives."""
    result = run_python(PRIVATE_ELEMENTWISE_FUZZ)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.split() == ["alive", "3000"]


@pytest.mark.parametrize("call", [
    "E.sigmoid_forward(a.astype(swapped), a.copy())",
    "E.sigmoid_forward(a, a.astype(swapped))",
    "E.sigmoid_backward(a, a.astype(swapped), a.copy(), False)",
])
@pytest.mark.subprocess
def test_private_elementwise_module_rejects_byte_swapped_arrays(call):
    """A float32 array in the other byte order has float32's type number: the module
    refuses it rather than reading its bytes as native floats (the backend then gives the
    friendly error)."""
    result = run_python(f"""
        import numpy as np
        from cygrad import _elementwise as E
        a = np.ones(5, np.float32)
        swapped = a.dtype.newbyteorder()
        try:
            {call}
        except (TypeError, ValueError) as exc:
            print("raised", type(exc).__name__)
        else:
            print("returned")
        """)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.startswith("raised"), result.stdout


@pytest.mark.parametrize("call", [
    "E.sigmoid_forward(None, a)",
    "E.sigmoid_forward(a, None)",
    "E.sigmoid_backward(a, a, None, False)",
    "E.sigmoid_backward(a, None, a.copy(), False)",
])
@pytest.mark.subprocess
def test_private_elementwise_module_rejects_none(call):
    """None for an array is a TypeError. (An ndarray parameter accepts None unless declared
    `not None`; reading None's dtype reads past the None object.)"""
    result = run_python(f"""
        import numpy as np
        from cygrad import _elementwise as E
        a = np.ones(5, np.float32)
        try:
            {call}
        except (TypeError, ValueError) as exc:
            print(type(exc).__name__, exc)
        """)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.startswith("TypeError"), (
        f"{call}: {result.stdout.strip()} - the argument's None is read as an array; "
        "declare the ndarray parameters of csrc/_elementwise.pyx `not None`")


PRIVATE_LINEAR_BAD_TYPES = """
    import numpy as np
    from cygrad import _linear as L
    f4, f8 = np.float32, np.float64
    m = np.ones((3, 4), f4)
    calls = {
        "mixed dtypes": lambda: L.linear_forward(m, m.astype(f8), None, m.copy()),
        "int arrays": lambda: L.linear_forward(m.astype(int), m.astype(int), None,
                                               m.astype(int)),
        "3-D": lambda: L.linear_forward(np.ones((2, 3, 4), f4), m, None, m.copy()),
        "Fortran": lambda: L.linear_backward(m, np.asfortranarray(m), m, m.copy(), None,
                                             False),
        "strided out": lambda: L.matmul_backward(m, m, m.T.copy(), np.ones((3, 8), f4)[:, ::2],
                                                 None, False),
        "read-only out": lambda: L.bias_backward(m, np.broadcast_to(np.ones(1, f4), 4), False),
        "list": lambda: L.bias_backward([[1.0]], np.ones(1, f4), False),
        "string": lambda: L.matmul_backward("abc", m, m, None, None, False),
        "mixed bias": lambda: L.bias_backward(m, np.ones(4, f8), False),
        # Same type number as native float64, other byte order: misread if let through.
        "byte-swapped": lambda: L.linear_forward(m.astype(">f8"), m.astype(">f8"), None,
                                                 np.ones((3, 3), ">f8")),
    }
    for name, fn in calls.items():
        try:
            fn()
        except (TypeError, ValueError):
            print("raised:", name, flush=True)
        else:
            print("returned:", name, flush=True)
    print("alive")
    """


@pytest.mark.subprocess
def test_private_linear_module_rejects_wrong_types():
    """The BLAS module trusts sizes (backends/cython.py checked them) but not types: a wrong
    dtype, number of dimensions, contiguity or writability is a TypeError/ValueError from
    its typed buffers, not a crash."""
    result = run_python(PRIVATE_LINEAR_BAD_TYPES)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    lines = result.stdout.splitlines()
    assert lines[-1] == "alive" and len(lines) == 11
    assert [line for line in lines[:-1] if not line.startswith("raised:")] == []


@pytest.mark.parametrize("call", [
    "L.linear_forward(m, m, None, None)",
    "L.bias_backward(m, None, False)",
])
@pytest.mark.subprocess
def test_private_linear_module_rejects_none_for_an_output(call):
    """None where the function writes is a TypeError, not a write through NULL."""
    result = run_python(f"""
        import numpy as np
        from cygrad import _linear as L
        m = np.ones((4, 4), np.float32)
        try:
            {call}
        except (TypeError, ValueError) as exc:
            print(type(exc).__name__, exc)
        """)
    assert result.returncode == 0, (
        f"{call} killed the interpreter (exit status {result.returncode}): a typed "
        "memoryview parameter accepts None; declare the outputs of csrc/_linear.pyx that are "
        "always written (`out` of linear_forward and bias_backward) `not None`")
    assert result.stdout.startswith("TypeError"), result.stdout


EXTREME_SHAPES = """
    import json
    import numpy as np
    import cygrad as cg
    k = cg.kernels
    H = 2 ** 40  # a length past any int32, in 0-size arrays (no memory)
    report = {}

    def attempt(name, fn, check):
        try:
            result = fn()
        except (ValueError, TypeError, MemoryError) as exc:
            report[name] = type(exc).__name__
        else:
            report[name] = "ok" if check(result) else f"wrong: {result!r}"

    for dtype in (np.float32, np.float64):
        z = lambda *shape: np.zeros(shape, dtype)
        attempt(f"sigmoid_forward {dtype.__name__}", lambda: k.sigmoid_forward(z(H, 0, 3)),
                lambda r: r.shape == (H, 0, 3))
        attempt(f"sigmoid_backward {dtype.__name__}",
                lambda: k.sigmoid_backward(z(0, H), z(0, H), out=z(0, H), accumulate=True),
                lambda r: r.shape == (0, H))
        attempt(f"bias_backward rows {dtype.__name__}", lambda: k.bias_backward(z(H, 0)),
                lambda r: r.shape == (0,))
        attempt(f"bias_backward {dtype.__name__} 0 x 3", lambda: k.bias_backward(z(0, H, 3)),
                lambda r: r.shape == (3,) and (r == 0).all())
        attempt(f"linear_forward {dtype.__name__}", lambda: k.linear_forward(z(H, 0), z(0, 0)),
                lambda r: r.shape == (H, 0))
        attempt(f"linear_forward in_features {dtype.__name__}",
                lambda: k.linear_forward(z(0, H), z(0, H)), lambda r: r.shape == (0, 0))
        attempt(f"linear_backward {dtype.__name__}",
                lambda: k.linear_backward(z(H, 0), z(H, 0), z(0, 0)),
                lambda r: [a.shape for a in r] == [(H, 0), (0, 0), (0,)])
        attempt(f"linear_backward empty batch {dtype.__name__}",
                lambda: k.linear_backward(z(0, 3), z(0, 4), z(3, 4)),
                lambda r: (r[1] == 0).all() and (r[2] == 0).all() and r[0].shape == (0, 4))
        attempt(f"matmul_backward m {dtype.__name__}",
                lambda: k.matmul_backward(z(H, 0), z(H, 0), z(0, 0)),
                lambda r: [a.shape for a in r] == [(H, 0), (0, 0)])
        attempt(f"matmul_backward k {dtype.__name__}",
                lambda: k.matmul_backward(z(0, 0), z(0, H), z(H, 0)),
                lambda r: [a.shape for a in r] == [(0, H), (H, 0)])
        attempt(f"32 dimensions {dtype.__name__}",
                lambda: k.bias_backward(z(*([1] * 31 + [3])) + 1),
                lambda r: r.shape == (3,) and (r == 1).all())
    print(json.dumps(report))
    """


@pytest.mark.subprocess
def test_extreme_shapes_in_a_subprocess():
    """0-size arrays with an axis longer than any int32 (no memory is needed), and 32
    dimensions: a correct (empty) result or a ValueError/TypeError/MemoryError, never a
    crash or a wrong result."""
    import json

    result = run_python(EXTREME_SHAPES)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert len(report) == 22
    wrong = {name: how for name, how in report.items()
             if how not in ("ok", "ValueError", "TypeError", "MemoryError")}
    assert wrong == {}

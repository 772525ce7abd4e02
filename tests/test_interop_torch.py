"""cygrad inside PyTorch (`cygrad.interop.torch`): gradients against finite differences and
against PyTorch's own ops, the drop-in modules, `cygradify`, the strict Functions and the
modules' fallback, and that the data crosses without copies."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

if importlib.util.find_spec("torch") is None:
    pytest.skip("PyTorch not installed", allow_module_level=True)

import cygrad  # noqa: E402
# Before torch: the adapter loads it with a short OpenMP spin (see its module docstring).
from cygrad.interop.torch import (Linear, LinearFunction, Sigmoid, SigmoidFunction,  # noqa: E402
                                  cygradify, linear, sigmoid)

import torch  # noqa: E402

nn = torch.nn
F64 = torch.float64


@pytest.fixture
def t(rng):
    """`t(*shape, dtype=float64, grad=True)`: a seeded normal tensor."""
    def make(*shape, dtype=F64, grad=True):
        data = torch.from_numpy(rng.standard_normal(shape))
        return data.to(dtype).requires_grad_(grad)
    return make


@pytest.fixture
def calls(monkeypatch):
    """Counts the calls of each cygrad kernel the adapters make."""
    counts = {}
    for name in ("linear_forward", "linear_backward", "sigmoid_forward", "sigmoid_backward"):
        kernel = getattr(cygrad.kernels, name)

        def counted(*args, _kernel=kernel, _name=name, **kwargs):
            counts[_name] = counts.get(_name, 0) + 1
            return _kernel(*args, **kwargs)
        monkeypatch.setattr(cygrad.kernels, name, counted)
    return counts


# --- the Functions against finite differences ------------------------------------------------

@pytest.mark.parametrize("grads, with_bias", [
    ("xwb", True), ("wb", True), ("xw", True), ("x", True), ("b", True),
    ("xw", False), ("w", False), ("x", False)], ids=lambda v: str(v))
def test_linear_function_gradcheck(t, kernels, grads, with_bias):
    """Some inputs do not require grad: their gradients are neither computed nor returned."""
    x, w = t(5, 4, grad="x" in grads), t(3, 4, grad="w" in grads)
    b = t(3, grad="b" in grads) if with_bias else None
    assert torch.autograd.gradcheck(LinearFunction.apply, (x, w, b))


@pytest.mark.parametrize("x_shape", [(4,), (2, 3, 4)], ids=str)
def test_linear_function_gradcheck_any_leading_axes(t, x_shape):
    assert torch.autograd.gradcheck(LinearFunction.apply, (t(*x_shape), t(3, 4), t(3)))


@pytest.mark.parametrize("shape", [(7,), (5, 4), (2, 3, 4)], ids=str)
def test_sigmoid_function_gradcheck(t, kernels, shape):
    assert torch.autograd.gradcheck(SigmoidFunction.apply, (t(*shape),))


def test_non_contiguous_inputs_give_pytorchs_results(t):
    x, w = t(4, 6).t(), t(4, 6)[:, ::2].t()  # (6, 4) and (3, 4), both strided views
    got = SigmoidFunction.apply(LinearFunction.apply(x, w))
    want = torch.sigmoid(x @ w.t())
    torch.testing.assert_close(got, want)
    g = t(6, 3, grad=False)
    gx, gw = torch.autograd.grad(got, (x, w), g)
    wx, ww = torch.autograd.grad(want, (x, w), g)
    torch.testing.assert_close(gx, wx)
    torch.testing.assert_close(gw, ww)


def test_in_place_change_of_a_saved_tensor_is_caught(t):
    x, w = t(5, 4), t(3, 4)
    y = LinearFunction.apply(x, w)
    with torch.no_grad():
        w.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
def test_second_derivatives_under_create_graph(t, with_bias):
    x, w, b = t(5, 4), t(3, 4), (t(3) if with_bias else None)
    assert torch.autograd.gradgradcheck(LinearFunction.apply, (x, w, b))
    assert torch.autograd.gradgradcheck(SigmoidFunction.apply, (x,))
    assert torch.autograd.gradgradcheck(LinearFunction.apply, (t(4), w, b))  # 1-D x


def test_no_copies_of_contiguous_inputs_or_of_gradients(t, monkeypatch):
    x, w, b = t(8, 4), t(3, 4), t(3)
    seen = {}
    for name in ("linear_forward", "linear_backward"):
        def spy(*args, _kernel=getattr(cygrad.kernels, name), _name=name, **kwargs):
            seen[_name] = (args, _kernel(*args, **kwargs))
            return seen[_name][1]
        monkeypatch.setattr(cygrad.kernels, name, spy)
    y = LinearFunction.apply(x, w, b)
    y.sum().backward()
    (fx, fw, fb), out = seen["linear_forward"]
    assert [a.ctypes.data for a in (fx, fw, fb)] == [x.data_ptr(), w.data_ptr(), b.data_ptr()]
    assert y.data_ptr() == out.ctypes.data
    _, (gx, gw, gb) = seen["linear_backward"]
    # PyTorch stores the kernel's arrays themselves as the leaves' .grad
    assert [x.grad.data_ptr(), w.grad.data_ptr(), b.grad.data_ptr()] == \
        [gx.ctypes.data, gw.ctypes.data, gb.ctypes.data]


# --- a real network: cygradify gives PyTorch's own gradients --------------------------------

def _mlp(dtype=torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 32), nn.Sigmoid(), nn.Linear(32, 16), nn.Sigmoid(),
                         nn.Linear(16, 3)).to(dtype)


def _gradients(model, x, target, loss):
    model.zero_grad()
    x = x.detach().requires_grad_()
    out = model(x)
    value = (nn.functional.mse_loss(out, target) if loss == "mse"
             else nn.functional.cross_entropy(out, target))
    value.backward()
    return [value.detach(), x.grad] + [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_cygradify_gives_pytorchs_gradients(t, kernels, calls, loss):
    model = _mlp(F64)
    x = t(64, 20, grad=False)
    target = t(64, 3, grad=False) if loss == "mse" else torch.arange(64) % 3
    want = _gradients(model, x, target, loss)
    assert not calls  # the native model ran no cygrad kernel
    got = _gradients(cygradify(model), x, target, loss)
    assert calls == {"linear_forward": 3, "linear_backward": 3, "sigmoid_forward": 2,
                     "sigmoid_backward": 2}
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-9)


def test_cygradify_float32(t, calls):
    model = _mlp(torch.float32)
    x, target = t(64, 20, dtype=torch.float32, grad=False), t(64, 3, dtype=torch.float32)
    want = _gradients(model, x, target, "mse")
    got = _gradients(cygradify(model), x, target, "mse")
    assert calls["linear_backward"] == 3
    for g, w in zip(got, want):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)


def test_cygradify_keeps_modules_and_parameters_in_place():
    model = _mlp()
    modules, params = list(model.modules()), list(model.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # made before the swap
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert cygradify(model) is model
    assert list(model.modules()) == modules and list(model.parameters()) == params
    assert [type(m) for m in model] == [Linear, Sigmoid, Linear, Sigmoid, Linear]
    assert cygradify(model) is model and type(model[0]) is Linear  # idempotent
    model(torch.randn(4, 20)).sum().backward()
    optimizer.step()
    assert not torch.equal(model[0].weight, state["0.weight"])


def test_cygradify_converts_the_root_and_nested_modules_only_of_the_exact_types():
    class OwnLinear(nn.Linear):  # a subclass may have its own forward: left alone
        pass

    root = cygradify(nn.Linear(3, 2))
    assert type(root) is Linear
    tree = nn.ModuleDict({"a": nn.Sequential(nn.Linear(3, 2), nn.ReLU()),
                          "b": nn.ModuleList([nn.Sigmoid(), OwnLinear(2, 2)])})
    cygradify(tree)
    assert [type(m) for m in (tree.a[0], tree.a[1], tree.b[0], tree.b[1])] == \
        [Linear, nn.ReLU, Sigmoid, OwnLinear]
    with pytest.raises(TypeError, match="^module: expected a torch.nn.Module"):
        cygradify([nn.Linear(3, 2)])


# --- the drop-in modules ----------------------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False])
def test_linear_module_matches_torch_nn_linear(bias):
    torch.manual_seed(1)
    ours = Linear(6, 4, bias=bias)
    torch.manual_seed(1)
    theirs = nn.Linear(6, 4, bias=bias)
    assert ours.weight.dtype == torch.float32 and ours.weight.shape == (4, 6)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for k, v in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[k], v, rtol=0, atol=0)  # same init
    theirs.load_state_dict(ours.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(5, 6)
    torch.testing.assert_close(ours(x), theirs(x))
    assert repr(ours) == repr(theirs)
    assert Linear(2, 3, dtype=F64).weight.dtype == F64


def test_sigmoid_module_and_functions():
    x = torch.randn(3, 5, dtype=F64)
    torch.testing.assert_close(Sigmoid()(x), torch.sigmoid(x))
    torch.testing.assert_close(sigmoid(x), torch.sigmoid(x))
    w = torch.randn(2, 5, dtype=F64)
    torch.testing.assert_close(linear(x, w), x @ w.t())


# --- unsupported inputs: the Functions refuse, the modules fall back --------------------------

@pytest.mark.parametrize("case, error, message", [
    ("int x", TypeError, "^x: expected float32 or float64, got torch.int64"),
    ("half x", TypeError, "^x: expected float32 or float64, got torch.float16"),
    ("float32 w", TypeError, r"^w: expected torch.float64 like x \(no silent casting\)"),
    ("float32 b", TypeError, r"^b: expected torch.float64 like x"),
    ("array x", TypeError, "^x: expected a torch.Tensor, got ndarray"),
    ("meta w", ValueError, "^w: expected a strided CPU tensor, got a torch.strided tensor on meta"),
    ("sparse x", ValueError, "^x: expected a strided CPU tensor, got a torch.sparse_coo"),
    ("shape w", ValueError, r"^w: expected float64 of shape \(out_features, 4\)"),
])
def test_linear_function_refuses_unsupported_inputs(t, calls, case, error, message):
    args = {"x": t(5, 4), "w": t(3, 4), "b": t(3)}
    name = case.split()[1]
    args[name] = {
        "int": lambda a: a.detach().long(), "half": lambda a: a.detach().half(),
        "float32": lambda a: a.detach().float(), "array": lambda a: a.detach().numpy(),
        "meta": lambda a: a.detach().to("meta"), "sparse": lambda a: a.detach().to_sparse(),
        "shape": lambda a: a.detach()[:, :3],
    }[case.split()[0]](args[name])
    with pytest.raises(error, match=message):
        LinearFunction.apply(args["x"], args["w"], args["b"])
    # refused before any kernel ran, but for the shape: the kernel's own check names it
    assert calls.get("linear_forward", 0) == (case == "shape w")


def test_sigmoid_function_refuses_unsupported_inputs():
    with pytest.raises(TypeError, match="^x: expected float32 or float64, got torch.bfloat16"):
        SigmoidFunction.apply(torch.ones(3, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="^x: expected a strided CPU tensor"):
        SigmoidFunction.apply(torch.ones(3, device="meta"))


@pytest.mark.parametrize("convert", [
    lambda m, x: (m.half(), x.half()),
    lambda m, x: (m.bfloat16(), x.bfloat16()),
    lambda m, x: (m.to("meta"), x.to("meta")),
], ids=["float16", "bfloat16", "meta device"])
def test_modules_fall_back_to_pytorch(calls, convert):
    native, x = convert(_mlp(), torch.randn(8, 20))
    converted, _ = convert(cygradify(_mlp()), torch.randn(8, 20))
    out = converted(x)
    assert not calls and out.dtype == x.dtype and out.device == x.device
    if x.device.type == "cpu":
        torch.testing.assert_close(out, native(x))


def test_modules_fall_back_under_autocast_and_for_mixed_dtypes(calls):
    model = cygradify(_mlp())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(torch.randn(8, 20)).dtype == torch.bfloat16
    with pytest.raises(RuntimeError):  # PyTorch's own error, as nn.Linear gives
        model(torch.randn(8, 20, dtype=F64))
    assert not calls


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
def test_captured_graphs_hold_pytorchs_ops():
    model, x = cygradify(_mlp()), torch.randn(4, 20)
    for captured in (torch.jit.trace(model, x), torch.jit.script(model)):
        graph = str(captured.inlined_graph)
        assert "aten::linear" in graph and "aten::sigmoid" in graph
        assert "PythonOp" not in graph
        torch.testing.assert_close(captured(x), _mlp()(x))
    exported = torch.export.export(model, (x,))
    assert "LinearFunction" not in str(exported.graph)
    torch.testing.assert_close(exported.module()(x), _mlp()(x))


@pytest.mark.subprocess
def test_importing_cygrad_does_not_import_torch():
    code = ("import sys, cygrad, cygrad.interop, cygrad.kernels; "
            "print('torch' in sys.modules, 'autograd' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]


SHARED = {"CYGRAD_SHARE_THREADS": "1"}  # the opt-in: one pool for cygrad, NumPy, PyTorch


@pytest.mark.parametrize("code", ["import torch; import cygrad.interop.torch",
                                  "import cygrad; import torch; import cygrad.interop.torch",
                                  "import cygrad.interop.torch; import torch"])
@pytest.mark.parametrize("env", [{}, SHARED], ids=["default", "shared"])
@pytest.mark.subprocess
def test_no_warning_whichever_was_imported_first(code, env):
    """The adapter changes no thread setting of PyTorch's, so the order of the imports
    does not matter and there is nothing to warn about."""
    import os
    clean = {k: v for k, v in os.environ.items()
             if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY") and not k.startswith("CYGRAD_")}
    result = subprocess.run([sys.executable, "-W", "error", "-c", code],
                            env={**clean, **env}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="PyTorch's Linux wheels bundle GNU OpenMP")
@pytest.mark.parametrize("code", ["import torch; import cygrad.interop.torch",
                                  "import cygrad.interop.torch; import torch"])
@pytest.mark.subprocess
def test_pytorch_and_cygrad_share_one_openmp_runtime(code):
    """What makes one thread pool possible: a single GNU OpenMP in the process, whichever
    loaded first. (A cygrad with an OpenMP runtime of its own would move its threads to
    PyTorch's under share_threads(): test_blas_threads checks that move.) By default the
    products stay on the BLAS's own threads."""
    result = subprocess.run([sys.executable, "-c", code + "; from cygrad import _linear; "
                             "from cygrad import runtime; "
                             "print(_linear.blas_threads()); "
                             "print(runtime.info()['OpenMP runtime'] == \"PyTorch's\"); "
                             "print(len({l.split()[-1] for l in open('/proc/self/maps') "
                             "if 'libgomp' in l}))"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    threads, moved, runtimes = result.stdout.split()
    assert runtimes == "1"
    assert moved == "False"  # nothing to move: the runtime is already shared
    assert threads == "blas"


@pytest.mark.parametrize("code", ["import cygrad", "import cygrad.interop.torch"])
@pytest.mark.parametrize("user_value", [None, "50000"])
@pytest.mark.parametrize("pools", [{}, SHARED], ids=["default", "shared"])
@pytest.mark.subprocess
def test_the_openmp_spin_is_left_to_the_user(code, user_value, pools):
    """cygrad never sets GOMP_SPINCOUNT (libgomp reads it once, when it loads, and PyTorch
    shares that libgomp): a library imported later, or a child process, sees the
    environment as it was, and a value the user set is left alone."""
    import os
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(pools)
    if user_value:
        env["GOMP_SPINCOUNT"] = user_value
    result = subprocess.run([sys.executable, "-c", f"{code}; import os; "
                             "print(os.environ.get('GOMP_SPINCOUNT'))"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(user_value)]

"""cygrad against PyTorch itself: the same networks with the same weights give the same
gradients, and the optimizers take the same steps as torch.optim. Float64 throughout."""
from __future__ import annotations

import numpy as np
import pytest

import cygrad as cg
from cygrad import Tensor, optim
from cygrad import functional as F

torch = pytest.importorskip("torch", reason="PyTorch not installed")
TF = torch.nn.functional

GRAD_TOL = dict(rtol=1e-6, atol=1e-6)  # as asked of the library: float64 gradients to 1e-6
# Different BLAS libraries sum in different orders; five float64 steps stay far below this.
STEP_TOL = dict(rtol=1e-9, atol=1e-12)


def _weights(rng, sizes, scale=None):
    """[(w, b)] for layers of `sizes`, w of shape (out_features, in_features)."""
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        bound = scale if scale is not None else 1 / np.sqrt(n_in)
        layers.append((rng.uniform(-bound, bound, (n_out, n_in)), rng.uniform(-bound, bound, n_out)))
    return layers


def _both(layers):
    """The same weights as cygrad Tensors and as torch tensors, all requiring grad."""
    ours = [tuple(Tensor(a.copy(), requires_grad=True) for a in layer) for layer in layers]
    theirs = [tuple(torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in layer)
              for layer in layers]
    return ours, theirs


def _forward(layers, x, act, lin):
    for i, (w, b) in enumerate(layers):
        x = lin(x, w, b)
        if i < len(layers) - 1:
            x = act(x)
    return x


def _compare_grads(ours, theirs):
    for i, (layer, torch_layer) in enumerate(zip(ours, theirs)):
        for name, p, q in zip(("weight", "bias"), layer, torch_layer):
            assert p.grad is not None and p.grad.dtype == np.float64
            np.testing.assert_allclose(p.grad, q.grad.numpy(), err_msg=f"layer {i} {name}",
                                       **GRAD_TOL)


def test_sigmoid_mlp_mse_matches_torch(backend):
    rng = np.random.default_rng(0)
    x, target = rng.standard_normal((16, 784)), rng.uniform(0, 1, (16, 10))
    layers = _weights(rng, [784, 64, 32, 10])
    ours, theirs = _both(layers)
    loss = F.mse_loss(_forward(ours, Tensor(x), F.sigmoid, F.linear).sigmoid(), target)
    loss.backward()
    out = _forward(theirs, torch.tensor(x), torch.sigmoid, TF.linear).sigmoid()
    torch_loss = TF.mse_loss(out, torch.tensor(target))
    torch_loss.backward()
    np.testing.assert_allclose(loss.item(), torch_loss.item(), rtol=1e-12)
    _compare_grads(ours, theirs)


def test_relu_mlp_cross_entropy_matches_torch(backend):
    rng = np.random.default_rng(1)
    x, labels = rng.standard_normal((32, 20)), rng.integers(0, 7, 32)
    layers = _weights(rng, [20, 24, 16, 7])
    ours, theirs = _both(layers)
    loss = F.cross_entropy(_forward(ours, Tensor(x), F.relu, F.linear), labels)
    loss.backward()
    torch_loss = TF.cross_entropy(_forward(theirs, torch.tensor(x), torch.relu, TF.linear),
                                  torch.tensor(labels))
    torch_loss.backward()
    np.testing.assert_allclose(loss.item(), torch_loss.item(), rtol=1e-12)
    _compare_grads(ours, theirs)


def test_tanh_mlp_l2_penalty_matches_torch(backend):
    rng = np.random.default_rng(2)
    x, target = rng.standard_normal((8, 12)), rng.standard_normal((8, 3))
    layers = _weights(rng, [12, 10, 3])
    ours, theirs = _both(layers)
    lam = 0.3
    params = [p for layer in ours for p in layer]
    loss = (F.mse_loss(_forward(ours, Tensor(x), F.tanh, F.linear), target)
            + F.l2_penalty(params, lam))
    loss.backward()
    torch_params = [p for layer in theirs for p in layer]
    torch_loss = (TF.mse_loss(_forward(theirs, torch.tensor(x), torch.tanh, TF.linear),
                              torch.tensor(target))
                  + lam / 2 * sum((p ** 2).sum() for p in torch_params))
    torch_loss.backward()
    np.testing.assert_allclose(loss.item(), torch_loss.item(), rtol=1e-12)
    _compare_grads(ours, theirs)


def test_broadcasting_graph_matches_torch(backend):
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(s) for s in [(2, 3, 4), (3, 4), (3, 1), (4,), (4, 5)]]
    ours = [Tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]

    def ours_graph(a, b, c, d, m):
        h = (a * b + c).exp() / (1 + d ** 2) - cg.maximum(a, b)
        return (h @ m).max(axis=2).sum() + h.mean(axis=(0, 2)).sum()

    def torch_graph(a, b, c, d, m):
        h = (a * b + c).exp() / (1 + d ** 2) - torch.maximum(a, b)
        return (h @ m).amax(dim=2).sum() + h.mean(dim=(0, 2)).sum()

    out = ours_graph(*ours)
    out.backward()
    torch_out = torch_graph(*theirs)
    torch_out.backward()
    np.testing.assert_allclose(out.item(), torch_out.item(), rtol=1e-12)
    for i, (p, q) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(p.grad, q.grad.numpy(), err_msg=f"inputs[{i}]", **GRAD_TOL)


OPTIMIZERS = {
    "SGD-momentum": (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
                     lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9)),
    "SGD-momentum-weight_decay": (
        lambda ps: optim.SGD(ps, lr=0.05, momentum=0.8, weight_decay=0.01),
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.8, weight_decay=0.01)),
    "Adam": (lambda ps: optim.Adam(ps, lr=0.01),
             lambda ps: torch.optim.Adam(ps, lr=0.01)),
    "Adam-weight_decay": (
        lambda ps: optim.Adam(ps, lr=0.005, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.1),
        lambda ps: torch.optim.Adam(ps, lr=0.005, betas=(0.8, 0.99), eps=1e-7,
                                    weight_decay=0.1)),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_five_optimizer_steps_match_torch_optim(name, backend):
    make_ours, make_theirs = OPTIMIZERS[name]
    rng = np.random.default_rng(4)
    x, labels = rng.standard_normal((16, 6)), rng.integers(0, 3, 16)
    ours, theirs = _both(_weights(rng, [6, 8, 3]))
    opt = make_ours([p for layer in ours for p in layer])
    torch_opt = make_theirs([p for layer in theirs for p in layer])
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(_forward(ours, Tensor(x), F.sigmoid, F.linear), labels).backward()
        opt.step()
        torch_opt.zero_grad()
        TF.cross_entropy(_forward(theirs, torch.tensor(x), torch.sigmoid, TF.linear),
                         torch.tensor(labels)).backward()
        torch_opt.step()
    for i, (layer, torch_layer) in enumerate(zip(ours, theirs)):
        for p, q in zip(layer, torch_layer):
            assert p.dtype == np.float64
            np.testing.assert_allclose(p.data, q.detach().numpy(), err_msg=f"layer {i}",
                                       **STEP_TOL)

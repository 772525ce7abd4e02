"""parameters(), modules() and children() walk the model without building names: they must
give exactly what named_parameters(), named_modules() and named_children() give (the same
objects, in the same order, each once), on nested, shared and list/dict-registered
modules, and PyTorch's order where PyTorch has the same model."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from cygrad import Tensor, nn


def _param(n: int, value: float = 1.0) -> Tensor:
    return Tensor(np.full(n, value), requires_grad=True)


class Block(nn.Module):
    """A parameter after a child, so that own-parameters-first is visible in the order."""

    def __init__(self, rng: int):
        super().__init__()
        self.inner = nn.Linear(3, 3, dtype=np.float64, rng=rng)
        self.gain = _param(3, 2.0)

    def forward(self, x):
        return self.inner(x) * self.gain


class Shared(nn.Module):
    """Every way of registering: own parameters, nested modules, a module and a parameter
    shared between places, plain list/tuple/dict attributes, the containers, a frozen
    parameter, and an op's result kept on the module (not a parameter)."""

    def __init__(self):
        super().__init__()
        shared_layer = nn.Linear(3, 3, dtype=np.float64, rng=0)
        self.shared_weight = _param(4)
        self.first = Block(1)
        self.again = shared_layer
        self.plain_list = [Block(2), _param(2), shared_layer]
        self.plain_tuple = (nn.Tanh(), _param(5))
        self.plain_dict = {"x": _param(6), "y": Block(3), "z": self.first}
        self.module_list = nn.ModuleList([nn.ReLU(), Block(4), shared_layer])
        self.module_dict = nn.ModuleDict({"b": Block(5), "a": nn.Linear(2, 2, rng=6)})
        self.parameter_list = nn.ParameterList([np.ones(2), self.shared_weight,
                                                np.zeros(1)])
        self.sequential = nn.Sequential(OrderedDict(head=Block(7), tail=shared_layer))
        self.frozen = _param(1)
        self.frozen.requires_grad_(False)  # frozen after registering: still a parameter
        self.kept_output = self.shared_weight * 2  # an op's result: not a parameter
        self.bias = _param(3)  # an own parameter registered after the children

    def forward(self, x):
        return x


def _models():
    nested = nn.Sequential(nn.Linear(4, 8, rng=0), nn.ReLU(),
                           nn.Sequential(nn.Linear(8, 8, rng=1), nn.Tanh()),
                           nn.Linear(8, 2, rng=2))
    return {"nested": nested, "shared": Shared(), "block": Block(0),
            "leaf": nn.ReLU(), "module_list": nn.ModuleList([Block(1), Block(2)])}


MODELS = sorted(_models())


def _ids(items):
    return [id(x) for x in items]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("recurse", [True, False])
def test_parameters_are_named_parameters_without_the_names(name, recurse):
    model = _models()[name]
    named = [p for _, p in model.named_parameters(recurse=recurse)]
    got = model.parameters(recurse=recurse)
    assert isinstance(got, list)
    assert _ids(got) == _ids(named)  # the same objects, in the same order
    assert len(set(_ids(got))) == len(got)  # each once


@pytest.mark.parametrize("name", MODELS)
def test_modules_and_children_are_the_named_walks_without_the_names(name):
    model = _models()[name]
    assert _ids(model.modules()) == _ids(m for _, m in model.named_modules())
    assert _ids(model.children()) == _ids(m for _, m in model.named_children())
    assert len(set(_ids(model.modules()))) == len(list(model.modules()))


def test_shared_model_counts():
    """The walk on Shared, spelled out: what is found, and what is left out."""
    model = Shared()
    params = model.parameters()
    assert params[0] is model.shared_weight and params[1] is model.frozen \
        and params[2] is model.bias  # a module's own parameters come first
    assert all(p is not model.kept_output for p in params)
    # every leaf that requires grad, reachable from the model, found once
    assert len(params) == len({id(p) for _, p in
                               model.named_parameters(remove_duplicate=False)})
    assert sum(p is model.again.weight for p in params) == 1
    assert sum(m is model.again for m in model.modules()) == 1


def test_parameters_follow_changes_to_the_model():
    model = nn.Sequential(nn.Linear(2, 3, rng=0))
    before = model.parameters()
    model.append(nn.Linear(3, 1, rng=1))
    after = model.parameters()
    assert len(before) == 2 and len(after) == 4
    assert _ids(after[:2]) == _ids(before)


def test_parameters_match_pytorchs_order_on_the_same_model():
    torch = pytest.importorskip("torch")

    class Ours(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(2, 3, rng=0), nn.Tanh(), Block(1))
            self.heads = nn.ModuleList([Block(2), self.body[0]])
            self.scale = _param(3)

    class TorchBlock(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = torch.nn.Linear(3, 3)
            self.gain = torch.nn.Parameter(torch.full((3,), 2.0))

    class Theirs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(),
                                            TorchBlock())
            self.heads = torch.nn.ModuleList([TorchBlock(), self.body[0]])
            self.scale = torch.nn.Parameter(torch.ones(3))

    ours, theirs = Ours(), Theirs()
    # the shapes in order identify the order (every parameter of a block is distinct)
    assert [p.shape for p in ours.parameters()] == \
        [tuple(p.shape) for p in theirs.parameters()]
    ours_names = {id(p): n for n, p in ours.named_parameters()}
    theirs_names = {id(p): n for n, p in theirs.named_parameters()}
    assert [ours_names[id(p)] for p in ours.parameters()] == \
        [theirs_names[id(p)] for p in theirs.parameters()]
    assert len(list(ours.modules())) == len(list(theirs.modules()))

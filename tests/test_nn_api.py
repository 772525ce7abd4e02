"""The nn API a PyTorch user relies on: parameter and module discovery with PyTorch's names,
state dicts (a torch checkpoint loads), train/eval, dtype conversion, containers, the
layers Dropout/Flatten/Identity/Softmax/LogSoftmax, gradient clipping, and errors that name
the layer and its place in the model."""
from __future__ import annotations

import re
from collections import OrderedDict

import numpy as np
import pytest

import cygrad as cg
from cygrad import Tensor, nn
from cygrad import functional as F

TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}


def _torch():
    return pytest.importorskip("torch")


class Net(nn.Module):
    """Parameters of its own, a plain list, a ModuleList, a ModuleDict and a Sequential."""

    def __init__(self, dtype=np.float64):
        super().__init__()
        self.scale = Tensor(np.ones(3, dtype), requires_grad=True)
        self.blocks = [nn.Linear(5, 4, dtype=dtype, rng=0), nn.Linear(4, 4, dtype=dtype, rng=1)]
        self.more = nn.ModuleList([nn.Tanh(), nn.Linear(4, 3, dtype=dtype, rng=2)])
        self.heads = nn.ModuleDict({"a": nn.Linear(3, 3, dtype=dtype, rng=3)})
        self.tail = nn.Sequential(nn.ReLU(), nn.Linear(3, 2, dtype=dtype, rng=4))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        for layer in self.more:
            x = layer(x)
        return self.tail(self.heads["a"](x) * self.scale)


def _torch_net(torch):
    """Net's twin in PyTorch, the list a ModuleList."""
    class TorchNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
            self.blocks = torch.nn.ModuleList([torch.nn.Linear(5, 4), torch.nn.Linear(4, 4)])
            self.more = torch.nn.ModuleList([torch.nn.Tanh(), torch.nn.Linear(4, 3)])
            self.heads = torch.nn.ModuleDict({"a": torch.nn.Linear(3, 3)})
            self.tail = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(3, 2))

        def forward(self, x):
            for block in self.blocks:
                x = block(x)
            for layer in self.more:
                x = layer(x)
            return self.tail(self.heads["a"](x) * self.scale)

    return TorchNet().double()


# -- names --------------------------------------------------------------------------------

def test_names_are_pytorchs():
    torch = _torch()
    ours, theirs = Net(), _torch_net(torch)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_modules()] == [
        n for n, _ in theirs.named_modules() if n != "blocks"]  # a plain list has no module
    assert [type(m).__name__ for m in ours.children()] == [
        "Linear", "Linear", "ModuleList", "ModuleDict", "Sequential"]
    assert [n for n, _ in ours.named_children()][:2] == ["blocks.0", "blocks.1"]


def test_sequential_keys_are_torch_sequentials():
    torch = _torch()
    ours = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 10))
    theirs = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                 torch.nn.Dropout(0.1), torch.nn.Linear(32, 10))
    assert list(ours.state_dict()) == list(theirs.state_dict()) == [
        "0.weight", "0.bias", "3.weight", "3.bias"]
    named = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 3)), ("act", nn.ReLU())]))
    assert list(named.state_dict()) == ["fc.weight", "fc.bias"]
    named.append(nn.Linear(3, 1))
    assert list(named.state_dict())[-1] == "2.bias"


def test_shared_parameters_are_listed_once_and_saved_under_every_name():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(model.parameters()) == 2
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert len(list(model.named_parameters(remove_duplicate=False))) == 4
    assert [n for n, _ in model.named_modules()] == ["", "0", "1"]


def test_frozen_parameters_stay_parameters():
    model = Net()
    names = list(model.state_dict())
    model.requires_grad_(False)
    assert list(model.state_dict()) == names
    assert all(not p.requires_grad for p in model.parameters())
    model.requires_grad_()
    assert all(p.requires_grad for p in model.parameters())


def test_an_intermediate_kept_on_a_module_is_not_a_parameter():
    layer = nn.Linear(2, 2)
    layer.last_output = layer(np.ones((1, 2), np.float32))  # requires grad, not a leaf
    assert list(layer.state_dict()) == ["weight", "bias"]


def test_layers_in_a_plain_list_or_dict_train():
    class ByDict(nn.Module):
        def __init__(self):
            self.layers = {"first": nn.Linear(2, 2, rng=0)}  # no super().__init__(): allowed
            self.extra = [Tensor(np.ones(2, np.float32), requires_grad=True)]

        def forward(self, x):
            return self.layers["first"](x) * self.extra[0]

    model = ByDict()
    assert list(model.state_dict()) == ["layers.first.weight", "layers.first.bias",
                                        "extra.0"]
    assert model.training is True
    model(np.ones((1, 2), np.float32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


# -- state dicts --------------------------------------------------------------------------

def test_state_dict_values_share_memory_and_are_detached():
    model = nn.Sequential(nn.Linear(3, 2))
    state = model.state_dict()
    assert isinstance(state, OrderedDict)
    value = state["0.weight"]
    assert value is not model[0].weight and not value.requires_grad
    assert np.shares_memory(value.data, model[0].weight.data)
    assert model.state_dict(keep_vars=True)["0.weight"] is model[0].weight
    assert list(model.state_dict(prefix="model.")) == ["model.0.weight", "model.0.bias"]


def test_a_torch_checkpoint_loads_and_gives_torchs_outputs(backend, rng):
    torch = _torch()
    theirs = _torch_net(torch)
    ours = Net()
    result = ours.load_state_dict(theirs.state_dict())
    assert result == ([], []) and result.missing_keys == [] and result.unexpected_keys == []
    x = rng.standard_normal((7, 5))
    np.testing.assert_allclose(ours(Tensor(x)).data,
                               theirs(torch.tensor(x)).detach().numpy(), **TOL[np.float64])


def test_load_state_dict_copies_in_place_so_the_optimizer_keeps_working(rng):
    model = nn.Sequential(nn.Linear(3, 2, dtype=np.float64, rng=0))
    weight, array = model[0].weight, model[0].weight.data
    optimizer = cg.optim.SGD(model.parameters(), lr=0.5)
    new = {"0.weight": rng.standard_normal((2, 3)), "0.bias": Tensor(np.ones(2))}
    model.load_state_dict(new)
    assert model[0].weight is weight and model[0].weight.data is array
    np.testing.assert_array_equal(array, new["0.weight"])
    model(Tensor(np.ones((1, 3)))).sum().backward()
    optimizer.step()
    np.testing.assert_allclose(array, new["0.weight"] - 0.5, **TOL[np.float64])


def test_load_state_dict_casts_to_the_parameter_dtype_as_torch_copy_does():
    model = nn.Linear(2, 1)  # float32
    model.load_state_dict({"weight": np.array([[1.5, 2.5]]), "bias": np.array([1])})
    assert model.weight.dtype == np.float32 and model.bias.data.tolist() == [1.0]


def test_load_state_dict_mismatch_lists_everything_and_changes_nothing():
    model = nn.Sequential(nn.Linear(3, 2, rng=0), nn.ReLU(), nn.Linear(2, 1, rng=1))
    before = {k: v.data.copy() for k, v in model.state_dict().items()}
    bad = {"0.weight": np.zeros((2, 3)), "0.bias": np.zeros(5), "2.weight": np.zeros((1, 2)),
           "fc.weight": np.zeros(1)}
    with pytest.raises(RuntimeError) as info:
        model.load_state_dict(bad)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert message.startswith("Error(s) in loading state_dict for Sequential:")
    assert 'Missing key(s) in state_dict: "2.bias".' in message
    assert 'Unexpected key(s) in state_dict: "fc.weight".' in message
    assert ("size mismatch for 0.bias: copying a param with shape (5,) from checkpoint, "
            "the shape in current model is (2,).") in message
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value.data, before[key])


def test_load_state_dict_not_strict_returns_the_keys():
    model = nn.Sequential(nn.Linear(3, 2, rng=0))
    result = model.load_state_dict({"0.weight": np.ones((2, 3)), "x": np.ones(1)},
                                   strict=False)
    assert result.missing_keys == ["0.bias"] and result.unexpected_keys == ["x"]
    np.testing.assert_array_equal(model[0].weight.data, 1)
    with pytest.raises(RuntimeError, match="size mismatch for 0.weight"):
        model.load_state_dict({"0.weight": np.ones((3, 2))}, strict=False)
    with pytest.raises(TypeError, match="^state_dict: expected a mapping"):
        model.load_state_dict([("0.weight", np.ones((2, 3)))])
    with pytest.raises(TypeError, match=r"^state_dict\['0.weight'\]: expected an array"):
        model.load_state_dict({"0.weight": "abc", "0.bias": np.ones(2)})


# -- modes, dtypes, gradients -------------------------------------------------------------

def test_train_and_eval_reach_every_module():
    model = Net()
    assert model.eval() is model
    assert all(not m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    with pytest.raises(ValueError, match="^mode: expected True or False"):
        model.train("no")


def test_to_float_double_convert_in_place():
    model = nn.Sequential(nn.Linear(3, 2, rng=0))
    weight = model[0].weight
    model(np.ones((1, 3), np.float32)).sum().backward()
    assert model.double() is model and model[0].weight is weight
    assert weight.dtype == np.float64 and weight.grad.dtype == np.float64
    assert model(np.ones((1, 3))).dtype == np.float64
    assert model.to(np.float32)[0].bias.dtype == np.float32
    assert model.to("cpu", dtype="float64")[0].bias.dtype == np.float64
    assert model.to(Tensor(np.zeros(1, np.float32)))[0].bias.dtype == np.float32
    with pytest.raises(TypeError, match="^dtype: expected np.float32 or np.float64"):
        model.to(np.int32)
    with pytest.raises(ValueError, match="^device: cygrad runs on the CPU only"):
        model.to("cuda")


def test_zero_grad_and_apply():
    model = nn.Sequential(nn.Linear(3, 2, rng=0), nn.Sequential(nn.Tanh()))
    model(np.ones((1, 3), np.float32)).sum().backward()
    model.zero_grad(set_to_none=False)
    assert all(np.all(p.grad == 0) for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    visited = []
    model.apply(lambda m: visited.append(type(m).__name__))
    assert visited == ["Linear", "Tanh", "Sequential", "Sequential"]  # children first


# -- containers ---------------------------------------------------------------------------

def test_sequential_list_behaviour():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    assert model.append(nn.Linear(3, 1)) is model and len(model) == 3
    head = model[:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2 and head[0] is model[0]
    del model[1]
    assert [type(m).__name__ for m in model] == ["Linear", "Linear"]
    assert list(model.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    with pytest.raises(TypeError, match="^module: expected a Module, got function"):
        model.append(lambda x: x)


def test_sequential_names_follow_torch_through_slices_and_edits():
    """A slice keeps its modules' names, append names by position, del, insert and pop
    number them again, a named module is an attribute: as torch.nn.Sequential."""
    def build(nn_):
        return nn_.Sequential(OrderedDict([("fc1", nn_.Linear(2, 3)), ("act", nn_.ReLU()),
                                           ("fc2", nn_.Linear(3, 4))]))

    def edits(nn_, model):
        keys = [list(model[1:].state_dict()),
                list(nn_.Sequential(nn_.Linear(1, 1), nn_.ReLU(),
                                    nn_.Linear(1, 1))[2:].state_dict())]
        model.append(nn_.Linear(4, 1))
        keys.append(list(model.state_dict()))
        model.fc2 = nn_.Linear(3, 4)  # the named child replaced in place
        keys.append(list(model.state_dict()))
        popped = model.pop(1)
        keys.append(list(model.state_dict()))
        return keys, popped

    ours = build(nn)
    assert ours.fc1 is ours[0] and ours.fc2 is ours[2]
    keys, popped = edits(nn, ours)
    assert keys == [["fc2.weight", "fc2.bias"], ["2.weight", "2.bias"],
                    ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "3.weight",
                     "3.bias"],
                    ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "3.weight",
                     "3.bias"],
                    ["0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "2.bias"]]
    assert isinstance(popped, nn.ReLU)
    with pytest.raises(AttributeError, match="'Sequential' object has no attribute 'fc9'"):
        ours.fc9
    try:
        import torch
    except ImportError:
        return
    assert edits(torch.nn, build(torch.nn))[0] == keys


def test_load_state_dict_assign_shares_the_arrays_and_checks_them():
    model = nn.Sequential(nn.Linear(2, 3, dtype=np.float64), nn.ReLU(),
                          nn.Linear(3, 1, dtype=np.float64))
    state = {k: v.data + 1 for k, v in model.state_dict().items()}
    model.load_state_dict(state, assign=True)
    assert all(model.state_dict()[k].data is a for k, a in state.items())
    before = {k: v.data for k, v in model.state_dict().items()}
    with pytest.raises(cg.nn.StateDictError, match=r"dtype mismatch for 0\.weight: "
                                                   r"assign=True needs float64"):
        model.load_state_dict({k: a.astype(np.float32) for k, a in state.items()},
                              assign=True)
    frozen = {k: a.copy() for k, a in state.items()}
    frozen["2.bias"].flags.writeable = False  # a memory-mapped or frombuffer array
    with pytest.raises(cg.nn.StateDictError, match=r"read-only array for 2\.bias: .*"
                                                   r"pass assign=False to copy it"):
        model.load_state_dict(frozen, assign=True)
    assert all(model.state_dict()[k].data is a for k, a in before.items())  # untouched


def test_pytorchs_registration_and_lookup_methods():
    torch = _torch()

    def build(nn_, tensor):
        class Net(nn_.Module):
            def __init__(self):
                super().__init__()
                self.add_module("body", nn_.Sequential(nn_.Linear(2, 3), nn_.ReLU()))
                self.register_parameter("scale", tensor)
                self.register_module("head", nn_.Linear(3, 1))
        net = Net()
        net.body.add_module("extra", nn_.Linear(3, 3))
        return net

    ours = build(nn, Tensor(np.ones(3), requires_grad=True))
    theirs = build(torch.nn, torch.nn.Parameter(torch.ones(3)))
    assert list(ours.state_dict()) == list(theirs.state_dict()) == [
        "scale", "body.0.weight", "body.0.bias", "body.extra.weight", "body.extra.bias",
        "head.weight", "head.bias"]
    assert ours.get_submodule("body.extra") is ours.body[2]
    assert ours.get_submodule("") is ours and ours.cpu() is ours
    assert ours.get_parameter("body.0.bias") is ours.body[0].bias
    assert ours.get_parameter("scale") is ours.scale
    with pytest.raises(AttributeError, match="^get_submodule: Sequential has no submodule "
                                             "'9'"):
        ours.get_submodule("body.9")
    with pytest.raises(AttributeError, match="^get_parameter: Linear has no parameter"):
        ours.get_parameter("head.nope")
    with pytest.raises(ValueError, match="^add_module: name: expected a non-empty name "
                                         "without a dot"):
        ours.add_module("a.b", nn.ReLU())
    with pytest.raises(TypeError, match="^add_module: module: expected a Module or None"):
        ours.add_module("f", print)
    assert type(nn.ModuleList([nn.ReLU(), nn.Tanh()]).pop(0)).__name__ == "ReLU"


def test_a_parameter_cannot_be_replaced_by_an_op_result():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = Tensor(np.ones(3), requires_grad=True)

    model = Scaled()
    with pytest.raises(TypeError, match=r"^Scaled\.w: cannot assign the result of 'mul' "
                                        r"to a parameter .*detach\(\)\.requires_grad_\(\)"):
        model.w = model.w * 2.0
    model.w = (model.w * 2.0).detach().requires_grad_()  # a new leaf: a parameter
    model.cache = model.w * 2.0  # a result under another name is not a parameter
    assert [name for name, _ in model.named_parameters()] == ["w"]


def test_lambda_lr_refuses_a_group_added_after_it():
    p = Tensor(np.ones(1), requires_grad=True)
    opt = cg.optim.SGD([p], lr=0.1)
    scheduler = cg.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.5 ** epoch)
    opt.add_param_group({"params": [Tensor(np.ones(1), requires_grad=True)], "lr": 1.0})
    with pytest.raises(ValueError, match="^LambdaLR: the optimizer has 2 param groups but "
                                         "the scheduler was made for 1"):
        scheduler.step()


def test_module_list_dict_and_parameter_list():
    layers = nn.ModuleList([nn.Linear(2, 2)])
    layers.append(nn.ReLU())
    layers.extend([nn.Tanh()])
    layers.insert(0, nn.Identity())
    layers += [nn.Sigmoid()]
    assert [type(m).__name__ for m in layers] == ["Identity", "Linear", "ReLU", "Tanh",
                                                  "Sigmoid"]
    assert isinstance(layers[1:3], nn.ModuleList) and len(layers[1:3]) == 2
    with pytest.raises(NotImplementedError):
        layers(np.zeros(2))
    with pytest.raises(TypeError, match="expected a Module"):
        nn.ModuleList([nn.ReLU(), 3])

    heads = nn.ModuleDict([("b", nn.Linear(1, 1)), ("a", nn.Linear(1, 2))])
    assert list(heads) == ["b", "a"] and "a" in heads and len(heads) == 2
    assert list(heads.state_dict()) == ["b.weight", "b.bias", "a.weight", "a.bias"]
    assert heads.a is heads["a"]
    heads.a = nn.Linear(1, 3)  # the entry replaced, as torch.nn.ModuleDict does
    assert heads["a"].out_features == 3 and list(vars(heads)).count("a") == 0
    heads.pop("b")
    assert list(heads.keys()) == ["a"]
    with pytest.raises(TypeError, match="expected a Module"):
        heads["c"] = np.zeros(1)

    params = nn.ParameterList([np.zeros(2), Tensor(np.ones(3), requires_grad=True)])
    assert params[0].requires_grad and len(params) == 2
    assert list(params.state_dict()) == ["0", "1"]
    params.requires_grad_(False)
    assert len(params.parameters()) == 2  # frozen, still parameters
    with pytest.raises(TypeError, match="expected a Tensor or a NumPy array"):
        params.append([1.0])


def test_repr_is_pytorchs_layout():
    model = nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.ReLU(), nn.Dropout(0.25)))
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Linear(in_features=2, out_features=3, bias=True, dtype=float32)\n"
        "  (1): Sequential(\n"
        "    (0): ReLU()\n"
        "    (1): Dropout(p=0.25)\n"
        "  )\n"
        ")")


# -- errors name the layer ----------------------------------------------------------------

def test_wrong_dtype_names_the_layer_and_the_fix(backend):
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    with pytest.raises(TypeError) as info:
        model(Tensor(np.zeros((2, 64))))
    assert str(info.value) == (
        "Sequential[0] Linear(64 -> 128): input: expected float32 (the layer's dtype), got "
        "float64 of shape (2, 64); cast with x.astype(np.float32), or build the layer with "
        "dtype=np.float64")
    assert str(info.value.__cause__).startswith("w: expected float64")  # the kernel's


def test_wrong_feature_count_names_the_layer(backend):
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    with pytest.raises(ValueError, match=re.escape(
            "Sequential[0] Linear(64 -> 128): input: expected (..., 64) features, got 63 "
            "(shape (5, 63))")):
        model(np.zeros((5, 63), np.float32))
    with pytest.raises(ValueError, match=re.escape("^Linear(3 -> 2): input: expected (..., 3)")
                       .replace("\\^", "^")):
        nn.Linear(3, 2)(np.zeros((1, 4), np.float32))


def test_errors_give_the_path_inside_a_users_module(backend):
    with pytest.raises(ValueError, match=re.escape("Net.blocks[1] Linear(4 -> 4): input: "
                                                   "expected (..., 4) features, got 3")):
        net = Net()
        net.blocks[0] = nn.Linear(5, 3, dtype=np.float64)
        net(np.zeros((2, 5)))
    outer = nn.Sequential(nn.Identity(), Net())
    with pytest.raises(TypeError, match=re.escape("Sequential[1].tail[1] Linear(3 -> 2): "
                                                  "input: expected float32")):
        outer[1].tail[1].float()
        outer(np.zeros((2, 5)))


def test_constructor_arguments_are_checked():
    for bad in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match="^p: expected a probability in"):
            nn.Dropout(bad)
    for bad in (0, -3, 2.0, True):
        with pytest.raises(ValueError, match="^in_features: expected a positive int"):
            nn.Linear(bad, 2)
    with pytest.raises(TypeError, match="^Softmax: dim: expected the axis"):
        nn.Softmax()
    with pytest.raises(TypeError, match="^LogSoftmax: dim"):
        nn.LogSoftmax(dim=1.0)
    with pytest.raises(TypeError, match="^end_dim: expected an int"):
        nn.Flatten(1, "2")


# -- layers -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_in_training_and_evaluation(dtype, backend):
    layer = nn.Dropout(0.25, rng=0)
    x = Tensor(np.ones((200, 50), dtype), requires_grad=True)
    y = layer(x)
    assert y.dtype == dtype
    kept = y.data != 0
    assert 0.72 < kept.mean() < 0.78
    np.testing.assert_allclose(y.data[kept], 1 / 0.75, rtol=1e-6)
    y.backward(np.full(y.shape, 2, dtype))
    np.testing.assert_allclose(x.grad, 2 * y.data, rtol=1e-6)  # the same mask
    layer.eval()
    assert layer(x) is x
    again = nn.Dropout(0.25, rng=0)(x)
    np.testing.assert_array_equal(again.data, y.data)  # a seed reproduces the mask
    np.testing.assert_array_equal(F.dropout(x, 1.0).data, 0)
    assert F.dropout(x, 0.0) is x and F.dropout(x, 0.5, training=False) is x


def test_manual_seed_reproduces_initialization_and_dropout():
    def run():
        cg.manual_seed(7)
        model = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5))
        return model[0].weight.data.copy(), model(np.ones((2, 4), np.float32)).data
    (w1, y1), (w2, y2) = run(), run()
    np.testing.assert_array_equal(w1, w2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(nn.Linear(4, 3).weight.data, w1)  # the generator moved on


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_logsoftmax_flatten_identity_match_pytorch(dtype, backend, rng):
    torch = _torch()
    x = rng.standard_normal((3, 2, 4)).astype(dtype)
    upstream = rng.standard_normal((3, 2, 4)).astype(dtype)
    for ours, theirs in [(nn.Softmax(dim=-1), torch.nn.Softmax(dim=-1)),
                         (nn.LogSoftmax(dim=1), torch.nn.LogSoftmax(dim=1)),
                         (nn.Identity(7, k=1), torch.nn.Identity(7, k=1))]:
        a, b = Tensor(x.copy(), requires_grad=True), torch.tensor(x, requires_grad=True)
        out, want = ours(a), theirs(b)
        np.testing.assert_allclose(out.data, want.detach().numpy(), **TOL[dtype])
        (out * Tensor(upstream)).sum().backward()
        (want * torch.tensor(upstream)).sum().backward()
        np.testing.assert_allclose(a.grad, b.grad.numpy(), **TOL[dtype])
    assert nn.Flatten()(x).shape == tuple(torch.nn.Flatten()(torch.tensor(x)).shape)
    assert nn.Flatten(0, 1)(Tensor(x)).shape == (6, 4)


# -- gradient clipping --------------------------------------------------------------------

@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_pytorch(norm_type, max_norm, rng):
    torch = _torch()
    grads = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    ours = [Tensor(np.zeros_like(g), requires_grad=True) for g in grads]
    theirs = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, q, g in zip(ours, theirs, grads):
        p.grad, q.grad = g.copy(), torch.tensor(g)
    total = nn.utils.clip_grad_norm_(ours, max_norm, norm_type)
    want = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    np.testing.assert_allclose(total.item(), want.item(), rtol=1e-12)
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-12)


def test_clip_grad_norm_edges():
    p = Tensor(np.zeros(2, np.float32), requires_grad=True)
    assert nn.utils.clip_grad_norm_([p], 1.0).item() == 0  # no gradient yet
    p.grad = np.array([np.inf, 1], np.float32)
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_(p, 1.0, error_if_nonfinite=True)
    assert nn.utils.clip_grad_norm_(p, 1.0).dtype == np.float32
    with pytest.raises(TypeError, match="^parameters: expected Tensors"):
        nn.utils.clip_grad_norm_([np.zeros(2)], 1.0)


def test_clip_grad_value_matches_pytorch(rng):
    torch = _torch()
    g = rng.standard_normal((4, 4))
    p = Tensor(np.zeros_like(g), requires_grad=True)
    q = torch.zeros(g.shape, dtype=torch.float64, requires_grad=True)
    p.grad, q.grad = g.copy(), torch.tensor(g)
    nn.utils.clip_grad_value_(p, 0.3)
    torch.nn.utils.clip_grad_value_(q, 0.3)
    np.testing.assert_array_equal(p.grad, q.grad.numpy())


# -- the user's digits classifier ---------------------------------------------------------

def test_a_digits_classifier_trains_saves_and_loads_as_in_pytorch():
    datasets = pytest.importorskip("sklearn.datasets")
    x, y = datasets.load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32, rng=0), nn.ReLU(),
                          nn.Dropout(0.1, rng=1), nn.Linear(32, 10, rng=2))
    loss_fn = nn.CrossEntropyLoss()
    optimizer = cg.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    for step in range(60):
        batch = slice(step % 14 * 128, step % 14 * 128 + 128)
        optimizer.zero_grad()
        loss = loss_fn(model(x[batch]), y[batch])
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
    model.eval()
    accuracy = (model(x).data.argmax(axis=1) == y).mean()
    assert accuracy > 0.85
    copy = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.1),
                         nn.Linear(32, 10)).eval()
    copy.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(copy(x).data, model(x).data)

"""cg.save / cg.load: safetensors files that PyTorch reads and writes, no code on load."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import cygrad as cg

pytest.importorskip("safetensors")
import safetensors.numpy  # noqa: E402

TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}


def _assert_same(got, want):
    """Same structure, same types (Tensor or ndarray), same values and dtypes."""
    assert type(got) is type(want) or isinstance(want, dict) and isinstance(got, dict)
    if isinstance(want, (cg.Tensor, np.ndarray)):
        g, w = (v.data if isinstance(v, cg.Tensor) else v for v in (got, want))
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for key in want:
            _assert_same(got[key], want[key])
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            _assert_same(g, w)
    else:
        assert got == want or (got != got and want != want)  # NaN == NaN here


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_dict_round_trip(dtype, rng, tmp_path):
    state = {"layers.0.weight": cg.Tensor(rng.standard_normal((4, 3)).astype(dtype)),
             "layers.0.bias": cg.Tensor(rng.standard_normal(4).astype(dtype)),
             "scale": np.asarray(rng.standard_normal(), dtype),
             "empty": np.zeros((0, 5), dtype),
             "a.first.in.the.alphabet": rng.standard_normal((2, 2, 2)).astype(dtype)}
    path = tmp_path / "model.safetensors"
    cg.save(state, path)
    loaded = cg.load(path)
    assert type(loaded).__name__ == "OrderedDict"
    _assert_same(loaded, state)  # the order and each value's type come back too
    for value in loaded.values():  # optimizers update loaded values in place
        assert (value.data if isinstance(value, cg.Tensor) else value).flags.writeable
    # the file is plain safetensors: other readers see the same arrays under the same names
    plain = safetensors.numpy.load_file(str(path))
    assert set(plain) == set(state)
    np.testing.assert_array_equal(plain["layers.0.weight"], state["layers.0.weight"].data)


def test_nested_checkpoint_round_trip(rng):
    checkpoint = {
        "model": {"fc.weight": cg.Tensor(rng.standard_normal((2, 3)))},
        "optimizer": {"state": {0: {"step": 7, "exp_avg": rng.standard_normal((2, 3)),
                                    "exp_avg_sq": np.float32(2.5) * np.ones(3, np.float32)}},
                      "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0],
                                        "amsgrad": False, "foreach": None,
                                        "weight_decay": np.float64(0.01)}]},
        "epoch": np.int64(3), "note": "digits", "best": float("inf"), "missing": float("nan"),
    }
    buffer = io.BytesIO()
    cg.save(checkpoint, buffer)
    buffer.seek(0)
    loaded = cg.load(buffer)
    want = dict(checkpoint, epoch=3)
    want["optimizer"]["param_groups"][0]["weight_decay"] = 0.01
    _assert_same(loaded, want)
    assert list(loaded["optimizer"]["state"]) == [0]  # int keys stay ints


def test_strided_and_big_endian_arrays_are_saved_by_value(rng, tmp_path):
    base = rng.standard_normal((4, 6))
    state = {"transposed": base.T, "every_other": base[:, ::2],
             "big_endian": base.astype(">f8")}
    cg.save(state, tmp_path / "m.safetensors")
    loaded = cg.load(tmp_path / "m.safetensors")
    for name, value in state.items():
        np.testing.assert_array_equal(loaded[name], value)
        assert loaded[name].dtype == np.float64 and loaded[name].dtype.isnative


def _models(dtype, rng):
    torch = pytest.importorskip("torch")
    theirs = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(),
                                 torch.nn.Linear(8, 3)).to(getattr(torch, np.dtype(dtype).name))
    ours = cg.nn.Sequential(cg.nn.Linear(5, 8, dtype=dtype, rng=1), cg.nn.Tanh(),
                            cg.nn.Linear(8, 3, dtype=dtype, rng=2))
    x = rng.standard_normal((7, 5)).astype(dtype)
    return torch, theirs, ours, x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_torch_checkpoint_loads_into_the_equivalent_model(dtype, backend, rng, tmp_path):
    torch, theirs, ours, x = _models(dtype, rng)
    import safetensors.torch
    path = tmp_path / "torch.safetensors"
    safetensors.torch.save_file(theirs.state_dict(), str(path))
    state = cg.load(path)
    assert set(state) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert all(isinstance(v, cg.Tensor) and v.dtype == dtype for v in state.values())
    ours.load_state_dict(state)
    with torch.no_grad():
        want = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours(cg.Tensor(x)).data, want, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_loads_what_cygrad_saves(dtype, backend, rng, tmp_path):
    torch, theirs, ours, x = _models(dtype, rng)
    import safetensors.torch
    path = tmp_path / "cygrad.safetensors"
    cg.save(ours.state_dict(), path)
    theirs.load_state_dict(safetensors.torch.load_file(str(path)))
    with torch.no_grad():
        got = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ours(cg.Tensor(x)).data, **TOL[dtype])


@pytest.mark.parametrize("value, message", [
    (np.arange(3), "^w: expected float32 or float64 values, got an array of int64"),
    (np.ones(2, np.float16), "^w: expected float32 or float64 values"),
    (np.ones(2, complex), "^w: expected float32 or float64 values"),
    (np.array([object()]), "^w: expected float32 or float64 values"),
    ({1, 2}, "^w: cannot save a set"),
    (object(), "^w: cannot save a object"),
])
def test_refuses_what_it_cannot_store(value, message, tmp_path):
    with pytest.raises(TypeError, match=message):
        cg.save({"w": value}, tmp_path / "x.safetensors")
    assert not os.listdir(tmp_path)  # nothing written, not even a temporary file


def test_refuses_bad_keys_and_containers(tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(TypeError, match=r"^obj: expected str \(or int\) keys, got \(1, 2\)"):
        cg.save({(1, 2): np.ones(2)}, path)
    with pytest.raises(TypeError, match=r"^opt: expected str \(or int\) keys, got 0.5"):
        cg.save({"opt": {0.5: 1}}, path)
    with pytest.raises(TypeError, match="^obj: expected a dict"):
        cg.save([np.ones(2)], path)
    with pytest.raises(ValueError, match="'__metadata__' is reserved"):
        cg.save({"__metadata__": np.ones(2)}, path)
    with pytest.raises(ValueError, match="same name 'a.b'"):
        cg.save({"a.b": np.ones(2), "a": {"b": np.ones(2)}}, path)
    with pytest.raises(TypeError, match="^f: expected a path"):
        cg.save({"w": np.ones(2)}, 3)
    assert not path.exists()


def test_a_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    cg.save({"w": np.ones(3)}, path)
    good = path.read_bytes()
    with pytest.raises(TypeError):
        cg.save({"w": np.ones(3), "bad": np.arange(2)}, path)

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cg.save({"w": np.zeros(3)}, path)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["model.safetensors"]  # the temporary file is gone


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("data, message", [
    (b"", "header too small"),
    (b"\x00" * 4, "header too small"),
    (b"\xff" * 8 + b"{}", "header too large"),
    (b"\x10\x00\x00\x00\x00\x00\x00\x00" + b"not json at all!", "invalid JSON"),
    (b"PK\x03\x04" + bytes(60), "torch.save's pickle format.*save_file"),  # a zip
])
def test_corrupt_files_give_a_clear_error(data, message, tmp_path):
    path = _write(tmp_path / "bad.safetensors", data)
    with pytest.raises(ValueError, match=f"bad.safetensors: not a valid safetensors file.*"
                                         f"{message}"):
        cg.load(path)


def test_truncated_and_lying_headers(tmp_path):
    good = safetensors.numpy.save({"w": np.ones((4, 4))})
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        cg.load(_write(tmp_path / "cut.safetensors", good[:-5]))
    header = json.dumps({"w": {"dtype": "F64", "shape": [1000, 1000],
                               "data_offsets": [0, 8_000_000]}}).encode()
    lying = len(header).to_bytes(8, "little") + header + bytes(16)
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        cg.load(_write(tmp_path / "lying.safetensors", lying))


def test_unsupported_dtypes_are_named(tmp_path):
    data = safetensors.numpy.save({"bn.num_batches_tracked": np.array(3, np.int64),
                                   "w": np.ones(2, np.float32)})
    with pytest.raises(ValueError, match="'bn.num_batches_tracked' has dtype I64.*float()"):
        cg.load(_write(tmp_path / "int.safetensors", data))


@pytest.mark.parametrize("structure", [
    "not json", '{"dict": [["w", {"tensor": "missing", "type": "Tensor"}]]}',
    '{"dict": [["w", {"tensor": "w", "type": "pickle"}]]}', '{"list": []}',
    '{"dict": [["w", {"tensor": "w", "type": "Tensor"}], ["v", {"tensor": "w", "type": '
    '"Tensor"}]]}', '{"dict": [[1.5, {"value": 1}], ["w", {"tensor": "w", "type": "Tensor"}]]}',
    '{"dict": [["w", {"tensor": "w", "type": "Tensor"}], ["x", {"value": {"a": 1}}]]}',
    '[' * 100000 + ']' * 100000,
])
def test_corrupt_structure_metadata(structure, tmp_path):
    data = safetensors.numpy.save({"w": np.ones(2)}, metadata={"cygrad.structure": structure})
    with pytest.raises(ValueError, match="corrupt 'cygrad.structure' metadata"):
        cg.load(_write(tmp_path / "x.safetensors", data))


def test_a_foreign_file_loads_as_tensors_in_file_order(tmp_path):
    data = safetensors.numpy.save({"b": np.ones(2), "a": np.zeros((1, 2), np.float32)},
                                  metadata={"format": "pt"})
    loaded = cg.load(_write(tmp_path / "x.safetensors", data))
    assert sorted(loaded) == ["a", "b"]
    names = [f"layer{i}.weight" for i in range(9)]  # 9! orders: a hash map's is not it
    data = safetensors.numpy.save({name: np.full(3, i, np.float32)
                                   for i, name in enumerate(names)})
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    in_file = sorted(names, key=lambda name: header[name]["data_offsets"][0])
    assert list(cg.load(io.BytesIO(data))) == in_file
    assert all(isinstance(v, cg.Tensor) for v in loaded.values())
    assert loaded["a"].dtype == np.float32 and loaded["a"].shape == (1, 2)


def test_saving_over_a_file_keeps_its_permissions_and_its_links(tmp_path):
    path = tmp_path / "private.safetensors"
    cg.save({"w": np.ones(2)}, path)
    os.chmod(path, 0o600)
    cg.save({"w": np.zeros(2)}, path)
    assert (os.stat(path).st_mode & 0o777) == 0o600
    real, link = tmp_path / "epoch10.safetensors", tmp_path / "best.safetensors"
    cg.save({"w": np.ones(2)}, real)
    os.symlink(real, link)
    cg.save({"w": np.zeros(2)}, link)  # written through the link, as open() writes
    assert os.path.islink(link) and cg.load(real)["w"].tolist() == [0.0, 0.0]


def test_a_file_that_may_not_be_written_is_left_alone(tmp_path, monkeypatch):
    path = tmp_path / "final.safetensors"
    cg.save({"w": np.ones(2)}, path)
    os.chmod(path, 0o444)
    # (root may write anything: the check asks os.access, as open() asks the kernel)
    monkeypatch.setattr(os, "access", lambda p, mode: os.fspath(p) != os.fspath(path))
    with pytest.raises(PermissionError, match="^f: .*final.safetensors' is read-only"):
        cg.save({"w": np.zeros(2)}, path)
    monkeypatch.undo()
    assert cg.load(path)["w"].tolist() == [1.0, 1.0]
    with pytest.raises(IsADirectoryError, match="^f: .* is a directory"):
        cg.save({"w": np.zeros(2)}, tmp_path)


def test_a_crafted_structure_is_refused_naming_the_file():
    def crafted(structure, shape=(1,)):
        header = {"__metadata__": {"cygrad.structure": json.dumps(structure)},
                  "x": {"dtype": "F32", "shape": list(shape), "data_offsets": [0, 4]}}
        text = json.dumps(header).encode()
        return io.BytesIO(len(text).to_bytes(8, "little") + text + bytes(4))

    twice = {"dict": [["a", {"tensor": "x", "type": "Tensor"}], ["a", {"value": 3}]]}
    with pytest.raises(ValueError, match="corrupt 'cygrad.structure' .*'a' twice"):
        cg.load(crafted(twice))
    listed = {"dict": [["a", {"tensor": ["x"], "type": "Tensor"}]]}
    with pytest.raises(ValueError, match="corrupt 'cygrad.structure' .*bad reference"):
        cg.load(crafted(listed))
    with pytest.raises(ValueError, match="^f: array 'x': .*dimension"):
        cg.load(crafted({"dict": [["a", {"tensor": "x", "type": "Tensor"}]]}, [1] * 70))


def test_what_cannot_be_saved_is_named_with_the_fix():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"^w: cannot save a torch\.Tensor \(pass "
                                        r"t\.detach\(\)\.numpy\(\)"):
        cg.save({"w": torch.ones(2)}, io.BytesIO())
    loop = {"w": np.ones(2)}
    loop["me"] = loop
    with pytest.raises(ValueError, match="^me: the dict contains itself"):
        cg.save(loop, io.BytesIO())
    with pytest.raises(ValueError, match="^obj: the key .* is not valid Unicode"):
        cg.save({"\ud800": np.ones(2)}, io.BytesIO())
    with pytest.raises(TypeError, match="^w: a masked array's mask cannot be saved"):
        cg.save({"w": np.ma.masked_array([1.0, 9.0], mask=[0, 1])}, io.BytesIO())
    with pytest.raises(TypeError, match=r"^f: expected a file opened in binary mode \('wb'\)"):
        cg.save({"w": np.ones(2)}, io.StringIO())
    shared = {"w": np.ones(2)}  # the same dict twice is not a cycle
    buffer = io.BytesIO()
    cg.save({"a": shared, "b": shared}, buffer)
    buffer.seek(0)
    loaded = cg.load(buffer)
    assert loaded["a"]["w"].tolist() == loaded["b"]["w"].tolist() == [1.0, 1.0]


def test_bad_file_arguments(tmp_path):
    with pytest.raises(FileNotFoundError):
        cg.load(tmp_path / "absent.safetensors")
    with pytest.raises(FileNotFoundError, match="^f: the directory .*absent.* does not exist"):
        cg.save({"w": np.ones(2)}, tmp_path / "absent" / "x.safetensors")
    with pytest.raises(TypeError, match="^f: expected a path"):
        cg.load(1.5)
    with pytest.raises(TypeError, match=r"binary mode \('rb'\)"):
        cg.load(io.StringIO("text"))


def test_missing_safetensors_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    with pytest.raises(ImportError, match=r'pip install "cygrad\[safetensors\]"'):
        cg.save({"w": np.ones(2)}, tmp_path / "x.safetensors")


def test_a_real_torch_save_file_is_refused_not_unpickled(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(ValueError, match="pickle format, which is never loaded"):
        cg.load(path)


@pytest.mark.subprocess
def test_import_cygrad_does_not_import_safetensors():
    code = "import sys, cygrad; print('safetensors' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def _training_run(dtype, seed=0):
    model = cg.nn.Sequential(cg.nn.Linear(4, 6, dtype=dtype, rng=seed), cg.nn.ReLU(),
                             cg.nn.Linear(6, 3, dtype=dtype, rng=seed + 1))
    optimizer = cg.optim.AdamW(model.parameters(), lr=0.05)
    scheduler = cg.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    return model, optimizer, scheduler


def _steps(model, optimizer, scheduler, x, y, n):
    for _ in range(n):
        optimizer.zero_grad()
        cg.functional.cross_entropy(model(cg.Tensor(x)), y).backward()
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_checkpoint_resumes_training_exactly(dtype, backend, rng, tmp_path):
    x, y = rng.standard_normal((10, 4)).astype(dtype), rng.integers(0, 3, 10)
    model, optimizer, scheduler = _training_run(dtype)
    _steps(model, optimizer, scheduler, x, y, 3)
    cg.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "epoch": 3}, tmp_path / "ckpt.safetensors")
    _steps(model, optimizer, scheduler, x, y, 3)  # the uninterrupted run

    checkpoint = cg.load(tmp_path / "ckpt.safetensors")
    resumed, resumed_optimizer, resumed_scheduler = _training_run(dtype, seed=5)
    resumed.load_state_dict(checkpoint["model"])
    resumed_optimizer.load_state_dict(checkpoint["optimizer"])
    resumed_scheduler.load_state_dict(checkpoint["scheduler"])
    assert checkpoint["epoch"] == 3
    _steps(resumed, resumed_optimizer, resumed_scheduler, x, y, 3)
    for (name, want), got in zip(model.state_dict().items(), resumed.state_dict().values()):
        np.testing.assert_array_equal(got.data, want.data, err_msg=name)
    assert resumed_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]

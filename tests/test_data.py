"""cygrad.data: batching as torch.utils.data does it, reproducible shuffles, clear errors."""
from __future__ import annotations

import collections

import numpy as np
import pytest

import cygrad as cg
from cygrad.data import (DataLoader, Dataset, Subset, TensorDataset, default_collate,
                         random_split)


class Rows(Dataset):
    """A plain map-style dataset over the same arrays: batched sample by sample."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def __len__(self):
        return len(self.x)


def _data(rng, n=23, dtype=np.float32):
    return rng.standard_normal((n, 3)).astype(dtype), rng.integers(0, 4, n)


def _as_arrays(batches):
    return [tuple(f.data if isinstance(f, cg.Tensor) else f for f in b) for b in batches]


@pytest.mark.parametrize("n, batch_size", [(23, 5), (20, 5), (3, 7), (0, 2), (1, 1)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_match_torch_without_shuffle(n, batch_size, drop_last, rng):
    torch = pytest.importorskip("torch")
    from torch.utils import data as torch_data
    x, y = _data(rng, n)
    ours = DataLoader(TensorDataset(x, y), batch_size=batch_size, drop_last=drop_last)
    theirs = torch_data.DataLoader(torch_data.TensorDataset(torch.from_numpy(x),
                                                            torch.from_numpy(y)),
                                   batch_size=batch_size, drop_last=drop_last)
    assert len(ours) == len(theirs)
    got, want = list(ours), list(theirs)
    assert len(got) == len(want)
    for (xb, yb), (tx, ty) in zip(got, want):
        assert isinstance(xb, cg.Tensor) and xb.dtype == np.float32
        assert isinstance(yb, np.ndarray) and yb.dtype == np.int64  # labels stay integers
        np.testing.assert_array_equal(xb.data, tx.numpy())
        np.testing.assert_array_equal(yb, ty.numpy())


def test_custom_dataset_matches_torch_default_collate(rng):
    torch = pytest.importorskip("torch")
    from torch.utils import data as torch_data
    x, y = _data(rng, 10, np.float64)
    ours = list(DataLoader(Rows(x, y), batch_size=4))
    theirs = list(torch_data.DataLoader(Rows(torch.from_numpy(x), torch.from_numpy(y)),
                                        batch_size=4))
    for (xb, yb), (tx, ty) in zip(ours, theirs):
        assert xb.dtype == np.float64 and yb.dtype == np.int64
        np.testing.assert_array_equal(xb.data, tx.numpy())
        np.testing.assert_array_equal(yb, ty.numpy())


def test_shuffle_visits_every_sample_once_a_new_order_each_epoch(rng):
    x, y = _data(rng, 50)
    loader = DataLoader(TensorDataset(x, np.arange(50)), batch_size=8, shuffle=True,
                        generator=7)
    epochs = [np.concatenate([yb for _, yb in loader]) for _ in range(3)]
    for order in epochs:
        np.testing.assert_array_equal(np.sort(order), np.arange(50))
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[1], epochs[2])
    assert not np.array_equal(epochs[0], np.arange(50))
    for xb, yb in loader:  # the rows of x still travel with their labels
        np.testing.assert_array_equal(xb.data, x[yb])


def test_same_seed_same_sequence_of_epochs(rng):
    x, y = _data(rng, 30)

    def run(generator):
        loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True,
                            generator=generator)
        return [b for _ in range(3) for b in _as_arrays(loader)]

    first, second = run(123), run(123)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    other = run(124)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(first, other))
    # a numpy Generator is used as given: the same state gives the same orders
    with_generator = run(np.random.default_rng(123))
    for a, b in zip(first, with_generator):
        np.testing.assert_array_equal(a[1], b[1])


def test_without_a_generator_manual_seed_makes_the_shuffles_reproducible(rng):
    x, y = _data(rng, 30)
    loader = DataLoader(TensorDataset(x, np.arange(30)), batch_size=30, shuffle=True)

    def two_epochs(seed):
        cg.manual_seed(seed)
        return [next(iter(loader))[1] for _ in range(2)]

    first, again, other = two_epochs(11), two_epochs(11), two_epochs(12)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], first[1])  # still a new order each epoch
    assert not np.array_equal(first[0], other[0])


def test_fast_path_equals_sample_by_sample_collation(rng):
    x, y = _data(rng, 37)
    for shuffle in (False, True):
        fast = DataLoader(TensorDataset(x, y), batch_size=6, shuffle=shuffle, generator=3)
        slow = DataLoader(Rows(x, y), batch_size=6, shuffle=shuffle, generator=3)
        for a, b in zip(_as_arrays(fast), _as_arrays(slow)):
            assert a[0].dtype == b[0].dtype and a[1].dtype == b[1].dtype
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
        assert len(list(fast)) == len(list(slow)) == 7


def test_tensor_dataset_items_and_tensors(rng):
    x, y = _data(rng, 5, np.float64)
    dataset = TensorDataset(cg.Tensor(x), y)
    assert len(dataset) == 5 and dataset.tensors[1] is y
    xi, yi = dataset[2]
    assert isinstance(xi, cg.Tensor)
    np.testing.assert_array_equal(xi.data, x[2])
    assert yi == y[2]
    (xb,) = next(iter(DataLoader(TensorDataset(cg.Tensor(x)), batch_size=5)))
    np.testing.assert_array_equal(xb.data, x)


def test_batches_are_copies(rng):
    x, y = _data(rng, 8)
    kept = x.copy()
    for shuffle in (False, True):
        for xb, yb in DataLoader(TensorDataset(x, y), batch_size=3, shuffle=shuffle):
            xb.data[...] = 0
            yb[...] = -1
    np.testing.assert_array_equal(x, kept)
    assert (y >= 0).all()


def test_default_collate_structures():
    Point = collections.namedtuple("Point", "a b")
    batch = default_collate([{"x": 1.5, "label": 2, "flag": True, "name": "p", "pt": Point(1, 2.0)},
                             {"x": 2.5, "label": 0, "flag": False, "name": "q", "pt": Point(3, 4.0)}])
    assert isinstance(batch["x"], cg.Tensor) and batch["x"].dtype == np.float64
    np.testing.assert_array_equal(batch["x"].data, [1.5, 2.5])
    assert batch["label"].dtype == np.int64 and batch["label"].tolist() == [2, 0]
    assert batch["flag"].dtype == bool and batch["flag"].tolist() == [True, False]
    assert batch["name"] == ["p", "q"]
    assert isinstance(batch["pt"], Point) and batch["pt"].a.tolist() == [1, 3]
    stacked = default_collate([np.ones(2, np.float32), np.zeros(2, np.float32)])
    assert isinstance(stacked, cg.Tensor) and stacked.shape == (2, 2)
    assert stacked.dtype == np.float32
    assert isinstance(default_collate([[1, 2.0], [3, 4.0]]), list)


def test_default_collate_refuses_what_it_cannot_stack():
    with pytest.raises(ValueError, match="different shapes.*collate_fn="):
        default_collate([np.ones(2), np.ones(3)])
    with pytest.raises(ValueError, match="different numbers of fields"):
        default_collate([(1, 2), (1,)])
    with pytest.raises(TypeError, match="cannot batch samples of type object"):
        default_collate([object(), object()])


def test_collate_fn_is_used(rng):
    x, y = _data(rng, 6)
    loader = DataLoader(Rows(x, y), batch_size=4, collate_fn=lambda samples: len(samples))
    assert list(loader) == [4, 2]


def test_loader_feeds_a_training_step(backend, rng):
    x, y = _data(rng, 16, np.float64)
    model = cg.nn.Linear(3, 4, dtype=np.float64, rng=0)
    for xb, yb in DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=0):
        loss = cg.functional.cross_entropy(model(xb), yb)
        loss.backward()
    assert model.weight.grad is not None and np.isfinite(model.weight.grad).all()


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True, None, "4"])
def test_batch_size_must_be_a_positive_int(batch_size):
    with pytest.raises(ValueError, match="^batch_size: expected a positive int"):
        DataLoader(TensorDataset(np.ones(3)), batch_size=batch_size)


def test_bad_arguments_are_named():
    dataset = TensorDataset(np.ones(3))
    with pytest.raises(TypeError, match="^shuffle: expected True or False"):
        DataLoader(dataset, shuffle="yes")
    with pytest.raises(TypeError, match="^drop_last: expected True or False"):
        DataLoader(dataset, drop_last=1)
    with pytest.raises(TypeError, match="^generator: expected None"):
        DataLoader(dataset, generator="seed")
    with pytest.raises(TypeError, match="^generator: expected None"):
        DataLoader(dataset, generator=np.random.RandomState(0))
    with pytest.raises(TypeError, match="^collate_fn: expected a function"):
        DataLoader(dataset, collate_fn=3)
    with pytest.raises(TypeError, match="^dataset: expected a map-style dataset"):
        DataLoader(iter(range(3)))
    with pytest.raises(TypeError):  # the options after shuffle are keyword-only
        DataLoader(dataset, 1, False, None)


def test_tensor_dataset_checks_its_arrays():
    with pytest.raises(ValueError, match="^tensors: expected at least one"):
        TensorDataset()
    with pytest.raises(ValueError, match=r"^tensors\[1\]: expected 3 samples .* got 2"):
        TensorDataset(np.ones((3, 2)), np.arange(2))
    with pytest.raises(ValueError, match=r"^tensors\[0\]: expected at least one dimension"):
        TensorDataset(np.float64(1.0))
    with pytest.raises(TypeError, match=r"^tensors\[1\]: expected a Tensor or an array"):
        TensorDataset(np.ones(2), np.array(["a", "b"]))


def test_dataset_base_class_says_what_is_missing():
    with pytest.raises(NotImplementedError, match="Dataset does not define __getitem__"):
        Dataset()[0]
    with pytest.raises(NotImplementedError, match="Dataset does not define __len__"):
        len(Dataset())


@pytest.mark.parametrize("lengths", [[0.7, 0.3], [0.5, 0.25, 0.25], [0.34, 0.33, 0.33],
                                     [1.0, 0.0], [10, 13], [23, 0]])
@pytest.mark.filterwarnings("ignore:Length of split")  # torch's note on an empty split
def test_random_split_lengths_match_torch(lengths):
    torch = pytest.importorskip("torch")
    from torch.utils import data as torch_data
    dataset = TensorDataset(np.arange(23.0))
    parts = random_split(dataset, lengths, generator=0)
    want = torch_data.random_split(torch_data.TensorDataset(torch.arange(23.0)), lengths)
    assert [len(p) for p in parts] == [len(p) for p in want]
    taken = np.concatenate([np.asarray(p.indices, dtype=np.intp) for p in parts])
    np.testing.assert_array_equal(np.sort(taken), np.arange(23))  # disjoint, all covered


def test_random_split_is_reproducible_and_batches_fast(rng):
    x, y = _data(rng, 40)
    dataset = TensorDataset(x, y)
    train, test = random_split(dataset, [30, 10], generator=4)
    again, _ = random_split(dataset, [30, 10], generator=np.random.default_rng(4))
    np.testing.assert_array_equal(train.indices, again.indices)
    for shuffle in (False, True):
        fast = DataLoader(train, batch_size=7, shuffle=shuffle, generator=1)
        slow = DataLoader(Subset(Rows(x, y), train.indices), batch_size=7, shuffle=shuffle,
                          generator=1)
        got, want = _as_arrays(fast), _as_arrays(slow)
        assert len(got) == len(want) == 5
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
    nested = Subset(train, [2, 0])  # a subset of a subset
    (xb, yb), = DataLoader(nested, batch_size=2)
    np.testing.assert_array_equal(yb, y[[train.indices[2], train.indices[0]]])
    x0, y0 = nested[1]
    np.testing.assert_array_equal(x0, x[train.indices[0]])


def test_random_split_and_subset_check_their_arguments():
    dataset = TensorDataset(np.arange(10.0))
    with pytest.raises(ValueError, match=r"^lengths: expected counts that add up to 10"):
        random_split(dataset, [5, 4])
    with pytest.raises(ValueError, match="^lengths: fractions must add up to 1"):
        random_split(dataset, [0.5, 0.4])
    with pytest.raises(ValueError, match="^lengths: expected non-negative"):
        random_split(dataset, [-1, 11])
    with pytest.raises(TypeError, match="^generator: expected None"):
        random_split(dataset, [5, 5], generator="x")
    with pytest.raises(ValueError, match=r"^indices: expected values in \[0, 10\)"):
        Subset(dataset, [0, 10])
    with pytest.raises(TypeError, match="^indices: expected a sequence of ints"):
        Subset(dataset, [0.5])

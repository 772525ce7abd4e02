"""One MLP training step (784-H-10, sigmoid, MSE, SGD; float32) and the cost of one
recorded op: cygrad's graph layer against NumPy by hand, PyTorch eager and HIPS autograd.
A group per size; peers that are not installed are skipped with the reason. That every
peer takes the same step is tested in tests/test_cli.py."""
import numpy as np
import pytest

from cygrad.cli import peers

SIZES = [(1, 64), (64, 256), (1024, 1024)]  # (batch, hidden)
IMPLS = ["cygrad", "numpy", "torch", "autograd"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("batch, hidden", SIZES, ids=lambda v: str(v))
def test_training_step(benchmark, timed, batch, hidden, impl):
    benchmark.group = f"MLP step 784-{hidden}-10 batch {batch} float32"
    steps = peers.training_steps(batch, hidden, np.float32)
    if impl not in steps:
        pytest.skip(f"{impl} not installed")
    losses = [steps[impl]() for _ in range(3)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]  # it really trains
    timed(steps[impl], slow=batch >= 1024)


@pytest.mark.parametrize("impl", ["cygrad", "torch"])
def test_recorded_op(benchmark, timed, impl):
    benchmark.group = "graph overhead: record a*b, sum, backward (1 element)"
    impls = peers.recorded_op()
    if impl not in impls:
        pytest.skip(f"{impl} not installed")
    timed(impls[impl])


@pytest.mark.parametrize("impl", ["cygrad", "torch"])
def test_recorded_chain(benchmark, timed, impl):
    """A call is CHAIN_LENGTH recorded ops, forward and backward: its time over that is the
    cost of one (extra_info["per_op_us"])."""
    benchmark.group = (f"graph overhead: a chain of {peers.CHAIN_LENGTH} multiplications "
                       "and backward (1 element, float32)")
    impls = peers.recorded_chain()
    if impl not in impls:
        pytest.skip(f"{impl} not installed")
    timed(impls[impl])
    if not benchmark.disabled:
        benchmark.extra_info["per_op_us"] = benchmark.stats["min"] * 1e6 / peers.CHAIN_LENGTH

"""One process of a data-parallel run for tests/test_distributed.py, started by mpiexec:

    mpiexec -n 3 python tests/mpi_worker.py OUT_DIR {sgd,adam,demo,mismatch,grads} [DTYPE]

Each rank trains and writes OUT_DIR/rank<r>.npz (parameters after training, losses). The
test module imports `data`, `model`, `objective` and `STEPS` to compute the single-process
result; importing this file does not import mpi4py.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Tuple

import numpy as np

from cygrad import Tensor, functional as F, nn, optim
from cygrad.cli.demo import build_model, make_spiral

N_ITEMS = 121    # 61 + 60 on 2 processes, 41 + 40 + 40 on 3: uneven shards
BATCH = 40       # global batches 40, 40, 40, 1: the last one leaves ranks with nothing
EPOCHS = 2
SEED = 3
LAM = 1e-3
DEMO_STEPS = 60


def data() -> Tuple[np.ndarray, np.ndarray]:
    X, y = make_spiral(50, 3, seed=SEED)
    return X[:N_ITEMS], y[:N_ITEMS]


def model(dtype: str, hidden: int = 16) -> nn.Module:
    return build_model(hidden=hidden, classes=3, dtype=np.dtype(dtype), seed=SEED)


def optimizer(name: str, params: List[Tensor]) -> optim.Optimizer:
    if name == "sgd":
        return optim.SGD(params, lr=0.5, momentum=0.9)
    return optim.Adam(params, lr=0.01)


def objective(net: nn.Module, X: np.ndarray, y: np.ndarray) -> Tensor:
    """Mean cross-entropy over the (shard of the) batch plus the penalty, as the demo's."""
    logits = net(Tensor(X.astype(net.parameters()[0].dtype)))
    return F.cross_entropy(logits, y) + F.l2_penalty(net.parameters(), LAM)


def main(out: Path, mode: str, dtype: str = "float64") -> int:
    from cygrad import distributed as dist  # here: the test module imports this file

    world = dist.init()
    if mode == "grads":
        return _grads(out, dist, world)
    X, y = data()
    # The demo's model, or a small one (one unit wider on rank 1 to make a mismatch).
    hidden = 100 if mode == "demo" else 16 + (mode == "mismatch" and world.rank == 1)
    net = model(dtype, hidden)
    params = net.parameters()
    if mode != "demo":
        # Different starting values on each rank: broadcast_parameters must equalize them.
        for p in params:
            p.data += world.rank
    try:
        dist.broadcast_parameters(params)
    except ValueError as exc:
        print(f"rank {world.rank}: ValueError: {exc}", flush=True)
        return 3
    losses = []
    if mode == "demo":
        from cygrad.cli.demo import train
        losses = train(net, *make_spiral(100, 3, seed=SEED), steps=DEMO_STEPS,
                       world=world).losses
    else:
        opt = optimizer(mode, params)
        sampler = dist.DistributedSampler(len(y), world.rank, world.size, shuffle=True,
                                          seed=SEED)
        for epoch in range(EPOCHS):
            sampler.set_epoch(epoch)
            for index, weight in sampler.batches(BATCH):
                opt.zero_grad()
                loss = 0.0
                if len(index):  # an empty share: no forward, zero gradient
                    loss_tensor = objective(net, X[index], y[index])
                    loss_tensor.backward()
                    loss = loss_tensor.item()
                dist.average_gradients(params, weight)
                losses.append(float(dist.global_mean(loss, weight)))
                opt.step()
    np.savez(out / f"rank{world.rank}.npz", *[p.data for p in params],
             losses=np.array(losses))
    return 0


def _grads(out: Path, dist, world) -> int:
    """average_gradients on hand-made gradients: `unused` has none on any rank, `partial`
    only on rank 0, the float32 and float64 ones on all; 16-byte buckets force many calls."""
    unused, partial = Tensor(np.zeros(3), requires_grad=True), Tensor(np.zeros((2, 2)),
                                                                      requires_grad=True)
    single = Tensor(np.zeros(5, np.float32), requires_grad=True)
    double = Tensor(np.zeros((3, 4)), requires_grad=True)
    if world.rank == 0:
        partial.grad = np.ones((2, 2))
    single.grad = np.arange(5, dtype=np.float32) * (world.rank + 1)
    double.grad = np.full((3, 4), world.rank + 1.0)
    dist.average_gradients([unused, partial, single, double], bucket_bytes=16)
    np.savez(out / f"rank{world.rank}.npz", unused_is_none=unused.grad is None,
             partial=partial.grad, single=single.grad, double=double.grad)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), *sys.argv[2:]))

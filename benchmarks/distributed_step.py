"""Time one data-parallel training step and the share of it spent combining gradients.

    OMP_NUM_THREADS=1 mpiexec -n 1 python benchmarks/distributed_step.py
    OMP_NUM_THREADS=1 mpiexec -n 2 python benchmarks/distributed_step.py

The step: 784-256-10 MLP (ReLU), cross-entropy, SGD, float32; the global batch (64, 1024)
is split across the processes by `DistributedSampler`, so more processes means less work
each for the same step (strong scaling). `wait` is the time in a Barrier just before `average_gradients`: ranks
that finished their backward early wait there for the slowest (load imbalance, not
communication). `allreduce` is the time inside `average_gradients` after it (packing, the
Allreduce, unpacking), and `share` is allreduce / step; each is the slowest rank's mean.
Then the bare Allreduce of a float32 buffer of several sizes, for the README's cost model.
Rank 0 prints; nothing is asserted.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import cygrad
from cygrad import Tensor, distributed as dist, functional as F, nn, optim

IN_FEATURES, HIDDEN, CLASSES = 784, 256, 10


def _step_times(world: dist.World, batch: int, steps: int, warmup: int) -> tuple:
    """Seconds per step: (step, wait, average_gradients), the slowest rank's means."""
    rng = np.random.default_rng(0)
    X = rng.random((batch, IN_FEATURES), dtype=np.float32)
    y = rng.integers(0, CLASSES, batch)
    index = dist.DistributedSampler(batch, world.rank, world.size)
    x, y, weight = Tensor(X[index.indices()]), y[index.indices()], index.weight
    model = nn.Sequential(nn.Linear(IN_FEATURES, HIDDEN, rng=rng), nn.ReLU(),
                          nn.Linear(HIDDEN, CLASSES, rng=rng))
    params = model.parameters()
    dist.broadcast_parameters(params)
    opt = optim.SGD(params, lr=0.01)
    times = np.zeros(3)
    for i in range(warmup + steps):
        if i == warmup:
            world.comm.Barrier()  # every rank starts timing together
            times[:] = 0
        start = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        backward = time.perf_counter()
        world.comm.Barrier()
        ready = time.perf_counter()
        dist.average_gradients(params, weight)
        averaged = time.perf_counter()
        opt.step()
        times += [time.perf_counter() - start, ready - backward, averaged - ready]
    slowest = times / steps
    world.comm.Allreduce(dist.MPI.IN_PLACE, slowest, op=dist.MPI.MAX)
    return tuple(slowest)


def _allreduce_seconds(world: dist.World, nbytes: int, repeat: int) -> float:
    buffer = np.ones(nbytes // 4, np.float32)
    for _ in range(3):
        world.comm.Allreduce(dist.MPI.IN_PLACE, buffer)
    world.comm.Barrier()
    start = time.perf_counter()
    for _ in range(repeat):
        world.comm.Allreduce(dist.MPI.IN_PLACE, buffer)
    return world.comm.allreduce((time.perf_counter() - start) / repeat, op=dist.MPI.MAX)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per batch size")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 1024])
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[0.1, 0.814, 4, 25, 100],
                        help="bare Allreduce sizes (0.814 MB: this model's gradients)")
    args = parser.parse_args()
    world = dist.init()
    n_params = IN_FEATURES * HIDDEN + HIDDEN + HIDDEN * CLASSES + CLASSES
    if world.rank == 0:
        print(f"{world.size} process(es), {cygrad.get_num_threads()} thread(s) each, "
              f"{MPI_VERSION}; {n_params} float32 parameters = {n_params * 4 / 1e6:.3f} MB")
        print(f"{'batch':>6} {'per rank':>8} {'step ms':>8} {'wait ms':>8} "
              f"{'allreduce ms':>13} {'share':>6} {'samples/s':>10}")
    for batch in args.batches:
        step, wait, comm = _step_times(world, batch, args.steps, args.warmup)
        if world.rank == 0:
            print(f"{batch:>6} {batch // world.size:>8} {step * 1e3:>8.3f} {wait * 1e3:>8.3f} "
                  f"{comm * 1e3:>13.3f} {comm / step:>6.1%} {batch / step:>10.0f}")
    if world.size == 1:  # one process: Allreduce is a copy at most
        return
    if world.rank == 0:
        print(f"{'MB':>8} {'allreduce ms':>13} {'MB/s (bytes / time)':>20}")
    for mb in args.sizes_mb:
        nbytes = int(mb * 1e6) // 4 * 4
        seconds = _allreduce_seconds(world, nbytes, repeat=max(3, int(2e8 // max(nbytes, 1))
                                                              if mb < 10 else 10))
        if world.rank == 0:
            print(f"{mb:>8.3f} {seconds * 1e3:>13.3f} {nbytes / seconds / 1e6:>20.0f}")


MPI_VERSION = dist.MPI.Get_library_version().splitlines()[0].strip()

if __name__ == "__main__":
    main()

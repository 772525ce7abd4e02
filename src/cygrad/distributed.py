"""Data-parallel training on MPI: every process holds a replica of the model, computes the
gradient of its shard of the batch, and the shards' gradients are combined before each
optimizer step, so every replica takes the same step as one process on the whole batch.

    from cygrad import distributed as dist          # needs `pip install cygrad[mpi]`
    world = dist.init()                              # run under `mpiexec -n N python ...`
    dist.broadcast_parameters(model.parameters())    # every replica starts from rank 0's
    shard = dist.DistributedSampler(len(X), world.rank, world.size)
    loss = F.cross_entropy(model(Tensor(X[shard.indices()])), y[shard.indices()])
    loss.backward()
    dist.average_gradients(model.parameters(), weight=shard.weight)
    optimizer.step()

Every function is collective: all processes of the communicator call it, in the same order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

import numpy as np

from .tensor import Tensor

try:
    from mpi4py import MPI
except (ImportError, RuntimeError, OSError) as exc:  # no mpi4py, or no MPI library for it
    raise ImportError(f"cygrad.distributed needs mpi4py and an MPI library ({exc}); install "
                      "them with `pip install cygrad[mpi]`") from exc

__all__ = ["World", "init", "broadcast_parameters", "average_gradients", "global_mean",
           "DistributedSampler", "BUCKET_BYTES"]

# Gradients travel in flat buffers of about this size: one Allreduce per tensor would pay
# the latency once per tensor, one buffer for everything would hold a second copy of all
# gradients; a few tens of MB is past the size where the bandwidth term dominates.
BUCKET_BYTES = 25 * 2**20


@dataclass(frozen=True)
class World:
    """This process's place among the processes that train together."""
    comm: MPI.Comm
    rank: int
    size: int


def init(comm: Optional[MPI.Comm] = None) -> World:
    """The processes of `comm` (default: MPI.COMM_WORLD, all the processes mpiexec started).
    Importing this module has initialized MPI; mpi4py finalizes it at exit."""
    comm = MPI.COMM_WORLD if comm is None else comm
    return World(comm, comm.Get_rank(), comm.Get_size())


def _comm(comm: Optional[MPI.Comm]) -> MPI.Comm:
    return MPI.COMM_WORLD if comm is None else comm


_checked: Set[Tuple[int, tuple]] = set()


def _check_signature(params: Sequence[Tensor], comm: MPI.Comm) -> None:
    """ValueError unless every rank holds parameters of the same shapes and dtypes, in the
    same order: otherwise the buffers would not line up, and MPI would hang or mix values.
    Checked once per list of shapes, so a training step pays for it only on the first call;
    every rank compares against rank 0's list, so all of them raise the same error."""
    signature = tuple((p.shape, p.dtype.str) for p in params)
    key = (comm.py2f(), signature)
    if key in _checked:
        return
    signatures = comm.allgather(signature)
    first = signatures[0]
    for rank, theirs in enumerate(signatures):
        if theirs == first:
            continue
        if len(theirs) != len(first):
            raise ValueError(f"params: rank 0 has {len(first)} parameters, rank {rank} has "
                             f"{len(theirs)}; every process must build the same model")
        i = next(i for i, (a, b) in enumerate(zip(first, theirs)) if a != b)
        show = [f"{np.dtype(dtype)} {shape}" for shape, dtype in (first[i], theirs[i])]
        raise ValueError(f"params[{i}]: rank 0 has {show[0]}, rank {rank} has {show[1]}; "
                         "every process must build the same model")
    _checked.add(key)


def broadcast_parameters(params: Sequence[Tensor], root: int = 0,
                         comm: Optional[MPI.Comm] = None) -> None:
    """Overwrite every process's parameter values with those of rank `root`, so that the
    replicas start equal whatever each process initialized."""
    comm, params = _comm(comm), list(params)
    if not 0 <= root < comm.Get_size():
        raise ValueError(f"root: expected a rank in [0, {comm.Get_size()}), got {root!r}")
    _check_signature(params, comm)
    for p in params:
        # MPI writes into the array's memory: a view or a read-only array is replaced.
        p.data = np.require(p.data, requirements=["C", "W"])
        comm.Bcast(p.data, root=root)


_buffers: Dict[Tuple[str, int], np.ndarray] = {}  # reused: a fresh 25 MB costs page faults


def _buckets(params: List[Tensor], bucket_bytes: int) -> Iterator[List[Tensor]]:
    """Parameters grouped by dtype (a bucket is one MPI datatype), in order, cut into
    buckets of at most `bucket_bytes` (a larger tensor is a bucket of its own)."""
    for dtype in dict.fromkeys(p.dtype for p in params):
        bucket: List[Tensor] = []
        used = 0
        for p in (p for p in params if p.dtype == dtype):
            if bucket and used + p.data.nbytes > bucket_bytes:
                yield bucket
                bucket, used = [], 0
            bucket.append(p)
            used += p.data.nbytes
        yield bucket


def average_gradients(params: Sequence[Tensor], weight: Optional[float] = None,
                      comm: Optional[MPI.Comm] = None,
                      bucket_bytes: int = BUCKET_BYTES) -> None:
    """grad <- sum over ranks of weight_r * grad_r, in place on every rank (weight None:
    1 / size, the plain average). With each rank's loss the mean over its shard, passing
    weight = shard size / global batch size (`DistributedSampler.weight`) makes the result
    the gradient of the mean over the global batch, also when shards are uneven.

    A gradient that is None counts as zero; a parameter that has no gradient on any rank
    keeps None, as it would in one process. Float32 gradients are summed in float32."""
    comm, params = _comm(comm), list(params)
    _check_signature(params, comm)
    scale = 1.0 / comm.Get_size() if weight is None else float(weight)
    if comm.Get_size() == 1 and scale == 1.0:  # one process: nothing to combine
        return
    for index, bucket in enumerate(_buckets(params, bucket_bytes)):
        dtype, n = bucket[0].dtype, sum(p.data.size for p in bucket)
        # The bucket's tail counts, per tensor, the ranks that had a gradient: it rides in
        # the same Allreduce, so telling "zero" from "None everywhere" costs no extra call.
        flat = _buffers.get((dtype.str, index))
        if flat is None or flat.size != n + len(bucket):
            flat = _buffers[(dtype.str, index)] = np.empty(n + len(bucket), dtype)
        offset = 0
        for p in bucket:
            view = flat[offset:offset + p.data.size]
            if p.grad is None:
                view.fill(0)
            else:  # scaled while packed: the copy is needed anyway, the multiply is free
                np.multiply(p.grad.reshape(-1), dtype.type(scale), out=view)
            offset += p.data.size
        flat[n:] = [p.grad is not None for p in bucket]
        comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
        offset = 0
        for i, p in enumerate(bucket):
            view = flat[offset:offset + p.data.size].reshape(p.shape)
            offset += p.data.size
            if not flat[n + i]:
                continue
            if p.grad is None or not p.grad.flags.writeable:
                p.grad = view.copy()  # the buffer is reused by the next call
            else:
                p.grad[...] = view


def global_mean(local_mean: object, weight: Optional[float] = None,
                comm: Optional[MPI.Comm] = None) -> np.ndarray:
    """sum over ranks of weight_r * local_mean_r (float64, on every rank): the mean over the
    global batch of a value each rank averaged over its shard, such as the loss or the
    accuracy. `weight` as in `average_gradients`."""
    comm = _comm(comm)
    scale = 1.0 / comm.Get_size() if weight is None else float(weight)
    total = np.array(local_mean, dtype=np.float64)  # a copy, and 0-d stays an array
    total *= scale
    comm.Allreduce(MPI.IN_PLACE, total, op=MPI.SUM)
    return total


def _block(n_items: int, rank: int, size: int) -> Tuple[int, int]:
    """[start, stop) of rank's contiguous block: the first n_items % size ranks get
    ceil(n_items / size) items, the others floor(n_items / size)."""
    q, r = divmod(n_items, size)
    start = rank * q + min(rank, r)
    return start, start + q + (rank < r)


class DistributedSampler:
    """Which items of a data set of `n_items` this rank trains on.

    An epoch's order is 0..n_items-1, or a permutation drawn from (seed, epoch) when
    `shuffle` (the same on every rank: no communication needed). `indices()` is this rank's
    contiguous block of it (ceil or floor share, as `_block`); `batches(batch_size)` cuts
    the order into global batches first and splits each one the same way, so every rank
    runs the same number of steps. Each comes with its `weight` (share of the global batch)
    for `average_gradients`; a rank whose share of a small last batch is empty (weight 0)
    skips its forward and backward but still calls `average_gradients`.
    """

    def __init__(self, n_items: int, rank: int, size: int, shuffle: bool = False,
                 seed: int = 0):
        if n_items < size:
            raise ValueError(f"n_items: expected at least one item per process ({size}), "
                             f"got {n_items}")
        if not 0 <= rank < size:
            raise ValueError(f"rank: expected a rank in [0, {size}), got {rank!r}")
        self.n_items, self.rank, self.size = int(n_items), int(rank), int(size)
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Draw a new order (with `shuffle`): call it with the same epoch on every rank."""
        self.epoch = epoch

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n_items)
        return np.random.default_rng((self.seed, self.epoch)).permutation(self.n_items)

    def indices(self) -> np.ndarray:
        start, stop = _block(self.n_items, self.rank, self.size)
        return self._order()[start:stop]

    @property
    def weight(self) -> float:
        """len(indices()) / n_items: this rank's share of the full batch."""
        return len(self) / self.n_items

    def __len__(self) -> int:
        start, stop = _block(self.n_items, self.rank, self.size)
        return stop - start

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def batches(self, batch_size: int) -> Iterator[Tuple[np.ndarray, float]]:
        """(this rank's indices, weight) for each global batch of `batch_size` items (the
        last one may be smaller) of the epoch's order."""
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        order = self._order()
        for begin in range(0, self.n_items, batch_size):
            batch = order[begin:begin + batch_size]
            start, stop = _block(len(batch), self.rank, self.size)
            yield batch[start:stop], (stop - start) / len(batch)

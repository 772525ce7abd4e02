"""`python -m cygrad demo`: train a small MLP on the classic 2-D spiral data set.

    X, y = make_spiral(100, 3, seed=0)
    model = build_model(hidden=100, classes=3, seed=0)
    result = train(model, X, y, steps=500)      # result.accuracy, result.losses, result.seconds

Three interleaved spiral arms cannot be told apart by a linear model; a network with one
ReLU hidden layer separates them to > 95% training accuracy in a few hundred Adam steps.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, List, Optional, Tuple

import numpy as np

from .. import backends, nn, optim
from .. import functional as F
from ..tensor import Tensor, no_grad
from . import non_negative_int, output_file, positive_float, positive_int

if TYPE_CHECKING:  # importing cygrad.distributed needs mpi4py
    from ..distributed import World

TARGET_ACCURACY = 0.95


@dataclass
class TrainResult:
    """What `train` returns: the loss of every step, then the final loss and accuracy
    (measured after the last update), the backend and the training time."""
    losses: List[float] = field(default_factory=list)
    loss: float = float("nan")
    accuracy: float = 0.0
    backend: str = ""
    seconds: float = 0.0


def make_spiral(points_per_class: int = 100, classes: int = 3,
                seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """X (points_per_class * classes, 2) float64 and y (same length,) int64 class labels.
    Arm j: radius r = 0..1, angle t = 4j..4(j+1) + noise(0.2); point (r sin t, r cos t)."""
    rng = np.random.default_rng(seed)
    r = np.linspace(0.0, 1.0, points_per_class)
    X = np.empty((points_per_class * classes, 2))
    y = np.repeat(np.arange(classes, dtype=np.int64), points_per_class)
    for j in range(classes):
        t = np.linspace(4.0 * j, 4.0 * (j + 1), points_per_class)
        t += rng.normal(0.0, 0.2, points_per_class)
        X[y == j] = np.column_stack([r * np.sin(t), r * np.cos(t)])
    return X, y


def build_model(hidden: int = 100, classes: int = 3, in_features: int = 2,
                dtype: object = np.float32, seed: int = 0) -> nn.Sequential:
    """in_features -> hidden -> ReLU -> classes (logits), initialized from `seed`."""
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(in_features, hidden, dtype=dtype, rng=rng), nn.ReLU(),
                         nn.Linear(hidden, classes, dtype=dtype, rng=rng))


def _objective(model: nn.Module, x: Tensor, y: np.ndarray, lam: float) -> Tuple[Tensor, Tensor]:
    """(logits, cross-entropy + lam/2 * sum of squared parameters)."""
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    return logits, (loss + F.l2_penalty(model.parameters(), lam) if lam else loss)


def train(model: nn.Module, X: np.ndarray, y: np.ndarray, steps: int = 500,
          lr: float = 0.02, lam: float = 1e-4, backend: Optional[str] = None,
          progress: bool = False, world: Optional["World"] = None) -> TrainResult:
    """Full-batch Adam on cross_entropy(model(X), y) + l2_penalty(parameters, lam), on
    `backend`'s kernels (None: the active one). `progress` shows a tqdm bar. With `world`
    (`cygrad.distributed.init()`), each of its processes computes the gradient of its shard
    of the batch and the steps, losses and accuracy are those of the full batch."""
    from tqdm import tqdm  # a runtime dependency, needed by this command only

    params = model.parameters()
    x = Tensor(np.asarray(X, dtype=params[0].dtype))
    x_local, y_local, weight = x, y, 1.0
    if world is not None:
        from .. import distributed
        distributed.broadcast_parameters(params, comm=world.comm)
        shard = distributed.DistributedSampler(len(y), world.rank, world.size)
        x_local, y_local = Tensor(x.data[shard.indices()]), y[shard.indices()]
        weight = shard.weight
    optimizer = optim.Adam(params, lr=lr)
    result = TrainResult()
    with backends.use_backend(backend or backends.get_backend()):
        result.backend = backends.get_backend()
        start = time.perf_counter()
        bar = tqdm(range(steps), desc=f"spiral ({result.backend})", disable=not progress,
                   file=sys.stderr)
        for _ in bar:
            optimizer.zero_grad()
            logits, loss = _objective(model, x_local, y_local, lam)
            loss.backward()
            # accuracy before this step's update: free, from its logits
            stats = (loss.item(), np.mean(logits.data.argmax(axis=1) == y_local))
            if world is not None:  # the full batch's: each shard's weighted by its share
                distributed.average_gradients(params, weight, comm=world.comm)
                stats = distributed.global_mean(stats, weight, comm=world.comm)
            optimizer.step()
            result.losses.append(float(stats[0]))
            if progress:
                bar.set_postfix(loss=f"{stats[0]:.4f}", acc=f"{stats[1]:.1%}", refresh=False)
        bar.close()
        with no_grad():
            logits, loss = _objective(model, x, y, lam)
        result.seconds = time.perf_counter() - start
    result.loss = loss.item()
    result.accuracy = float(np.mean(logits.data.argmax(axis=1) == y))
    return result


def _pyplot():
    """matplotlib.pyplot on a file-only backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_plot(plt, path: str, model: nn.Module, X: np.ndarray, y: np.ndarray,
              result: TrainResult) -> None:
    """Two panels: the decision regions with the data points, and the loss per step."""
    grid = np.linspace(-1.2, 1.2, 300)
    xx, yy = np.meshgrid(grid, grid)
    points = np.column_stack([xx.ravel(), yy.ravel()]).astype(model.parameters()[0].dtype)
    with no_grad():
        regions = model(Tensor(points)).data.argmax(axis=1).reshape(xx.shape)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5))
    colors = [f"C{j}" for j in range(y.max() + 1)]  # class j: the same color in both layers
    left.contourf(xx, yy, regions, levels=np.arange(len(colors) + 1) - 0.5, colors=colors,
                  alpha=0.3)
    for j, color in enumerate(colors):
        left.scatter(*X[y == j].T, color=color, edgecolors="k", s=18, label=f"class {j}")
    left.legend(loc="upper right")
    left.set(title=f"decision regions, accuracy {result.accuracy:.1%}", aspect="equal")
    right.plot(result.losses)
    right.set(title=f"training loss ({result.backend} backend)", xlabel="step",
              ylabel="loss", yscale="log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=["cython", "reference"], default=None,
                        help="kernels to train on (default: the active backend, "
                             f"now {backends.get_backend()!r})")
    parser.add_argument("--steps", type=positive_int, default=500,
                        help="full-batch Adam steps (default: 500)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed of the data and the initial weights (default: 0)")
    parser.add_argument("--hidden", type=positive_int, default=100,
                        help="hidden units (default: 100)")
    parser.add_argument("--lr", type=positive_float, default=0.02,
                        help="Adam learning rate (default: 0.02)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                        help="parameter and data dtype (default: float32)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--plot", metavar="FILE.png", type=output_file,
                        help="save the decision regions and the loss curve (needs matplotlib)")
    parser.add_argument("--distributed", action="store_true",
                        help="split the batch across MPI processes: run under "
                             "`mpiexec -n N` (needs `pip install cygrad[mpi]`)")


def run(args: argparse.Namespace) -> int:
    plt = _pyplot() if args.plot else None
    if args.plot and plt is None:  # say so now, not after training
        print("demo: --plot needs matplotlib, which is not installed; "
              "install it with `pip install matplotlib` (or `pip install cygrad[plot]`)",
              file=sys.stderr)
        return 1
    world = None
    if args.distributed:
        try:
            from .. import distributed
        except ImportError as exc:
            print(f"demo: --distributed: {exc}", file=sys.stderr)
            return 1
        world = distributed.init()
    X, y = make_spiral(100, 3, seed=args.seed)
    try:
        model = build_model(args.hidden, classes=3, dtype=np.dtype(args.dtype), seed=args.seed)
        result = train(model, X, y, steps=args.steps, lr=args.lr, backend=args.backend,
                       progress=not args.quiet and (world is None or world.rank == 0),
                       world=world)
    except RuntimeError as exc:  # e.g. --backend cython in a checkout that was not built
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"demo: --hidden {args.hidden}: not enough memory for a layer that wide",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: a short word, no traceback; 128 + SIGINT, as shells do
        print("\ndemo: interrupted", file=sys.stderr)
        return 130
    if world is not None and world.rank != 0:  # every rank has the result; one reports it
        return 0 if result.accuracy >= TARGET_ACCURACY else 1
    print(f"final training accuracy: {result.accuracy:.1%} ({len(y)} points, 3 classes)")
    print(f"final loss:              {result.loss:.4f}")
    print(f"backend:                 {result.backend} ({args.dtype})")
    if world is not None:
        print(f"processes:               {world.size} (MPI), {len(y)} points split among them")
    print(f"time:                    {result.seconds:.2f} s for {args.steps} steps")
    if plt is not None:
        try:
            save_plot(plt, args.plot, model, X, y, result)
        except (OSError, ValueError) as exc:  # a missing folder, an unknown suffix
            print(f"demo: --plot {args.plot}: {exc}", file=sys.stderr)
            return 1
        print(f"plot:                    {args.plot}")
    if result.accuracy < TARGET_ACCURACY:
        print(f"demo: accuracy {result.accuracy:.1%} is below {TARGET_ACCURACY:.0%}",
              file=sys.stderr)
        return 1
    return 0

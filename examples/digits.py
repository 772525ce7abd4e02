"""Classify scikit-learn's handwritten digits with a PyTorch-style training loop in cygrad.

    python examples/digits.py                      # cygrad, and PyTorch beside it if installed
    python examples/digits.py --compare-sklearn    # also scikit-learn's MLPClassifier

The pieces a PyTorch user expects, under the same names: a Module subclass holding a
ModuleList, DataLoader, CrossEntropyLoss, AdamW with a learning-rate schedule, gradient
clipping, evaluation under no_grad with argmax, and the model saved and loaded in
safetensors. When PyTorch is installed, the same script written in torch.nn (same model,
same initial weights, same data and hyperparameters) runs beside it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from typing import Dict, List, Sequence

import numpy as np

import cygrad as cg
from cygrad import nn
from cygrad.data import DataLoader, TensorDataset

SIZES = (64, 128, 64, 10)  # 8x8 pixels -> two hidden layers -> 10 digits


class MLP(nn.Module):
    """Linear layers with a ReLU between each two."""

    def __init__(self, sizes: Sequence[int] = SIZES, seed: int = 0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.layers = nn.ModuleList(nn.Linear(n_in, n_out, dtype=np.float64, rng=rng)
                                    for n_in, n_out in zip(sizes[:-1], sizes[1:]))
        self.activation = nn.ReLU()

    def forward(self, x: cg.Tensor) -> cg.Tensor:
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)


def load_data(seed: int):
    """The 1797 digits, pixels scaled from 0..16 to 0..1 (float64, as scikit-learn gives
    them), split 75/25 with every digit in proportion."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=seed, stratify=y)


def train(model: MLP, loader: DataLoader, args: argparse.Namespace) -> List[float]:
    """Train for args.epochs epochs; returns each epoch's duration in seconds."""
    loss_fn = nn.CrossEntropyLoss()
    optimizer = cg.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = cg.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    durations = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        model.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), max_norm=args.max_norm)
            optimizer.step()
        scheduler.step()
        durations.append(time.perf_counter() - start)
    return durations


def accuracy(model: MLP, X: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    with cg.no_grad():
        predicted = model(cg.Tensor(X)).argmax(dim=1)
    return float((predicted == y).mean())


def run_cygrad(data, args: argparse.Namespace) -> Dict[str, object]:
    X_train, X_test, y_train, y_test = data
    model = MLP(seed=args.seed)
    initial = {name: value.numpy().copy() for name, value in model.state_dict().items()}
    loader = DataLoader(TensorDataset(X_train, y_train), batch_size=args.batch_size,
                        shuffle=True, generator=args.seed)
    durations = train(model, loader, args)
    result = {"accuracy": accuracy(model, X_test, y_test), "durations": durations,
              "initial": initial}

    with tempfile.TemporaryDirectory() as scratch:
        path = args.save or os.path.join(scratch, "digits.safetensors")
        cg.save(model.state_dict(), path)
        reloaded = MLP(seed=args.seed + 1)  # other weights: the file must replace them
        reloaded.load_state_dict(cg.load(path))
        result["reloaded_accuracy"] = accuracy(reloaded, X_test, y_test)
    return result


def run_torch(data, args: argparse.Namespace, initial: Dict[str, np.ndarray]):
    """The same script in PyTorch, starting from the same weights."""
    import torch
    from torch.utils.data import DataLoader as TorchLoader, TensorDataset as TorchDataset

    class TorchMLP(torch.nn.Module):
        def __init__(self, sizes: Sequence[int] = SIZES):
            super().__init__()
            self.layers = torch.nn.ModuleList(
                torch.nn.Linear(n_in, n_out, dtype=torch.float64)
                for n_in, n_out in zip(sizes[:-1], sizes[1:]))
            self.activation = torch.nn.ReLU()

        def forward(self, x):
            for layer in self.layers[:-1]:
                x = self.activation(layer(x))
            return self.layers[-1](x)

    if args.threads:
        torch.set_num_threads(args.threads)
    X_train, X_test, y_train, y_test = (torch.from_numpy(a) for a in data)
    torch.manual_seed(args.seed)
    model = TorchMLP()
    model.load_state_dict({name: torch.from_numpy(value) for name, value in initial.items()})
    loader = TorchLoader(TorchDataset(X_train, y_train), batch_size=args.batch_size,
                         shuffle=True)
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr,
                                  weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    durations = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        model.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=args.max_norm)
            optimizer.step()
        scheduler.step()
        durations.append(time.perf_counter() - start)
    model.eval()
    with torch.no_grad():
        predicted = model(X_test).argmax(dim=1)
    return float((predicted == y_test).double().mean()), durations


def run_sklearn(data, args: argparse.Namespace, estimator: type):
    """An MLPClassifier with the nearest settings scikit-learn has: the same layers,
    batch size, epochs and Adam learning rate. Its `alpha` is an L2 penalty in the loss
    (AdamW decays the weights apart from the gradient), and it has no schedule and no
    clipping; `tol=0` makes it run every epoch."""
    from sklearn.exceptions import ConvergenceWarning
    X_train, X_test, y_train, y_test = data
    classifier = estimator(hidden_layer_sizes=SIZES[1:-1], activation="relu", solver="adam",
                           alpha=args.weight_decay, batch_size=args.batch_size,
                           learning_rate_init=args.lr, max_iter=args.epochs, shuffle=True,
                           random_state=args.seed, tol=0.0, n_iter_no_change=args.epochs + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter reached: expected
        start = time.perf_counter()
        classifier.fit(X_train, y_train)
        seconds = time.perf_counter() - start
    return float(classifier.score(X_test, y_test)), seconds / args.epochs


def per_epoch(durations: List[float]) -> float:
    """The median epoch: the first one also pays for warming caches up."""
    return statistics.median(durations)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=positive_int, default=20)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--weight-decay", type=float, default=1e-2)
    parser.add_argument("--max-norm", type=float, default=1.0,
                        help="clip the gradients' total norm to this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", metavar="PATH",
                        help="keep the trained model in this safetensors file")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="threads for cygrad and PyTorch alike (default: each its own)")
    parser.add_argument("--no-torch", action="store_true",
                        help="skip the PyTorch run even where torch is installed")
    parser.add_argument("--compare-sklearn", action="store_true",
                        help="also train scikit-learn's MLPClassifier (and cygrad.sklearn's)")
    args = parser.parse_args(argv)

    if args.threads:
        cg.set_num_threads(args.threads)
    data = load_data(args.seed)
    print(f"digits: {len(data[0])} training and {len(data[1])} test images of 8x8 pixels "
          f"(float64); MLP {'-'.join(map(str, SIZES))}, AdamW lr={args.lr} "
          f"weight_decay={args.weight_decay}, cosine schedule, clip {args.max_norm}, "
          f"batch {args.batch_size}, {args.epochs} epochs; cygrad backend {cg.get_backend()}")

    ours = run_cygrad(data, args)
    print(f"cygrad   test accuracy {ours['accuracy']:.2%}  "
          f"{per_epoch(ours['durations']) * 1e3:7.1f} ms/epoch  "
          f"(reloaded from safetensors: {ours['reloaded_accuracy']:.2%})")
    if ours["reloaded_accuracy"] != ours["accuracy"]:
        raise SystemExit("the reloaded model does not give the trained model's accuracy")

    if not args.no_torch:
        try:
            import torch  # noqa: F401  (imported after cygrad, as the interop notes advise)
        except ImportError:
            print("torch    not installed: pip install torch to compare")
        else:
            accuracy_torch, durations = run_torch(data, args, ours["initial"])
            print(f"torch    test accuracy {accuracy_torch:.2%}  "
                  f"{per_epoch(durations) * 1e3:7.1f} ms/epoch")

    if args.compare_sklearn:
        from sklearn.neural_network import MLPClassifier
        accuracy_sk, seconds = run_sklearn(data, args, MLPClassifier)
        print(f"sklearn  MLPClassifier test accuracy {accuracy_sk:.2%}  "
              f"{seconds * 1e3:7.1f} ms/epoch (mean)")
        try:
            from cygrad.sklearn import MLPClassifier as CygradMLPClassifier
        except ImportError as exc:  # scikit-learn outside the range it supports
            print(f"cygrad.sklearn  not available: {exc}")
        else:
            accuracy_sk, seconds = run_sklearn(data, args, CygradMLPClassifier)
            print(f"cygrad.sklearn MLPClassifier test accuracy {accuracy_sk:.2%}  "
                  f"{seconds * 1e3:7.1f} ms/epoch (mean)")


if __name__ == "__main__":
    main()

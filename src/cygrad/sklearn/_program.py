"""A batch's forward pass, loss, backward pass and Adam step as one compiled Program.

`Network.loss_and_grads` and `FlatAdam.update_params` make a dozen kernel and NumPy
calls per batch, each with its own argument checks and temporaries; on small layers
those costs are of the order of the products'. On the compiled backend the same
steps are recorded once per batch size into a `Program` (csrc/_plan.pxi), and a batch
is then one `run()`: the records execute in one compiled loop with the GIL released,
on buffers made once. The formulas and the order of operations are `Network`'s:
softmax and log loss in one record, the L2 term written before the products add onto
it, the output error scaled by `1 / sum(sample_weight)`. Hidden activations without a
record (tanh) and the outputs other than softmax with log loss are Python calls between
the records. Adam's update is a record whose step size is set before each run; SGD's
stays in Python (the SGD record keeps PyTorch's velocity, without the learning rate,
and scikit-learn's includes it: the two differ once the learning rate changes).
"""
from __future__ import annotations

from functools import partial
from typing import Any, Dict, Optional, Union

import numpy as np

from .. import backends
from ..compile import plan
from ._network import (ACTIVATIONS, DERIVATIVES, Network, output_loss_and_scaled_error,
                       weight_sum)
from ._optimizers import FlatAdam

Array = np.ndarray
Batch = Union[Array, slice]


def new_program() -> Any:
    """An empty compiled Program, or None where the active backend has none (the
    reference backend: the fit then runs `Network`'s NumPy path)."""
    return plan.new_program(backends.active())


class BatchProgram:
    """Buffers and records for batches of `rows` rows: `X`, `Y` (the targets in the
    network's dtype) and `weight` (when the fit has sample weights) are filled by
    `step()` before each run."""

    def __init__(self, program: Any, net: Network, rows: int, weighted: bool,
                 adam: Optional[FlatAdam]):
        self.program, self.net, self.rows, self.adam = program, net, rows, adam
        dtype, units = net.dtype, net.layer_units
        self.X = np.empty((rows, units[0]), dtype)
        self.Y = np.empty((rows, units[-1]), dtype)
        self.weight = np.empty(rows, dtype) if weighted else None
        self._loss = np.zeros(1, dtype)
        self._python_loss: Optional[float] = None
        self._weights = float(rows)  # the batch's weight_sum, set by step()
        self._acts = [np.empty((rows, u), dtype) for u in units[1:]]
        # The hidden layers' errors: their own buffers, since the derivative reads the
        # activation the error is computed for.
        self._errors = [np.empty((rows, u), dtype) for u in units[1:-1]]
        self._forward()
        self._output()
        self._decays = self._backward()
        if adam is not None:
            self._adam = program.adam(net.params, net.grads, adam.ms[0], adam.vs[0])

    def _forward(self) -> None:
        net, p, last = self.net, self.program, len(self.net.weights) - 1
        a = self.X
        for i, (w, b, out) in enumerate(zip(net.weights, net.biases, self._acts)):
            p.fill_rows(b, out)
            p.product(a, w, out, False, True, True)
            if i < last:
                self._activation(net.activation, out)
            a = out

    def _activation(self, name: str, a: Array) -> None:
        if name == "relu":
            self.program.relu(a, a)
        elif name == "logistic":
            self.program.sigmoid(a, a)
        elif name != "identity":
            self.program.call(partial(ACTIVATIONS[name], a))

    def _output(self) -> None:
        net, out = self.net, self._acts[-1]
        if net.out_activation == "softmax" and net.loss == "log_loss":
            self.program.softmax_log_loss(out, self.Y, self.weight, self._loss)
            return
        self._activation(net.out_activation, out)
        self.program.call(self._python_output)

    def _python_output(self) -> None:
        net = self.net
        self._python_loss = output_loss_and_scaled_error(
            net.loss, net.out_activation, self.Y, self._acts[-1], self.weight, self._weights)

    def _backward(self) -> list:
        """The backward's records; the indices of the L2 records, whose factor
        alpha / sum(sample_weight) changes with the batch's weights."""
        net, p = self.net, self.program
        decay = float(net.alpha) / self.rows
        decays, delta = [], self._acts[-1]  # the output's buffer holds the output error
        for i in range(len(net.weights) - 1, -1, -1):
            a_in = self.X if i == 0 else self._acts[i - 1]
            w, gw, gb = net.weights[i], net.grad_weights[i], net.grad_biases[i]
            decays.append(p.scale(w, gw, decay, False))  # the products add onto it
            p.product(delta, a_in, gw, True, False, True)
            p.bias_backward(delta, gb, False)
            if i > 0:
                grad_x = self._errors[i - 1]
                p.product(delta, w, grad_x, False, False, False)
                self._derivative(net.activation, grad_x, a_in)
                delta = grad_x
        return decays

    def _derivative(self, name: str, delta: Array, a: Array) -> None:
        if name == "relu":
            self.program.relu_backward(delta, a, delta, False)
        elif name == "logistic":
            self.program.sigmoid_backward(delta, a, delta, False)
        elif name != "identity":
            self.program.call(partial(DERIVATIVES[name], delta, a))

    def step(self, X: Array, Y: Array, sample_weight: Optional[Array], batch: Batch) -> float:
        """Gather the rows `batch` (indices or a slice) of X, Y and sample_weight, compute
        the loss (with its L2 term) and the gradients, and take the Adam step if the
        program has one. The loss is the one before the step."""
        if isinstance(batch, slice):
            np.copyto(self.X, X[batch])
            np.copyto(self.Y, Y[batch])
            if self.weight is not None:
                np.copyto(self.weight, sample_weight[batch])
        else:
            # mode="clip": the indices are valid, and the default ("raise") gathers into
            # a temporary before copying to `out`.
            np.take(X, batch, axis=0, mode="clip", out=self.X)
            np.take(Y, batch, axis=0, mode="clip", out=self.Y)
            if self.weight is not None:
                np.take(sample_weight, batch, mode="clip", out=self.weight)
        net = self.net
        self._weights = weights = weight_sum(self.rows, self.weight)
        if self.weight is not None:
            for index in self._decays:
                self.program.set_scale(index, float(net.alpha) / weights)
        l2 = net.l2_loss(weights)
        if self.adam is not None:
            adam = self.adam
            beta_1, beta_2 = float(adam.beta_1), float(adam.beta_2)
            self.program.set_adam(self._adam, adam.next_step_size(), beta_1, 1 - beta_1,
                                  beta_2, 1 - beta_2, float(adam.epsilon), 1.0)
        self.program.run()
        loss = self._python_loss if self._python_loss is not None else float(self._loss[0])
        return loss + l2


class BatchPrograms:
    """A BatchProgram per batch size (a fit has one or two), made on first use; `None`
    from `for_net` where the fit must take the NumPy path."""

    def __init__(self, net: Network, weighted: bool, adam: Optional[FlatAdam]):
        self.net, self.weighted, self.adam = net, weighted, adam
        self._programs: Dict[int, BatchProgram] = {}

    @classmethod
    def for_net(cls, net: Network, dense: bool, weighted: bool,
                optimizer: Any) -> Optional["BatchPrograms"]:
        if not dense or new_program() is None:
            return None
        return cls(net, weighted, optimizer if isinstance(optimizer, FlatAdam) else None)

    def get(self, rows: int) -> BatchProgram:
        if rows not in self._programs:
            self._programs[rows] = BatchProgram(new_program(), self.net, rows,
                                                self.weighted, self.adam)
        return self._programs[rows]

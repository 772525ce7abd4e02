"""The perceptron's arithmetic on cygrad's kernels: forward pass, loss, backward pass.

Every parameter lives in one flat buffer (`Network.params`), every gradient in a second
one of the same layout, so an optimizer updates the whole network with a handful of
NumPy calls however many layers it has. A layer's weight is stored as PyTorch and the
kernels want it, `(out_features, in_features)` C-ordered; scikit-learn's `coefs_[i]`,
`(fan_in, fan_out)`, is its transpose, a view into the same buffer, so nothing is copied
between the two.

The formulas are scikit-learn's `_backprop` (losses, L2 penalty, sample weights), with
`1 / sum(sample_weight)` folded into the output error instead of dividing each gradient.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse as sp
from sklearn.neural_network._base import LOSS_FUNCTIONS

from .. import kernels

Array = np.ndarray


def _relu(a: Array) -> None:
    # A zero of a's own type: a Python 0 is converted (and broadcast through a buffer) at
    # every call.
    np.maximum(a, a.dtype.type(0), out=a)


def _tanh(a: Array) -> None:
    np.tanh(a, out=a)


def _logistic(a: Array) -> None:
    kernels.sigmoid_forward(a, out=a)


def _softmax(a: Array) -> None:
    # Rows (one entry per class) are short, and NumPy reduces a contiguous row at a time,
    # slowly; on a transposed copy each reduction runs across whole rows instead.
    columns = a.T.copy()
    columns -= columns.max(axis=0)  # exp of at most 0: no overflow
    np.exp(columns, out=columns)
    columns /= columns.sum(axis=0)
    a[...] = columns.T


def _exp(a: Array) -> None:
    np.exp(a, out=a)


def _identity(a: Array) -> None:
    pass


ACTIVATIONS = {"relu": _relu, "tanh": _tanh, "logistic": _logistic, "identity": _identity,
               "softmax": _softmax, "exp": _exp}


def _relu_backward(delta: Array, a: Array) -> None:
    # Where the output is 0 the unit was off (scikit-learn's test). A product with the
    # mask: NumPy's masked copy (`where=`) is an order of magnitude slower.
    np.multiply(delta, a != 0, out=delta)


def _tanh_backward(delta: Array, a: Array) -> None:
    delta *= 1 - a * a  # d tanh = 1 - tanh^2: reuse the output


def _logistic_backward(delta: Array, a: Array) -> None:
    kernels.sigmoid_backward(delta, a, out=delta)


DERIVATIVES = {"relu": _relu_backward, "tanh": _tanh_backward,
               "logistic": _logistic_backward, "identity": lambda delta, a: None}


def _weighted_mean(per_sample: Array, sample_weight: Optional[Array]) -> float:
    if sample_weight is None:
        return float(per_sample.mean())
    return float(np.dot(per_sample, sample_weight) / sample_weight.sum())


def _softmax_log_loss(y: Array, prob: Array, sample_weight: Optional[Array]) -> float:
    """Log loss of softmax probabilities `prob` against one-hot `y` (each row's loss is
    minus the log of its true class's probability, clipped to [eps, 1 - eps]), and
    `prob` (C-ordered, as the network's buffers are) turned into the output error
    `prob - y` in place."""
    flat = prob.reshape(-1)
    true_class = np.flatnonzero(y)  # one per row, in row order (prob is C-ordered)
    true_prob = flat.take(true_class)
    eps = np.finfo(prob.dtype).eps
    loss = -_weighted_mean(np.log(np.clip(true_prob, eps, 1 - eps)), sample_weight)
    # Only the true classes change: a pass over the whole array with y would cast it.
    flat.put(true_class, true_prob - 1)
    return loss


def output_loss_and_error(loss: str, out_activation: str, y: Array, prob: Array,
                          sample_weight: Optional[Array]) -> float:
    """scikit-learn's loss of the predictions `prob` against the targets `y`: log loss
    for softmax (one-hot `y`), binary log loss per output for logistic (clipped to
    [eps, 1 - eps]), half the mean squared error, or half the Poisson deviance. `prob`
    is left holding the output error `prob - y`: for every pairing of output activation
    and loss here, the loss's gradient at the output's input (each output activation is
    its loss's canonical link)."""
    if out_activation == "softmax" and loss == "log_loss":
        return _softmax_log_loss(y, prob, sample_weight)
    value = _other_loss(loss, out_activation, y, prob, sample_weight)
    np.subtract(prob, y, out=prob)
    return value


def weight_sum(rows: int, sample_weight: Optional[Array]) -> float:
    """The sum of a batch's sample weights (its row count without weights), as a Python
    float: a NumPy float64 scalar would compute float32 arrays in float64."""
    return float(rows if sample_weight is None else sample_weight.sum())


def output_loss_and_scaled_error(loss: str, out_activation: str, y: Array, prob: Array,
                                 sample_weight: Optional[Array], weights: float) -> float:
    """`output_loss_and_error`, with the error then weighted by `sample_weight` and
    divided by `weights`, their sum (`weight_sum`): the gradient of the weighted mean
    loss."""
    value = output_loss_and_error(loss, out_activation, y, prob, sample_weight)
    if sample_weight is not None:
        prob *= sample_weight.reshape(-1, 1)
    prob *= 1 / weights
    return value


def _other_loss(loss: str, out_activation: str, y: Array, prob: Array,
                sample_weight: Optional[Array]) -> float:
    if out_activation == "logistic" and loss == "log_loss":
        eps = np.finfo(prob.dtype).eps
        clipped = np.clip(prob, eps, 1 - eps)
        right = np.where(y.astype(bool, copy=False), clipped, 1 - clipped)
        return -_weighted_mean(np.log(right).sum(axis=1), sample_weight)
    if loss == "squared_error":
        diff = y - prob
        return 0.5 * _weighted_mean(np.einsum("ij,ij->i", diff, diff), sample_weight) \
            / prob.shape[1]
    return float(LOSS_FUNCTIONS[loss](y, prob, sample_weight))


def _layer(a: Any, w: Array, b: Array, out: Array, activation: str) -> None:
    """out = activation(a @ w.T + b); `a` dense or sparse."""
    if sp.issparse(a):
        np.copyto(out, a @ w.T)  # a sparse product; the kernels take dense arrays
        out += b
    else:
        kernels.linear_forward(a, w, b, out=out)
    ACTIVATIONS[activation](out)


def predict(X: Any, coefs: Sequence[Array], intercepts: Sequence[Array], activation: str,
            out_activation: str) -> Array:
    """The output layer's activation for X, straight from scikit-learn's `coefs_` and
    `intercepts_`: one layer's output alive at a time, nothing else allocated."""
    a = X
    last = len(coefs) - 1
    for i, (c, b) in enumerate(zip(coefs, intercepts)):
        w = np.ascontiguousarray(np.asarray(c).T, dtype=X.dtype)  # a view when fitted here
        out = np.empty((X.shape[0], w.shape[0]), X.dtype)
        _layer(a, w, np.ascontiguousarray(b, dtype=X.dtype), out,
               out_activation if i == last else activation)
        a = out
    return a


class Network:
    """A multilayer perceptron's parameters, gradients and work buffers.

    `layer_units` = [n_features, hidden..., n_outputs]. `weights[i]` (out, in) and
    `biases[i]` are views into `params`; `grad_weights[i]`, `grad_biases[i]` into `grads`.
    """

    def __init__(self, layer_units: Sequence[int], dtype: np.dtype, activation: str,
                 out_activation: str, loss: str, alpha: float):
        self.layer_units = list(layer_units)
        self.dtype = np.dtype(dtype)
        self.activation, self.out_activation = activation, out_activation
        self.loss, self.alpha = loss, alpha
        shapes = list(zip(self.layer_units[1:], self.layer_units[:-1]))  # (out, in)
        self.n_weights = sum(o * i for o, i in shapes)
        size = self.n_weights + sum(self.layer_units[1:])
        self.params = np.zeros(size, self.dtype)
        self.grads = np.zeros(size, self.dtype)
        self.weights, self.biases = self._views(self.params, shapes)
        self.grad_weights, self.grad_biases = self._views(self.grads, shapes)
        self._buffers: Dict[int, Tuple[List[Array], List[Array]]] = {}

    @staticmethod
    def _views(flat: Array, shapes: List[Tuple[int, int]]) -> Tuple[List[Array], List[Array]]:
        weights, biases, start = [], [], 0
        for out, inp in shapes:
            weights.append(flat[start:start + out * inp].reshape(out, inp))
            start += out * inp
        for out, _ in shapes:
            biases.append(flat[start:start + out])
            start += out
        return weights, biases

    # scikit-learn's attributes as views --------------------------------------------

    def load(self, coefs: Sequence[Array], intercepts: Sequence[Array]) -> None:
        """Copy scikit-learn's `coefs_` (fan_in, fan_out) and `intercepts_` in."""
        for w, c in zip(self.weights, coefs):
            w[...] = np.asarray(c).T
        for b, i in zip(self.biases, intercepts):
            b[...] = i

    def coefs(self) -> List[Array]:
        """`coefs_` as scikit-learn shapes them, (fan_in, fan_out): views of the weights."""
        return [w.T for w in self.weights]

    def intercepts(self) -> List[Array]:
        return list(self.biases)

    # forward and backward --------------------------------------------------------

    def _work(self, n: int) -> Tuple[List[Array], List[Array]]:
        """Activation and error buffers for a batch of n rows, made once per size."""
        if n not in self._buffers:
            if len(self._buffers) > 4:  # batch sizes come in few kinds; never grow unbounded
                self._buffers.clear()
            units = self.layer_units[1:]
            self._buffers[n] = ([np.empty((n, u), self.dtype) for u in units],
                                [np.empty((n, u), self.dtype) for u in units[:-1]])
        return self._buffers[n]

    def forward(self, X: Array, keep: bool = False) -> List[Array]:
        """Every layer's activation for input X, the last one the output. The buffers
        are reused by the next call unless `keep` (then fresh arrays)."""
        n = X.shape[0]
        outs = [np.empty((n, u), self.dtype) for u in self.layer_units[1:]] if keep \
            else self._work(n)[0]
        last = len(self.weights) - 1
        a = X
        for i, (w, b, out) in enumerate(zip(self.weights, self.biases, outs)):
            _layer(a, w, b, out, self.out_activation if i == last else self.activation)
            a = out
        return outs

    def l2_loss(self, weights: float) -> float:
        """The L2 term of a batch's loss: alpha / 2 times the weights' squared norm, over
        the batch's `weight_sum`."""
        w_flat = self.params[:self.n_weights]
        return 0.5 * float(self.alpha) * float(np.dot(w_flat, w_flat)) / weights

    def loss_and_grads(self, X: Array, y: Array,
                       sample_weight: Optional[Array] = None) -> float:
        """The loss (with its L2 term) of the batch (X, y); its gradients are left in
        `grads`."""
        acts = self.forward(X)
        deltas = self._work(X.shape[0])[1]
        delta = acts[-1]  # the output's buffer becomes the output error
        weights = weight_sum(X.shape[0], sample_weight)
        loss = output_loss_and_scaled_error(self.loss, self.out_activation, y, delta,
                                            sample_weight, weights)
        loss += self.l2_loss(weights)
        decay = float(self.alpha) / weights
        for i in range(len(self.weights) - 1, -1, -1):
            a_in = X if i == 0 else acts[i - 1]
            w, gw, gb = self.weights[i], self.grad_weights[i], self.grad_biases[i]
            # The L2 term goes in first; the products then add onto it (one pass fewer).
            np.multiply(w, decay, out=gw)
            gb.fill(0)
            if sp.issparse(a_in):
                gw += (a_in.T @ delta).T
                gb += delta.sum(axis=0)
                break  # the input's own gradient is never needed
            grad_x = None
            if i > 0:
                grad_x = deltas[i - 1]
                grad_x.fill(0)
            kernels.linear_backward(delta, a_in, w, grad_x=grad_x, grad_w=gw, grad_b=gb,
                                    accumulate=True, need_grad_x=i > 0)
            if i > 0:
                DERIVATIVES[self.activation](grad_x, a_in)
                delta = grad_x
        return loss

    # flat vectors, for L-BFGS ----------------------------------------------------

    def loss_grad_flat(self, flat: Array, X: Array, y: Array,
                       sample_weight: Optional[Array]) -> Tuple[float, Array]:
        """(loss, gradient) at the parameters `flat`, as scipy.optimize.minimize takes."""
        self.params[...] = flat
        loss = self.loss_and_grads(X, y, sample_weight)
        return loss, self.grads.astype(np.float64)  # a copy: the buffer is rewritten

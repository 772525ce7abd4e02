"""What cygrad's perceptrons change in scikit-learn's: the solvers' inner loops.

`KernelPerceptron` sits before scikit-learn's `MLPClassifier`/`MLPRegressor` in the
bases and replaces the methods whose time is the fit's time: the stochastic solvers'
epoch loop (batch gathering, forward, loss, backward, optimizer update), the L-BFGS
objective and the prediction's forward pass. Everything else (parameter validation,
initialization, label handling, early stopping, warnings, attributes) is scikit-learn's
own code, so it behaves as scikit-learn does. The epoch loop follows scikit-learn's
`_fit_stochastic` line for line, including its use of the random state, so a seed gives
the same shuffles, splits and initial weights.
"""
from __future__ import annotations

import warnings
from typing import Any, List

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import _safe_indexing, gen_batches
from sklearn.utils._param_validation import Options, StrOptions
from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import validate_data

from ._network import Network, predict
from ._optimizers import FlatAdam, FlatSGD
from ._program import BatchPrograms

Array = np.ndarray

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

DTYPE_CONSTRAINT = [Options(type, {np.float32, np.float64}),
                    Options(np.dtype, set(DTYPES)),
                    StrOptions({"float32", "float64"})]


class KernelPerceptron:
    """The overrides shared by `MLPClassifier` and `MLPRegressor` (a mixin: it goes first
    in the bases, before scikit-learn's estimator)."""

    dtype: Any

    # data: everything computes in `dtype` ------------------------------------------

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool):
        X, y = super()._validate_input(X, y, incremental, reset)
        dtype = np.dtype(self.dtype)
        if y.dtype.kind == "f":  # regression targets; class indicators stay boolean
            y = y.astype(dtype, copy=False)
        if sp.issparse(X):
            return X.astype(dtype, copy=False), y
        # C order once here, not a strided gather per batch (load_digits' X is a view).
        return np.asarray(X, dtype=dtype, order="C"), y

    def _network(self, layer_units: List[int], dtype: np.dtype) -> Network:
        """A Network holding the current `coefs_` and `intercepts_`, which become views
        into it (so the solvers' in-place updates are the estimator's attributes). Its
        shape is theirs: a warm start goes on training the fitted network even where
        `hidden_layer_sizes` changed since, as scikit-learn's does."""
        units = [self.coefs_[0].shape[0]] + [c.shape[1] for c in self.coefs_]
        net = Network(units, dtype, self.activation, self.out_activation_, self.loss,
                      self.alpha)
        net.load(self.coefs_, self.intercepts_)
        self.coefs_, self.intercepts_ = net.coefs(), net.intercepts()
        return net

    def _forward_pass_fast(self, X: Any, check_input: bool = True) -> Array:
        """The output layer's activation for X (the decision function)."""
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        X = X.astype(self.coefs_[0].dtype, copy=False)
        return predict(X, self.coefs_, self.intercepts_, self.activation,
                       self.out_activation_)

    # L-BFGS ----------------------------------------------------------------------

    def _fit_lbfgs(self, X, y, sample_weight, activations, deltas, coef_grads,
                   intercept_grads, layer_units) -> None:
        net = self._network(layer_units, X.dtype)
        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1
        opt_res = scipy.optimize.minimize(
            net.loss_grad_flat, net.params.astype(np.float64), method="L-BFGS-B", jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol,
                     **_get_additional_lbfgs_options_dict("iprint", iprint)},
            args=(X, y, sample_weight))
        self.n_iter_ = _check_optimize_result("lbfgs", opt_res, self.max_iter)
        self.loss_ = opt_res.fun
        net.params[...] = opt_res.x

    # SGD and Adam ----------------------------------------------------------------

    def _new_optimizer(self, net: Network):
        if self.solver == "sgd":
            return FlatSGD([net.params], self.learning_rate_init, self.learning_rate,
                           self.momentum, self.nesterovs_momentum, self.power_t)
        return FlatAdam([net.params], self.learning_rate_init, self.beta_1, self.beta_2,
                        self.epsilon)

    def _fit_stochastic(self, X, y, sample_weight, activations, deltas, coef_grads,
                        intercept_grads, layer_units, incremental) -> None:
        net = self._network(layer_units, X.dtype)
        params, grads = [net.params], [net.grads]
        optimizer = getattr(self, "_optimizer", None)
        state = getattr(optimizer, "velocities", None) or getattr(optimizer, "ms", None)
        if not incremental or not isinstance(optimizer, (FlatSGD, FlatAdam)) or \
                state[0].shape != net.params.shape:
            self._optimizer = self._new_optimizer(net)
        # The optimizer's state in the parameters' dtype, C-ordered: the update kernels
        # write into these very arrays (a warm start may bring another dtype).
        for name in self._optimizer.state_names:
            setattr(self._optimizer, name, [np.ascontiguousarray(s, dtype=net.dtype)
                                            for s in getattr(self._optimizer, name)])

        # early_stopping in partial_fit doesn't make sense
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
            # don't stratify in multilabel classification
            should_stratify = is_classifier(self) and self.n_outputs_ == 1
            stratify = y if should_stratify else None
            if sample_weight is None:
                X_train, X_val, y_train, y_val = train_test_split(
                    X, y, random_state=self._random_state,
                    test_size=self.validation_fraction, stratify=stratify)
                sample_weight_train = sample_weight_val = None
            else:
                (X_train, X_val, y_train, y_val, sample_weight_train,
                 sample_weight_val) = train_test_split(
                    X, y, sample_weight, random_state=self._random_state,
                    test_size=self.validation_fraction, stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' "
                    "or the size of your dataset.")
            if is_classifier(self):
                y_val = self._label_binarizer.inverse_transform(y_val)
        else:
            X_train, y_train, sample_weight_train = X, y, sample_weight
            X_val = y_val = sample_weight_val = None

        n_samples = X_train.shape[0]
        sample_idx = np.arange(n_samples, dtype=int)

        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than "
                              "sample size. It is going to be clipped")
            batch_size = np.clip(self.batch_size, 1, n_samples)
        dense = not sp.issparse(X_train)
        programs = BatchPrograms.for_net(net, dense, sample_weight is not None,
                                         self._optimizer)
        if programs is not None:
            # The targets in the network's dtype once, not a conversion per batch.
            y_train = y_train.astype(net.dtype, copy=False)
            if sample_weight_train is not None:
                sample_weight_train = sample_weight_train.astype(net.dtype, copy=False)
        # Shuffled batches are gathered into one buffer, not a new array per batch.
        gathered = np.empty((batch_size, X_train.shape[1]), X_train.dtype) if dense \
            and self.shuffle and programs is None else None

        try:
            self.n_iter_ = 0
            for it in range(self.max_iter):
                if self.shuffle:
                    # In place, on an array we own: the draws and the permutation of
                    # sklearn.utils.shuffle, without its validation and copies.
                    self._random_state.shuffle(sample_idx)

                accumulated_loss = 0.0
                for batch_slice in gen_batches(n_samples, batch_size):
                    rows = batch_slice.stop - batch_slice.start
                    if programs is not None:
                        batch = sample_idx[batch_slice] if self.shuffle else batch_slice
                        program = programs.get(rows)
                        accumulated_loss += program.step(
                            X_train, y_train, sample_weight_train, batch) * rows
                        if program.adam is None:
                            self._optimizer.update_params(params, grads)
                        continue
                    if self.shuffle:
                        batch_idx = sample_idx[batch_slice]
                        if dense:
                            # mode="clip": the indices are valid, and the default
                            # ("raise") gathers into a temporary before copying to `out`.
                            X_batch = np.take(X_train, batch_idx, axis=0, mode="clip",
                                              out=gathered[:len(batch_idx)])
                        else:
                            X_batch = _safe_indexing(X_train, batch_idx)
                    else:
                        batch_idx = batch_slice
                        X_batch = X_train[batch_idx]
                    y_batch = y_train[batch_idx]
                    sample_weight_batch = (None if sample_weight is None
                                           else sample_weight_train[batch_idx])

                    batch_loss = net.loss_and_grads(X_batch, y_batch, sample_weight_batch)
                    accumulated_loss += batch_loss * rows
                    self._optimizer.update_params(params, grads)

                self.n_iter_ += 1
                self.loss_ = accumulated_loss / X_train.shape[0]

                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))

                # update no_improvement_count based on training loss or
                # validation score according to early_stopping
                self._update_no_improvement_count(early_stopping, X_val, y_val,
                                                  sample_weight_val)

                # for learning rate that needs to be updated at iteration end
                self._optimizer.iteration_ends(self.t_)

                if self._no_improvement_count > self.n_iter_no_change:
                    # not better than last `n_iter_no_change` iterations by tol
                    # stop or decrease learning rate
                    if early_stopping:
                        msg = ("Validation score did not improve more than "
                               "tol=%f for %d consecutive epochs."
                               % (self.tol, self.n_iter_no_change))
                    else:
                        msg = ("Training loss did not improve more than tol=%f"
                               " for %d consecutive epochs."
                               % (self.tol, self.n_iter_no_change))

                    is_stopping = self._optimizer.trigger_stopping(msg, self.verbose)
                    if is_stopping:
                        break
                    else:
                        self._no_improvement_count = 0

                if incremental:
                    break

                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        "Stochastic Optimizer: Maximum iterations (%d) "
                        "reached and the optimization hasn't converged yet."
                        % self.max_iter, ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")

        if early_stopping:
            # restore best weights
            self.coefs_ = self._best_coefs
            self.intercepts_ = self._best_intercepts


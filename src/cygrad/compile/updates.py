"""The optimizer's step as compiled records: one fused loop per parameter (csrc/_update.h,
the loops the eager SGD and Adam call), with no Python per parameter beyond setting its
hyperparameters.

Each call reads the groups' hyperparameters afresh (a scheduler or a user may change them
between steps) and checks that the optimizer's groups, parameters and state arrays are
the ones the records point into (`load_state_dict` replaces them); anything else runs
`optimizer.step()` itself: SGD's first step with momentum (it makes the buffer), Adam with
amsgrad, maximize or L2 weight decay, and other optimizers. A parameter the loss does not
reach (or a frozen one) has no record: step() skips it too.
"""
from __future__ import annotations

import operator
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from ..optim import SGD, Adam, AdamW
from ..optim.adam import bias_corrections
from .plan import Plan


class Updates:
    """The update records of one optimizer over one plan's gradients (no program where
    optimizer.step() must run), and which gradients are whose."""

    def __init__(self, program: Any, key: List[Any], plan: Plan, optimizer: Any,
                 groups: Sequence[List[Tuple[Any, int]]] = (),
                 buffered: Sequence[bool] = ()) -> None:
        self.program, self.key = program, key
        self.groups = groups      # per param group: (parameter, record index)
        self.indices = [tuple(index for _, index in records) for records in groups]
        self.buffered = buffered  # per param group: every record has a momentum buffer
        params = {id(p) for group in optimizer.param_groups for p in group["params"]}
        # (leaf, gradient buffer): the optimizer's parameters, whose .grad zero_grad()
        # clears, and the other leaves, whose .grad adds up as backward() adds
        self.cleared = [(t, g) for t, g in plan.grads if id(t) in params]
        self.accumulated = [(t, g) for t, g in plan.grads if id(t) not in params]
        graded = {id(t) for t, _ in plan.grads}
        self.ungraded = [p for group in optimizer.param_groups for p in group["params"]
                         if id(p) not in graded]  # zero_grad() leaves them None

    def step(self, optimizer: Any) -> bool:
        """Set each record's hyperparameters and run them; False (nothing run) where the
        records cannot do this step."""
        groups, program = optimizer.param_groups, self.program
        if program is None:
            return False
        if type(optimizer) is SGD:
            for g, buffered, indices in zip(groups, self.buffered, self.indices):
                if g["momentum"] and not buffered:
                    return False  # its first step with momentum makes the buffers
                program.set_sgd(indices, g["lr"], g["momentum"], 1 - g["dampening"],
                                g["weight_decay"], -1.0 if g["maximize"] else 1.0,
                                g["nesterov"], False)
        else:
            if not all(_adam_ready(g) for g in groups):
                return False
            state = optimizer.state
            for g, records in zip(groups, self.groups):
                lr, (beta1, beta2), eps, decay = g["lr"], g["betas"], g["eps"], \
                    g["weight_decay"]
                for p, index in records:
                    if decay:  # decoupled (AdamW): p *= 1 - lr * weight_decay
                        p.data *= 1 - lr * decay
                    s = state[p]
                    s["step"] += 1
                    t = s["step"]
                    step_size, bias_correction2_sqrt = bias_corrections(lr, beta1, beta2, t)
                    program.set_adam(index, step_size, beta1, 1 - beta1, beta2, 1 - beta2,
                                     eps, bias_correction2_sqrt)
        program.run()
        return True


def updates_for(optimizer: Any, plan: Plan) -> Updates:
    """The update records for `optimizer` over `plan`, with no program where
    optimizer.step() must run. They are kept in `plan.updates` until the optimizer's
    groups, parameters or state arrays change."""
    key, cached = _key(optimizer), plan.updates
    if cached is not None and len(cached.key) == len(key) and \
            all(map(operator.is_, cached.key, key)):
        return cached
    if plan.program is None or type(optimizer) not in (SGD, Adam, AdamW):
        plan.updates = Updates(None, key, plan, optimizer)
        return plan.updates
    grads: Dict[int, np.ndarray] = {id(t): g for t, g in plan.grads}
    program = type(plan.program)()
    groups, buffered = [], []
    for group in optimizer.param_groups:
        records = []
        for p in group["params"]:
            grad, state = grads.get(id(p)), optimizer.state.get(p, {})
            if grad is None:
                continue
            if not plan.native(grad, outputs=(p.data,)):
                program = None
            elif type(optimizer) is SGD:
                records.append((p, program.sgd(p.data, grad, state.get("momentum_buffer"))))
            elif "exp_avg" in state and "exp_avg_sq" in state:
                records.append((p, program.adam(p.data, grad, state["exp_avg"],
                                                state["exp_avg_sq"])))
            else:
                program = None
            if program is None:  # remembered for this key: step() runs until it changes
                plan.updates = Updates(None, key, plan, optimizer)
                return plan.updates
        groups.append(records)
        buffered.append(all(isinstance(optimizer.state.get(p, {}).get("momentum_buffer"),
                                       np.ndarray) for p, _ in records))
    plan.updates = Updates(program, key, plan, optimizer, groups, buffered)
    return plan.updates


_GROUP_END = object()  # in a key, after each group's parameters and state


def _key(optimizer: Any) -> List[Any]:
    """What the records point into, to compare by identity: each parameter and its
    state's arrays, group by group. (The parameters' arrays are the plan's leaves, which
    the compiled step checks before each replay.)"""
    state, key = optimizer.state, []
    for group in optimizer.param_groups:
        params = group["params"]
        key += params
        if state:  # (plain SGD keeps none)
            for p in params:
                s = state.get(p)
                if s:
                    key += [v for v in s.values() if v.__class__ is np.ndarray]
        key.append(_GROUP_END)
    return key


def _adam_ready(group: dict) -> bool:
    return not group["amsgrad"] and not group["maximize"] and (
        not group["weight_decay"] or group["decoupled_weight_decay"])

"""Memory over many training steps: no growth (`python -m cygrad soak`, short), and a training
step's graph is freed by reference counting alone, with or without backward."""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import weakref

import numpy as np
import pytest

import cygrad as cg
from cygrad import functional as F
from cygrad import nn, optim
from cygrad.cli import soak

STEPS = 2000
# Limits for 2,000 steps. Measured growth: RSS 0-0.1 MiB, tracemalloc under 8 KiB, neither
# growing with the number of steps; a leak of 64 bytes a step would show as 125 KiB.
MAX_RSS_GROWTH_MIB = 4
MAX_TRACED_GROWTH_KIB = 64


@pytest.fixture
def no_gc():
    """Cyclic garbage collection off: what is freed here was freed by reference counting."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    yield
    if was_enabled:
        gc.enable()


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_training_steps_do_not_grow_memory(backend):
    """2,000 steps of an MLP after a warm-up, in a fresh process: RSS and tracemalloc's
    count end where they started, and the loss went down."""
    env = {k: v for k, v in os.environ.items() if k != "CYGRAD_BACKEND"}
    result = subprocess.run(
        [sys.executable, "-m", "cygrad", "soak", "--steps", str(STEPS), "--warmup", "500",
         "--backend", backend, "--json", "--max-rss-growth-mib", str(MAX_RSS_GROWTH_MIB),
         "--max-traced-growth-kib", str(MAX_TRACED_GROWTH_KIB)],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.stdout, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["backend"] == backend and report["steps"] == STEPS
    assert report["problems"] == [] and result.returncode == 0, report
    assert report["traced_growth"] <= MAX_TRACED_GROWTH_KIB * 1024
    assert report["rss_growth"] <= MAX_RSS_GROWTH_MIB << 20
    assert report["last_loss"] < report["first_loss"]


@pytest.mark.slow
def test_soak_catches_a_leak():
    """The measurement is sensitive: a step that keeps 200 bytes alive each time fails."""
    kept = []
    train = soak.make_step(batch=8, in_features=4, hidden=8, classes=3)

    def leaky_step() -> float:
        kept.append(bytes(200))
        return train()

    steps = 500  # 100 KiB kept: past the limit, in a quarter of the soak's steps
    report = soak.soak(leaky_step, steps=steps, warmup=50)
    assert report.traced_growth >= steps * 200
    found = soak.problems(report, MAX_RSS_GROWTH_MIB << 20, MAX_TRACED_GROWTH_KIB * 1024)
    assert any("tracemalloc grew" in p for p in found), found


def _mlp(rng, dtype=np.float32):
    model = nn.Sequential(nn.Linear(6, 16, dtype=dtype, rng=rng), nn.Sigmoid(),
                          nn.Linear(16, 16, dtype=dtype, rng=rng), nn.Tanh(),
                          nn.Linear(16, 3, dtype=dtype, rng=rng))
    x = cg.Tensor(rng.standard_normal((32, 6)), dtype=dtype)
    labels = rng.integers(0, 3, 32)
    return model, x, labels


def _forward(model, x, labels, params=None):
    """The loss, and weak references to every intermediate tensor and its data."""
    h1 = model[0](x)
    h2 = model[1](h1)
    h3 = model[2](h2)
    h4 = model[3](h3)
    logits = model[4](h4)
    params = model.parameters() if params is None else params
    loss = F.cross_entropy(logits, labels) + F.l2_penalty(params, 1e-3)
    tensors = [h1, h2, h3, h4, logits]
    return loss, [weakref.ref(t) for t in tensors] + [weakref.ref(t.data) for t in tensors]


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_a_dropped_training_graph_is_freed_without_gc(backend, rng, no_gc):
    """A forward pass through an nn model, loss and penalty included, dropped without
    backward: everything it made is freed by reference counting alone (the parameters and
    the optimizer do not hold the graph; the graph holds no reference cycle)."""
    with cg.use_backend(backend):
        model, x, labels = _mlp(rng)
        optimizer = optim.Adam(model.parameters(), lr=1e-3)
        loss, refs = _forward(model, x, labels)
        loss_ref = weakref.ref(loss)
        assert loss.requires_grad and all(r() is not None for r in refs)
        del loss
        assert loss_ref() is None
        assert [r() for r in refs] == [None] * len(refs)
        assert optimizer.param_groups[0]["params"]  # still alive: only the graph was dropped


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_backward_releases_the_saved_arrays_of_a_training_step(backend, rng, no_gc):
    """After backward (retain_graph=False) the forward values saved for it are released
    while the loss tensor itself is still alive; the parameters' gradients are there."""
    with cg.use_backend(backend):
        model, x, labels = _mlp(rng)
        loss, refs = _forward(model, x, labels)
        loss.backward()
        assert [r() for r in refs] == [None] * len(refs)
        assert loss._parents == () and loss._backward is None
        for p in model.parameters():
            assert p.grad is not None and p.grad.shape == p.shape


def _unreachable_after(fn, times: int) -> int:
    """Objects the cyclic collector finds after `times` calls of `fn` with it off: the
    ones that only it could free (reference cycles)."""
    fn()  # first-call caches (imports, NumPy's dispatch) are not the point here
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(times):
            fn()
        return gc.collect()
    finally:
        if was_enabled:
            gc.enable()


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_training_creates_no_reference_cycles(backend, rng):
    """With the cyclic collector off, 50 full training steps (forward, backward, Adam step,
    zero_grad) leave nothing for it to collect: all memory is returned by reference
    counting, as soon as it is unused."""
    with cg.use_backend(backend):
        model, x, labels = _mlp(rng)
        params = model.parameters()
        optimizer = optim.Adam(params, lr=1e-3)

        def step():
            optimizer.zero_grad()
            loss, _ = _forward(model, x, labels, params)
            loss.backward()
            optimizer.step()

        assert _unreachable_after(step, 50) == 0


def test_module_parameters_creates_no_reference_cycle(rng):
    """`l2_penalty(model.parameters(), lam)` in every step is the usual idiom, so
    parameters() must not leave garbage for the cyclic collector."""
    model, _, _ = _mlp(rng)
    unreachable = _unreachable_after(model.parameters, 50)
    assert unreachable == 0, (
        f"{unreachable} objects in reference cycles after 50 calls of Module.parameters(): "
        "its nested visit() refers to itself through its closure (src/cygrad/nn.py)")

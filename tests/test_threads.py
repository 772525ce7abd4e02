"""Threads: kernels release the GIL, models trained in parallel Python threads get exactly
the results of training them one after another, no_grad is per thread, and the kernels'
thread count follows set_num_threads / OMP_NUM_THREADS."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import cygrad as cg
from cygrad import functional as F
from cygrad import nn, optim
from cygrad.backends import cython as compiled

# ------------------------------------------------------------------ the GIL is released


LONG_CALLS = ["sigmoid_forward", "sigmoid_backward", "bias_backward", "linear_forward",
              "linear_backward", "matmul_backward"]


def _long_call(kernel: str):
    """A call of `kernel` big enough to be threaded and to spend its time in C (64 MiB
    element-wise, 640^3 products). In place where possible: nothing is allocated per
    call."""
    rng = np.random.default_rng(0)
    if kernel in ("sigmoid_forward", "sigmoid_backward", "bias_backward"):
        big = rng.random(1 << 23)  # float64
        return {"sigmoid_forward": lambda: compiled.sigmoid_forward(big, out=big),
                "sigmoid_backward": lambda: compiled.sigmoid_backward(big, big, out=big),
                "bias_backward": lambda: compiled.bias_backward(big.reshape(-1, 16))}[kernel]
    m = rng.random((640, 640))
    bias, out, grads = rng.random(640), np.empty_like(m), [np.empty_like(m) for _ in "ab"]
    return {"linear_forward": lambda: compiled.linear_forward(m, m, bias, out=out),
            "linear_backward": lambda: compiled.linear_backward(
                m, m, m, grad_x=grads[0], grad_w=grads[1], need_grad_b=False),
            "matmul_backward": lambda: compiled.matmul_backward(m, m, m, grad_a=grads[0],
                                                                grad_b=grads[1])}[kernel]


def _ran_during(call) -> bool:
    """Whether this thread got to run while `call` ran in another thread.

    With the switch interval at 1000 s no thread is ever asked to give the GIL up, so it
    changes hands only where a thread releases it. The worker announces the call, makes
    it, then marks it done, without a release of its own in between; this thread, woken
    by the announcement, needs the GIL to look at the mark. It sees "not done" only if the
    call released the GIL: an ordering, not a timing."""
    announced, state = threading.Event(), {"done": False}

    def worker():
        announced.set()
        call()
        state["done"] = True

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1000)
    try:
        thread = threading.Thread(target=worker)
        thread.start()
        announced.wait()
        during = not state["done"]
        thread.join()
    finally:
        sys.setswitchinterval(old_interval)
    return during


@pytest.mark.parametrize("kernel", LONG_CALLS)
def test_kernels_release_the_gil(kernel):
    """While a kernel runs in one thread, another thread gets to run Python."""
    cg.set_num_threads(1)
    call = _long_call(kernel)
    call()  # first touch of the memory, BLAS start-up
    # This thread must be scheduled while the call runs: on a loaded machine it may
    # wake only after the call; a call that holds the GIL fails every try.
    assert any(_ran_during(call) for _ in range(5))


def test_the_gil_check_sees_a_call_that_holds_it():
    """The check above can fail: a call that holds the GIL throughout is caught."""
    assert not any(_ran_during(lambda: sum(range(2_000_000))) for _ in range(5))


# ------------------------------------------------------ parallel training, same results

def _train(seed: int, steps: int, barrier=None) -> dict:
    """A small MLP trained on its own data; every step also evaluates under no_grad (which
    must not switch recording off in the other threads)."""
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(8, 32, rng=rng), nn.Sigmoid(), nn.Linear(32, 32, rng=rng),
                          nn.ReLU(), nn.Linear(32, 3, rng=rng))
    x = cg.Tensor(rng.standard_normal((64, 8)), dtype=np.float32)
    labels = rng.integers(0, 3, 64)
    params = model.parameters()
    optimizer = optim.Adam(params, lr=1e-2) if seed % 2 else optim.SGD(params, lr=0.1,
                                                                       momentum=0.9)
    losses, evaluations = [], []
    for _ in range(steps):
        if barrier is not None:
            barrier.wait()  # lock-step: the threads' steps interleave
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), labels) + F.l2_penalty(params, 1e-4)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        with cg.no_grad():
            evaluation = model(x)
        assert not evaluation.requires_grad
        evaluations.append(float(evaluation.data.sum()))
    return dict(losses=losses, evaluations=evaluations,
                params=[p.data.copy() for p in params])


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_four_threads_train_like_one(backend):
    """4 models trained in 4 Python threads at once (in lock-step, so every kernel call
    overlaps others) end with bit-identical parameters, losses and no_grad evaluations to
    the same 4 models trained one after another."""
    steps, seeds = 40, [11, 12, 13, 14]
    cg.set_backend(backend)  # process-wide: set once, before the threads start
    sequential = [_train(seed, steps) for seed in seeds]
    results, errors = {}, []
    barrier = threading.Barrier(len(seeds))

    def run(seed):
        try:
            results[seed] = _train(seed, steps, barrier)
        except BaseException as exc:  # reported below, with the thread's seed
            errors.append((seed, repr(exc)))
            barrier.abort()

    threads = [threading.Thread(target=run, args=(seed,)) for seed in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert sorted(results) == seeds
    for seed, want in zip(seeds, sequential):
        got = results[seed]
        assert got["losses"] == want["losses"], seed
        assert got["evaluations"] == want["evaluations"], seed
        for p, q in zip(got["params"], want["params"]):
            np.testing.assert_array_equal(p, q)
    assert sequential[0]["losses"][-1] < sequential[0]["losses"][0]


def test_no_grad_in_one_thread_leaves_others_recording():
    entered, release = threading.Event(), threading.Event()
    seen = {}

    def other():
        with cg.no_grad():
            entered.set()
            release.wait(10)
            seen["inside"] = cg.is_grad_enabled()
        seen["after"] = cg.is_grad_enabled()

    thread = threading.Thread(target=other)
    thread.start()
    try:
        assert entered.wait(10)
        w = cg.Tensor(np.ones(3), requires_grad=True)
        assert cg.is_grad_enabled() and (w * 2.0).requires_grad
    finally:
        release.set()
        thread.join(10)
    assert seen == {"inside": False, "after": True}


def test_backend_choice_is_process_wide():
    """set_backend in one thread is what every thread runs on (documented)."""
    cg.set_backend("cython")
    thread = threading.Thread(target=cg.set_backend, args=("reference",))
    thread.start()
    thread.join()
    assert cg.get_backend() == "reference"


# ---------------------------------------------------------------------- thread count

THREAD_COUNT = """
    import json, os, threading
    import numpy as np
    import cygrad as cg

    def os_threads():
        return len(os.listdir("/proc/self/task"))

    a = np.zeros(1 << 20, np.float32)  # > 262144 elements: the loop runs in parallel
    report = dict(initial=cg.get_num_threads(), openmp=cg.runtime.info()["OpenMP"])
    base = os_threads()
    if {set_first}:
        cg.set_num_threads(1)
    cg.kernels.sigmoid_forward(a, out=a)
    report["new after a call"] = os_threads() - base
    cg.set_num_threads(3)
    cg.kernels.sigmoid_backward(a, a, out=a)
    report["new after a call with 3"] = os_threads() - base

    def worker():  # the count set above applies to a kernel called from another thread
        before = os_threads()
        cg.set_num_threads(4)
        cg.kernels.bias_backward(a.reshape(-1, 8))
        cg.kernels.sigmoid_forward(a, out=a)
        report["new in a thread with 4"] = os_threads() - before
        report["seen in the thread"] = cg.get_num_threads()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    report["seen after the thread"] = cg.get_num_threads()
    print(json.dumps(report))
    """


def _thread_count_report(omp_num_threads, set_first: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",
                                                             "CYGRAD_BACKEND")}
    if omp_num_threads is not None:
        env["OMP_NUM_THREADS"] = str(omp_num_threads)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(THREAD_COUNT.format(set_first=set_first))],
        env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


@pytest.mark.parametrize("omp_num_threads", [1, 3])
@pytest.mark.subprocess
def test_omp_num_threads_is_respected(omp_num_threads):
    """OMP_NUM_THREADS=n: get_num_threads() says n, and the first parallel kernel call
    starts n - 1 OpenMP threads (the calling thread is the n-th)."""
    report = _thread_count_report(omp_num_threads, set_first=False)
    assert report["openmp"] == "on"
    assert report["initial"] == omp_num_threads
    assert report["new after a call"] == omp_num_threads - 1


@pytest.mark.subprocess
def test_set_num_threads_is_respected():
    """set_num_threads(n) is what the loops use, from any Python thread: 1 starts no
    thread, 3 starts two more; 4 set in another Python thread gives that thread's calls a
    team of 4 (3 new threads), and the count is then 4 for every thread."""
    report = _thread_count_report(None, set_first=True)
    assert report["openmp"] == "on"
    # Without OMP_NUM_THREADS, one: the BLAS keeps its own pool (docs/threads.md)
    assert report["initial"] == 1
    assert report["new after a call"] == 0
    assert report["new after a call with 3"] == 2
    # A team of 4 needs at least 3 more threads; whether libgomp also keeps an extra one
    # for the new Python thread is its own business (seen on Python 3.9).
    assert report["new in a thread with 4"] >= 3
    assert report["seen in the thread"] == report["seen after the thread"] == 4


DEFAULT_TEAM = """
import json, os
import cygrad as cg
report = dict(default=cg.get_num_threads())
report["shared"] = cg.share_threads()
report["with shared"] = cg.get_num_threads()
cg.share_threads(False)
report["unshared"] = cg.get_num_threads()
cg.set_num_threads(3)
cg.share_threads()
report["chosen, shared"] = cg.get_num_threads()
cg.share_threads(False)
report["chosen, unshared"] = cg.get_num_threads()
print(json.dumps(report))
"""


@pytest.mark.subprocess
def test_default_team_follows_whose_threads_run_the_products():
    """Without OMP_NUM_THREADS the loops run on one thread while the BLAS keeps its own
    pool, on one thread per core while the products run on cygrad's threads, and on the
    count set_num_threads chose whatever the sharing (a build without OpenMP: always 1)."""
    openmp = cg.runtime.info()["OpenMP"] == "on"
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "CYGRAD_BACKEND", "CYGRAD_SHARE_THREADS")}
    result = subprocess.run([sys.executable, "-c", DEFAULT_TEAM], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    cores = len(os.sched_getaffinity(0)) if openmp else 1
    assert report["default"] == report["unshared"] == 1
    assert report["with shared"] == (cores if report["shared"] else 1)
    assert report["chosen, shared"] == report["chosen, unshared"] == (3 if openmp else 1)


# ------------------------------------------------------------------------------ Ctrl-C
# A kernel runs without the GIL and does not look at signals: SIGINT during a call only sets
# Python's flag, and KeyboardInterrupt is raised when the call returns (its outputs complete).

def _python(code: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "CYGRAD_BACKEND"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(stream, text: str, timeout: float = 60) -> str:
    """Read `stream` (a pipe) until `text` shows up."""
    seen, deadline = "", time.monotonic() + timeout
    while text not in seen:
        assert time.monotonic() < deadline, f"no {text!r} within {timeout} s: {seen[-500:]!r}"
        chunk = os.read(stream.fileno(), 4096).decode(errors="replace")
        assert chunk, f"the process ended before {text!r}: {seen[-500:]!r}"
        seen += chunk
    return seen


def _interrupt(proc: subprocess.Popen, stream, marker: str, delay: float,
               timeout: float) -> tuple:
    """Once `marker` shows on `stream` and `delay` seconds more have passed, send SIGINT;
    return (what was read before, the rest of stdout, the rest of stderr, when it was
    sent). The process is killed if it outlives `timeout`."""
    try:
        seen = _wait_for(stream, marker)
        time.sleep(delay)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
        proc.wait()
    return seen, out, err, sent


@pytest.mark.subprocess
def test_ctrl_c_ends_the_demo_cleanly():
    """SIGINT during `python -m cygrad demo --steps 1000000`: exit status 130 within a few
    seconds, 'interrupted' and no traceback."""
    env = {k: v for k, v in os.environ.items() if k != "CYGRAD_BACKEND"}
    proc = subprocess.Popen([sys.executable, "-m", "cygrad", "demo", "--steps", "1000000"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # the progress bar ("it/s") shows training has started
    seen, out, err, sent = _interrupt(proc, proc.stderr, "it/s", 0.3, timeout=60)
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert "interrupted" in err and "Traceback" not in seen + err, err[-2000:]
    assert "final training accuracy" not in out


@pytest.mark.subprocess
def test_ctrl_c_stops_a_loop_of_kernel_calls_promptly():
    """SIGINT while a loop calls kernels (each a few ms, GIL released): KeyboardInterrupt,
    raised between two calls (every call before it returned a finished result)."""
    proc = _python("""
        import sys, time
        import numpy as np
        import cygrad as cg
        k = cg.kernels
        a = np.random.default_rng(0).random(1 << 21)
        m = np.random.default_rng(1).random((256, 256))
        want = m @ m.T
        calls, right = 0, True
        print("ready", flush=True)
        try:
            while True:
                k.sigmoid_backward(a, a, out=a)
                k.sigmoid_forward(a, out=a)
                grad_a, _ = k.matmul_backward(m, m, m)
                right = right and np.allclose(grad_a, want)
                calls += 1
        except KeyboardInterrupt:
            print("stopped", calls, right, flush=True)
            sys.exit(130)
        """)
    _, out, err, _ = _interrupt(proc, proc.stdout, "ready", 0.5, timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert out.split()[0] == "stopped" and int(out.split()[1]) > 0
    assert out.split()[2] == "True"


@pytest.mark.subprocess
def test_ctrl_c_during_one_long_kernel_call():
    """SIGINT in the middle of one long call (two 2048^3 products): the call is not cut
    short - it runs to its end and its outputs are complete and right - and
    KeyboardInterrupt is raised after it returns."""
    proc = _python("""
        import json, time
        import numpy as np
        from cygrad.backends import cython as compiled
        rng = np.random.default_rng(0)
        g, a, b = (rng.random((2048, 2048)) for _ in range(3))
        ga, gb = np.zeros_like(a), np.zeros_like(b)
        rows = [0, 1000, 2047]
        want_a, want_b = g[rows] @ b.T, a.T @ g[:, rows]
        start = time.monotonic()
        compiled.matmul_backward(g, a, b, grad_a=ga, grad_b=gb)  # warm-up, and its time
        duration = time.monotonic() - start
        ga[...] = gb[...] = 0
        report = dict(duration=duration)
        try:
            print("calling", flush=True)
            report["start"] = time.monotonic()
            compiled.matmul_backward(g, a, b, grad_a=ga, grad_b=gb)
            report["returned"] = time.monotonic()
            time.sleep(30)  # a signal that came late interrupts this
        except KeyboardInterrupt:
            report["interrupted"] = time.monotonic()
        # every element written (the inputs are positive, so no product is 0), and right
        report["complete"] = bool((ga > 0).all() and (gb > 0).all()
                                  and np.allclose(ga[rows], want_a)
                                  and np.allclose(gb[:, rows], want_b))
        print(json.dumps(report), flush=True)
        """)
    _, out, err, _ = _interrupt(proc, proc.stdout, "calling", 0.05, timeout=120)
    assert proc.returncode == 0, err[-2000:]
    report = json.loads(out.splitlines()[-1])
    assert report["complete"]  # the call ran to its end
    assert "interrupted" in report  # and the signal was not lost

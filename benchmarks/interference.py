"""What other thread pools and the allocator do to a step: measurements behind claims in
the README, each a comparison within one run.

    python benchmarks/interference.py blas         # one OpenBLAS library against two
    python benchmarks/interference.py pools        # shared threads (opt-in) or not
    python benchmarks/interference.py torch-order  # torch imported before or after cygrad
    python benchmarks/interference.py page-faults  # glibc returning memory, per step

`blas` alternates a NumPy product with a cygrad product (float32, 64x784x256), with cygrad
on NumPy's OpenBLAS and then on SciPy's. `pools` alternates a cygrad product with a
PyTorch op on 200K elements (an optimizer's add), with the product's jobs on cygrad's
OpenMP threads (CYGRAD_SHARE_THREADS=1) and on OpenBLAS's own (the default). `pools`,
`torch-order` and `page-faults` run each case in a fresh interpreter, since what they
measure is fixed when a library loads or by the allocation history. Steps are the MLP
steps of benchmarks/test_bench_interop.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))
MALLOC = {"MALLOC_MMAP_THRESHOLD_": "67108864", "MALLOC_TRIM_THRESHOLD_": "268435456"}


def _best_us(fn, number: int, repeat: int = 7) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def blas() -> None:
    import numpy as np

    import cygrad  # noqa: F401  (chooses the BLAS)
    from cygrad import _linear
    from cygrad import runtime

    rng = np.random.default_rng(0)
    x = rng.random((64, 784), dtype=np.float32)
    w = rng.random((256, 784), dtype=np.float32)
    out = np.empty((64, 256), np.float32)
    choices = ["numpy", "scipy"] if runtime.find_numpy_blas() else ["scipy"]
    for name in choices:
        runtime.use_blas(name)
        alone = _best_us(lambda: _linear.linear_forward(x, w, None, out), 200)
        pair = _best_us(lambda: (x @ w.T, _linear.linear_forward(x, w, None, out)), 50)
        print(f"cygrad on {name:5}'s OpenBLAS: product alone {alone:8.1f} us, "
              f"NumPy product then cygrad product {pair:8.1f} us a pair")
    runtime.use_blas(choices[0])


POOLS = """
    import timeit
    import numpy as np
    import cygrad.interop.torch
    import torch
    from cygrad import kernels
    rng = np.random.default_rng(0)
    x = rng.random((64, 784), dtype=np.float32)
    w = rng.random((256, 784), dtype=np.float32)
    p, g = torch.zeros(256, 784), torch.ones(256, 784)

    def best_us(fn, number):
        return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6

    product = best_us(lambda: kernels.linear_forward(x, w), 200)
    add = best_us(lambda: p.add_(g, alpha=-0.1), 200)
    pair = best_us(lambda: (kernels.linear_forward(x, w), p.add_(g, alpha=-0.1)), 200)
    print(product, add, pair)
"""


def pools() -> None:
    for share in ("1", "0"):
        clean = {k: v for k, v in os.environ.items()
                 if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
        result = subprocess.run(
            [sys.executable, "-W", "ignore", "-c", textwrap.dedent(POOLS)],
            env={**clean, "CYGRAD_SHARE_THREADS": share}, capture_output=True, text=True,
            check=True)
        product, add, pair = map(float, result.stdout.split())
        print(f"CYGRAD_SHARE_THREADS={share}: cygrad product {product:6.1f} us, "
              f"torch add_ {add:5.1f} us, the two in turn {pair:6.1f} us a pair")


STEP = """
    import sys, timeit
    sys.path.insert(0, {here!r})
    {imports}
    from {module} import {maker}
    step = {maker}({batch}, {hidden}, *{args})
    step = step[0] if isinstance(step, tuple) else step
    for _ in range(3):
        step()
    import resource
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    best = min(timeit.repeat(step, number={number}, repeat=5)) / {number}
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / (5 * {number})
    print(best * 1e3, faults)
"""


def _step_in_fresh_process(imports: str, maker: str, batch: int, hidden: int, args: tuple,
                           number: int, env: dict,
                           module: str = "test_bench_interop") -> tuple:
    """(ms a step, page faults a step) of `module.maker(batch, hidden, *args)`'s step."""
    code = textwrap.dedent(STEP).format(here=HERE, imports=imports, module=module,
                                        maker=maker, batch=batch, hidden=hidden, args=args,
                                        number=number)
    clean = {k: v for k, v in os.environ.items()
             if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", *MALLOC)}
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env={**clean, **env},
                            capture_output=True, text=True, check=True)
    ms, faults = map(float, result.stdout.split())
    return ms, faults


def torch_order() -> None:
    for share in ("1", "0"):
        for label, imports in (("adapter imported first", "import cygrad.interop.torch, torch"),
                               ("torch imported first", "import torch, cygrad")):
            for swap in (False, True):
                ms, _ = _step_in_fresh_process(imports, "_torch_step", 64, 256, (swap,), 20,
                                               {"CYGRAD_SHARE_THREADS": share})
                engine = "torch + cygrad" if swap else "torch"
                print(f"CYGRAD_SHARE_THREADS={share} {label:23} {engine:14} "
                      f"784-256-10 batch 64: {ms:7.2f} ms a step")


def page_faults() -> None:
    steps = [("autograd", "_autograd_step", (False,), "test_bench_interop"),
             ("autograd + cygrad", "_autograd_step", (True,), "test_bench_interop"),
             ("cygrad graph", "cygrad_step", (), "cygrad.cli.peers")]
    for env_label, env in (("default glibc", {}), ("MALLOC_* set", MALLOC)):
        for engine, maker, args, module in steps:
            for run in (1, 2):
                ms, faults = _step_in_fresh_process("import cygrad", maker, 1024, 1024, args,
                                                    3, env, module)
                print(f"{env_label:14} {engine:17} 1024/1024, process {run}: "
                      f"{ms:6.1f} ms a step, {faults:7.0f} page faults a step")


if __name__ == "__main__":
    commands = {"blas": blas, "pools": pools, "torch-order": torch_order,
                "page-faults": page_faults}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: python {sys.argv[0]} {{{'|'.join(commands)}}}")
    commands[sys.argv[1]]()

"""cygrad.distributed: data-parallel runs under `mpiexec -n 2` and `-n 3` (uneven shards)
end with the single-process parameters on every rank; mismatched models fail clearly; the
sampler's shards cover the data exactly once. All MPI traffic stays on this machine."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np
import pytest

from cygrad.cli.demo import make_spiral, train

sys.path.insert(0, str(Path(__file__).parent))
import mpi_worker  # noqa: E402  (imports no MPI)

WORKER = Path(__file__).parent / "mpi_worker.py"


def _mpiexec() -> Optional[str]:
    """The launcher of the MPI that mpi4py loads: the one installed beside this Python
    (`pip install mpich` puts it there) first, then PATH's."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def _mpi4py_missing() -> str:
    """Why cygrad.distributed cannot be imported here ("" if it can)."""
    try:
        import mpi4py
    except ImportError:
        return "mpi4py is not installed (pip install cygrad[mpi])"
    # Load the MPI library but start no MPI in this process: only the subprocesses need it.
    mpi4py.rc.initialize = False
    try:
        import cygrad.distributed  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return ""


MPI4PY_MISSING = _mpi4py_missing()
MPI_MISSING = MPI4PY_MISSING or ("" if _mpiexec() else "no mpiexec launcher found (pip "
                                 "install mpich, or an MPI from the system)")
needs_mpi = pytest.mark.skipif(bool(MPI_MISSING), reason=MPI_MISSING or "MPI found")


# One thread per process (2 or 3 of them share the cores), and MPI kept on this machine:
# MPICH's launcher forks locally and talks over loopback, UCX over shared memory only;
# Open MPI likewise, and it may run as root and put 3 processes on fewer cores.
ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
           UCX_TLS="self,sm", HYDRA_LAUNCHER="fork", HYDRA_IFACE="lo",
           OMPI_MCA_btl_tcp_if_include="lo", OMPI_MCA_oob_tcp_if_include="lo",
           OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1",
           PRTE_MCA_rmaps_default_mapping_policy=":oversubscribe", PYTHONUNBUFFERED="1")
TIMEOUT_S = 60


def _mpirun(n: int, *args: str) -> subprocess.CompletedProcess:
    """`mpiexec -n n python args...`; past TIMEOUT_S the whole process group is killed, so
    a hung rank cannot outlive the test."""
    command = [_mpiexec(), "-n", str(n), sys.executable, *args]
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(command)} ran past {TIMEOUT_S} s:\n{out}\n{err}")
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def _ranks(out: Path, n: int) -> List[dict]:
    return [dict(np.load(out / f"rank{r}.npz")) for r in range(n)]


def _single_process(mode: str, dtype: str) -> dict:
    """The same training in this process, on each global batch whole."""
    X, y = mpi_worker.data()
    net = mpi_worker.model(dtype)
    params = net.parameters()
    opt = mpi_worker.optimizer(mode, params)
    losses = []
    for epoch in range(mpi_worker.EPOCHS):
        # The sampler's documented order: a permutation drawn from (seed, epoch).
        order = np.random.default_rng((mpi_worker.SEED, epoch)).permutation(len(y))
        for begin in range(0, len(y), mpi_worker.BATCH):
            batch = order[begin:begin + mpi_worker.BATCH]
            opt.zero_grad()
            loss = mpi_worker.objective(net, X[batch], y[batch])
            loss.backward()
            losses.append(loss.item())
            opt.step()
    return {**{f"arr_{i}": p.data for i, p in enumerate(params)}, "losses": np.array(losses)}


# float32 sums in another order differ in the last bits, and 8 steps carry that along.
TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=2e-4, atol=1e-5)}


@needs_mpi
@pytest.mark.parametrize("n, mode, dtype", [(2, "adam", "float64"), (3, "sgd", "float64"),
                                            (3, "adam", "float32")])
@pytest.mark.subprocess
@pytest.mark.slow
def test_training_matches_single_process(n, mode, dtype, tmp_path):
    proc = _mpirun(n, str(WORKER), str(tmp_path), mode, dtype)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ranks = _ranks(tmp_path, n)
    want = _single_process(mode, dtype)
    for r, got in enumerate(ranks):
        assert got.keys() == want.keys()
        for key in want:
            if key != "losses":  # the replicas are the same model, to the bit
                np.testing.assert_array_equal(got[key], ranks[0][key], err_msg=f"rank {r}")
                assert got[key].dtype == np.dtype(dtype)
            np.testing.assert_allclose(got[key], want[key], **TOL[dtype], err_msg=key)


@needs_mpi
@pytest.mark.subprocess
def test_average_gradients_none_dtypes_and_buckets(tmp_path):
    proc = _mpirun(3, str(WORKER), str(tmp_path), "grads")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for got in _ranks(tmp_path, 3):
        assert got["unused_is_none"]  # no gradient anywhere: None, as in one process
        np.testing.assert_allclose(got["partial"], np.full((2, 2), 1 / 3))  # None is zero
        assert got["single"].dtype == np.float32 and got["double"].dtype == np.float64
        np.testing.assert_allclose(got["single"], np.arange(5) * 2.0, rtol=1e-6)
        np.testing.assert_allclose(got["double"], np.full((3, 4), 2.0), rtol=1e-15)


@needs_mpi
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.subprocess
@pytest.mark.slow
def test_demo_loss_curve_matches_single_process(dtype, tmp_path):
    proc = _mpirun(2, str(WORKER), str(tmp_path), "demo", dtype)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    X, y = make_spiral(100, 3, seed=mpi_worker.SEED)
    want = train(mpi_worker.model(dtype, hidden=100), X, y, steps=mpi_worker.DEMO_STEPS)
    for got in _ranks(tmp_path, 2):
        # Adam carries float32's reordered last bits along: ~1e-3 apart after 500 steps.
        np.testing.assert_allclose(got["losses"], want.losses, **TOL[dtype])


@needs_mpi
@pytest.mark.subprocess
@pytest.mark.slow
def test_cli_demo_distributed_reports_once():
    proc = _mpirun(2, "-m", "cygrad", "demo", "--distributed", "--steps", "200")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("final training accuracy") == 1
    assert "processes:               2 (MPI)" in proc.stdout
    assert proc.stderr.count("spiral (cython)") >= 1 and "100%" in proc.stderr
    single = subprocess.run([sys.executable, "-m", "cygrad", "demo", "--quiet", "--steps",
                             "200"], capture_output=True, text=True, env=ENV, timeout=60)
    assert _report(proc.stdout)[0] == _report(single.stdout)[0]  # the accuracy
    # The loss is printed to 4 decimals: float32's reordered last bits may flip the last one.
    assert float(_report(proc.stdout)[1]) == pytest.approx(float(_report(single.stdout)[1]),
                                                           abs=2e-4)


def _report(stdout: str) -> List[str]:
    """The demo's final accuracy and loss, as printed."""
    return [line.split(":")[1].split()[0] for line in stdout.splitlines()
            if line.startswith("final")]


@needs_mpi
@pytest.mark.subprocess
def test_mismatched_models_raise_value_error(tmp_path):
    proc = _mpirun(2, str(WORKER), str(tmp_path), "mismatch")
    assert proc.returncode != 0
    assert ("rank 0: ValueError: params[0]: rank 0 has float64 (16, 2), rank 1 has "
            "float64 (17, 2); every process must build the same model") in proc.stdout


@needs_mpi
@pytest.mark.subprocess
def test_benchmark_script_runs():
    script = Path(__file__).parent.parent / "benchmarks" / "distributed_step.py"
    proc = _mpirun(2, str(script), "--steps", "2", "--warmup", "1", "--batches", "8",
                   "--sizes-mb", "0.01")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 process(es)" in proc.stdout and "allreduce ms" in proc.stdout


def _distributed():
    """cygrad.distributed (the sampler needs no running MPI)."""
    if MPI4PY_MISSING:
        pytest.skip(MPI4PY_MISSING)
    from cygrad import distributed
    return distributed


@pytest.mark.parametrize("size", [1, 2, 3, 5])
@pytest.mark.parametrize("n_items", [5, 12, 13, 121])
@pytest.mark.parametrize("shuffle", [False, True])
def test_sampler_shards_cover_the_data_once(n_items, size, shuffle):
    dist = _distributed()
    if n_items < size:
        with pytest.raises(ValueError, match="^n_items: expected at least one item"):
            dist.DistributedSampler(n_items, 0, size)
        return
    shards = [dist.DistributedSampler(n_items, r, size, shuffle=shuffle, seed=1)
              for r in range(size)]
    together = np.concatenate([s.indices() for s in shards])
    np.testing.assert_array_equal(np.sort(together), np.arange(n_items))
    lengths = [len(s) for s in shards]  # ceil(n / size) for the first n % size ranks
    assert lengths == sorted(lengths, reverse=True) and lengths[0] - lengths[-1] <= 1
    assert sum(s.weight for s in shards) == pytest.approx(1.0)
    assert [list(s) for s in shards] == [s.indices().tolist() for s in shards]
    steps = [list(s.batches(4)) for s in shards]
    assert len({len(batches) for batches in steps}) == 1  # every rank, the same steps
    for parts in zip(*steps):
        batch = np.concatenate([index for index, _ in parts])
        assert sum(weight for _, weight in parts) == pytest.approx(1.0)
        assert [w for _, w in parts] == pytest.approx([len(i) / len(batch) for i, _ in parts])
    epoch = np.concatenate([index for parts in zip(*steps) for index, _ in parts])
    np.testing.assert_array_equal(np.sort(epoch), np.arange(n_items))


def test_sampler_shuffles_by_epoch_alike_on_every_rank():
    dist = _distributed()
    a, b = (dist.DistributedSampler(100, 0, 2, shuffle=True, seed=7) for _ in range(2))
    first = a.indices()
    a.set_epoch(1)
    b.set_epoch(1)
    np.testing.assert_array_equal(a.indices(), b.indices())
    assert not np.array_equal(first, a.indices())


@pytest.mark.subprocess
def test_importing_cygrad_does_not_import_mpi4py():
    code = "import sys, cygrad, cygrad.cli.demo; assert 'mpi4py' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.subprocess
def test_without_mpi4py_import_error_names_the_extra():
    # A None entry in sys.modules makes importing mpi4py fail, installed or not.
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "try:\n    import cygrad.distributed\n"
            "except ImportError as exc:\n    print(exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert "pip install cygrad[mpi]" in proc.stdout, proc.stdout + proc.stderr
    demo = subprocess.run([sys.executable, "-c", "import sys; sys.modules['mpi4py'] = None; "
                           "import cygrad.__main__ as m; sys.exit(m.main(['demo', "
                           "'--distributed', '--quiet']))"],
                          capture_output=True, text=True, timeout=60)
    assert demo.returncode == 1 and "pip install cygrad[mpi]" in demo.stderr

"""The command line (`python -m cygrad`, the `cygrad` script): flags checked by the parser,
--version, info, bench, and the peers that bench and benchmarks/ time."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from importlib.metadata import entry_points

import numpy as np
import pytest

import cygrad
from cygrad import cli
from cygrad.cli import bench, peers

TOL = {np.float32: dict(rtol=2e-4, atol=2e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}


def _python(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CYGRAD_BACKEND"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          timeout=120)


def _parse_error(capsys, argv) -> str:
    """main(argv) must stop in the parser: exit status 2, the message on stderr."""
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    return captured.err


# Every numeric flag, with values it must refuse and the message that names the flag.
BAD_VALUES = [
    (["demo", "--lr", "nan"], "argument --lr: expected a finite number > 0, got 'nan'"),
    (["demo", "--lr", "-1"], "argument --lr: expected a finite number > 0, got '-1'"),
    (["demo", "--lr", "0"], "argument --lr: expected a finite number > 0, got '0'"),
    (["demo", "--lr", "inf"], "argument --lr: expected a finite number > 0, got 'inf'"),
    (["demo", "--lr", "fast"], "argument --lr: expected a finite number > 0, got 'fast'"),
    (["demo", "--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
    (["demo", "--seed", "1.5"], "argument --seed: expected an integer >= 0, got '1.5'"),
    (["demo", "--steps", "0"], "argument --steps: expected an integer >= 1, got '0'"),
    (["demo", "--steps", "-5"], "argument --steps: expected an integer >= 1, got '-5'"),
    (["demo", "--hidden", "0"], "argument --hidden: expected an integer >= 1, got '0'"),
    (["demo", "--hidden", "1e3"], "argument --hidden: expected an integer >= 1, got '1e3'"),
    (["soak", "--steps", "0"], "argument --steps: expected an integer >= 1, got '0'"),
    (["soak", "--warmup", "-1"], "argument --warmup: expected an integer >= 0, got '-1'"),
    (["soak", "--max-rss-growth-mib", "nan"],
     "argument --max-rss-growth-mib: expected a finite number >= 0, got 'nan'"),
    (["soak", "--max-traced-growth-kib", "-1"],
     "argument --max-traced-growth-kib: expected a finite number >= 0, got '-1'"),
    (["demo", "--dtype", "float16"], "argument --dtype: invalid choice: 'float16'"),
    (["bench", "--dtype", "int8"], "argument --dtype: invalid choice: 'int8'"),
]


@pytest.mark.parametrize("argv, message", BAD_VALUES, ids=lambda v: " ".join(v)
                         if isinstance(v, list) else None)
def test_bad_flag_values_are_parser_errors(capsys, argv, message):
    err = _parse_error(capsys, argv)
    assert message in err
    assert err.startswith("usage: ")  # argparse's own report: usage, then the error


@pytest.mark.subprocess
@pytest.mark.parametrize("flags", [["--lr", "nan"], ["--lr", "-1"], ["--seed", "-1"]])
def test_bad_flag_values_exit_2_without_a_traceback(flags):
    """As a user runs it: `python -m cygrad demo --lr nan` ends in one line, status 2."""
    proc = _python("-m", "cygrad", "demo", *flags)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert f"error: argument {flags[0]}: expected" in proc.stderr.splitlines()[-1]


def test_argument_types_accept_what_they_should():
    assert cli.positive_float("1e-3") == 0.001 and cli.positive_float("2") == 2.0
    assert cli.non_negative_float("0") == 0.0
    assert cli.positive_int("1") == 1 and cli.non_negative_int("0") == 0
    for convert, text in [(cli.positive_int, "0"), (cli.non_negative_int, "-1"),
                          (cli.positive_float, "-inf"), (cli.non_negative_float, "nan")]:
        with pytest.raises(argparse.ArgumentTypeError, match=f"got '{text}'"):
            convert(text)


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"cygrad {cygrad.__version__}\n"


@pytest.mark.subprocess
def test_version_and_help_of_python_m_cygrad():
    proc = _python("-m", "cygrad", "--version")
    assert proc.returncode == 0 and proc.stdout == f"cygrad {cygrad.__version__}\n"
    proc = _python("-m", "cygrad", "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m cygrad ")
    for command in cli.COMMANDS:
        assert command in proc.stdout


@pytest.mark.subprocess
def test_building_the_parser_imports_nothing_optional():
    """Every command module is imported to build the parser: none may import an extra."""
    code = ("import sys; from cygrad.cli import build_parser; build_parser(); "
            "print(sorted({'torch', 'matplotlib', 'mpi4py', 'graphviz', 'autograd', "
            "'sklearn', 'jax', 'safetensors'} & set(sys.modules)))")
    proc = _python("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "[]\n"


def test_no_command_is_a_parser_error(capsys):
    assert "the following arguments are required: COMMAND" in _parse_error(capsys, [])


def test_console_script_runs_the_cli():
    """pyproject's `cygrad = cygrad.__main__:main` is the same main as python -m cygrad."""
    import cygrad.__main__

    assert cygrad.__main__.main is cli.main
    scripts = [e for e in entry_points(group="console_scripts") if e.name == "cygrad"]
    assert [e.value for e in scripts] == ["cygrad.__main__:main"]


def test_info_prints_the_version_backends_and_runtime_facts(capsys, backend):
    assert cli.main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["cygrad", cygrad.__version__]
    assert lines[1].split() == ["active", "backend", backend]
    assert lines[2].startswith("backends ") and backend in lines[2]
    runtime_facts = cygrad.runtime.info()
    assert len(lines) == len(runtime_facts) + 2
    for line, key in zip(lines[3:], list(runtime_facts)[1:]):
        assert line.startswith(key + " ")


@pytest.mark.parametrize("command", [["demo", "--plot"], ["bench", "--plot"],
                                     ["explain", "x", "x=1", "--render"]])
def test_an_output_file_in_a_missing_folder_is_refused_before_running(capsys, tmp_path,
                                                                       command):
    path = tmp_path / "no-such-folder" / "picture.png"
    err = _parse_error(capsys, [*command, str(path)])
    assert (f"argument {command[-1]}: the folder {str(path.parent)!r} of {str(path)!r} "
            "does not exist") in err


@pytest.mark.slow
def test_bench_prints_a_row_per_case(capsys, monkeypatch):
    """The table, on two small cases: a row each with cygrad's time and NumPy's ratio."""
    cases = [case for case in bench.CASES if case.size in ("1K", "64x256")]
    assert [c.name for c in cases] == ["sigmoid_backward", "bias_backward"]
    monkeypatch.setattr(bench, "CASES", cases)
    assert cli.main(["bench", "--quick", "--dtype", "float64"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "float64" in lines[0]
    rows = [line.split() for line in lines if line.startswith(("sigmoid", "bias"))]
    assert [r[:2] for r in rows] == [["sigmoid_backward", "1K"], ["bias_backward", "64x256"]]
    for row in rows:
        assert row[3] in ("s", "ms", "us", "ns") and row[6].endswith("x")  # numpy/cygrad


# -- the peers: every implementation computes what cygrad computes ------------------------

def _torch_if_installed():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _check_each(make, start, wants, dtype) -> None:
    """`make(*outputs)` returns the implementations; each one, writing fresh copies of
    `start`, must leave `wants` in them ("numpy_sum" returns its result instead)."""
    names = list(make(*[s.copy() for s in start]))
    assert {"cygrad", "numpy"} <= set(names)
    for name in names:
        outputs = [s.copy() for s in start]
        result = make(*outputs)[name]()
        if name == "numpy_sum":
            outputs = [result]
        for got, want in zip(outputs, wants):
            np.testing.assert_allclose(got, want, **TOL[dtype], err_msg=name)


@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_peers_agree(rng, dtype, accumulate):
    torch = _torch_if_installed()
    g, y = rng.random((2, 300)).astype(dtype)
    _check_each(lambda out: peers.sigmoid_backward_impls(g, y, out, torch),
                [np.full_like(g, np.nan)], [g * y * (1 - y)], dtype)

    g = rng.random((20, 30)).astype(dtype)
    _check_each(lambda out: peers.bias_backward_impls(g, out, torch),
                [np.full(30, np.nan, dtype)], [g.sum(0)], dtype)

    x, w, g = (rng.random(s).astype(dtype) for s in [(8, 5), (4, 5), (8, 4)])
    start = [rng.random(x.shape).astype(dtype), rng.random(w.shape).astype(dtype),
             rng.random(4).astype(dtype)]
    base = start if accumulate else [0, 0, 0]
    _check_each(lambda *grads: peers.linear_backward_impls(g, x, w, *grads,
                                                           accumulate=accumulate, torch=torch),
                start, [g @ w + base[0], g.T @ x + base[1], g.sum(0) + base[2]], dtype)

    a, b, g = (rng.random(s).astype(dtype) for s in [(6, 5), (5, 4), (6, 4)])
    start = [rng.random(a.shape).astype(dtype), rng.random(b.shape).astype(dtype)]
    base = start if accumulate else [0, 0]
    _check_each(lambda *grads: peers.matmul_backward_impls(g, a, b, *grads,
                                                           accumulate=accumulate, torch=torch),
                start, [g @ b.T + base[0], a.T @ g + base[1]], dtype)


def test_chain_peers_agree():
    """The graph-overhead chain computes the same gradient in every installed peer."""
    impls = peers.recorded_chain(length=30)
    want = 31 * np.float32(1.0001) ** 30
    for name, chain in impls.items():
        for _ in range(2):  # a second call starts from a cleared gradient
            np.testing.assert_allclose(np.asarray(chain()), [want], rtol=1e-5, err_msg=name)


@pytest.mark.slow
def test_training_peers_take_the_same_steps():
    """Every installed peer starts from the same weights and data: equal losses."""
    steps = peers.training_steps(16, 32, np.float64)
    assert {"cygrad", "numpy"} <= set(steps)
    losses = {name: [step() for _ in range(3)] for name, step in steps.items()}
    for name, values in losses.items():
        np.testing.assert_allclose(values, losses["cygrad"], rtol=1e-10, err_msg=name)
    assert losses["cygrad"][-1] < losses["cygrad"][0]

"""Build the compiled kernels in csrc/ (metadata lives in pyproject.toml).

Environment variables read at build time:
  CYGRAD_NATIVE=1     add -march=native (the wheel then only runs on CPUs like the builder's)
  CYGRAD_OPENMP=0     build without OpenMP (the kernels then run on one thread)
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

MODULES = ["_elementwise", "_linear", "_memory"]


def _compiler_accepts(compiler, flags: list[str]) -> bool:
    """Compile and link a tiny OpenMP program with `flags`: does the toolchain support them?"""
    src = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"
    tmp = tempfile.mkdtemp()
    try:
        path = os.path.join(tmp, "probe.c")
        with open(path, "w") as f:
            f.write(src)
        objects = compiler.compile([path], output_dir=tmp, extra_postargs=flags)
        compiler.link_executable(objects, os.path.join(tmp, "probe"), extra_postargs=flags)
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExt(build_ext):
    """Add optimisation and OpenMP flags that the compiler in use accepts."""

    def build_extensions(self) -> None:
        compile_args: list[str] = []
        link_args: list[str] = []
        if self.compiler.compiler_type == "msvc":
            compile_args += ["/O2"]
            openmp = ["/openmp"]
        else:
            # Neither flag changes a result: -fno-math-errno drops errno writes and
            # -fno-trapping-math lets the compiler turn branches into selects (it then may
            # compute both sides), which is what lets the sigmoid loops vectorize. No
            # -ffast-math: it would break NaN and infinity handling.
            compile_args += ["-O3", "-fno-math-errno", "-fno-trapping-math"]
            openmp = ["-fopenmp"]
            if os.environ.get("CYGRAD_NATIVE") == "1":
                compile_args.append("-march=native")
        if os.environ.get("CYGRAD_OPENMP", "1") != "0":
            if _compiler_accepts(self.compiler, openmp):
                compile_args += openmp
                link_args += openmp
            else:
                print("cygrad: compiler has no OpenMP; kernels will run on one thread",
                      file=sys.stderr)
        for ext in self.extensions:
            ext.extra_compile_args += compile_args
            ext.extra_link_args += link_args
        super().build_extensions()


extensions = [
    Extension(
        f"cygrad.{name}",
        [f"csrc/{name}.pyx"],
        # A change to a shared header or include rebuilds every module that uses it.
        depends=sorted(glob.glob("csrc/*.h") + glob.glob("csrc/*.pxi")),
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for name in MODULES
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False,
                             "initializedcheck": False, "cdivision": True},
    ),
    cmdclass={"build_ext": BuildExt},
)

"""Which BLAS the compiled products call: NumPy's own OpenBLAS where it can be found, else
SciPy's.

Why NumPy's: a process that uses NumPy already has NumPy's OpenBLAS loaded, with its thread
pool. SciPy ships a second OpenBLAS with a second pool, and when both run, the threads one
leaves spinning take the cores the other needs (measured on 2 cores, float32 64x784x256: a
NumPy product followed by one on SciPy's OpenBLAS took 9-13 ms a pair, against 0.3 ms with
both on NumPy's: `python benchmarks/interference.py blas`), and the two builds are
different versions. Calling NumPy's keeps one library, makes cygrad's products as fast as
NumPy's own, and its 64-bit sizes lift the 2^31 limit of SciPy's interface.

NumPy's wheels (2.0 and later) ship scipy-openblas64: a 64-bit-integer OpenBLAS whose
Fortran routines are named `scipy_sgemm_64_` and so on. Builds that link another BLAS (MKL,
Accelerate, a distribution's OpenBLAS) are not recognized, and SciPy's is used instead.
CYGRAD_BLAS=scipy chooses SciPy's; CYGRAD_BLAS=numpy requires NumPy's (ImportError if it is
not found).

Either way, where the library offers it (OpenBLAS 0.3.28 and later), its parallel jobs,
NumPy's included, run on cygrad's OpenMP threads, so one pool of threads runs everything
(csrc/_blas_threads.h says why).
CYGRAD_BLAS_THREADS=blas leaves them on OpenBLAS's own pool.
"""
from __future__ import annotations

import ctypes
import glob
import os
from typing import Optional, Tuple

import numpy as np

ROUTINES = ("sgemm", "dgemm", "sgemv", "dgemv", "saxpy", "daxpy")
# (prefix, suffix) of the 64-bit-integer symbols: scipy-openblas64 (NumPy >= 2.0), then the
# openblas64_ of older NumPy wheels.
_SYMBOL_STYLES = (("scipy_", "_64_"), ("", "_64_"))
_CONFIG_SYMBOLS = ("scipy_openblas_get_config64_", "openblas_get_config64_")
# The setter of OpenBLAS's threading callback, as scipy-openblas64 (NumPy), then as
# scipy-openblas32 (SciPy) and a plain OpenBLAS name it.
_THREADS_SYMBOLS = ("scipy_openblas_set_threads_callback_function64_",
                    "openblas_set_threads_callback_function")
_CALLBACK_VARIABLE = "openblas_threads_callback_"
ENV = "CYGRAD_BLAS"
CHOICES = ("numpy", "scipy")
THREADS_ENV = "CYGRAD_BLAS_THREADS"
THREADS_CHOICES = ("openmp", "blas")
_NOT_FOUND = (f"{ENV}=numpy: NumPy's 64-bit-integer OpenBLAS was not found (NumPy's wheels "
              "from 2.0 on ship it)")


def _numpy_library_files() -> list:
    """The OpenBLAS files NumPy's wheels bundle: numpy.libs/ beside the package (Linux,
    Windows) or numpy/.dylibs/ (macOS)."""
    package = os.path.dirname(np.__file__)
    folders = (os.path.join(os.path.dirname(package), "numpy.libs"),
               os.path.join(package, ".dylibs"))
    return sorted(path for folder in folders
                  for path in glob.glob(os.path.join(folder, "*openblas*")))


def _routines(library: ctypes.CDLL) -> Optional[Tuple[int, ...]]:
    """The addresses of ROUTINES in `library`, if it is a 64-bit-integer OpenBLAS."""
    config = next((getattr(library, s) for s in _CONFIG_SYMBOLS if hasattr(library, s)), None)
    if config is None:
        return None
    config.restype = ctypes.c_char_p
    if b"USE64BITINT" not in (config() or b""):
        return None
    for prefix, suffix in _SYMBOL_STYLES:
        names = [f"{prefix}{routine}{suffix}" for routine in ROUTINES]
        if all(hasattr(library, name) for name in names):
            return tuple(ctypes.cast(getattr(library, name), ctypes.c_void_p).value
                         for name in names)
    return None


def _env_choice(name: str, choices: Tuple[str, ...]) -> str:
    wanted = os.environ.get(name, "").strip().lower()
    if wanted and wanted not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(choices)}, got {wanted!r}")
    return wanted


def threads_setter(path: str, ours: int = 0) -> int:
    """The address of the threading-callback setter of the OpenBLAS at `path`, or 0 where
    it has none, where someone else has already installed a callback (theirs stays; `ours`
    is the address of cygrad's own), or where CYGRAD_BLAS_THREADS=blas."""
    if _env_choice(THREADS_ENV, THREADS_CHOICES) == "blas":
        return 0
    try:
        library = ctypes.CDLL(path)
    except OSError:
        return 0
    setter = next((getattr(library, s) for s in _THREADS_SYMBOLS if hasattr(library, s)), None)
    if setter is None:
        return 0
    if hasattr(library, _CALLBACK_VARIABLE):
        installed = ctypes.c_void_p.in_dll(library, _CALLBACK_VARIABLE).value
        if installed and installed != ours:
            return 0
    return ctypes.cast(setter, ctypes.c_void_p).value or 0


def jobs_will_run_on_openmp() -> bool:
    """Whether `select` will find a BLAS whose jobs cygrad's OpenMP threads can run; known
    before the compiled module (and OpenMP) loads, for backends.short_openmp_spin."""
    if _env_choice(ENV, CHOICES) == "scipy":
        return False  # SciPy's may offer it too, but finding out means importing SciPy
    found = find_numpy_blas()
    return bool(found and threads_setter(found[0]))


# In the order csrc/_threads.h's cg_use_openmp_runtime takes them.
OPENMP_ENTRY_POINTS = ("GOMP_parallel", "omp_get_thread_num", "omp_get_num_threads",
                       "omp_get_active_level", "omp_get_max_active_levels", "omp_get_dynamic",
                       "omp_get_thread_limit")


def openmp_entry_points(path: str) -> Optional[Tuple[int, ...]]:
    """The addresses of OPENMP_ENTRY_POINTS in the OpenMP runtime the loaded library at
    `path` uses (looked up through it and its dependencies), or None."""
    try:
        library = ctypes.CDLL(path)
    except OSError:
        return None
    if not all(hasattr(library, name) for name in OPENMP_ENTRY_POINTS):
        return None
    return tuple(ctypes.cast(getattr(library, name), ctypes.c_void_p).value
                 for name in OPENMP_ENTRY_POINTS)


def _scipy_library_files() -> list:
    """SciPy's bundled OpenBLAS: scipy.libs/ beside the package, or scipy/.dylibs/."""
    import scipy

    package = os.path.dirname(scipy.__file__)
    folders = (os.path.join(os.path.dirname(package), "scipy.libs"),
               os.path.join(package, ".dylibs"))
    return sorted(path for folder in folders
                  for path in glob.glob(os.path.join(folder, "*openblas*")))


def find_numpy_blas() -> Optional[Tuple[str, Tuple[int, ...]]]:
    """(path, routine addresses) of NumPy's OpenBLAS, or None. Opening the file NumPy
    loaded gives the same library (and thread pool), not a second copy."""
    for path in _numpy_library_files():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        addresses = _routines(library)
        if addresses:
            return path, addresses
    return None


def _agrees(linear) -> bool:
    """A small product, column sum and scaled add through the routines in use equal
    NumPy's: a library that does not behave as its names promise is not used."""
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        a, b = rng.random((3, 5)).astype(dtype), rng.random((4, 5)).astype(dtype)
        out = np.empty((3, 4), dtype)
        linear.linear_forward(a, b, None, out)
        sums = np.empty(5, dtype)
        linear.bias_backward(a, sums, False)
        added = a.copy()
        linear.add_scaled(added, a, 2.0)
        if not (np.allclose(out, a @ b.T) and np.allclose(sums, a.sum(0))
                and np.allclose(added, 3 * a)):
            return False
    return True


def find_scipy_blas() -> Tuple[int, ...]:
    """The addresses of ROUTINES in SciPy's cython_blas (32-bit integers), read from the
    capsules Cython exports; importing scipy.linalg happens here, only when it is used."""
    from scipy.linalg import cython_blas

    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    addresses = []
    for routine in ROUTINES:
        capsule = cython_blas.__pyx_capi__[routine]
        signature = get_name(capsule)
        if b"int *" not in signature:  # the sizes must be the 32-bit ints _linear expects
            raise ImportError(f"scipy.linalg.cython_blas.{routine}: unexpected signature "
                              f"{signature.decode()!r}")
        addresses.append(get_pointer(capsule, signature))
    return tuple(addresses)


def _use_numpy(linear, found: Tuple[str, Tuple[int, ...]]) -> None:
    path, addresses = found
    linear.use_blas("numpy", addresses, True, threads_setter(path, linear.threads_callback()))


def use(linear, name: str) -> None:
    """Point `linear` at NumPy's ("numpy") or SciPy's ("scipy") BLAS, unchecked."""
    if name == "numpy":
        found = find_numpy_blas()
        if found is None:
            raise ImportError(_NOT_FOUND)
        _use_numpy(linear, found)
    else:
        addresses = find_scipy_blas()  # imports SciPy; its library is then loaded
        setters = [threads_setter(path, linear.threads_callback())
                   for path in _scipy_library_files()]
        linear.use_blas("scipy", addresses, False, next((s for s in setters if s), 0))


def select(linear) -> str:
    """Point the compiled module `linear` at NumPy's BLAS, unless CYGRAD_BLAS says
    otherwise or it cannot be found, else at SciPy's; returns the name in use."""
    wanted = _env_choice(ENV, CHOICES)
    if wanted != "scipy":
        found = find_numpy_blas()
        if found:
            _use_numpy(linear, found)
            if _agrees(linear):
                return "numpy"
        if wanted == "numpy":
            raise ImportError(_NOT_FOUND if not found else
                              f"{ENV}=numpy: NumPy's OpenBLAS computed a wrong product")
    use(linear, "scipy")
    return "scipy"

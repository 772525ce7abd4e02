"""Process-level performance policy, in one place: which BLAS the compiled products call,
whose threads run them, how many threads cygrad's own loops use, and which OpenMP runtime
starts them. Nothing else in cygrad makes these choices; the backends import this module,
never the reverse. docs/threads.md is the guide.

By default importing cygrad changes nothing outside cygrad: NumPy's BLAS keeps its own
threads and settings, and `os.environ` (what other libraries and child processes see) is
never edited, not even for a moment.

Which BLAS: NumPy's own OpenBLAS where NumPy's wheels ship it (a 64-bit-integer
scipy-openblas), found by file and called through its routines' addresses: the library
already loaded, no second copy and no second thread pool. Elsewhere (NumPy built against
MKL, Accelerate or a distribution's BLAS) SciPy's `scipy.linalg.cython_blas`, imported only
then. `CYGRAD_BLAS=numpy|scipy` chooses.

Sharing threads is an opt-in (`share_threads()`, or `CYGRAD_SHARE_THREADS=1` at import):
OpenBLAS's parallel jobs, NumPy's products included, then run on cygrad's OpenMP threads,
so one pool runs the loops and the products; and cygrad's parallel regions move to
PyTorch's OpenMP runtime where PyTorch brought one of its own.
"""
from __future__ import annotations

import ctypes
import glob
import os
import platform
import sys
from types import ModuleType
from typing import Dict, Optional, Tuple

import numpy as np

from ._version import __version__

BLAS_ENV = "CYGRAD_BLAS"
BLAS_CHOICES = ("numpy", "scipy")
SHARE_ENV = "CYGRAD_SHARE_THREADS"
SHARE_CHOICES = ("0", "1")

# The routines the compiled module calls, in the order `_linear.use_blas` takes them.
_ROUTINES = ("sgemm", "dgemm", "sgemv", "dgemv", "saxpy", "daxpy")
# (prefix, suffix) of 64-bit-integer symbols: scipy-openblas64 (NumPy >= 2.0), then the
# openblas64_ of older NumPy wheels.
_SYMBOL_STYLES = (("scipy_", "_64_"), ("", "_64_"))
_CONFIG_SYMBOLS = ("scipy_openblas_get_config64_", "openblas_get_config64_")
# OpenBLAS's name of the CPU its kernels were chosen for, as the 64-bit (NumPy) and 32-bit
# (SciPy) scipy-openblas and plain OpenBLAS name the function.
_CORENAME_SYMBOLS = ("scipy_openblas_get_corename64_", "openblas_get_corename64_",
                     "scipy_openblas_get_corename", "openblas_get_corename")
# The cores whose OpenBLAS kernels include small-matrix ones, which compute products of up
# to a million multiply-adds without packing the operands (_linear.pyx's _gemm uses them).
_SMALL_MATRIX_CORES = ("skylakex", "cooperlake", "sapphirerapids")
# OpenBLAS's setter of its threading callback, as scipy-openblas64 (NumPy), then as
# scipy-openblas32 (SciPy) and plain OpenBLAS name it; and the variable it sets.
_THREADS_SYMBOLS = ("scipy_openblas_set_threads_callback_function64_",
                    "openblas_set_threads_callback_function")
_CALLBACK_VARIABLE = "openblas_threads_callback_"
# In the order csrc/_threads.h's cg_use_openmp_runtime takes them.
_OPENMP_ENTRY_POINTS = ("GOMP_parallel", "omp_get_thread_num", "omp_get_num_threads",
                        "omp_get_active_level", "omp_get_max_active_levels",
                        "omp_get_dynamic", "omp_get_thread_limit")

_modules: Optional[Tuple[ModuleType, ModuleType]] = None  # (_elementwise, _linear)
_load_error: Optional[str] = None
_blas_path: Optional[str] = None  # the library file of the BLAS in use, if known
_shared = False
_threads_chosen = False  # set_num_threads() was called: its count stands
_on_pytorchs_openmp = False


def _env_choice(name: str, choices: Tuple[str, ...]) -> str:
    wanted = os.environ.get(name, "").strip().lower()
    if wanted and wanted not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(choices)}, got {wanted!r}; "
                         f"unset it for the default")
    return wanted


# ------------------------------------------------------------------- finding a BLAS
def _library_files(package_file: str, name: str) -> list:
    """The OpenBLAS files a wheel bundles: `name`.libs/ beside the package (Linux,
    Windows) or `name`/.dylibs/ (macOS)."""
    package = os.path.dirname(package_file)
    folders = (os.path.join(os.path.dirname(package), f"{name}.libs"),
               os.path.join(package, ".dylibs"))
    return sorted(path for folder in folders
                  for path in glob.glob(os.path.join(folder, "*openblas*")))


def _open_library(path: Optional[str]) -> Optional[ctypes.CDLL]:
    """The loaded library at `path` (opening a file already loaded gives that library, not
    a second copy), or None where there is no path or it cannot be opened."""
    if path is None:
        return None
    try:
        return ctypes.CDLL(path)
    except OSError:
        return None


def _ilp64_routines(library: ctypes.CDLL) -> Optional[Tuple[int, ...]]:
    """The addresses of _ROUTINES in `library`, if it is a 64-bit-integer OpenBLAS."""
    config = next((getattr(library, s) for s in _CONFIG_SYMBOLS if hasattr(library, s)), None)
    if config is None:
        return None
    config.restype = ctypes.c_char_p
    if b"USE64BITINT" not in (config() or b""):
        return None
    for prefix, suffix in _SYMBOL_STYLES:
        names = [f"{prefix}{routine}{suffix}" for routine in _ROUTINES]
        if all(hasattr(library, name) for name in names):
            return tuple(ctypes.cast(getattr(library, name), ctypes.c_void_p).value
                         for name in names)
    return None


def find_numpy_blas() -> Optional[Tuple[str, Tuple[int, ...]]]:
    """(path, routine addresses) of NumPy's 64-bit OpenBLAS, or None. Opening the file
    NumPy loaded gives the same library (and thread pool), not a second copy."""
    for path in _library_files(np.__file__, "numpy"):
        library = _open_library(path)
        addresses = _ilp64_routines(library) if library is not None else None
        if addresses:
            return path, addresses
    return None


def _scipy_blas() -> Tuple[Optional[str], Tuple[int, ...]]:
    """(library path or None, routine addresses) of SciPy's cython_blas (32-bit sizes),
    read from the capsules Cython exports; scipy.linalg is imported here, only then."""
    import scipy
    from scipy.linalg import cython_blas

    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    addresses = []
    for routine in _ROUTINES:
        capsule = cython_blas.__pyx_capi__[routine]
        signature = get_name(capsule)
        if b"int *" not in signature:  # the 32-bit sizes the compiled module passes
            raise ImportError(f"scipy.linalg.cython_blas.{routine}: unexpected signature "
                              f"{signature.decode()!r}")
        addresses.append(get_pointer(capsule, signature))
    files = _library_files(scipy.__file__, "scipy")
    return (files[0] if files else None), tuple(addresses)


def use_blas(name: str) -> None:
    """Point the compiled products at NumPy's ("numpy") or SciPy's ("scipy") BLAS. Not
    while kernels run. Where threads are shared, the sharing moves with the BLAS."""
    global _blas_path
    if name not in BLAS_CHOICES:
        raise ValueError(f"name: expected one of {', '.join(BLAS_CHOICES)}, got {name!r}")
    _, linear = load_compiled()
    if name == "numpy":
        found = find_numpy_blas()
        if found is None:
            raise ImportError(f"{BLAS_ENV}=numpy: NumPy's 64-bit-integer OpenBLAS was not "
                              "found (NumPy's wheels from 2.0 on ship it)")
        path, addresses = found
    else:
        path, addresses = _scipy_blas()
    if _shared:
        linear.share_blas_threads(0)  # out of the library used before
    linear.use_blas(name, addresses, name == "numpy")
    linear.use_small_matrix_kernels((_blas_core(path) or "").lower() in _SMALL_MATRIX_CORES)
    _blas_path = path
    if _shared:
        _install_callback(linear)


def _blas_core(path: Optional[str]) -> Optional[str]:
    """The CPU core OpenBLAS's file `path` chose its kernels for ("SkylakeX", "Haswell",
    ...), or None where that is not an OpenBLAS that says."""
    library = _open_library(path)
    if library is None:
        return None
    for symbol in _CORENAME_SYMBOLS:
        if hasattr(library, symbol):
            corename = getattr(library, symbol)
            corename.restype = ctypes.c_char_p
            return (corename() or b"").decode(errors="replace") or None
    return None


def blas_in_use() -> Optional[str]:
    """"numpy" or "scipy": the BLAS the compiled products call (None without them)."""
    modules = _loaded()
    return modules[1].blas_in_use()[0] if modules else None


# ------------------------------------------------------------- loading, on first use
def load_compiled() -> Tuple[ModuleType, ModuleType]:
    """The compiled modules (_elementwise, _linear), their BLAS chosen: loaded once, on
    the compiled backend's import. ImportError where they are not built or the BLAS asked
    for is missing; ValueError for a bad CYGRAD_BLAS or CYGRAD_SHARE_THREADS."""
    global _modules, _load_error
    if _modules is not None:
        return _modules
    wanted_blas = _env_choice(BLAS_ENV, BLAS_CHOICES)
    share = _env_choice(SHARE_ENV, SHARE_CHOICES) == "1"
    try:
        from . import _elementwise, _linear
    except ImportError as exc:
        _load_error = f"{type(exc).__name__}: {exc}"
        raise
    _modules = (_elementwise, _linear)
    try:
        use_blas(wanted_blas or ("numpy" if find_numpy_blas() else "scipy"))
    except ImportError as exc:
        _modules, _load_error = None, f"{type(exc).__name__}: {exc}"
        raise
    if share:
        share_threads()
    _default_loop_threads()
    return _modules


def _loaded() -> Optional[Tuple[ModuleType, ModuleType]]:
    return _modules


# ------------------------------------------------------------------------ threads
def get_num_threads() -> int:
    """Threads cygrad's parallel element-wise loops use (1 without OpenMP). The
    products' threads are the BLAS's (OPENBLAS_NUM_THREADS), unless shared."""
    modules = _loaded()
    return modules[0].get_num_threads() if modules else 1


def set_num_threads(n: int) -> None:
    """Set the threads of cygrad's parallel loops, for every Python thread. The default
    is OMP_NUM_THREADS if set; else one thread while the BLAS keeps its own pool (whose
    threads busy-wait after every product and would fight a second team for the cores),
    and one per core once share_threads() runs the products on cygrad's threads. A forked
    child keeps one thread (GNU OpenMP's pool does not survive fork). NumPy's and the
    BLAS's thread settings are left alone."""
    global _threads_chosen
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    modules = _loaded()
    if modules:
        modules[0].set_num_threads(n)
        _threads_chosen = True


def _default_loop_threads() -> None:
    """The loops' default team (see set_num_threads), unless the user chose one."""
    modules = _loaded()
    if modules is None or _threads_chosen or "OMP_NUM_THREADS" in os.environ:
        return
    elementwise = modules[0]
    shared = blas_threads() == "openmp"  # the products run on cygrad's threads
    elementwise.set_num_threads(elementwise.default_threads() if shared else 1)


def _threads_setter(path: Optional[str], ours: int) -> int:
    """The address of the threading-callback setter of the OpenBLAS at `path`, or 0 where
    it has none or where someone else has installed a callback (theirs stays)."""
    library = _open_library(path)
    if library is None:
        return 0
    setter = next((getattr(library, s) for s in _THREADS_SYMBOLS if hasattr(library, s)), None)
    if setter is None:
        return 0
    if hasattr(library, _CALLBACK_VARIABLE):
        installed = ctypes.c_void_p.in_dll(library, _CALLBACK_VARIABLE).value
        if installed and installed != ours:
            return 0
    return ctypes.cast(setter, ctypes.c_void_p).value or 0


def _install_callback(linear: ModuleType) -> None:
    linear.share_blas_threads(_threads_setter(_blas_path, linear.threads_callback()))


def _openmp_entry_points(path: str) -> Optional[Tuple[int, ...]]:
    """The addresses of the OpenMP runtime the loaded library at `path` uses (looked up
    through it and its dependencies), or None."""
    library = _open_library(path)
    if library is None or not all(hasattr(library, name) for name in _OPENMP_ENTRY_POINTS):
        return None
    return tuple(ctypes.cast(getattr(library, name), ctypes.c_void_p).value
                 for name in _OPENMP_ENTRY_POINTS)


def _pytorchs_openmp(linear: ModuleType) -> Optional[Tuple[int, ...]]:
    """The entry points of PyTorch's OpenMP runtime where PyTorch is loaded and its runtime
    is not cygrad's (a cygrad wheel bundling its own libgomp), else None."""
    torch = sys.modules.get("torch")
    if torch is None or not getattr(torch, "__file__", None):
        return None
    libraries = glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib",
                                       "libtorch_cpu.*"))
    if not libraries:
        return None
    theirs = _openmp_entry_points(libraries[0])
    ours = _openmp_entry_points(linear.__file__)
    return theirs if theirs and ours and theirs[1] != ours[1] else None


def share_threads(enable: bool = True) -> bool:
    """Opt in to one thread pool (`enable=False` opts out again). Returns whether the
    products' parallel jobs now run on cygrad's OpenMP threads.

    On: OpenBLAS hands its parallel jobs (cygrad's products and NumPy's, since they share
    the library) to cygrad's OpenMP threads, where the OpenBLAS offers that (0.3.28 and
    later) and nobody else installed a callback first; and where PyTorch is loaded with an
    OpenMP runtime other than cygrad's, cygrad's parallel regions start on PyTorch's (call
    this after importing torch). Results are the same either way; docs/threads.md says when
    it pays. A forked child goes back to OpenBLAS's own pool."""
    global _shared, _on_pytorchs_openmp
    if enable is not True and enable is not False:
        raise TypeError(f"enable: expected True or False, got {enable!r}")
    modules = _loaded()
    if modules is None:
        return False
    elementwise, linear = modules
    _shared = enable
    if enable:
        _install_callback(linear)
        theirs = _pytorchs_openmp(linear)
        if theirs:
            elementwise.use_openmp_runtime(theirs)
            linear.use_openmp_runtime(theirs)
            _on_pytorchs_openmp = True
    else:
        linear.share_blas_threads(0)
        if _on_pytorchs_openmp:
            elementwise.use_openmp_runtime(())
            linear.use_openmp_runtime(())
            _on_pytorchs_openmp = False
    _default_loop_threads()
    return blas_threads() == "openmp"


def threads_shared() -> bool:
    """Whether `share_threads()` (or CYGRAD_SHARE_THREADS=1) is in effect."""
    return _shared


def blas_threads() -> str:
    """Whose threads run the products' parallel jobs: "blas" (the library's own pool, the
    default) or "openmp" (cygrad's OpenMP threads, after `share_threads()`)."""
    modules = _loaded()
    return modules[1].blas_threads() if modules else "blas"


# -------------------------------------------------------------------------- facts
def _blas_description() -> str:
    name = blas_in_use()
    if name is None:
        return "none (the compiled module is not loaded)"
    try:
        built = _build_of(np if name == "numpy" else __import__("scipy"))
    except Exception as exc:  # show_config's layout is theirs, not ours
        built = f"unknown build ({type(exc).__name__})"
    if name == "numpy":
        return f"NumPy's {built}, the library NumPy calls ({BLAS_ENV}=scipy for SciPy's)"
    return f"SciPy's {built}"


def _kernels_description() -> str:
    modules = _loaded()
    core = _blas_core(_blas_path) if modules else None
    if core is None:
        return "unknown"
    if modules[1].small_matrix_kernels():
        return f"{core}, with small-matrix kernels (a small batch's forward runs in blocks)"
    return core


def _build_of(owner: ModuleType) -> str:
    """The BLAS `owner` (numpy or scipy) says it was built with: from show_config's
    dicts where it has them (NumPy >= 1.26, SciPy >= 1.11); before that, from the
    library's file name (which holds its version), as NumPy 1's record has none."""
    try:
        blas = owner.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except TypeError:  # show_config() takes no mode
        return os.path.basename(_blas_path) if _blas_path else "(build not recorded)"
    return f"{blas.get('name')} {blas.get('version', '')}".strip()


def info() -> Dict[str, str]:
    """The runtime's facts, as `python -m cygrad info` prints them."""
    modules = _loaded()
    return {
        "cygrad": __version__,
        "compiled module": "loaded" if modules else f"not loaded ({_load_error})",
        "OpenMP": "on" if modules and modules[0].openmp_enabled() else "off",
        "threads": str(get_num_threads()),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "(unset)"),
        "BLAS": _blas_description(),
        "BLAS kernels": _kernels_description(),
        "BLAS threads": {"openmp": "cygrad's OpenMP threads (shared: share_threads())",
                         "blas": "the BLAS's own pool"}[blas_threads()],
        "OpenMP runtime": "PyTorch's" if _on_pytorchs_openmp else "cygrad's",
        "NumPy": np.__version__,
        "Python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
    }

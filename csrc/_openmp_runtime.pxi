# Included by each compiled module that runs parallel work: each has its own copy of
# _threads.h's state, so each is told which OpenMP runtime to use.

cdef extern from "_runtime.h":
    void cg_use_openmp_runtime(void* const* fns) noexcept nogil


def use_openmp_runtime(addresses) -> None:
    """Run this module's parallel work on another OpenMP runtime from now on, given the
    integer addresses of its entry points (cygrad/runtime.py; _threads.h says when), or
    on this module's own again with `addresses=()`. Not while kernels run."""
    cdef void* fns[7]
    if addresses is not None and len(addresses) == 0:
        cg_use_openmp_runtime(NULL)
        return
    if addresses is None or len(addresses) != 7 or not all(
            isinstance(p, int) and p > 0 for p in addresses):
        raise ValueError("addresses: expected seven nonzero int addresses, those of "
                         "GOMP_parallel and the omp_get_* queries _threads.h uses")
    for i in range(7):
        fns[i] = <void*><size_t>addresses[i]
    cg_use_openmp_runtime(fns)

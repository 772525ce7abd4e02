/* cygrad's threads (part of _runtime.h): OpenMP when the build has it, one thread when it
   does not. The .pyx files call these instead of omp_* so that a build without -fopenmp
   still compiles and links.

   Whose OpenMP: this module's own runtime, unless cg_use_openmp_runtime names another.
   cygrad/runtime.py does that only under its share_threads() opt-in, where PyTorch brought
   an OpenMP runtime other than cygrad's (a cygrad wheel bundling its own libgomp): two
   pools on the same cores spin against each other (docs/threads.md). The other runtime is
   reached through GNU's GOMP_parallel entry point, which LLVM's and Intel's export too. */
#ifndef CYGRAD_THREADS_H
#define CYGRAD_THREADS_H

#ifdef _WIN32
static int cg_on_fork_in_child(void (*handler)(void)) { (void)handler; return 0; }
#else
#include <pthread.h>
/* Run `handler` in the child of every fork (0 on success). */
static int cg_on_fork_in_child(void (*handler)(void)) {
    return pthread_atfork(NULL, NULL, handler);
}
#endif

/* body(data, i) for each i in [0, n): one parallel task. */
typedef void (*cg_task_t)(void *data, int i);

#ifdef _OPENMP
#include <omp.h>
static int cg_openmp_enabled(void) { return 1; }
static int cg_default_threads(void) { return omp_get_max_threads(); }
#else
static int cg_openmp_enabled(void) { return 0; }
static int cg_default_threads(void) { return 1; }
#endif

#if defined(_OPENMP) && !defined(_MSC_VER)
typedef void (*cg_gomp_parallel_t)(void (*body)(void *), void *data, unsigned threads,
                                   unsigned flags);
typedef int (*cg_omp_query_t)(void);

/* Another runtime's entry points; `parallel` is NULL while this module's runtime is used. */
static struct {
    cg_gomp_parallel_t parallel;
    cg_omp_query_t thread_num, num_threads, active_level, max_active_levels, dynamic,
        thread_limit;
} cg_other;

/* `fns`: the other runtime's GOMP_parallel, omp_get_thread_num, omp_get_num_threads,
   omp_get_active_level, omp_get_max_active_levels, omp_get_dynamic, omp_get_thread_limit;
   NULL: this module's own runtime again. Set before the calls that use it; the entry point
   is published last. */
static void cg_use_openmp_runtime(void *const *fns) {
    if (fns == NULL) {
        __atomic_store_n(&cg_other.parallel, (cg_gomp_parallel_t)NULL, __ATOMIC_RELEASE);
        return;
    }
    cg_other.thread_num = (cg_omp_query_t)fns[1];
    cg_other.num_threads = (cg_omp_query_t)fns[2];
    cg_other.active_level = (cg_omp_query_t)fns[3];
    cg_other.max_active_levels = (cg_omp_query_t)fns[4];
    cg_other.dynamic = (cg_omp_query_t)fns[5];
    cg_other.thread_limit = (cg_omp_query_t)fns[6];
    __atomic_store_n(&cg_other.parallel, (cg_gomp_parallel_t)fns[0], __ATOMIC_RELEASE);
}

static int cg_other_runtime(void) {
    return __atomic_load_n(&cg_other.parallel, __ATOMIC_ACQUIRE) != NULL;
}

/* Will a team of n threads really have n threads? Yes outside any active parallel region,
   with dynamic adjustment off and a thread limit of at least n. */
static int cg_team_guaranteed(int n) {
    if (cg_other_runtime())
        return cg_other.active_level() == 0 && cg_other.max_active_levels() >= 1 &&
               !cg_other.dynamic() && cg_other.thread_limit() >= n;
    return omp_get_active_level() == 0 && omp_get_max_active_levels() >= 1 &&
           !omp_get_dynamic() && omp_get_thread_limit() >= n;
}

typedef struct { cg_task_t body; void *data; int n; } cg_team_t;

static void cg_team_body(void *arg) {  /* each thread of the other runtime's team */
    cg_team_t *team = (cg_team_t *)arg;
    int i, step = cg_other.num_threads();
    for (i = cg_other.thread_num(); i < team->n; i += step) team->body(team->data, i);
}

/* The n tasks on a team of (at most) n threads of the runtime in use: one task per thread
   when the team is whole, the rest shared out when it is not. */
static void cg_parallel(int n, cg_task_t body, void *data) {
    if (cg_other_runtime()) {
        cg_team_t team = {body, data, n};
        cg_other.parallel(cg_team_body, &team, (unsigned)n, 0);
        return;
    }
    #pragma omp parallel num_threads(n)
    {
        int i, step = omp_get_num_threads();
        for (i = omp_get_thread_num(); i < n; i += step) body(data, i);
    }
}
#else  /* no OpenMP, or MSVC's OpenMP 2.0: this module's runtime only */
static void cg_use_openmp_runtime(void *const *fns) { (void)fns; }
static void cg_parallel(int n, cg_task_t body, void *data) {
    int i;
#ifdef _OPENMP
    #pragma omp parallel for num_threads(n)
#endif
    for (i = 0; i < n; i++) body(data, i);
}
#endif
#endif

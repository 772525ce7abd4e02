/* OpenMP when the build has it, one thread when it does not: the .pyx files call these
   instead of omp_* so that a build without -fopenmp still compiles and links. */
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
#ifdef _OPENMP
#include <omp.h>
static int cg_openmp_enabled(void) { return 1; }
static int cg_default_threads(void) { return omp_get_max_threads(); }
#else
static int cg_openmp_enabled(void) { return 0; }
static int cg_default_threads(void) { return 1; }
#endif
#endif

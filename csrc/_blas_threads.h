/* The opt-in of cygrad/runtime.py's share_threads() (part of _runtime.h): OpenBLAS's
   parallel jobs run on this module's OpenMP threads instead of OpenBLAS's own pool.

   Why one would: OpenBLAS keeps a pool of its own threads, which busy-wait for a while
   after each product, while OpenMP (cygrad's element-wise loops, and PyTorch's ops when
   PyTorch shares the GNU OpenMP runtime) keeps another; two pools on the same cores take
   turns badly (docs/threads.md has the measurements and the commands). OpenBLAS (0.3.28
   and later) lets its caller run the jobs instead.

   Scope: the callback is OpenBLAS's, so it covers every product of that library, NumPy's
   included: that is why it is an opt-in and never the default. Results are the same; only
   whose threads run the jobs changes. A callback someone else installed first is left
   alone (runtime.py checks).

   The jobs of one product wait for one another, so all of them must run at once: an OpenMP
   team of exactly that size, which GNU OpenMP guarantees outside any active parallel region
   with dynamic adjustment off; anywhere else they get threads of their own. A forked child
   never uses the callback: GNU OpenMP's pool does not survive fork (it hangs), OpenBLAS's
   does. The team comes from the OpenMP runtime _threads.h says is in use. */
#ifndef CYGRAD_BLAS_THREADS_H
#define CYGRAD_BLAS_THREADS_H

#include <stddef.h>
#include "_threads.h"

typedef void (*cg_dojob_t)(int job, void *jobs, int data);
typedef void (*cg_threads_callback_t)(int sync, cg_dojob_t dojob, int njobs, size_t size,
                                      void *jobs, int data);
typedef void (*cg_set_callback_t)(cg_threads_callback_t callback);

#if defined(_OPENMP) && !defined(_WIN32)  /* _threads.h has included pthread.h */
static cg_set_callback_t cg_set_callback = NULL;
static int cg_forked = 0;

typedef struct { cg_dojob_t dojob; char *job; int index, data; } cg_job_t;

static void *cg_run_job(void *arg) {
    cg_job_t *j = (cg_job_t *)arg;
    j->dojob(j->index, j->job, j->data);
    return NULL;
}

typedef struct { cg_dojob_t dojob; char *first; size_t size; int data; } cg_jobs_t;

static void cg_run_one(void *arg, int i) {
    cg_jobs_t *jobs = (cg_jobs_t *)arg;
    jobs->dojob(i, jobs->first + (size_t)i * jobs->size, jobs->data);
}

/* One product's jobs at a time, as OpenBLAS's own pool takes them: the jobs of products
   called from several threads at once share OpenBLAS's per-thread buffers, and run
   together they overwrite each other's (wrong results, no error). */
static pthread_mutex_t cg_jobs_lock = PTHREAD_MUTEX_INITIALIZER;

static void cg_run_jobs_now(cg_dojob_t dojob, int n, size_t size, char *first, int data) {
    if (cg_team_guaranteed(n)) {
        cg_jobs_t all = {dojob, first, size, data};
        cg_parallel(n, cg_run_one, &all);
        return;
    }
    {
        cg_job_t job[n];
        pthread_t thread[n];
        int started[n];
        int i;
        for (i = 0; i < n; i++) {
            job[i].dojob = dojob; job[i].job = first + (size_t)i * size;
            job[i].index = i; job[i].data = data;
        }
        for (i = 1; i < n; i++)
            started[i] = pthread_create(&thread[i], NULL, cg_run_job, &job[i]) == 0;
        cg_run_job(&job[0]);
        for (i = 1; i < n; i++) {
            if (started[i]) pthread_join(thread[i], NULL);
            else cg_run_job(&job[i]);  /* out of threads: the last resort */
        }
    }
}

static void cg_run_jobs(int sync, cg_dojob_t dojob, int n, size_t size, void *jobs,
                        int data) {
    char *first = (char *)jobs;
    (void)sync;  /* OpenBLAS only calls with sync = 1: return when every job is done */
    if (n <= 1) {
        if (n == 1) dojob(0, first, data);
        return;
    }
    pthread_mutex_lock(&cg_jobs_lock);
    cg_run_jobs_now(dojob, n, size, first, data);
    pthread_mutex_unlock(&cg_jobs_lock);
}

static void cg_after_fork_in_child(void) {
    cg_forked = 1;
    if (cg_set_callback) cg_set_callback(NULL);  /* OpenBLAS's own pool survives fork */
}

/* Install cg_run_jobs through `setter` (OpenBLAS's openblas_set_threads_callback_function),
   removing it from the library used before; NULL: none. */
static void cg_blas_threads_use(void *setter) {
    static int watching = 0;
    if (cg_set_callback && !cg_forked) cg_set_callback(NULL);
    if (!watching) watching = pthread_atfork(NULL, NULL, cg_after_fork_in_child) == 0;
    cg_set_callback = watching ? (cg_set_callback_t)setter : NULL;
    if (cg_set_callback && !cg_forked) cg_set_callback(cg_run_jobs);
}

static int cg_blas_threads_in_use(void) { return cg_set_callback != NULL && !cg_forked; }
static void *cg_blas_threads_callback(void) { return (void *)cg_run_jobs; }

#else  /* no OpenMP (or Windows): OpenBLAS keeps its own threads */
static void cg_blas_threads_use(void *setter) { (void)setter; }
static int cg_blas_threads_in_use(void) { return 0; }
static void *cg_blas_threads_callback(void) { return NULL; }
#endif

#endif

/* network.c -- the embedded engine's network thread: a timed task queue.
 *
 * This is the one process-wide object of the engine (FoundationDB's network is process-wide
 * too: one setup, one run, one stop per process). Tasks form a binary min-heap ordered by
 * (due time, sequence number). */
#include "kv/network.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct task {
    uint64_t due_us;
    uint64_t seq;
    network_task_fn fn;
    void *arg;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int api_version;
    int setup;   /* network_setup() succeeded */
    int running; /* inside network_run() */
    int stopped; /* network_stop() called */
    struct task *heap;
    size_t len, cap;
    uint64_t next_seq;
} net = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static __thread int on_network_thread;

uint64_t network_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

fdb_error_t network_select_api_version(int version)
{
    fdb_error_t err = 0;
    pthread_mutex_lock(&net.mu);
    if (version < 700 || version > 730)
        err = FDB_ERR_API_VERSION_NOT_SUPPORTED;
    else if (net.api_version != 0 && net.api_version != version)
        err = FDB_ERR_API_VERSION_ALREADY_SET;
    else
        net.api_version = version;
    pthread_mutex_unlock(&net.mu);
    return err;
}

int network_api_version(void)
{
    pthread_mutex_lock(&net.mu);
    int v = net.api_version;
    pthread_mutex_unlock(&net.mu);
    return v;
}

fdb_error_t network_setup(void)
{
    fdb_error_t err = 0;
    pthread_mutex_lock(&net.mu);
    if (net.api_version == 0)
        err = FDB_ERR_API_VERSION_UNSET;
    else if (net.setup)
        err = FDB_ERR_NETWORK_ALREADY_SETUP;
    else
        net.setup = 1;
    if (!err) {
        /* Timers follow the monotonic clock: a step of the wall clock must not delay them. */
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_destroy(&net.cv);
        pthread_cond_init(&net.cv, &attr);
        pthread_condattr_destroy(&attr);
    }
    pthread_mutex_unlock(&net.mu);
    return err;
}

static int task_before(const struct task *a, const struct task *b)
{
    return a->due_us < b->due_us || (a->due_us == b->due_us && a->seq < b->seq);
}

static void heap_push(struct task t)
{
    if (net.len == net.cap) {
        net.cap = net.cap ? net.cap * 2 : 256;
        net.heap = realloc(net.heap, net.cap * sizeof(*net.heap));
        if (!net.heap)
            abort();
    }
    size_t i = net.len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!task_before(&t, &net.heap[parent]))
            break;
        net.heap[i] = net.heap[parent];
        i = parent;
    }
    net.heap[i] = t;
}

static struct task heap_pop(void)
{
    struct task top = net.heap[0];
    struct task last = net.heap[--net.len];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= net.len)
            break;
        if (child + 1 < net.len && task_before(&net.heap[child + 1], &net.heap[child]))
            child++;
        if (!task_before(&net.heap[child], &last))
            break;
        net.heap[i] = net.heap[child];
        i = child;
    }
    if (net.len > 0)
        net.heap[i] = last;
    return top;
}

void network_post(network_task_fn fn, void *arg, uint64_t delay_us)
{
    struct task t = {network_now_us() + delay_us, 0, fn, arg};
    pthread_mutex_lock(&net.mu);
    t.seq = net.next_seq++;
    heap_push(t);
    int wake = net.heap[0].seq == t.seq;
    pthread_mutex_unlock(&net.mu);
    if (wake)
        pthread_cond_signal(&net.cv);
}

fdb_error_t network_run(void)
{
    pthread_mutex_lock(&net.mu);
    if (!net.setup || net.running) {
        pthread_mutex_unlock(&net.mu);
        return FDB_ERR_NETWORK_NOT_SETUP;
    }
    net.running = 1;
    on_network_thread = 1;
    while (!net.stopped) {
        if (net.len == 0) {
            pthread_cond_wait(&net.cv, &net.mu);
            continue;
        }
        uint64_t now = network_now_us();
        if (net.heap[0].due_us > now) {
            uint64_t due = net.heap[0].due_us;
            struct timespec ts = {(time_t)(due / 1000000u), (long)(due % 1000000u) * 1000};
            pthread_cond_timedwait(&net.cv, &net.mu, &ts); /* monotonic, see network_setup */
            continue;
        }
        struct task t = heap_pop();
        pthread_mutex_unlock(&net.mu);
        t.fn(t.arg);
        pthread_mutex_lock(&net.mu);
    }
    net.running = 0;
    on_network_thread = 0;
    pthread_mutex_unlock(&net.mu);
    return 0;
}

fdb_error_t network_stop(void)
{
    pthread_mutex_lock(&net.mu);
    fdb_error_t err = net.setup ? 0 : FDB_ERR_NETWORK_NOT_SETUP;
    net.stopped = 1;
    pthread_mutex_unlock(&net.mu);
    pthread_cond_broadcast(&net.cv);
    return err;
}

int network_is_current_thread(void)
{
    return on_network_thread;
}

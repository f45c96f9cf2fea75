/* kv_bench.c -- what the store seam delivers on this machine: group commit and point reads.
 *
 * A program that prints numbers, not a timed test. Phases, in order:
 *   0. the disk's raw rate: 4 KiB write + fdatasync in a loop (append and overwrite), so the
 *      group-commit ratio of phase 1 can be read against it;
 *   1. for each committer count: that many concurrent committers, each committing one small
 *      write (16-byte key unique per committer and sequence number, 100-byte value) after
 *      the other, with the FoundationDB retry loop on fdb_transaction_on_error; commits/s,
 *      p50/p99/p99.9 of the commit latency (commit call to future ready, monotonic clock),
 *      and the number of distinct commit versions, which is the number of groups (one fsync
 *      each) the engine made;
 *   2. a read dataset loaded in batches, then reader threads doing uniform random point gets
 *      in transactions renewed every READS_PER_TRANSACTION reads (read versions expire after
 *      5 s), once with serializable and once with snapshot reads.
 *
 * Two committer clients (--client):
 *   callback: the default. Each committer is a state machine driven by future callbacks on
 *             the store's network thread (issue -> committing -> [retrying ->] issue ...),
 *             which is how FoundationDB's own bindings drive many outstanding operations
 *             from one thread; no thread per committer, no context switch per commit.
 *   threads:  one OS thread per committer blocking on its commit future. With 256 threads
 *             on 2 cores every commit costs a futex wake-up and a context switch; the
 *             context switches per commit are printed so that cost is visible.
 *
 * The committers run their own loop on fdb_transaction_on_error rather than kv_transact():
 * the latency is taken from the commit call, and a callback must not block. The dataset
 * load goes through kv_transact().
 *
 * Every phase runs a warm-up (not counted) and then a measurement window of --seconds; a
 * commit counts when its future becomes ready inside the window. Each phase also prints the
 * CPU its threads used (engine commit thread, network thread, client threads, RocksDB) and
 * what other processes took, so a saturated thread or a busy machine shows in the output.
 * Each figure gets one human-readable line; the last lines are `RESULT name=value`, for
 * scripts. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "kv/embedded.h"
#include "kv/fdb_api.h"
#include "kv/fdb_loader.h"
#include "kv/retry.h"

#define KEY_LEN 16
#define VALUE_LEN 100
#define MAX_COMMITTER_COUNTS 16
#define MAX_COMMITTERS 65535 /* four hex digits of the key */
#define READS_PER_TRANSACTION 1000
#define LOAD_BATCH_KEYS 1000
#define FSYNC_PROBE_NS 1000000000ull
#define FSYNC_BLOCK 4096
#define MAX_RESULTS 160
#define COMMITTER_STACK_BYTES (256u << 10)

/* Every key the benchmark writes starts with this prefix (cleared at the end on a cluster). */
static const char KEY_PREFIX[] = "kb";

/* The issue's targets, printed beside the figures they judge. */
#define TARGET_COMMITS_PER_S 20000.0
#define TARGET_COMMITTERS 256
#define TARGET_READS_PER_S 1000000.0

enum client_mode { CLIENT_CALLBACK, CLIENT_THREADS };

struct bench_options {
    const char *data_dir; /* NULL: a mkdtemp directory removed at the end */
    int seconds;
    double warmup_seconds;
    int committers[MAX_COMMITTER_COUNTS];
    int committer_counts;
    int read_threads;
    int keys;
    enum client_mode client;
    int use_fdb;
    const char *cluster_file;
    int skip_fsync_probe;
};

struct result {
    char name[64];
    double value;
};

/* The run's context: the provider, the network thread, the database and the results. */
struct bench {
    struct bench_options opt;
    const struct kv_api *api;
    struct kv_api loaded_api; /* filled by fdb_loader_open for --backend=fdb */
    pthread_t network_thread;
    FDBDatabase *db;
    char data_dir[512];
    int remove_data_dir;
    uint8_t value[VALUE_LEN];
    double fsync_append_per_s; /* 0 when not measured */
    struct result results[MAX_RESULTS];
    int result_count;
    int failed; /* a phase hit a non-retryable error */
};

/* ---- small helpers ---- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until_ns(uint64_t deadline)
{
    for (uint64_t now = now_ns(); now < deadline; now = now_ns()) {
        uint64_t left = deadline - now;
        struct timespec ts = {(time_t)(left / 1000000000u), (long)(left % 1000000000u)};
        nanosleep(&ts, NULL);
    }
}

static uint64_t xorshift64(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

static void add_result(struct bench *b, const char *name, double value)
{
    if (b->result_count == MAX_RESULTS)
        return;
    struct result *r = &b->results[b->result_count++];
    snprintf(r->name, sizeof(r->name), "%s", name);
    r->value = value;
}

/* Which thread CPU time belongs to, told by the thread's name: the benchmark names its own
 * threads; the engine's threads keep the name of the process (they were started by main
 * before it renamed itself); RocksDB names its background threads "rocksdb:...". */
enum thread_kind { KIND_ENGINE, KIND_NETWORK, KIND_CLIENT, KIND_ROCKSDB, KIND_MAIN, KIND_COUNT };

#define THREAD_NAME_NETWORK "kv-network"
#define THREAD_NAME_CLIENT "kv-client"
#define THREAD_NAME_MAIN "kv-main"

/* CPU seconds (user + system) and context switches of the whole process so far, the same
 * CPU split by thread kind, and the busy CPU seconds of the whole machine (from /proc/stat;
 * 0 where unreadable): the difference is what other processes took, which makes a noisy
 * run visible. */
struct usage {
    double cpu_s;
    long context_switches;
    double machine_busy_s;
    double kind_cpu_s[KIND_COUNT];
};

static double machine_busy_seconds(void)
{
    unsigned long long user, nice, system, idle, iowait, irq, softirq, steal;
    double busy = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &system, &idle,
               &iowait, &irq, &softirq, &steal) == 8)
        busy = (double)(user + nice + system + irq + softirq + steal) /
               (double)sysconf(_SC_CLK_TCK);
    fclose(f);
    return busy;
}

static enum thread_kind thread_kind_of(const char *name)
{
    if (strcmp(name, THREAD_NAME_NETWORK) == 0)
        return KIND_NETWORK;
    if (strcmp(name, THREAD_NAME_CLIENT) == 0)
        return KIND_CLIENT;
    if (strcmp(name, THREAD_NAME_MAIN) == 0)
        return KIND_MAIN;
    if (strncmp(name, "rocksdb", 7) == 0)
        return KIND_ROCKSDB;
    return KIND_ENGINE;
}

/* One thread's CPU seconds: /proc/self/task/TID/schedstat (nanoseconds on the CPU) where the
 * kernel has it, else utime + stime of its stat (clock ticks, too coarse for hundreds of
 * short-running threads). Returns -1 when the thread is gone. */
static double task_cpu_seconds(const char *tid)
{
    char path[64], line[512];
    unsigned long long run_ns, utime, stime;
    snprintf(path, sizeof(path), "/proc/self/task/%.20s/schedstat", tid);
    FILE *f = fopen(path, "r");
    if (f) {
        int ok = fscanf(f, "%llu", &run_ns) == 1;
        fclose(f);
        if (ok)
            return (double)run_ns / 1e9;
    }
    snprintf(path, sizeof(path), "/proc/self/task/%.20s/stat", tid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(line, 1, sizeof(line) - 1, f);
    fclose(f);
    line[n] = 0;
    /* "tid (name) state ppid ... utime stime": the name may hold spaces, so cut at ')'. */
    const char *close = strrchr(line, ')');
    if (!close || sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                         &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* Adds each live thread's CPU seconds to out by kind. */
static void thread_cpu_by_kind(double out[KIND_COUNT])
{
    char path[64], name[32];
    for (int k = 0; k < KIND_COUNT; k++)
        out[k] = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%.20s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue; /* the thread just exited */
        if (!fgets(name, sizeof(name), f))
            name[0] = 0;
        fclose(f);
        name[strcspn(name, "\n")] = 0;
        double cpu = task_cpu_seconds(e->d_name);
        if (cpu >= 0)
            out[thread_kind_of(name)] += cpu;
    }
    closedir(d);
}

static struct usage usage_now(void)
{
    struct rusage ru;
    struct usage u;
    memset(&u, 0, sizeof(u));
    u.machine_busy_s = machine_busy_seconds();
    thread_cpu_by_kind(u.kind_cpu_s);
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        u.cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                  (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
        u.context_switches = ru.ru_nvcsw + ru.ru_nivcsw;
    }
    return u;
}

/* Cores used by this process and by everything else between u0 and u1 (seconds apart). */
static void usage_cores(struct usage u0, struct usage u1, double seconds, double *self,
                        double *others)
{
    *self = (u1.cpu_s - u0.cpu_s) / seconds;
    *others = (u1.machine_busy_s - u0.machine_busy_s) / seconds - *self;
    if (*others < 0)
        *others = 0; /* the two clocks tick at different granularities */
}

/* Prints "prefix: cpu by thread: ..." in cores, and warns when other processes took a
 * noticeable share of the machine (the figures above it are then low). Returns the cores
 * the engine's own threads (its commit thread) used. */
static double print_thread_usage(const char *prefix, const char *client_name, struct usage u0,
                               struct usage u1, double seconds)
{
    double self, others;
    usage_cores(u0, u1, seconds, &self, &others);
    double k[KIND_COUNT];
    for (int i = 0; i < KIND_COUNT; i++)
        k[i] = (u1.kind_cpu_s[i] - u0.kind_cpu_s[i]) / seconds;
    printf("%s: cpu by thread (cores): engine commit thread %.2f, network thread %.2f, %s %.2f, "
           "rocksdb background %.2f, main %.2f; process %.2f, other processes %.2f%s\n",
           prefix, k[KIND_ENGINE], k[KIND_NETWORK], client_name, k[KIND_CLIENT],
           k[KIND_ROCKSDB], k[KIND_MAIN], self, others,
           others > 0.25 ? "  (WARNING: machine busy, figures are low)" : "");
    return k[KIND_ENGINE];
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile (p in (0, 1]) of a sorted array of n > 0 values. */
static uint64_t percentile(const uint64_t *sorted, size_t n, double p)
{
    size_t rank = (size_t)(p * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

/* ---- the machine ---- */

static void print_header(const struct bench *b)
{
    struct utsname u;
    char cpu[128] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof(line), f)) {
            if (strncmp(line, "model name", 10) == 0) {
                const char *colon = strchr(line, ':');
                if (colon) {
                    snprintf(cpu, sizeof(cpu), "%s", colon + 2);
                    cpu[strcspn(cpu, "\n")] = 0;
                }
                break;
            }
        }
        fclose(f);
    }
    if (uname(&u) != 0)
        memset(&u, 0, sizeof(u));
    double load[3] = {0, 0, 0};
    if (getloadavg(load, 3) != 3)
        load[0] = load[1] = load[2] = 0;
    printf("kv_bench: machine: nproc=%ld kernel=%s %s %s cpu=\"%s\" loadavg=%.2f,%.2f,%.2f\n",
           sysconf(_SC_NPROCESSORS_ONLN), u.sysname, u.release, u.machine, cpu, load[0],
           load[1], load[2]);
    printf("kv_bench: backend=%s data-dir=%s%s seconds=%d warmup=%.1f client=%s "
           "reads-threads=%d keys=%d committers=",
           b->api->name, b->data_dir, b->remove_data_dir ? " (temporary)" : "", b->opt.seconds,
           b->opt.warmup_seconds, b->opt.client == CLIENT_CALLBACK ? "callback" : "threads",
           b->opt.read_threads, b->opt.keys);
    for (int i = 0; i < b->opt.committer_counts; i++)
        printf("%s%d", i ? "," : "", b->opt.committers[i]);
    printf("\n");
    fflush(stdout);
}

/* ---- phase 0: the disk's raw fdatasync rate ---- */

/* fdatasync()s per second of 4 KiB writes to a file in dir for about one second: appended
 * (the file grows, as a write-ahead log does) when append, else overwriting one block.
 * Returns -1 on an I/O error (printed). */
static double fsync_probe(const char *dir, int append)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/fsync-probe", dir);
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    if (fd < 0) {
        fprintf(stderr, "kv_bench: open %s: %s\n", path, strerror(errno));
        return -1;
    }
    static uint8_t block[FSYNC_BLOCK];
    memset(block, 0x5a, sizeof(block));
    uint64_t count = 0;
    double rate = -1;
    /* The overwrite case starts from an allocated, synced block. */
    if (!append && (pwrite(fd, block, sizeof(block), 0) != (ssize_t)sizeof(block) ||
                    fdatasync(fd) != 0))
        goto out;
    uint64_t start = now_ns(), now = start;
    while (now - start < FSYNC_PROBE_NS) {
        off_t offset = append ? (off_t)(count * FSYNC_BLOCK) : 0;
        if (pwrite(fd, block, sizeof(block), offset) != (ssize_t)sizeof(block) ||
            fdatasync(fd) != 0)
            goto out;
        count++;
        now = now_ns();
    }
    rate = (double)count / ((double)(now - start) / 1e9);
out:
    if (rate < 0)
        fprintf(stderr, "kv_bench: fsync probe: %s\n", strerror(errno));
    close(fd);
    unlink(path);
    return rate;
}

static void phase_fsync(struct bench *b)
{
    double append = fsync_probe(b->data_dir, 1);
    double overwrite = fsync_probe(b->data_dir, 0);
    printf("disk: %.0f fdatasync/s appending 4 KiB (WAL-like), %.0f fdatasync/s overwriting "
           "4 KiB, in %s\n",
           append, overwrite, b->data_dir);
    add_result(b, "fsync_append_per_s", append);
    add_result(b, "fsync_overwrite_per_s", overwrite);
    b->fsync_append_per_s = append > 0 ? append : 0;
}

/* ---- phase 1: concurrent committers ---- */

/* One measured commit. */
struct sample {
    uint64_t latency_ns;
    int64_t version; /* the commit version: commits sharing one were one group */
};

struct commit_phase;

/* A committer. Callback client states (one future outstanding at a time, so the committer
 * is touched by one thread at a time: whichever runs its current callback):
 *   ISSUE --commit--> COMMITTING --ok--> ISSUE (next sequence number) or DONE (window over)
 *                                --error--> RETRYING --ok--> ISSUE (same key)
 *                                                    --error--> DONE (phase fails) */
struct committer {
    struct commit_phase *phase;
    int id;
    FDBTransaction *tr;
    uint64_t seq;
    uint64_t commit_start_ns;
    struct sample *samples;
    size_t sample_count, sample_cap;
    uint64_t retries;
    pthread_t thread; /* threads client */
};

struct commit_phase {
    struct bench *bench;
    int phase_number; /* in the key, so every phase writes new keys */
    int count;
    struct committer *committers;
    uint64_t window_begin_ns, window_end_ns;
    /* Callback client: committers still running; main waits on cv for 0. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int running;
    atomic_int error; /* first non-retryable error, 0 if none */
};

static void committer_record(struct committer *c, uint64_t done_ns)
{
    struct commit_phase *p = c->phase;
    if (done_ns < p->window_begin_ns || done_ns >= p->window_end_ns)
        return;
    if (c->sample_count == c->sample_cap) {
        c->sample_cap = c->sample_cap ? c->sample_cap * 2 : 1024;
        c->samples = realloc(c->samples, c->sample_cap * sizeof(*c->samples));
        if (!c->samples)
            abort();
    }
    struct sample *s = &c->samples[c->sample_count++];
    s->latency_ns = done_ns - c->commit_start_ns;
    s->version = -1;
    if (p->bench->api->transaction_get_committed_version(c->tr, &s->version) != 0)
        s->version = -1;
}

/* Writes this committer's current key ("kb" phase committer seq: 16 bytes) and value. */
static void committer_write(struct committer *c)
{
    char key[KEY_LEN + 1];
    snprintf(key, sizeof(key), "%s%c%04x%09" PRIx64, KEY_PREFIX, 'a' + c->phase->phase_number,
             (unsigned)c->id, (uint64_t)(c->seq & 0xfffffffffull));
    c->phase->bench->api->transaction_set(c->tr, (const uint8_t *)key, KEY_LEN,
                                          c->phase->bench->value, VALUE_LEN);
}

static void fail_phase(struct commit_phase *p, fdb_error_t err)
{
    int expected = 0;
    atomic_compare_exchange_strong(&p->error, &expected, err);
}

/* -- callback client; the callbacks run on the network thread and never block -- */

static void committer_issue(struct committer *c);

static void committer_finish(struct committer *c)
{
    struct commit_phase *p = c->phase;
    pthread_mutex_lock(&p->mu);
    if (--p->running == 0)
        pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void committer_on_retry(FDBFuture *f, void *arg)
{
    struct committer *c = arg;
    const struct kv_api *api = c->phase->bench->api;
    fdb_error_t err = api->future_get_error(f);
    api->future_destroy(f);
    if (err) {
        fail_phase(c->phase, err);
        committer_finish(c);
        return;
    }
    committer_issue(c); /* same sequence number: the same key again */
}

static void committer_on_commit(FDBFuture *f, void *arg)
{
    struct committer *c = arg;
    const struct kv_api *api = c->phase->bench->api;
    uint64_t done = now_ns();
    fdb_error_t err = api->future_get_error(f);
    api->future_destroy(f);
    if (err) {
        c->retries++;
        fdb_error_t set_err =
            api->future_set_callback(api->transaction_on_error(c->tr, err), committer_on_retry, c);
        if (set_err) {
            fail_phase(c->phase, set_err);
            committer_finish(c);
        }
        return;
    }
    committer_record(c, done);
    c->seq++;
    if (done >= c->phase->window_end_ns || atomic_load(&c->phase->error)) {
        committer_finish(c);
        return;
    }
    api->transaction_reset(c->tr);
    committer_issue(c);
}

static void committer_issue(struct committer *c)
{
    const struct kv_api *api = c->phase->bench->api;
    committer_write(c);
    c->commit_start_ns = now_ns();
    fdb_error_t err =
        api->future_set_callback(api->transaction_commit(c->tr), committer_on_commit, c);
    if (err) {
        fail_phase(c->phase, err);
        committer_finish(c);
    }
}

/* Issues every committer's first commit; from then on they run on the network thread. */
static void start_callback_committers(struct commit_phase *p)
{
    pthread_mutex_lock(&p->mu);
    p->running = p->count;
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->count; i++)
        committer_issue(&p->committers[i]);
}

/* Waits until every committer has stopped (DONE). */
static void wait_callback_committers(struct commit_phase *p)
{
    pthread_mutex_lock(&p->mu);
    while (p->running > 0)
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

/* -- threads client: one blocking thread per committer -- */

static void *committer_thread_main(void *arg)
{
    struct committer *c = arg;
    struct commit_phase *p = c->phase;
    const struct kv_api *api = p->bench->api;
    pthread_setname_np(pthread_self(), THREAD_NAME_CLIENT);
    while (!atomic_load(&p->error)) {
        committer_write(c);
        c->commit_start_ns = now_ns();
        FDBFuture *f = api->transaction_commit(c->tr);
        fdb_error_t err = kv_wait(api, f);
        uint64_t done = now_ns();
        api->future_destroy(f);
        if (err) {
            c->retries++;
            f = api->transaction_on_error(c->tr, err);
            err = kv_wait(api, f);
            api->future_destroy(f);
            if (err) {
                fail_phase(p, err);
                break;
            }
            continue; /* same key again */
        }
        committer_record(c, done);
        c->seq++;
        if (done >= p->window_end_ns)
            break;
        api->transaction_reset(c->tr);
    }
    return NULL;
}

/* Starts one thread per committer; returns how many started (all, unless out of threads:
 * then the phase is failed and the started ones stop at once). */
static int start_thread_committers(struct commit_phase *p)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, COMMITTER_STACK_BYTES);
    int started = 0;
    for (; started < p->count; started++) {
        struct committer *c = &p->committers[started];
        if (pthread_create(&c->thread, &attr, committer_thread_main, c) != 0) {
            fprintf(stderr, "kv_bench: cannot start committer thread %d\n", started);
            fail_phase(p, FDB_ERR_INTERNAL_ERROR);
            break;
        }
    }
    pthread_attr_destroy(&attr);
    return started;
}

/* Runs `count` committers for the warm-up and the window, then prints and records. */
static void phase_commit(struct bench *b, int phase_number, int count)
{
    const struct kv_api *api = b->api;
    struct commit_phase p;
    memset(&p, 0, sizeof(p));
    p.bench = b;
    p.phase_number = phase_number;
    p.count = count;
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    p.committers = calloc((size_t)count, sizeof(*p.committers));
    if (!p.committers)
        abort();
    for (int i = 0; i < count; i++) {
        struct committer *c = &p.committers[i];
        c->phase = &p;
        c->id = i;
        fdb_error_t err = api->database_create_transaction(b->db, &c->tr);
        if (err) {
            fprintf(stderr, "kv_bench: create_transaction: %s\n", api->get_error(err));
            exit(1);
        }
    }

    uint64_t start = now_ns();
    p.window_begin_ns = start + (uint64_t)(b->opt.warmup_seconds * 1e9);
    p.window_end_ns = p.window_begin_ns + (uint64_t)b->opt.seconds * 1000000000u;
    /* CPU and context switches are taken over the window only (the client keeps running
     * until every committer's last commit is back, a little past the window's end). */
    int started = 0;
    if (b->opt.client == CLIENT_CALLBACK)
        start_callback_committers(&p);
    else
        started = start_thread_committers(&p);
    sleep_until_ns(p.window_begin_ns);
    struct usage u0 = usage_now();
    sleep_until_ns(p.window_end_ns);
    struct usage u1 = usage_now();
    if (b->opt.client == CLIENT_CALLBACK)
        wait_callback_committers(&p);
    else
        for (int i = 0; i < started; i++)
            pthread_join(p.committers[i].thread, NULL);

    size_t n = 0;
    uint64_t retries = 0;
    for (int i = 0; i < count; i++) {
        n += p.committers[i].sample_count;
        retries += p.committers[i].retries;
    }
    uint64_t *latencies = malloc((n ? n : 1) * sizeof(*latencies));
    uint64_t *versions = malloc((n ? n : 1) * sizeof(*versions));
    if (!latencies || !versions)
        abort();
    size_t k = 0;
    for (int i = 0; i < count; i++) {
        struct committer *c = &p.committers[i];
        for (size_t j = 0; j < c->sample_count; j++, k++) {
            latencies[k] = c->samples[j].latency_ns;
            versions[k] = (uint64_t)c->samples[j].version;
        }
        free(c->samples);
        api->transaction_destroy(c->tr);
    }
    qsort(latencies, n, sizeof(*latencies), compare_u64);
    qsort(versions, n, sizeof(*versions), compare_u64);
    size_t groups = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || versions[i] != versions[i - 1])
            groups++;

    double window_s = (double)(p.window_end_ns - p.window_begin_ns) / 1e9;
    double rate = (double)n / window_s;
    double p50 = n ? (double)percentile(latencies, n, 0.50) / 1e6 : 0;
    double p99 = n ? (double)percentile(latencies, n, 0.99) / 1e6 : 0;
    double p999 = n ? (double)percentile(latencies, n, 0.999) / 1e6 : 0;
    double max = n ? (double)latencies[n - 1] / 1e6 : 0;
    double groups_per_s = (double)groups / window_s;
    double per_group = groups ? (double)n / (double)groups : 0;
    double switches_per_commit =
        n ? (double)(u1.context_switches - u0.context_switches) / (double)n : 0;

    printf("commit: committers=%-4d %9.0f commits/s  p50=%.3f ms  p99=%.3f ms  p99.9=%.3f ms  "
           "max=%.3f ms  (%zu commits in %.1f s, %" PRIu64 " retries)\n",
           count, rate, p50, p99, p999, max, n, window_s, retries);
    printf("commit: committers=%-4d %9.0f groups/s (distinct commit versions = fsyncs), "
           "%.1f commits/group",
           count, groups_per_s, per_group);
    if (b->fsync_append_per_s > 0)
        printf(", %.2fx the disk's raw fsync rate", rate / b->fsync_append_per_s);
    printf("; %.2f context switches/commit\n", switches_per_commit);
    double engine_cores = print_thread_usage("commit", b->opt.client == CLIENT_CALLBACK ? "committer threads (none)"
                                                                  : "committer threads",
                       u0, u1, window_s);
    if (count == TARGET_COMMITTERS)
        printf("commit: target >= %.0f commits/s at %d committers: %s\n", TARGET_COMMITS_PER_S,
               TARGET_COMMITTERS, rate >= TARGET_COMMITS_PER_S ? "met" : "MISSED");
    fflush(stdout);

    char name[64];
    snprintf(name, sizeof(name), "commit_%d_per_s", count);
    add_result(b, name, rate);
    snprintf(name, sizeof(name), "commit_%d_p50_ms", count);
    add_result(b, name, p50);
    snprintf(name, sizeof(name), "commit_%d_p99_ms", count);
    add_result(b, name, p99);
    snprintf(name, sizeof(name), "commit_%d_p999_ms", count);
    add_result(b, name, p999);
    snprintf(name, sizeof(name), "commit_%d_groups_per_s", count);
    add_result(b, name, groups_per_s);
    snprintf(name, sizeof(name), "commit_%d_retries", count);
    add_result(b, name, (double)retries);
    snprintf(name, sizeof(name), "commit_%d_engine_thread_cores", count);
    add_result(b, name, engine_cores);

    int err = atomic_load(&p.error);
    if (err) {
        fprintf(stderr, "kv_bench: commit phase failed: %d %s\n", err, api->get_error(err));
        b->failed = 1;
    }
    free(latencies);
    free(versions);
    free(p.committers);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv);
}

/* ---- phase 2: point reads ---- */

/* Read key number i: "kbr" and 13 hex digits (16 bytes), formatted without printf so the
 * client's cost per read stays small. */
static void read_key(uint8_t *key, uint64_t i)
{
    static const char hex[] = "0123456789abcdef";
    memcpy(key, KEY_PREFIX, 2);
    key[2] = 'r';
    for (int d = KEY_LEN - 1; d >= 3; d--, i >>= 4)
        key[d] = (uint8_t)hex[i & 15];
}

struct load_batch {
    const struct bench *bench;
    int first, count;
};

static fdb_error_t load_body(const struct kv_api *api, FDBTransaction *tr, void *arg)
{
    const struct load_batch *lb = arg;
    uint8_t key[KEY_LEN];
    for (int i = lb->first; i < lb->first + lb->count; i++) {
        read_key(key, (uint64_t)i);
        api->transaction_set(tr, key, KEY_LEN, lb->bench->value, VALUE_LEN);
    }
    return 0;
}

/* Writes the read dataset, LOAD_BATCH_KEYS keys per transaction. Returns 0 or an error. */
static fdb_error_t phase_load(struct bench *b)
{
    uint64_t start = now_ns();
    for (int first = 0; first < b->opt.keys; first += LOAD_BATCH_KEYS) {
        struct load_batch lb = {b, first, b->opt.keys - first};
        if (lb.count > LOAD_BATCH_KEYS)
            lb.count = LOAD_BATCH_KEYS;
        fdb_error_t err = kv_transact(b->api, b->db, load_body, &lb, NULL);
        if (err)
            return err;
    }
    double s = (double)(now_ns() - start) / 1e9;
    printf("load: %d keys (%d-byte keys, %d-byte values) in %.2f s, %.0f keys/s in "
           "transactions of %d\n",
           b->opt.keys, KEY_LEN, VALUE_LEN, s, (double)b->opt.keys / s, LOAD_BATCH_KEYS);
    add_result(b, "load_keys_per_s", (double)b->opt.keys / s);
    fflush(stdout);
    return 0;
}

struct read_phase;

struct reader {
    struct read_phase *phase;
    pthread_t thread;
    uint64_t rng;
    uint64_t window_reads;
    double window_s; /* the reader's own measured span inside the window */
    uint64_t misses;  /* keys absent or of the wrong size: must stay 0 */
    uint64_t retries;
};

struct read_phase {
    struct bench *bench;
    int snapshot;
    uint64_t window_begin_ns, window_end_ns;
    atomic_int error;
};

/* READS_PER_TRANSACTION uniform random point gets in tr; adds them to *reads. Returns 0 or
 * the first error (the caller retries through on_error). */
static fdb_error_t read_batch(struct reader *r, FDBTransaction *tr, uint64_t *reads)
{
    const struct kv_api *api = r->phase->bench->api;
    uint64_t keys = (uint64_t)r->phase->bench->opt.keys;
    uint8_t key[KEY_LEN];
    for (int i = 0; i < READS_PER_TRANSACTION; i++) {
        read_key(key, xorshift64(&r->rng) % keys);
        FDBFuture *f = api->transaction_get(tr, key, KEY_LEN, r->phase->snapshot);
        fdb_error_t err = kv_wait(api, f);
        fdb_bool_t present = 0;
        const uint8_t *value = NULL;
        int value_len = 0;
        if (!err)
            err = api->future_get_value(f, &present, &value, &value_len);
        api->future_destroy(f);
        if (err)
            return err;
        if (!present || value_len != VALUE_LEN)
            r->misses++;
        (*reads)++;
    }
    return 0;
}

/* A reader thread: a fresh transaction (new read version) every READS_PER_TRANSACTION
 * reads, until the window closes; counts the reads between its first clock reading inside
 * the window and its last. */
static void *reader_main(void *arg)
{
    struct reader *r = arg;
    struct read_phase *p = r->phase;
    const struct kv_api *api = p->bench->api;
    pthread_setname_np(pthread_self(), THREAD_NAME_CLIENT);
    FDBTransaction *tr;
    fdb_error_t err = api->database_create_transaction(p->bench->db, &tr);
    if (err) {
        int expected = 0;
        atomic_compare_exchange_strong(&p->error, &expected, err);
        return NULL;
    }
    uint64_t reads = 0, begin_reads = 0, begin_ns = 0, now;
    int counting = 0;
    for (;;) {
        now = now_ns();
        if (!counting && now >= p->window_begin_ns) {
            counting = 1;
            begin_reads = reads;
            begin_ns = now;
        }
        if (now >= p->window_end_ns || atomic_load(&p->error))
            break;
        api->transaction_reset(tr);
        err = read_batch(r, tr, &reads);
        if (err) {
            r->retries++;
            FDBFuture *f = api->transaction_on_error(tr, err);
            err = kv_wait(api, f);
            api->future_destroy(f);
            if (err) {
                int expected = 0;
                atomic_compare_exchange_strong(&p->error, &expected, err);
                break;
            }
        }
    }
    if (counting) {
        r->window_reads = reads - begin_reads;
        r->window_s = (double)(now - begin_ns) / 1e9;
    }
    api->transaction_destroy(tr);
    return NULL;
}

static void phase_read(struct bench *b, int snapshot)
{
    const struct kv_api *api = b->api;
    int count = b->opt.read_threads;
    struct read_phase p;
    memset(&p, 0, sizeof(p));
    p.bench = b;
    p.snapshot = snapshot;
    struct reader *readers = calloc((size_t)count, sizeof(*readers));
    if (!readers)
        abort();
    uint64_t start = now_ns();
    p.window_begin_ns = start + (uint64_t)(b->opt.warmup_seconds * 1e9);
    p.window_end_ns = p.window_begin_ns + (uint64_t)b->opt.seconds * 1000000000u;
    int started = 0;
    for (; started < count; started++) {
        struct reader *r = &readers[started];
        r->phase = &p;
        r->rng = 0x9e3779b97f4a7c15ull * (uint64_t)(started + 1) ^ start;
        if (!r->rng)
            r->rng = 1;
        if (pthread_create(&r->thread, NULL, reader_main, r) != 0) {
            fprintf(stderr, "kv_bench: cannot start reader thread %d\n", started);
            b->failed = 1;
            break;
        }
    }
    sleep_until_ns(p.window_begin_ns);
    struct usage u0 = usage_now();
    sleep_until_ns(p.window_end_ns);
    struct usage u1 = usage_now();
    double rate = 0;
    uint64_t misses = 0, retries = 0, reads = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(readers[i].thread, NULL);
        if (readers[i].window_s > 0)
            rate += (double)readers[i].window_reads / readers[i].window_s;
        reads += readers[i].window_reads;
        misses += readers[i].misses;
        retries += readers[i].retries;
    }
    double window_s = (double)(p.window_end_ns - p.window_begin_ns) / 1e9;
    double reader_cpu_s = u1.kind_cpu_s[KIND_CLIENT] - u0.kind_cpu_s[KIND_CLIENT];
    double cpu_us_per_read = reads && reader_cpu_s > 0 ? 1e6 * reader_cpu_s / (double)reads : 0;
    const char *kind = snapshot ? "snapshot" : "serializable";
    printf("read: threads=%d %-12s %10.0f point reads/s (%.0f per thread)  %" PRIu64
           " reads, %" PRIu64 " misses, %" PRIu64 " retries\n",
           started, kind, rate, started ? rate / started : 0, reads, misses, retries);
    if (cpu_us_per_read > 0)
        printf("read: threads=%d %-12s %.2f us of reader CPU per read: %.0f reads/s if the "
               "readers had %d core(s) to themselves\n",
               started, kind, cpu_us_per_read, 1e6 * started / cpu_us_per_read, started);
    (void)print_thread_usage("read", "reader threads", u0, u1, window_s);
    printf("read: target >= %.0f %s point reads/s from %d threads: %s\n", TARGET_READS_PER_S,
           kind, started, rate >= TARGET_READS_PER_S ? "met" : "MISSED");
    fflush(stdout);
    add_result(b, snapshot ? "snapshot_reads_per_s" : "reads_per_s", rate);
    add_result(b, snapshot ? "snapshot_read_cpu_us" : "read_cpu_us", cpu_us_per_read);
    int err = atomic_load(&p.error);
    if (err) {
        fprintf(stderr, "kv_bench: read phase failed: %d %s\n", err, api->get_error(err));
        b->failed = 1;
    }
    if (misses) {
        fprintf(stderr, "kv_bench: %" PRIu64 " reads did not find the loaded value\n", misses);
        b->failed = 1;
    }
    free(readers);
}

/* ---- set-up and tear-down ---- */

static void usage_exit(const char *argv0, int code)
{
    fprintf(code ? stderr : stdout,
            "usage: %s [options]\n"
            "  --data-dir DIR       where the embedded store and the fsync probe live\n"
            "                       (default: a temporary directory, removed at the end)\n"
            "  --seconds N          measurement window of each phase (default 5)\n"
            "  --warmup SECONDS     uncounted run before each window (default 1)\n"
            "  --committers LIST    concurrent committer counts (default 1,16,256)\n"
            "  --client MODE        callback (state machines on the network thread, default)\n"
            "                       or threads (one blocking thread per committer)\n"
            "  --reads-threads N    point-read threads (default 2)\n"
            "  --keys N             size of the read dataset (default 100000)\n"
            "  --backend NAME       embedded (default) or fdb (libfdb_c, loaded at run time)\n"
            "  --cluster-file PATH  FoundationDB cluster file (--backend=fdb; default: fdb's)\n"
            "  --no-fsync-probe     skip the raw fdatasync measurement\n",
            argv0);
    exit(code);
}

static int parse_positive(const char *s, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > max)
        return -1;
    *out = v;
    return 0;
}

static void parse_options(int argc, char **argv, struct bench_options *o)
{
    enum {
        OPT_DATA_DIR = 256, OPT_SECONDS, OPT_WARMUP, OPT_COMMITTERS, OPT_CLIENT,
        OPT_READS_THREADS, OPT_KEYS, OPT_BACKEND, OPT_CLUSTER_FILE, OPT_NO_FSYNC, OPT_HELP
    };
    static const struct option longopts[] = {
        {"data-dir", required_argument, NULL, OPT_DATA_DIR},
        {"seconds", required_argument, NULL, OPT_SECONDS},
        {"warmup", required_argument, NULL, OPT_WARMUP},
        {"committers", required_argument, NULL, OPT_COMMITTERS},
        {"client", required_argument, NULL, OPT_CLIENT},
        {"reads-threads", required_argument, NULL, OPT_READS_THREADS},
        {"keys", required_argument, NULL, OPT_KEYS},
        {"backend", required_argument, NULL, OPT_BACKEND},
        {"cluster-file", required_argument, NULL, OPT_CLUSTER_FILE},
        {"no-fsync-probe", no_argument, NULL, OPT_NO_FSYNC},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->seconds = 5;
    o->warmup_seconds = 1.0;
    o->committers[0] = 1;
    o->committers[1] = 16;
    o->committers[2] = 256;
    o->committer_counts = 3;
    o->read_threads = 2;
    o->keys = 100000;
    o->client = CLIENT_CALLBACK;
    int c;
    long v;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_DATA_DIR:
            o->data_dir = optarg;
            break;
        case OPT_SECONDS:
            if (parse_positive(optarg, 3600, &v))
                usage_exit(argv[0], 2);
            o->seconds = (int)v;
            break;
        case OPT_WARMUP: {
            char *end;
            o->warmup_seconds = strtod(optarg, &end);
            if (end == optarg || *end || o->warmup_seconds < 0 || o->warmup_seconds > 600)
                usage_exit(argv[0], 2);
            break;
        }
        case OPT_COMMITTERS: {
            o->committer_counts = 0;
            char *copy = strdup(optarg), *save = NULL;
            if (!copy)
                abort();
            for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (o->committer_counts == MAX_COMMITTER_COUNTS ||
                    parse_positive(t, MAX_COMMITTERS, &v))
                    usage_exit(argv[0], 2);
                o->committers[o->committer_counts++] = (int)v;
            }
            free(copy);
            if (o->committer_counts == 0)
                usage_exit(argv[0], 2);
            break;
        }
        case OPT_CLIENT:
            if (strcmp(optarg, "callback") == 0)
                o->client = CLIENT_CALLBACK;
            else if (strcmp(optarg, "threads") == 0)
                o->client = CLIENT_THREADS;
            else
                usage_exit(argv[0], 2);
            break;
        case OPT_READS_THREADS:
            if (parse_positive(optarg, 1024, &v))
                usage_exit(argv[0], 2);
            o->read_threads = (int)v;
            break;
        case OPT_KEYS:
            if (parse_positive(optarg, 1L << 30, &v))
                usage_exit(argv[0], 2);
            o->keys = (int)v;
            break;
        case OPT_BACKEND:
            if (strcmp(optarg, "embedded") == 0)
                o->use_fdb = 0;
            else if (strcmp(optarg, "fdb") == 0)
                o->use_fdb = 1;
            else
                usage_exit(argv[0], 2);
            break;
        case OPT_CLUSTER_FILE:
            o->cluster_file = optarg;
            break;
        case OPT_NO_FSYNC:
            o->skip_fsync_probe = 1;
            break;
        case OPT_HELP:
            usage_exit(argv[0], 0);
            break;
        default:
            usage_exit(argv[0], 2);
        }
    }
    if (optind < argc)
        usage_exit(argv[0], 2);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0)
        fprintf(stderr, "kv_bench: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

static void *network_main(void *arg)
{
    const struct kv_api *api = arg;
    pthread_setname_np(pthread_self(), THREAD_NAME_NETWORK);
    fdb_error_t err = api->run_network();
    if (err)
        fprintf(stderr, "kv_bench: run_network: %s\n", api->get_error(err));
    return NULL;
}

/* Chooses the provider and the data directory, starts the network thread and opens the
 * database; exits with a message on failure. */
static void bench_open(struct bench *b)
{
    if (b->opt.use_fdb) {
        char msg[512];
        if (fdb_loader_open(NULL, &b->loaded_api, msg, sizeof(msg)) != 0) {
            fprintf(stderr, "kv_bench: %s\n", msg);
            exit(2);
        }
        b->api = &b->loaded_api;
    } else {
        b->api = embedded_api();
    }
    if (b->opt.data_dir) {
        snprintf(b->data_dir, sizeof(b->data_dir), "%s", b->opt.data_dir);
        if (mkdir(b->data_dir, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "kv_bench: mkdir %s: %s\n", b->data_dir, strerror(errno));
            exit(2);
        }
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(b->data_dir, sizeof(b->data_dir), "%s/kv-bench-XXXXXX",
                 tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(b->data_dir)) {
            fprintf(stderr, "kv_bench: mkdtemp %s: %s\n", b->data_dir, strerror(errno));
            exit(2);
        }
        b->remove_data_dir = 1;
    }
    fdb_error_t err = b->api->select_api_version(KV_API_VERSION);
    if (!err)
        err = b->api->setup_network();
    if (err) {
        fprintf(stderr, "kv_bench: network: %s\n", b->api->get_error(err));
        exit(2);
    }
    if (pthread_create(&b->network_thread, NULL, network_main, (void *)b->api) != 0) {
        fprintf(stderr, "kv_bench: cannot start the network thread\n");
        exit(2);
    }
    char store[600];
    snprintf(store, sizeof(store), "%s/store", b->data_dir);
    err = b->api->create_database(b->opt.use_fdb ? b->opt.cluster_file : store, &b->db);
    if (err) {
        fprintf(stderr, "kv_bench: create_database: %s\n", b->api->get_error(err));
        exit(2);
    }
}

static fdb_error_t clear_body(const struct kv_api *api, FDBTransaction *tr, void *arg)
{
    (void)arg;
    const uint8_t end[] = {'k', 'c'}; /* KEY_PREFIX "kb" + 1 */
    api->transaction_clear_range(tr, (const uint8_t *)KEY_PREFIX, 2, end, 2);
    return 0;
}

static void bench_close(struct bench *b)
{
    if (b->opt.use_fdb) { /* a cluster outlives the run: leave it as it was */
        fdb_error_t err = kv_transact(b->api, b->db, clear_body, NULL, NULL);
        if (err)
            fprintf(stderr, "kv_bench: clearing the benchmark's keys: %s\n",
                    b->api->get_error(err));
    }
    b->api->database_destroy(b->db);
    b->api->stop_network();
    pthread_join(b->network_thread, NULL);
    if (b->remove_data_dir)
        nftw(b->data_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(int argc, char **argv)
{
    static struct bench bench;
    struct bench *b = &bench;
    parse_options(argc, argv, &b->opt);
    uint64_t rng = 0x2545f4914f6cdd1dull;
    for (int i = 0; i < VALUE_LEN; i++)
        b->value[i] = (uint8_t)xorshift64(&rng);
    setvbuf(stdout, NULL, _IOLBF, 0);

    bench_open(b);
    /* After the engine started its threads, so they keep the process's name. */
    pthread_setname_np(pthread_self(), THREAD_NAME_MAIN);
    print_header(b);
    if (!b->opt.skip_fsync_probe)
        phase_fsync(b);
    for (int i = 0; i < b->opt.committer_counts && !b->failed; i++)
        phase_commit(b, i, b->opt.committers[i]);
    if (!b->failed) {
        fdb_error_t err = phase_load(b);
        if (err) {
            fprintf(stderr, "kv_bench: load: %s\n", b->api->get_error(err));
            b->failed = 1;
        }
    }
    if (!b->failed)
        phase_read(b, 0);
    if (!b->failed)
        phase_read(b, 1);
    bench_close(b);

    for (int i = 0; i < b->result_count; i++)
        printf("RESULT %s=%.3f\n", b->results[i].name, b->results[i].value);
    printf("RESULT ok=%d\n", !b->failed);
    return b->failed ? 1 : 0;
}

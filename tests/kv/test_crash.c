/* test_crash.c -- kills the embedded engine at random moments and checks that acknowledged
 * commits survive and that versionstamps keep increasing across restarts.
 *
 * Usage: test_crash PATH_TO_CRASH_CHILD. CRASH_TEST_SEED=N repeats a run's choices (the
 * kill moments then still depend on timing); CRASH_TEST_KEEP=1 keeps the data directory.
 *
 * Every cycle starts tests/kv/crash_child.c on the same data directory. The child first
 * verifies every acknowledgement of the earlier cycles and prints "ready"; it then commits
 * from 4 threads and prints an "ack" line after each successful commit. The test SIGKILLs
 * it a random 30-400 ms after "ready" and appends the whole "ack" lines it printed to the
 * file the next child verifies; a line cut short by the kill is dropped, as it was never
 * acknowledged. Some cycles differ (plan_cycle says which): some kill the child within
 * 60 ms of its start, ready or not, so that kills land in RocksDB's recovery or in the
 * verification; some run the writers with the engine's fault injection on (failed and
 * unknown-result commits); two run with the child's wall clock ahead, so that the children
 * after them start with the clock behind the versions in the store, as after the host's
 * clock was stepped back: their versions must continue from the store's, not from the
 * clock. A last child only verifies.
 *
 * Checked here, besides what the child checks itself (see crash_child.c):
 * (1) each child verified exactly the acknowledgements so far, found at least as many
 *     transactions in the store, and died of our SIGKILL, not by itself;
 * (2) versionstamps strictly increase: those of one writer thread in commit order, and
 *     across cycles (each one exceeds every stamp acknowledged in earlier cycles and the
 *     greatest stamp the child found in the store at its start);
 * (3) each thread's acknowledgements are numbered 0, 1, 2, ... without gaps;
 * (5) in a clock-ahead cycle the versions did jump ahead with the clock (else the clock
 *     was not moved, and the cycles after it would test nothing);
 * (4) enough commits were acknowledged, in enough cycles, for the run to mean something.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CYCLES 25
#define FAULT_PERMILLE 20
#define CLOCK_AHEAD_STEP_MS 1500
#define MIN_DELAY_MS 30
#define MAX_DELAY_MS 400
#define EARLY_MAX_DELAY_MS 60
#define CHILD_TIMEOUT_MS 30000 /* for "ready", and for a verify-only child to finish */
#define MAX_THREADS 64
#define MIN_CYCLES_WITH_ACKS 15 /* of the 20 normal cycles */
#define MIN_TOTAL_ACKS 500
#define STAMP_HEX_LEN 20
#define LINE_CAP 4096

/* The run: set up by the fixture, read by the test. */
struct crash_run {
    const char *child_path;
    char dir[PATH_MAX];
    char db_dir[PATH_MAX];
    char acked_path[PATH_MAX];
    uint64_t seed;
};

static struct crash_run crash_run;

/* One child's life, and what its output showed. */
struct cycle {
    int number;
    int verify_only; /* the final child: no writers, must exit 0 */
    int early;       /* killed EARLY_MAX_DELAY_MS at most after start, ready or not */
    int fault_permille;
    int clock_ahead_ms;
    int delay_ms; /* from "ready" (or from start when early) to SIGKILL */
    /* From the output. */
    int ready;
    long ready_ms; /* start to "ready" */
    long ready_acked, ready_durable;
    char ready_stamp[STAMP_HEX_LEN + 1];
    long acks;
    char min_stamp[STAMP_HEX_LEN + 1]; /* least and greatest stamp acknowledged in this */
    char max_stamp[STAMP_HEX_LEN + 1]; /* cycle; empty if none */
    struct {
        unsigned long long next_seq;
        char last_stamp[STAMP_HEX_LEN + 1];
    } threads[MAX_THREADS];
    char *acked_text; /* the cycle's whole "ack" lines, for the acknowledgement file */
    size_t acked_len, acked_cap;
    size_t partial; /* bytes of a line cut short by the kill, dropped */
    /* The end. */
    int killed;
    int status;
    char error[768]; /* the first problem found; empty if none */
};

/* What the child's exit codes mean; see enum crash_exit in crash_child.c. */
static const char *child_exit_meaning(int code)
{
    switch (code) {
    case 0:
        return "success";
    case 2:
        return "usage error";
    case 3:
        return "a store operation failed";
    case 4:
        return "an acknowledged key is missing";
    case 5:
        return "an acknowledged key has a wrong value";
    case 6:
        return "a new versionstamp is not above an old one";
    case 7:
        return "the acknowledgement file is unreadable or malformed";
    case 8:
        return "a versionstamp is wrong";
    case 9:
        return "half of a transaction is in the store";
    case 10:
        return "writing to stdout failed";
    case 127:
        return "exec failed";
    default:
        return "unknown exit code";
    }
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 2685821657736338717ull;
}

/* Records the cycle's first problem; later ones are usually its consequences. */
static void cycle_fail(struct cycle *cy, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void cycle_fail(struct cycle *cy, const char *fmt, ...)
{
    if (cy->error[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cy->error, sizeof cy->error, fmt, ap);
    va_end(ap);
}

static int is_stamp_hex(const char *s)
{
    if (strlen(s) != STAMP_HEX_LEN)
        return 0;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return 0;
    return 1;
}

static void append_acked(struct cycle *cy, const char *line)
{
    size_t n = strlen(line);
    if (cy->acked_len + n + 2 > cy->acked_cap) {
        cy->acked_cap = (cy->acked_len + n + 2) * 2;
        cy->acked_text = realloc(cy->acked_text, cy->acked_cap);
        ck_assert_msg(cy->acked_text != NULL, "out of memory");
    }
    memcpy(cy->acked_text + cy->acked_len, line, n);
    cy->acked_len += n;
    cy->acked_text[cy->acked_len++] = '\n';
    cy->acked_text[cy->acked_len] = '\0';
}

/* A "ready" or "verified" line: the child checked every acknowledgement so far, (1). */
static void handle_ready(struct cycle *cy, char *line, long total_acks, const char *max_stamp,
                         long elapsed_ms)
{
    const char *want = cy->verify_only ? "verified" : "ready";
    char word[16], stamp[64];
    int end = 0;
    if (cy->ready) {
        cycle_fail(cy, "second \"%s\" line: %s", want, line);
        return;
    }
    if (sscanf(line, "%15s %ld %ld %63s%n", word, &cy->ready_acked, &cy->ready_durable, stamp,
               &end) != 4 ||
        line[end] != '\0' || strcmp(word, want) != 0 || !is_stamp_hex(stamp)) {
        cycle_fail(cy, "malformed line: %s", line);
        return;
    }
    cy->ready = 1;
    cy->ready_ms = elapsed_ms;
    strcpy(cy->ready_stamp, stamp);
    if (cy->ready_acked != total_acks)
        cycle_fail(cy, "(1) the child verified %ld acknowledgements, the file holds %ld",
                   cy->ready_acked, total_acks);
    else if (cy->ready_durable < cy->ready_acked)
        cycle_fail(cy, "(1) %ld transactions in the store, fewer than the %ld acknowledged",
                   cy->ready_durable, cy->ready_acked);
    else if (strcmp(stamp, max_stamp) < 0)
        cycle_fail(cy,
                   "(2) the greatest versionstamp in the store, %s, is below %s, the "
                   "greatest acknowledged",
                   stamp, max_stamp);
}

/* An "ack KEY VALUE STAMP" line: checks (2) and (3) and keeps the line. */
static void handle_ack(struct cycle *cy, char *line, const char *max_stamp)
{
    char copy[LINE_CAP];
    snprintf(copy, sizeof copy, "%s", line);
    char *save = NULL;
    strtok_r(copy, " ", &save);
    char *key = strtok_r(NULL, " ", &save);
    char *value = strtok_r(NULL, " ", &save);
    char *stamp = strtok_r(NULL, " ", &save);
    char *extra = strtok_r(NULL, " ", &save);
    int key_cycle, thread, end = 0;
    unsigned long long seq;
    if (!key || !value || !stamp || extra || !is_stamp_hex(stamp) ||
        sscanf(key, "k/%5d/%2d/%9llu%n", &key_cycle, &thread, &seq, &end) != 3 ||
        key[end] != '\0' || strlen(key) != 20 || thread < 0 || thread >= MAX_THREADS) {
        cycle_fail(cy, "malformed line: %s", line);
        return;
    }
    char value_prefix[64];
    snprintf(value_prefix, sizeof value_prefix, "v.%05d.%02d.%09llu.", key_cycle, thread, seq);
    if (key_cycle != cy->number || strncmp(value, value_prefix, strlen(value_prefix)) != 0) {
        cycle_fail(cy, "acknowledgement of another cycle or with a foreign value: %s", line);
        return;
    }
    if (!cy->ready) {
        cycle_fail(cy, "acknowledgement before \"ready\": %s", line);
        return;
    }
    if (seq != cy->threads[thread].next_seq)
        cycle_fail(cy, "(3) thread %d acknowledged #%llu after #%llu", thread, seq,
                   cy->threads[thread].next_seq - 1);
    else if (strcmp(stamp, max_stamp) <= 0)
        cycle_fail(cy,
                   "(2) versionstamp %s of %s is not above %s, acknowledged in an earlier "
                   "cycle",
                   stamp, key, max_stamp);
    else if (strcmp(stamp, cy->ready_stamp) <= 0)
        cycle_fail(cy,
                   "(2) versionstamp %s of %s is not above %s, already in the store at "
                   "start",
                   stamp, key, cy->ready_stamp);
    else if (strcmp(stamp, cy->threads[thread].last_stamp) <= 0)
        cycle_fail(cy, "(2) versionstamp %s of %s is not above %s, the thread's previous one",
                   stamp, key, cy->threads[thread].last_stamp);
    cy->threads[thread].next_seq = seq + 1;
    strcpy(cy->threads[thread].last_stamp, stamp);
    if (strcmp(stamp, cy->max_stamp) > 0)
        strcpy(cy->max_stamp, stamp);
    if (!cy->min_stamp[0] || strcmp(stamp, cy->min_stamp) < 0)
        strcpy(cy->min_stamp, stamp);
    cy->acks++;
    append_acked(cy, line);
}

/* Starts the child with its stdout on a pipe; returns its pid and the pipe's read end. The
 * child dies with this process (PR_SET_PDEATHSIG), so a failing test leaves no writer. */
static pid_t spawn_child(char *const argv[], int *out_fd)
{
    int fds[2];
    ck_assert_msg(pipe2(fds, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int null_fd = open("/dev/null", O_RDONLY);
        if (dup2(fds[1], STDOUT_FILENO) < 0 || null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0)
            _exit(127);
        execv(argv[0], argv);
        dprintf(STDERR_FILENO, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    *out_fd = fds[0];
    return pid;
}

/* Runs one child to its end: reads its output line by line, kills it when the cycle says,
 * reads what it wrote before dying, and reaps it. Problems go to cy->error. */
static void run_cycle(const struct crash_run *run, struct cycle *cy, long total_acks,
                      const char *max_stamp)
{
    char number[16], permille[16], seed[32], clock_ahead[16];
    snprintf(number, sizeof number, "%d", cy->number);
    snprintf(permille, sizeof permille, "%d", cy->fault_permille);
    snprintf(seed, sizeof seed, "%" PRIu64, run->seed + (uint64_t)cy->number);
    snprintf(clock_ahead, sizeof clock_ahead, "%d", cy->clock_ahead_ms);
    char *run_argv[] = {(char *)run->child_path,
                        (char *)run->db_dir,
                        "run",
                        (char *)run->acked_path,
                        number,
                        permille,
                        seed,
                        clock_ahead,
                        NULL};
    char *verify_argv[] = {(char *)run->child_path, (char *)run->db_dir, "verify",
                           (char *)run->acked_path, NULL};
    int fd;
    long start = now_ms();
    pid_t pid = spawn_child(cy->verify_only ? verify_argv : run_argv, &fd);

    char buf[LINE_CAP];
    size_t have = 0;
    long kill_at = cy->early ? start + cy->delay_ms : -1;
    for (;;) {
        long now = now_ms();
        if (!cy->killed && kill_at < 0 && now - start >= CHILD_TIMEOUT_MS) {
            cycle_fail(cy, "the child did not %s within %d ms",
                       cy->verify_only ? "finish" : "print \"ready\"", CHILD_TIMEOUT_MS);
            kill_at = now;
        }
        if (!cy->killed && kill_at >= 0 && now >= kill_at) {
            kill(pid, SIGKILL);
            cy->killed = 1;
        }
        int timeout = -1;
        if (!cy->killed) {
            long until = kill_at >= 0 ? kill_at : start + CHILD_TIMEOUT_MS;
            timeout = until > now ? (int)(until - now) : 0;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int rc = poll(&p, 1, timeout);
        if (rc < 0 && errno == EINTR)
            continue;
        ck_assert_msg(rc >= 0, "poll: %s", strerror(errno));
        if (rc == 0)
            continue;
        ssize_t n = read(fd, buf + have, sizeof buf - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cycle_fail(cy, "read: %s", strerror(errno));
            break;
        }
        if (n == 0)
            break; /* every copy of the write end is closed: the child is gone */
        have += (size_t)n;
        char *line = buf, *newline;
        while ((newline = memchr(line, '\n', have - (size_t)(line - buf))) != NULL) {
            *newline = '\0';
            if (strncmp(line, "ack ", 4) == 0 && cy->verify_only) {
                cycle_fail(cy, "acknowledgement from the verifying child: %s", line);
            } else if (strncmp(line, "ack ", 4) == 0) {
                handle_ack(cy, line, max_stamp);
            } else {
                handle_ready(cy, line, total_acks, max_stamp, now_ms() - start);
                if (cy->ready && !cy->early && !cy->verify_only && kill_at < 0)
                    kill_at = now_ms() + cy->delay_ms;
            }
            line = newline + 1;
        }
        have -= (size_t)(line - buf);
        memmove(buf, line, have);
        if (have == sizeof buf) {
            cycle_fail(cy, "a line longer than %d bytes", LINE_CAP);
            have = 0;
        }
    }
    cy->partial = have; /* cut short by the kill: never acknowledged */
    close(fd);
    while (waitpid(pid, &cy->status, 0) < 0)
        ck_assert_msg(errno == EINTR, "waitpid: %s", strerror(errno));

    if (WIFEXITED(cy->status) && WEXITSTATUS(cy->status) == 0 && cy->verify_only) {
        if (!cy->ready)
            cycle_fail(cy, "the verifying child printed no \"verified\" line");
    } else if (WIFEXITED(cy->status)) {
        int code = WEXITSTATUS(cy->status);
        cycle_fail(cy,
                   "(1) the child exited by itself with code %d: %s (its stderr above says "
                   "more)",
                   code, child_exit_meaning(code));
    } else if (!WIFSIGNALED(cy->status) || WTERMSIG(cy->status) != SIGKILL || !cy->killed) {
        cycle_fail(cy, "(1) the child died of signal %d, not of our SIGKILL",
                   WIFSIGNALED(cy->status) ? WTERMSIG(cy->status) : -1);
    }
}

/* The commit version in a versionstamp's first 8 bytes (microseconds on the engine). */
static int64_t stamp_version(const char *hex)
{
    char digits[17];
    memcpy(digits, hex, 16);
    digits[16] = '\0';
    return (int64_t)strtoull(digits, NULL, 16);
}

/* What cycle `number` does besides committing for a random while:
 *   2, 7, 12, 17, 22  kill early: the other 20 cycles are normal;
 *   3, 7, 11, 15, 19, 23  fault injection on;
 *   5, 14  wall clock ahead, by 1.5 s and 3 s: each runs further ahead than any cycle before
 *          it, so its versions must jump at least 1.5 s, (5); in the cycles after them the
 *          clock is behind the store's versions for a while. Never together with faults
 *          (see crash_child.c). */
static void plan_cycle(struct cycle *cy, int number, uint64_t *rng)
{
    cy->number = number;
    cy->early = number % 5 == 2;
    cy->fault_permille = number % 4 == 3 ? FAULT_PERMILLE : 0;
    cy->clock_ahead_ms = number == 5    ? CLOCK_AHEAD_STEP_MS
                         : number == 14 ? 2 * CLOCK_AHEAD_STEP_MS
                                        : 0;
    cy->delay_ms = cy->early
                       ? (int)(next_random(rng) % (EARLY_MAX_DELAY_MS + 1))
                       : MIN_DELAY_MS + (int)(next_random(rng) % (MAX_DELAY_MS - MIN_DELAY_MS + 1));
}

static void append_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "a");
    ck_assert_msg(f != NULL, "open %s: %s", path, strerror(errno));
    ck_assert_msg(fwrite(text, 1, len, f) == len && fclose(f) == 0, "append to %s: %s", path,
                  strerror(errno));
}

START_TEST(test_acknowledged_commits_survive_sigkill)
{
    const struct crash_run *run = &crash_run;
    uint64_t rng = run->seed ? run->seed : 1;
    long total_acks = 0, total_partial = 0;
    int normal_cycles = 0, cycles_with_acks = 0, killed_before_ready = 0;
    char max_stamp[STAMP_HEX_LEN + 1];
    memset(max_stamp, '0', STAMP_HEX_LEN);
    max_stamp[STAMP_HEX_LEN] = '\0';
    long started = now_ms();

    for (int number = 0; number < CYCLES; number++) {
        struct cycle *cy = calloc(1, sizeof(*cy));
        ck_assert(cy != NULL);
        plan_cycle(cy, number, &rng);
        ck_assert(!(cy->fault_permille && cy->clock_ahead_ms));
        run_cycle(run, cy, total_acks, max_stamp);
        if (cy->ready)
            printf("cycle %2d: ready after %4ld ms (verified %6ld acks, %6ld in store), ", number,
                   cy->ready_ms, cy->ready_acked, cy->ready_durable);
        else
            printf("cycle %2d: killed before ready%42s", number, ", ");
        /* How far the first new version is past the greatest old one. */
        double jump_ms =
            cy->acks ? (double)(stamp_version(cy->min_stamp) - stamp_version(max_stamp)) / 1000.0
                     : 0;
        printf("%s %3d ms: %5ld acks",
               !cy->killed ? "exited, planned"
               : cy->early ? "early kill"
                           : "killed after",
               cy->delay_ms, cy->acks);
        if (cy->acks && number > 0)
            printf(", versions resume %+.3f ms on", jump_ms);
        printf("%s%s%s\n", cy->fault_permille ? ", faults on" : "",
               cy->clock_ahead_ms ? ", clock ahead" : "",
               cy->partial ? ", partial line dropped" : "");
        fflush(stdout);
        ck_assert_msg(cy->error[0] == '\0', "cycle %d: %s (CRASH_TEST_SEED=%" PRIu64 ")", number,
                      cy->error, run->seed);
        /* (5) */
        ck_assert_msg(!cy->clock_ahead_ms || !cy->acks || jump_ms >= CLOCK_AHEAD_STEP_MS,
                      "cycle %d ran with the clock %d ms ahead but its versions moved only "
                      "%.3f ms: crash_child's clock_gettime is not the one the engine calls",
                      number, cy->clock_ahead_ms, jump_ms);
        if (cy->acked_len)
            append_file(run->acked_path, cy->acked_text, cy->acked_len);
        total_acks += cy->acks;
        total_partial += cy->partial ? 1 : 0;
        if (strcmp(cy->max_stamp, max_stamp) > 0)
            strcpy(max_stamp, cy->max_stamp);
        if (!cy->early) {
            normal_cycles++;
            cycles_with_acks += cy->acks > 0;
        }
        killed_before_ready += !cy->ready;
        free(cy->acked_text);
        free(cy);
    }

    struct cycle *last = calloc(1, sizeof(*last));
    ck_assert(last != NULL);
    last->number = CYCLES;
    last->verify_only = 1;
    run_cycle(run, last, total_acks, max_stamp);
    ck_assert_msg(last->error[0] == '\0', "final verification: %s (CRASH_TEST_SEED=%" PRIu64 ")",
                  last->error, run->seed);
    printf("final: verified %ld acks, %ld transactions in store, greatest versionstamp %s\n",
           last->ready_acked, last->ready_durable, last->ready_stamp);
    printf("%d cycles (%d killed before ready) in %.1f s: %ld acknowledged commits, %d of %d "
           "normal cycles acknowledged some, %ld partial lines dropped\n",
           CYCLES, killed_before_ready, (double)(now_ms() - started) / 1000.0, total_acks,
           cycles_with_acks, normal_cycles, total_partial);
    free(last);

    /* (4) */
    ck_assert_msg(cycles_with_acks >= MIN_CYCLES_WITH_ACKS,
                  "only %d of %d normal cycles acknowledged a commit", cycles_with_acks,
                  normal_cycles);
    ck_assert_msg(total_acks >= MIN_TOTAL_ACKS, "only %ld commits acknowledged in all", total_acks);
}
END_TEST

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (remove(path) != 0)
        fprintf(stderr, "test_crash: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

/* Unchecked fixture: runs in the test runner's process, so the directory is removed even
 * when the test (in its forked process) fails. */
static void setup_run(void)
{
    struct crash_run *run = &crash_run;
    const char *tmp = getenv("TMPDIR");
    snprintf(run->dir, sizeof run->dir, "%s/etcd-fdb-crash-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(run->dir)) {
        fprintf(stderr, "test_crash: mkdtemp %s: %s\n", run->dir, strerror(errno));
        exit(EXIT_FAILURE);
    }
    if (snprintf(run->db_dir, sizeof run->db_dir, "%s/db", run->dir) >= (int)sizeof run->db_dir ||
        snprintf(run->acked_path, sizeof run->acked_path, "%s/acked", run->dir) >=
            (int)sizeof run->acked_path) {
        fprintf(stderr, "test_crash: path too long: %s\n", run->dir);
        exit(EXIT_FAILURE);
    }
    FILE *f = fopen(run->acked_path, "w");
    if (!f || fclose(f) != 0) {
        fprintf(stderr, "test_crash: cannot create %s\n", run->acked_path);
        exit(EXIT_FAILURE);
    }
    const char *seed = getenv("CRASH_TEST_SEED");
    run->seed = seed && *seed ? strtoull(seed, NULL, 10)
                              : (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid();
    printf("test_crash: seed %" PRIu64 " (CRASH_TEST_SEED=%" PRIu64 " to repeat), data in %s\n",
           run->seed, run->seed, run->dir);
    fflush(stdout);
}

static void teardown_run(void)
{
    const char *keep = getenv("CRASH_TEST_KEEP");
    if (keep && *keep && strcmp(keep, "0") != 0) {
        printf("test_crash: kept %s\n", crash_run.dir);
        return;
    }
    nftw(crash_run.dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static Suite *crash_suite(void)
{
    Suite *s = suite_create("crash");
    TCase *tc = tcase_create("sigkill");
    tcase_set_timeout(tc, 300);
    tcase_add_unchecked_fixture(tc, setup_run, teardown_run);
    tcase_add_test(tc, test_acknowledged_commits_survive_sigkill);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH_TO_CRASH_CHILD\n", argv[0]);
        return 2;
    }
    if (access(argv[1], X_OK) != 0) {
        fprintf(stderr, "test_crash: %s is not executable: %s\n", argv[1], strerror(errno));
        return 2;
    }
    crash_run.child_path = argv[1];
    SRunner *sr = srunner_create(crash_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

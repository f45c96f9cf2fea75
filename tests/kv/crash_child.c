/* crash_child.c -- the process tests/kv/test_crash.c kills: it verifies what earlier
 * incarnations acknowledged, then commits numbered keys from several threads until killed.
 *
 * Usage:
 *   crash_child DIR run ACKED CYCLE [FAULT_PERMILLE [FAULT_SEED [CLOCK_AHEAD_MS]]]
 *   crash_child DIR verify ACKED
 * DIR is the embedded store's data directory. ACKED holds the "ack" lines that earlier
 * children printed (and their parent saw whole); it must exist, and may be empty.
 * FAULT_PERMILLE > 0 turns on the engine's fault injection for the writers (not for the
 * verification). CLOCK_AHEAD_MS > 0 sets the wall clock the engine sees that far ahead
 * (see clock_gettime below), so that the next run starts with the clock behind the
 * versions already committed, as after the host's clock was stepped back.
 *
 * Each writer commit is one transaction writing two keys of the same name (C cycle, T
 * writer thread, S the thread's sequence number, all fixed width so that key order is
 * numeric order):
 *   k/CCCCC/TT/SSSSSSSSS = "v.CCCCC.TT.SSSSSSSSS." + filler      (transaction_set)
 *   s/CCCCC/TT/SSSSSSSSS = "stamp:" + the commit's versionstamp   (SET_VERSIONSTAMPED_VALUE)
 * and asks for the commit's versionstamp with transaction_get_versionstamp.
 *
 * Output on stdout, each line written whole by one write(2):
 *   ready ACKED DURABLE MAXSTAMP     verified; writers start (run)
 *   verified ACKED DURABLE MAXSTAMP  verified; the process then exits 0 (verify)
 *   ack KEY VALUE STAMP              written only after KEY's commit succeeded
 * ACKED is the number of acknowledgements verified, DURABLE the number of committed
 * transactions found in the store (acknowledged or not), STAMP a 10-byte versionstamp in
 * lowercase hex and MAXSTAMP the greatest one in the store (zeros when it is empty).
 *
 * Checked, each failure ending the process with its own exit code (enum crash_exit) and a
 * message on stderr:
 * (1) every acknowledged key is present with its exact value;
 * (2) its s/ key holds "stamp:" + the versionstamp that was acknowledged, and every
 *     versionstamp agrees with the commit's committed version;
 * (3) a transaction is all or nothing: a k/ key is present exactly when its s/ key is;
 * (4) every new versionstamp is greater than every versionstamp already in the store
 *     (acknowledged or not) and than the same writer's previous one.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kv/embedded.h"
#include "kv/retry.h"

#define WRITER_THREADS 4
#define STAMP_LEN 10
#define STAMP_HEX_LEN (2 * STAMP_LEN)
#define STAMP_PREFIX "stamp:"
#define STAMP_PREFIX_LEN 6
#define STAMP_VALUE_LEN (STAMP_PREFIX_LEN + STAMP_LEN)
#define KEY_CAP 40
#define VALUE_CAP 200
#define FILLER_MAX 120
#define VERIFY_CHUNK 256 /* acknowledged keys read per transaction */
#define SCAN_CHUNK 1000  /* rows per range read */

/* Exit codes; tests/kv/test_crash.c knows them by number, keep both in step. */
enum crash_exit {
    CRASH_EXIT_OK = 0,
    CRASH_EXIT_USAGE = 2,
    CRASH_EXIT_STORE = 3,       /* a store operation failed */
    CRASH_EXIT_MISSING = 4,     /* (1) an acknowledged key is missing */
    CRASH_EXIT_WRONG_VALUE = 5, /* (1) an acknowledged key has another value */
    CRASH_EXIT_STAMP_ORDER = 6, /* (4) a new versionstamp is not above the old ones */
    CRASH_EXIT_ACKED_FILE = 7,  /* ACKED is unreadable or malformed */
    CRASH_EXIT_WRONG_STAMP = 8, /* (2) a stored or returned versionstamp is wrong */
    CRASH_EXIT_TORN = 9,        /* (3) half of a transaction is in the store */
    CRASH_EXIT_OUTPUT = 10,     /* stdout failed (the parent went away) */
};

/* One acknowledged commit, read from ACKED. */
struct ack {
    char *key;       /* "k/..." */
    char *stamp_key; /* "s/..." */
    char *value;
    uint8_t stamp[STAMP_LEN];
};

struct ack_list {
    struct ack *items;
    int count, cap;
};

/* One row of a range read; the key without its one-letter prefix ("/CCCCC/TT/S..."). */
struct row {
    char *name;
    uint8_t *value;
    int value_len;
};

struct row_list {
    struct row *items;
    int count, cap;
};

/* What verification found in the store. */
struct store_summary {
    int durable;                  /* transactions present (k/ and s/ pairs) */
    uint8_t max_stamp[STAMP_LEN]; /* greatest versionstamp present, zeros if none */
};

/* ---- the wall clock ----
 *
 * This definition takes the C library's place for the whole program (kv/ is linked in
 * statically), so the engine's versions, which follow the wall clock, can be made to run
 * ahead of it. Only CLOCK_REALTIME moves; clock_ahead_ns is set in main before any other
 * thread starts and never changes after. The engine also uses CLOCK_REALTIME for
 * condition-variable deadlines, which then come later than meant: harmless here, as
 * nothing the writers wait for is delayed unless fault injection is on, and the parent
 * never turns both on at once. */
static int64_t clock_ahead_ns;

int clock_gettime(clockid_t clock, struct timespec *ts)
{
    if (syscall(SYS_clock_gettime, clock, ts) != 0)
        return -1;
    if (clock == CLOCK_REALTIME && clock_ahead_ns > 0) {
        int64_t ns = (int64_t)ts->tv_nsec + clock_ahead_ns % 1000000000;
        ts->tv_sec += (time_t)(clock_ahead_ns / 1000000000 + ns / 1000000000);
        ts->tv_nsec = (long)(ns % 1000000000);
    }
    return 0;
}

/* Prints the message on stderr and ends the process at once with `code`: other threads may
 * be inside the store, so no exit handlers may run. */
static void die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));

static void die(int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "crash_child[%d]: %s\n", (int)getpid(), msg);
    _exit(code);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die(CRASH_EXIT_STORE, "out of memory");
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

static void stamp_to_hex(const uint8_t *stamp, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < STAMP_LEN; i++) {
        out[2 * i] = digits[stamp[i] >> 4];
        out[2 * i + 1] = digits[stamp[i] & 15];
    }
    out[STAMP_HEX_LEN] = '\0';
}

/* Parses exactly 20 lowercase hex digits; returns 0 or -1. */
static int stamp_from_hex(const char *hex, uint8_t *stamp)
{
    if (strlen(hex) != STAMP_HEX_LEN)
        return -1;
    for (int i = 0; i < STAMP_HEX_LEN; i++) {
        char c = hex[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        if (i % 2 == 0)
            stamp[i / 2] = (uint8_t)(d << 4);
        else
            stamp[i / 2] |= (uint8_t)d;
    }
    return 0;
}

/* A printable rendering of bytes from the store, for messages: text as is, other bytes as
 * \xNN, cut at cap - 1 characters. */
static void describe_bytes(const uint8_t *bytes, int len, char *out, size_t cap)
{
    size_t at = 0;
    for (int i = 0; i < len && at + 5 < cap; i++) {
        if (bytes[i] >= 0x20 && bytes[i] < 0x7f && bytes[i] != '\\')
            out[at++] = (char)bytes[i];
        else
            at += (size_t)snprintf(out + at, cap - at, "\\x%02x", bytes[i]);
    }
    out[at] = '\0';
}

/* Writes one whole line to stdout with a single write(2): a pipe never splits a write of at
 * most PIPE_BUF bytes, so the reader sees the line whole or not at all. */
static void emit_line(const char *line, size_t len)
{
    for (;;) {
        ssize_t n = write(STDOUT_FILENO, line, len);
        if (n == (ssize_t)len)
            return;
        if (n < 0 && errno == EINTR)
            continue;
        die(CRASH_EXIT_OUTPUT, "write to stdout: %s", n < 0 ? strerror(errno) : "short write");
    }
}

/* ---- ACKED ---- */

/* Reads every "ack KEY VALUE STAMP" line of path into out (which owns the strings). */
static void acks_load(const char *path, struct ack_list *out)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die(CRASH_EXIT_ACKED_FILE, "cannot open %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    int line_number = 0;
    while ((len = getline(&line, &line_cap, f)) >= 0) {
        line_number++;
        if (len == 0 || line[len - 1] != '\n')
            die(CRASH_EXIT_ACKED_FILE, "%s:%d: line without its newline", path, line_number);
        line[len - 1] = '\0';
        char *save = NULL;
        char *word = strtok_r(line, " ", &save);
        char *key = strtok_r(NULL, " ", &save);
        char *value = strtok_r(NULL, " ", &save);
        char *stamp = strtok_r(NULL, " ", &save);
        char *extra = strtok_r(NULL, " ", &save);
        struct ack a;
        if (!word || strcmp(word, "ack") != 0 || !key || !value || !stamp || extra ||
            strncmp(key, "k/", 2) != 0 || strlen(key) >= KEY_CAP ||
            stamp_from_hex(stamp, a.stamp) != 0)
            die(CRASH_EXIT_ACKED_FILE, "%s:%d: not an acknowledgement line", path, line_number);
        a.key = xstrdup(key);
        a.stamp_key = xstrdup(key);
        a.stamp_key[0] = 's';
        a.value = xstrdup(value);
        if (out->count == out->cap) {
            out->cap = out->cap ? 2 * out->cap : 1024;
            out->items = realloc(out->items, (size_t)out->cap * sizeof(*out->items));
            if (!out->items)
                die(CRASH_EXIT_STORE, "out of memory");
        }
        out->items[out->count++] = a;
    }
    if (ferror(f))
        die(CRASH_EXIT_ACKED_FILE, "reading %s: %s", path, strerror(errno));
    free(line);
    fclose(f);
}

static void acks_free(struct ack_list *acks)
{
    for (int i = 0; i < acks->count; i++) {
        free(acks->items[i].key);
        free(acks->items[i].stamp_key);
        free(acks->items[i].value);
    }
    free(acks->items);
}

/* ---- (1) and (2): point reads of the acknowledged keys ---- */

/* One chunk of acknowledgements and what the last attempt found wrong with it. */
struct verify_ctx {
    const struct ack *acks;
    int count; /* at most VERIFY_CHUNK */
    int bad;   /* index of the first bad acknowledgement, -1 if none */
    int code;  /* its crash_exit code */
    char found[256];
};

/* Reads both keys of every acknowledgement of the chunk (all reads issued before the
 * first wait) and records the first mismatch in ctx. Returns a store error or 0. */
static fdb_error_t verify_body(const struct kv_api *api, FDBTransaction *tr, void *arg)
{
    struct verify_ctx *c = arg;
    FDBFuture *values[VERIFY_CHUNK], *stamps[VERIFY_CHUNK];
    c->bad = -1;
    for (int i = 0; i < c->count; i++) {
        const struct ack *a = &c->acks[i];
        values[i] = api->transaction_get(tr, (const uint8_t *)a->key, (int)strlen(a->key), 0);
        stamps[i] =
            api->transaction_get(tr, (const uint8_t *)a->stamp_key, (int)strlen(a->stamp_key), 0);
    }
    fdb_error_t err = 0;
    for (int i = 0; i < c->count && !err && c->bad < 0; i++) {
        const struct ack *a = &c->acks[i];
        fdb_bool_t present = 0;
        const uint8_t *v = NULL;
        int len = 0;
        err = kv_wait(api, values[i]);
        if (!err)
            err = api->future_get_value(values[i], &present, &v, &len);
        if (err)
            break;
        if (!present) {
            c->bad = i;
            c->code = CRASH_EXIT_MISSING;
            break;
        }
        if ((size_t)len != strlen(a->value) || memcmp(v, a->value, (size_t)len) != 0) {
            c->bad = i;
            c->code = CRASH_EXIT_WRONG_VALUE;
            describe_bytes(v, len, c->found, sizeof c->found);
            break;
        }
        err = kv_wait(api, stamps[i]);
        if (!err)
            err = api->future_get_value(stamps[i], &present, &v, &len);
        if (err)
            break;
        if (!present || len != STAMP_VALUE_LEN || memcmp(v, STAMP_PREFIX, STAMP_PREFIX_LEN) != 0 ||
            memcmp(v + STAMP_PREFIX_LEN, a->stamp, STAMP_LEN) != 0) {
            c->bad = i;
            c->code = present ? CRASH_EXIT_WRONG_STAMP : CRASH_EXIT_TORN;
            if (present)
                describe_bytes(v, len, c->found, sizeof c->found);
            break;
        }
    }
    for (int i = 0; i < c->count; i++) {
        api->future_destroy(values[i]);
        api->future_destroy(stamps[i]);
    }
    return err;
}

/* Checks (1) and (2) for every acknowledgement; ends the process on the first failure. */
static void verify_acks(const struct kv_api *api, FDBDatabase *db, const struct ack_list *acks)
{
    for (int first = 0; first < acks->count; first += VERIFY_CHUNK) {
        struct verify_ctx c = {.acks = acks->items + first, .bad = -1};
        c.count = acks->count - first < VERIFY_CHUNK ? acks->count - first : VERIFY_CHUNK;
        fdb_error_t err = kv_transact(api, db, verify_body, &c, NULL);
        if (err)
            die(CRASH_EXIT_STORE, "reading acknowledged keys: %s", api->get_error(err));
        if (c.bad < 0)
            continue;
        const struct ack *a = &c.acks[c.bad];
        char hex[STAMP_HEX_LEN + 1];
        stamp_to_hex(a->stamp, hex);
        switch (c.code) {
        case CRASH_EXIT_MISSING:
            die(c.code, "acknowledged key %s is missing (acknowledged with versionstamp %s)",
                a->key, hex);
        case CRASH_EXIT_WRONG_VALUE:
            die(c.code, "acknowledged key %s holds \"%s\", expected \"%s\"", a->key, c.found,
                a->value);
        case CRASH_EXIT_TORN:
            die(c.code,
                "acknowledged key %s is present but %s, written in the same "
                "transaction, is missing",
                a->key, a->stamp_key);
        default:
            die(c.code,
                "%s holds \"%s\", expected \"stamp:\" + versionstamp %s acknowledged "
                "for %s",
                a->stamp_key, c.found, hex, a->key);
        }
    }
}

/* ---- (3): range reads of everything ---- */

struct scan_ctx {
    const uint8_t *begin, *end;
    int begin_len, end_len;
    struct row_list *rows; /* this chunk's rows are appended */
    int base;              /* rows->count before the chunk: an attempt starts from it */
    int more;
};

static void rows_truncate(struct row_list *rows, int count)
{
    while (rows->count > count) {
        struct row *r = &rows->items[--rows->count];
        free(r->name);
        free(r->value);
    }
}

/* Reads up to SCAN_CHUNK rows of [begin, end) into ctx->rows. */
static fdb_error_t scan_body(const struct kv_api *api, FDBTransaction *tr, void *arg)
{
    struct scan_ctx *c = arg;
    rows_truncate(c->rows, c->base);
    c->more = 0;
    FDBFuture *f =
        api->transaction_get_range(tr, c->begin, c->begin_len, 0, 1, c->end, c->end_len, 0, 1,
                                   SCAN_CHUNK, 0, FDB_STREAMING_MODE_EXACT, 0, 0, 0);
    const FDBKeyValue *kvs = NULL;
    int count = 0;
    fdb_bool_t more = 0;
    fdb_error_t err = kv_wait(api, f);
    if (!err)
        err = api->future_get_keyvalue_array(f, &kvs, &count, &more);
    for (int i = 0; !err && i < count; i++) {
        struct row_list *rows = c->rows;
        if (rows->count == rows->cap) {
            rows->cap = rows->cap ? 2 * rows->cap : 1024;
            rows->items = realloc(rows->items, (size_t)rows->cap * sizeof(*rows->items));
            if (!rows->items)
                die(CRASH_EXIT_STORE, "out of memory");
        }
        struct row *r = &rows->items[rows->count++];
        r->name = xmalloc((size_t)kvs[i].key_length);
        memcpy(r->name, kvs[i].key + 1, (size_t)kvs[i].key_length - 1);
        r->name[kvs[i].key_length - 1] = '\0';
        r->value = xmalloc((size_t)kvs[i].value_length);
        memcpy(r->value, kvs[i].value, (size_t)kvs[i].value_length);
        r->value_len = kvs[i].value_length;
    }
    c->more = more;
    api->future_destroy(f);
    return err;
}

/* Reads every key starting with letter + "/" into rows, one transaction per chunk. */
static void scan_prefix(const struct kv_api *api, FDBDatabase *db, char letter,
                        struct row_list *rows)
{
    uint8_t first[2] = {(uint8_t)letter, '/'};
    uint8_t end[2] = {(uint8_t)letter, '/' + 1};
    uint8_t *next = NULL; /* key after the previous chunk's last one, owned */
    struct scan_ctx c = {.begin = first, .begin_len = 2, .end = end, .end_len = 2, .rows = rows};
    for (;;) {
        c.base = rows->count;
        fdb_error_t err = kv_transact(api, db, scan_body, &c, NULL);
        if (err)
            die(CRASH_EXIT_STORE, "scanning %c/: %s", letter, api->get_error(err));
        if (!c.more || rows->count == c.base)
            break;
        /* The next chunk starts just after the last key read: that key + "\0". */
        const char *name = rows->items[rows->count - 1].name;
        size_t n = strlen(name);
        free(next);
        next = xmalloc(n + 2);
        next[0] = (uint8_t)letter;
        memcpy(next + 1, name, n);
        next[n + 1] = 0;
        c.begin = next;
        c.begin_len = (int)n + 2;
    }
    free(next);
}

/* Checks (3) over the whole store and finds the greatest versionstamp in it. The names of
 * both lists are in key order, so they are walked side by side. */
static void check_store(const struct kv_api *api, FDBDatabase *db, struct store_summary *out)
{
    struct row_list values = {0}, stamps = {0};
    scan_prefix(api, db, 'k', &values);
    scan_prefix(api, db, 's', &stamps);
    memset(out, 0, sizeof(*out));
    int i = 0, j = 0;
    while (i < values.count || j < stamps.count) {
        int cmp = i == values.count   ? 1
                  : j == stamps.count ? -1
                                      : strcmp(values.items[i].name, stamps.items[j].name);
        if (cmp < 0)
            die(CRASH_EXIT_TORN,
                "k%s is in the store but s%s, written in the same transaction, "
                "is not",
                values.items[i].name, values.items[i].name);
        if (cmp > 0)
            die(CRASH_EXIT_TORN,
                "s%s is in the store but k%s, written in the same transaction, "
                "is not",
                stamps.items[j].name, stamps.items[j].name);
        const struct row *s = &stamps.items[j];
        if (s->value_len != STAMP_VALUE_LEN ||
            memcmp(s->value, STAMP_PREFIX, STAMP_PREFIX_LEN) != 0) {
            char found[256];
            describe_bytes(s->value, s->value_len, found, sizeof found);
            die(CRASH_EXIT_WRONG_STAMP, "s%s holds \"%s\", not \"stamp:\" + a versionstamp",
                s->name, found);
        }
        if (memcmp(s->value + STAMP_PREFIX_LEN, out->max_stamp, STAMP_LEN) > 0)
            memcpy(out->max_stamp, s->value + STAMP_PREFIX_LEN, STAMP_LEN);
        out->durable++;
        i++;
        j++;
    }
    rows_truncate(&values, 0);
    rows_truncate(&stamps, 0);
    free(values.items);
    free(stamps.items);
}

/* ---- writers ---- */

struct writer {
    const struct kv_api *api;
    FDBDatabase *db;
    int cycle;
    int index;
    const uint8_t *floor; /* the greatest versionstamp in the store before the writers ran */
    pthread_t thread;
};

/* One commit's keys and values; `stamp` is the current attempt's versionstamp future. */
struct commit_ctx {
    char key[KEY_CAP], stamp_key[KEY_CAP];
    char value[VALUE_CAP];
    int key_len, value_len;
    uint8_t param[STAMP_VALUE_LEN + 4];
    FDBFuture *stamp; /* NULL before the first attempt */
};

static fdb_error_t commit_body(const struct kv_api *api, FDBTransaction *tr, void *arg)
{
    struct commit_ctx *c = arg;
    if (c->stamp) /* the failed attempt's future, completed with its error */
        api->future_destroy(c->stamp);
    api->transaction_set(tr, (const uint8_t *)c->key, c->key_len, (const uint8_t *)c->value,
                         c->value_len);
    api->transaction_atomic_op(tr, (const uint8_t *)c->stamp_key, c->key_len, c->param,
                               (int)sizeof c->param, FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_VALUE);
    c->stamp = api->transaction_get_versionstamp(tr);
    return 0;
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

/* Commits k/ and s/ keys numbered 0, 1, 2, ... and prints an "ack" line after each commit
 * succeeded, checking (2) and (4) on its versionstamp. Runs on its own thread until the
 * process is killed; ends the process on any failure. */
static void *writer_main(void *arg)
{
    struct writer *w = arg;
    const struct kv_api *api = w->api;
    uint8_t previous[STAMP_LEN];
    memcpy(previous, w->floor, STAMP_LEN);
    uint64_t rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)w->cycle << 20) ^ (uint64_t)w->index;
    for (uint64_t seq = 0;; seq++) {
        struct commit_ctx c = {.stamp = NULL};
        c.key_len =
            snprintf(c.key, sizeof c.key, "k/%05d/%02d/%09" PRIu64, w->cycle, w->index, seq);
        memcpy(c.stamp_key, c.key, sizeof c.key);
        c.stamp_key[0] = 's';
        c.value_len = snprintf(c.value, sizeof c.value, "v.%05d.%02d.%09" PRIu64 ".", w->cycle,
                               w->index, seq);
        int filler = (int)(next_random(&rng) % (FILLER_MAX + 1));
        for (int i = 0; i < filler; i++)
            c.value[c.value_len++] = "0123456789abcdef"[next_random(&rng) % 16];
        c.value[c.value_len] = '\0';
        memcpy(c.param, STAMP_PREFIX, STAMP_PREFIX_LEN); /* then 10 placeholder zeros */
        c.param[STAMP_VALUE_LEN] = STAMP_PREFIX_LEN;     /* little-endian offset 6 */

        int64_t version = -1;
        const uint8_t *stamp = NULL;
        int stamp_len = 0;
        fdb_error_t err = kv_transact(api, w->db, commit_body, &c, &version);
        if (!err)
            err = kv_wait(api, c.stamp);
        if (!err)
            err = api->future_get_key(c.stamp, &stamp, &stamp_len);
        if (err)
            die(CRASH_EXIT_STORE, "committing %s: %s", c.key, api->get_error(err));
        if (stamp_len != STAMP_LEN)
            die(CRASH_EXIT_WRONG_STAMP, "versionstamp of %s has %d bytes", c.key, stamp_len);
        uint64_t stamp_version = 0;
        for (int i = 0; i < 8; i++)
            stamp_version = stamp_version << 8 | stamp[i];
        char hex[STAMP_HEX_LEN + 1], old_hex[STAMP_HEX_LEN + 1];
        stamp_to_hex(stamp, hex);
        if (version < 0 || stamp_version != (uint64_t)version)
            die(CRASH_EXIT_WRONG_STAMP,
                "versionstamp %s of %s disagrees with committed "
                "version %" PRId64,
                hex, c.key, version);
        if (memcmp(stamp, w->floor, STAMP_LEN) <= 0) {
            stamp_to_hex(w->floor, old_hex);
            die(CRASH_EXIT_STAMP_ORDER,
                "versionstamp %s of %s is not above %s, the greatest "
                "in the store before this run",
                hex, c.key, old_hex);
        }
        if (memcmp(stamp, previous, STAMP_LEN) <= 0) {
            stamp_to_hex(previous, old_hex);
            die(CRASH_EXIT_STAMP_ORDER,
                "versionstamp %s of %s is not above %s, this writer's "
                "previous one",
                hex, c.key, old_hex);
        }
        memcpy(previous, stamp, STAMP_LEN);
        api->future_destroy(c.stamp);

        char line[KEY_CAP + VALUE_CAP + STAMP_HEX_LEN + 16];
        int n = snprintf(line, sizeof line, "ack %s %s %s\n", c.key, c.value, hex);
        emit_line(line, (size_t)n);
    }
    return NULL;
}

/* ---- main ---- */

static void *network_main(void *arg)
{
    const struct kv_api *api = arg;
    fdb_error_t err = api->run_network();
    if (err)
        die(CRASH_EXIT_STORE, "run_network: %s", api->get_error(err));
    return NULL;
}

static void usage(void)
{
    die(CRASH_EXIT_USAGE, "usage: crash_child DIR run ACKED CYCLE [FAULT_PERMILLE [FAULT_SEED "
                          "[CLOCK_AHEAD_MS]]] | crash_child DIR verify ACKED");
}

int main(int argc, char **argv)
{
    if (argc < 4)
        usage();
    const char *dir = argv[1], *mode = argv[2], *acked_path = argv[3];
    int run = strcmp(mode, "run") == 0;
    if (run ? argc < 5 || argc > 8 : strcmp(mode, "verify") != 0 || argc != 4)
        usage();
    int cycle = run ? atoi(argv[4]) : 0;
    int fault_permille = run && argc > 5 ? atoi(argv[5]) : 0;
    uint64_t fault_seed = run && argc > 6 ? strtoull(argv[6], NULL, 10) : (uint64_t)cycle + 1;
    long clock_ahead_ms = run && argc > 7 ? atol(argv[7]) : 0;
    if (cycle < 0 || cycle > 99999 || clock_ahead_ms < 0)
        usage();
    clock_ahead_ns = (int64_t)clock_ahead_ms * 1000000;

    const struct kv_api *api = embedded_api();
    fdb_error_t err = api->select_api_version(KV_API_VERSION);
    if (!err)
        err = api->setup_network();
    if (err)
        die(CRASH_EXIT_STORE, "network: %s", api->get_error(err));
    pthread_t network;
    if (pthread_create(&network, NULL, network_main, (void *)api) != 0)
        die(CRASH_EXIT_STORE, "cannot start the network thread");
    FDBDatabase *db = NULL;
    err = api->create_database(dir, &db);
    if (err)
        die(CRASH_EXIT_STORE, "create_database(%s): %s", dir, api->get_error(err));

    struct ack_list acks = {0};
    acks_load(acked_path, &acks);
    verify_acks(api, db, &acks);
    struct store_summary store;
    check_store(api, db, &store);

    char hex[STAMP_HEX_LEN + 1], line[128];
    stamp_to_hex(store.max_stamp, hex);
    int n = snprintf(line, sizeof line, "%s %d %d %s\n", run ? "ready" : "verified", acks.count,
                     store.durable, hex);
    int acked = acks.count;
    acks_free(&acks);
    if (store.durable < acked) /* impossible after (1) and (3): every ack has its pair */
        die(CRASH_EXIT_MISSING, "%d acknowledged transactions but only %d in the store", acked,
            store.durable);
    if (!run) {
        emit_line(line, (size_t)n);
        api->database_destroy(db);
        api->stop_network();
        pthread_join(network, NULL);
        return CRASH_EXIT_OK;
    }

    if (fault_permille > 0)
        embedded_set_faults(db, fault_seed, fault_permille);
    emit_line(line, (size_t)n);
    struct writer writers[WRITER_THREADS];
    for (int i = 0; i < WRITER_THREADS; i++) {
        writers[i] = (struct writer){
            .api = api, .db = db, .cycle = cycle, .index = i, .floor = store.max_stamp};
        if (pthread_create(&writers[i].thread, NULL, writer_main, &writers[i]) != 0)
            die(CRASH_EXIT_STORE, "cannot start writer %d", i);
    }
    for (int i = 0; i < WRITER_THREADS; i++) /* writers end only by ending the process */
        pthread_join(writers[i].thread, NULL);
    return CRASH_EXIT_STORE;
}

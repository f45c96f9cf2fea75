/* embedded_txn.c -- the embedded engine's transactions: FoundationDB's read-your-writes
 * transaction on a RocksDB snapshot (states in embedded_internal.h).
 *
 * Reads see the snapshot of the transaction's read version merged with the transaction's
 * own writes (the writemap). Non-snapshot reads record read-conflict ranges; writes record
 * mutations and write-conflict ranges; commit hands all of it to the commit thread
 * (embedded.c). A transaction is used by one thread at a time; only its commit result
 * arrives from the network thread, under tr->mu.
 *
 * Invariants:
 * (1) a read never sees a commit with a version above the read version, and sees every one
 *     at or below it (the snapshot, see embedded.c (4));
 * (2) the first error of a write is kept (deferred_error) and returned by every later read
 *     and by commit, as FoundationDB does;
 * (3) a transaction that failed stays failed until reset or on_error. */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv/embedded.h"
#include "kv/embedded_internal.h"
#include "kv/fdb_errors.h"
#include "kv/mutation.h"
#include "kv/network.h"

#define DEFAULT_BACKOFF_S 0.01
#define DEFAULT_MAX_RETRY_DELAY_MS 1000

static const uint8_t MAX_KEY_NORMAL[] = {0xff};
static const uint8_t MAX_KEY_SYSTEM[] = {0xff, 0xff};

static void assert_tr_state(const FDBTransaction *tr)
{
    assert(tr->state == TR_ACTIVE || tr->state == TR_COMMITTING || tr->state == TR_COMMITTED ||
           tr->state == TR_FAILED);
    assert(tr->state != TR_ACTIVE || tr->refs >= 1);
}

/* ---- lifecycle ---- */

static void clear_non_persistent_options(FDBTransaction *tr)
{
    tr->access_system_keys = tr->read_system_keys = tr->next_write_no_conflict = 0;
    tr->first_in_batch = tr->idempotent = tr->lock_aware = tr->ryw_disabled = 0;
}

static void clear_persistent_options(FDBTransaction *tr)
{
    tr->timeout_ms = 0;
    tr->retry_limit = -1;
    tr->max_retry_delay_ms = DEFAULT_MAX_RETRY_DELAY_MS;
    tr->size_limit = FDB_TRANSACTION_SIZE_LIMIT;
    tr->retries = 0;
    tr->backoff_s = DEFAULT_BACKOFF_S;
}

/* Fails the futures a reset abandons (versionstamps, watches not yet committed). */
static void fail_pending(FDBTransaction *tr, fdb_error_t err)
{
    for (int i = 0; i < tr->stamps.count; i++) {
        future_set_ready(tr->stamps.items[i], err);
        future_unref(tr->stamps.items[i]);
    }
    for (int i = 0; i < tr->watches.count; i++) {
        future_set_ready(tr->watches.items[i].future, err);
        future_unref(tr->watches.items[i].future);
    }
    tr->stamps.count = tr->watches.count = 0;
}

/* Back to a new transaction's state; options are kept when keep_persistent (on_error). */
static void reset_state(FDBTransaction *tr, int keep_persistent)
{
    fail_pending(tr, FDB_ERR_TRANSACTION_CANCELLED);
    pthread_mutex_lock(&tr->mu);
    tr->generation++;
    tr->state = TR_ACTIVE;
    pthread_mutex_unlock(&tr->mu);
    tr->deferred_error = 0;
    db_release_snap(tr->snap);
    tr->snap = NULL;
    tr->read_version = 0;
    tr->read_version_error = 0;
    tr->read_version_set = 0;
    rocksdb_readoptions_set_snapshot(tr->read_options, NULL);
    writemap_reset(tr->writes_view);
    arena_free(&tr->arena);
    tr->reads.count = tr->writes.count = tr->mutations.count = 0;
    tr->size = 0;
    tr->committed_version = -1;
    memset(tr->versionstamp, 0, sizeof(tr->versionstamp));
    clear_non_persistent_options(tr);
    if (!keep_persistent)
        clear_persistent_options(tr);
    tr->start_us = network_now_us();
}

static fdb_error_t txn_create(FDBDatabase *db, FDBTransaction **out)
{
    FDBTransaction *tr = calloc(1, sizeof(*tr));
    if (!tr)
        abort();
    tr->db = db;
    pthread_mutex_init(&tr->mu, NULL);
    tr->refs = 1;
    tr->read_options = rocksdb_readoptions_create();
    tr->writes_view = writemap_create();
    tr->committed_version = -1;
    clear_non_persistent_options(tr);
    clear_persistent_options(tr);
    tr->start_us = network_now_us();
    *out = tr;
    return 0;
}

void txn_unref(FDBTransaction *tr)
{
    pthread_mutex_lock(&tr->mu);
    int last = --tr->refs == 0;
    pthread_mutex_unlock(&tr->mu);
    if (!last)
        return;
    fail_pending(tr, FDB_ERR_TRANSACTION_CANCELLED);
    db_release_snap(tr->snap);
    rocksdb_readoptions_destroy(tr->read_options);
    writemap_destroy(tr->writes_view);
    arena_free(&tr->arena);
    free(tr->reads.items);
    free(tr->writes.items);
    free(tr->mutations.items);
    free(tr->stamps.items);
    free(tr->watches.items);
    pthread_mutex_destroy(&tr->mu);
    free(tr);
}

static void txn_destroy(FDBTransaction *tr)
{
    if (tr)
        txn_unref(tr);
}

static void txn_reset(FDBTransaction *tr)
{
    reset_state(tr, 0);
}

static void txn_cancel(FDBTransaction *tr)
{
    if (!tr->deferred_error)
        tr->deferred_error = FDB_ERR_TRANSACTION_CANCELLED;
}

static int64_t option_int(const uint8_t *value, int len)
{
    int64_t v = 0;
    for (int i = 0; i < len && i < 8; i++)
        v |= (int64_t)value[i] << (8 * i); /* little-endian, as FoundationDB passes ints */
    return v;
}

static fdb_error_t txn_set_option(FDBTransaction *tr, int option, const uint8_t *value, int len)
{
    int64_t v = value && len == 8 ? option_int(value, len) : 0;
    switch (option) {
    case FDB_TR_OPTION_CAUSAL_READ_RISKY:
        return 0;
    case FDB_TR_OPTION_NEXT_WRITE_NO_WRITE_CONFLICT_RANGE:
        tr->next_write_no_conflict = 1;
        return 0;
    case FDB_TR_OPTION_READ_YOUR_WRITES_DISABLE:
        if (tr->reads.count || tr->mutations.count)
            return FDB_ERR_CLIENT_INVALID_OPERATION;
        tr->ryw_disabled = 1;
        return 0;
    case FDB_TR_OPTION_ACCESS_SYSTEM_KEYS:
        tr->access_system_keys = tr->read_system_keys = 1;
        return 0;
    case FDB_TR_OPTION_READ_SYSTEM_KEYS:
        tr->read_system_keys = 1;
        return 0;
    case FDB_TR_OPTION_TIMEOUT:
        if (len != 8 || v < 0)
            return FDB_ERR_INVALID_OPTION_VALUE;
        tr->timeout_ms = v;
        return 0;
    case FDB_TR_OPTION_RETRY_LIMIT:
        if (len != 8 || v < -1)
            return FDB_ERR_INVALID_OPTION_VALUE;
        tr->retry_limit = v;
        return 0;
    case FDB_TR_OPTION_MAX_RETRY_DELAY:
        if (len != 8 || v < 0)
            return FDB_ERR_INVALID_OPTION_VALUE;
        tr->max_retry_delay_ms = v;
        return 0;
    case FDB_TR_OPTION_SIZE_LIMIT:
        if (len != 8 || v < 32 || v > FDB_TRANSACTION_SIZE_LIMIT)
            return FDB_ERR_INVALID_OPTION_VALUE;
        tr->size_limit = v;
        return 0;
    case FDB_TR_OPTION_AUTOMATIC_IDEMPOTENCY:
        tr->idempotent = 1;
        return 0;
    case FDB_TR_OPTION_LOCK_AWARE:
        tr->lock_aware = 1;
        return 0;
    case FDB_TR_OPTION_FIRST_IN_BATCH:
        tr->first_in_batch = 1;
        return 0;
    default:
        return FDB_ERR_INVALID_OPTION;
    }
}

/* ---- read versions ---- */

static void use_snap(FDBTransaction *tr, struct snap *s, int64_t version)
{
    tr->snap = s;
    tr->read_version = version;
    rocksdb_readoptions_set_snapshot(tr->read_options, s->rocks);
}

static void txn_set_read_version(FDBTransaction *tr, int64_t version)
{
    if (tr->snap || tr->read_version_set) {
        tr->read_version_error = FDB_ERR_READ_VERSION_ALREADY_SET;
        return;
    }
    tr->read_version_set = 1;
    if (version < 0) {
        tr->read_version_error = FDB_ERR_VERSION_INVALID;
        return;
    }
    struct snap *s;
    int64_t v;
    fdb_error_t err = db_acquire_snap(tr->db, version, &s, &v);
    if (err)
        tr->read_version_error = err;
    else
        use_snap(tr, s, v);
}

/* Everything a read checks first; chooses the read version if there is none yet. */
static fdb_error_t read_check(FDBTransaction *tr)
{
    assert_tr_state(tr);
    if (tr->state == TR_COMMITTING)
        return FDB_ERR_USED_DURING_COMMIT;
    if (tr->deferred_error)
        return tr->deferred_error;
    if (tr->state != TR_ACTIVE)
        return FDB_ERR_CLIENT_INVALID_OPERATION;
    if (tr->read_version_error)
        return tr->read_version_error;
    if (tr->timeout_ms && network_now_us() - tr->start_us > (uint64_t)tr->timeout_ms * 1000)
        return FDB_ERR_TRANSACTION_TIMED_OUT;
    if (!tr->snap) {
        struct snap *s;
        int64_t v;
        fdb_error_t err = db_acquire_snap(tr->db, -1, &s, &v);
        if (err)
            return err;
        use_snap(tr, s, v);
    }
    if (db_clock_version(tr->db) - tr->read_version > FDB_MAX_READ_TRANSACTION_LIFE_VERSIONS)
        return FDB_ERR_TRANSACTION_TOO_OLD;
    return 0;
}

static FDBFuture *txn_get_read_version(FDBTransaction *tr)
{
    fdb_error_t err = read_check(tr);
    FDBFuture *f = future_create(FUTURE_INT64);
    if (!err)
        f->i64 = tr->read_version;
    db_finish_future(tr->db, f, err);
    return f;
}

/* ---- conflict ranges and keys ---- */

static const uint8_t *max_read_key(const FDBTransaction *tr, int *len)
{
    *len = tr->read_system_keys ? 2 : 1;
    return tr->read_system_keys ? MAX_KEY_SYSTEM : MAX_KEY_NORMAL;
}

static int key_cmp(const uint8_t *a, int al, const uint8_t *b, int bl)
{
    return writemap_compare_keys(a, al, b, bl);
}

static void add_range(FDBTransaction *tr, int write, const uint8_t *begin, int begin_len,
                      const uint8_t *end, int end_len)
{
    struct key_range r;
    r.begin = arena_dup(&tr->arena, begin, (size_t)begin_len);
    r.begin_len = begin_len;
    r.end = arena_dup(&tr->arena, end, (size_t)end_len);
    r.end_len = end_len;
    tr->size += begin_len + end_len;
    if (write)
        VEC_PUSH(tr->writes, r);
    else
        VEC_PUSH(tr->reads, r);
}

/* Adds the conflict range [key, key + "\0"), one copy of the key serving as both ends. */
static void add_key_range(FDBTransaction *tr, int write, const uint8_t *key, int key_len)
{
    uint8_t *k = arena_alloc(&tr->arena, (size_t)key_len + 1);
    memcpy(k, key, (size_t)key_len);
    k[key_len] = 0;
    struct key_range r = {k, k, key_len, key_len + 1};
    tr->size += key_len;
    if (write)
        VEC_PUSH(tr->writes, r);
    else
        VEC_PUSH(tr->reads, r);
}

static fdb_error_t txn_add_conflict_range(FDBTransaction *tr, const uint8_t *begin,
                                          int begin_len, const uint8_t *end, int end_len,
                                          int type)
{
    if (type != FDB_CONFLICT_RANGE_TYPE_READ && type != FDB_CONFLICT_RANGE_TYPE_WRITE)
        return FDB_ERR_INVALID_OPTION_VALUE;
    if (key_cmp(begin, begin_len, end, end_len) > 0)
        return FDB_ERR_INVERTED_RANGE;
    if (key_cmp(begin, begin_len, end, end_len) == 0)
        return 0;
    if (type == FDB_CONFLICT_RANGE_TYPE_READ) {
        fdb_error_t err = read_check(tr); /* a read conflict needs the read version */
        if (err)
            return err;
    }
    add_range(tr, type == FDB_CONFLICT_RANGE_TYPE_WRITE, begin, begin_len, end, end_len);
    return 0;
}

/* ---- point reads ---- */

/* Reads key from the snapshot; *pinned is NULL when absent, else must be destroyed. */
static fdb_error_t snapshot_get(FDBTransaction *tr, const uint8_t *key, int key_len,
                                rocksdb_pinnableslice_t **pinned)
{
    char *err = NULL;
    *pinned = rocksdb_get_pinned_cf(tr->db->rocks, tr->read_options, tr->db->cf_data,
                                    (const char *)key, (size_t)key_len, &err);
    if (err) {
        free(err);
        return FDB_ERR_INTERNAL_ERROR;
    }
    return 0;
}

/* The transaction's view of one key. On success *out (malloc'd) and *out_len hold the value
 * when *present. Records a read conflict unless snapshot or known from own writes. */
static fdb_error_t view_get(FDBTransaction *tr, const uint8_t *key, int key_len, int snapshot,
                            int *present, uint8_t **out, int *out_len)
{
    *out = NULL;
    *out_len = 0;
    *present = 0;
    struct writemap_entry *e = NULL;
    if (!tr->ryw_disabled && !writemap_is_empty(tr->writes_view)) {
        e = writemap_find(tr->writes_view, key, key_len);
        if (e && e->state == WRITEMAP_UNREADABLE)
            return FDB_ERR_ACCESSED_UNREADABLE;
        if (e && e->state == WRITEMAP_KNOWN) {
            *present = e->present;
            if (e->present) {
                *out = malloc(e->value_len ? (size_t)e->value_len : 1);
                if (!*out)
                    abort();
                memcpy(*out, e->value, (size_t)e->value_len);
                *out_len = e->value_len;
            }
            return 0;
        }
        if (!e && writemap_in_cleared_range(tr->writes_view, key, key_len))
            return 0;
    }
    rocksdb_pinnableslice_t *p;
    fdb_error_t err = snapshot_get(tr, key, key_len, &p);
    if (err)
        return err;
    size_t len = 0;
    const char *v = p ? rocksdb_pinnableslice_value(p, &len) : NULL;
    if (e) { /* WRITEMAP_CHAIN: own atomic ops over the stored value */
        writemap_resolve_chain(e, p != NULL, (const uint8_t *)v, (int)len, out, out_len,
                               present);
    } else if (p) {
        *present = 1;
        *out = malloc(len ? len : 1);
        if (!*out)
            abort();
        memcpy(*out, v, len);
        *out_len = (int)len;
    }
    if (p)
        rocksdb_pinnableslice_destroy(p);
    if (!snapshot)
        add_key_range(tr, 0, key, key_len);
    return 0;
}

static FDBFuture *txn_get(FDBTransaction *tr, const uint8_t *key, int key_len, fdb_bool_t snapshot)
{
    FDBFuture *f = future_create(FUTURE_VALUE);
    fdb_error_t err = read_check(tr);
    int max_len;
    const uint8_t *max = max_read_key(tr, &max_len);
    if (!err && key_cmp(key, key_len, max, max_len) >= 0)
        err = FDB_ERR_KEY_OUTSIDE_LEGAL_RANGE;
    /* FoundationDB answers "absent" for a key longer than any key can be. */
    if (!err && key_len <= (key_len && key[0] == 0xff ? FDB_SYSTEM_KEY_SIZE_LIMIT
                                                      : FDB_KEY_SIZE_LIMIT))
        err = view_get(tr, key, key_len, snapshot, &f->present, &f->bytes, &f->bytes_len);
    db_finish_future(tr->db, f, err);
    return f;
}

/* ---- the merged cursor: snapshot + own writes, in key order ---- */

struct cursor {
    FDBTransaction *tr;
    rocksdb_readoptions_t *ro; /* the transaction's snapshot, and this cursor's bounds */
    rocksdb_iterator_t *it;
    struct writemap *wm; /* NULL when there is nothing to merge */
    struct writemap_entry *we;
    int forward;
    int from; /* 1: iterator, 2: writemap, 3: both (same key) */
    int valid;
    fdb_error_t err;
    const uint8_t *key, *value;
    int key_len, value_len;
    uint8_t *resolved; /* value of a CHAIN entry, owned */
};

/* Opens a cursor on the transaction's snapshot. When the caller knows the stored keys it can
 * use lie in [lower, upper), it passes them (else NULL): RocksDB then stops at the bound
 * instead of stepping over every deletion marker beyond it (cleared ranges leave many, as
 * lease expiry and compaction do). The bounds must outlive the cursor. */
static void cursor_open(struct cursor *c, FDBTransaction *tr, const uint8_t *lower,
                        int lower_len, const uint8_t *upper, int upper_len)
{
    memset(c, 0, sizeof(*c));
    c->tr = tr;
    c->ro = rocksdb_readoptions_create();
    if (tr->snap)
        rocksdb_readoptions_set_snapshot(c->ro, tr->snap->rocks);
    if (lower)
        rocksdb_readoptions_set_iterate_lower_bound(c->ro, (const char *)lower, (size_t)lower_len);
    if (upper)
        rocksdb_readoptions_set_iterate_upper_bound(c->ro, (const char *)upper, (size_t)upper_len);
    c->it = rocksdb_create_iterator_cf(tr->db->rocks, c->ro, tr->db->cf_data);
    if (!tr->ryw_disabled && !writemap_is_empty(tr->writes_view))
        c->wm = tr->writes_view;
}

static void cursor_close(struct cursor *c)
{
    free(c->resolved);
    rocksdb_iter_destroy(c->it);
    rocksdb_readoptions_destroy(c->ro);
}

static void cursor_step_iterator(struct cursor *c)
{
    if (c->forward)
        rocksdb_iter_next(c->it);
    else
        rocksdb_iter_prev(c->it);
}

/* Moves to the next visible key in the cursor's direction, starting from the current
 * positions of both sources. */
static void cursor_settle(struct cursor *c)
{
    free(c->resolved);
    c->resolved = NULL;
    for (;;) {
        int db_ok = rocksdb_iter_valid(c->it);
        size_t dkl = 0, dvl = 0;
        const uint8_t *dk = db_ok ? (const uint8_t *)rocksdb_iter_key(c->it, &dkl) : NULL;
        struct writemap_entry *e = c->wm ? c->we : NULL;
        if (!db_ok && !e) {
            char *err = NULL;
            rocksdb_iter_get_error(c->it, &err);
            if (err) {
                free(err);
                c->err = FDB_ERR_INTERNAL_ERROR;
            }
            c->valid = 0;
            return;
        }
        int cmp = !db_ok ? 1 : !e ? -1 : key_cmp(dk, (int)dkl, e->key, e->key_len);
        if (!c->forward && db_ok && e)
            cmp = -cmp;
        if (cmp < 0) { /* the stored key comes first */
            if (c->wm && writemap_in_cleared_range(c->wm, dk, (int)dkl)) {
                cursor_step_iterator(c);
                continue;
            }
            c->from = 1;
            c->key = dk;
            c->key_len = (int)dkl;
            c->value = (const uint8_t *)rocksdb_iter_value(c->it, &dvl);
            c->value_len = (int)dvl;
            c->valid = 1;
            return;
        }
        c->from = cmp == 0 ? 3 : 2;
        if (e->state == WRITEMAP_UNREADABLE) {
            c->err = FDB_ERR_ACCESSED_UNREADABLE;
            c->valid = 0;
            return;
        }
        int present = e->present;
        const uint8_t *value = e->value;
        int value_len = e->value_len;
        if (e->state == WRITEMAP_CHAIN) {
            const uint8_t *base = NULL;
            size_t base_len = 0;
            if (cmp == 0)
                base = (const uint8_t *)rocksdb_iter_value(c->it, &base_len);
            writemap_resolve_chain(e, cmp == 0, base, (int)base_len, &c->resolved, &value_len,
                                   &present);
            value = c->resolved;
        }
        if (!present) {
            if (c->from & 1)
                cursor_step_iterator(c);
            c->we = c->forward ? writemap_next(e) : writemap_prev(e);
            free(c->resolved);
            c->resolved = NULL;
            continue;
        }
        c->key = e->key;
        c->key_len = e->key_len;
        c->value = value;
        c->value_len = value_len;
        c->valid = 1;
        return;
    }
}

/* Positions at the first key >= key (> key unless inclusive), moving forward after. */
static void cursor_seek_ge(struct cursor *c, const uint8_t *key, int key_len, int inclusive)
{
    c->forward = 1;
    rocksdb_iter_seek(c->it, (const char *)key, (size_t)key_len);
    if (!inclusive && rocksdb_iter_valid(c->it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(c->it, &kl);
        if (key_cmp((const uint8_t *)k, (int)kl, key, key_len) == 0)
            rocksdb_iter_next(c->it);
    }
    if (c->wm)
        c->we = writemap_seek_ge(c->wm, key, key_len, inclusive);
    cursor_settle(c);
}

/* Positions at the last key <= key (< key unless inclusive), moving backward after. */
static void cursor_seek_le(struct cursor *c, const uint8_t *key, int key_len, int inclusive)
{
    c->forward = 0;
    rocksdb_iter_seek_for_prev(c->it, (const char *)key, (size_t)key_len);
    if (!inclusive && rocksdb_iter_valid(c->it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(c->it, &kl);
        if (key_cmp((const uint8_t *)k, (int)kl, key, key_len) == 0)
            rocksdb_iter_prev(c->it);
    }
    if (c->wm)
        c->we = writemap_seek_le(c->wm, key, key_len, inclusive);
    cursor_settle(c);
}

static void cursor_advance(struct cursor *c)
{
    if (c->from & 1)
        cursor_step_iterator(c);
    if (c->from & 2)
        c->we = c->forward ? writemap_next(c->we) : writemap_prev(c->we);
    cursor_settle(c);
}

/* ---- key selectors ---- */

/* Resolves a key selector to a key (malloc'd into *out), clamped to ["", max read key]. */
static fdb_error_t resolve_selector(FDBTransaction *tr, const uint8_t *key, int key_len,
                                    int or_equal, int offset, uint8_t **out, int *out_len)
{
    int max_len;
    const uint8_t *max = max_read_key(tr, &max_len);
    struct cursor c;
    cursor_open(&c, tr, NULL, 0, NULL, 0);
    const uint8_t *result;
    int result_len;
    if (offset >= 1) {
        cursor_seek_ge(&c, key, key_len, !or_equal);
        for (int i = 1; i < offset && c.valid; i++)
            cursor_advance(&c);
        int past_end = !c.valid || key_cmp(c.key, c.key_len, max, max_len) >= 0;
        result = past_end ? max : c.key;
        result_len = past_end ? max_len : c.key_len;
    } else {
        cursor_seek_le(&c, key, key_len, or_equal);
        for (int i = 0; i < -offset && c.valid; i++)
            cursor_advance(&c);
        result = c.valid ? c.key : (const uint8_t *)"";
        result_len = c.valid ? c.key_len : 0;
    }
    fdb_error_t err = c.err;
    *out = malloc(result_len ? (size_t)result_len : 1);
    if (!*out)
        abort();
    memcpy(*out, result, (size_t)result_len);
    *out_len = result_len;
    cursor_close(&c);
    return err;
}

/* Records the read conflict of a selector resolution: every key between the selector's key
 * and the result decided the answer. */
static void add_selector_conflict(FDBTransaction *tr, const uint8_t *key, int key_len,
                                  const uint8_t *result, int result_len)
{
    if (key_cmp(key, key_len, result, result_len) <= 0) {
        uint8_t *end = arena_alloc(&tr->arena, (size_t)result_len + 1);
        memcpy(end, result, (size_t)result_len);
        end[result_len] = 0;
        add_range(tr, 0, key, key_len, end, result_len + 1);
    } else {
        uint8_t *end = arena_alloc(&tr->arena, (size_t)key_len + 1);
        memcpy(end, key, (size_t)key_len);
        end[key_len] = 0;
        add_range(tr, 0, result, result_len, end, key_len + 1);
    }
}

static FDBFuture *txn_get_key(FDBTransaction *tr, const uint8_t *key, int key_len,
                              fdb_bool_t or_equal, int offset, fdb_bool_t snapshot)
{
    FDBFuture *f = future_create(FUTURE_KEY);
    fdb_error_t err = read_check(tr);
    int max_len;
    const uint8_t *max = max_read_key(tr, &max_len);
    if (!err && key_cmp(key, key_len, max, max_len) > 0)
        err = FDB_ERR_KEY_OUTSIDE_LEGAL_RANGE;
    if (!err) {
        err = resolve_selector(tr, key, key_len, or_equal, offset, &f->bytes, &f->bytes_len);
        if (!err && !snapshot)
            add_selector_conflict(tr, key, key_len, f->bytes, f->bytes_len);
    }
    db_finish_future(tr->db, f, err);
    return f;
}

/* ---- range reads ---- */

/* The byte limit of a streaming mode (FoundationDB's client values). */
static int mode_byte_limit(int mode, int iteration)
{
    static const int iterator_bytes[] = {4096,  8192,  16384, 32768,  65536,
                                         131072, 262144, 524288, 1048576, 2097152};
    switch (mode) {
    case FDB_STREAMING_MODE_ITERATOR: {
        int i = iteration < 1 ? 0 : iteration > 10 ? 9 : iteration - 1;
        return iterator_bytes[i];
    }
    case FDB_STREAMING_MODE_SMALL:
        return 4096;
    case FDB_STREAMING_MODE_MEDIUM:
        return 65536;
    case FDB_STREAMING_MODE_LARGE:
        return 1048576;
    case FDB_STREAMING_MODE_SERIAL:
        return 10000000;
    default: /* WANT_ALL, EXACT */
        return 0;
    }
}

struct kv_offsets {
    size_t key_off, value_off;
    int key_len, value_len;
};

static FDBFuture *txn_get_range(FDBTransaction *tr, const uint8_t *bkey, int bkey_len,
                                fdb_bool_t b_or_equal, int b_offset, const uint8_t *ekey,
                                int ekey_len, fdb_bool_t e_or_equal, int e_offset, int limit,
                                int target_bytes, int mode, int iteration, fdb_bool_t snapshot,
                                fdb_bool_t reverse)
{
    FDBFuture *f = future_create(FUTURE_KEYVALUES);
    fdb_error_t err = read_check(tr);
    if (!err && (limit < 0 || target_bytes < 0 || mode < FDB_STREAMING_MODE_WANT_ALL ||
                 mode > FDB_STREAMING_MODE_SERIAL ||
                 (mode == FDB_STREAMING_MODE_ITERATOR && iteration < 1)))
        err = FDB_ERR_RANGE_LIMITS_INVALID;
    if (!err && mode == FDB_STREAMING_MODE_EXACT && limit == 0 && target_bytes == 0)
        err = FDB_ERR_EXACT_MODE_WITHOUT_LIMITS;
    int max_len;
    const uint8_t *max = max_read_key(tr, &max_len);
    if (!err && (key_cmp(bkey, bkey_len, max, max_len) > 0 ||
                 key_cmp(ekey, ekey_len, max, max_len) > 0))
        err = FDB_ERR_KEY_OUTSIDE_LEGAL_RANGE;
    if (err) {
        db_finish_future(tr->db, f, err);
        return f;
    }

    /* Resolve the selectors; first_greater_or_equal(k) is k itself. */
    uint8_t *begin = NULL, *end = NULL;
    int begin_len = 0, end_len = 0;
    if (!b_or_equal && b_offset == 1) {
        begin = malloc(bkey_len ? (size_t)bkey_len : 1);
        if (!begin)
            abort();
        memcpy(begin, bkey, (size_t)bkey_len);
        begin_len = bkey_len;
    } else {
        err = resolve_selector(tr, bkey, bkey_len, b_or_equal, b_offset, &begin, &begin_len);
    }
    if (!err && !e_or_equal && e_offset == 1) {
        end = malloc(ekey_len ? (size_t)ekey_len : 1);
        if (!end)
            abort();
        memcpy(end, ekey, (size_t)ekey_len);
        end_len = ekey_len;
    } else if (!err) {
        err = resolve_selector(tr, ekey, ekey_len, e_or_equal, e_offset, &end, &end_len);
    }

    int byte_limit = mode_byte_limit(mode, iteration);
    if (target_bytes && (!byte_limit || target_bytes < byte_limit))
        byte_limit = target_bytes;

    VEC(struct kv_offsets) rows = {0};
    size_t bytes_used = 0, bytes_cap = 0;
    uint8_t *buf = NULL;
    int more = 0;
    if (!err && key_cmp(begin, begin_len, end, end_len) < 0) {
        struct cursor c;
        cursor_open(&c, tr, begin, begin_len, end, end_len);
        if (!reverse)
            cursor_seek_ge(&c, begin, begin_len, 1);
        else
            cursor_seek_le(&c, end, end_len, 0);
        size_t counted = 0;
        while (c.valid) {
            if (!reverse ? key_cmp(c.key, c.key_len, end, end_len) >= 0
                         : key_cmp(c.key, c.key_len, begin, begin_len) < 0)
                break;
            if ((limit && rows.count >= limit) || (byte_limit && counted >= (size_t)byte_limit)) {
                more = 1;
                break;
            }
            size_t need = (size_t)c.key_len + (size_t)c.value_len;
            if (bytes_used + need > bytes_cap) {
                bytes_cap = (bytes_used + need) * 2 + 256;
                buf = realloc(buf, bytes_cap);
                if (!buf)
                    abort();
            }
            struct kv_offsets o = {bytes_used, bytes_used + (size_t)c.key_len, c.key_len,
                                   c.value_len};
            memcpy(buf + o.key_off, c.key, (size_t)c.key_len);
            memcpy(buf + o.value_off, c.value, (size_t)c.value_len);
            bytes_used += need;
            counted += need;
            VEC_PUSH(rows, o);
            cursor_advance(&c);
        }
        err = c.err;
        cursor_close(&c);
    }
    if (!err && !snapshot) {
        /* What decided the answer: the whole range, or up to the last row returned. */
        if (!more) {
            add_range(tr, 0, begin, begin_len, end, end_len);
        } else {
            struct kv_offsets *last = &rows.items[rows.count - 1];
            if (!reverse) {
                uint8_t *e = arena_alloc(&tr->arena, (size_t)last->key_len + 1);
                memcpy(e, buf + last->key_off, (size_t)last->key_len);
                e[last->key_len] = 0;
                add_range(tr, 0, begin, begin_len, e, last->key_len + 1);
            } else {
                add_range(tr, 0, buf + last->key_off, last->key_len, end, end_len);
            }
        }
    }
    if (!err) {
        f->bytes = buf;
        f->bytes_len = (int)bytes_used;
        f->kv_count = rows.count;
        f->more = more;
        f->kvs = calloc(rows.count ? (size_t)rows.count : 1, sizeof(FDBKeyValue));
        if (!f->kvs)
            abort();
        for (int i = 0; i < rows.count; i++) {
            f->kvs[i].key = buf + rows.items[i].key_off;
            f->kvs[i].key_length = rows.items[i].key_len;
            f->kvs[i].value = buf + rows.items[i].value_off;
            f->kvs[i].value_length = rows.items[i].value_len;
        }
    } else {
        free(buf);
    }
    free(rows.items);
    free(begin);
    free(end);
    db_finish_future(tr->db, f, err);
    return f;
}

/* ---- writes ---- */

/* Checks a write's key; sets the deferred error (2) and returns nonzero if it must not
 * happen. */
static int write_check(FDBTransaction *tr, const uint8_t *key, int key_len)
{
    if (tr->state != TR_ACTIVE || tr->deferred_error) {
        if (!tr->deferred_error)
            tr->deferred_error = tr->state == TR_COMMITTING ? FDB_ERR_USED_DURING_COMMIT
                                                            : FDB_ERR_CLIENT_INVALID_OPERATION;
        return 1;
    }
    int max_len = tr->access_system_keys ? 2 : 1;
    const uint8_t *max = tr->access_system_keys ? MAX_KEY_SYSTEM : MAX_KEY_NORMAL;
    if (key_cmp(key, key_len, max, max_len) >= 0) {
        tr->deferred_error = FDB_ERR_KEY_OUTSIDE_LEGAL_RANGE;
        return 1;
    }
    int limit = key_len && key[0] == 0xff ? FDB_SYSTEM_KEY_SIZE_LIMIT : FDB_KEY_SIZE_LIMIT;
    if (key_len > limit) {
        tr->deferred_error = FDB_ERR_KEY_TOO_LARGE;
        return 1;
    }
    return 0;
}

static void record_mutation(FDBTransaction *tr, int type, const uint8_t *key, int key_len,
                            const uint8_t *param, int param_len)
{
    struct mutation m;
    m.type = type;
    m.key = arena_dup(&tr->arena, key, (size_t)key_len);
    m.key_len = key_len;
    m.param = arena_dup(&tr->arena, param, (size_t)param_len);
    m.param_len = param_len;
    tr->size += key_len + param_len;
    VEC_PUSH(tr->mutations, m);
}

/* The write conflict range of a single-key write, unless the option turned it off. */
static void record_write_conflict(FDBTransaction *tr, const uint8_t *key, int key_len)
{
    if (tr->next_write_no_conflict)
        tr->next_write_no_conflict = 0;
    else
        add_key_range(tr, 1, key, key_len);
}

static void txn_set(FDBTransaction *tr, const uint8_t *key, int key_len, const uint8_t *value,
                    int value_len)
{
    if (write_check(tr, key, key_len))
        return;
    if (value_len > FDB_VALUE_SIZE_LIMIT) {
        tr->deferred_error = FDB_ERR_VALUE_TOO_LARGE;
        return;
    }
    record_mutation(tr, MUT_SET, key, key_len, value, value_len);
    record_write_conflict(tr, key, key_len);
    writemap_set(tr->writes_view, key, key_len, value, value_len);
}

static void txn_clear(FDBTransaction *tr, const uint8_t *key, int key_len)
{
    if (write_check(tr, key, key_len))
        return;
    record_mutation(tr, MUT_CLEAR, key, key_len, NULL, 0);
    record_write_conflict(tr, key, key_len);
    writemap_clear(tr->writes_view, key, key_len);
}

static void txn_clear_range(FDBTransaction *tr, const uint8_t *begin, int begin_len,
                            const uint8_t *end, int end_len)
{
    if (write_check(tr, begin, begin_len))
        return;
    int max_len = tr->access_system_keys ? 2 : 1;
    const uint8_t *max = tr->access_system_keys ? MAX_KEY_SYSTEM : MAX_KEY_NORMAL;
    if (key_cmp(end, end_len, max, max_len) > 0) {
        tr->deferred_error = FDB_ERR_KEY_OUTSIDE_LEGAL_RANGE;
        return;
    }
    int c = key_cmp(begin, begin_len, end, end_len);
    if (c > 0) {
        tr->deferred_error = FDB_ERR_INVERTED_RANGE;
        return;
    }
    if (c == 0)
        return;
    record_mutation(tr, MUT_CLEAR_RANGE, begin, begin_len, end, end_len);
    if (tr->next_write_no_conflict)
        tr->next_write_no_conflict = 0;
    else
        add_range(tr, 1, begin, begin_len, end, end_len);
    writemap_clear_range(tr->writes_view, begin, begin_len, end, end_len);
}

static void txn_atomic_op(FDBTransaction *tr, const uint8_t *key, int key_len,
                          const uint8_t *param, int param_len, int op)
{
    if (!mutation_is_valid_atomic(op)) {
        if (!tr->deferred_error)
            tr->deferred_error = FDB_ERR_INVALID_MUTATION_TYPE;
        return;
    }
    int off, body;
    if (op == FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_KEY) {
        if (mutation_versionstamp_offset(key, key_len, &off, &body)) {
            if (!tr->deferred_error)
                tr->deferred_error = FDB_ERR_CLIENT_INVALID_OPERATION;
            return;
        }
        if (write_check(tr, key, body))
            return;
    } else if (write_check(tr, key, key_len)) {
        return;
    }
    if (param_len > FDB_VALUE_SIZE_LIMIT + (op == FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_VALUE ? 4 : 0)) {
        tr->deferred_error = FDB_ERR_VALUE_TOO_LARGE;
        return;
    }
    if (op == FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_VALUE &&
        mutation_versionstamp_offset(param, param_len, &off, &body)) {
        if (!tr->deferred_error)
            tr->deferred_error = FDB_ERR_CLIENT_INVALID_OPERATION;
        return;
    }
    record_mutation(tr, op, key, key_len, param, param_len);
    if (op == FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_KEY) {
        tr->next_write_no_conflict = 0; /* its conflict range is added at commit */
        return;
    }
    record_write_conflict(tr, key, key_len);
    if (op == FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_VALUE)
        writemap_set_unreadable(tr->writes_view, key, key_len);
    else
        writemap_atomic(tr->writes_view, key, key_len, op, param, param_len);
}

/* ---- commit ---- */

static FDBFuture *txn_watch(FDBTransaction *tr, const uint8_t *key, int key_len)
{
    FDBFuture *f = future_create(FUTURE_NONE);
    fdb_error_t err = read_check(tr);
    if (!err && tr->ryw_disabled)
        err = FDB_ERR_WATCHES_DISABLED;
    if (!err && key_len > FDB_KEY_SIZE_LIMIT)
        err = FDB_ERR_KEY_TOO_LARGE;
    int max_len;
    const uint8_t *max = max_read_key(tr, &max_len);
    if (!err && key_cmp(key, key_len, max, max_len) >= 0)
        err = FDB_ERR_KEY_OUTSIDE_LEGAL_RANGE;
    struct pending_watch w = {0};
    uint8_t *value = NULL;
    if (!err)
        err = view_get(tr, key, key_len, 1, &w.present, &value, &w.value_len);
    if (err) {
        free(value);
        db_finish_future(tr->db, f, err);
        return f;
    }
    w.key = arena_dup(&tr->arena, key, (size_t)key_len);
    w.key_len = key_len;
    w.value = arena_dup(&tr->arena, value, (size_t)w.value_len);
    free(value);
    future_ref(f); /* the operation's reference, until the watch fires or fails */
    w.future = f;
    VEC_PUSH(tr->watches, w);
    return f;
}

static FDBFuture *txn_get_versionstamp(FDBTransaction *tr)
{
    FDBFuture *f = future_create(FUTURE_KEY);
    if (tr->state != TR_ACTIVE) {
        db_finish_future(tr->db, f, tr->state == TR_COMMITTING ? FDB_ERR_USED_DURING_COMMIT
                                                               : FDB_ERR_CLIENT_INVALID_OPERATION);
        return f;
    }
    future_ref(f);
    VEC_PUSH(tr->stamps, f);
    return f;
}

#define MOVE_VEC(dst, src)                                                                     \
    do {                                                                                       \
        (dst).items = (src).items;                                                             \
        (dst).count = (src).count;                                                             \
        (dst).cap = (src).cap;                                                                 \
        (src).items = NULL;                                                                    \
        (src).count = (src).cap = 0;                                                           \
    } while (0)

static FDBFuture *txn_commit(FDBTransaction *tr)
{
    assert_tr_state(tr);
    FDBFuture *f = future_create(FUTURE_NONE);
    fdb_error_t err = 0;
    if (tr->state == TR_COMMITTING)
        err = FDB_ERR_USED_DURING_COMMIT;
    else if (tr->deferred_error)
        err = tr->deferred_error;
    else if (tr->state != TR_ACTIVE)
        err = FDB_ERR_CLIENT_INVALID_OPERATION;
    else if (tr->read_version_error)
        err = tr->read_version_error;
    else if (tr->timeout_ms && network_now_us() - tr->start_us > (uint64_t)tr->timeout_ms * 1000)
        err = FDB_ERR_TRANSACTION_TIMED_OUT;
    else if (tr->size > tr->size_limit)
        err = FDB_ERR_TRANSACTION_TOO_LARGE;
    if (err) {
        if (err != FDB_ERR_USED_DURING_COMMIT) {
            pthread_mutex_lock(&tr->mu);
            tr->state = TR_FAILED;
            pthread_mutex_unlock(&tr->mu);
            fail_pending(tr, err);
        }
        future_ref(f);
        future_complete_async(f, err, 0); /* commits always complete on the network thread */
        return f;
    }
    struct commit_req *req = calloc(1, sizeof(*req));
    if (!req)
        abort();
    pthread_mutex_lock(&tr->mu);
    tr->refs++;
    req->generation = tr->generation;
    tr->state = TR_COMMITTING;
    pthread_mutex_unlock(&tr->mu);
    req->tr = tr;
    future_ref(f);
    req->future = f;
    req->read_version = tr->snap ? tr->read_version : -1;
    arena_move(&req->arena, &tr->arena);
    MOVE_VEC(req->reads, tr->reads);
    MOVE_VEC(req->writes, tr->writes);
    MOVE_VEC(req->mutations, tr->mutations);
    MOVE_VEC(req->stamps, tr->stamps);
    MOVE_VEC(req->watches, tr->watches);
    req->first_in_batch = tr->first_in_batch;
    req->idempotent = tr->idempotent;
    db_submit_commit(tr->db, req);
    return f;
}

/* The commit thread's answer, on the network thread. Frees req. */
void txn_commit_done(struct commit_req *req)
{
    FDBTransaction *tr = req->tr;
    pthread_mutex_lock(&tr->mu);
    if (tr->generation == req->generation) {
        tr->state = req->error ? TR_FAILED : TR_COMMITTED;
        if (!req->error) {
            tr->committed_version = req->version;
            if (req->version >= 0) {
                for (int i = 0; i < 8; i++)
                    tr->versionstamp[i] = (uint8_t)((uint64_t)req->version >> (56 - 8 * i));
                tr->versionstamp[8] = (uint8_t)(req->batch_index >> 8);
                tr->versionstamp[9] = (uint8_t)req->batch_index;
            }
        }
    }
    pthread_mutex_unlock(&tr->mu);
    for (int i = 0; i < req->stamps.count; i++) {
        FDBFuture *s = req->stamps.items[i];
        fdb_error_t err = req->error;
        if (!err && req->version < 0) {
            err = FDB_ERR_NO_COMMIT_VERSION;
        } else if (!err) {
            s->bytes = malloc(10);
            if (!s->bytes)
                abort();
            for (int b = 0; b < 8; b++)
                s->bytes[b] = (uint8_t)((uint64_t)req->version >> (56 - 8 * b));
            s->bytes[8] = (uint8_t)(req->batch_index >> 8);
            s->bytes[9] = (uint8_t)req->batch_index;
            s->bytes_len = 10;
        }
        future_set_ready(s, err);
        future_unref(s);
    }
    if (req->error) /* registered watches were handed to the engine on success */
        for (int i = 0; i < req->watches.count; i++) {
            future_set_ready(req->watches.items[i].future, req->error);
            future_unref(req->watches.items[i].future);
        }
    future_set_ready(req->future, req->error);
    future_unref(req->future);
    arena_free(&req->arena);
    free(req->reads.items);
    free(req->writes.items);
    free(req->mutations.items);
    free(req->stamps.items);
    free(req->watches.items);
    struct FDB_database *db = tr->db;
    free(req);
    txn_unref(tr);
    atomic_fetch_sub(&db->commits_in_flight, 1); /* last: the database may go away now */
}

static fdb_error_t txn_get_committed_version(FDBTransaction *tr, int64_t *out)
{
    pthread_mutex_lock(&tr->mu);
    int committed = tr->state == TR_COMMITTED;
    *out = tr->committed_version;
    pthread_mutex_unlock(&tr->mu);
    if (!committed)
        *out = -1; /* FoundationDB reports -1 until a commit succeeded */
    return 0;
}

/* ---- retries ---- */

static FDBFuture *txn_on_error(FDBTransaction *tr, fdb_error_t error)
{
    FDBFuture *f = future_create(FUTURE_NONE);
    if (!fdb_errors_predicate(FDB_ERROR_PREDICATE_RETRYABLE, error) ||
        (tr->retry_limit >= 0 && tr->retries >= tr->retry_limit)) {
        future_set_ready(f, error);
        return f;
    }
    tr->retries++;
    double backoff = tr->backoff_s;
    double max_delay = (double)tr->max_retry_delay_ms / 1000.0;
    tr->backoff_s = fmin(backoff * 2, max_delay);
    double delay = fmin(backoff, max_delay) * (double)(db_random(tr->db) % 1000000) / 1e6;
    reset_state(tr, 1);
    future_ref(f);
    future_complete_async(f, 0, (uint64_t)(delay * 1e6));
    return f;
}

void embedded_fill_txn_api(struct kv_api *api)
{
    api->database_create_transaction = txn_create;
    api->transaction_destroy = txn_destroy;
    api->transaction_cancel = txn_cancel;
    api->transaction_reset = txn_reset;
    api->transaction_set_option = txn_set_option;
    api->transaction_set_read_version = txn_set_read_version;
    api->transaction_get_read_version = txn_get_read_version;
    api->transaction_get = txn_get;
    api->transaction_get_key = txn_get_key;
    api->transaction_get_range = txn_get_range;
    api->transaction_set = txn_set;
    api->transaction_clear = txn_clear;
    api->transaction_clear_range = txn_clear_range;
    api->transaction_atomic_op = txn_atomic_op;
    api->transaction_add_conflict_range = txn_add_conflict_range;
    api->transaction_commit = txn_commit;
    api->transaction_get_committed_version = txn_get_committed_version;
    api->transaction_get_versionstamp = txn_get_versionstamp;
    api->transaction_watch = txn_watch;
    api->transaction_on_error = txn_on_error;
}

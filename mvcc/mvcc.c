/* mvcc.c -- etcd's revision semantics on the store (layout in keys.h).
 *
 * Every etcd request is one store transaction. A write request (Put, a DeleteRange that
 * deletes something, a Txn whose chosen branch writes) commits as the first transaction of
 * its commit batch (FIRST_IN_BATCH), and its revision is its commit version: every store key
 * or value that must carry the revision is written with a versionstamped operation, and the
 * response learns the revision from the commit's versionstamp. No write reads a shared
 * counter, so writes to different keys never conflict.
 *
 * Invariants:
 * (1) each write request creates exactly one revision, shared by all its changes; reads
 *     create none;
 * (2) revisions strictly increase in commit order (commit versions do);
 * (3) a response's header.revision is the revision the whole response was read at: the
 *     newest write's revision as of the read version, or the request's own revision;
 * (4) a write is applied at most once: a commit whose outcome is unknown is not retried but
 *     reported (MVCC_ERR_TIMEOUT), unless the store guarantees idempotency;
 * (5) the store transactions read their own writes through `own` (read-your-writes is off,
 *     because versionstamped values cannot be read back before commit). */
#include "mvcc/mvcc.h"

#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "kv/deadline.h"
#include "kv/retry.h"
#include "mvcc/key_index.h"
#include "mvcc/keys.h"

#define BODY_ABORT 1       /* a body found an etcd error: stop without retrying */
#define SCAN_BATCH 1000    /* rows per store range read */
#define COMPACT_BATCH 2000 /* history rows examined per compaction transaction */
#define INDEX_CHUNK 10000  /* keys per key-index load transaction */
#define INDEX_WAIT_MS 100  /* how long a Range waits for the key index to reach its revision */
#define EVENT_PUT 0
#define EVENT_DELETE 1
#define EVENT_PUT_INLINE 2 /* a PUT whose key the same write deleted again (log_put_inline) */
#define STORE_VALUE_MAX 100000

struct mvcc {
    const struct kv_api *api;
    FDBDatabase *db;
    struct keys keys;
    int max_txn_ops;
    struct key_index *index;     /* counts ranges (key_index.h); kept by the watch tail */
    struct tuple_buf index_next; /* the index loader's next store key (tail thread only) */
};

const char *mvcc_strerror(int err)
{
    switch (err) {
    case MVCC_OK:
        return "ok";
    case MVCC_ERR_COMPACTED:
        return "mvcc: required revision has been compacted";
    case MVCC_ERR_FUTURE_REV:
        return "mvcc: required revision is a future revision";
    case MVCC_ERR_EMPTY_KEY:
        return "key is not provided";
    case MVCC_ERR_TOO_MANY_OPS:
        return "too many operations in txn request";
    case MVCC_ERR_DUPLICATE_KEY:
        return "duplicate key given in txn request";
    case MVCC_ERR_LEASE_NOT_FOUND:
        return "requested lease not found";
    case MVCC_ERR_VALUE_PROVIDED:
        return "value is provided";
    case MVCC_ERR_LEASE_PROVIDED:
        return "lease is provided";
    case MVCC_ERR_KEY_NOT_FOUND:
        return "key not found";
    case MVCC_ERR_TOO_LARGE:
        return "request is too large";
    case MVCC_ERR_TIMEOUT:
        return "request timed out";
    case MVCC_ERR_STORE:
        return "store error";
    case MVCC_ERR_CORRUPT:
        return "corrupt record";
    default:
        return "unknown error";
    }
}

int mvcc_open(const struct mvcc_config *config, struct mvcc **out)
{
    struct mvcc *m = calloc(1, sizeof(*m));
    if (!m)
        abort();
    m->api = config->api;
    m->db = config->db;
    m->max_txn_ops = config->max_txn_ops > 0 ? config->max_txn_ops : 128;
    keys_init(&m->keys, config->prefix ? config->prefix : "");
    m->index = key_index_create();
    tuple_buf_init(&m->index_next);
    *out = m;
    return 0;
}

void mvcc_close(struct mvcc *m)
{
    if (!m)
        return;
    keys_free(&m->keys);
    key_index_destroy(m->index);
    tuple_buf_free(&m->index_next);
    free(m);
}

/* ---- one request's execution ---- */

/* A write of this request, seen by its later reads (5). */
struct own_write {
    const uint8_t *key;
    size_t key_len;
    int deleted;
    Mvccpb__KeyValue *kv; /* the new value, NULL if deleted */
    int event;            /* its change-log event (a put's, for log_put_inline) */
    int64_t event_prev;   /* the prev mod revision that event names */
    int64_t pre_mod;      /* the key's mod revision before this write request (0: none) */
};

struct exec {
    struct mvcc *m;
    const struct kv_api *api;
    FDBTransaction *tr;
    struct arena arena; /* this attempt's allocations; moved to the caller on success */
    struct tuple_buf k1, k2, v;
    int64_t cur_rev, compact_rev;
    int writes; /* etcd changes made by this attempt */
    int rev_marked;
    uint16_t next_event;
    struct own_write *own;
    int own_count, own_cap;
    int64_t **patch; /* fields that get the new revision after commit */
    int patch_count, patch_cap;
    FDBFuture *stamp;
    int error;
    fdb_error_t store_error;
    int64_t new_rev;
    size_t delete_limit; /* chunked DeleteRange (see exec_delete_range) */
    ProtobufCBinaryData delete_from, delete_next;
    int delete_more;
    int path_checked; /* a Txn checked its Puts' leases before running them */
};

static void exec_init(struct exec *ex, struct mvcc *m)
{
    memset(ex, 0, sizeof(*ex));
    ex->m = m;
    ex->api = m->api;
    tuple_buf_init(&ex->k1);
    tuple_buf_init(&ex->k2);
    tuple_buf_init(&ex->v);
}

/* Forgets everything an attempt did (before the first attempt and each retry). */
static void exec_restart(struct exec *ex, FDBTransaction *tr)
{
    arena_free(&ex->arena);
    ex->tr = tr;
    ex->writes = ex->rev_marked = 0;
    ex->next_event = 0;
    ex->own_count = ex->patch_count = 0;
    ex->path_checked = 0;
    ex->error = 0;
    if (ex->stamp) {
        ex->api->future_destroy(ex->stamp);
        ex->stamp = NULL;
    }
}

static void exec_free(struct exec *ex)
{
    arena_free(&ex->arena);
    tuple_buf_free(&ex->k1);
    tuple_buf_free(&ex->k2);
    tuple_buf_free(&ex->v);
    free(ex->own);
    free(ex->patch);
    if (ex->stamp)
        ex->api->future_destroy(ex->stamp);
}

static void *grow(void *items, int *cap, int count, size_t size)
{
    if (count < *cap)
        return items;
    *cap = *cap ? *cap * 2 : 16;
    items = realloc(items, (size_t)*cap * size);
    if (!items)
        abort();
    return items;
}

static void patch_later(struct exec *ex, int64_t *field)
{
    ex->patch = grow(ex->patch, &ex->patch_cap, ex->patch_count, sizeof(*ex->patch));
    ex->patch[ex->patch_count++] = field;
}

static void *alloc0(struct exec *ex, size_t n)
{
    void *p = arena_alloc(&ex->arena, n);
    memset(p, 0, n);
    return p;
}

/* Returns items (count used, *cap allocated, `size` bytes each) with room for one more,
 * doubling into a new arena block when full; the old block stays with the arena. */
static void *arena_grow(struct arena *a, void *items, size_t count, size_t *cap, size_t size)
{
    if (count < *cap)
        return items;
    size_t n = *cap ? *cap * 2 : 16;
    void *p = arena_alloc(a, n * size);
    if (count)
        memcpy(p, items, count * size);
    *cap = n;
    return p;
}

static Etcdserverpb__ResponseHeader *new_header(struct exec *ex, int64_t revision)
{
    Etcdserverpb__ResponseHeader *h = alloc0(ex, sizeof(*h));
    etcdserverpb__response_header__init(h);
    h->revision = revision;
    return h;
}

static ProtobufCBinaryData copy_bytes(struct exec *ex, const uint8_t *p, size_t n)
{
    ProtobufCBinaryData b = {n, n ? arena_dup(&ex->arena, p, n) : NULL};
    return b;
}

static int body_fail(struct exec *ex, int error)
{
    ex->error = error;
    return BODY_ABORT;
}

/* Waits for f; on success leaves it for the caller to read and destroy. */
static fdb_error_t wait_future(struct exec *ex, FDBFuture *f)
{
    fdb_error_t err = kv_wait(ex->api, f);
    if (err)
        ex->api->future_destroy(f);
    return err;
}

/* Reads one store value into the arena; *present says whether it exists. */
static fdb_error_t store_get(struct exec *ex, const struct tuple_buf *key, int snapshot,
                             int *present, const uint8_t **value, int *len)
{
    FDBFuture *f = ex->api->transaction_get(ex->tr, key->data, (int)key->len, snapshot);
    fdb_error_t err = wait_future(ex, f);
    if (err)
        return err;
    const uint8_t *v;
    err = ex->api->future_get_value(f, present, &v, len);
    if (!err && *present)
        *value = arena_dup(&ex->arena, v, (size_t)*len);
    ex->api->future_destroy(f);
    return err;
}

/* Makes buf the first key after its contents (a range from there excludes them). */
static void to_key_after(struct tuple_buf *buf)
{
    static const uint8_t zero = 0;
    tuple_buf_append(buf, &zero, 1);
}

/* Calls row() for every store pair in [begin, end), in batches; row returns nonzero to
 * stop. Keys and values passed to row are valid only during the call. */
typedef int (*row_fn)(struct exec *ex, const FDBKeyValue *kv, void *arg);

static fdb_error_t store_scan(struct exec *ex, const struct tuple_buf *begin,
                              const struct tuple_buf *end, int snapshot, row_fn row, void *arg)
{
    struct tuple_buf from;
    tuple_buf_init(&from);
    tuple_buf_append(&from, begin->data, begin->len);
    int or_equal = 0; /* first_greater_or_equal(from), then first_greater_than(last) */
    fdb_error_t err = 0;
    for (int iteration = 1;; iteration++) {
        FDBFuture *f = ex->api->transaction_get_range(
            ex->tr, from.data, (int)from.len, or_equal, 1, end->data, (int)end->len, 0, 1,
            SCAN_BATCH, 0, FDB_STREAMING_MODE_ITERATOR, iteration, snapshot, 0);
        err = wait_future(ex, f);
        if (err)
            break;
        const FDBKeyValue *kvs;
        int count, more, stop = 0;
        err = ex->api->future_get_keyvalue_array(f, &kvs, &count, &more);
        for (int i = 0; !err && i < count && !stop; i++)
            stop = row(ex, &kvs[i], arg);
        if (!err && count > 0) {
            tuple_buf_reset(&from);
            tuple_buf_append(&from, kvs[count - 1].key, (size_t)kvs[count - 1].key_length);
            or_equal = 1;
        }
        ex->api->future_destroy(f);
        if (err || stop || !more || count == 0)
            break;
    }
    tuple_buf_free(&from);
    return err;
}

/* Reads the current and compacted revisions (snapshot reads: they conflict with nothing). */
static fdb_error_t read_meta(struct exec *ex)
{
    int present, len;
    const uint8_t *v;
    keys_meta(&ex->m->keys, &ex->k1, "rev");
    fdb_error_t err = store_get(ex, &ex->k1, 1, &present, &v, &len);
    if (err)
        return err;
    ex->cur_rev = present && len >= 10 ? keys_stamp_revision(v) : 1;
    keys_meta(&ex->m->keys, &ex->k1, "compact");
    err = store_get(ex, &ex->k1, 1, &present, &v, &len);
    if (err)
        return err;
    ex->compact_rev = 0;
    if (present && len == 8)
        for (int i = 0; i < 8; i++)
            ex->compact_rev = ex->compact_rev << 8 | v[i];
    return 0;
}

/* ---- records to KeyValues ---- */

struct chunk_collect {
    uint8_t *dst;
    uint32_t filled, total;
};

static int chunk_row(struct exec *ex, const FDBKeyValue *kv, void *arg)
{
    struct chunk_collect *c = arg;
    uint32_t n = (uint32_t)kv->value_length;
    if (n > c->total - c->filled)
        n = c->total - c->filled;
    memcpy(c->dst + c->filled, kv->value, n);
    c->filled += n;
    return c->filled == c->total;
}

/* A KeyValue from a record; reads the value's chunks under chunk_prefix when split. */
static int record_to_kv(struct exec *ex, const uint8_t *key, size_t key_len, const uint8_t *v,
                        size_t vlen, int64_t mod_rev, const struct tuple_buf *chunk_prefix,
                        int snapshot, Mvccpb__KeyValue **out, int *tombstone)
{
    struct record r;
    if (record_decode(v, vlen, &r) != 0)
        return body_fail(ex, MVCC_ERR_CORRUPT);
    Mvccpb__KeyValue *kv = alloc0(ex, sizeof(*kv));
    mvccpb__key_value__init(kv);
    kv->key = copy_bytes(ex, key, key_len);
    kv->mod_revision = mod_rev ? mod_rev : r.mod_rev;
    kv->create_revision = (r.flags & RECORD_CREATE_SELF) ? kv->mod_revision : r.create_rev;
    kv->version = r.version;
    kv->lease = r.lease;
    if (tombstone)
        *tombstone = (r.flags & RECORD_TOMBSTONE) != 0;
    if (!(r.flags & RECORD_CHUNKED)) {
        kv->value = copy_bytes(ex, r.part, r.part_len);
    } else {
        uint8_t *buf = arena_alloc(&ex->arena, r.total_len);
        memcpy(buf, r.part, r.part_len);
        struct chunk_collect c = {buf, r.part_len, r.total_len};
        struct tuple_buf end;
        tuple_buf_init(&end);
        tuple_buf_append(&end, chunk_prefix->data, chunk_prefix->len);
        tuple_buf_append(&end, "\xff", 1);
        fdb_error_t err = store_scan(ex, chunk_prefix, &end, snapshot, chunk_row, &c);
        tuple_buf_free(&end);
        if (err)
            return err;
        if (c.filled != c.total)
            return body_fail(ex, MVCC_ERR_CORRUPT);
        kv->value.data = buf;
        kv->value.len = r.total_len;
    }
    *out = kv;
    return 0;
}

/* A list of KeyValues being collected. */
struct kv_list {
    Mvccpb__KeyValue **items;
    size_t count, cap;
    int64_t total; /* keys counted, collected or not */
    size_t want;   /* collect at most this many (SIZE_MAX: all) */
    int stop_when_full; /* stop reading (and counting) once `want` are collected */
};

static void kv_list_push(struct exec *ex, struct kv_list *l, Mvccpb__KeyValue *kv)
{
    l->items = arena_grow(&ex->arena, l->items, l->count, &l->cap, sizeof(*l->items));
    l->items[l->count++] = kv;
}

struct latest_scan {
    struct kv_list *list;
    int snapshot;
    int err;
    struct tuple_buf key, chunks;
};

static int latest_row(struct exec *ex, const FDBKeyValue *row, void *arg)
{
    struct latest_scan *s = arg;
    if (s->list->count >= s->list->want && s->list->stop_when_full)
        return 1;
    s->list->total++;
    if (s->list->count >= s->list->want)
        return 0; /* only counting */
    if (keys_decode_latest(&ex->m->keys, row->key, (size_t)row->key_length, &s->key) != 0) {
        s->err = body_fail(ex, MVCC_ERR_CORRUPT);
        return 1;
    }
    keys_latest_chunk(&ex->m->keys, &s->chunks, s->key.data, s->key.len, 1);
    s->chunks.len -= 2; /* the chunk prefix: drop the packed index 1 (0x15 0x01) */
    Mvccpb__KeyValue *kv;
    int err = record_to_kv(ex, s->key.data, s->key.len, row->value, (size_t)row->value_length, 0,
                           &s->chunks, s->snapshot, &kv, NULL);
    if (err) {
        s->err = err;
        return 1;
    }
    kv_list_push(ex, s->list, kv);
    return 0;
}

/* The newest KeyValue of one key (NULL if none) at the read version. A point read, not a
 * one-key scan: the store's bloom filters then skip the files that cannot hold the key,
 * where a scan seeks in the index of every file. */
static int latest_one(struct exec *ex, const ProtobufCBinaryData *key, int snapshot,
                      Mvccpb__KeyValue **out)
{
    *out = NULL;
    keys_latest(&ex->m->keys, &ex->k1, key->data, key->len);
    int present, len;
    const uint8_t *v;
    fdb_error_t err = store_get(ex, &ex->k1, snapshot, &present, &v, &len);
    if (err || !present)
        return err;
    struct tuple_buf chunks;
    tuple_buf_init(&chunks);
    keys_latest_chunk(&ex->m->keys, &chunks, key->data, key->len, 1);
    chunks.len -= 2; /* the chunk prefix: drop the packed index 1 (0x15 0x01) */
    int rc = record_to_kv(ex, key->data, key->len, v, (size_t)len, 0, &chunks, snapshot, out,
                          NULL);
    tuple_buf_free(&chunks);
    return rc;
}

/* The live keys in etcd's [key, range_end) at the read version. */
static int range_latest(struct exec *ex, const ProtobufCBinaryData *key,
                        const ProtobufCBinaryData *range_end, int snapshot, struct kv_list *out)
{
    if (range_end->len == 0) { /* one key */
        Mvccpb__KeyValue *kv;
        int err = latest_one(ex, key, snapshot, &kv);
        if (!err && kv) {
            out->total++;
            if (out->count < out->want)
                kv_list_push(ex, out, kv);
        }
        return err;
    }
    struct tuple_buf begin, end;
    tuple_buf_init(&begin);
    tuple_buf_init(&end);
    keys_latest_range(&ex->m->keys, key->data, key->len, range_end->data, range_end->len, &begin,
                      &end);
    struct latest_scan s = {out, snapshot, 0, {0}, {0}};
    tuple_buf_init(&s.key);
    tuple_buf_init(&s.chunks);
    fdb_error_t err = store_scan(ex, &begin, &end, snapshot, latest_row, &s);
    tuple_buf_free(&s.key);
    tuple_buf_free(&s.chunks);
    tuple_buf_free(&begin);
    tuple_buf_free(&end);
    return err ? err : s.err;
}

/* History scan at revision `at`: for each key, the newest record with revision <= at. */
struct history_scan {
    struct kv_list *list;
    int64_t at;
    int err;
    struct tuple_buf key, cur_key, chunks;
    int have;          /* a candidate for cur_key */
    uint8_t *cand;     /* candidate record value (malloc'd) */
    size_t cand_len;
    int64_t cand_rev;
};

static int history_flush(struct exec *ex, struct history_scan *s)
{
    if (!s->have)
        return 0;
    s->have = 0;
    struct record r;
    if (record_decode(s->cand, s->cand_len, &r) != 0) {
        s->err = body_fail(ex, MVCC_ERR_CORRUPT);
        return 1;
    }
    if (r.flags & RECORD_TOMBSTONE)
        return 0;
    s->list->total++;
    if (s->list->count >= s->list->want)
        return 0;
    keys_history_chunk_prefix(&ex->m->keys, &s->chunks, s->cur_key.data, s->cur_key.len,
                              s->cand_rev);
    Mvccpb__KeyValue *kv;
    int err = record_to_kv(ex, s->cur_key.data, s->cur_key.len, s->cand, s->cand_len,
                           s->cand_rev, &s->chunks, 1, &kv, NULL);
    if (err) {
        s->err = err;
        return 1;
    }
    kv_list_push(ex, s->list, kv);
    return 0;
}

static int history_row(struct exec *ex, const FDBKeyValue *row, void *arg)
{
    struct history_scan *s = arg;
    int64_t rev;
    if (keys_decode_history(&ex->m->keys, row->key, (size_t)row->key_length, &s->key, &rev) !=
        0) {
        s->err = body_fail(ex, MVCC_ERR_CORRUPT);
        return 1;
    }
    if (s->key.len != s->cur_key.len || memcmp(s->key.data, s->cur_key.data, s->key.len) != 0) {
        if (history_flush(ex, s))
            return 1;
        if (s->list->stop_when_full && s->list->count >= s->list->want)
            return 1;
        tuple_buf_reset(&s->cur_key);
        tuple_buf_append(&s->cur_key, s->key.data, s->key.len);
    }
    if (rev <= s->at) {
        free(s->cand);
        s->cand = malloc((size_t)row->value_length + 1);
        if (!s->cand)
            abort();
        memcpy(s->cand, row->value, (size_t)row->value_length);
        s->cand_len = (size_t)row->value_length;
        s->cand_rev = rev;
        s->have = 1;
    }
    return 0;
}

static int range_history(struct exec *ex, const ProtobufCBinaryData *key,
                         const ProtobufCBinaryData *range_end, int64_t at, struct kv_list *out)
{
    struct tuple_buf begin, end;
    tuple_buf_init(&begin);
    tuple_buf_init(&end);
    keys_history_range(&ex->m->keys, key->data, key->len, range_end->data, range_end->len,
                       &begin, &end);
    struct history_scan s;
    memset(&s, 0, sizeof(s));
    s.list = out;
    s.at = at;
    tuple_buf_init(&s.key);
    tuple_buf_init(&s.cur_key);
    tuple_buf_init(&s.chunks);
    fdb_error_t err = store_scan(ex, &begin, &end, 1, history_row, &s);
    if (!err && !s.err)
        history_flush(ex, &s);
    free(s.cand);
    tuple_buf_free(&s.key);
    tuple_buf_free(&s.cur_key);
    tuple_buf_free(&s.chunks);
    tuple_buf_free(&begin);
    tuple_buf_free(&end);
    return err ? err : s.err;
}

/* ---- Range ---- */

static int key_in_range(const uint8_t *k, size_t kl, const ProtobufCBinaryData *key,
                        const ProtobufCBinaryData *range_end)
{
    size_t n = kl < key->len ? kl : key->len;
    int c = memcmp(k, key->data, n);
    if (c < 0 || (c == 0 && kl < key->len))
        return 0;
    if (range_end->len == 0)
        return kl == key->len && c == 0;
    if (range_end->len == 1 && range_end->data[0] == 0)
        return 1;
    n = kl < range_end->len ? kl : range_end->len;
    c = memcmp(k, range_end->data, n);
    return c < 0 || (c == 0 && kl < range_end->len);
}

static int compare_bytes(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->data, b->data, n) : 0;
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

static int kv_key_cmp(const void *a, const void *b)
{
    const Mvccpb__KeyValue *x = *(Mvccpb__KeyValue *const *)a, *y = *(Mvccpb__KeyValue *const *)b;
    return compare_bytes(&x->key, &y->key);
}

/* Merges this request's own writes into a latest-range result (5). */
static void merge_own(struct exec *ex, const ProtobufCBinaryData *key,
                      const ProtobufCBinaryData *range_end, struct kv_list *l)
{
    for (int i = 0; i < ex->own_count; i++) {
        struct own_write *w = &ex->own[i];
        if (!key_in_range(w->key, w->key_len, key, range_end))
            continue;
        size_t j;
        for (j = 0; j < l->count; j++)
            if (l->items[j]->key.len == w->key_len &&
                memcmp(l->items[j]->key.data, w->key, w->key_len) == 0)
                break;
        if (j < l->count) {
            if (w->deleted) {
                l->items[j] = l->items[--l->count];
                l->total--;
            } else {
                l->items[j] = w->kv;
            }
        } else if (!w->deleted) {
            kv_list_push(ex, l, w->kv);
            l->total++;
        }
    }
    if (l->count > 1)
        qsort(l->items, l->count, sizeof(*l->items), kv_key_cmp);
}

/* A revision for comparisons: this transaction's own writes carry 0 until the commit
 * tells their revision (patch_later), the next after cur_rev (as in etcd, where it is
 * cur_rev + 1: a filter at any later revision keeps them). */
static int64_t rev_order(int64_t rev, int64_t cur_rev)
{
    return rev ? rev : cur_rev + 1;
}

static int64_t sort_field(const Mvccpb__KeyValue *kv, int target, int64_t cur_rev)
{
    switch (target) {
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION:
        return kv->version;
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE:
        return rev_order(kv->create_revision, cur_rev);
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD:
        return rev_order(kv->mod_revision, cur_rev);
    default:
        return 0;
    }
}

struct sort_spec {
    int target, descending;
    int64_t cur_rev;
};

static int kv_sort_cmp(const void *a, const void *b, void *arg)
{
    const Mvccpb__KeyValue *x = *(Mvccpb__KeyValue *const *)a, *y = *(Mvccpb__KeyValue *const *)b;
    const struct sort_spec *spec = arg;
    int t = spec->target, c;
    if (t == ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY) {
        c = compare_bytes(&x->key, &y->key);
    } else {
        if (t == ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE) {
            c = compare_bytes(&x->value, &y->value);
        } else {
            int64_t p = sort_field(x, t, spec->cur_rev), q = sort_field(y, t, spec->cur_rev);
            c = (p > q) - (p < q);
        }
        if (c == 0) /* ties stay in key order, either direction */
            return compare_bytes(&x->key, &y->key);
    }
    return spec->descending ? -c : c;
}

/* Sorts by target, descending if asked. Keys that tie on the target keep their key order:
 * what etcd's sort gives for the ranges it sorts by insertion (up to 12 keys); for larger
 * ones etcd's order of ties is not defined. */
static void sort_kvs(Mvccpb__KeyValue **items, size_t n, int target, int descending,
                     int64_t cur_rev)
{
    struct sort_spec spec = {target, descending, cur_rev};
    if (n > 1)
        qsort_r(items, n, sizeof(*items), kv_sort_cmp, &spec);
}

/* The number of live keys in [key, range_end) at revision rev (the newest, ex->cur_rev, or
 * an older one), for a snapshot Range whose scan stopped early: from the key index, or by
 * reading the whole range when the index cannot tell (loading, its tail not at rev within
 * INDEX_WAIT_MS, or rev older than the changes it keeps). */
static int count_rest(struct exec *ex, const ProtobufCBinaryData *key,
                      const ProtobufCBinaryData *range_end, int64_t rev, int64_t *total)
{
    if (key_index_count(ex->m->index, key, range_end, rev, INDEX_WAIT_MS, total) == 0)
        return 0;
    struct kv_list all = {NULL, 0, 0, 0, 0, 0}; /* count only */
    int err = rev == ex->cur_rev ? range_latest(ex, key, range_end, 1, &all)
                                 : range_history(ex, key, range_end, rev, &all);
    *total = all.total;
    return err;
}

static int range_valid(const Etcdserverpb__RangeRequest *req)
{
    if (req->key.len == 0)
        return MVCC_ERR_EMPTY_KEY;
    return 0;
}

/* A Range's revision (0: the newest) must be neither in the future nor compacted. */
static int range_rev_valid(struct exec *ex, int64_t rev)
{
    if (rev > ex->cur_rev)
        return body_fail(ex, MVCC_ERR_FUTURE_REV);
    if (rev > 0 && rev < ex->compact_rev)
        return body_fail(ex, MVCC_ERR_COMPACTED);
    return 0;
}

/* Executes a Range inside the current attempt (also for Range ops of a Txn). */
static int exec_range(struct exec *ex, const Etcdserverpb__RangeRequest *req,
                      Etcdserverpb__RangeResponse *resp, int snapshot)
{
    etcdserverpb__range_response__init(resp);
    int64_t read_rev = ex->writes ? 0 : ex->cur_rev; /* after own writes: the new one */
    int64_t rev = req->revision;
    int err = range_rev_valid(ex, rev);
    if (err)
        return err;
    /* As etcd: only an explicit sort order reads the whole range; a sort target without
     * one sorts the first limit + 1 keys (in key order) and keeps limit of them. */
    int sorted = req->sort_order != ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE;
    int filtered = req->min_mod_revision || req->max_mod_revision ||
                   req->min_create_revision || req->max_create_revision;
    /* In a Txn after its writes, a Range without a revision sees them (etcd reads its write
     * buffer); one with a revision reads the store as of it, before them. The own writes
     * are merged into every key of the range (and counted). */
    int own = ex->own_count > 0 && rev <= 0;
    struct kv_list l = {NULL, 0, 0, 0, SIZE_MAX, 0};
    if (!own && req->count_only)
        l.want = 0;
    else if (!own && req->limit > 0 && !sorted && !filtered)
        l.want = (size_t)req->limit + 1;
    int latest = rev <= 0 || rev >= ex->cur_rev;
    /* The scan stops after the keys it returns; if more remain, the key index counts them.
     * Only for a snapshot read (a Txn's reads must cover the range for its conflicts) that
     * sees no own writes. */
    int counted_apart = snapshot && l.want != SIZE_MAX && !ex->writes && req->range_end.len;
    l.stop_when_full = counted_apart;
    if (latest) {
        err = range_latest(ex, &req->key, &req->range_end, snapshot, &l);
        if (!err && own)
            merge_own(ex, &req->key, &req->range_end, &l);
    } else {
        err = range_history(ex, &req->key, &req->range_end, rev, &l);
    }
    if (!err && counted_apart && l.count >= l.want)
        err = count_rest(ex, &req->key, &req->range_end, latest ? ex->cur_rev : rev, &l.total);
    if (err)
        return err;
    if (!sorted && !filtered && req->limit > 0 && l.count > (size_t)req->limit + 1)
        l.count = (size_t)req->limit + 1; /* own writes merged: etcd reads limit + 1 keys */
    /* etcd's post-processing: filters, sort, limit, keys_only. */
    size_t n = 0;
    for (size_t i = 0; i < l.count; i++) {
        Mvccpb__KeyValue *kv = l.items[i];
        int64_t mod = rev_order(kv->mod_revision, ex->cur_rev);
        int64_t create = rev_order(kv->create_revision, ex->cur_rev);
        if ((req->max_mod_revision && mod > req->max_mod_revision) ||
            (req->min_mod_revision && mod < req->min_mod_revision) ||
            (req->max_create_revision && create > req->max_create_revision) ||
            (req->min_create_revision && create < req->min_create_revision))
            continue;
        l.items[n++] = kv;
    }
    int order = req->sort_order;
    if (req->sort_target != ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY &&
        order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE)
        order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
    else if (req->sort_target == ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY &&
             order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND)
        order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE;
    if (order != ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE)
        sort_kvs(l.items, n, req->sort_target,
                 order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND, ex->cur_rev);
    if (req->limit > 0 && n > (size_t)req->limit && !req->count_only) {
        n = (size_t)req->limit; /* count_only: etcd returns no keys, so never "more" */
        resp->more = 1;
    }
    if (req->keys_only)
        for (size_t i = 0; i < n; i++) {
            Mvccpb__KeyValue *copy = alloc0(ex, sizeof(*copy));
            *copy = *l.items[i];
            copy->value.len = 0;
            copy->value.data = NULL;
            if (!copy->mod_revision) /* an own write: its revision comes after commit */
                patch_later(ex, &copy->mod_revision);
            if (!copy->create_revision)
                patch_later(ex, &copy->create_revision);
            l.items[i] = copy;
        }
    resp->count = l.total;
    resp->n_kvs = req->count_only ? 0 : n;
    resp->kvs = req->count_only ? NULL : l.items;
    resp->header = new_header(ex, read_rev);
    if (!read_rev)
        patch_later(ex, &resp->header->revision);
    return 0;
}

/* ---- writes ---- */

static void add_versionstamped(struct exec *ex, const struct tuple_buf *key,
                               const struct tuple_buf *param, int op)
{
    ex->api->transaction_atomic_op(ex->tr, key->data, (int)key->len, param->data,
                                   (int)param->len, op);
}

/* The blind "newest revision" marker; once per request (see keys.h). */
static void mark_revision(struct exec *ex)
{
    if (ex->rev_marked)
        return;
    ex->rev_marked = 1;
    keys_meta(&ex->m->keys, &ex->k1, "rev");
    static const uint8_t stamp_param[14] = {0}; /* 10-byte stamp at offset 0 */
    ex->api->transaction_atomic_op(ex->tr, ex->k1.data, (int)ex->k1.len, stamp_param, 14,
                                   FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_VALUE);
}

static void log_event(struct exec *ex, int type, const uint8_t *key, size_t key_len,
                      int64_t prev_mod_rev)
{
    keys_log_new(&ex->m->keys, &ex->k1, ex->next_event++);
    uint8_t head[9];
    head[0] = (uint8_t)type;
    for (int i = 0; i < 8; i++)
        head[1 + i] = (uint8_t)((uint64_t)prev_mod_rev >> (56 - 8 * i));
    tuple_buf_reset(&ex->v);
    tuple_buf_append(&ex->v, head, 9);
    tuple_buf_append(&ex->v, key, key_len);
    add_versionstamped(ex, &ex->k1, &ex->v, FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_KEY);
}

/* The newest own write of key, or NULL. */
static struct own_write *own_entry(struct exec *ex, const uint8_t *key, size_t key_len)
{
    for (int i = ex->own_count - 1; i >= 0; i--)
        if (ex->own[i].key_len == key_len && memcmp(ex->own[i].key, key, key_len) == 0)
            return &ex->own[i];
    return NULL;
}

/* Records a write of key (kv NULL: a delete) made as change-log event `event`, whose prev
 * mod revision is event_prev; the first write of the key in this request has the version
 * before it as its prev. */
static void own_add(struct exec *ex, const uint8_t *key, size_t key_len, Mvccpb__KeyValue *kv,
                    int event, int64_t event_prev)
{
    const struct own_write *before = own_entry(ex, key, key_len);
    int64_t pre_mod = before ? before->pre_mod : event_prev;
    ex->own = grow(ex->own, &ex->own_cap, ex->own_count, sizeof(*ex->own));
    struct own_write *w = &ex->own[ex->own_count++];
    w->key = arena_dup(&ex->arena, key, key_len);
    w->key_len = key_len;
    w->deleted = kv == NULL;
    w->kv = kv;
    w->event = event;
    w->event_prev = event_prev;
    w->pre_mod = pre_mod;
}

/* A Txn that puts a key and then deletes it (etcd's duplicate-key check lets a delete to
 * "\0", or a put and a delete in sibling nested Txns, through) makes both changes in one
 * revision, but the key has one history record per revision: the tombstone. The PUT's
 * change-log event then carries its record itself:
 *   type EVENT_PUT_INLINE, prev mod revision (8), key length (4), key, record
 * (chunks of a long value stay at the history chunk keys of the revision). A record too
 * large for one store value is left out: watchers then get the DELETE only. */
static void log_put_inline(struct exec *ex, const struct own_write *put)
{
    const Mvccpb__KeyValue *kv = put->kv;
    uint32_t total = (uint32_t)kv->value.len;
    uint32_t part = total > RECORD_CHUNK_LEN ? RECORD_CHUNK_LEN : total;
    int flags = (kv->create_revision ? 0 : RECORD_CREATE_SELF) |
                (total > RECORD_CHUNK_LEN ? RECORD_CHUNKED : 0);
    struct tuple_buf rec;
    tuple_buf_init(&rec);
    record_encode(&rec, flags, kv->create_revision, kv->version, kv->lease, total,
                  kv->value.data, part);
    if (13 + put->key_len + rec.len <= STORE_VALUE_MAX) {
        uint8_t head[13];
        head[0] = EVENT_PUT_INLINE;
        for (int i = 0; i < 8; i++)
            head[1 + i] = (uint8_t)((uint64_t)put->event_prev >> (56 - 8 * i));
        for (int i = 0; i < 4; i++)
            head[9 + i] = (uint8_t)((uint32_t)put->key_len >> (24 - 8 * i));
        tuple_buf_reset(&ex->v);
        tuple_buf_append(&ex->v, head, 13);
        tuple_buf_append(&ex->v, put->key, put->key_len);
        tuple_buf_append(&ex->v, rec.data, rec.len);
        keys_log_new(&ex->m->keys, &ex->k1, (uint16_t)put->event);
        add_versionstamped(ex, &ex->k1, &ex->v, FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_KEY);
    }
    tuple_buf_free(&rec);
}

static void set_lease_key(struct exec *ex, int64_t lease, const uint8_t *key, size_t len,
                          int attach)
{
    keys_lease_key(&ex->m->keys, &ex->k2, lease, key, len);
    if (attach)
        ex->api->transaction_set(ex->tr, ex->k2.data, (int)ex->k2.len, NULL, 0);
    else
        ex->api->transaction_clear(ex->tr, ex->k2.data, (int)ex->k2.len);
}

/* Clears the chunk keys of the key's newest record. */
static void clear_latest_chunks(struct exec *ex, const uint8_t *key, size_t len)
{
    keys_latest_chunk(&ex->m->keys, &ex->k1, key, len, 1);
    ex->k1.len -= 2;
    tuple_buf_reset(&ex->k2);
    tuple_buf_append(&ex->k2, ex->k1.data, ex->k1.len);
    tuple_buf_append(&ex->k2, "\xff", 1);
    ex->api->transaction_clear_range(ex->tr, ex->k1.data, (int)ex->k1.len, ex->k2.data,
                                     (int)ex->k2.len);
}

/* Writes a new version of key (existing: its current KeyValue, or NULL). Returns the new
 * KeyValue, whose revisions are patched after commit. */
static Mvccpb__KeyValue *write_put(struct exec *ex, const ProtobufCBinaryData *key,
                                   const ProtobufCBinaryData *value, int64_t lease,
                                   const Mvccpb__KeyValue *existing)
{
    struct keys *k = &ex->m->keys;
    int flags = existing ? 0 : RECORD_CREATE_SELF;
    int64_t create = existing ? existing->create_revision : 0;
    int64_t version = existing ? existing->version + 1 : 1;
    uint32_t total = (uint32_t)value->len;
    uint32_t part = total > RECORD_CHUNK_LEN ? RECORD_CHUNK_LEN : total;
    if (total > RECORD_CHUNK_LEN)
        flags |= RECORD_CHUNKED;

    /* newest record: versionstamped value (the stamp is the mod revision) */
    record_encode(&ex->v, flags, create, version, lease, total, value->data, part);
    uint8_t off[4] = {RECORD_STAMP_OFFSET, 0, 0, 0};
    tuple_buf_append(&ex->v, off, 4);
    keys_latest(k, &ex->k1, key->data, key->len);
    add_versionstamped(ex, &ex->k1, &ex->v, FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_VALUE);
    /* history record: versionstamped key */
    ex->v.len -= 4;
    keys_history_new(k, &ex->k1, key->data, key->len);
    add_versionstamped(ex, &ex->k1, &ex->v, FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_KEY);
    /* chunks of a split value */
    if (existing && existing->value.len > RECORD_CHUNK_LEN)
        clear_latest_chunks(ex, key->data, key->len);
    for (uint32_t pos = part, i = 1; pos < total; pos += RECORD_CHUNK_LEN, i++) {
        uint32_t n = total - pos < RECORD_CHUNK_LEN ? total - pos : RECORD_CHUNK_LEN;
        keys_latest_chunk(k, &ex->k1, key->data, key->len, i);
        ex->api->transaction_set(ex->tr, ex->k1.data, (int)ex->k1.len, value->data + pos, (int)n);
        keys_history_chunk_new(k, &ex->k1, key->data, key->len, i);
        tuple_buf_reset(&ex->v);
        tuple_buf_append(&ex->v, value->data + pos, n);
        add_versionstamped(ex, &ex->k1, &ex->v, FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_KEY);
    }
    int event = ex->next_event;
    log_event(ex, EVENT_PUT, key->data, key->len, existing ? existing->mod_revision : 0);
    mark_revision(ex);
    if (existing && existing->lease && existing->lease != lease)
        set_lease_key(ex, existing->lease, key->data, key->len, 0);
    if (lease && (!existing || existing->lease != lease))
        set_lease_key(ex, lease, key->data, key->len, 1);
    ex->writes++;

    Mvccpb__KeyValue *kv = alloc0(ex, sizeof(*kv));
    mvccpb__key_value__init(kv);
    kv->key = copy_bytes(ex, key->data, key->len);
    kv->value = copy_bytes(ex, value->data, value->len);
    kv->version = version;
    kv->lease = lease;
    kv->create_revision = create;
    patch_later(ex, &kv->mod_revision);
    if (!existing)
        patch_later(ex, &kv->create_revision);
    own_add(ex, key->data, key->len, kv, event, existing ? existing->mod_revision : 0);
    return kv;
}

/* Deletes the key's newest record (unless a range clear of the caller already did) and
 * records the deletion in history and the change log. */
static void write_delete(struct exec *ex, const Mvccpb__KeyValue *existing, int latest_cleared)
{
    struct keys *k = &ex->m->keys;
    const ProtobufCBinaryData *key = &existing->key;
    if (!latest_cleared) {
        keys_latest(k, &ex->k1, key->data, key->len);
        ex->api->transaction_clear(ex->tr, ex->k1.data, (int)ex->k1.len);
        if (existing->value.len > RECORD_CHUNK_LEN)
            clear_latest_chunks(ex, key->data, key->len);
    }
    static const uint8_t tombstone = RECORD_TOMBSTONE;
    tuple_buf_reset(&ex->v);
    tuple_buf_append(&ex->v, &tombstone, 1);
    keys_history_new(k, &ex->k1, key->data, key->len);
    add_versionstamped(ex, &ex->k1, &ex->v, FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_KEY);
    /* A key this request put (mod revision 0 until the commit): its PUT event keeps the
     * record the tombstone replaces, and this event's prev_kv is the version before the
     * request, as etcd's (it reads prev_kv at the revision before). */
    int64_t prev = existing->mod_revision;
    const struct own_write *put = prev ? NULL : own_entry(ex, key->data, key->len);
    if (put && !put->deleted) {
        log_put_inline(ex, put);
        prev = put->pre_mod;
    }
    int event = ex->next_event;
    log_event(ex, EVENT_DELETE, key->data, key->len, prev);
    mark_revision(ex);
    if (existing->lease)
        set_lease_key(ex, existing->lease, key->data, key->len, 0);
    ex->writes++;
    own_add(ex, key->data, key->len, NULL, event, prev);
}

static int lease_exists(struct exec *ex, int64_t lease, int *exists)
{
    int present, len;
    const uint8_t *v;
    keys_lease(&ex->m->keys, &ex->k1, lease);
    fdb_error_t err = store_get(ex, &ex->k1, 0, &present, &v, &len);
    *exists = present;
    return err;
}

/* A Put's lease must exist: "requested lease not found" otherwise. */
static int put_lease_valid(struct exec *ex, int64_t lease)
{
    int exists;
    int err = lease_exists(ex, lease, &exists);
    return err ? err : exists ? 0 : body_fail(ex, MVCC_ERR_LEASE_NOT_FOUND);
}

/* Whether the transaction wrote key; *out is then its newest KeyValue (NULL: deleted). */
static int own_find(struct exec *ex, const ProtobufCBinaryData *key, Mvccpb__KeyValue **out)
{
    const struct own_write *w = own_entry(ex, key->data, key->len);
    *out = w ? w->kv : NULL;
    return w != NULL;
}

/* The key's newest KeyValue (NULL if none), with a read conflict on it. */
static int get_latest(struct exec *ex, const ProtobufCBinaryData *key, Mvccpb__KeyValue **out)
{
    if (own_find(ex, key, out))
        return 0;
    return latest_one(ex, key, 0, out);
}

static int put_valid(const Etcdserverpb__PutRequest *req)
{
    if (req->key.len == 0)
        return MVCC_ERR_EMPTY_KEY;
    if (req->ignore_value && req->value.len != 0)
        return MVCC_ERR_VALUE_PROVIDED;
    if (req->ignore_lease && req->lease != 0)
        return MVCC_ERR_LEASE_PROVIDED;
    return 0;
}

static int exec_put(struct exec *ex, const Etcdserverpb__PutRequest *req,
                    Etcdserverpb__PutResponse *resp)
{
    etcdserverpb__put_response__init(resp);
    Mvccpb__KeyValue *existing;
    int err = get_latest(ex, &req->key, &existing);
    if (err)
        return err;
    if ((req->ignore_value || req->ignore_lease) && !existing)
        return body_fail(ex, MVCC_ERR_KEY_NOT_FOUND);
    int64_t lease = req->ignore_lease ? existing->lease : req->lease;
    if (lease && !req->ignore_lease && !ex->path_checked) {
        err = put_lease_valid(ex, lease);
        if (err)
            return err;
    }
    const ProtobufCBinaryData *value = req->ignore_value ? &existing->value : &req->value;
    write_put(ex, &req->key, value, lease, existing);
    resp->header = new_header(ex, 0);
    patch_later(ex, &resp->header->revision);
    if (req->prev_kv && existing)
        resp->prev_kv = existing;
    return 0;
}

/* Clears the newest records, and their value chunks, of every key in etcd's
 * [from, range_end) with two range clears. */
static void clear_latest_range(struct exec *ex, const ProtobufCBinaryData *from,
                               const ProtobufCBinaryData *range_end)
{
    struct tuple_buf b, e;
    tuple_buf_init(&b);
    tuple_buf_init(&e);
    keys_latest_range(&ex->m->keys, from->data, from->len, range_end->data, range_end->len, &b,
                      &e);
    ex->api->transaction_clear_range(ex->tr, b.data, (int)b.len, e.data, (int)e.len);
    /* Chunk keys P (6, key, i) sort like P (1, key): same bounds, other space code. */
    size_t code = ex->m->keys.prefix.len + 1; /* after the int type byte 0x15 */
    b.data[code] = KEYS_LATEST_CHUNK;
    e.data[code] = KEYS_LATEST_CHUNK;
    ex->api->transaction_clear_range(ex->tr, b.data, (int)b.len, e.data, (int)e.len);
    tuple_buf_free(&b);
    tuple_buf_free(&e);
}

#define DELETE_POINTWISE_MAX 64

/* Deletes the keys of req's range; with ex->delete_limit, at most that many from
 * ex->delete_from, setting ex->delete_more and ex->delete_next (a chunk of a DeleteRange too
 * large for one transaction). */
static int exec_delete_range(struct exec *ex, const Etcdserverpb__DeleteRangeRequest *req,
                             Etcdserverpb__DeleteRangeResponse *resp)
{
    etcdserverpb__delete_range_response__init(resp);
    struct kv_list l = {NULL, 0, 0, 0, SIZE_MAX, 0};
    const ProtobufCBinaryData *from = ex->delete_limit ? &ex->delete_from : &req->key;
    if (ex->delete_limit) {
        l.want = ex->delete_limit + 1;
        l.stop_when_full = 1;
    }
    int err = range_latest(ex, from, &req->range_end, 0, &l);
    if (err)
        return err;
    ex->delete_more = 0;
    if (ex->delete_limit && l.count > ex->delete_limit) {
        ex->delete_more = 1;
        ex->delete_next = l.items[ex->delete_limit]->key;
        l.count = ex->delete_limit;
    }
    /* One range clear for the newest records instead of a clear (and a conflict range) per
     * key: a large DeleteRange then fits one store transaction far longer. Small ones (a
     * kube-apiserver delete is one key) clear key by key: the keys are known, and the
     * embedded store turns a range clear into a scan of the range on its commit thread.
     * After earlier writes of the same Txn, keys go one by one, own writes included (5). */
    int by_range = ex->own_count == 0 && l.count > DELETE_POINTWISE_MAX;
    if (!by_range)
        merge_own(ex, &req->key, &req->range_end, &l);
    else if (l.count)
        clear_latest_range(ex, from, ex->delete_more ? &ex->delete_next : &req->range_end);
    size_t n = 0;
    for (size_t i = 0; i < l.count; i++) {
        write_delete(ex, l.items[i], by_range);
        l.items[n++] = l.items[i];
    }
    resp->deleted = (int64_t)n;
    if (req->prev_kv) {
        resp->n_prev_kvs = n;
        resp->prev_kvs = l.items;
    }
    resp->header = new_header(ex, ex->cur_rev);
    if (ex->writes)
        patch_later(ex, &resp->header->revision);
    return 0;
}

/* ---- Txn ---- */

static int64_t compare_int(const Etcdserverpb__Compare *c, int case_wanted)
{
    return c->target_union_case == (Etcdserverpb__Compare__TargetUnionCase)case_wanted
               ? (case_wanted == ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION ? c->version
                  : case_wanted == ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION
                      ? c->create_revision
                  : case_wanted == ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION
                      ? c->mod_revision
                      : c->lease)
               : 0;
}

static int compare_one_kv(const Etcdserverpb__Compare *c, const Mvccpb__KeyValue *kv)
{
    int r;
    switch (c->target) {
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE: {
        ProtobufCBinaryData want = {0, NULL};
        if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE)
            want = c->value;
        r = compare_bytes(&kv->value, &want);
        break;
    }
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE: {
        int64_t w = compare_int(c, ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION);
        r = (kv->create_revision > w) - (kv->create_revision < w);
        break;
    }
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD: {
        int64_t w = compare_int(c, ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION);
        r = (kv->mod_revision > w) - (kv->mod_revision < w);
        break;
    }
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE: {
        int64_t w = compare_int(c, ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE);
        r = (kv->lease > w) - (kv->lease < w);
        break;
    }
    default: {
        int64_t w = compare_int(c, ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION);
        r = (kv->version > w) - (kv->version < w);
        break;
    }
    }
    switch (c->result) {
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL:
        return r == 0;
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER:
        return r > 0;
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS:
        return r < 0;
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL:
        return r != 0;
    default:
        return 0;
    }
}

/* etcd's applyCompare: every key in the range must satisfy it; a VALUE compare on no key
 * fails, other targets compare a missing key as zeros. */
static int eval_compare(struct exec *ex, const Etcdserverpb__Compare *c, int *result)
{
    struct kv_list l = {NULL, 0, 0, 0, SIZE_MAX, 0};
    int err = range_latest(ex, &c->key, &c->range_end, 0, &l);
    if (err)
        return err;
    if (l.count == 0) {
        Mvccpb__KeyValue zero = MVCCPB__KEY_VALUE__INIT;
        *result = c->target != ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE &&
                  compare_one_kv(c, &zero);
        return 0;
    }
    *result = 1;
    for (size_t i = 0; i < l.count && *result; i++)
        *result = compare_one_kv(c, l.items[i]);
    return 0;
}

/* Which branches run, decided before any op runs (as etcd's compareToPath). */
struct txn_path {
    int succeeded;
    struct txn_path **children; /* per op of the chosen branch; non-NULL for nested txns */
};

static int eval_path(struct exec *ex, const Etcdserverpb__TxnRequest *req, struct txn_path **out)
{
    struct txn_path *p = alloc0(ex, sizeof(*p));
    p->succeeded = 1;
    for (size_t i = 0; i < req->n_compare && p->succeeded; i++) {
        int err = eval_compare(ex, req->compare[i], &p->succeeded);
        if (err)
            return err;
    }
    size_t n = p->succeeded ? req->n_success : req->n_failure;
    Etcdserverpb__RequestOp **ops = p->succeeded ? req->success : req->failure;
    p->children = alloc0(ex, (n ? n : 1) * sizeof(*p->children));
    for (size_t i = 0; i < n; i++)
        if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN) {
            int err = eval_path(ex, ops[i]->request_txn, &p->children[i]);
            if (err)
                return err;
        }
    *out = p;
    return 0;
}

static int exec_txn_path(struct exec *ex, const Etcdserverpb__TxnRequest *req,
                         const struct txn_path *path, int nested,
                         Etcdserverpb__TxnResponse *resp)
{
    etcdserverpb__txn_response__init(resp);
    resp->succeeded = path->succeeded;
    size_t n = path->succeeded ? req->n_success : req->n_failure;
    Etcdserverpb__RequestOp **ops = path->succeeded ? req->success : req->failure;
    resp->n_responses = n;
    resp->responses = alloc0(ex, (n ? n : 1) * sizeof(*resp->responses));
    for (size_t i = 0; i < n; i++) {
        Etcdserverpb__ResponseOp *r = alloc0(ex, sizeof(*r));
        etcdserverpb__response_op__init(r);
        resp->responses[i] = r;
        int err = 0;
        switch (ops[i]->request_case) {
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
            r->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE;
            r->response_range = alloc0(ex, sizeof(*r->response_range));
            err = exec_range(ex, ops[i]->request_range, r->response_range, 0);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
            r->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT;
            r->response_put = alloc0(ex, sizeof(*r->response_put));
            err = exec_put(ex, ops[i]->request_put, r->response_put);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
            r->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE;
            r->response_delete_range = alloc0(ex, sizeof(*r->response_delete_range));
            err = exec_delete_range(ex, ops[i]->request_delete_range, r->response_delete_range);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
            r->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN;
            r->response_txn = alloc0(ex, sizeof(*r->response_txn));
            err = exec_txn_path(ex, ops[i]->request_txn, path->children[i], 1,
                                r->response_txn);
            break;
        default: /* an empty RequestOp: check_ops refused it */
            break;
        }
        if (err)
            return err;
    }
    /* A nested Txn's header stays empty in etcd (revision 0): only the outermost is filled. */
    resp->header = new_header(ex, nested ? 0 : ex->cur_rev);
    if (ex->writes && !nested) /* (3): a Txn that wrote answers at its own revision */
        patch_later(ex, &resp->header->revision);
    return 0;
}

/* ---- validation of a Txn (etcd's checkTxnReqs and checkIntervals) ---- */

struct interval {
    const uint8_t *begin, *end; /* end NULL: the single key begin; end "" (len 0): open */
    size_t begin_len, end_len;
    int point;
};

struct key_sets {
    struct interval *puts;
    size_t n_puts, cap_puts;
    struct interval *dels;
    size_t n_dels, cap_dels;
};

static void set_push(struct interval **v, size_t *n, size_t *cap, struct interval iv)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        *v = realloc(*v, *cap * sizeof(**v));
        if (!*v)
            abort();
    }
    (*v)[(*n)++] = iv;
}

/* Whether k is in d as etcd's checkIntervals sees it: it compares a range end as a plain
 * string, so the end "\0" (every key from begin on, elsewhere) makes an empty interval here,
 * and etcd accepts a Txn that puts a key inside a delete to the end of the key space. */
static int point_in(const struct interval *d, const uint8_t *k, size_t kl)
{
    ProtobufCBinaryData key = {d->begin_len, (uint8_t *)d->begin};
    ProtobufCBinaryData end = {d->end_len, (uint8_t *)d->end};
    if (d->point)
        end.len = 0;
    else if (end.len == 1 && end.data[0] == 0)
        return 0;
    return key_in_range(k, kl, &key, &end);
}

static int puts_contain(const struct key_sets *s, const struct interval *p)
{
    for (size_t i = 0; i < s->n_puts; i++)
        if (s->puts[i].begin_len == p->begin_len &&
            memcmp(s->puts[i].begin, p->begin, p->begin_len) == 0)
            return 1;
    return 0;
}

static int dels_contain(const struct key_sets *s, const struct interval *p)
{
    for (size_t i = 0; i < s->n_dels; i++)
        if (point_in(&s->dels[i], p->begin, p->begin_len))
            return 1;
    return 0;
}

static void sets_free(struct key_sets *s)
{
    free(s->puts);
    free(s->dels);
}

static int check_intervals(Etcdserverpb__RequestOp **ops, size_t n, struct key_sets *out);

static int check_branch_merge(struct key_sets *acc, const struct key_sets *then,
                              const struct key_sets *els)
{
    for (size_t i = 0; i < then->n_puts; i++) {
        if (puts_contain(acc, &then->puts[i]) || dels_contain(acc, &then->puts[i]))
            return MVCC_ERR_DUPLICATE_KEY;
        set_push(&acc->puts, &acc->n_puts, &acc->cap_puts, then->puts[i]);
    }
    for (size_t i = 0; i < els->n_puts; i++) {
        if (puts_contain(acc, &els->puts[i]) && !puts_contain(then, &els->puts[i]))
            return MVCC_ERR_DUPLICATE_KEY;
        if (dels_contain(acc, &els->puts[i]))
            return MVCC_ERR_DUPLICATE_KEY;
        set_push(&acc->puts, &acc->n_puts, &acc->cap_puts, els->puts[i]);
    }
    for (size_t i = 0; i < then->n_dels; i++)
        set_push(&acc->dels, &acc->n_dels, &acc->cap_dels, then->dels[i]);
    for (size_t i = 0; i < els->n_dels; i++)
        set_push(&acc->dels, &acc->n_dels, &acc->cap_dels, els->dels[i]);
    return 0;
}

static int check_intervals(Etcdserverpb__RequestOp **ops, size_t n, struct key_sets *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < n; i++)
        if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE) {
            Etcdserverpb__DeleteRangeRequest *d = ops[i]->request_delete_range;
            struct interval iv = {d->key.data, d->range_end.data, d->key.len, d->range_end.len,
                                  d->range_end.len == 0};
            set_push(&out->dels, &out->n_dels, &out->cap_dels, iv);
        }
    for (size_t i = 0; i < n; i++) {
        if (ops[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN)
            continue;
        Etcdserverpb__TxnRequest *t = ops[i]->request_txn;
        struct key_sets then, els;
        int err = check_intervals(t->success, t->n_success, &then);
        if (!err)
            err = check_intervals(t->failure, t->n_failure, &els);
        else
            memset(&els, 0, sizeof(els));
        if (!err)
            err = check_branch_merge(out, &then, &els);
        sets_free(&then);
        sets_free(&els);
        if (err)
            return err;
    }
    for (size_t i = 0; i < n; i++) {
        if (ops[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT)
            continue;
        Etcdserverpb__PutRequest *p = ops[i]->request_put;
        struct interval iv = {p->key.data, NULL, p->key.len, 0, 1};
        if (puts_contain(out, &iv) || dels_contain(out, &iv))
            return MVCC_ERR_DUPLICATE_KEY;
        set_push(&out->puts, &out->n_puts, &out->cap_puts, iv);
    }
    return 0;
}

/* etcd's checkTxnRequest: no more than max_ops compares or ops per branch (a nested Txn
 * gets what its parent left), every compare names a key, every op is valid and not empty. */
static int check_ops(const Etcdserverpb__TxnRequest *req, int max_ops)
{
    size_t opc = req->n_compare;
    if (req->n_success > opc)
        opc = req->n_success;
    if (req->n_failure > opc)
        opc = req->n_failure;
    if (opc > (size_t)(max_ops > 0 ? max_ops : 0))
        return MVCC_ERR_TOO_MANY_OPS;
    for (size_t i = 0; i < req->n_compare; i++)
        if (req->compare[i]->key.len == 0)
            return MVCC_ERR_EMPTY_KEY;
    for (int branch = 0; branch < 2; branch++) {
        size_t n = branch ? req->n_failure : req->n_success;
        Etcdserverpb__RequestOp **ops = branch ? req->failure : req->success;
        for (size_t i = 0; i < n; i++) {
            int err = 0;
            switch (ops[i]->request_case) {
            case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
                err = range_valid(ops[i]->request_range);
                break;
            case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
                err = put_valid(ops[i]->request_put);
                break;
            case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
                err = ops[i]->request_delete_range->key.len ? 0 : MVCC_ERR_EMPTY_KEY;
                break;
            case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
                err = check_ops(ops[i]->request_txn, max_ops - (int)opc);
                break;
            default: /* an empty RequestOp */
                err = MVCC_ERR_KEY_NOT_FOUND;
                break;
            }
            if (err)
                return err;
        }
    }
    return 0;
}

/* ---- running a request ---- */

typedef int (*exec_fn)(struct exec *ex, const void *req, void *resp);

struct run {
    struct exec *ex;
    exec_fn fn;
    const void *req;
    void *resp;
    int write;
};

static fdb_error_t run_body(const struct kv_api *api, FDBTransaction *tr, void *arg)
{
    struct run *r = arg;
    struct exec *ex = r->ex;
    exec_restart(ex, tr);
    if (r->write) {
        /* (5) read-your-writes off; writes are first in their batch (revision = commit
         * version); idempotent where the store supports it (FoundationDB 7.3). */
        fdb_error_t err = api->transaction_set_option(tr, FDB_TR_OPTION_READ_YOUR_WRITES_DISABLE,
                                                      NULL, 0);
        if (!err)
            err = api->transaction_set_option(tr, FDB_TR_OPTION_FIRST_IN_BATCH, NULL, 0);
        if (err)
            return err;
        (void)api->transaction_set_option(tr, FDB_TR_OPTION_AUTOMATIC_IDEMPOTENCY, NULL, 0);
    }
    fdb_error_t err = read_meta(ex);
    if (err)
        return err;
    int rc = r->fn(ex, r->req, r->resp);
    if (rc)
        return rc;
    if (ex->writes)
        ex->stamp = api->transaction_get_versionstamp(tr);
    return 0;
}

/* Runs fn in the retry loop and finishes the response: revisions patched (1) (3), the
 * attempt's allocations handed to the caller's arena. */
static int run(struct mvcc *m, exec_fn fn, const void *req, void *resp, int write,
               struct arena *arena, fdb_error_t *store_error)
{
    struct exec ex;
    exec_init(&ex, m);
    struct run r = {&ex, fn, req, resp, write};
    int flags = write ? KV_TRANSACT_NO_RETRY_MAYBE_COMMITTED : KV_TRANSACT_READ_ONLY;
    fdb_error_t err = kv_transact_flags(m->api, m->db, run_body, &r, flags, NULL);
    int rc = 0;
    if (err == BODY_ABORT && ex.error) {
        rc = ex.error;
    } else if (err) {
        *store_error = err;
        if (m->api->error_predicate(FDB_ERROR_PREDICATE_MAYBE_COMMITTED, err))
            rc = MVCC_ERR_TIMEOUT;
        else if (err == FDB_ERR_TRANSACTION_TOO_LARGE || err == FDB_ERR_KEY_TOO_LARGE ||
                 err == FDB_ERR_VALUE_TOO_LARGE)
            rc = MVCC_ERR_TOO_LARGE;
        else
            rc = MVCC_ERR_STORE;
    } else if (ex.stamp) {
        err = kv_wait(m->api, ex.stamp);
        const uint8_t *stamp;
        int len;
        if (!err)
            err = m->api->future_get_key(ex.stamp, &stamp, &len);
        if (!err && len == 10) {
            ex.new_rev = keys_stamp_revision(stamp);
            if (stamp[8] || stamp[9])
                fprintf(stderr, "etcd-fdb: warning: a write was not first in its commit batch; "
                                "revisions may repeat\n");
            for (int i = 0; i < ex.patch_count; i++)
                *ex.patch[i] = ex.new_rev;
        } else {
            *store_error = err ? err : FDB_ERR_INTERNAL_ERROR;
            rc = MVCC_ERR_STORE;
        }
    }
    if (!rc)
        arena_move(arena, &ex.arena);
    exec_free(&ex);
    return rc;
}

static int range_fn(struct exec *ex, const void *req, void *resp)
{
    return exec_range(ex, req, resp, 1);
}

int mvcc_range(struct mvcc *m, const Etcdserverpb__RangeRequest *req,
               Etcdserverpb__RangeResponse *resp, struct arena *arena, fdb_error_t *store_error)
{
    int err = range_valid(req);
    return err ? err : run(m, range_fn, req, resp, 0, arena, store_error);
}

static int put_fn(struct exec *ex, const void *req, void *resp)
{
    return exec_put(ex, req, resp);
}

int mvcc_put(struct mvcc *m, const Etcdserverpb__PutRequest *req,
             Etcdserverpb__PutResponse *resp, struct arena *arena, fdb_error_t *store_error)
{
    int err = put_valid(req);
    return err ? err : run(m, put_fn, req, resp, 1, arena, store_error);
}

/* A DeleteRange, or one chunk of it (limit > 0). */
struct delete_req {
    const Etcdserverpb__DeleteRangeRequest *req;
    size_t limit;
    ProtobufCBinaryData from;
    int more;
    ProtobufCBinaryData next; /* in the caller's arena after a successful run */
};

static int delete_fn(struct exec *ex, const void *req, void *resp)
{
    struct delete_req *d = (struct delete_req *)req;
    ex->delete_limit = d->limit;
    ex->delete_from = d->from;
    int err = exec_delete_range(ex, d->req, resp);
    d->more = ex->delete_more;
    d->next = ex->delete_next;
    return err;
}

int mvcc_delete_range(struct mvcc *m, const Etcdserverpb__DeleteRangeRequest *req,
                      Etcdserverpb__DeleteRangeResponse *resp, struct arena *arena,
                      fdb_error_t *store_error)
{
    if (req->key.len == 0)
        return MVCC_ERR_EMPTY_KEY;
    struct delete_req d = {req, 0, {0, NULL}, 0, {0, NULL}};
    int rc = run(m, delete_fn, &d, resp, 1, arena, store_error);
    if (rc != MVCC_ERR_TOO_LARGE)
        return rc;
    /* Too large for one store transaction (10 MB): delete in chunks, each its own revision
     * (documented in the README). The response adds them up; its revision is the last. */
    int64_t deleted = 0;
    Mvccpb__KeyValue **prev = NULL;
    size_t n_prev = 0;
    d.limit = 4096;
    d.from = req->key;
    for (;;) {
        Etcdserverpb__DeleteRangeResponse part;
        rc = run(m, delete_fn, &d, &part, 1, arena, store_error);
        if (rc == MVCC_ERR_TOO_LARGE && d.limit > 16) {
            d.limit /= 2;
            continue;
        }
        if (rc)
            return rc;
        deleted += part.deleted;
        if (req->prev_kv && part.n_prev_kvs) {
            Mvccpb__KeyValue **all = arena_alloc(arena, (n_prev + part.n_prev_kvs) * sizeof(*all));
            if (n_prev)
                memcpy(all, prev, n_prev * sizeof(*all));
            memcpy(all + n_prev, part.prev_kvs, part.n_prev_kvs * sizeof(*all));
            prev = all;
            n_prev += part.n_prev_kvs;
        }
        *resp = part;
        if (!d.more)
            break;
        d.from = d.next;
    }
    resp->deleted = deleted;
    resp->prev_kvs = prev;
    resp->n_prev_kvs = n_prev;
    return 0;
}

/* etcd's checks of a Put before a Txn runs: ignore_value and ignore_lease need the key,
 * a lease must exist. */
static int check_put(struct exec *ex, const Etcdserverpb__PutRequest *req)
{
    int err = 0;
    if (req->ignore_value || req->ignore_lease) {
        Mvccpb__KeyValue *existing;
        err = latest_one(ex, &req->key, 0, &existing);
        if (!err && !existing)
            err = body_fail(ex, MVCC_ERR_KEY_NOT_FOUND);
    }
    if (!err && req->lease)
        err = put_lease_valid(ex, req->lease);
    return err;
}

/* etcd's checkRequests on the chosen path of a Txn, against the store before it: every Put
 * (ranges 0), then every Range's revision (ranges 1), in op order, nested Txns included.
 * So an invalid Put is the answer even when a Range before it names a compacted revision. */
static int check_path(struct exec *ex, const Etcdserverpb__TxnRequest *req,
                      const struct txn_path *path, int ranges)
{
    size_t n = path->succeeded ? req->n_success : req->n_failure;
    Etcdserverpb__RequestOp **ops = path->succeeded ? req->success : req->failure;
    for (size_t i = 0; i < n; i++) {
        int err = 0;
        if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN) {
            err = check_path(ex, ops[i]->request_txn, path->children[i], ranges);
        } else if (ranges &&
                   ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE) {
            err = range_rev_valid(ex, ops[i]->request_range->revision);
        } else if (!ranges &&
                   ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT) {
            err = check_put(ex, ops[i]->request_put);
        }
        if (err)
            return err;
    }
    return 0;
}

static int txn_fn(struct exec *ex, const void *req, void *resp)
{
    struct txn_path *path;
    int err = eval_path(ex, req, &path);
    if (!err)
        err = check_path(ex, req, path, 0);
    if (!err)
        err = check_path(ex, req, path, 1);
    if (err)
        return err;
    ex->path_checked = 1;
    return exec_txn_path(ex, req, path, 0, resp);
}

int mvcc_txn(struct mvcc *m, const Etcdserverpb__TxnRequest *req,
             Etcdserverpb__TxnResponse *resp, struct arena *arena, fdb_error_t *store_error)
{
    int err = check_ops(req, m->max_txn_ops);
    struct key_sets s[2];
    if (!err) {
        err = check_intervals(req->success, req->n_success, &s[0]);
        sets_free(&s[0]);
    }
    if (!err) {
        err = check_intervals(req->failure, req->n_failure, &s[1]);
        sets_free(&s[1]);
    }
    if (err)
        return err;
    return run(m, txn_fn, req, resp, 1, arena, store_error);
}

static int revisions_fn(struct exec *ex, const void *req, void *resp)
{
    int64_t *out = resp;
    out[0] = ex->cur_rev;
    out[1] = ex->compact_rev;
    return 0;
}

int mvcc_revisions(struct mvcc *m, int64_t *current, int64_t *compacted, fdb_error_t *store_error)
{
    int64_t out[2] = {0, 0};
    struct arena a = {0};
    int err = run(m, revisions_fn, NULL, out, 0, &a, store_error);
    arena_free(&a);
    *current = out[0];
    *compacted = out[1];
    return err;
}

/* ---- compaction ---- */

static int compact_mark_fn(struct exec *ex, const void *req, void *resp)
{
    const Etcdserverpb__CompactionRequest *c = req;
    if (c->revision <= ex->compact_rev)
        return body_fail(ex, MVCC_ERR_COMPACTED);
    if (c->revision > ex->cur_rev)
        return body_fail(ex, MVCC_ERR_FUTURE_REV);
    uint8_t v[8];
    for (int i = 0; i < 8; i++)
        v[i] = (uint8_t)((uint64_t)c->revision >> (56 - 8 * i));
    keys_meta(&ex->m->keys, &ex->k1, "compact");
    ex->api->transaction_set(ex->tr, ex->k1.data, (int)ex->k1.len, v, 8);
    Etcdserverpb__CompactionResponse *r = resp;
    etcdserverpb__compaction_response__init(r);
    r->header = new_header(ex, ex->cur_rev);
    return 0;
}

/* One compaction transaction: examines up to COMPACT_BATCH history rows from `from`, and
 * removes every record below the compaction revision that a newer record at or below it
 * hides (and tombstones at or below it). */
struct compact_state {
    int64_t at;
    struct tuple_buf from, end;
    int done;
    struct tuple_buf key, cur_key, chunk;
    int rows;
    int64_t prev_rev;   /* the newest record <= at of cur_key seen so far, 0 if none */
    int prev_tombstone;
    int prev_chunked;
    struct tuple_buf prev_store_key;
};

static void compact_drop(struct exec *ex, struct compact_state *s)
{
    ex->api->transaction_clear(ex->tr, s->prev_store_key.data, (int)s->prev_store_key.len);
    if (s->prev_chunked) {
        keys_history_chunk_prefix(&ex->m->keys, &s->chunk, s->cur_key.data, s->cur_key.len,
                                  s->prev_rev);
        tuple_buf_reset(&ex->k2);
        tuple_buf_append(&ex->k2, s->chunk.data, s->chunk.len);
        tuple_buf_append(&ex->k2, "\xff", 1);
        ex->api->transaction_clear_range(ex->tr, s->chunk.data, (int)s->chunk.len, ex->k2.data,
                                         (int)ex->k2.len);
    }
}

static int compact_row(struct exec *ex, const FDBKeyValue *row, void *arg)
{
    struct compact_state *s = arg;
    int64_t rev;
    if (keys_decode_history(&ex->m->keys, row->key, (size_t)row->key_length, &s->key, &rev) != 0)
        return 0; /* not ours to judge; leave it */
    int same = s->key.len == s->cur_key.len && memcmp(s->key.data, s->cur_key.data, s->key.len) == 0;
    if (!same) {
        /* The last record <= at of the previous key survives, unless it is a tombstone. */
        if (s->prev_rev && s->prev_tombstone)
            compact_drop(ex, s);
        if (++s->rows > COMPACT_BATCH) {
            tuple_buf_reset(&s->from);
            tuple_buf_append(&s->from, row->key, (size_t)row->key_length);
            return 1; /* resume at this key's first record */
        }
        tuple_buf_reset(&s->cur_key);
        tuple_buf_append(&s->cur_key, s->key.data, s->key.len);
        s->prev_rev = 0;
    } else {
        s->rows++;
    }
    if (rev >= s->at)
        return 0; /* records at or above the compaction revision stay */
    struct record r;
    if (record_decode(row->value, (size_t)row->value_length, &r) != 0)
        return 0;
    if (s->prev_rev)
        compact_drop(ex, s); /* hidden by this newer record <= at */
    s->prev_rev = rev;
    s->prev_tombstone = (r.flags & RECORD_TOMBSTONE) != 0;
    s->prev_chunked = (r.flags & RECORD_CHUNKED) != 0;
    tuple_buf_reset(&s->prev_store_key);
    tuple_buf_append(&s->prev_store_key, row->key, (size_t)row->key_length);
    return 0;
}

static fdb_error_t compact_batch_body(const struct kv_api *api, FDBTransaction *tr, void *arg)
{
    struct exec *ex = ((void **)arg)[0];
    struct compact_state *s = ((void **)arg)[1];
    exec_restart(ex, tr);
    tuple_buf_reset(&s->cur_key);
    s->rows = 0;
    s->prev_rev = 0;
    s->done = 0;
    struct tuple_buf start;
    tuple_buf_init(&start);
    tuple_buf_append(&start, s->from.data, s->from.len);
    size_t from_len = s->from.len;
    fdb_error_t err = store_scan(ex, &start, &s->end, 1, compact_row, s);
    tuple_buf_free(&start);
    if (err)
        return err;
    if (s->rows <= COMPACT_BATCH) {
        if (s->prev_rev && s->prev_tombstone)
            compact_drop(ex, s);
        s->done = 1;
    }
    (void)from_len;
    return 0;
}

/* Revisions are commit versions, about 1,000,000 a second (FoundationDB's rate, and the
 * embedded engine's clock). */
#define COMPACT_GRACE_VERSIONS (10 * 1000000LL)

/* Reads the physical compaction revision (see mvcc_compact); 0 if none. */
static fdb_error_t read_physical_compact(struct exec *ex, int64_t *out)
{
    int present, len;
    const uint8_t *v;
    keys_meta(&ex->m->keys, &ex->k1, "compact-physical");
    fdb_error_t err = store_get(ex, &ex->k1, 1, &present, &v, &len);
    *out = 0;
    if (!err && present && len == 8)
        for (int i = 0; i < 8; i++)
            *out = *out << 8 | v[i];
    return err;
}

#define LOG_CLEAR_CHUNK 4096

struct log_clear {
    struct mvcc *m;
    int64_t below;
    struct tuple_buf from; /* the first event not yet cleared (the log's start at first) */
    struct tuple_buf next; /* where the chunk a successful body cleared ends */
    int more;
};

/* Clears the change log below a revision, LOG_CLEAR_CHUNK events per transaction (the
 * embedded store clears a range key by key on its commit thread; a compaction every 5
 * minutes of a busy cluster has hundreds of thousands), and with the last chunk records the
 * physical compaction revision. Idempotent, so it runs in the retry loop; the caller moves
 * c->from to c->next after each commit while c->more. */
static fdb_error_t log_clear_body(const struct kv_api *api, FDBTransaction *tr, void *arg)
{
    struct log_clear *c = arg;
    struct tuple_buf end, first, meta;
    tuple_buf_init(&end);
    tuple_buf_init(&first);
    tuple_buf_init(&meta);
    keys_log_after(&c->m->keys, c->below - 1, &first, &end); /* first kept event */
    FDBFuture *f = api->transaction_get_range(tr, c->from.data, (int)c->from.len, 0, 1,
                                              first.data, (int)first.len, 0, 1, LOG_CLEAR_CHUNK,
                                              0, FDB_STREAMING_MODE_WANT_ALL, 1, 1, 0);
    fdb_error_t err = kv_wait(api, f);
    const FDBKeyValue *rows;
    int count = 0, more = 0;
    if (!err)
        err = api->future_get_keyvalue_array(f, &rows, &count, &more);
    c->more = !err && more && count == LOG_CLEAR_CHUNK;
    if (c->more) { /* up to and including the last event read */
        tuple_buf_reset(&c->next);
        tuple_buf_append(&c->next, rows[count - 1].key, (size_t)rows[count - 1].key_length);
        to_key_after(&c->next);
        api->transaction_clear_range(tr, c->from.data, (int)c->from.len, c->next.data,
                                     (int)c->next.len);
    } else if (!err) {
        api->transaction_clear_range(tr, c->from.data, (int)c->from.len, first.data,
                                     (int)first.len);
        keys_meta(&c->m->keys, &meta, "compact-physical");
        uint8_t v[8];
        for (int i = 0; i < 8; i++)
            v[i] = (uint8_t)((uint64_t)c->below >> (56 - 8 * i));
        api->transaction_set(tr, meta.data, (int)meta.len, v, 8);
    }
    api->future_destroy(f);
    tuple_buf_free(&end);
    tuple_buf_free(&first);
    tuple_buf_free(&meta);
    return err;
}

/* Compaction is logical at once: from the answer on, reads and watches below the revision
 * fail with "compacted". It is physical (history and change log removed) only up to the
 * revision committed COMPACT_GRACE_VERSIONS (10 s) before: each process's watch tail, a
 * little behind the newest commit, can then still read every event it has not dispatched,
 * so a compaction never cancels watchers that are keeping up. The rest is removed by the
 * next compaction (kube-apiserver compacts every 5 minutes). */
int mvcc_compact(struct mvcc *m, const Etcdserverpb__CompactionRequest *req,
                 Etcdserverpb__CompactionResponse *resp, struct arena *arena,
                 fdb_error_t *store_error)
{
    int rc = run(m, compact_mark_fn, req, resp, 1, arena, store_error);
    if (rc)
        return rc;
    int64_t physical = resp->header->revision - COMPACT_GRACE_VERSIONS;
    if (physical > req->revision)
        physical = req->revision;
    struct exec ex;
    exec_init(&ex, m);
    struct compact_state s;
    memset(&s, 0, sizeof(s));
    s.at = physical;
    s.done = physical <= 1;
    tuple_buf_init(&s.from);
    tuple_buf_init(&s.end);
    tuple_buf_init(&s.key);
    tuple_buf_init(&s.cur_key);
    tuple_buf_init(&s.chunk);
    tuple_buf_init(&s.prev_store_key);
    keys_space_range(&m->keys, KEYS_HISTORY, &s.from, &s.end);
    void *args[2] = {&ex, &s};
    fdb_error_t err = 0;
    while (!err && !s.done)
        err = kv_transact(m->api, m->db, compact_batch_body, args, NULL);
    if (!err && physical > 1) {
        struct log_clear c = {.m = m, .below = physical, .more = 1};
        struct tuple_buf end;
        tuple_buf_init(&c.from);
        tuple_buf_init(&c.next);
        tuple_buf_init(&end);
        keys_log_range(&m->keys, &c.from, &end);
        while (!err && c.more) {
            err = kv_transact(m->api, m->db, log_clear_body, &c, NULL);
            if (!err && c.more) {
                tuple_buf_reset(&c.from);
                tuple_buf_append(&c.from, c.next.data, c.next.len);
            }
        }
        tuple_buf_free(&c.from);
        tuple_buf_free(&c.next);
        tuple_buf_free(&end);
    }
    tuple_buf_free(&s.from);
    tuple_buf_free(&s.end);
    tuple_buf_free(&s.key);
    tuple_buf_free(&s.cur_key);
    tuple_buf_free(&s.chunk);
    tuple_buf_free(&s.prev_store_key);
    exec_free(&ex);
    if (err) {
        *store_error = err;
        return MVCC_ERR_STORE;
    }
    return 0;
}

/* ---- the change log ---- */

/* One log row whose values are being read: the reads of a whole batch are issued before
 * any is waited for, so a batch costs one store round trip, not one per event. */
struct pending_event {
    Mvccpb__Event *e;
    const uint8_t *key; /* in the arena */
    size_t key_len;
    int64_t rev, prev;
    FDBFuture *value, *prev_value; /* history reads, NULL when not needed */
};

struct events_scan {
    struct pending_event *rows;
    size_t n, cap;
    size_t max;
    int with_prev_kv;
    int64_t last_rev;  /* revision of the last row taken */
    int stopped;       /* stopped at a revision boundary because of max */
    int err;
};

/* Starts the read of the history record of (key, rev). */
static FDBFuture *history_get_start(struct exec *ex, const uint8_t *key, size_t key_len,
                                    int64_t rev)
{
    keys_history_at(&ex->m->keys, &ex->k1, key, key_len, rev, 0);
    ex->k1.len -= 2; /* drop the user version: records are written with 0 */
    tuple_buf_append(&ex->k1, "\x00\x00", 2);
    return ex->api->transaction_get(ex->tr, ex->k1.data, (int)ex->k1.len, 1);
}

/* A history record of (key, rev) as a KeyValue; chunks of a long value are read from the
 * history chunk keys of rev. */
static int history_record_to_kv(struct exec *ex, const uint8_t *key, size_t key_len,
                                const uint8_t *v, size_t len, int64_t rev,
                                Mvccpb__KeyValue **out, int *tombstone)
{
    struct tuple_buf chunks;
    tuple_buf_init(&chunks);
    keys_history_chunk_prefix(&ex->m->keys, &chunks, key, key_len, rev);
    int rc = record_to_kv(ex, key, key_len, v, len, rev, &chunks, 1, out, tombstone);
    tuple_buf_free(&chunks);
    return rc;
}

/* Finishes a history read as a KeyValue, or NULL if absent or a tombstone. Consumes f. */
static int history_get_finish(struct exec *ex, FDBFuture *f, const uint8_t *key,
                              size_t key_len, int64_t rev, Mvccpb__KeyValue **out)
{
    *out = NULL;
    fdb_error_t err = wait_future(ex, f);
    if (err)
        return err;
    fdb_bool_t present;
    const uint8_t *v;
    int len;
    err = ex->api->future_get_value(f, &present, &v, &len);
    if (err || !present) {
        ex->api->future_destroy(f);
        return err;
    }
    int tomb = 0;
    int rc = history_record_to_kv(ex, key, key_len, v, (size_t)len, rev, out, &tomb);
    ex->api->future_destroy(f);
    if (!rc && tomb)
        *out = NULL;
    return rc;
}

static int event_row(struct exec *ex, const FDBKeyValue *row, void *arg)
{
    struct events_scan *s = arg;
    int64_t rev;
    uint16_t idx;
    if (keys_decode_log(&ex->m->keys, row->key, (size_t)row->key_length, &rev, &idx) != 0 ||
        row->value_length < 9 || (row->value[0] == EVENT_PUT_INLINE && row->value_length < 13)) {
        s->err = body_fail(ex, MVCC_ERR_CORRUPT);
        return 1;
    }
    if (s->n >= s->max && rev != s->last_rev) {
        s->stopped = 1;
        return 1;
    }
    const uint8_t *v = row->value;
    s->rows = arena_grow(&ex->arena, s->rows, s->n, &s->cap, sizeof(*s->rows));
    struct pending_event *p = &s->rows[s->n++];
    memset(p, 0, sizeof(*p));
    for (int i = 0; i < 8; i++)
        p->prev = p->prev << 8 | v[1 + i];
    p->rev = rev;
    p->e = alloc0(ex, sizeof(*p->e));
    mvccpb__event__init(p->e);
    if (v[0] == EVENT_PUT_INLINE) { /* see log_put_inline */
        size_t klen = (size_t)v[9] << 24 | (size_t)v[10] << 16 | (size_t)v[11] << 8 | v[12];
        if (klen > (size_t)row->value_length - 13) {
            s->err = body_fail(ex, MVCC_ERR_CORRUPT);
            return 1;
        }
        p->key_len = klen;
        p->key = arena_dup(&ex->arena, v + 13, klen);
        p->e->type = MVCCPB__EVENT__EVENT_TYPE__PUT;
        int err = history_record_to_kv(ex, p->key, klen, v + 13 + klen,
                                       (size_t)row->value_length - 13 - klen, rev, &p->e->kv,
                                       NULL);
        if (err) {
            s->err = err;
            return 1;
        }
    } else {
        p->key_len = (size_t)row->value_length - 9;
        p->key = arena_dup(&ex->arena, v + 9, p->key_len);
        if (v[0] == EVENT_PUT) {
            p->e->type = MVCCPB__EVENT__EVENT_TYPE__PUT;
            p->value = history_get_start(ex, p->key, p->key_len, rev);
        } else {
            p->e->type = MVCCPB__EVENT__EVENT_TYPE__DELETE;
            p->e->kv = alloc0(ex, sizeof(*p->e->kv));
            mvccpb__key_value__init(p->e->kv);
            p->e->kv->key = copy_bytes(ex, p->key, p->key_len);
            p->e->kv->mod_revision = rev;
        }
    }
    if (s->with_prev_kv && p->prev)
        p->prev_value = history_get_start(ex, p->key, p->key_len, p->prev);
    s->last_rev = rev;
    return 0;
}

/* Waits for the reads event_row started and turns the rows into events. On an error the
 * remaining futures are released. */
static int events_resolve(struct exec *ex, struct events_scan *s, struct mvcc_events *out)
{
    int err = s->err;
    out->events = arena_alloc(&ex->arena, (s->n ? s->n : 1) * sizeof(*out->events));
    for (size_t i = 0; i < s->n; i++) {
        struct pending_event *p = &s->rows[i];
        if (err) {
            if (p->value)
                ex->api->future_destroy(p->value);
            if (p->prev_value)
                ex->api->future_destroy(p->prev_value);
            continue;
        }
        if (p->value)
            err = history_get_finish(ex, p->value, p->key, p->key_len, p->rev, &p->e->kv);
        if (p->prev_value) {
            if (err)
                ex->api->future_destroy(p->prev_value);
            else
                err = history_get_finish(ex, p->prev_value, p->key, p->key_len, p->prev,
                                         &p->e->prev_kv);
        }
        /* A PUT whose record is a tombstone: the same write deleted the key again, and
         * its DELETE event follows (the record was too large for log_put_inline). */
        if (!err && p->e->kv)
            out->events[out->n++] = p->e;
    }
    return err;
}

struct events_req {
    int64_t after;
    size_t max;
    int with_prev_kv;
    int tail; /* the watch tail: bounded by the physical compaction, not the logical one */
};

static int events_fn(struct exec *ex, const void *req, void *resp)
{
    const struct events_req *r = req;
    struct mvcc_events *out = resp;
    memset(out, 0, sizeof(*out));
    out->current_rev = ex->cur_rev;
    out->compact_rev = ex->compact_rev;
    int64_t compacted = ex->compact_rev;
    if (r->tail) {
        fdb_error_t err = read_physical_compact(ex, &compacted);
        if (err)
            return err;
    }
    if (r->after + 1 < compacted)
        return body_fail(ex, MVCC_ERR_COMPACTED);
    struct tuple_buf begin, end;
    tuple_buf_init(&begin);
    tuple_buf_init(&end);
    keys_log_after(&ex->m->keys, r->after, &begin, &end);
    struct events_scan s;
    memset(&s, 0, sizeof(s));
    s.max = r->max ? r->max : 1;
    s.with_prev_kv = r->with_prev_kv;
    fdb_error_t err = store_scan(ex, &begin, &end, 1, event_row, &s);
    tuple_buf_free(&begin);
    tuple_buf_free(&end);
    if (err && !s.err)
        s.err = err;
    int rc = events_resolve(ex, &s, out);
    if (rc)
        return rc;
    /* Complete up to the current revision, or up to the last whole revision taken. */
    out->through_rev = s.stopped ? s.last_rev : ex->cur_rev;
    if (out->through_rev < r->after)
        out->through_rev = r->after;
    return 0;
}

int mvcc_read_events(struct mvcc *m, int64_t after_rev, size_t max_events, int with_prev_kv,
                     struct mvcc_events *out, struct arena *arena, fdb_error_t *store_error)
{
    struct events_req r = {after_rev, max_events, with_prev_kv, 0};
    return run(m, events_fn, &r, out, 0, arena, store_error);
}

int mvcc_read_events_tail(struct mvcc *m, int64_t after_rev, size_t max_events,
                          int with_prev_kv, struct mvcc_events *out, struct arena *arena,
                          fdb_error_t *store_error)
{
    struct events_req r = {after_rev, max_events, with_prev_kv, 1};
    return run(m, events_fn, &r, out, 0, arena, store_error);
}

/* ---- the key index (key_index.h) ---- */

/* One load transaction: up to INDEX_CHUNK live keys from m->index_next on. */
struct index_chunk {
    ProtobufCBinaryData *keys; /* in the attempt's arena */
    size_t n, cap;
    struct tuple_buf key, last; /* a decoded key; the store key of the last row */
    int64_t rev;
};

static int index_row(struct exec *ex, const FDBKeyValue *row, void *arg)
{
    struct index_chunk *c = arg;
    if (keys_decode_latest(&ex->m->keys, row->key, (size_t)row->key_length, &c->key) != 0) {
        (void)body_fail(ex, MVCC_ERR_CORRUPT);
        return 1;
    }
    c->keys = arena_grow(&ex->arena, c->keys, c->n, &c->cap, sizeof(*c->keys));
    c->keys[c->n].data = arena_dup(&ex->arena, c->key.data, c->key.len);
    c->keys[c->n++].len = c->key.len;
    tuple_buf_reset(&c->last);
    tuple_buf_append(&c->last, row->key, (size_t)row->key_length);
    return c->n == INDEX_CHUNK;
}

static int index_chunk_fn(struct exec *ex, const void *req, void *resp)
{
    (void)req;
    struct index_chunk *c = resp;
    c->keys = NULL;
    c->n = c->cap = 0;
    static const uint8_t all = 0;
    struct tuple_buf begin, end;
    tuple_buf_init(&begin);
    tuple_buf_init(&end);
    keys_latest_range(&ex->m->keys, &all, 1, &all, 1, &begin, &end);
    if (ex->m->index_next.len) {
        tuple_buf_reset(&begin);
        tuple_buf_append(&begin, ex->m->index_next.data, ex->m->index_next.len);
    }
    fdb_error_t err = store_scan(ex, &begin, &end, 1, index_row, c);
    tuple_buf_free(&begin);
    tuple_buf_free(&end);
    c->rev = ex->cur_rev;
    return err ? err : ex->error ? BODY_ABORT : 0;
}

void mvcc_index_follow(struct mvcc *m, int64_t from_rev)
{
    tuple_buf_reset(&m->index_next);
    key_index_reset(m->index, from_rev);
}

int mvcc_index_load_step(struct mvcc *m, int *more, fdb_error_t *store_error)
{
    struct index_chunk c;
    memset(&c, 0, sizeof(c));
    tuple_buf_init(&c.key);
    tuple_buf_init(&c.last);
    struct arena a = {0};
    int err = run(m, index_chunk_fn, NULL, &c, 0, &a, store_error);
    if (!err) {
        *more = c.n == INDEX_CHUNK;
        key_index_load(m->index, c.keys, c.n, c.rev, !*more);
        tuple_buf_reset(&m->index_next);
        tuple_buf_append(&m->index_next, c.last.data, c.last.len);
        to_key_after(&m->index_next);
    }
    arena_free(&a);
    tuple_buf_free(&c.key);
    tuple_buf_free(&c.last);
    return err;
}

void mvcc_index_apply(struct mvcc *m, const struct mvcc_events *ev)
{
    key_index_apply(m->index, ev->events, ev->n, ev->through_rev);
}

int mvcc_index_count(struct mvcc *m, const ProtobufCBinaryData *key,
                     const ProtobufCBinaryData *range_end, int64_t rev, int64_t *count)
{
    return key_index_count(m->index, key, range_end, rev, 0, count);
}

/* The store watch's callback state; it signals through the waiter's mvcc_wake. */
struct wait_state {
    struct mvcc_wake *wake;
    int fired;
};

static void wait_fired(FDBFuture *f, void *arg)
{
    (void)f;
    struct wait_state *w = arg;
    pthread_mutex_lock(&w->wake->mu);
    w->fired = 1;
    pthread_cond_broadcast(&w->wake->cv);
    pthread_mutex_unlock(&w->wake->mu);
}

void mvcc_wake(struct mvcc_wake *wake)
{
    pthread_mutex_lock(&wake->mu);
    wake->woken = 1;
    pthread_cond_broadcast(&wake->cv);
    pthread_mutex_unlock(&wake->mu);
}

int mvcc_wait_change(struct mvcc *m, int64_t known_rev, int timeout_ms, struct mvcc_wake *wake,
                     fdb_error_t *store_error)
{
    struct mvcc_wake local = MVCC_WAKE_INIT;
    if (!wake)
        wake = &local;
    const struct kv_api *api = m->api;
    FDBTransaction *tr;
    fdb_error_t err = api->database_create_transaction(m->db, &tr);
    if (err) {
        *store_error = err;
        return MVCC_ERR_STORE;
    }
    struct tuple_buf key;
    tuple_buf_init(&key);
    keys_meta(&m->keys, &key, "rev");
    FDBFuture *get = api->transaction_get(tr, key.data, (int)key.len, 1);
    FDBFuture *watch = NULL;
    err = kv_wait(api, get);
    if (!err) {
        fdb_bool_t present;
        const uint8_t *v;
        int len;
        err = api->future_get_value(get, &present, &v, &len);
        if (!err && (!present || len < 10 || keys_stamp_revision(v) <= known_rev)) {
            watch = api->transaction_watch(tr, key.data, (int)key.len);
            FDBFuture *commit = api->transaction_commit(tr);
            err = kv_wait(api, commit);
            api->future_destroy(commit);
        }
    }
    api->future_destroy(get);
    tuple_buf_free(&key);
    if (!err && watch) {
        struct wait_state w = {wake, 0};
        err = api->future_set_callback(watch, wait_fired, &w);
        struct timespec deadline = kv_deadline_ms(CLOCK_REALTIME, timeout_ms);
        pthread_mutex_lock(&wake->mu);
        while (!err && !w.fired && !wake->woken)
            if (pthread_cond_timedwait(&wake->cv, &wake->mu, &deadline) != 0)
                break;
        pthread_mutex_unlock(&wake->mu);
        /* Cancelling runs the callback if it has not run: wait for it before w goes away. */
        api->future_cancel(watch);
        pthread_mutex_lock(&wake->mu);
        while (!err && !w.fired)
            pthread_cond_wait(&wake->cv, &wake->mu);
        pthread_mutex_unlock(&wake->mu);
        err = 0;
    }
    if (watch)
        api->future_destroy(watch);
    api->transaction_destroy(tr);
    if (err) {
        *store_error = err;
        return MVCC_ERR_STORE;
    }
    return 0;
}

/* ---- leases ---- */

static void put_be64_bytes(uint8_t *p, int64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)((uint64_t)v >> (56 - 8 * i));
}

static int64_t get_be64_bytes(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return (int64_t)v;
}

const struct kv_api *mvcc_api(struct mvcc *m)
{
    return m->api;
}

FDBDatabase *mvcc_database(struct mvcc *m)
{
    return m->db;
}

void mvcc_meta_key(struct mvcc *m, const char *name, uint8_t **key, size_t *len)
{
    struct tuple_buf b;
    tuple_buf_init(&b);
    keys_meta(&m->keys, &b, name);
    *key = b.data; /* the caller frees */
    *len = b.len;
}

/* Decodes a stored lease record (write_lease's 16 bytes: TTL, expiry); 0 if it is not one. */
static int lease_decode(int64_t id, const uint8_t *v, int len, struct mvcc_lease *out)
{
    if (len != 16)
        return 0;
    out->id = id;
    out->granted_ttl = get_be64_bytes(v);
    out->expires_at_ms = get_be64_bytes(v + 8);
    return 1;
}

/* Reads the lease record (non-snapshot: revokes and renewals conflict with each other). */
static int read_lease(struct exec *ex, int64_t id, struct mvcc_lease *out, int *found)
{
    keys_lease(&ex->m->keys, &ex->k1, id);
    int present, len;
    const uint8_t *v;
    fdb_error_t err = store_get(ex, &ex->k1, 0, &present, &v, &len);
    if (err)
        return err;
    *found = present && lease_decode(id, v, len, out);
    return 0;
}

static void write_lease(struct exec *ex, const struct mvcc_lease *l, int64_t old_expiry)
{
    uint8_t v[16];
    put_be64_bytes(v, l->granted_ttl);
    put_be64_bytes(v + 8, l->expires_at_ms);
    keys_lease(&ex->m->keys, &ex->k1, l->id);
    ex->api->transaction_set(ex->tr, ex->k1.data, (int)ex->k1.len, v, 16);
    if (old_expiry >= 0) {
        keys_lease_expiry(&ex->m->keys, &ex->k1, old_expiry, l->id);
        ex->api->transaction_clear(ex->tr, ex->k1.data, (int)ex->k1.len);
    }
    keys_lease_expiry(&ex->m->keys, &ex->k1, l->expires_at_ms, l->id);
    ex->api->transaction_set(ex->tr, ex->k1.data, (int)ex->k1.len, NULL, 0);
}

struct lease_req {
    int64_t id, ttl, now_ms, expired_before_ms;
    const struct mvcc_fence *fence;
    struct mvcc_lease lease;
    int found, revoked;
    int64_t revision;
    struct arena *arena;
    ProtobufCBinaryData *keys;
    size_t n;
    struct mvcc_lease *list;
    int64_t *ids;
    size_t max;
    int64_t resume_from, resume_next; /* extend_all: where a chunk starts and the next one */
    const int64_t *batch; /* expire: the leases to revoke together */
    size_t batch_n;
    struct mvcc_expiry_cursor *cursor; /* expired: scan after it, then move it */
};

/* A run() for lease bookkeeping: commits, but creates no revision. */
static int run_commit(struct mvcc *m, exec_fn fn, struct lease_req *r, fdb_error_t *store_error)
{
    struct exec ex;
    exec_init(&ex, m);
    struct run rn = {&ex, fn, r, NULL, 0};
    fdb_error_t err = kv_transact(m->api, m->db, run_body, &rn, NULL);
    int rc = 0;
    if (err == BODY_ABORT && ex.error)
        rc = ex.error;
    else if (err) {
        *store_error = err;
        rc = MVCC_ERR_STORE;
    }
    exec_free(&ex);
    return rc;
}

static int lease_grant_fn(struct exec *ex, const void *req, void *resp)
{
    struct lease_req *r = (struct lease_req *)req;
    struct mvcc_lease l;
    int found;
    int err = read_lease(ex, r->id, &l, &found);
    if (err)
        return err;
    if (found)
        return body_fail(ex, MVCC_ERR_LEASE_EXISTS);
    l.id = r->id;
    l.granted_ttl = r->ttl;
    l.expires_at_ms = r->now_ms + r->ttl * 1000;
    write_lease(ex, &l, -1);
    r->revision = ex->cur_rev;
    return 0;
}

int mvcc_lease_grant(struct mvcc *m, int64_t id, int64_t ttl, int64_t now_ms, int64_t *revision,
                     fdb_error_t *store_error)
{
    struct lease_req r = {.id = id, .ttl = ttl, .now_ms = now_ms};
    int rc = run_commit(m, lease_grant_fn, &r, store_error);
    *revision = r.revision;
    return rc;
}

static int lease_get_fn(struct exec *ex, const void *req, void *resp)
{
    struct lease_req *r = (struct lease_req *)req;
    r->revision = ex->cur_rev;
    return read_lease(ex, r->id, &r->lease, &r->found);
}

int mvcc_lease_get(struct mvcc *m, int64_t id, struct mvcc_lease *out, int *found,
                   int64_t *revision, fdb_error_t *store_error)
{
    struct lease_req r = {.id = id};
    struct arena a = {0};
    int rc = run(m, lease_get_fn, &r, NULL, 0, &a, store_error);
    arena_free(&a);
    *out = r.lease;
    *found = r.found;
    *revision = r.revision;
    return rc;
}

#define LEASE_RENEW_SLACK_MS 500

static int lease_renew_fn(struct exec *ex, const void *req, void *resp)
{
    struct lease_req *r = (struct lease_req *)req;
    r->revision = ex->cur_rev;
    int err = read_lease(ex, r->id, &r->lease, &r->found);
    if (err || !r->found)
        return err;
    /* The lease now expires TTL after this keepalive. The store is written only when that
     * moves the stored expiry by more than LEASE_RENEW_SLACK_MS: keepalives sent faster
     * than that (a client retrying, or many clients sharing a lease) cost one read each,
     * and expiry is exact to within the same 0.5 s that etcd's own expiry checks have. */
    int64_t ttl_ms = r->lease.granted_ttl * 1000;
    if (r->now_ms + ttl_ms - r->lease.expires_at_ms > LEASE_RENEW_SLACK_MS) {
        int64_t old = r->lease.expires_at_ms;
        r->lease.expires_at_ms = r->now_ms + ttl_ms;
        write_lease(ex, &r->lease, old);
    }
    return 0;
}

int mvcc_lease_renew(struct mvcc *m, int64_t id, int64_t now_ms, struct mvcc_lease *out,
                     int *found, int64_t *revision, fdb_error_t *store_error)
{
    struct lease_req r = {.id = id, .now_ms = now_ms};
    int rc = run_commit(m, lease_renew_fn, &r, store_error);
    *out = r.lease;
    *found = r.found;
    *revision = r.revision;
    return rc;
}

struct key_collect {
    struct lease_req *r;
    struct tuple_buf key;
    size_t cap;
    int err;
};

static int lease_key_row(struct exec *ex, const FDBKeyValue *row, void *arg)
{
    struct key_collect *c = arg;
    int64_t id;
    if (keys_decode_lease_key(&ex->m->keys, row->key, (size_t)row->key_length, &id, &c->key)) {
        c->err = body_fail(ex, MVCC_ERR_CORRUPT);
        return 1;
    }
    c->r->keys = arena_grow(&ex->arena, c->r->keys, c->r->n, &c->cap, sizeof(*c->r->keys));
    c->r->keys[c->r->n++] = copy_bytes(ex, c->key.data, c->key.len);
    return 0;
}

static int lease_keys_fn(struct exec *ex, const void *req, void *resp)
{
    struct lease_req *r = (struct lease_req *)req;
    r->n = 0;
    struct tuple_buf begin, end;
    tuple_buf_init(&begin);
    tuple_buf_init(&end);
    keys_lease_keys_range(&ex->m->keys, r->id, &begin, &end);
    struct key_collect c = {r, {0}, 0, 0};
    tuple_buf_init(&c.key);
    fdb_error_t err = store_scan(ex, &begin, &end, 1, lease_key_row, &c);
    tuple_buf_free(&c.key);
    tuple_buf_free(&begin);
    tuple_buf_free(&end);
    return err ? err : c.err;
}

int mvcc_lease_keys(struct mvcc *m, int64_t id, ProtobufCBinaryData **keys, size_t *n,
                    struct arena *arena, fdb_error_t *store_error)
{
    struct lease_req r = {.id = id};
    int rc = run(m, lease_keys_fn, &r, NULL, 0, arena, store_error);
    *keys = r.keys;
    *n = rc ? 0 : r.n;
    return rc;
}

static int lease_list_row(struct exec *ex, const FDBKeyValue *row, void *arg)
{
    struct key_collect *c = arg;
    struct lease_req *r = c->r;
    int64_t id;
    struct mvcc_lease l;
    if (keys_decode_lease(&ex->m->keys, row->key, (size_t)row->key_length, &id) ||
        !lease_decode(id, row->value, row->value_length, &l))
        return 0;
    r->list = arena_grow(&ex->arena, r->list, r->n, &c->cap, sizeof(*r->list));
    r->list[r->n++] = l;
    return 0;
}

static int lease_list_fn(struct exec *ex, const void *req, void *resp)
{
    struct lease_req *r = (struct lease_req *)req;
    r->n = 0;
    r->revision = ex->cur_rev;
    struct tuple_buf begin, end;
    tuple_buf_init(&begin);
    tuple_buf_init(&end);
    keys_space_range(&ex->m->keys, KEYS_LEASE, &begin, &end);
    struct key_collect c = {r, {0}, 0, 0};
    fdb_error_t err = store_scan(ex, &begin, &end, 1, lease_list_row, &c);
    tuple_buf_free(&begin);
    tuple_buf_free(&end);
    return err;
}

int mvcc_lease_list(struct mvcc *m, struct mvcc_lease **leases, size_t *n, int64_t *revision,
                    struct arena *arena, fdb_error_t *store_error)
{
    struct lease_req r = {0};
    int rc = run(m, lease_list_fn, &r, NULL, 0, arena, store_error);
    *leases = r.list;
    *n = rc ? 0 : r.n;
    *revision = r.revision;
    return rc;
}

static int expiry_row(struct exec *ex, const FDBKeyValue *row, void *arg)
{
    struct key_collect *c = arg;
    struct lease_req *r = c->r;
    int64_t when, id;
    if (keys_decode_lease_expiry(&ex->m->keys, row->key, (size_t)row->key_length, &when, &id))
        return 0;
    if (when > r->now_ms || r->n >= r->max)
        return 1;
    r->ids = arena_grow(&ex->arena, r->ids, r->n, &c->cap, sizeof(*r->ids));
    r->ids[r->n++] = id;
    r->lease.expires_at_ms = when; /* the last row taken */
    r->lease.id = id;
    return 0;
}

static int lease_expired_fn(struct exec *ex, const void *req, void *resp)
{
    struct lease_req *r = (struct lease_req *)req;
    r->n = 0;
    struct tuple_buf begin, end;
    tuple_buf_init(&begin);
    tuple_buf_init(&end);
    keys_space_range(&ex->m->keys, KEYS_LEASE_EXPIRY, &begin, &end);
    if (r->cursor && r->cursor->set) { /* from the entry after the cursor's */
        keys_lease_expiry(&ex->m->keys, &begin, r->cursor->expires_at_ms, r->cursor->id);
        to_key_after(&begin);
    }
    struct key_collect c = {r, {0}, 0, 0};
    fdb_error_t err = store_scan(ex, &begin, &end, 1, expiry_row, &c);
    tuple_buf_free(&begin);
    tuple_buf_free(&end);
    return err;
}

int mvcc_lease_expired(struct mvcc *m, int64_t now_ms, size_t max,
                       struct mvcc_expiry_cursor *cursor, int64_t **ids, size_t *n,
                       struct arena *arena, fdb_error_t *store_error)
{
    struct lease_req r = {.now_ms = now_ms, .max = max, .cursor = cursor};
    int rc = run(m, lease_expired_fn, &r, NULL, 0, arena, store_error);
    *ids = r.ids;
    *n = rc ? 0 : r.n;
    if (cursor && *n > 0) {
        cursor->set = 1;
        cursor->expires_at_ms = r.lease.expires_at_ms;
        cursor->id = r.lease.id;
    }
    return rc;
}

/* Checks the fence (the stored value starts with fence->value) with a non-snapshot read: a concurrent change of it makes the commit
 * conflict, so a deposed leader's transaction can never commit. */
static int check_fence(struct exec *ex, const struct mvcc_fence *fence)
{
    if (!fence)
        return 0;
    FDBFuture *f = ex->api->transaction_get(ex->tr, fence->key, (int)fence->key_len, 0);
    fdb_error_t err = wait_future(ex, f);
    if (err)
        return err;
    fdb_bool_t present;
    const uint8_t *v;
    int len;
    err = ex->api->future_get_value(f, &present, &v, &len);
    int same = !err && present && (size_t)len >= fence->value_len &&
               memcmp(v, fence->value, fence->value_len) == 0;
    ex->api->future_destroy(f);
    if (err)
        return err;
    return same ? 0 : body_fail(ex, MVCC_ERR_FENCED);
}

/* Waits for every future of f[0..n) (NULL entries are skipped); on an error destroys them
 * all and returns the first error. */
static fdb_error_t wait_all(struct exec *ex, FDBFuture **f, size_t n)
{
    fdb_error_t first = 0;
    for (size_t i = 0; i < n; i++)
        if (f[i]) {
            fdb_error_t err = kv_wait(ex->api, f[i]);
            if (err && !first)
                first = err;
        }
    if (first)
        for (size_t i = 0; i < n; i++)
            if (f[i]) {
                ex->api->future_destroy(f[i]);
                f[i] = NULL;
            }
    return first;
}

/* The newest record of key as a KeyValue without its value (value.len is the value's
 * length), from a finished read of P (1, key); NULL if the key does not exist. Destroys f. */
static int latest_header(struct exec *ex, const ProtobufCBinaryData *key, FDBFuture *f,
                         Mvccpb__KeyValue **out)
{
    fdb_bool_t present;
    const uint8_t *v;
    int len;
    fdb_error_t err = ex->api->future_get_value(f, &present, &v, &len);
    struct record rec;
    int rc = err;
    *out = NULL;
    if (!err && present) {
        if (record_decode(v, (size_t)len, &rec) != 0) {
            rc = body_fail(ex, MVCC_ERR_CORRUPT);
        } else {
            Mvccpb__KeyValue *kv = alloc0(ex, sizeof(*kv));
            mvccpb__key_value__init(kv);
            kv->key = *key;
            kv->mod_revision = rec.mod_rev;
            kv->lease = rec.lease;
            kv->value.len = rec.total_len;
            *out = kv;
        }
    }
    ex->api->future_destroy(f);
    return rc;
}

/* A lease of a revoke being read: its record, then its keys, then their records. */
struct revoking {
    int64_t id;
    struct mvcc_lease lease;
    int take; /* found, and not renewed past r->expired_before_ms */
    ProtobufCBinaryData *keys;
    size_t n_keys;
    Mvccpb__KeyValue **kvs;
};

/* Reads the key list of every lease taken, all lists at once; a list longer than
 * LIST_FIRST_READ keys (or than one read returns) is read on by store_scan. The reads conflict: a key attached meanwhile makes the
 * transaction retry and delete that key too, instead of leaving it attached. */
#define LIST_FIRST_READ 1000

static int read_key_lists(struct exec *ex, struct lease_req *r, struct revoking *v, size_t n)
{
    FDBFuture **f = alloc0(ex, n * sizeof(*f));
    struct tuple_buf begin, end;
    tuple_buf_init(&begin);
    tuple_buf_init(&end);
    for (size_t i = 0; i < n; i++)
        if (v[i].take) {
            keys_lease_keys_range(&ex->m->keys, v[i].id, &begin, &end);
            f[i] = ex->api->transaction_get_range(ex->tr, begin.data, (int)begin.len, 0, 1,
                                                  end.data, (int)end.len, 0, 1,
                                                  LIST_FIRST_READ, 0,
                                                  FDB_STREAMING_MODE_WANT_ALL, 1, 0, 0);
        }
    int err = wait_all(ex, f, n);
    struct key_collect c = {r, {0}, 0, 0};
    tuple_buf_init(&c.key);
    for (size_t i = 0; i < n; i++) {
        if (!f[i])
            continue;
        const FDBKeyValue *rows;
        int count = 0, more = 0;
        if (!err)
            err = ex->api->future_get_keyvalue_array(f[i], &rows, &count, &more);
        r->keys = NULL;
        r->n = 0;
        c.cap = 0;
        for (int j = 0; !err && j < count && !c.err; j++)
            lease_key_row(ex, &rows[j], &c);
        if (!err && !c.err && more && count > 0) { /* the rest of a long list */
            keys_lease_keys_range(&ex->m->keys, v[i].id, &begin, &end);
            tuple_buf_reset(&begin); /* from the key after the last one read */
            tuple_buf_append(&begin, rows[count - 1].key, (size_t)rows[count - 1].key_length);
            to_key_after(&begin);
            err = store_scan(ex, &begin, &end, 0, lease_key_row, &c);
        }
        ex->api->future_destroy(f[i]);
        if (!err && c.err)
            err = c.err;
        v[i].keys = r->keys;
        v[i].n_keys = r->n;
    }
    tuple_buf_free(&c.key);
    tuple_buf_free(&begin);
    tuple_buf_free(&end);
    return err;
}

/* Revokes the leases ids[0..n) in this transaction (one revision): deletes every key still
 * attached to each, then the lease. With r->expired_before_ms > 0 a lease renewed past it is
 * skipped; a lease that does not exist fails with MVCC_ERR_LEASE_NOT_FOUND when must_exist,
 * else is skipped. The reads go out together, stage by stage (the leases, their key lists,
 * the keys' records): three store round trips for the group, not one per read. */
static int revoke_leases(struct exec *ex, struct lease_req *r, const int64_t *ids, size_t n,
                         int must_exist, int *revoked)
{
    *revoked = 0;
    struct revoking *v = alloc0(ex, n * sizeof(*v));
    FDBFuture **f = alloc0(ex, n * sizeof(*f));
    for (size_t i = 0; i < n; i++) {
        v[i].id = ids[i];
        keys_lease(&ex->m->keys, &ex->k1, ids[i]);
        f[i] = ex->api->transaction_get(ex->tr, ex->k1.data, (int)ex->k1.len, 0);
    }
    int err = wait_all(ex, f, n);
    for (size_t i = 0; i < n; i++) {
        fdb_bool_t present = 0;
        const uint8_t *val;
        int len = 0;
        if (!err)
            err = ex->api->future_get_value(f[i], &present, &val, &len);
        if (!err && present && lease_decode(ids[i], val, len, &v[i].lease)) {
            v[i].take = r->expired_before_ms <= 0 ||
                        v[i].lease.expires_at_ms <= r->expired_before_ms;
        } else if (!err && must_exist) {
            err = body_fail(ex, MVCC_ERR_LEASE_NOT_FOUND);
        }
        if (f[i])
            ex->api->future_destroy(f[i]);
    }
    if (err)
        return err;
    err = read_key_lists(ex, r, v, n);
    if (err)
        return err;

    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += v[i].n_keys;
    FDBFuture **kf = alloc0(ex, (total ? total : 1) * sizeof(*kf));
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        v[i].kvs = alloc0(ex, (v[i].n_keys ? v[i].n_keys : 1) * sizeof(*v[i].kvs));
        for (size_t j = 0; j < v[i].n_keys; j++, at++) {
            keys_latest(&ex->m->keys, &ex->k1, v[i].keys[j].data, v[i].keys[j].len);
            kf[at] = ex->api->transaction_get(ex->tr, ex->k1.data, (int)ex->k1.len, 0);
        }
    }
    err = wait_all(ex, kf, total);
    at = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < v[i].n_keys; j++, at++)
            if (kf[at]) {
                int rc = latest_header(ex, &v[i].keys[j], kf[at], &v[i].kvs[j]);
                if (!err)
                    err = rc;
            }
    if (err)
        return err;

    for (size_t i = 0; i < n; i++) {
        if (!v[i].take)
            continue;
        for (size_t j = 0; j < v[i].n_keys; j++) {
            Mvccpb__KeyValue *kv = v[i].kvs[j], *own;
            if (own_find(ex, &v[i].keys[j], &own))
                kv = own;
            /* The lease's key list is cleared entry by entry: it was just read whole, and
             * the embedded store would scan it again for a range clear (see
             * exec_delete_range). write_delete clears the entries of the keys it deletes. */
            if (kv && kv->lease == v[i].id)
                write_delete(ex, kv, 0);
            else
                set_lease_key(ex, v[i].id, v[i].keys[j].data, v[i].keys[j].len, 0);
        }
        keys_lease(&ex->m->keys, &ex->k1, v[i].id);
        ex->api->transaction_clear(ex->tr, ex->k1.data, (int)ex->k1.len);
        keys_lease_expiry(&ex->m->keys, &ex->k1, v[i].lease.expires_at_ms, v[i].id);
        ex->api->transaction_clear(ex->tr, ex->k1.data, (int)ex->k1.len);
        (*revoked)++;
    }
    return 0;
}

static int lease_revoke_fn(struct exec *ex, const void *req, void *resp)
{
    struct lease_req *r = (struct lease_req *)req;
    (void)resp;
    r->revoked = 0;
    int err = check_fence(ex, r->fence);
    if (!err)
        err = revoke_leases(ex, r, &r->id, 1, 1, &r->revoked);
    if (err)
        return err;
    r->revision = ex->cur_rev;
    if (ex->writes)
        patch_later(ex, &r->revision);
    return 0;
}

/* Expiry of several leases in one transaction (one revision): leases already gone or
 * renewed are skipped. */
static int lease_expire_fn(struct exec *ex, const void *req, void *resp)
{
    struct lease_req *r = (struct lease_req *)req;
    (void)resp;
    r->revoked = 0;
    int err = check_fence(ex, r->fence);
    return err ? err : revoke_leases(ex, r, r->batch, r->batch_n, 0, &r->revoked);
}

int mvcc_lease_expire(struct mvcc *m, const int64_t *ids, size_t n, int64_t expired_before_ms,
                      const struct mvcc_fence *fence, int *revoked, fdb_error_t *store_error)
{
    struct lease_req r = {.expired_before_ms = expired_before_ms, .fence = fence,
                          .batch = ids, .batch_n = n};
    struct arena a = {0};
    int rc = run(m, lease_expire_fn, &r, NULL, 1, &a, store_error);
    arena_free(&a);
    *revoked = rc ? 0 : r.revoked;
    return rc;
}

int mvcc_lease_revoke(struct mvcc *m, int64_t id, int64_t expired_before_ms,
                      const struct mvcc_fence *fence, int64_t *revision, int *revoked,
                      fdb_error_t *store_error)
{
    struct lease_req r = {.id = id, .expired_before_ms = expired_before_ms, .fence = fence};
    struct arena a = {0};
    int rc = run(m, lease_revoke_fn, &r, NULL, 1, &a, store_error);
    arena_free(&a);
    *revision = r.revision;
    *revoked = r.revoked;
    return rc;
}

static int extend_row(struct exec *ex, const FDBKeyValue *row, void *arg)
{
    struct key_collect *c = arg;
    struct lease_req *r = c->r;
    int64_t id;
    struct mvcc_lease l;
    if (keys_decode_lease(&ex->m->keys, row->key, (size_t)row->key_length, &id) ||
        !lease_decode(id, row->value, row->value_length, &l))
        return 0;
    if (r->n >= r->max) {
        r->resume_next = id;
        return 1;
    }
    int64_t want = r->now_ms + l.granted_ttl * 1000;
    if (l.expires_at_ms < want) {
        int64_t old = l.expires_at_ms;
        l.expires_at_ms = want;
        write_lease(ex, &l, old);
    }
    r->n++;
    return 0;
}

static int extend_fn(struct exec *ex, const void *req, void *resp)
{
    struct lease_req *r = (struct lease_req *)req;
    int err = check_fence(ex, r->fence);
    if (err)
        return err;
    r->n = 0;
    r->resume_next = -1;
    struct tuple_buf begin, end;
    tuple_buf_init(&begin);
    tuple_buf_init(&end);
    keys_space_range(&ex->m->keys, KEYS_LEASE, &begin, &end);
    if (r->resume_from >= 0)
        keys_lease(&ex->m->keys, &begin, r->resume_from);
    struct key_collect c = {r, {0}, 0, 0};
    err = store_scan(ex, &begin, &end, 0, extend_row, &c);
    tuple_buf_free(&begin);
    tuple_buf_free(&end);
    return err;
}

int mvcc_lease_extend_all(struct mvcc *m, int64_t now_ms, const struct mvcc_fence *fence,
                          fdb_error_t *store_error)
{
    struct lease_req r = {.now_ms = now_ms, .fence = fence, .max = 1000, .resume_from = -1};
    do {
        int rc = run_commit(m, extend_fn, &r, store_error);
        if (rc)
            return rc;
        r.resume_from = r.resume_next;
    } while (r.resume_from >= 0);
    return 0;
}

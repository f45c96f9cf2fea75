/* embedded.c -- the embedded engine's database: versions, snapshots, the commit thread,
 * watches and fault injection. Transactions are in embedded_txn.c.
 *
 * How a commit becomes durable and visible (the commit thread, one per database):
 *   1. take every queued commit request (a "group"); the group shares one fsync;
 *   2. resolve each request in queue order against the conflict history (reads at version
 *      R conflict with writes at versions > R), then apply its mutations to the RocksDB write
 *      batch of the current version batch, and to the group's overlay when a request of the
 *      group must read what earlier ones wrote (an atomic op, a range clear). A version batch
 *      is a run of requests sharing one commit version; a FIRST_IN_BATCH request starts a
 *      new one, so it is alone at index 0 of its version;
 *   3. write each version batch as one atomic RocksDB write (only the last one with
 *      sync=true, which fsyncs the WAL holding all of them) and take a RocksDB snapshot
 *      after each, so every version keeps an exact view;
 *   4. publish the snapshots, then complete the futures on the network thread and fire
 *      watches.
 *
 * Invariants:
 * (1) commit versions strictly increase in commit order, also across restarts (the last
 *     one is stored in every version batch), and advance with wall time (1,000,000 per s);
 * (2) a read version handed out is < every commit version not yet published, and >= every
 *     published one at the time it was handed out;
 * (3) a commit is acknowledged only after the fsync that made it durable and after its
 *     snapshot is published, so a read version chosen after the acknowledgement sees it;
 * (4) a snapshot with version S serves every read version in [S, next published version).
 */
#include "kv/embedded.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv/conflict.h"
#include "kv/deadline.h"
#include "kv/embedded_internal.h"
#include "kv/fdb_errors.h"
#include "kv/mutation.h"
#include "kv/network.h"

#define GROUP_MAX_REQUESTS 4096
#define BATCH_MAX_TRANSACTIONS 65535
#define MAX_WATCHES 10000
#define FAULT_MAX_DELAY_US 2000

static const char META_EPOCH[] = "epoch";
static const char META_VERSION[] = "version";

/* ---- clock and versions ---- */

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t db_clock_version(const struct FDB_database *db)
{
    return wall_us() - db->epoch_us;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* A read version for a new transaction, or the snapshot serving want_version (>= 0) for
 * set_read_version. The returned snapshot holds a reference. See (2) and (4). */
fdb_error_t db_acquire_snap(struct FDB_database *db, int64_t want_version, struct snap **out,
                            int64_t *out_version)
{
    int64_t clock = db_clock_version(db);
    pthread_mutex_lock(&db->vlock);
    int64_t newest = db->inflight_first ? db->inflight_first - 1
                                        : (db->max_issued > clock ? db->max_issued : clock);
    int64_t v = want_version >= 0 ? want_version : newest;
    fdb_error_t err = 0;
    struct snap *s = db->snaps;
    if (v > newest) {
        err = FDB_ERR_FUTURE_VERSION;
    } else {
        while (s && s->version > v)
            s = s->older;
        if (!s)
            err = FDB_ERR_TRANSACTION_TOO_OLD;
    }
    if (!err) {
        if (!db->inflight_first && v > db->max_issued)
            db->max_issued = v;
        atomic_fetch_add(&s->refs, 1);
        *out = s;
        *out_version = v;
    }
    pthread_mutex_unlock(&db->vlock);
    return err;
}

void db_release_snap(struct snap *s)
{
    if (s)
        atomic_fetch_sub(&s->refs, 1);
}

/* The commit version of a new version batch; see (1) and (2). */
static int64_t assign_version(struct FDB_database *db)
{
    int64_t clock = db_clock_version(db);
    pthread_mutex_lock(&db->vlock);
    int64_t v = db->max_issued + 1;
    if (v < clock)
        v = clock;
    db->max_issued = v;
    if (!db->inflight_first)
        db->inflight_first = v;
    pthread_mutex_unlock(&db->vlock);
    return v;
}

/* Releases snapshots nobody can read any more: every one but the newest at or below the
 * horizon (it serves read versions up to the next one), unless a transaction still holds it.
 * Walks from the oldest end, so it costs what it releases, not the whole 5 s window. */
static void prune_snaps(struct FDB_database *db, int64_t horizon)
{
    pthread_mutex_lock(&db->vlock);
    struct snap *s = db->oldest_snap;
    while (s && s->newer && s->newer->version <= horizon) {
        struct snap *newer = s->newer;
        if (atomic_load(&s->refs) == 0) {
            if (s->older)
                s->older->newer = newer;
            else
                db->oldest_snap = newer;
            newer->older = s->older;
            rocksdb_release_snapshot(db->rocks, s->rocks);
            free(s);
        }
        s = newer;
    }
    pthread_mutex_unlock(&db->vlock);
}

/* ---- fault injection ---- */

int db_faults_enabled(const struct FDB_database *db)
{
    return db->fault_permille > 0;
}

uint64_t db_random(struct FDB_database *db)
{
    pthread_mutex_lock(&db->flock);
    uint64_t x = db->rng; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    db->rng = x;
    pthread_mutex_unlock(&db->flock);
    return x * 2685821657736338717ull;
}

void embedded_set_faults(FDBDatabase *db, uint64_t seed, int permille)
{
    pthread_mutex_lock(&db->flock);
    db->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
    db->fault_permille = permille < 0 ? 0 : permille > 1000 ? 1000 : permille;
    pthread_mutex_unlock(&db->flock);
}

void embedded_set_idempotency(FDBDatabase *db, int supported)
{
    pthread_mutex_lock(&db->flock);
    db->no_idempotency = !supported;
    pthread_mutex_unlock(&db->flock);
}

static int fault_roll(struct FDB_database *db)
{
    return db->fault_permille > 0 && (int)(db_random(db) % 1000) < db->fault_permille;
}

/* Completes f with err: in the caller's thread normally, on the network thread after a
 * random delay when faults are on (then every future completes there). */
void db_finish_future(struct FDB_database *db, FDBFuture *f, fdb_error_t err)
{
    if (!db_faults_enabled(db)) {
        future_set_ready(f, err);
        return;
    }
    future_ref(f);
    future_complete_async(f, err, db_random(db) % FAULT_MAX_DELAY_US);
}

/* ---- watches ---- */

struct watch_rec {
    RB_ENTRY(watch_rec) link;
    uint8_t *key;
    int key_len;
    FDBFuture *future; /* operation reference */
    int present;
    uint8_t *value;
    int value_len;
    int touched; /* written by the group being committed (commit thread) */
    struct FDB_database *db;
};

RB_HEAD(watch_tree, watch_rec);

static int watch_cmp(struct watch_rec *a, struct watch_rec *b)
{
    int c = writemap_compare_keys(a->key, a->key_len, b->key, b->key_len);
    if (c)
        return c;
    return (a->future > b->future) - (a->future < b->future);
}

RB_GENERATE_STATIC(watch_tree, watch_rec, link, watch_cmp)

static void watch_rec_free(struct watch_rec *w)
{
    free(w->key);
    free(w->value);
    free(w);
}

/* The user cancelled or destroyed a registered watch (called without f->mu). */
static void watch_on_cancel(FDBFuture *f, void *arg)
{
    struct watch_rec *w = arg;
    struct FDB_database *db = w->db;
    pthread_mutex_lock(&db->wlock);
    RB_REMOVE(watch_tree, (struct watch_tree *)db->watch_tree, w);
    db->watch_count--;
    pthread_mutex_unlock(&db->wlock);
    watch_rec_free(w);
    future_unref(f);
}

/* Takes a watch out of the table to complete it with err, unless the user is cancelling it
 * (then the cancel path owns it). Called with wlock held. */
static void watch_fire_locked(struct FDB_database *db, struct watch_rec *w, fdb_error_t err)
{
    FDBFuture *f = w->future;
    pthread_mutex_lock(&f->mu);
    int mine = f->on_cancel != NULL;
    f->on_cancel = NULL;
    pthread_mutex_unlock(&f->mu);
    if (!mine)
        return;
    RB_REMOVE(watch_tree, (struct watch_tree *)db->watch_tree, w);
    db->watch_count--;
    watch_rec_free(w);
    future_complete_async(f, err, db_faults_enabled(db) ? db_random(db) % FAULT_MAX_DELAY_US : 0);
}

static int same_value(int p1, const uint8_t *v1, int l1, int p2, const uint8_t *v2, int l2)
{
    if (p1 != p2)
        return 0;
    return !p1 || (l1 == l2 && (l1 == 0 || memcmp(v1, v2, (size_t)l1) == 0));
}

/* The latest committed value of key (commit thread: nothing else writes). */
static void latest_value(struct FDB_database *db, const uint8_t *key, int key_len, int *present,
                         uint8_t **value, int *value_len)
{
    char *err = NULL;
    size_t len = 0;
    char *v = rocksdb_get_cf(db->rocks, db->read_latest, db->cf_data, (const char *)key,
                             (size_t)key_len, &len, &err);
    if (err) { /* treated as absent; the storage error also fails commits */
        free(err);
        v = NULL;
    }
    *present = v != NULL;
    *value = (uint8_t *)v;
    *value_len = (int)len;
}

/* Registers a committed transaction's watch; see watch_fire_locked for the ownership. */
static void watch_register(struct FDB_database *db, struct pending_watch *pw)
{
    FDBFuture *f = pw->future;
    int present, len;
    uint8_t *value;
    latest_value(db, pw->key, pw->key_len, &present, &value, &len);
    fdb_error_t fire = -1;
    if (!same_value(present, value, len, pw->present, pw->value, pw->value_len))
        fire = 0;
    free(value);
    pthread_mutex_lock(&db->wlock);
    if (fire < 0 && db->watch_count >= MAX_WATCHES)
        fire = FDB_ERR_TOO_MANY_WATCHES;
    if (fire >= 0) {
        pthread_mutex_unlock(&db->wlock);
        future_complete_async(f, fire, 0);
        return;
    }
    struct watch_rec *w = calloc(1, sizeof(*w));
    if (!w)
        abort();
    w->key = malloc(pw->key_len ? (size_t)pw->key_len : 1);
    w->value = malloc(pw->value_len ? (size_t)pw->value_len : 1);
    if (!w->key || !w->value)
        abort();
    memcpy(w->key, pw->key, (size_t)pw->key_len);
    memcpy(w->value, pw->value, (size_t)pw->value_len);
    w->key_len = pw->key_len;
    w->value_len = pw->value_len;
    w->present = pw->present;
    w->future = f;
    w->db = db;
    pthread_mutex_lock(&f->mu);
    int cancelled = atomic_load(&f->ready);
    if (!cancelled) {
        f->on_cancel = watch_on_cancel;
        f->on_cancel_arg = w;
    }
    pthread_mutex_unlock(&f->mu);
    if (cancelled) {
        pthread_mutex_unlock(&db->wlock);
        watch_rec_free(w);
        future_unref(f);
        return;
    }
    RB_INSERT(watch_tree, (struct watch_tree *)db->watch_tree, w);
    db->watch_count++;
    pthread_mutex_unlock(&db->wlock);
}

/* Marks the watches on key as written by the group; called only when the group keeps no
 * overlay (a group with a range clear keeps one). */
static void watch_touch(struct FDB_database *db, const uint8_t *key, int key_len)
{
    if (db->watch_count == 0) /* only the commit thread raises the count */
        return;
    struct watch_rec probe = {.key = (uint8_t *)key, .key_len = key_len, .future = NULL};
    pthread_mutex_lock(&db->wlock);
    struct watch_rec *w = RB_NFIND(watch_tree, (struct watch_tree *)db->watch_tree, &probe);
    for (; w && writemap_compare_keys(w->key, w->key_len, key, key_len) == 0;
         w = RB_NEXT(watch_tree, (struct watch_tree *)db->watch_tree, w))
        w->touched = 1;
    pthread_mutex_unlock(&db->wlock);
}

/* Fires the watches on keys whose value the group changed. The group's final values are in
 * the overlay (entries, and cleared intervals for keys without an entry) when it kept one;
 * else the touched watches compare with the store, which now holds the group's writes. */
static void watch_fire_changed(struct FDB_database *db)
{
    pthread_mutex_lock(&db->wlock);
    struct watch_tree *t = db->watch_tree;
    struct watch_rec *w = RB_MIN(watch_tree, t), *next;
    for (; w; w = next) {
        next = RB_NEXT(watch_tree, t, w);
        if (!db->use_overlay) {
            if (!w->touched)
                continue;
            w->touched = 0;
            int present, len;
            uint8_t *value;
            latest_value(db, w->key, w->key_len, &present, &value, &len);
            int same = same_value(present, value, len, w->present, w->value, w->value_len);
            free(value);
            if (!same)
                watch_fire_locked(db, w, 0);
            continue;
        }
        struct writemap_entry *e = writemap_find(db->overlay, w->key, w->key_len);
        int present;
        const uint8_t *value = NULL;
        int len = 0;
        if (e) {
            present = e->present;
            value = e->value;
            len = e->value_len;
        } else if (writemap_in_cleared_range(db->overlay, w->key, w->key_len)) {
            present = 0;
        } else {
            continue;
        }
        if (!same_value(present, value, len, w->present, w->value, w->value_len))
            watch_fire_locked(db, w, 0);
    }
    pthread_mutex_unlock(&db->wlock);
}

/* ---- the commit thread ---- */

void db_submit_commit(struct FDB_database *db, struct commit_req *req)
{
    atomic_fetch_add(&db->commits_in_flight, 1); /* until txn_commit_done has finished */
    req->next = NULL;
    pthread_mutex_lock(&db->qlock);
    if (db->qtail)
        db->qtail->next = req;
    else
        db->qhead = req;
    db->qtail = req;
    pthread_mutex_unlock(&db->qlock);
    pthread_cond_signal(&db->qcv);
}

/* FDB_NET_OPTION_KNOB memtable_insert_hint_prefix_bytes (0: off); read when a database opens. */
static int hint_prefix_bytes;

struct version_batch {
    int64_t version;
    int count;
    rocksdb_writebatch_t *batch;
};

/* The value the group sees for key: the overlay, else the store. Result malloc'd. */
static void group_value(struct FDB_database *db, const uint8_t *key, int key_len, int *present,
                        uint8_t **value, int *value_len)
{
    struct writemap_entry *e = writemap_find(db->overlay, key, key_len);
    if (e) {
        *present = e->present;
        *value_len = e->present ? e->value_len : 0;
        *value = malloc(*value_len ? (size_t)*value_len : 1);
        if (!*value)
            abort();
        if (*value_len)
            memcpy(*value, e->value, (size_t)*value_len);
        return;
    }
    if (writemap_in_cleared_range(db->overlay, key, key_len)) {
        *present = 0;
        *value = NULL;
        *value_len = 0;
        return;
    }
    latest_value(db, key, key_len, present, value, value_len);
}

static void batch_put(struct FDB_database *db, struct version_batch *vb, const uint8_t *key,
                      int key_len, const uint8_t *value, int value_len)
{
    rocksdb_writebatch_put_cf(vb->batch, db->cf_data, (const char *)key, (size_t)key_len,
                              (const char *)value, (size_t)value_len);
    if (db->use_overlay)
        writemap_set(db->overlay, key, key_len, value, value_len);
    else
        watch_touch(db, key, key_len);
}

static void batch_delete(struct FDB_database *db, struct version_batch *vb, const uint8_t *key,
                         int key_len)
{
    rocksdb_writebatch_delete_cf(vb->batch, db->cf_data, (const char *)key, (size_t)key_len);
    if (db->use_overlay)
        writemap_clear(db->overlay, key, key_len);
    else
        watch_touch(db, key, key_len);
}

/* Clears [begin, end) key by key: the keys the store holds, and those the group wrote (the
 * overlay, which a group with a range clear always keeps; it is updated once, for the whole
 * range, at the end). FoundationDB clears a range at once, and
 * RocksDB's DeleteRange would too, but the memtable of RocksDB 7 uses one table of insert
 * hints for its point entries and its range deletions, and corrupts itself when both come
 * from one key prefix (see embedded_network_set_option). So the engine writes no range
 * deletions; a range clear costs the commit thread one step per key in the range. */
static void batch_clear_range(struct FDB_database *db, struct version_batch *vb,
                              const uint8_t *begin, int begin_len, const uint8_t *end,
                              int end_len)
{
    for (struct writemap_entry *e = writemap_seek_ge(db->overlay, begin, begin_len, 1);
         e && writemap_compare_keys(e->key, e->key_len, end, end_len) < 0;
         e = writemap_next(e))
        rocksdb_writebatch_delete_cf(vb->batch, db->cf_data, (const char *)e->key,
                                     (size_t)e->key_len);

    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)end, (size_t)end_len);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rocks, ro, db->cf_data);
    for (rocksdb_iter_seek(it, (const char *)begin, (size_t)begin_len); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t len;
        const char *k = rocksdb_iter_key(it, &len);
        rocksdb_writebatch_delete_cf(vb->batch, db->cf_data, k, len);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    if (err && !db->apply_error)
        db->apply_error = err; /* keys may be missing from the clear: fail the group */
    else
        free(err);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    writemap_clear_range(db->overlay, begin, begin_len, end, end_len);
}

/* Replaces the 10 placeholder bytes at `offset` of a copy of bytes[0..len) with the
 * versionstamp (version, index), big-endian. */
static uint8_t *stamped_copy(const uint8_t *bytes, int len, int offset, int64_t version,
                             uint16_t index)
{
    uint8_t *out = malloc(len ? (size_t)len : 1);
    if (!out)
        abort();
    memcpy(out, bytes, (size_t)len);
    put_be64(out + offset, (uint64_t)version);
    out[offset + 8] = (uint8_t)(index >> 8);
    out[offset + 9] = (uint8_t)index;
    return out;
}

/* ---- conflict history generations ---- */

static void record_write(struct FDB_database *db, const uint8_t *begin, int begin_len,
                         const uint8_t *end, int end_len, int64_t version)
{
    conflict_add_write(db->gens[0].history, begin, begin_len, end, end_len, version);
    if (version > db->gens[0].max_version)
        db->gens[0].max_version = version;
}

/* Whether a write newer than read_version touched r; generations whose newest write is not
 * newer than the read version are skipped whole (the newest generation may be empty, so
 * every generation is looked at). */
static int history_conflicts(struct FDB_database *db, const struct key_range *r,
                             int64_t read_version)
{
    for (int i = 0; i < db->n_gens; i++)
        if (db->gens[i].max_version > read_version && /* else nothing in it is newer */
            conflict_check(db->gens[i].history, r->begin, r->begin_len, r->end, r->end_len,
                           read_version))
            return 1;
    return 0;
}

/* Starts a new generation when the newest has writes (about once a second) and drops the
 * generations all of whose writes are at or below the horizon. */
static void rotate_history(struct FDB_database *db, int64_t horizon)
{
    while (db->n_gens > 1 && db->gens[db->n_gens - 1].max_version <= horizon) {
        db->n_gens--;
        conflict_destroy(db->gens[db->n_gens].history);
    }
    if (db->gens[0].max_version == 0 || db->n_gens == CONFLICT_GENERATIONS)
        return;
    memmove(&db->gens[1], &db->gens[0], (size_t)db->n_gens * sizeof(db->gens[0]));
    db->gens[0].history = conflict_create();
    db->gens[0].max_version = 0;
    db->n_gens++;
}

/* Applies one request's mutations, in order, at (vb->version, index). */
static void apply_mutations(struct FDB_database *db, struct version_batch *vb,
                            struct commit_req *req, uint16_t index)
{
    for (int i = 0; i < req->mutations.count; i++) {
        struct mutation *m = &req->mutations.items[i];
        int off, body;
        switch (m->type) {
        case MUT_SET:
            batch_put(db, vb, m->key, m->key_len, m->param, m->param_len);
            break;
        case MUT_CLEAR:
            batch_delete(db, vb, m->key, m->key_len);
            break;
        case MUT_CLEAR_RANGE:
            batch_clear_range(db, vb, m->key, m->key_len, m->param, m->param_len);
            break;
        case FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_KEY:
            /* validated when the transaction recorded it */
            if (mutation_versionstamp_offset(m->key, m->key_len, &off, &body) == 0) {
                /* one spare byte: the conflict range is [k, k + "\0") */
                uint8_t *k = stamped_copy(m->key, body + 1, off, vb->version, index);
                k[body] = 0;
                batch_put(db, vb, k, body, m->param, m->param_len);
                record_write(db, k, body, k, body + 1, vb->version);
                free(k);
            }
            break;
        case FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_VALUE:
            if (mutation_versionstamp_offset(m->param, m->param_len, &off, &body) == 0) {
                uint8_t *v = stamped_copy(m->param, body, off, vb->version, index);
                batch_put(db, vb, m->key, m->key_len, v, body);
                free(v);
            }
            break;
        default: { /* atomic op on the group's current value */
            int present, len, out_len, out_present;
            uint8_t *value, *out;
            group_value(db, m->key, m->key_len, &present, &value, &len);
            mutation_apply(m->type, present, value, len, m->param, m->param_len, &out, &out_len,
                           &out_present);
            if (out_present)
                batch_put(db, vb, m->key, m->key_len, out, out_len);
            else
                batch_delete(db, vb, m->key, m->key_len);
            free(value);
            free(out);
            break;
        }
        }
    }
    for (int i = 0; i < req->writes.count; i++) {
        struct key_range *r = &req->writes.items[i];
        record_write(db, r->begin, r->begin_len, r->end, r->end_len, vb->version);
    }
}

static void batch_open(struct FDB_database *db, struct version_batch *vb)
{
    vb->version = assign_version(db);
    vb->count = 0;
    vb->batch = rocksdb_writebatch_create();
}

/* Whether the request conflicts; sets req->error if it must fail before applying. */
static int resolve(struct FDB_database *db, struct commit_req *req)
{
    if (req->reads.count > 0 &&
        req->read_version < db_clock_version(db) - FDB_MAX_READ_TRANSACTION_LIFE_VERSIONS) {
        req->error = FDB_ERR_TRANSACTION_TOO_OLD;
        return 1;
    }
    for (int i = 0; i < req->reads.count; i++) {
        struct key_range *r = &req->reads.items[i];
        if (history_conflicts(db, r, req->read_version)) {
            req->error = FDB_ERR_NOT_COMMITTED;
            return 1;
        }
    }
    return 0;
}

/* Whether a request of the group reads what the group's earlier writes left: an atomic
 * operation (other than a versionstamp) reads the key's value, a range clear the keys
 * written. */
static int group_needs_overlay(const struct commit_req *list)
{
    for (const struct commit_req *req = list; req; req = req->next)
        for (int i = 0; i < req->mutations.count; i++) {
            int t = req->mutations.items[i].type;
            if (t != MUT_SET && t != MUT_CLEAR &&
                t != FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_KEY &&
                t != FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_VALUE)
                return 1;
        }
    return 0;
}

static void process_group(struct FDB_database *db, struct commit_req *list)
{
    VEC(struct version_batch) batches = {0};
    struct version_batch vb = {0};
    writemap_reset(db->overlay);
    db->use_overlay = group_needs_overlay(list);
    fdb_error_t failed;
    pthread_mutex_lock(&db->vlock);
    failed = db->failed;
    pthread_mutex_unlock(&db->vlock);

    for (struct commit_req *req = list; req; req = req->next) {
        req->version = -1;
        if (failed) {
            req->error = failed;
            continue;
        }
        if (req->mutations.count == 0 && req->writes.count == 0)
            continue; /* read-only: succeeds without a version */
        if (fault_roll(db)) {
            req->error = db_random(db) % 2 ? FDB_ERR_NOT_COMMITTED : FDB_ERR_TRANSACTION_TOO_OLD;
            continue;
        }
        int unknown = fault_roll(db);
        int idempotent = req->idempotent && !db->no_idempotency;
        if (unknown && db_random(db) % 2) {
            /* commit_unknown_result without applying; with automatic idempotency the
             * engine knows it did not apply and says so. */
            req->error = idempotent ? FDB_ERR_NOT_COMMITTED : FDB_ERR_COMMIT_UNKNOWN_RESULT;
            continue;
        }
        if (resolve(db, req))
            continue;
        if (!vb.batch || (req->first_in_batch && vb.count > 0) ||
            vb.count == BATCH_MAX_TRANSACTIONS) {
            if (vb.batch)
                VEC_PUSH(batches, vb);
            batch_open(db, &vb);
        }
        req->version = vb.version;
        req->batch_index = (uint16_t)vb.count++;
        apply_mutations(db, &vb, req, req->batch_index);
        if (unknown && !idempotent)
            req->error = FDB_ERR_COMMIT_UNKNOWN_RESULT; /* applied, but not acknowledged */
    }
    if (vb.batch)
        VEC_PUSH(batches, vb);

    /* (3): write and fsync, then publish. */
    VEC(struct snap *) snaps = {0};
    char *err = db->apply_error; /* then nothing is written */
    db->apply_error = NULL;
    for (int i = 0; i < batches.count && !err; i++) {
        struct version_batch *b = &batches.items[i];
        uint8_t v[8];
        put_be64(v, (uint64_t)b->version);
        rocksdb_writebatch_put_cf(b->batch, db->cf_meta, META_VERSION, sizeof(META_VERSION) - 1,
                                  (const char *)v, 8);
        rocksdb_write(db->rocks, i == batches.count - 1 ? db->write_sync : db->write_nosync,
                      b->batch, &err);
        if (!err) {
            struct snap *s = calloc(1, sizeof(*s));
            if (!s)
                abort();
            s->version = b->version;
            s->rocks = rocksdb_create_snapshot(db->rocks);
            VEC_PUSH(snaps, s);
        }
    }
    for (int i = 0; i < batches.count; i++)
        rocksdb_writebatch_destroy(batches.items[i].batch);
    free(batches.items);

    pthread_mutex_lock(&db->vlock);
    for (int i = 0; i < snaps.count; i++) {
        snaps.items[i]->older = db->snaps;
        snaps.items[i]->newer = NULL;
        if (db->snaps)
            db->snaps->newer = snaps.items[i];
        else
            db->oldest_snap = snaps.items[i];
        db->snaps = snaps.items[i];
        db->last_committed = snaps.items[i]->version;
    }
    db->inflight_first = 0;
    if (err) {
        fprintf(stderr, "etcd-fdb: embedded store write failed: %s\n", err);
        db->failed = FDB_ERR_INTERNAL_ERROR;
    }
    pthread_mutex_unlock(&db->vlock);
    free(snaps.items);

    if (err) {
        /* Versions that were not published are unknown: fail them as such. */
        for (struct commit_req *req = list; req; req = req->next)
            if (!req->error && req->version > db->last_committed)
                req->error = FDB_ERR_COMMIT_UNKNOWN_RESULT;
        free(err);
    }

    if (db->watch_count > 0)
        watch_fire_changed(db);
    for (struct commit_req *req = list; req;) {
        struct commit_req *next = req->next;
        if (!req->error)
            for (int i = 0; i < req->watches.count; i++)
                watch_register(db, &req->watches.items[i]);
        /* On failure txn_commit_done fails the watches with the commit's error. Without
         * faults it runs here: a client blocked on the commit wakes at once rather than after
         * a hop through the network thread, which still runs every callback. */
        if (db_faults_enabled(db))
            network_post((network_task_fn)txn_commit_done, req,
                         db_random(db) % FAULT_MAX_DELAY_US);
        else
            txn_commit_done(req);
        req = next;
    }
}

static void *commit_thread_main(void *arg)
{
    struct FDB_database *db = arg;
    for (;;) {
        pthread_mutex_lock(&db->qlock);
        if (!db->qhead && !db->stopping) {
            /* qcv uses the monotonic clock */
            struct timespec ts = kv_deadline_ms(CLOCK_MONOTONIC, 100);
            pthread_cond_timedwait(&db->qcv, &db->qlock, &ts);
        }
        struct commit_req *list = db->qhead, *last = list;
        int n = list ? 1 : 0;
        while (last && last->next && n < GROUP_MAX_REQUESTS) {
            last = last->next;
            n++;
        }
        if (last) {
            db->qhead = last->next;
            if (!db->qhead)
                db->qtail = NULL;
            last->next = NULL;
        }
        int stop = db->stopping && !list;
        pthread_mutex_unlock(&db->qlock);
        if (stop)
            break;

        uint64_t now = network_now_us();
        int64_t horizon = db_clock_version(db) - FDB_MAX_READ_TRANSACTION_LIFE_VERSIONS;
        if (now - db->last_prune_us > 100000) {
            prune_snaps(db, horizon);
            db->last_prune_us = now;
        }
        if (now - db->last_rotate_us > 1000000) {
            rotate_history(db, horizon);
            db->last_rotate_us = now;
        }
        if (list)
            process_group(db, list);
    }
    return NULL;
}

/* ---- open and close ---- */

static fdb_error_t read_meta(struct FDB_database *db, const char *name, int64_t *out, int *found)
{
    char *err = NULL;
    size_t len = 0;
    char *v = rocksdb_get_cf(db->rocks, db->read_latest, db->cf_meta, name, strlen(name), &len,
                             &err);
    if (err) {
        fprintf(stderr, "etcd-fdb: embedded store: %s\n", err);
        free(err);
        return FDB_ERR_INTERNAL_ERROR;
    }
    *found = v && len == 8;
    if (*found)
        *out = (int64_t)get_be64((const uint8_t *)v);
    free(v);
    return 0;
}

static void database_free(struct FDB_database *db)
{
    for (struct snap *s = db->snaps, *older; s; s = older) {
        older = s->older;
        rocksdb_release_snapshot(db->rocks, s->rocks);
        free(s);
    }
    if (db->cf_data)
        rocksdb_column_family_handle_destroy(db->cf_data);
    if (db->cf_meta)
        rocksdb_column_family_handle_destroy(db->cf_meta);
    if (db->rocks)
        rocksdb_close(db->rocks);
    if (db->options)
        rocksdb_options_destroy(db->options);
    if (db->table_options)
        rocksdb_block_based_options_destroy(db->table_options);
    if (db->cache)
        rocksdb_cache_destroy(db->cache);
    if (db->write_sync)
        rocksdb_writeoptions_destroy(db->write_sync);
    if (db->write_nosync)
        rocksdb_writeoptions_destroy(db->write_nosync);
    if (db->read_latest)
        rocksdb_readoptions_destroy(db->read_latest);
    for (int i = 0; i < db->n_gens; i++)
        conflict_destroy(db->gens[i].history);
    writemap_destroy(db->overlay);
    free(db->watch_tree);
    pthread_mutex_destroy(&db->vlock);
    pthread_mutex_destroy(&db->qlock);
    pthread_cond_destroy(&db->qcv);
    pthread_mutex_destroy(&db->wlock);
    pthread_mutex_destroy(&db->flock);
    free(db->path);
    free(db);
}

static fdb_error_t embedded_create_database(const char *path, FDBDatabase **out)
{
    if (network_api_version() == 0)
        return FDB_ERR_API_VERSION_UNSET;
    if (!path || !*path)
        return FDB_ERR_CONNECTION_STRING_INVALID;
    struct FDB_database *db = calloc(1, sizeof(*db));
    if (!db)
        abort();
    pthread_mutex_init(&db->vlock, NULL);
    pthread_mutex_init(&db->qlock, NULL);
    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_init(&db->qcv, &monotonic);
    pthread_condattr_destroy(&monotonic);
    pthread_mutex_init(&db->wlock, NULL);
    pthread_mutex_init(&db->flock, NULL);
    db->path = strdup(path);
    db->gens[0].history = conflict_create();
    db->n_gens = 1;
    db->overlay = writemap_create();
    db->watch_tree = calloc(1, sizeof(struct watch_tree));
    if (!db->path || !db->watch_tree)
        abort();
    RB_INIT((struct watch_tree *)db->watch_tree);

    db->options = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(db->options, 1);
    rocksdb_options_set_create_missing_column_families(db->options, 1);
    rocksdb_options_set_wal_recovery_mode(db->options, 2); /* point in time */
    rocksdb_options_increase_parallelism(db->options, 2);
    rocksdb_options_set_max_background_jobs(db->options, 2);
    /* The engine column family changes with every commit but holds one key: bound the WAL so
     * it is flushed too, instead of pinning old logs (long restarts). */
    rocksdb_options_set_max_total_wal_size(db->options, 128u << 20);
    db->table_options = rocksdb_block_based_options_create();
    db->cache = rocksdb_cache_create_lru(128u << 20);
    rocksdb_block_based_options_set_block_cache(db->table_options, db->cache);
    rocksdb_block_based_options_set_filter_policy(db->table_options,
                                                  rocksdb_filterpolicy_create_bloom(10));
    /* Index and filter blocks stay with their table readers, outside the block cache: a
     * long scan (a DeleteRange of 450,000 keys) otherwise evicts them, and every iterator
     * it creates reads and decompresses the index blocks again (etcdctl check perf's
     * clean-up took more than its 30 s). */
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(db->table_options, 0);
    rocksdb_options_set_block_based_table_factory(db->options, db->table_options);
    char *err = NULL;
    if (hint_prefix_bytes > 0) { /* see embedded_network_set_option */
        char opts[160];
        snprintf(opts, sizeof(opts),
                 "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.%d;"
                 "allow_concurrent_memtable_write=false",
                 hint_prefix_bytes);
        rocksdb_options_t *tuned = rocksdb_options_create();
        rocksdb_get_options_from_string(db->options, opts, tuned, &err);
        if (err) {
            fprintf(stderr, "etcd-fdb: embedded store options: %s\n", err);
            free(err);
            rocksdb_options_destroy(tuned);
            database_free(db);
            return FDB_ERR_INTERNAL_ERROR;
        }
        rocksdb_options_destroy(db->options);
        db->options = tuned;
    }

    const char *names[2] = {"default", "engine"};
    const rocksdb_options_t *cf_opts[2] = {db->options, db->options};
    rocksdb_column_family_handle_t *handles[2] = {NULL, NULL};
    db->rocks = rocksdb_open_column_families(db->options, path, 2, names, cf_opts, handles, &err);
    if (err) {
        fprintf(stderr, "etcd-fdb: cannot open embedded store at %s: %s\n", path, err);
        free(err);
        database_free(db);
        return FDB_ERR_CONNECTION_STRING_INVALID;
    }
    db->cf_data = handles[0];
    db->cf_meta = handles[1];
    db->write_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(db->write_sync, 1);
    db->write_nosync = rocksdb_writeoptions_create();
    db->read_latest = rocksdb_readoptions_create();

    int found;
    int64_t last = 0;
    fdb_error_t ferr = read_meta(db, META_EPOCH, &db->epoch_us, &found);
    if (!ferr && !found) {
        uint8_t v[8];
        db->epoch_us = wall_us();
        put_be64(v, (uint64_t)db->epoch_us);
        rocksdb_put_cf(db->rocks, db->write_sync, db->cf_meta, META_EPOCH,
                       sizeof(META_EPOCH) - 1, (const char *)v, 8, &err);
        if (err) {
            fprintf(stderr, "etcd-fdb: embedded store: %s\n", err);
            free(err);
            ferr = FDB_ERR_INTERNAL_ERROR;
        }
    }
    if (!ferr)
        ferr = read_meta(db, META_VERSION, &last, &found);
    if (ferr) {
        database_free(db);
        return ferr;
    }
    db->max_issued = db->last_committed = last;
    struct snap *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->version = last;
    s->rocks = rocksdb_create_snapshot(db->rocks);
    db->snaps = s;
    db->oldest_snap = s;

    const char *faults = getenv("ETCD_FDB_FAULTS");
    if (faults && *faults) {
        unsigned long long seed = 0;
        int permille = 0;
        if (sscanf(faults, "%llu:%d", &seed, &permille) == 2)
            embedded_set_faults(db, seed, permille);
    }
    if (pthread_create(&db->commit_thread, NULL, commit_thread_main, db) != 0) {
        database_free(db);
        return FDB_ERR_INTERNAL_ERROR;
    }
    pthread_setname_np(db->commit_thread, "kv-commit");
    db->commit_thread_started = 1;
    *out = db;
    return 0;
}

/* Stops the commit thread after it has processed what was queued, cancels outstanding
 * watches, and closes the store. Transactions must have been destroyed (FoundationDB's
 * rule too). */
static void embedded_database_destroy(FDBDatabase *db)
{
    if (!db)
        return;
    pthread_mutex_lock(&db->qlock);
    db->stopping = 1;
    pthread_mutex_unlock(&db->qlock);
    pthread_cond_signal(&db->qcv);
    if (db->commit_thread_started)
        pthread_join(db->commit_thread, NULL);
    pthread_mutex_lock(&db->wlock);
    struct watch_tree *t = db->watch_tree;
    struct watch_rec *w, *next;
    for (w = RB_MIN(watch_tree, t); w; w = next) {
        next = RB_NEXT(watch_tree, t, w);
        watch_fire_locked(db, w, FDB_ERR_OPERATION_CANCELLED);
    }
    pthread_mutex_unlock(&db->wlock);
    /* A watch being cancelled right now still needs the table, and a commit answer still on
     * its way through the network thread still holds a transaction and its snapshot: wait
     * for both to let go. */
    for (;;) {
        pthread_mutex_lock(&db->wlock);
        int left = db->watch_count + atomic_load(&db->commits_in_flight);
        pthread_mutex_unlock(&db->wlock);
        if (!left)
            break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    database_free(db);
}

static fdb_error_t embedded_database_set_option(FDBDatabase *db, int option,
                                                const uint8_t *value, int value_length)
{
    return 0; /* database options only tune a real cluster's client; none changes semantics */
}

static fdb_error_t embedded_select_api_version(int version)
{
    return network_select_api_version(version);
}

#define HINT_KNOB "memtable_insert_hint_prefix_bytes="

/* Tracing and client options have no meaning for the embedded engine; one knob of its own
 * (FDB_NET_OPTION_KNOB "memtable_insert_hint_prefix_bytes=N", set before create_database)
 * makes RocksDB keep, for each distinct first N bytes of a key, where the last key with
 * them went into the memtable, and start the next insert from there. A layer whose keys
 * are a fixed prefix, a subspace code, then keys written in order (a log, or the keys of
 * one request) passes the length up to the subspace code: each insert then walks the
 * lower levels of the skip list only, instead of the whole height of it. */
static fdb_error_t embedded_network_set_option(int option, const uint8_t *value, int len)
{
    size_t n = sizeof(HINT_KNOB) - 1;
    if (option != FDB_NET_OPTION_KNOB || !value || len <= (int)n ||
        memcmp(value, HINT_KNOB, n) != 0)
        return 0;
    int bytes = 0;
    for (int i = (int)n; i < len; i++) {
        if (value[i] < '0' || value[i] > '9' || bytes > 100000)
            return FDB_ERR_INVALID_OPTION_VALUE;
        bytes = bytes * 10 + (value[i] - '0');
    }
    hint_prefix_bytes = bytes;
    return 0;
}

static struct kv_api embedded_table;
static pthread_once_t embedded_table_once = PTHREAD_ONCE_INIT;

static void embedded_table_init(void)
{
    struct kv_api *api = &embedded_table;
    api->name = "embedded";
    api->select_api_version = embedded_select_api_version;
    api->network_set_option = embedded_network_set_option;
    api->setup_network = network_setup;
    api->run_network = network_run;
    api->stop_network = network_stop;
    api->get_error = fdb_errors_describe;
    api->error_predicate = fdb_errors_predicate;
    api->create_database = embedded_create_database;
    api->database_destroy = embedded_database_destroy;
    api->database_set_option = embedded_database_set_option;
    api->future_cancel = future_api_cancel;
    api->future_destroy = future_api_destroy;
    api->future_block_until_ready = future_api_block_until_ready;
    api->future_is_ready = future_api_is_ready;
    api->future_set_callback = future_api_set_callback;
    api->future_get_error = future_api_get_error;
    api->future_get_int64 = future_api_get_int64;
    api->future_get_key = future_api_get_key;
    api->future_get_value = future_api_get_value;
    api->future_get_keyvalue_array = future_api_get_keyvalue_array;
    embedded_fill_txn_api(api);
}

const struct kv_api *embedded_api(void)
{
    pthread_once(&embedded_table_once, embedded_table_init);
    return &embedded_table;
}

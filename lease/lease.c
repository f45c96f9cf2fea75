/* lease.c -- lease leadership and expiry (see lease.h).
 *
 * States of a manager: FOLLOWER --take over an expired or absent record--> LEADER
 * (extend every lease, then expire due leases each step) --renewal fails or the record
 * changed--> FOLLOWER.
 *
 * Invariants:
 * (1) only the holder of the current ballot revokes: every revoke is fenced on the record;
 * (2) a lease is revoked once: the revoke transaction reads the lease and deletes it, so two
 *     revokes conflict and the loser finds it gone;
 * (3) a keepalive that lands between the expiry scan and the revoke wins: the revoke
 *     re-reads the expiry and does nothing if it moved. */
#include "lease/lease.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv/arena.h"
#include "kv/deadline.h"
#include "kv/log.h"
#include "kv/retry.h"

#define LEADER_HOLD_MS 5000
#define STEP_MS 500        /* leadership is renewed this often */
#define EXPIRE_EVERY_MS 100 /* the leader looks for due leases this often */
#define EXPIRE_BATCH 1024
#define EXPIRE_GROUP 32 /* leases revoked by one expiry transaction (one revision) */
#define REVOKERS 8      /* expiry transactions in flight at once */

struct lease_mgr {
    struct mvcc *m;
    uint8_t *record_key;
    size_t record_key_len;
    uint8_t owner[16];
    uint8_t fence_value[32]; /* ballot(8) owner(16) until(8) as last written; the first 24
                                bytes are the term, the fence of every revoke */
    int leader;
    int64_t last_claim_ms;
    pthread_t thread;
    int has_thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
};

int64_t lease_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void be64(uint8_t *p, int64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)((uint64_t)v >> (56 - 8 * i));
}

static int64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return (int64_t)v;
}

struct claim {
    struct lease_mgr *mgr;
    int64_t now_ms;
    int won;
    int renewed; /* the record was our own current one: same term */
};

/* Takes or renews leadership: if the record is absent, expired, or ours, write a new one. */
static fdb_error_t claim_body(const struct kv_api *api, FDBTransaction *tr, void *arg)
{
    struct claim *c = arg;
    struct lease_mgr *mgr = c->mgr;
    c->won = c->renewed = 0;
    FDBFuture *f = api->transaction_get(tr, mgr->record_key, (int)mgr->record_key_len, 0);
    fdb_error_t err = kv_wait(api, f);
    fdb_bool_t present = 0;
    const uint8_t *v = NULL;
    int len = 0;
    if (!err)
        err = api->future_get_value(f, &present, &v, &len);
    if (err) {
        api->future_destroy(f);
        return err;
    }
    int64_t ballot = 0;
    int ours = 0, free_to_take = 1;
    if (present && len == 32) {
        ballot = get64(v);
        /* ours: our owner id and our ballot (the valid-until part changes with renewals,
         * and a renewal whose commit outcome was unknown may have changed it) */
        ours = memcmp(v, mgr->fence_value, 24) == 0 && memcmp(v + 8, mgr->owner, 16) == 0;
        free_to_take = get64(v + 24) < c->now_ms;
    }
    api->future_destroy(f);
    if (!ours && !free_to_take)
        return 0;
    uint8_t rec[32];
    be64(rec, ours ? ballot : ballot + 1);
    memcpy(rec + 8, mgr->owner, 16);
    be64(rec + 24, c->now_ms + LEADER_HOLD_MS);
    api->transaction_set(tr, mgr->record_key, (int)mgr->record_key_len, rec, 32);
    memcpy(mgr->fence_value, rec, 32); /* restored by the caller if the commit fails */
    c->won = 1;
    c->renewed = ours;
    return 0;
}

/* Takes or renews leadership; a new term first extends every lease. Returns 1 if this
 * process leads. */
static int claim(struct lease_mgr *mgr, int64_t now_ms)
{
    const struct kv_api *api = mvcc_api(mgr->m);
    uint8_t previous[32];
    memcpy(previous, mgr->fence_value, 32);
    struct claim c = {mgr, now_ms, 0, 0};
    fdb_error_t err = kv_transact(api, mvcc_database(mgr->m), claim_body, &c, NULL);
    if (err) {
        /* A store error says nothing about who leads: keep the state, expire nothing now.
         * (The fence keeps a deposed leader from deleting anything anyway.) */
        memcpy(mgr->fence_value, previous, 32);
        return 0;
    }
    mgr->last_claim_ms = now_ms;
    if (!c.won) {
        if (mgr->leader)
            log_msg(LOG_INFO, "lease: lost leadership");
        mgr->leader = 0;
        return 0;
    }
    mgr->leader = 1;
    if (!c.renewed) { /* a new term: every lease gets its full TTL again */
        log_msg(LOG_INFO, "lease: became leader (ballot %lld)", (long long)get64(mgr->fence_value));
        struct mvcc_fence fence = {mgr->record_key, mgr->record_key_len, mgr->fence_value, 24};
        fdb_error_t store_error = 0;
        if (mvcc_lease_extend_all(mgr->m, now_ms, &fence, &store_error) != 0) {
            mgr->leader = 0; /* try again next step */
            return 0;
        }
    }
    return 1;
}

/* Revokes due leases: groups of EXPIRE_GROUP per transaction, REVOKERS transactions at a
 * time. The revokers share one queue of due leases, refilled from the expiry index (after
 * the last lease queued) by whichever revoker finds it running low, so the transactions in
 * flight stay at REVOKERS while leases keep falling due; they stop when a refill finds
 * nothing new. */
struct revoke_queue {
    struct lease_mgr *mgr;
    int64_t now_ms;
    int live; /* refill at the wall clock's now, not at now_ms */
    pthread_mutex_t mu;
    pthread_cond_t refilled;
    int64_t *ids;
    size_t n, cap, next;
    struct mvcc_expiry_cursor cursor;
    int refilling, drained; /* drained: the last refill found nothing new */
    int revoked, fenced;
    pthread_t threads[REVOKERS - 1]; /* besides the caller's; all joined by expire() */
    int started;
};

static void *revoker_main(void *arg);

/* Starts revokers (called with q->mu held) until there is one per queued group, at most
 * REVOKERS with the caller of expire(). */
static void add_revokers(struct revoke_queue *q)
{
    size_t groups = (q->n - q->next + EXPIRE_GROUP - 1) / EXPIRE_GROUP;
    while (q->started < REVOKERS - 1 && (size_t)q->started + 1 < groups) {
        if (pthread_create(&q->threads[q->started], NULL, revoker_main, q) != 0)
            return;
        pthread_setname_np(q->threads[q->started], "lease-revoke");
        q->started++;
    }
}

/* Appends the leases due after the queue's cursor; called with q->mu held, which it drops
 * while it reads. Returns how many it queued. */
static size_t refill(struct revoke_queue *q)
{
    q->refilling = 1;
    struct mvcc_expiry_cursor cursor = q->cursor;
    pthread_mutex_unlock(&q->mu);
    int64_t now = q->live ? lease_now_ms() : q->now_ms;
    struct arena a = {0};
    int64_t *ids;
    size_t n = 0;
    fdb_error_t store_error = 0;
    int rc = mvcc_lease_expired(q->mgr->m, now, EXPIRE_BATCH, &cursor, &ids, &n, &a,
                                &store_error);
    pthread_mutex_lock(&q->mu);
    if (rc == 0 && n > 0) {
        if (q->n + n > q->cap) {
            q->cap = (q->n + n) * 2;
            q->ids = realloc(q->ids, q->cap * sizeof(*q->ids));
            if (!q->ids)
                abort();
        }
        memcpy(q->ids + q->n, ids, n * sizeof(*ids));
        q->n += n;
        q->cursor = cursor;
        add_revokers(q);
    }
    q->drained = rc != 0 || n == 0;
    q->refilling = 0;
    pthread_cond_broadcast(&q->refilled);
    arena_free(&a);
    return n;
}

static void *revoker_main(void *arg)
{
    struct revoke_queue *q = arg;
    struct lease_mgr *mgr = q->mgr;
    struct mvcc_fence fence = {mgr->record_key, mgr->record_key_len, mgr->fence_value, 24};
    int64_t group[EXPIRE_GROUP];
    pthread_mutex_lock(&q->mu);
    for (;;) {
        /* Keep a round of groups queued ahead of the transactions in flight. */
        if (!q->fenced && !q->drained && !q->refilling &&
            q->n - q->next < (size_t)REVOKERS * EXPIRE_GROUP)
            refill(q);
        size_t n = q->n - q->next < EXPIRE_GROUP ? q->n - q->next : EXPIRE_GROUP;
        if (q->fenced || n == 0) {
            if (q->fenced || !q->refilling)
                break;
            pthread_cond_wait(&q->refilled, &q->mu); /* another revoker is refilling */
            continue;
        }
        memcpy(group, q->ids + q->next, n * sizeof(*group));
        q->next += n;
        pthread_mutex_unlock(&q->mu);
        int done = 0;
        fdb_error_t store_error = 0;
        int64_t due = q->live ? lease_now_ms() : q->now_ms; /* what expired by then goes */
        int rc = mvcc_lease_expire(mgr->m, group, n, due, &fence, &done, &store_error);
        if (rc == MVCC_ERR_TOO_LARGE) /* leases with many keys: one transaction each */
            for (size_t j = 0; j < n && rc != MVCC_ERR_FENCED; j++) {
                int one = 0;
                rc = mvcc_lease_expire(mgr->m, group + j, 1, due, &fence, &one, &store_error);
                done += one;
            }
        pthread_mutex_lock(&q->mu);
        q->revoked += done;
        if (rc == MVCC_ERR_FENCED)
            q->fenced = 1;
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

/* Expires what is due at now_ms (live: and what falls due meanwhile). Returns the number
 * of leases revoked. */
static int expire(struct lease_mgr *mgr, int64_t now_ms, int live)
{
    struct revoke_queue q = {.mgr = mgr, .now_ms = now_ms, .live = live};
    pthread_mutex_init(&q.mu, NULL);
    pthread_cond_init(&q.refilled, NULL);
    pthread_mutex_lock(&q.mu);
    size_t first = refill(&q);
    pthread_mutex_unlock(&q.mu);
    if (first > 0) {
        revoker_main(&q);
        /* Revokers start revokers; once every started one has ended, none is left to. */
        for (int i = 0;; i++) {
            pthread_mutex_lock(&q.mu);
            int more = i < q.started;
            pthread_mutex_unlock(&q.mu);
            if (!more)
                break;
            pthread_join(q.threads[i], NULL);
        }
    }
    pthread_cond_destroy(&q.refilled);
    pthread_mutex_destroy(&q.mu);
    free(q.ids);
    if (q.fenced)
        mgr->leader = 0;
    return q.revoked;
}

int lease_mgr_step(struct lease_mgr *mgr, int64_t now_ms)
{
    if (!claim(mgr, now_ms))
        return 0;
    return expire(mgr, now_ms, 0);
}

static void *lease_main(void *arg)
{
    struct lease_mgr *mgr = arg;
    for (;;) {
        int64_t now = lease_now_ms();
        int leads = mgr->leader;
        if (!leads || now - mgr->last_claim_ms >= STEP_MS || now < mgr->last_claim_ms)
            leads = claim(mgr, now);
        int busy = leads && expire(mgr, now, 1) > 0;
        pthread_mutex_lock(&mgr->mu);
        if (!mgr->stopping && !busy) { /* after revoking, look again at once: more may be due */
            struct timespec ts = kv_deadline_ms(CLOCK_MONOTONIC, leads ? EXPIRE_EVERY_MS : STEP_MS);
            pthread_cond_timedwait(&mgr->cv, &mgr->mu, &ts);
        }
        int stop = mgr->stopping;
        pthread_mutex_unlock(&mgr->mu);
        if (stop)
            return NULL;
    }
}

static int create(struct mvcc *m, int thread, struct lease_mgr **out)
{
    struct lease_mgr *mgr = calloc(1, sizeof(*mgr));
    if (!mgr)
        abort();
    mgr->m = m;
    mvcc_meta_key(m, "lease-leader", &mgr->record_key, &mgr->record_key_len);
    /* A random owner id: distinct per process and per restart. */
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(mgr->owner, 1, 16, f) != 16) {
        for (int i = 0; i < 16; i++)
            mgr->owner[i] = (uint8_t)(rand() ^ (lease_now_ms() >> (i % 8)));
    }
    if (f)
        fclose(f);
    pthread_mutex_init(&mgr->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&mgr->cv, &attr);
    pthread_condattr_destroy(&attr);
    if (thread) {
        pthread_create(&mgr->thread, NULL, lease_main, mgr);
        pthread_setname_np(mgr->thread, "lease");
        mgr->has_thread = 1;
    }
    *out = mgr;
    return 0;
}

int lease_mgr_create(struct mvcc *m, struct lease_mgr **out)
{
    return create(m, 1, out);
}

int lease_mgr_create_manual(struct mvcc *m, struct lease_mgr **out)
{
    return create(m, 0, out);
}

int lease_mgr_is_leader(struct lease_mgr *mgr)
{
    return mgr->leader;
}

/* Gives up leadership on a clean stop, so a restarted or another process takes over at once
 * instead of waiting for the hold to run out. */
static fdb_error_t release_body(const struct kv_api *api, FDBTransaction *tr, void *arg)
{
    struct lease_mgr *mgr = arg;
    FDBFuture *f = api->transaction_get(tr, mgr->record_key, (int)mgr->record_key_len, 0);
    fdb_error_t err = kv_wait(api, f);
    fdb_bool_t present = 0;
    const uint8_t *v = NULL;
    int len = 0;
    if (!err)
        err = api->future_get_value(f, &present, &v, &len);
    if (!err && present && len == 32 && memcmp(v, mgr->fence_value, 24) == 0) {
        uint8_t rec[32];
        memcpy(rec, v, 24);
        be64(rec + 24, 0);
        api->transaction_set(tr, mgr->record_key, (int)mgr->record_key_len, rec, 32);
    }
    api->future_destroy(f);
    return err;
}

void lease_mgr_destroy(struct lease_mgr *mgr)
{
    if (!mgr)
        return;
    pthread_mutex_lock(&mgr->mu);
    mgr->stopping = 1;
    pthread_cond_signal(&mgr->cv);
    pthread_mutex_unlock(&mgr->mu);
    if (mgr->has_thread)
        pthread_join(mgr->thread, NULL);
    if (mgr->leader && mgr->has_thread &&
        kv_transact(mvcc_api(mgr->m), mvcc_database(mgr->m), release_body, mgr, NULL) == 0)
        log_msg(LOG_INFO, "lease: released leadership");
    pthread_mutex_destroy(&mgr->mu);
    pthread_cond_destroy(&mgr->cv);
    free(mgr->record_key);
    free(mgr);
}

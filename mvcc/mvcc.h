/* mvcc.h -- etcd's data model (revisions, versions, history, compaction) on the store.
 *
 * Requests and responses are etcd's own protobuf messages (proto/). Every function runs
 * one store transaction through the retry loop and blocks the calling thread until it is
 * done: call from worker threads, never from the store's network thread. Responses are
 * allocated in the caller's arena and stay valid until it is freed. */
#ifndef MVCC_MVCC_H
#define MVCC_MVCC_H

#include <pthread.h>
#include <stdint.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "kv/arena.h"
#include "kv/fdb_api.h"

/* etcd's errors (server/ gives each its gRPC code and message). */
enum mvcc_error {
    MVCC_OK = 0,
    MVCC_ERR_COMPACTED = -1,       /* required revision has been compacted */
    MVCC_ERR_FUTURE_REV = -2,      /* required revision is a future revision */
    MVCC_ERR_EMPTY_KEY = -3,       /* key is not provided */
    MVCC_ERR_TOO_MANY_OPS = -4,    /* too many operations in txn request */
    MVCC_ERR_DUPLICATE_KEY = -5,   /* duplicate key given in txn request */
    MVCC_ERR_LEASE_NOT_FOUND = -6, /* requested lease not found */
    MVCC_ERR_VALUE_PROVIDED = -7,  /* value is provided (with ignore_value) */
    MVCC_ERR_LEASE_PROVIDED = -8,  /* lease is provided (with ignore_lease) */
    MVCC_ERR_KEY_NOT_FOUND = -9,   /* key not found (ignore_value/lease on a missing key) */
    MVCC_ERR_TOO_LARGE = -10,      /* request is too large for one transaction */
    MVCC_ERR_TIMEOUT = -11,        /* the store could not say whether the write applied */
    MVCC_ERR_STORE = -12,          /* any other store error (see *store_error) */
    MVCC_ERR_CORRUPT = -13,        /* a stored record could not be decoded */
    MVCC_ERR_LEASE_EXISTS = -14,   /* lease already exists */
    MVCC_ERR_FENCED = -15,         /* the caller lost the lease leadership */
};

const char *mvcc_strerror(int err);

struct mvcc;

struct mvcc_config {
    const struct kv_api *api;
    FDBDatabase *db;
    const char *prefix; /* the instance's subspace name */
    int max_txn_ops;
};

int mvcc_open(const struct mvcc_config *config, struct mvcc **out)
    __attribute__((warn_unused_result));
void mvcc_close(struct mvcc *m);

/* The current revision (the newest write's) and the compacted one. */
int mvcc_revisions(struct mvcc *m, int64_t *current, int64_t *compacted, fdb_error_t *store_error)
    __attribute__((warn_unused_result));

/* KV operations. Each sets resp->header->revision (other header fields are the server's)
 * and returns 0 or an mvcc_error; *store_error holds the store's error for
 * MVCC_ERR_STORE. */
int mvcc_range(struct mvcc *m, const Etcdserverpb__RangeRequest *req,
               Etcdserverpb__RangeResponse *resp, struct arena *arena, fdb_error_t *store_error);
int mvcc_put(struct mvcc *m, const Etcdserverpb__PutRequest *req,
             Etcdserverpb__PutResponse *resp, struct arena *arena, fdb_error_t *store_error);
int mvcc_delete_range(struct mvcc *m, const Etcdserverpb__DeleteRangeRequest *req,
                      Etcdserverpb__DeleteRangeResponse *resp, struct arena *arena,
                      fdb_error_t *store_error);
int mvcc_txn(struct mvcc *m, const Etcdserverpb__TxnRequest *req,
             Etcdserverpb__TxnResponse *resp, struct arena *arena, fdb_error_t *store_error);
/* Compacts history below rev in chunks that fit the store's limits; returns after the
 * compaction revision is recorded, and after all history is removed when physical. */
int mvcc_compact(struct mvcc *m, const Etcdserverpb__CompactionRequest *req,
                 Etcdserverpb__CompactionResponse *resp, struct arena *arena,
                 fdb_error_t *store_error);

/* ---- leases (the lease manager drives expiry; see lease/lease.h) ---- */

struct mvcc_lease {
    int64_t id;
    int64_t granted_ttl;   /* seconds */
    int64_t expires_at_ms; /* wall clock */
};

/* Creates lease id (> 0). MVCC_ERR_LEASE_EXISTS if it exists. *revision: current. */
int mvcc_lease_grant(struct mvcc *m, int64_t id, int64_t ttl, int64_t now_ms, int64_t *revision,
                     fdb_error_t *store_error);
/* Reads a lease; *found says whether it exists. */
int mvcc_lease_get(struct mvcc *m, int64_t id, struct mvcc_lease *out, int *found,
                   int64_t *revision, fdb_error_t *store_error);
/* A keepalive: pushes the expiry to now + TTL, writing the store only when the stored expiry
 * is less than two thirds of the TTL away. *found 0 for an unknown lease. */
int mvcc_lease_renew(struct mvcc *m, int64_t id, int64_t now_ms, struct mvcc_lease *out,
                     int *found, int64_t *revision, fdb_error_t *store_error);
/* Keys attached to a lease, in the arena. */
int mvcc_lease_keys(struct mvcc *m, int64_t id, ProtobufCBinaryData **keys, size_t *n,
                    struct arena *arena, fdb_error_t *store_error);
/* Every lease, in the arena. */
int mvcc_lease_list(struct mvcc *m, struct mvcc_lease **leases, size_t *n, int64_t *revision,
                    struct arena *arena, fdb_error_t *store_error);
/* A place in the expiry index: the entry of lease id expiring at expires_at_ms. */
struct mvcc_expiry_cursor {
    int set; /* 0: before the first entry */
    int64_t expires_at_ms, id;
};
/* Ids of leases that expired at or before now_ms (at most max), in expiry order; with a
 * cursor, only those after it, and the cursor moves to the last one returned. */
int mvcc_lease_expired(struct mvcc *m, int64_t now_ms, size_t max,
                       struct mvcc_expiry_cursor *cursor, int64_t **ids, size_t *n,
                       struct arena *arena, fdb_error_t *store_error);

/* A fence: the transaction fails with MVCC_ERR_FENCED unless the store key's value starts
 * with `value`. */
struct mvcc_fence {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
};

/* Revokes a lease: deletes its keys in one revision and the lease itself. With
 * expired_before_ms > 0 it only acts if the lease expired by then (expiry); with a fence it
 * only acts while the fence holds. MVCC_ERR_LEASE_NOT_FOUND if there is no such lease.
 * *revision: the new revision if keys were deleted, else the current one. */
int mvcc_lease_revoke(struct mvcc *m, int64_t id, int64_t expired_before_ms,
                      const struct mvcc_fence *fence, int64_t *revision, int *revoked,
                      fdb_error_t *store_error);
/* Expiry: revokes those of ids[0..n) that expired before expired_before_ms, all in one
 * transaction and so one revision (each lease's keys deleted together); leases gone or
 * renewed meanwhile are skipped. *revoked: how many were revoked. MVCC_ERR_FENCED if the
 * fence no longer holds. */
int mvcc_lease_expire(struct mvcc *m, const int64_t *ids, size_t n, int64_t expired_before_ms,
                      const struct mvcc_fence *fence, int *revoked, fdb_error_t *store_error);
/* Sets every lease's expiry to at least now + its TTL (a new lease leader does this so no
 * lease expires because leadership moved), fenced; in chunks. */
int mvcc_lease_extend_all(struct mvcc *m, int64_t now_ms, const struct mvcc_fence *fence,
                          fdb_error_t *store_error);
/* Reads a store key of this instance's subspace: P (0, name). For the lease leader record. */
void mvcc_meta_key(struct mvcc *m, const char *name, uint8_t **key, size_t *len);
const struct kv_api *mvcc_api(struct mvcc *m);
FDBDatabase *mvcc_database(struct mvcc *m);

/* The change log, for watches: every event with revision in (after_rev, through_rev], in
 * revision order, events of one revision in the order the write made them. */
struct mvcc_events {
    Mvccpb__Event **events;
    size_t n;
    int64_t through_rev; /* >= after_rev; never splits a revision */
    int64_t current_rev;
    int64_t compact_rev;
};

/* Reads at most about max_events events after after_rev (a revision is never split, so a
 * large one may exceed it). prev_kv is filled when with_prev_kv. MVCC_ERR_COMPACTED when
 * events after after_rev were compacted away (out->compact_rev says up to where). */
int mvcc_read_events(struct mvcc *m, int64_t after_rev, size_t max_events, int with_prev_kv,
                     struct mvcc_events *out, struct arena *arena, fdb_error_t *store_error);
/* The same for a watch tail, which follows the newest commits: it may read events below
 * the (logical) compaction revision as long as they are not physically removed yet (see
 * mvcc_compact); MVCC_ERR_COMPACTED only after a stall of more than 10 s. */
int mvcc_read_events_tail(struct mvcc *m, int64_t after_rev, size_t max_events,
                          int with_prev_kv, struct mvcc_events *out, struct arena *arena,
                          fdb_error_t *store_error);

/* The key index (mvcc/key_index.h), which lets a Range count its range without reading it.
 * The watch tail keeps it; all three are for that one thread. mvcc_index_follow: the tail
 * follows the change log after from_rev (at start, or after it lost events); the index
 * forgets everything and loads again. mvcc_index_load_step: one load transaction (*more: call
 * again). mvcc_index_apply: the events the tail read. Until loaded, Range counts by reading. */
void mvcc_index_follow(struct mvcc *m, int64_t from_rev);
int mvcc_index_load_step(struct mvcc *m, int *more, fdb_error_t *store_error)
    __attribute__((warn_unused_result));
void mvcc_index_apply(struct mvcc *m, const struct mvcc_events *ev);
/* The index's count of the keys in etcd's [key, range_end) at rev (range_end not empty), not
 * waiting: 0 and *count, or -1 when the index cannot tell yet. For tests and diagnostics. */
int mvcc_index_count(struct mvcc *m, const ProtobufCBinaryData *key,
                     const ProtobufCBinaryData *range_end, int64_t rev, int64_t *count);

/* Lets another thread end a waiter's mvcc_wait_change early (at shutdown). Once woken it
 * stays woken: later waits on it return at once. */
struct mvcc_wake {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int woken;
};
#define MVCC_WAKE_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0}
void mvcc_wake(struct mvcc_wake *wake);

/* Blocks until the current revision exceeds known_rev, timeout_ms pass or wake is woken, on
 * a store watch (no polling). wake may be NULL. Returns 0 (changed, timed out or woken:
 * callers re-read) or an mvcc_error. */
int mvcc_wait_change(struct mvcc *m, int64_t known_rev, int timeout_ms, struct mvcc_wake *wake,
                     fdb_error_t *store_error);

#endif

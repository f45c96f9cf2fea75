/* retry.h -- the one retry loop: every store transaction of the layers runs through it. */
#ifndef KV_RETRY_H
#define KV_RETRY_H

#include "kv/fdb_api.h"

/* A transaction body: reads and writes through api on tr, returns 0 or a store error.
 * It runs again from the start after a retryable error, on a reset transaction, so it must
 * not keep effects outside ctx that a retry would duplicate. */
typedef fdb_error_t (*kv_body_fn)(const struct kv_api *api, FDBTransaction *tr, void *ctx);

/* Flags of kv_transact. */
enum {
    /* Do not retry a commit that may have been applied (commit_unknown_result): return the
     * error, so a write that is not idempotent is never applied twice. */
    KV_TRANSACT_NO_RETRY_MAYBE_COMMITTED = 1,
    /* The body only reads: do not commit (nothing to commit, and no round trip). */
    KV_TRANSACT_READ_ONLY = 2,
};

/* Runs body and commits, retrying through fdb_transaction_on_error until it commits or
 * fails with an error on_error does not retry; returns 0 or that error. The committed
 * version goes to *committed_version when not NULL (-1 for a read-only transaction).
 * Blocks the calling thread: never call it on the network thread. */
fdb_error_t kv_transact_flags(const struct kv_api *api, FDBDatabase *db, kv_body_fn body,
                              void *ctx, int flags, int64_t *committed_version)
    __attribute__((warn_unused_result));

/* kv_transact_flags with no flags. */
fdb_error_t kv_transact(const struct kv_api *api, FDBDatabase *db, kv_body_fn body, void *ctx,
                        int64_t *committed_version) __attribute__((warn_unused_result));

/* Waits for f and returns its error (0 when it succeeded). Does not destroy f. */
fdb_error_t kv_wait(const struct kv_api *api, FDBFuture *f) __attribute__((warn_unused_result));

#endif

/* retry.c -- the one retry loop, on fdb_transaction_on_error as FoundationDB prescribes. */
#include "kv/retry.h"

#include <stddef.h>

fdb_error_t kv_wait(const struct kv_api *api, FDBFuture *f)
{
    fdb_error_t err = api->future_block_until_ready(f);
    return err ? err : api->future_get_error(f);
}

fdb_error_t kv_transact_flags(const struct kv_api *api, FDBDatabase *db, kv_body_fn body,
                              void *ctx, int flags, int64_t *committed_version)
{
    FDBTransaction *tr;
    fdb_error_t err = api->database_create_transaction(db, &tr);
    if (err)
        return err;
    for (;;) {
        err = body(api, tr, ctx);
        if (!err && (flags & KV_TRANSACT_READ_ONLY)) {
            if (committed_version)
                *committed_version = -1;
            break;
        }
        if (!err) {
            FDBFuture *f = api->transaction_commit(tr);
            err = kv_wait(api, f);
            api->future_destroy(f);
            if (!err) {
                if (committed_version)
                    err = api->transaction_get_committed_version(tr, committed_version);
                break;
            }
            if ((flags & KV_TRANSACT_NO_RETRY_MAYBE_COMMITTED) &&
                api->error_predicate(FDB_ERROR_PREDICATE_MAYBE_COMMITTED, err))
                break;
        }
        FDBFuture *f = api->transaction_on_error(tr, err);
        fdb_error_t retry_err = kv_wait(api, f);
        api->future_destroy(f);
        if (retry_err) {
            err = retry_err;
            break;
        }
    }
    api->transaction_destroy(tr);
    return err;
}

fdb_error_t kv_transact(const struct kv_api *api, FDBDatabase *db, kv_body_fn body, void *ctx,
                        int64_t *committed_version)
{
    return kv_transact_flags(api, db, body, ctx, 0, committed_version);
}

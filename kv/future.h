/* future.h -- the embedded engine's futures (FDBFuture), with FoundationDB's contract.
 *
 * States: PENDING -> READY (value or error). A future becomes ready exactly once. It is
 * ready either when returned (future_create_ready) or later on the network thread
 * (future_complete_async), where its callback then runs. The user's reference is released
 * by fdb_future_destroy; the operation that will complete it holds a second reference, so
 * memory is freed only when the last of the two is dropped. */
#ifndef KV_FUTURE_H
#define KV_FUTURE_H

#include <pthread.h>
#include <stdatomic.h>

#include "kv/fdb_api.h"

enum future_kind { FUTURE_NONE, FUTURE_INT64, FUTURE_KEY, FUTURE_VALUE, FUTURE_KEYVALUES };

struct FDB_future {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int ready;
    int refs; /* under mu */
    fdb_error_t error;
    enum future_kind kind;
    /* Results, valid once ready and until destroy. */
    int64_t i64;
    uint8_t *bytes; /* key or value (owned) */
    int bytes_len;
    int present;
    FDBKeyValue *kvs; /* owned, pointing into `bytes` */
    int kv_count;
    int more;
    FDBCallback callback;
    void *callback_arg;
    /* Called (once, without mu) when the user destroys or cancels a pending future, so the
     * operation can let go of it (watches unregister). */
    void (*on_cancel)(FDBFuture *f, void *arg);
    void *on_cancel_arg;
};

/* A new pending future with one reference (the user's). Aborts on out-of-memory. */
FDBFuture *future_create(enum future_kind kind);
/* Takes one more reference, for the operation that will complete the future. */
void future_ref(FDBFuture *f);
void future_unref(FDBFuture *f);

/* Marks f ready with `error` in the calling thread and runs its callback, if any, here.
 * Results must be stored before the call. No-op if already ready (e.g. cancelled). */
void future_set_ready(FDBFuture *f, fdb_error_t error);

/* Makes f ready on the network thread after delay_us, then drops one reference: the caller
 * passes its operation reference along. */
void future_complete_async(FDBFuture *f, fdb_error_t error, uint64_t delay_us);

/* The fdb_future_* functions of the seam. */
void future_api_cancel(FDBFuture *f);
void future_api_destroy(FDBFuture *f);
fdb_error_t future_api_block_until_ready(FDBFuture *f);
fdb_bool_t future_api_is_ready(FDBFuture *f);
fdb_error_t future_api_set_callback(FDBFuture *f, FDBCallback cb, void *arg);
fdb_error_t future_api_get_error(FDBFuture *f);
fdb_error_t future_api_get_int64(FDBFuture *f, int64_t *out);
fdb_error_t future_api_get_key(FDBFuture *f, const uint8_t **out_key, int *out_len);
fdb_error_t future_api_get_value(FDBFuture *f, fdb_bool_t *present, const uint8_t **out_value,
                                 int *out_len);
fdb_error_t future_api_get_keyvalue_array(FDBFuture *f, const FDBKeyValue **out_kv,
                                          int *out_count, fdb_bool_t *out_more);

#endif

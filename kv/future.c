/* future.c -- the embedded engine's futures; see future.h for their states. */
#include "kv/future.h"

#include <stdlib.h>

#include "kv/network.h"

FDBFuture *future_create(enum future_kind kind)
{
    FDBFuture *f = calloc(1, sizeof(*f));
    if (!f)
        abort();
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->refs = 1;
    f->kind = kind;
    return f;
}

void future_ref(FDBFuture *f)
{
    pthread_mutex_lock(&f->mu);
    f->refs++;
    pthread_mutex_unlock(&f->mu);
}

void future_unref(FDBFuture *f)
{
    pthread_mutex_lock(&f->mu);
    int last = --f->refs == 0;
    pthread_mutex_unlock(&f->mu);
    if (!last)
        return;
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f->bytes);
    free(f->kvs);
    free(f);
}

struct deferred_callback {
    FDBFuture *f;
    FDBCallback cb;
    void *arg;
};

static void run_deferred_callback(void *arg)
{
    struct deferred_callback *d = arg;
    d->cb(d->f, d->arg);
    future_unref(d->f);
    free(d);
}

void future_set_ready(FDBFuture *f, fdb_error_t error)
{
    pthread_mutex_lock(&f->mu);
    if (atomic_load(&f->ready)) {
        pthread_mutex_unlock(&f->mu);
        return;
    }
    f->error = error;
    f->on_cancel = NULL;
    atomic_store(&f->ready, 1);
    FDBCallback cb = f->callback;
    void *arg = f->callback_arg;
    f->callback = NULL;
    pthread_cond_broadcast(&f->cv);
    /* Keep f alive through the callback even if it destroys f. */
    f->refs++;
    pthread_mutex_unlock(&f->mu);
    if (cb && !network_is_current_thread()) {
        /* FoundationDB runs callbacks on its network thread: a completion made on another
         * thread (the engine's commit thread) hands its callback over. */
        struct deferred_callback *d = malloc(sizeof(*d));
        if (!d)
            abort();
        d->f = f;
        d->cb = cb;
        d->arg = arg;
        network_post(run_deferred_callback, d, 0); /* it keeps our reference on f */
        return;
    }
    if (cb)
        cb(f, arg);
    future_unref(f);
}

struct completion {
    FDBFuture *f;
    fdb_error_t error;
};

static void complete_task(void *arg)
{
    struct completion *c = arg;
    future_set_ready(c->f, c->error);
    future_unref(c->f);
    free(c);
}

void future_complete_async(FDBFuture *f, fdb_error_t error, uint64_t delay_us)
{
    struct completion *c = malloc(sizeof(*c));
    if (!c)
        abort();
    c->f = f;
    c->error = error;
    network_post(complete_task, c, delay_us);
}

/* Cancelling a pending future completes it with operation_cancelled and tells the
 * operation, which drops its reference on its own time. */
void future_api_cancel(FDBFuture *f)
{
    pthread_mutex_lock(&f->mu);
    if (atomic_load(&f->ready)) {
        pthread_mutex_unlock(&f->mu);
        return;
    }
    void (*on_cancel)(FDBFuture *, void *) = f->on_cancel;
    void *arg = f->on_cancel_arg;
    f->on_cancel = NULL;
    pthread_mutex_unlock(&f->mu);
    if (on_cancel)
        on_cancel(f, arg);
    future_set_ready(f, FDB_ERR_OPERATION_CANCELLED);
}

void future_api_destroy(FDBFuture *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    f->callback = NULL; /* a destroyed future's callback is never called */
    pthread_mutex_unlock(&f->mu);
    future_api_cancel(f);
    future_unref(f);
}

fdb_error_t future_api_block_until_ready(FDBFuture *f)
{
    if (atomic_load(&f->ready))
        return 0;
    if (network_is_current_thread())
        return FDB_ERR_BLOCKED_FROM_NETWORK_THREAD;
    pthread_mutex_lock(&f->mu);
    while (!atomic_load(&f->ready))
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
    return 0;
}

fdb_bool_t future_api_is_ready(FDBFuture *f)
{
    return atomic_load(&f->ready);
}

fdb_error_t future_api_set_callback(FDBFuture *f, FDBCallback cb, void *arg)
{
    pthread_mutex_lock(&f->mu);
    if (!atomic_load(&f->ready)) {
        f->callback = cb;
        f->callback_arg = arg;
        pthread_mutex_unlock(&f->mu);
        return 0;
    }
    pthread_mutex_unlock(&f->mu);
    cb(f, arg);
    return 0;
}

fdb_error_t future_api_get_error(FDBFuture *f)
{
    if (!atomic_load(&f->ready))
        return FDB_ERR_FUTURE_NOT_SET;
    return f->error;
}

/* Common checks of the typed getters: ready, no error, right kind. */
static fdb_error_t check_result(FDBFuture *f, enum future_kind kind)
{
    if (!atomic_load(&f->ready))
        return FDB_ERR_FUTURE_NOT_SET;
    if (f->error)
        return f->error;
    return f->kind == kind ? 0 : FDB_ERR_CLIENT_INVALID_OPERATION;
}

fdb_error_t future_api_get_int64(FDBFuture *f, int64_t *out)
{
    fdb_error_t err = check_result(f, FUTURE_INT64);
    if (!err)
        *out = f->i64;
    return err;
}

fdb_error_t future_api_get_key(FDBFuture *f, const uint8_t **out_key, int *out_len)
{
    fdb_error_t err = check_result(f, FUTURE_KEY);
    if (!err) {
        *out_key = f->bytes ? f->bytes : (const uint8_t *)"";
        *out_len = f->bytes_len;
    }
    return err;
}

fdb_error_t future_api_get_value(FDBFuture *f, fdb_bool_t *present, const uint8_t **out_value,
                                 int *out_len)
{
    fdb_error_t err = check_result(f, FUTURE_VALUE);
    if (!err) {
        *present = f->present;
        *out_value = f->present ? (f->bytes ? f->bytes : (const uint8_t *)"") : NULL;
        *out_len = f->present ? f->bytes_len : 0;
    }
    return err;
}

fdb_error_t future_api_get_keyvalue_array(FDBFuture *f, const FDBKeyValue **out_kv,
                                          int *out_count, fdb_bool_t *out_more)
{
    fdb_error_t err = check_result(f, FUTURE_KEYVALUES);
    if (!err) {
        *out_kv = f->kvs;
        *out_count = f->kv_count;
        *out_more = f->more;
    }
    return err;
}

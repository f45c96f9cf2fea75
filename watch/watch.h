/* watch.h -- etcd's Watch: one tailing loop per process reads each new revision from the
 * store's change log once and fans it out in memory to every matching watcher. */
#ifndef WATCH_WATCH_H
#define WATCH_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "mvcc/mvcc.h"

struct watch_hub;
struct watch_stream;

struct watch_config {
    struct mvcc *mvcc;
    int64_t progress_interval_ms; /* periodic progress notifications (etcd: 10 min) */
    int64_t fragment_bytes;       /* responses larger than this are fragmented on request */
    size_t max_pending_bytes;     /* per stream; past it, watchers catch up from the store */
    uint64_t cluster_id, member_id;
};

/* Where a stream's responses go. send() is called with the hub's lock held: it must only
 * queue (never block). pending() says how many bytes are queued and unsent. */
struct watch_sink {
    int (*send)(void *arg, const Etcdserverpb__WatchResponse *response);
    size_t (*pending)(void *arg);
    /* Optional input flow control: hold() is called from within watch_stream_request (so
     * from the code that read the request): read no more requests until resume(), which
     * the hub calls from its own thread once the stream's queue has drained. */
    void (*hold)(void *arg);
    void (*resume)(void *arg);
    void *arg;
};

int watch_hub_create(const struct watch_config *config, struct watch_hub **out)
    __attribute__((warn_unused_result));
/* Stops the hub's threads; every stream must have been closed. */
void watch_hub_destroy(struct watch_hub *hub);

struct watch_stream *watch_stream_open(struct watch_hub *hub, const struct watch_sink *sink);
/* Queues a client request (create, cancel, progress); never blocks. Takes req, which must be
 * a message of its own (etcdserverpb__watch_request__unpack): the hub frees it. Past
 * WATCH_QUEUE_HOLD queued requests of the stream, calls the sink's hold(). */
#define WATCH_QUEUE_HOLD 16
void watch_stream_request(struct watch_stream *stream, Etcdserverpb__WatchRequest *req);
/* Cancels the stream's watchers and frees it; its sink is not called after this returns. */
void watch_stream_close(struct watch_stream *stream);

#endif

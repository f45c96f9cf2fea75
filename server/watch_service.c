/* watch_service.c -- etcd's Watch service: each gRPC stream is a watch_stream of the hub. */
#include <stdlib.h>

#include "server/server.h"
#include "watch/watch.h"

struct watch_call {
    struct rpc_stream *rpc;
    struct watch_stream *watch;
};

static int sink_send(void *arg, const Etcdserverpb__WatchResponse *r)
{
    return rpc_stream_send(arg, &r->base);
}

static size_t sink_pending(void *arg)
{
    return rpc_stream_pending_bytes(arg);
}

static void sink_hold(void *arg)
{
    rpc_stream_hold(arg);
}

static void sink_resume(void *arg)
{
    rpc_stream_resume(arg);
}

static void *watch_open(void *ctx, struct rpc_stream *stream)
{
    struct server *s = ctx;
    struct watch_call *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    c->rpc = stream;
    struct watch_sink sink = {sink_send, sink_pending, sink_hold, sink_resume, stream};
    c->watch = watch_stream_open(s->watch, &sink);
    return c;
}

static void watch_message(void *state, ProtobufCMessage *msg)
{
    struct watch_call *c = state;
    watch_stream_request(c->watch, (Etcdserverpb__WatchRequest *)msg); /* takes msg */
}

static void watch_closed(void *state)
{
    struct watch_call *c = state;
    watch_stream_close(c->watch); /* no send after this returns */
    rpc_stream_release(c->rpc);
    free(c);
}

static const struct rpc_stream_ops watch_ops = {
    &etcdserverpb__watch_request__descriptor, watch_open, watch_message, watch_closed, 1};

void watch_service_register(struct server *s, struct rpc_server *rpc)
{
    rpc_server_add_stream(rpc, "/etcdserverpb.Watch/Watch", &watch_ops, s);
}

/* rpc.c -- the gRPC server: see rpc.h.
 *
 * Every asynchronous gRPC operation carries a `struct tag`; completion-queue threads call
 * its done() and never block. A unary call goes through these states:
 *   WAITING  (request_registered_call outstanding; re-armed as soon as a call arrives)
 *   QUEUED   (on the worker queue)
 *   RUNNING  (a worker runs the handler)
 *   FINISHING (the reply batch is outstanding) -> freed when it completes.
 * The call object is freed only when its last outstanding tag has come back (STYLE 5). */
#include "server/rpc.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv/log.h"

struct tag {
    void (*done)(struct tag *t, int ok);
};

enum call_state { CALL_WAITING, CALL_QUEUED, CALL_RUNNING, CALL_FINISHING };

struct method {
    struct rpc_server *server;
    char *path;
    const ProtobufCMessageDescriptor *request;
    rpc_unary_fn handler;                 /* unary methods */
    const struct rpc_stream_ops *stream;  /* streaming methods */
    void *ctx;
    void *handle; /* grpc's registered method */
};

/* A bidirectional stream. It holds one reference per outstanding gRPC operation plus one
 * for the service's state until rpc_stream_release(); it is freed at zero (STYLE 5).
 *   ACCEPTING -> OPEN (receiving; sends as queued) -> CLOSED (no more receives)
 *   -> FINISHING (status sent, once released and nothing is being sent) -> freed. */
struct rpc_stream {
    struct tag call_tag, recv_tag, send_tag, close_tag, status_tag;
    struct method *method;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array metadata;
    pthread_mutex_t mu;
    int refs;
    void *state;
    grpc_byte_buffer *recv_buf;
    grpc_byte_buffer **queue; /* waiting to be sent */
    size_t queue_len, queue_cap, pending_bytes;
    grpc_byte_buffer *in_flight;
    size_t in_flight_len; /* its size when queued: gRPC empties a buffer it sends */
    int accepted, metadata_sent, closed, closed_notified, released, finishing, cancelled;
    int input_done; /* the client sends nothing more (half-close, or the call is over) */
    int in_message;    /* a `message` callback is running (on some completion-queue thread) */
    int close_pending; /* `closed` waits for it: the two never overlap */
    int recv_held;     /* rpc_stream_hold: no new read until rpc_stream_resume */
    struct rpc_stream *next_live, *prev_live; /* server->live_streams, under server->lock */
    int live;
};

struct rpc_call {
    struct tag tag;
    enum call_state state;
    struct method *method;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array metadata;
    grpc_byte_buffer *payload;
    size_t request_size;
    ProtobufCMessage *request;
    grpc_byte_buffer *response;
    grpc_slice details;
    int cancelled;
    struct arena arena;
    struct rpc_call *next; /* worker queue */
};

/* A call to a method nobody registered: answered UNIMPLEMENTED. */
struct generic_call {
    struct tag tag;
    int finishing;
    struct rpc_server *server;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array metadata;
    grpc_slice message;
    int cancelled;
};

struct job {
    void (*fn)(void *arg);
    void *arg;
    struct job *next;
};

struct rpc_server {
    struct rpc_config config;
    struct job *jobs_head, *jobs_tail;
    struct rpc_stream *live_streams; /* accepted streams, cancelled at shutdown */
    grpc_server *server;
    grpc_completion_queue *cq;
    struct method *methods;
    int n_methods, cap_methods;
    pthread_t *cq_threads;
    pthread_t *workers;
    pthread_mutex_t lock; /* worker queue and shutdown */
    pthread_cond_t cv;
    struct rpc_call *queue_head, *queue_tail;
    int stopping;
    struct tag shutdown_tag;
    int shutdown_done;
    pthread_cond_t shutdown_cv;
    int started;
};

/* ---- unary calls ---- */

static void unary_done(struct tag *t, int ok);

static void arm_unary(struct method *m)
{
    struct rpc_call *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    c->tag.done = unary_done;
    c->method = m;
    c->state = CALL_WAITING;
    grpc_metadata_array_init(&c->metadata);
    grpc_call_error e = grpc_server_request_registered_call(
        m->server->server, m->handle, &c->call, &c->deadline, &c->metadata, &c->payload,
        m->server->cq, m->server->cq, &c->tag);
    if (e != GRPC_CALL_OK) {
        log_msg(LOG_ERROR, "cannot accept calls for %s: error %d", m->path, (int)e);
        grpc_metadata_array_destroy(&c->metadata);
        free(c);
    }
}

static void call_free(struct rpc_call *c)
{
    if (c->request)
        protobuf_c_message_free_unpacked(c->request, NULL);
    if (c->payload)
        grpc_byte_buffer_destroy(c->payload);
    if (c->response)
        grpc_byte_buffer_destroy(c->response);
    grpc_metadata_array_destroy(&c->metadata);
    grpc_slice_unref(c->details);
    if (c->call)
        grpc_call_unref(c->call);
    arena_free(&c->arena);
    free(c);
}

static void enqueue(struct rpc_server *s, struct rpc_call *c)
{
    c->state = CALL_QUEUED;
    c->next = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->queue_tail)
        s->queue_tail->next = c;
    else
        s->queue_head = c;
    s->queue_tail = c;
    pthread_mutex_unlock(&s->lock);
    pthread_cond_signal(&s->cv);
}

static void unary_done(struct tag *t, int ok)
{
    struct rpc_call *c = (struct rpc_call *)t;
    switch (c->state) {
    case CALL_WAITING:
        if (!ok) { /* the server is shutting down */
            call_free(c);
            return;
        }
        arm_unary(c->method);
        enqueue(c->method->server, c);
        return;
    case CALL_FINISHING:
        call_free(c);
        return;
    default: /* NEVER: no tag is outstanding while queued or running */
        log_msg(LOG_ERROR, "unexpected completion in call state %d", (int)c->state);
        return;
    }
}

/* Sends the reply batch (response may be NULL for an error status). */
static void finish(struct rpc_call *c, grpc_status_code code, const char *message)
{
    grpc_op ops[4];
    memset(ops, 0, sizeof(ops));
    int n = 0;
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (c->response) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->response;
    }
    c->details = grpc_slice_from_copied_string(message ? message : "");
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    ops[n++].data.send_status_from_server.status_details = message ? &c->details : NULL;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
    c->state = CALL_FINISHING;
    grpc_call_error e = grpc_call_start_batch(c->call, ops, (size_t)n, &c->tag, NULL);
    if (e != GRPC_CALL_OK) {
        log_msg(LOG_ERROR, "cannot finish call: error %d", (int)e);
        call_free(c);
    }
}

void rpc_reply(struct rpc_call *c, const ProtobufCMessage *response)
{
    size_t len = protobuf_c_message_get_packed_size(response);
    grpc_slice slice = grpc_slice_malloc(len);
    protobuf_c_message_pack(response, GRPC_SLICE_START_PTR(slice));
    c->response = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    finish(c, GRPC_STATUS_OK, NULL);
}

void rpc_fail(struct rpc_call *c, grpc_status_code code, const char *message)
{
    finish(c, code, message);
}

struct arena *rpc_call_arena(struct rpc_call *c)
{
    return &c->arena;
}

size_t rpc_call_request_size(const struct rpc_call *c)
{
    return c->request_size;
}

static void run_call(struct rpc_call *c)
{
    c->state = CALL_RUNNING;
    grpc_slice all = grpc_empty_slice();
    if (c->payload) {
        grpc_byte_buffer_reader reader;
        if (grpc_byte_buffer_reader_init(&reader, c->payload)) {
            all = grpc_byte_buffer_reader_readall(&reader);
            grpc_byte_buffer_reader_destroy(&reader);
        }
    }
    c->request_size = GRPC_SLICE_LENGTH(all);
    c->request = protobuf_c_message_unpack(c->method->request, NULL, GRPC_SLICE_LENGTH(all),
                                           GRPC_SLICE_START_PTR(all));
    grpc_slice_unref(all);
    if (!c->request) {
        rpc_fail(c, GRPC_STATUS_INTERNAL, "grpc: error unmarshalling request");
        return;
    }
    c->method->handler(c->method->ctx, c, c->request);
}

static void *worker_main(void *arg)
{
    struct rpc_server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        while (!s->queue_head && !s->jobs_head && !s->stopping)
            pthread_cond_wait(&s->cv, &s->lock);
        struct job *j = s->jobs_head;
        if (j) {
            s->jobs_head = j->next;
            if (!s->jobs_head)
                s->jobs_tail = NULL;
            pthread_mutex_unlock(&s->lock);
            j->fn(j->arg);
            free(j);
            continue;
        }
        struct rpc_call *c = s->queue_head;
        if (c) {
            s->queue_head = c->next;
            if (!s->queue_head)
                s->queue_tail = NULL;
        }
        int stop = !c && s->stopping;
        pthread_mutex_unlock(&s->lock);
        if (stop)
            return NULL;
        if (c)
            run_call(c);
    }
}

/* ---- streams ---- */

static void stream_call_done(struct tag *t, int ok);
static void stream_recv_done(struct tag *t, int ok);
static void stream_send_done(struct tag *t, int ok);
static void stream_close_done(struct tag *t, int ok);
static void stream_status_done(struct tag *t, int ok);

#define STREAM_OF(t, field) ((struct rpc_stream *)((char *)(t)-offsetof(struct rpc_stream, field)))

static void arm_stream(struct method *m)
{
    struct rpc_stream *st = calloc(1, sizeof(*st));
    if (!st)
        abort();
    st->call_tag.done = stream_call_done;
    st->recv_tag.done = stream_recv_done;
    st->send_tag.done = stream_send_done;
    st->close_tag.done = stream_close_done;
    st->status_tag.done = stream_status_done;
    st->method = m;
    st->refs = 1; /* the accept operation */
    pthread_mutex_init(&st->mu, NULL);
    grpc_metadata_array_init(&st->metadata);
    if (grpc_server_request_registered_call(m->server->server, m->handle, &st->call,
                                            &st->deadline, &st->metadata, NULL, m->server->cq,
                                            m->server->cq, &st->call_tag) != GRPC_CALL_OK) {
        grpc_metadata_array_destroy(&st->metadata);
        pthread_mutex_destroy(&st->mu);
        free(st);
    }
}

static void live_remove(struct rpc_stream *st)
{
    struct rpc_server *s = st->method->server;
    pthread_mutex_lock(&s->lock);
    if (st->live) {
        if (st->prev_live)
            st->prev_live->next_live = st->next_live;
        else
            s->live_streams = st->next_live;
        if (st->next_live)
            st->next_live->prev_live = st->prev_live;
        st->live = 0;
    }
    pthread_mutex_unlock(&s->lock);
}

static void stream_free(struct rpc_stream *st)
{
    live_remove(st);
    for (size_t i = 0; i < st->queue_len; i++)
        grpc_byte_buffer_destroy(st->queue[i]);
    free(st->queue);
    if (st->recv_buf)
        grpc_byte_buffer_destroy(st->recv_buf);
    grpc_metadata_array_destroy(&st->metadata);
    if (st->call)
        grpc_call_unref(st->call);
    pthread_mutex_destroy(&st->mu);
    free(st);
}

/* Drops one reference; called with st->mu held, which it releases. */
static void stream_unref_unlock(struct rpc_stream *st)
{
    int last = --st->refs == 0;
    pthread_mutex_unlock(&st->mu);
    if (last)
        stream_free(st);
}

/* Starts the next send if one is waiting; st->mu held. */
static void stream_pump_locked(struct rpc_stream *st)
{
    if (st->in_flight || st->queue_len == 0 || st->closed)
        return;
    st->in_flight = st->queue[0];
    st->in_flight_len = grpc_byte_buffer_length(st->in_flight);
    memmove(st->queue, st->queue + 1, (st->queue_len - 1) * sizeof(*st->queue));
    st->queue_len--;
    grpc_op ops[2];
    memset(ops, 0, sizeof(ops));
    int n = 0;
    if (!st->metadata_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        st->metadata_sent = 1;
    }
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = st->in_flight;
    st->refs++;
    if (grpc_call_start_batch(st->call, ops, (size_t)n, &st->send_tag, NULL) != GRPC_CALL_OK) {
        st->refs--;
        st->pending_bytes -= st->in_flight_len;
        grpc_byte_buffer_destroy(st->in_flight);
        st->in_flight = NULL;
    }
}

/* Ends the call with OK once the client sends nothing more, the state released it and
 * everything queued was sent; st->mu held. */
static void stream_maybe_finish_locked(struct rpc_stream *st)
{
    if (!st->input_done || !st->released || st->in_flight || st->queue_len || st->finishing ||
        st->cancelled)
        return;
    st->finishing = 1;
    static grpc_slice empty;
    grpc_op ops[2];
    memset(ops, 0, sizeof(ops));
    int n = 0;
    if (!st->metadata_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        st->metadata_sent = 1;
    }
    empty = grpc_empty_slice();
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = GRPC_STATUS_OK;
    ops[n++].data.send_status_from_server.status_details = &empty;
    st->refs++;
    if (grpc_call_start_batch(st->call, ops, (size_t)n, &st->status_tag, NULL) != GRPC_CALL_OK)
        st->refs--;
}

/* Tells the state, once, that no more messages come: when the call is over (call_over:
 * cancelled, failed, or ended), or when the client half-closed, unless the method serves on
 * after a half-close (Watch, as etcd does). After a half-close, what the state sends still
 * goes out. Called without st->mu. Never runs while a `message` callback runs: the two
 * completions may arrive on two threads at once, so a pending close is delivered by the
 * message path when it ends. */
static void stream_notify_closed(struct rpc_stream *st, int call_over)
{
    pthread_mutex_lock(&st->mu);
    st->input_done = 1;
    if (call_over) {
        st->closed = 1;
        for (size_t i = 0; i < st->queue_len; i++)
            grpc_byte_buffer_destroy(st->queue[i]);
        st->queue_len = 0;
        st->pending_bytes = 0;
    }
    int deliver = call_over || !st->method->stream->serve_after_half_close;
    int notify = deliver && !st->closed_notified && !st->in_message;
    if (deliver && st->in_message)
        st->close_pending = 1;
    if (notify)
        st->closed_notified = 1;
    pthread_mutex_unlock(&st->mu);
    if (notify)
        st->method->stream->closed(st->state);
    pthread_mutex_lock(&st->mu);
    stream_maybe_finish_locked(st);
    pthread_mutex_unlock(&st->mu);
}

static void stream_start_recv_locked(struct rpc_stream *st)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &st->recv_buf;
    st->refs++;
    if (grpc_call_start_batch(st->call, &op, 1, &st->recv_tag, NULL) != GRPC_CALL_OK)
        st->refs--;
}

static void stream_call_done(struct tag *t, int ok)
{
    struct rpc_stream *st = STREAM_OF(t, call_tag);
    if (!ok) {
        pthread_mutex_lock(&st->mu);
        stream_unref_unlock(st);
        return;
    }
    arm_stream(st->method);
    st->accepted = 1;
    struct rpc_server *srv = st->method->server;
    pthread_mutex_lock(&srv->lock);
    st->live = 1;
    st->prev_live = NULL;
    st->next_live = srv->live_streams;
    if (srv->live_streams)
        srv->live_streams->prev_live = st;
    srv->live_streams = st;
    pthread_mutex_unlock(&srv->lock);
    st->state = st->method->stream->open(st->method->ctx, st);
    pthread_mutex_lock(&st->mu);
    st->refs++; /* the state's, until rpc_stream_release */
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &st->cancelled;
    st->refs++;
    if (grpc_call_start_batch(st->call, &op, 1, &st->close_tag, NULL) != GRPC_CALL_OK)
        st->refs--;
    stream_start_recv_locked(st);
    stream_unref_unlock(st); /* the accept operation's */
}

static void stream_recv_done(struct tag *t, int ok)
{
    struct rpc_stream *st = STREAM_OF(t, recv_tag);
    grpc_byte_buffer *buf = st->recv_buf;
    st->recv_buf = NULL;
    if (!ok || !buf) { /* failure, or the client's half-close */
        stream_notify_closed(st, !ok);
        pthread_mutex_lock(&st->mu);
        stream_unref_unlock(st);
        return;
    }
    grpc_byte_buffer_reader reader;
    grpc_slice all = grpc_empty_slice();
    if (grpc_byte_buffer_reader_init(&reader, buf)) {
        all = grpc_byte_buffer_reader_readall(&reader);
        grpc_byte_buffer_reader_destroy(&reader);
    }
    grpc_byte_buffer_destroy(buf);
    ProtobufCMessage *msg = protobuf_c_message_unpack(st->method->request, NULL,
                                                      GRPC_SLICE_LENGTH(all),
                                                      GRPC_SLICE_START_PTR(all));
    grpc_slice_unref(all);
    pthread_mutex_lock(&st->mu);
    int deliver = msg && !st->closed_notified;
    st->in_message = deliver;
    pthread_mutex_unlock(&st->mu);
    if (deliver)
        st->method->stream->message(st->state, msg);
    else if (msg)
        protobuf_c_message_free_unpacked(msg, NULL);
    else
        log_msg(LOG_WARN, "dropped an undecodable message on %s", st->method->path);
    pthread_mutex_lock(&st->mu);
    st->in_message = 0;
    int close_now = st->close_pending && !st->closed_notified;
    if (close_now)
        st->closed_notified = 1;
    st->close_pending = 0;
    if (!st->input_done && !st->recv_held)
        stream_start_recv_locked(st);
    pthread_mutex_unlock(&st->mu);
    if (close_now) {
        st->method->stream->closed(st->state);
        pthread_mutex_lock(&st->mu);
        stream_maybe_finish_locked(st);
        pthread_mutex_unlock(&st->mu);
    }
    pthread_mutex_lock(&st->mu);
    stream_unref_unlock(st);
}

static void stream_send_done(struct tag *t, int ok)
{
    struct rpc_stream *st = STREAM_OF(t, send_tag);
    pthread_mutex_lock(&st->mu);
    st->pending_bytes -= st->in_flight_len;
    grpc_byte_buffer_destroy(st->in_flight);
    st->in_flight = NULL;
    if (ok)
        stream_pump_locked(st);
    stream_maybe_finish_locked(st);
    stream_unref_unlock(st);
}

static void stream_close_done(struct tag *t, int ok)
{
    struct rpc_stream *st = STREAM_OF(t, close_tag);
    stream_notify_closed(st, 1);
    pthread_mutex_lock(&st->mu);
    stream_unref_unlock(st);
}

static void stream_status_done(struct tag *t, int ok)
{
    struct rpc_stream *st = STREAM_OF(t, status_tag);
    pthread_mutex_lock(&st->mu);
    stream_unref_unlock(st);
}

int rpc_stream_send(struct rpc_stream *st, const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    grpc_slice slice = grpc_slice_malloc(len);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
    grpc_byte_buffer *buf = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    pthread_mutex_lock(&st->mu);
    if (st->closed) {
        pthread_mutex_unlock(&st->mu);
        grpc_byte_buffer_destroy(buf);
        return -1;
    }
    if (st->queue_len == st->queue_cap) {
        st->queue_cap = st->queue_cap ? st->queue_cap * 2 : 16;
        st->queue = realloc(st->queue, st->queue_cap * sizeof(*st->queue));
        if (!st->queue)
            abort();
    }
    st->queue[st->queue_len++] = buf;
    st->pending_bytes += len;
    stream_pump_locked(st);
    pthread_mutex_unlock(&st->mu);
    return 0;
}

size_t rpc_stream_pending_bytes(struct rpc_stream *st)
{
    pthread_mutex_lock(&st->mu);
    size_t n = st->pending_bytes;
    pthread_mutex_unlock(&st->mu);
    return n;
}

void rpc_stream_hold(struct rpc_stream *st)
{
    pthread_mutex_lock(&st->mu);
    st->recv_held = 1;
    pthread_mutex_unlock(&st->mu);
}

void rpc_stream_resume(struct rpc_stream *st)
{
    pthread_mutex_lock(&st->mu);
    if (st->recv_held) {
        st->recv_held = 0;
        /* In a `message` callback, the read restarts when it returns. */
        if (!st->in_message && !st->input_done)
            stream_start_recv_locked(st);
    }
    pthread_mutex_unlock(&st->mu);
}

void rpc_stream_release(struct rpc_stream *st)
{
    pthread_mutex_lock(&st->mu);
    st->released = 1;
    stream_maybe_finish_locked(st);
    stream_unref_unlock(st);
}

void rpc_server_run(struct rpc_server *s, void (*fn)(void *arg), void *arg)
{
    struct job *j = malloc(sizeof(*j));
    if (!j)
        abort();
    j->fn = fn;
    j->arg = arg;
    j->next = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->jobs_tail)
        s->jobs_tail->next = j;
    else
        s->jobs_head = j;
    s->jobs_tail = j;
    pthread_mutex_unlock(&s->lock);
    pthread_cond_signal(&s->cv);
}

/* ---- unregistered methods ---- */

static void generic_done(struct tag *t, int ok);

static void arm_generic(struct rpc_server *s)
{
    struct generic_call *g = calloc(1, sizeof(*g));
    if (!g)
        abort();
    g->tag.done = generic_done;
    g->server = s;
    grpc_call_details_init(&g->details);
    grpc_metadata_array_init(&g->metadata);
    if (grpc_server_request_call(s->server, &g->call, &g->details, &g->metadata, s->cq, s->cq,
                                 &g->tag) != GRPC_CALL_OK) {
        grpc_call_details_destroy(&g->details);
        grpc_metadata_array_destroy(&g->metadata);
        free(g);
    }
}

static void generic_free(struct generic_call *g)
{
    grpc_call_details_destroy(&g->details);
    grpc_metadata_array_destroy(&g->metadata);
    grpc_slice_unref(g->message);
    if (g->call)
        grpc_call_unref(g->call);
    free(g);
}

/* gRPC's own wording: "unknown service S" or "unknown method M for service S". */
static void unimplemented_message(struct generic_call *g, char *out, size_t len)
{
    char path[512];
    size_t n = GRPC_SLICE_LENGTH(g->details.method);
    if (n >= sizeof(path))
        n = sizeof(path) - 1;
    memcpy(path, GRPC_SLICE_START_PTR(g->details.method), n);
    path[n] = 0;
    const char *service = path[0] == '/' ? path + 1 : path;
    char *slash = strchr(service, '/');
    const char *method = "";
    if (slash) {
        *slash = 0;
        method = slash + 1;
    }
    int known = 0;
    for (int i = 0; i < g->server->n_methods; i++) {
        const char *p = g->server->methods[i].path + 1;
        size_t sl = strlen(service);
        if (strncmp(p, service, sl) == 0 && p[sl] == '/')
            known = 1;
    }
    static const char *etcd_services[] = {"etcdserverpb.KV",      "etcdserverpb.Watch",
                                          "etcdserverpb.Lease",   "etcdserverpb.Cluster",
                                          "etcdserverpb.Maintenance", "etcdserverpb.Auth",
                                          "grpc.health.v1.Health"};
    for (size_t i = 0; i < sizeof(etcd_services) / sizeof(etcd_services[0]); i++)
        if (strcmp(service, etcd_services[i]) == 0)
            known = 1;
    if (known)
        snprintf(out, len, "unknown method %s for service %s", method, service);
    else
        snprintf(out, len, "unknown service %s", service);
}

static void generic_done(struct tag *t, int ok)
{
    struct generic_call *g = (struct generic_call *)t;
    if (g->finishing || !ok) {
        generic_free(g);
        return;
    }
    arm_generic(g->server);
    char msg[600];
    unimplemented_message(g, msg, sizeof(msg));
    log_msg(LOG_DEBUG, "unimplemented call: %s", msg);
    g->message = grpc_slice_from_copied_string(msg);
    grpc_op ops[3];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[1].data.send_status_from_server.status = GRPC_STATUS_UNIMPLEMENTED;
    ops[1].data.send_status_from_server.status_details = &g->message;
    ops[2].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[2].data.recv_close_on_server.cancelled = &g->cancelled;
    g->finishing = 1;
    if (grpc_call_start_batch(g->call, ops, 3, &g->tag, NULL) != GRPC_CALL_OK)
        generic_free(g);
}

/* ---- the server ---- */

static void *cq_main(void *arg)
{
    struct rpc_server *s = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            return NULL;
        if (ev.type == GRPC_OP_COMPLETE && ev.tag)
            ((struct tag *)ev.tag)->done(ev.tag, ev.success);
    }
}

static void shutdown_done(struct tag *t, int ok)
{
    struct rpc_server *s = (struct rpc_server *)((char *)t - offsetof(struct rpc_server, shutdown_tag));
    pthread_mutex_lock(&s->lock);
    s->shutdown_done = 1;
    pthread_mutex_unlock(&s->lock);
    pthread_cond_broadcast(&s->shutdown_cv);
}

int rpc_server_create(const struct rpc_config *config, struct rpc_server **out)
{
    struct rpc_server *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->config = *config;
    if (s->config.workers <= 0)
        s->config.workers = 64;
    if (s->config.cq_threads <= 0)
        s->config.cq_threads = 2;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_cond_init(&s->shutdown_cv, NULL);
    s->shutdown_tag.done = shutdown_done;
    grpc_init();
    grpc_arg args[4];
    memset(args, 0, sizeof(args));
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = (int)(config->max_receive_bytes > 0 ? config->max_receive_bytes
                                                                 : 4 * 1024 * 1024);
    /* Tolerate clients' keepalive pings, as etcd does (5 s minimum, no strikes). */
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS;
    args[1].value.integer = 5000;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = GRPC_ARG_HTTP2_MAX_PING_STRIKES;
    args[2].value.integer = 0;
    /* A port another process listens on must fail, not be shared (SO_REUSEPORT). */
    args[3].type = GRPC_ARG_INTEGER;
    args[3].key = GRPC_ARG_ALLOW_REUSEPORT;
    args[3].value.integer = 0;
    grpc_channel_args channel_args = {4, args};
    s->server = grpc_server_create(&channel_args, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    *out = s;
    return 0;
}

void rpc_server_add_unary(struct rpc_server *s, const char *path,
                          const ProtobufCMessageDescriptor *request, rpc_unary_fn handler,
                          void *ctx)
{
    if (s->n_methods == s->cap_methods) {
        /* Methods are referenced by calls: the array is sized once, before start. */
        s->cap_methods = s->cap_methods ? s->cap_methods * 2 : 64;
        s->methods = realloc(s->methods, (size_t)s->cap_methods * sizeof(*s->methods));
        if (!s->methods)
            abort();
    }
    struct method *m = &s->methods[s->n_methods++];
    m->server = s;
    m->path = strdup(path);
    m->request = request;
    m->handler = handler;
    m->stream = NULL;
    m->ctx = ctx;
    m->handle = NULL;
}

void rpc_server_add_stream(struct rpc_server *s, const char *path, const struct rpc_stream_ops *ops,
                           void *ctx)
{
    rpc_server_add_unary(s, path, ops->request, NULL, ctx);
    s->methods[s->n_methods - 1].stream = ops;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)(n > 0 ? n : 0) + 1);
    if (!buf || (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n)) {
        free(buf);
        fclose(f);
        return NULL;
    }
    buf[n > 0 ? n : 0] = 0;
    fclose(f);
    return buf;
}

static grpc_server_credentials *tls_credentials(const struct rpc_config *c)
{
    char *cert = c->cert_file ? read_file(c->cert_file) : NULL;
    char *key = c->key_file ? read_file(c->key_file) : NULL;
    char *ca = c->trusted_ca_file ? read_file(c->trusted_ca_file) : NULL;
    grpc_server_credentials *creds = NULL;
    if (!cert || !key)
        log_msg(LOG_ERROR, "TLS listener needs a readable --cert-file and --key-file");
    else if (c->trusted_ca_file && !ca)
        log_msg(LOG_ERROR, "cannot read --trusted-ca-file %s", c->trusted_ca_file);
    else if (c->client_cert_auth && !ca)
        log_msg(LOG_ERROR, "--client-cert-auth needs --trusted-ca-file");
    else {
        grpc_ssl_pem_key_cert_pair pair = {key, cert};
        creds = grpc_ssl_server_credentials_create_ex(
            ca, &pair, 1,
            c->client_cert_auth ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
            NULL);
    }
    free(cert);
    free(key);
    free(ca);
    return creds;
}

int rpc_server_start(struct rpc_server *s)
{
    for (int i = 0; i < s->n_methods; i++) {
        struct method *m = &s->methods[i];
        m->handle = grpc_server_register_method(
            s->server, m->path, NULL,
            m->stream ? GRPC_SRM_PAYLOAD_NONE : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    }
    for (int i = 0; i < s->config.n_listeners; i++) {
        const struct rpc_listener *l = &s->config.listeners[i];
        grpc_server_credentials *creds =
            l->tls ? tls_credentials(&s->config) : grpc_insecure_server_credentials_create();
        if (!creds)
            return -1;
        int port = grpc_server_add_http2_port(s->server, l->address, creds);
        grpc_server_credentials_release(creds);
        if (port == 0) {
            log_msg(LOG_ERROR, "cannot listen on %s", l->address);
            return -1;
        }
        log_msg(LOG_INFO, "serving client requests on %s (%s)", l->address,
                l->tls ? "TLS" : "plaintext");
    }
    grpc_server_start(s->server);
    s->started = 1;
    s->cq_threads = calloc((size_t)s->config.cq_threads, sizeof(pthread_t));
    s->workers = calloc((size_t)s->config.workers, sizeof(pthread_t));
    if (!s->cq_threads || !s->workers)
        abort();
    for (int i = 0; i < s->config.cq_threads; i++) {
        pthread_create(&s->cq_threads[i], NULL, cq_main, s);
        pthread_setname_np(s->cq_threads[i], "rpc-cq");
    }
    for (int i = 0; i < s->config.workers; i++) {
        pthread_create(&s->workers[i], NULL, worker_main, s);
        pthread_setname_np(s->workers[i], "rpc-worker");
    }
    /* Several outstanding requests per method, so bursts do not wait for re-arming. */
    for (int i = 0; i < s->n_methods; i++)
        for (int k = 0; k < 4; k++) {
            if (s->methods[i].stream)
                arm_stream(&s->methods[i]);
            else
                arm_unary(&s->methods[i]);
        }
    for (int k = 0; k < 4; k++)
        arm_generic(s);
    return 0;
}

void rpc_server_shutdown(struct rpc_server *s)
{
    if (!s->started)
        return;
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
    /* Streams never end by themselves: close them now, as etcd does when it stops
     * (Unavailable, "etcdserver: server stopped"), so clients such as clientv3 reconnect and
     * resume their watches rather than treat them as cancelled by the server. Unary calls
     * finish normally. */
    pthread_mutex_lock(&s->lock);
    for (struct rpc_stream *st = s->live_streams; st; st = st->next_live)
        grpc_call_cancel_with_status(st->call, GRPC_STATUS_UNAVAILABLE, "etcdserver: server stopped",
                                     NULL);
    pthread_mutex_unlock(&s->lock);
    /* In-flight unary calls finish; streams get a grace period, then are cancelled. */
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 5;
    pthread_mutex_lock(&s->lock);
    while (!s->shutdown_done) {
        if (pthread_cond_timedwait(&s->shutdown_cv, &s->lock, &deadline) != 0) {
            pthread_mutex_unlock(&s->lock);
            grpc_server_cancel_all_calls(s->server);
            pthread_mutex_lock(&s->lock);
            deadline.tv_sec += 3600;
        }
    }
    s->stopping = 1;
    pthread_mutex_unlock(&s->lock);
    pthread_cond_broadcast(&s->cv);
    for (int i = 0; i < s->config.workers; i++)
        pthread_join(s->workers[i], NULL);
    grpc_completion_queue_shutdown(s->cq);
    for (int i = 0; i < s->config.cq_threads; i++)
        pthread_join(s->cq_threads[i], NULL);
}

void rpc_server_destroy(struct rpc_server *s)
{
    if (!s)
        return;
    grpc_server_destroy(s->server);
    grpc_completion_queue_destroy(s->cq);
    for (int i = 0; i < s->n_methods; i++)
        free(s->methods[i].path);
    free(s->methods);
    free(s->cq_threads);
    free(s->workers);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cv);
    pthread_cond_destroy(&s->shutdown_cv);
    free(s);
    grpc_shutdown();
}

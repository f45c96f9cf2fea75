/* rpc.h -- a gRPC server on grpc core: listeners, completion-queue threads, a worker pool
 * for unary methods, and UNIMPLEMENTED for every method nobody registered.
 *
 * Unary handlers run on worker threads and may block on the store; completion-queue
 * threads never block. */
#ifndef SERVER_RPC_H
#define SERVER_RPC_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "kv/arena.h"

struct rpc_server;
struct rpc_call;

/* Handles one request; must end the call with exactly one rpc_reply or rpc_fail. The
 * request stays valid until then. Runs on a worker thread. */
typedef void (*rpc_unary_fn)(void *ctx, struct rpc_call *call, const ProtobufCMessage *request);

struct rpc_listener {
    const char *address; /* host:port */
    int tls;
};

struct rpc_config {
    const struct rpc_listener *listeners;
    int n_listeners;
    const char *cert_file, *key_file, *trusted_ca_file;
    int client_cert_auth;
    int64_t max_receive_bytes;
    int workers;
    int cq_threads;
};

int rpc_server_create(const struct rpc_config *config, struct rpc_server **out)
    __attribute__((warn_unused_result));
/* Registers a unary method, e.g. "/etcdserverpb.KV/Range"; before rpc_server_start. */
void rpc_server_add_unary(struct rpc_server *s, const char *path,
                          const ProtobufCMessageDescriptor *request, rpc_unary_fn handler,
                          void *ctx);
/* A bidirectional stream. The callbacks run on completion-queue threads and must not
 * block; `message` owns msg (protobuf_c_message_free_unpacked). After `closed` (the client
 * half-closed, went away or the server stops), no message arrives; the state stops sending
 * and calls rpc_stream_release() exactly once. The stream then ends with status OK. */
struct rpc_stream;
struct rpc_stream_ops {
    const ProtobufCMessageDescriptor *request;
    void *(*open)(void *ctx, struct rpc_stream *stream);
    void (*message)(void *state, ProtobufCMessage *msg);
    void (*closed)(void *state);
    /* 1: a client's half-close is not "closed": the stream serves on until the call ends
     * (Watch). 0: closed() comes at the half-close, and what is sent after still goes out. */
    int serve_after_half_close;
};

/* Registers a bidirectional streaming method; before rpc_server_start. */
void rpc_server_add_stream(struct rpc_server *s, const char *path, const struct rpc_stream_ops *ops,
                           void *ctx);
/* Queues a message for the client; thread-safe; messages go out in queue order. Returns 0,
 * or -1 when the stream is closed (the message is dropped). */
int rpc_stream_send(struct rpc_stream *stream, const ProtobufCMessage *msg);
/* Bytes queued and not yet written to the transport. */
size_t rpc_stream_pending_bytes(struct rpc_stream *stream);
void rpc_stream_release(struct rpc_stream *stream);
/* Input flow control. rpc_stream_hold, called from the stream's `message` callback, stops
 * reading the client's messages after this one; rpc_stream_resume, from any thread before
 * rpc_stream_release, reads on. While held, gRPC's flow control slows the client down, so
 * a client that floods requests cannot make the server queue them without bound. */
void rpc_stream_hold(struct rpc_stream *stream);
void rpc_stream_resume(struct rpc_stream *stream);

/* Runs fn(arg) on a worker thread (where blocking on the store is allowed). */
void rpc_server_run(struct rpc_server *s, void (*fn)(void *arg), void *arg);

/* Binds the listeners and starts serving. Returns 0 or -1 (logged). */
int rpc_server_start(struct rpc_server *s) __attribute__((warn_unused_result));
/* Stops accepting calls, lets in-flight ones finish (streams are cancelled after a grace
 * period), stops the threads. */
void rpc_server_shutdown(struct rpc_server *s);
void rpc_server_destroy(struct rpc_server *s);

/* Per-call helpers for handlers. The arena lives until the call is finished. */
struct arena *rpc_call_arena(struct rpc_call *call);
/* The server's identity, for response headers. */
void rpc_reply(struct rpc_call *call, const ProtobufCMessage *response);
void rpc_fail(struct rpc_call *call, grpc_status_code code, const char *message);
/* Size of the request as received, in bytes. */
size_t rpc_call_request_size(const struct rpc_call *call);

#endif

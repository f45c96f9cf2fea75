/* kv_service.c -- etcd's KV service: Range, Put, DeleteRange, Txn, Compact. */
#include <string.h>

#include "server/etcd_errors.h"
#include "server/server.h"

/* Answers a request bigger than --max-request-bytes with etcd's error; returns nonzero. */
static int too_large(struct server *s, struct rpc_call *call)
{
    if ((int64_t)rpc_call_request_size(call) <= s->max_request_bytes)
        return 0;
    rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, ETCD_MSG_REQUEST_TOO_LARGE);
    return 1;
}

static void handle_range(void *ctx, struct rpc_call *call, const ProtobufCMessage *msg)
{
    struct server *s = ctx;
    if (too_large(s, call))
        return;
    Etcdserverpb__RangeResponse resp;
    fdb_error_t store_error = 0;
    int err = mvcc_range(s->mvcc, (const Etcdserverpb__RangeRequest *)msg, &resp,
                         rpc_call_arena(call), &store_error);
    if (err)
        return etcd_fail_call(call, err, store_error);
    server_fill_header(s, resp.header);
    rpc_reply(call, &resp.base);
}

static void handle_put(void *ctx, struct rpc_call *call, const ProtobufCMessage *msg)
{
    struct server *s = ctx;
    if (too_large(s, call))
        return;
    Etcdserverpb__PutResponse resp;
    fdb_error_t store_error = 0;
    int err = mvcc_put(s->mvcc, (const Etcdserverpb__PutRequest *)msg, &resp,
                       rpc_call_arena(call), &store_error);
    if (err)
        return etcd_fail_call(call, err, store_error);
    server_fill_header(s, resp.header);
    rpc_reply(call, &resp.base);
}

static void handle_delete_range(void *ctx, struct rpc_call *call, const ProtobufCMessage *msg)
{
    struct server *s = ctx;
    if (too_large(s, call))
        return;
    Etcdserverpb__DeleteRangeResponse resp;
    fdb_error_t store_error = 0;
    int err = mvcc_delete_range(s->mvcc, (const Etcdserverpb__DeleteRangeRequest *)msg, &resp,
                                rpc_call_arena(call), &store_error);
    if (err)
        return etcd_fail_call(call, err, store_error);
    server_fill_header(s, resp.header);
    rpc_reply(call, &resp.base);
}

static void handle_txn(void *ctx, struct rpc_call *call, const ProtobufCMessage *msg)
{
    struct server *s = ctx;
    if (too_large(s, call))
        return;
    Etcdserverpb__TxnResponse resp;
    fdb_error_t store_error = 0;
    int err = mvcc_txn(s->mvcc, (const Etcdserverpb__TxnRequest *)msg, &resp,
                       rpc_call_arena(call), &store_error);
    if (err)
        return etcd_fail_call(call, err, store_error);
    server_fill_header(s, resp.header); /* etcd fills only the outer header */
    rpc_reply(call, &resp.base);
}

static void handle_compact(void *ctx, struct rpc_call *call, const ProtobufCMessage *msg)
{
    struct server *s = ctx;
    Etcdserverpb__CompactionResponse resp;
    fdb_error_t store_error = 0;
    int err = mvcc_compact(s->mvcc, (const Etcdserverpb__CompactionRequest *)msg, &resp,
                           rpc_call_arena(call), &store_error);
    if (err)
        return etcd_fail_call(call, err, store_error);
    server_fill_header(s, resp.header);
    rpc_reply(call, &resp.base);
}

void kv_service_register(struct server *s, struct rpc_server *rpc)
{
    rpc_server_add_unary(rpc, "/etcdserverpb.KV/Range", &etcdserverpb__range_request__descriptor,
                         handle_range, s);
    rpc_server_add_unary(rpc, "/etcdserverpb.KV/Put", &etcdserverpb__put_request__descriptor,
                         handle_put, s);
    rpc_server_add_unary(rpc, "/etcdserverpb.KV/DeleteRange",
                         &etcdserverpb__delete_range_request__descriptor, handle_delete_range, s);
    rpc_server_add_unary(rpc, "/etcdserverpb.KV/Txn", &etcdserverpb__txn_request__descriptor,
                         handle_txn, s);
    rpc_server_add_unary(rpc, "/etcdserverpb.KV/Compact",
                         &etcdserverpb__compaction_request__descriptor, handle_compact, s);
}

/* maintenance_service.c -- Maintenance (Status, Alarm, Defragment, HashKV), Cluster
 * (MemberList) and grpc.health.v1 (Check). This process is the cluster's one member and
 * always its leader: the store, not a consensus protocol, orders writes. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <string.h>
#include <zlib.h>

#include "grpc/health/v1/health.pb-c.h"
#include "server/etcd_errors.h"
#include "server/server.h"

static __thread int64_t du_total; /* nftw has no context argument */

static int du_add(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    if (flag == FTW_F)
        du_total += st->st_size;
    return 0;
}

/* Bytes the embedded store's files take; 0 for a FoundationDB cluster. */
static int64_t data_size(struct server *s)
{
    if (!s->data_dir || strcmp(s->api->name, "embedded") != 0)
        return 0;
    du_total = 0;
    nftw(s->data_dir, du_add, 16, FTW_PHYS);
    return du_total;
}

static void handle_status(void *ctx, struct rpc_call *call, const ProtobufCMessage *msg)
{
    struct server *s = ctx;
    int64_t current, compacted;
    fdb_error_t store_error = 0;
    int err = mvcc_revisions(s->mvcc, &current, &compacted, &store_error);
    if (err)
        return etcd_fail_call(call, err, store_error);
    Etcdserverpb__StatusResponse resp = ETCDSERVERPB__STATUS_RESPONSE__INIT;
    resp.header = server_header(s, call, current);
    resp.version = (char *)ETCD_COMPAT_VERSION;
    resp.dbsize = data_size(s);
    resp.dbsizeinuse = resp.dbsize;
    resp.leader = s->member_id;
    resp.raftindex = (uint64_t)current;
    resp.raftappliedindex = (uint64_t)current;
    resp.raftterm = 1;
    rpc_reply(call, &resp.base);
}

static void handle_alarm(void *ctx, struct rpc_call *call, const ProtobufCMessage *msg)
{
    struct server *s = ctx;
    int64_t current, compacted;
    fdb_error_t store_error = 0;
    int err = mvcc_revisions(s->mvcc, &current, &compacted, &store_error);
    if (err)
        return etcd_fail_call(call, err, store_error);
    Etcdserverpb__AlarmResponse resp = ETCDSERVERPB__ALARM_RESPONSE__INIT;
    resp.header = server_header(s, call, current);
    rpc_reply(call, &resp.base); /* no alarms: the store has no space quota */
}

static void handle_defragment(void *ctx, struct rpc_call *call, const ProtobufCMessage *msg)
{
    struct server *s = ctx;
    Etcdserverpb__DefragmentResponse resp = ETCDSERVERPB__DEFRAGMENT_RESPONSE__INIT;
    resp.header = server_header(s, call, 0);
    rpc_reply(call, &resp.base); /* the store compacts its files by itself */
}

static void handle_hash_kv(void *ctx, struct rpc_call *call, const ProtobufCMessage *msg)
{
    struct server *s = ctx;
    const Etcdserverpb__HashKVRequest *req = (const Etcdserverpb__HashKVRequest *)msg;
    Etcdserverpb__RangeRequest range = ETCDSERVERPB__RANGE_REQUEST__INIT;
    static uint8_t zero = 0;
    range.key.data = &zero;
    range.key.len = 1;
    range.range_end.data = &zero;
    range.range_end.len = 1;
    range.revision = req->revision;
    Etcdserverpb__RangeResponse rr;
    fdb_error_t store_error = 0;
    int err = mvcc_range(s->mvcc, &range, &rr, rpc_call_arena(call), &store_error);
    int64_t current = 0, compacted = 0;
    if (!err)
        err = mvcc_revisions(s->mvcc, &current, &compacted, &store_error);
    if (err)
        return etcd_fail_call(call, err, store_error);
    /* CRC-32 over every key, value and revision at the revision (etcd's own hash covers
     * its bolt database bytes, which no other store can reproduce). */
    uLong crc = crc32(0L, Z_NULL, 0);
    for (size_t i = 0; i < rr.n_kvs; i++) {
        Mvccpb__KeyValue *kv = rr.kvs[i];
        crc = crc32(crc, kv->key.data, (uInt)kv->key.len);
        crc = crc32(crc, kv->value.data, (uInt)kv->value.len);
        crc = crc32(crc, (const Bytef *)&kv->mod_revision, sizeof(kv->mod_revision));
        crc = crc32(crc, (const Bytef *)&kv->create_revision, sizeof(kv->create_revision));
    }
    Etcdserverpb__HashKVResponse resp = ETCDSERVERPB__HASH_KVRESPONSE__INIT;
    resp.header = server_header(s, call, current);
    resp.hash = (uint32_t)crc;
    resp.compact_revision = compacted;
    resp.hash_revision = req->revision > 0 ? req->revision : rr.header->revision;
    rpc_reply(call, &resp.base);
}

static void handle_member_list(void *ctx, struct rpc_call *call, const ProtobufCMessage *msg)
{
    struct server *s = ctx;
    Etcdserverpb__Member *m = arena_alloc(rpc_call_arena(call), sizeof(*m));
    etcdserverpb__member__init(m);
    m->id = s->member_id;
    m->name = (char *)s->name;
    m->n_clienturls = (size_t)s->n_client_urls;
    m->clienturls = s->client_urls;
    Etcdserverpb__MemberListResponse resp = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
    resp.header = server_header(s, call, 0);
    resp.n_members = 1;
    resp.members = arena_alloc(rpc_call_arena(call), sizeof(*resp.members));
    resp.members[0] = m;
    rpc_reply(call, &resp.base);
}

static void handle_health(void *ctx, struct rpc_call *call, const ProtobufCMessage *msg)
{
    struct server *s = ctx;
    int64_t current, compacted;
    fdb_error_t store_error = 0;
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = mvcc_revisions(s->mvcc, &current, &compacted, &store_error) == 0
                      ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                      : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    rpc_reply(call, &resp.base);
}

void maintenance_service_register(struct server *s, struct rpc_server *rpc)
{
    rpc_server_add_unary(rpc, "/etcdserverpb.Maintenance/Status",
                         &etcdserverpb__status_request__descriptor, handle_status, s);
    rpc_server_add_unary(rpc, "/etcdserverpb.Maintenance/Alarm",
                         &etcdserverpb__alarm_request__descriptor, handle_alarm, s);
    rpc_server_add_unary(rpc, "/etcdserverpb.Maintenance/Defragment",
                         &etcdserverpb__defragment_request__descriptor, handle_defragment, s);
    rpc_server_add_unary(rpc, "/etcdserverpb.Maintenance/HashKV",
                         &etcdserverpb__hash_kvrequest__descriptor, handle_hash_kv, s);
    rpc_server_add_unary(rpc, "/etcdserverpb.Cluster/MemberList",
                         &etcdserverpb__member_list_request__descriptor, handle_member_list, s);
    rpc_server_add_unary(rpc, "/grpc.health.v1.Health/Check",
                         &grpc__health__v1__health_check_request__descriptor, handle_health, s);
}

/* lease_service.c -- etcd's Lease service: Grant, Revoke, KeepAlive (a stream), TimeToLive,
 * Leases. Expiry runs in lease/ (the lease leader). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lease/lease.h"
#include "server/etcd_errors.h"
#include "server/server.h"

/* A random positive 63-bit id, as etcd's lessor picks them. */
static int64_t random_id(void)
{
    uint64_t v = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(&v, sizeof(v), 1, f) != 1)
        v = (uint64_t)lease_now_ms() * 2654435761u;
    if (f)
        fclose(f);
    v &= 0x7fffffffffffffffull;
    return v ? (int64_t)v : 1;
}

static void handle_grant(void *ctx, struct rpc_call *call, const ProtobufCMessage *msg)
{
    struct server *s = ctx;
    const Etcdserverpb__LeaseGrantRequest *req = (const Etcdserverpb__LeaseGrantRequest *)msg;
    if (req->ttl > LEASE_MAX_TTL)
        return rpc_fail(call, GRPC_STATUS_OUT_OF_RANGE, "etcdserver: too large lease TTL");
    int64_t ttl = req->ttl < LEASE_MIN_TTL ? LEASE_MIN_TTL : req->ttl;
    int64_t id = req->id, rev = 0;
    fdb_error_t store_error = 0;
    int err;
    for (int attempt = 0;; attempt++) {
        int64_t try_id = id ? id : random_id();
        err = mvcc_lease_grant(s->mvcc, try_id, ttl, lease_now_ms(), &rev, &store_error);
        if (err == MVCC_ERR_LEASE_EXISTS && !id && attempt < 8)
            continue; /* a server-chosen id collided: pick another */
        id = try_id;
        break;
    }
    if (err)
        return etcd_fail_call(call, err, store_error);
    Etcdserverpb__LeaseGrantResponse resp = ETCDSERVERPB__LEASE_GRANT_RESPONSE__INIT;
    resp.header = server_header(s, call, rev);
    resp.id = id;
    resp.ttl = ttl;
    rpc_reply(call, &resp.base);
}

static void handle_revoke(void *ctx, struct rpc_call *call, const ProtobufCMessage *msg)
{
    struct server *s = ctx;
    const Etcdserverpb__LeaseRevokeRequest *req = (const Etcdserverpb__LeaseRevokeRequest *)msg;
    int64_t rev = 0;
    int revoked = 0;
    fdb_error_t store_error = 0;
    int err = mvcc_lease_revoke(s->mvcc, req->id, 0, NULL, &rev, &revoked, &store_error);
    if (err)
        return etcd_fail_call(call, err, store_error);
    Etcdserverpb__LeaseRevokeResponse resp = ETCDSERVERPB__LEASE_REVOKE_RESPONSE__INIT;
    resp.header = server_header(s, call, rev);
    rpc_reply(call, &resp.base);
}

/* Remaining whole seconds, as etcd reports them; -1 once expired. */
static int64_t remaining_s(const struct mvcc_lease *l, int64_t now_ms)
{
    int64_t ms = l->expires_at_ms - now_ms;
    return ms <= 0 ? -1 : ms / 1000;
}

static void handle_ttl(void *ctx, struct rpc_call *call, const ProtobufCMessage *msg)
{
    struct server *s = ctx;
    const Etcdserverpb__LeaseTimeToLiveRequest *req =
        (const Etcdserverpb__LeaseTimeToLiveRequest *)msg;
    struct mvcc_lease l;
    int found;
    int64_t rev;
    fdb_error_t store_error = 0;
    int err = mvcc_lease_get(s->mvcc, req->id, &l, &found, &rev, &store_error);
    if (err)
        return etcd_fail_call(call, err, store_error);
    Etcdserverpb__LeaseTimeToLiveResponse resp = ETCDSERVERPB__LEASE_TIME_TO_LIVE_RESPONSE__INIT;
    resp.header = server_header(s, call, rev);
    resp.id = req->id;
    resp.ttl = -1;
    if (found) {
        resp.ttl = remaining_s(&l, lease_now_ms());
        resp.grantedttl = l.granted_ttl;
        if (req->keys && resp.ttl >= 0) {
            err = mvcc_lease_keys(s->mvcc, req->id, &resp.keys, &resp.n_keys,
                                  rpc_call_arena(call), &store_error);
            if (err)
                return etcd_fail_call(call, err, store_error);
        }
    }
    rpc_reply(call, &resp.base);
}

static void handle_leases(void *ctx, struct rpc_call *call, const ProtobufCMessage *msg)
{
    struct server *s = ctx;
    struct mvcc_lease *list;
    size_t n;
    int64_t rev;
    fdb_error_t store_error = 0;
    int err = mvcc_lease_list(s->mvcc, &list, &n, &rev, rpc_call_arena(call), &store_error);
    if (err)
        return etcd_fail_call(call, err, store_error);
    Etcdserverpb__LeaseLeasesResponse resp = ETCDSERVERPB__LEASE_LEASES_RESPONSE__INIT;
    resp.header = server_header(s, call, rev);
    resp.leases = arena_alloc(rpc_call_arena(call), (n ? n : 1) * sizeof(*resp.leases));
    for (size_t i = 0; i < n; i++) {
        Etcdserverpb__LeaseStatus *st = arena_alloc(rpc_call_arena(call), sizeof(*st));
        etcdserverpb__lease_status__init(st);
        st->id = list[i].id;
        resp.leases[resp.n_leases++] = st;
    }
    rpc_reply(call, &resp.base);
}

/* ---- LeaseKeepAlive: a stream; each request is answered on a worker thread ---- */

struct keepalive_stream {
    struct server *server;
    struct rpc_stream *rpc;
    pthread_mutex_t mu;
    int jobs; /* renewals in progress */
    int closed;
};

struct keepalive_job {
    struct keepalive_stream *ks;
    int64_t id;
};

/* Releases the stream once it is closed and no renewal is running; ks->mu held. */
static void keepalive_maybe_release_locked(struct keepalive_stream *ks)
{
    if (!ks->closed || ks->jobs) {
        pthread_mutex_unlock(&ks->mu);
        return;
    }
    pthread_mutex_unlock(&ks->mu);
    rpc_stream_release(ks->rpc);
    pthread_mutex_destroy(&ks->mu);
    free(ks);
}

static void keepalive_run(void *arg)
{
    struct keepalive_job *j = arg;
    struct keepalive_stream *ks = j->ks;
    struct mvcc_lease l;
    int found = 0;
    int64_t rev = 0;
    fdb_error_t store_error = 0;
    int err = mvcc_lease_renew(ks->server->mvcc, j->id, lease_now_ms(), &l, &found, &rev,
                               &store_error);
    if (!err) {
        Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
        h.revision = rev;
        server_fill_header(ks->server, &h);
        Etcdserverpb__LeaseKeepAliveResponse resp = ETCDSERVERPB__LEASE_KEEP_ALIVE_RESPONSE__INIT;
        resp.header = &h;
        resp.id = j->id;
        resp.ttl = found ? l.granted_ttl : 0; /* etcd answers an unknown lease with TTL 0 */
        rpc_stream_send(ks->rpc, &resp.base);
    }
    free(j);
    pthread_mutex_lock(&ks->mu);
    ks->jobs--;
    keepalive_maybe_release_locked(ks);
}

static void *keepalive_open(void *ctx, struct rpc_stream *stream)
{
    struct keepalive_stream *ks = calloc(1, sizeof(*ks));
    if (!ks)
        abort();
    ks->server = ctx;
    ks->rpc = stream;
    pthread_mutex_init(&ks->mu, NULL);
    return ks;
}

static void keepalive_message(void *state, ProtobufCMessage *msg)
{
    struct keepalive_stream *ks = state;
    struct keepalive_job *j = malloc(sizeof(*j));
    if (!j)
        abort();
    j->ks = ks;
    j->id = ((Etcdserverpb__LeaseKeepAliveRequest *)msg)->id;
    protobuf_c_message_free_unpacked(msg, NULL);
    pthread_mutex_lock(&ks->mu);
    ks->jobs++;
    pthread_mutex_unlock(&ks->mu);
    rpc_server_run(ks->server->rpc, keepalive_run, j);
}

static void keepalive_closed(void *state)
{
    struct keepalive_stream *ks = state;
    pthread_mutex_lock(&ks->mu);
    ks->closed = 1;
    keepalive_maybe_release_locked(ks);
}

static const struct rpc_stream_ops keepalive_ops = {
    &etcdserverpb__lease_keep_alive_request__descriptor, keepalive_open, keepalive_message,
    keepalive_closed, 0};

void lease_service_register(struct server *s, struct rpc_server *rpc)
{
    rpc_server_add_unary(rpc, "/etcdserverpb.Lease/LeaseGrant",
                         &etcdserverpb__lease_grant_request__descriptor, handle_grant, s);
    rpc_server_add_unary(rpc, "/etcdserverpb.Lease/LeaseRevoke",
                         &etcdserverpb__lease_revoke_request__descriptor, handle_revoke, s);
    rpc_server_add_unary(rpc, "/etcdserverpb.Lease/LeaseTimeToLive",
                         &etcdserverpb__lease_time_to_live_request__descriptor, handle_ttl, s);
    rpc_server_add_unary(rpc, "/etcdserverpb.Lease/LeaseLeases",
                         &etcdserverpb__lease_leases_request__descriptor, handle_leases, s);
    rpc_server_add_stream(rpc, "/etcdserverpb.Lease/LeaseKeepAlive", &keepalive_ops, s);
}

/* server.h -- the process's shared context, passed to every service. */
#ifndef SERVER_SERVER_H
#define SERVER_SERVER_H

#include <stdint.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "kv/fdb_api.h"
#include "mvcc/mvcc.h"
#include "server/rpc.h"
#include "watch/watch.h"

#define ETCD_FDB_VERSION "0.1.0"
/* What Maintenance.Status reports: the etcd API level this server speaks. */
#define ETCD_COMPAT_VERSION "3.5.17"

struct server {
    const struct kv_api *api;
    FDBDatabase *db;
    struct mvcc *mvcc;
    const char *name;
    const char *data_dir;
    char **client_urls; /* advertised */
    int n_client_urls;
    uint64_t cluster_id, member_id;
    int64_t max_request_bytes;
    struct watch_hub *watch;
    struct lease_mgr *lease;
    struct rpc_server *rpc;
};

/* A response header in the call's arena: the server's identity and `revision`. */
Etcdserverpb__ResponseHeader *server_header(struct server *s, struct rpc_call *call,
                                            int64_t revision);
/* Fills the identity fields of a header the mvcc layer created. */
void server_fill_header(struct server *s, Etcdserverpb__ResponseHeader *h);

void kv_service_register(struct server *s, struct rpc_server *rpc);
void maintenance_service_register(struct server *s, struct rpc_server *rpc);
void watch_service_register(struct server *s, struct rpc_server *rpc);
void lease_service_register(struct server *s, struct rpc_server *rpc);

#endif

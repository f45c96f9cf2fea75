/* etcd_errors.h -- etcd's gRPC status code and message for each layer error: the one
 * place where they are produced. */
#ifndef SERVER_ETCD_ERRORS_H
#define SERVER_ETCD_ERRORS_H

#include <grpc/grpc.h>

#include "kv/fdb_api.h"

struct etcd_status {
    grpc_status_code code;
    const char *message;
};

/* The status for an mvcc_error (store_error: the store's error behind MVCC_ERR_STORE). */
struct etcd_status etcd_status_for_mvcc(int mvcc_error, fdb_error_t store_error);

struct rpc_call;

/* Ends a call with the status for an mvcc_error. */
void etcd_fail_call(struct rpc_call *call, int mvcc_error, fdb_error_t store_error);

#define ETCD_MSG_REQUEST_TOO_LARGE "etcdserver: request is too large"

#endif

/* etcd_errors.c -- etcd's own codes and messages (its api/v3rpc/rpctypes). */
#include "server/etcd_errors.h"

#include "mvcc/mvcc.h"
#include "kv/log.h"
#include "server/rpc.h"

struct etcd_status etcd_status_for_mvcc(int err, fdb_error_t store_error)
{
    switch (err) {
    case MVCC_ERR_COMPACTED:
        return (struct etcd_status){GRPC_STATUS_OUT_OF_RANGE,
                                    "etcdserver: mvcc: required revision has been compacted"};
    case MVCC_ERR_FUTURE_REV:
        return (struct etcd_status){GRPC_STATUS_OUT_OF_RANGE,
                                    "etcdserver: mvcc: required revision is a future revision"};
    case MVCC_ERR_EMPTY_KEY:
        return (struct etcd_status){GRPC_STATUS_INVALID_ARGUMENT, "etcdserver: key is not provided"};
    case MVCC_ERR_TOO_MANY_OPS:
        return (struct etcd_status){GRPC_STATUS_INVALID_ARGUMENT,
                                    "etcdserver: too many operations in txn request"};
    case MVCC_ERR_DUPLICATE_KEY:
        return (struct etcd_status){GRPC_STATUS_INVALID_ARGUMENT,
                                    "etcdserver: duplicate key given in txn request"};
    case MVCC_ERR_LEASE_NOT_FOUND:
        return (struct etcd_status){GRPC_STATUS_NOT_FOUND, "etcdserver: requested lease not found"};
    case MVCC_ERR_VALUE_PROVIDED:
        return (struct etcd_status){GRPC_STATUS_INVALID_ARGUMENT, "etcdserver: value is provided"};
    case MVCC_ERR_LEASE_PROVIDED:
        return (struct etcd_status){GRPC_STATUS_INVALID_ARGUMENT, "etcdserver: lease is provided"};
    case MVCC_ERR_KEY_NOT_FOUND:
        return (struct etcd_status){GRPC_STATUS_INVALID_ARGUMENT, "etcdserver: key not found"};
    case MVCC_ERR_TOO_LARGE:
        return (struct etcd_status){GRPC_STATUS_INVALID_ARGUMENT, ETCD_MSG_REQUEST_TOO_LARGE};
    case MVCC_ERR_LEASE_EXISTS:
        return (struct etcd_status){GRPC_STATUS_FAILED_PRECONDITION,
                                    "etcdserver: lease already exists"};
    case MVCC_ERR_TIMEOUT:
        return (struct etcd_status){GRPC_STATUS_UNAVAILABLE, "etcdserver: request timed out"};
    case MVCC_ERR_CORRUPT:
        log_msg(LOG_ERROR, "corrupt record in the store");
        return (struct etcd_status){GRPC_STATUS_INTERNAL, "etcdserver: corrupt record"};
    default:
        log_msg(LOG_WARN, "store error %d", (int)store_error);
        return (struct etcd_status){GRPC_STATUS_UNAVAILABLE, "etcdserver: request timed out"};
    }
}

void etcd_fail_call(struct rpc_call *call, int mvcc_error, fdb_error_t store_error)
{
    struct etcd_status st = etcd_status_for_mvcc(mvcc_error, store_error);
    rpc_fail(call, st.code, st.message);
}

/* fdb_api.h -- the store seam: FoundationDB's C API (version 710) as one table of functions.
 *
 * Every layer above kv/ reaches the store only through a `const struct kv_api *`. Two
 * providers fill the table: kv/fdb_loader.c (libfdb_c.so, loaded at run time) and
 * kv/embedded.c (our engine). Types, constants and signatures are declared here from
 * FoundationDB's public C API documentation so that the loaded library's functions can be
 * stored in the table unchanged; nothing here depends on FoundationDB being installed. */
#ifndef KV_FDB_API_H
#define KV_FDB_API_H

#include <stdint.h>

#define KV_API_VERSION 710

typedef int fdb_error_t;
typedef int fdb_bool_t;

typedef struct FDB_future FDBFuture;
typedef struct FDB_database FDBDatabase;
typedef struct FDB_transaction FDBTransaction;

/* One key-value pair of a range read. FoundationDB packs it on 4 bytes (24 bytes on
 * 64-bit targets); the layout must match libfdb_c's exactly. Valid until the future that
 * returned it is destroyed. */
typedef struct __attribute__((packed, aligned(4))) kv_keyvalue {
    const uint8_t *key;
    int key_length;
    const uint8_t *value;
    int value_length;
} FDBKeyValue;

/* Called once when a future becomes ready: immediately in the caller's thread if the future
 * is already ready when the callback is set, otherwise on the network thread. Must not
 * block. */
typedef void (*FDBCallback)(FDBFuture *future, void *callback_parameter);

/* Streaming modes of get_range. */
enum {
    FDB_STREAMING_MODE_WANT_ALL = -2,
    FDB_STREAMING_MODE_ITERATOR = -1,
    FDB_STREAMING_MODE_EXACT = 0,
    FDB_STREAMING_MODE_SMALL = 1,
    FDB_STREAMING_MODE_MEDIUM = 2,
    FDB_STREAMING_MODE_LARGE = 3,
    FDB_STREAMING_MODE_SERIAL = 4,
};

/* Atomic mutation types (fdb_transaction_atomic_op). */
enum {
    FDB_MUTATION_TYPE_ADD = 2,
    FDB_MUTATION_TYPE_BIT_AND = 6,
    FDB_MUTATION_TYPE_BIT_OR = 7,
    FDB_MUTATION_TYPE_BIT_XOR = 8,
    FDB_MUTATION_TYPE_APPEND_IF_FITS = 9,
    FDB_MUTATION_TYPE_MAX = 12,
    FDB_MUTATION_TYPE_MIN = 13,
    FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_KEY = 14,
    FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_VALUE = 15,
    FDB_MUTATION_TYPE_BYTE_MIN = 16,
    FDB_MUTATION_TYPE_BYTE_MAX = 17,
    FDB_MUTATION_TYPE_COMPARE_AND_CLEAR = 20,
};

enum {
    FDB_CONFLICT_RANGE_TYPE_READ = 0,
    FDB_CONFLICT_RANGE_TYPE_WRITE = 1,
};

/* Transaction options used by the layers (fdb_transaction_set_option). */
enum {
    FDB_TR_OPTION_CAUSAL_READ_RISKY = 20,
    FDB_TR_OPTION_NEXT_WRITE_NO_WRITE_CONFLICT_RANGE = 30,
    FDB_TR_OPTION_READ_YOUR_WRITES_DISABLE = 51,
    FDB_TR_OPTION_ACCESS_SYSTEM_KEYS = 301,
    FDB_TR_OPTION_READ_SYSTEM_KEYS = 302,
    FDB_TR_OPTION_TIMEOUT = 500,         /* int64 milliseconds, 0 = none */
    FDB_TR_OPTION_RETRY_LIMIT = 501,     /* int64, -1 = unlimited */
    FDB_TR_OPTION_MAX_RETRY_DELAY = 502, /* int64 milliseconds */
    FDB_TR_OPTION_SIZE_LIMIT = 503,      /* int64 bytes, at most 10,000,000 */
    FDB_TR_OPTION_AUTOMATIC_IDEMPOTENCY = 505, /* 7.3 */
    FDB_TR_OPTION_LOCK_AWARE = 700,
    FDB_TR_OPTION_FIRST_IN_BATCH = 710,
};

/* Network options (fdb_network_set_option). */
enum {
    FDB_NET_OPTION_TRACE_ENABLE = 30,
    FDB_NET_OPTION_KNOB = 40, /* "name=value" */
    FDB_NET_OPTION_EXTERNAL_CLIENT_DIRECTORY = 63,
};

/* fdb_error_predicate tests. */
enum {
    FDB_ERROR_PREDICATE_RETRYABLE = 50000,
    FDB_ERROR_PREDICATE_MAYBE_COMMITTED = 50001,
    FDB_ERROR_PREDICATE_RETRYABLE_NOT_COMMITTED = 50002,
};

/* Error codes the layers and the embedded engine use; values are FoundationDB's. */
enum {
    FDB_OK = 0,
    FDB_ERR_OPERATION_FAILED = 1000,
    FDB_ERR_TRANSACTION_TOO_OLD = 1007,
    FDB_ERR_FUTURE_VERSION = 1009,
    FDB_ERR_NOT_COMMITTED = 1020,
    FDB_ERR_COMMIT_UNKNOWN_RESULT = 1021,
    FDB_ERR_TRANSACTION_CANCELLED = 1025,
    FDB_ERR_TRANSACTION_TIMED_OUT = 1031,
    FDB_ERR_TOO_MANY_WATCHES = 1032,
    FDB_ERR_WATCHES_DISABLED = 1034,
    FDB_ERR_ACCESSED_UNREADABLE = 1036,
    FDB_ERR_PROCESS_BEHIND = 1037,
    FDB_ERR_DATABASE_LOCKED = 1038,
    FDB_ERR_CLUSTER_VERSION_CHANGED = 1039,
    FDB_ERR_OPERATION_CANCELLED = 1101,
    FDB_ERR_FUTURE_RELEASED = 1102,
    FDB_ERR_TAG_THROTTLED = 1213,
    FDB_ERR_CLIENT_INVALID_OPERATION = 2000,
    FDB_ERR_COMMIT_READ_INCOMPLETE = 2002,
    FDB_ERR_KEY_OUTSIDE_LEGAL_RANGE = 2004,
    FDB_ERR_INVERTED_RANGE = 2005,
    FDB_ERR_INVALID_OPTION_VALUE = 2006,
    FDB_ERR_INVALID_OPTION = 2007,
    FDB_ERR_NETWORK_NOT_SETUP = 2008,
    FDB_ERR_NETWORK_ALREADY_SETUP = 2009,
    FDB_ERR_READ_VERSION_ALREADY_SET = 2010,
    FDB_ERR_VERSION_INVALID = 2011,
    FDB_ERR_RANGE_LIMITS_INVALID = 2012,
    FDB_ERR_INVALID_DATABASE_NAME = 2013,
    FDB_ERR_ATTRIBUTE_NOT_FOUND = 2014,
    FDB_ERR_FUTURE_NOT_SET = 2015,
    FDB_ERR_FUTURE_NOT_ERROR = 2016,
    FDB_ERR_USED_DURING_COMMIT = 2017,
    FDB_ERR_INVALID_MUTATION_TYPE = 2018,
    FDB_ERR_TRANSACTION_INVALID_VERSION = 2020,
    FDB_ERR_NO_COMMIT_VERSION = 2021,
    FDB_ERR_BLOCKED_FROM_NETWORK_THREAD = 2026,
    FDB_ERR_TRANSACTION_TOO_LARGE = 2101,
    FDB_ERR_KEY_TOO_LARGE = 2102,
    FDB_ERR_VALUE_TOO_LARGE = 2103,
    FDB_ERR_CONNECTION_STRING_INVALID = 2104,
    FDB_ERR_EXACT_MODE_WITHOUT_LIMITS = 2210,
    FDB_ERR_API_VERSION_UNSET = 2200,
    FDB_ERR_API_VERSION_ALREADY_SET = 2201,
    FDB_ERR_API_VERSION_INVALID = 2202,
    FDB_ERR_API_VERSION_NOT_SUPPORTED = 2203,
    FDB_ERR_UNKNOWN_ERROR = 4000,
    FDB_ERR_INTERNAL_ERROR = 4100,
};

/* Limits FoundationDB enforces (bytes); the embedded engine enforces the same. */
#define FDB_KEY_SIZE_LIMIT 10000
#define FDB_SYSTEM_KEY_SIZE_LIMIT 30000
#define FDB_VALUE_SIZE_LIMIT 100000
#define FDB_TRANSACTION_SIZE_LIMIT 10000000
#define FDB_VERSIONS_PER_SECOND 1000000
#define FDB_MAX_READ_TRANSACTION_LIFE_VERSIONS (5 * FDB_VERSIONS_PER_SECOND)

/* The seam. Every member has the meaning, arguments and ownership rules of the
 * FoundationDB C function whose name is `fdb_` followed by the member's name. */
struct kv_api {
    const char *name; /* "embedded" or "fdb" */

    fdb_error_t (*select_api_version)(int version);
    fdb_error_t (*network_set_option)(int option, const uint8_t *value, int value_length);
    fdb_error_t (*setup_network)(void);
    fdb_error_t (*run_network)(void);
    fdb_error_t (*stop_network)(void);
    const char *(*get_error)(fdb_error_t code);
    fdb_bool_t (*error_predicate)(int predicate_test, fdb_error_t code);

    fdb_error_t (*create_database)(const char *cluster_file_path, FDBDatabase **out_database);
    void (*database_destroy)(FDBDatabase *d);
    fdb_error_t (*database_set_option)(FDBDatabase *d, int option, const uint8_t *value,
                                       int value_length);
    fdb_error_t (*database_create_transaction)(FDBDatabase *d, FDBTransaction **out_transaction);

    void (*transaction_destroy)(FDBTransaction *tr);
    void (*transaction_cancel)(FDBTransaction *tr);
    void (*transaction_reset)(FDBTransaction *tr);
    fdb_error_t (*transaction_set_option)(FDBTransaction *tr, int option, const uint8_t *value,
                                          int value_length);
    void (*transaction_set_read_version)(FDBTransaction *tr, int64_t version);
    FDBFuture *(*transaction_get_read_version)(FDBTransaction *tr);
    FDBFuture *(*transaction_get)(FDBTransaction *tr, const uint8_t *key_name, int key_name_length,
                                  fdb_bool_t snapshot);
    FDBFuture *(*transaction_get_key)(FDBTransaction *tr, const uint8_t *key_name,
                                      int key_name_length, fdb_bool_t or_equal, int offset,
                                      fdb_bool_t snapshot);
    FDBFuture *(*transaction_get_range)(FDBTransaction *tr, const uint8_t *begin_key_name,
                                        int begin_key_name_length, fdb_bool_t begin_or_equal,
                                        int begin_offset, const uint8_t *end_key_name,
                                        int end_key_name_length, fdb_bool_t end_or_equal,
                                        int end_offset, int limit, int target_bytes, int mode,
                                        int iteration, fdb_bool_t snapshot, fdb_bool_t reverse);
    void (*transaction_set)(FDBTransaction *tr, const uint8_t *key_name, int key_name_length,
                            const uint8_t *value, int value_length);
    void (*transaction_clear)(FDBTransaction *tr, const uint8_t *key_name, int key_name_length);
    void (*transaction_clear_range)(FDBTransaction *tr, const uint8_t *begin_key_name,
                                    int begin_key_name_length, const uint8_t *end_key_name,
                                    int end_key_name_length);
    void (*transaction_atomic_op)(FDBTransaction *tr, const uint8_t *key_name, int key_name_length,
                                  const uint8_t *param, int param_length, int operation_type);
    fdb_error_t (*transaction_add_conflict_range)(FDBTransaction *tr,
                                                  const uint8_t *begin_key_name,
                                                  int begin_key_name_length,
                                                  const uint8_t *end_key_name,
                                                  int end_key_name_length, int type);
    FDBFuture *(*transaction_commit)(FDBTransaction *tr);
    fdb_error_t (*transaction_get_committed_version)(FDBTransaction *tr, int64_t *out_version);
    FDBFuture *(*transaction_get_versionstamp)(FDBTransaction *tr);
    FDBFuture *(*transaction_watch)(FDBTransaction *tr, const uint8_t *key_name,
                                    int key_name_length);
    FDBFuture *(*transaction_on_error)(FDBTransaction *tr, fdb_error_t error);

    void (*future_cancel)(FDBFuture *f);
    void (*future_destroy)(FDBFuture *f);
    fdb_error_t (*future_block_until_ready)(FDBFuture *f);
    fdb_bool_t (*future_is_ready)(FDBFuture *f);
    fdb_error_t (*future_set_callback)(FDBFuture *f, FDBCallback callback,
                                       void *callback_parameter);
    fdb_error_t (*future_get_error)(FDBFuture *f);
    fdb_error_t (*future_get_int64)(FDBFuture *f, int64_t *out);
    fdb_error_t (*future_get_key)(FDBFuture *f, const uint8_t **out_key, int *out_key_length);
    fdb_error_t (*future_get_value)(FDBFuture *f, fdb_bool_t *out_present,
                                    const uint8_t **out_value, int *out_value_length);
    fdb_error_t (*future_get_keyvalue_array)(FDBFuture *f, const FDBKeyValue **out_kv,
                                             int *out_count, fdb_bool_t *out_more);
};

#endif

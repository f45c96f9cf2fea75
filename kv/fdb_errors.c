/* fdb_errors.c -- FoundationDB error names and predicates for the embedded engine. */
#include "kv/fdb_errors.h"

#include <stddef.h>

static const struct {
    fdb_error_t code;
    const char *text;
} error_table[] = {
    {FDB_OK, "Success"},
    {FDB_ERR_OPERATION_FAILED, "Operation failed"},
    {FDB_ERR_TRANSACTION_TOO_OLD, "Transaction is too old to perform reads or be committed"},
    {FDB_ERR_FUTURE_VERSION, "Request for future version"},
    {FDB_ERR_NOT_COMMITTED, "Transaction not committed due to conflict with another transaction"},
    {FDB_ERR_COMMIT_UNKNOWN_RESULT, "Transaction may or may not have committed"},
    {FDB_ERR_TRANSACTION_CANCELLED, "Operation aborted because the transaction was cancelled"},
    {FDB_ERR_TRANSACTION_TIMED_OUT, "Operation aborted because the transaction timed out"},
    {FDB_ERR_TOO_MANY_WATCHES, "Too many watches currently set"},
    {FDB_ERR_WATCHES_DISABLED, "Watches cannot be set if read your writes is disabled"},
    {FDB_ERR_ACCESSED_UNREADABLE, "Read or wrote an unreadable key"},
    {FDB_ERR_PROCESS_BEHIND, "Storage process does not have recent mutations"},
    {FDB_ERR_DATABASE_LOCKED, "Database is locked"},
    {FDB_ERR_CLUSTER_VERSION_CHANGED, "The protocol version of the cluster has changed"},
    {FDB_ERR_OPERATION_CANCELLED, "Asynchronous operation cancelled"},
    {FDB_ERR_FUTURE_RELEASED, "Future has been released"},
    {FDB_ERR_TAG_THROTTLED, "Transaction tag is being throttled"},
    {FDB_ERR_CLIENT_INVALID_OPERATION, "Invalid API call"},
    {FDB_ERR_COMMIT_READ_INCOMPLETE, "Commit with incomplete read"},
    {FDB_ERR_KEY_OUTSIDE_LEGAL_RANGE, "Key outside legal range"},
    {FDB_ERR_INVERTED_RANGE, "Range begin key larger than end key"},
    {FDB_ERR_INVALID_OPTION_VALUE, "Option set with an invalid value"},
    {FDB_ERR_INVALID_OPTION, "Option not valid in this context"},
    {FDB_ERR_NETWORK_NOT_SETUP, "Action not possible before the network is configured"},
    {FDB_ERR_NETWORK_ALREADY_SETUP, "Network can be configured only once"},
    {FDB_ERR_READ_VERSION_ALREADY_SET, "Transaction already has a read version set"},
    {FDB_ERR_VERSION_INVALID, "Version not valid"},
    {FDB_ERR_RANGE_LIMITS_INVALID, "Range limits not valid"},
    {FDB_ERR_INVALID_DATABASE_NAME, "Database name must be 'DB'"},
    {FDB_ERR_ATTRIBUTE_NOT_FOUND, "Attribute not found"},
    {FDB_ERR_FUTURE_NOT_SET, "Future not ready"},
    {FDB_ERR_FUTURE_NOT_ERROR, "Future not an error"},
    {FDB_ERR_USED_DURING_COMMIT, "Operation issued while a commit was outstanding"},
    {FDB_ERR_INVALID_MUTATION_TYPE, "Unrecognized atomic mutation type"},
    {FDB_ERR_TRANSACTION_INVALID_VERSION, "Transaction does not have a valid commit version"},
    {FDB_ERR_NO_COMMIT_VERSION, "Transaction is read-only and therefore does not have a commit version"},
    {FDB_ERR_BLOCKED_FROM_NETWORK_THREAD, "Detected a deadlock in a callback called from the network thread"},
    {FDB_ERR_TRANSACTION_TOO_LARGE, "Transaction exceeds byte limit"},
    {FDB_ERR_KEY_TOO_LARGE, "Key length exceeds limit"},
    {FDB_ERR_VALUE_TOO_LARGE, "Value length exceeds limit"},
    {FDB_ERR_CONNECTION_STRING_INVALID, "Connection string invalid"},
    {FDB_ERR_EXACT_MODE_WITHOUT_LIMITS, "EXACT streaming mode requires limits, but none were given"},
    {FDB_ERR_API_VERSION_UNSET, "API version is not set"},
    {FDB_ERR_API_VERSION_ALREADY_SET, "API version may be set only once"},
    {FDB_ERR_API_VERSION_INVALID, "API version not valid"},
    {FDB_ERR_API_VERSION_NOT_SUPPORTED, "API version not supported"},
    {FDB_ERR_UNKNOWN_ERROR, "An unknown error occurred"},
    {FDB_ERR_INTERNAL_ERROR, "An internal error occurred"},
};

const char *fdb_errors_describe(fdb_error_t code)
{
    for (size_t i = 0; i < sizeof(error_table) / sizeof(error_table[0]); i++)
        if (error_table[i].code == code)
            return error_table[i].text;
    return "Unknown error";
}

/* Which errors a retry loop may retry, and which may have committed; this mirrors
 * FoundationDB's client (on_error retries exactly the "retryable" set). */
fdb_bool_t fdb_errors_predicate(int predicate_test, fdb_error_t code)
{
    int maybe_committed = code == FDB_ERR_COMMIT_UNKNOWN_RESULT ||
                          code == FDB_ERR_CLUSTER_VERSION_CHANGED;
    int retryable_not_committed = code == FDB_ERR_NOT_COMMITTED ||
                                  code == FDB_ERR_TRANSACTION_TOO_OLD ||
                                  code == FDB_ERR_FUTURE_VERSION ||
                                  code == FDB_ERR_DATABASE_LOCKED ||
                                  code == FDB_ERR_PROCESS_BEHIND ||
                                  code == FDB_ERR_TAG_THROTTLED;
    switch (predicate_test) {
    case FDB_ERROR_PREDICATE_RETRYABLE:
        return maybe_committed || retryable_not_committed;
    case FDB_ERROR_PREDICATE_MAYBE_COMMITTED:
        return maybe_committed;
    case FDB_ERROR_PREDICATE_RETRYABLE_NOT_COMMITTED:
        return retryable_not_committed;
    default:
        return 0;
    }
}

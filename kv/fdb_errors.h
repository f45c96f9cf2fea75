/* fdb_errors.h -- FoundationDB error names and predicates, for providers that lack them. */
#ifndef KV_FDB_ERRORS_H
#define KV_FDB_ERRORS_H

#include "kv/fdb_api.h"

/* FoundationDB's description of `code` ("Success" for 0, "Unknown error" otherwise). The
 * string is static. */
const char *fdb_errors_describe(fdb_error_t code);

/* FoundationDB's fdb_error_predicate(): whether `code` satisfies `predicate_test`. */
fdb_bool_t fdb_errors_predicate(int predicate_test, fdb_error_t code);

#endif

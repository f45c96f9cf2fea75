/* embedded.h -- the embedded engine: FoundationDB's C API contract on a local RocksDB store.
 *
 * The default provider of the store seam. create_database() takes a data directory where
 * FoundationDB takes a cluster file. */
#ifndef KV_EMBEDDED_H
#define KV_EMBEDDED_H

#include <stdint.h>

#include "kv/fdb_api.h"

/* The engine's function table; static, never freed. */
const struct kv_api *embedded_api(void);

/* Fault injection, like FoundationDB's simulator: with probability permille/1000 each, a
 * commit fails with not_committed, transaction_too_old or commit_unknown_result (half of
 * the latter after applying the commit), and every future completes on the network thread
 * after a random delay of up to 2 ms. permille 0 turns it off. The environment variable
 * ETCD_FDB_FAULTS="SEED:PERMILLE" sets it for every database the process opens. */
void embedded_set_faults(FDBDatabase *db, uint64_t seed, int permille);

/* Whether the engine honours AUTOMATIC_IDEMPOTENCY (default yes, as FoundationDB 7.3). Off,
 * it behaves like a 7.1 cluster: commit_unknown_result reaches idempotent transactions too.
 * For tests of the layers' handling of unknown commit results. */
void embedded_set_idempotency(FDBDatabase *db, int supported);

#endif

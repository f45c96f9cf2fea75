/* embedded_internal.h -- shared between the embedded engine's database (embedded.c) and its
 * transactions (embedded_txn.c). Not for use outside kv/. */
#ifndef KV_EMBEDDED_INTERNAL_H
#define KV_EMBEDDED_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <rocksdb/c.h>

#include "kv/arena.h"
#include "kv/fdb_api.h"
#include "kv/future.h"
#include "kv/writemap.h"

/* Mutation kinds besides FoundationDB's atomic op codes (which are all positive). */
enum { MUT_SET = -1, MUT_CLEAR = -2, MUT_CLEAR_RANGE = -3 };

struct key_range {
    const uint8_t *begin, *end;
    int begin_len, end_len;
};

struct mutation {
    int type;
    const uint8_t *key; /* begin for MUT_CLEAR_RANGE */
    int key_len;
    const uint8_t *param; /* value, atomic parameter, or end for MUT_CLEAR_RANGE */
    int param_len;
};

/* A watch set by a transaction, registered when it commits. */
struct pending_watch {
    FDBFuture *future; /* operation reference held */
    const uint8_t *key;
    int key_len;
    int present; /* the value the transaction saw */
    const uint8_t *value;
    int value_len;
};

/* One read version's view of the store: a RocksDB snapshot holding exactly the commits with
 * versions <= `version`. Reference-counted by the transactions reading at it. */
struct snap {
    int64_t version;
    const rocksdb_snapshot_t *rocks;
    atomic_int refs;
    struct snap *older, *newer;
};

#define VEC(type)                                                                              \
    struct {                                                                                   \
        type *items;                                                                           \
        int count, cap;                                                                        \
    }

/* Appends x to vector v (of VEC type); aborts on out-of-memory. */
#define VEC_PUSH(v, x)                                                                         \
    do {                                                                                       \
        if ((v).count == (v).cap) {                                                            \
            (v).cap = (v).cap ? (v).cap * 2 : 8;                                               \
            (v).items = realloc((v).items, (size_t)(v).cap * sizeof(*(v).items));              \
            if (!(v).items)                                                                    \
                abort();                                                                       \
        }                                                                                      \
        (v).items[(v).count++] = (x);                                                          \
    } while (0)

/* What a commit hands the commit thread; the commit thread owns it. */
struct commit_req {
    struct commit_req *next;
    FDBTransaction *tr; /* reference held */
    uint64_t generation;
    FDBFuture *future; /* operation reference held */
    int64_t read_version; /* -1 if the transaction never read */
    struct arena arena;   /* owns every byte the vectors below point to */
    VEC(struct key_range) reads;
    VEC(struct key_range) writes;
    VEC(struct mutation) mutations;
    VEC(FDBFuture *) stamps; /* versionstamp futures, operation references held */
    VEC(struct pending_watch) watches;
    int first_in_batch;
    int idempotent;
    /* Results, set by the commit thread. */
    fdb_error_t error;
    int64_t version; /* -1 for a read-only commit */
    uint16_t batch_index;
};

/* Transaction states (assert_tr_state checks them):
 *   ACTIVE --commit--> COMMITTING --success--> COMMITTED
 *                                 --failure--> FAILED
 *   any --reset / on_error--> ACTIVE
 * Reads and writes are allowed only in ACTIVE; a failed transaction stays failed until it
 * is reset (on_error resets retryable ones). */
enum tr_state { TR_ACTIVE, TR_COMMITTING, TR_COMMITTED, TR_FAILED };

struct FDB_transaction {
    struct FDB_database *db;
    pthread_mutex_t mu; /* refs, generation, state, commit results */
    int refs;
    uint64_t generation; /* bumped by reset: late commit results are then dropped */
    enum tr_state state;
    fdb_error_t deferred_error; /* first error of a write; reported by reads and commit */
    struct snap *snap;          /* NULL until a read version is chosen */
    int64_t read_version;
    fdb_error_t read_version_error; /* from set_read_version */
    int read_version_set;
    rocksdb_readoptions_t *read_options;
    struct writemap *writes_view;
    struct arena arena;
    VEC(struct key_range) reads;
    VEC(struct key_range) writes;
    VEC(struct mutation) mutations;
    VEC(FDBFuture *) stamps;
    VEC(struct pending_watch) watches;
    int64_t size; /* bytes of mutations and conflict ranges */
    int64_t committed_version;
    uint8_t versionstamp[10];
    /* Options. The first group is reset by reset and on_error. */
    int access_system_keys, read_system_keys, next_write_no_conflict, first_in_batch;
    int idempotent, lock_aware, ryw_disabled;
    /* These persist across on_error (as FoundationDB's persistent options do). */
    int64_t timeout_ms, retry_limit, max_retry_delay_ms, size_limit;
    uint64_t start_us; /* monotonic, for the timeout */
    int retries;
    double backoff_s;
};

struct watch_rec;

#define CONFLICT_GENERATIONS 10 /* covers the 5 s window at one generation a second */

struct FDB_database {
    char *path;
    rocksdb_t *rocks;
    rocksdb_options_t *options;
    rocksdb_column_family_handle_t *cf_data, *cf_meta;
    rocksdb_writeoptions_t *write_sync, *write_nosync;
    rocksdb_readoptions_t *read_latest;
    rocksdb_cache_t *cache;
    rocksdb_block_based_table_options_t *table_options;
    rocksdb_filterpolicy_t *filter; /* owned by table_options */
    int64_t epoch_us; /* wall-clock microseconds of version 0 */

    /* Versions and snapshots (vlock). */
    pthread_mutex_t vlock;
    int64_t max_issued;     /* greatest version handed to anyone */
    int64_t last_committed; /* version of the newest published snapshot */
    int64_t inflight_first; /* first version of the group being written, 0 if none */
    struct snap *snaps;     /* newest first */
    struct snap *oldest_snap;
    fdb_error_t failed;     /* storage failed: every commit fails */

    /* Commit queue (qlock). */
    pthread_mutex_t qlock;
    pthread_cond_t qcv;
    struct commit_req *qhead, *qtail;
    int stopping;
    pthread_t commit_thread;
    int commit_thread_started;

    /* Commit thread only. The conflict history is kept in generations of about one second
     * each (newest first), so forgetting old writes drops whole generations instead of
     * walking every boundary. */
    struct conflict_gen {
        struct conflict *history;
        int64_t max_version; /* newest write recorded in it; 0 if none */
    } gens[CONFLICT_GENERATIONS];
    int n_gens;
    uint64_t last_rotate_us;
    /* The group's writes, kept only when one of its requests has an atomic operation that
     * must see earlier writes of the group (use_overlay); else touched watches are marked. */
    struct writemap *overlay;
    int use_overlay;
    char *apply_error; /* a store read of the commit thread failed: the group is not written */
    uint64_t last_prune_us;

    /* Watches (wlock). */
    pthread_mutex_t wlock;
    void *watch_tree;
    int watch_count;

    /* Fault injection (rng under flock). */
    pthread_mutex_t flock;
    int fault_permille;
    int no_idempotency; /* embedded_set_idempotency(db, 0) */
    uint64_t rng;
    atomic_int commits_in_flight; /* submitted, answer not yet fully delivered */
};

/* embedded.c */
int64_t db_clock_version(const struct FDB_database *db);
fdb_error_t db_acquire_snap(struct FDB_database *db, int64_t want_version, struct snap **out,
                            int64_t *out_version);
void db_release_snap(struct snap *s);
void db_submit_commit(struct FDB_database *db, struct commit_req *req);
int db_faults_enabled(const struct FDB_database *db);
uint64_t db_random(struct FDB_database *db);
void db_finish_future(struct FDB_database *db, FDBFuture *f, fdb_error_t err);

/* embedded_txn.c */
void txn_unref(FDBTransaction *tr);
void txn_commit_done(struct commit_req *req); /* network or commit thread */
extern const struct kv_api embedded_txn_api_part;
void embedded_fill_txn_api(struct kv_api *api);

#endif

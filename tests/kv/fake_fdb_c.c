/* fake_fdb_c.c -- a stand-in for libfdb_c.so, so tests/kv/test_loader.c runs without FoundationDB.
 *
 * Built twice by tests/kv/loader.cmake. FAKE_FDB_PARTIAL exports only the network-level
 * functions, so loading it must fail naming the others. FAKE_FDB_FULL exports every function
 * kv/fdb_loader.c resolves (stubs, except those the test calls) and fake_fdb_* hooks through
 * which the test observes the calls. */
#include "kv/fdb_api.h"

#if defined(FAKE_FDB_FULL) == defined(FAKE_FDB_PARTIAL)
#error "define exactly one of FAKE_FDB_FULL and FAKE_FDB_PARTIAL"
#endif

static int fake_max_api_version = KV_API_VERSION;
static int fake_runtime_version = -1;
static int fake_header_version = -1;

fdb_error_t fdb_select_api_version_impl(int runtime_version, int header_version)
{
    fake_runtime_version = runtime_version;
    fake_header_version = header_version;
    return runtime_version <= fake_max_api_version ? 0 : FDB_ERR_API_VERSION_NOT_SUPPORTED;
}

int fdb_get_max_api_version(void)
{
    return fake_max_api_version;
}

const char *fdb_get_error(fdb_error_t code)
{
    return code == 0 ? "Success" : "fake libfdb_c error";
}

fdb_bool_t fdb_error_predicate(int predicate_test, fdb_error_t code)
{
    return 0;
}

fdb_error_t fdb_network_set_option(int option, const uint8_t *value, int value_length)
{
    return 0;
}

fdb_error_t fdb_setup_network(void)
{
    return 0;
}

fdb_error_t fdb_run_network(void)
{
    return 0;
}

fdb_error_t fdb_stop_network(void)
{
    return 0;
}

#ifdef FAKE_FDB_FULL

/* Test hooks: what the last select call received, and the version the fake claims. */
void fake_fdb_last_select(int *runtime_version, int *header_version)
{
    *runtime_version = fake_runtime_version;
    *header_version = fake_header_version;
}

void fake_fdb_set_max_api_version(int version)
{
    fake_max_api_version = version;
}

/* A recognisable database handle; the fake never dereferences it. */
static char fake_database;

fdb_error_t fdb_create_database(const char *cluster_file_path, FDBDatabase **out_database)
{
    *out_database = (FDBDatabase *)&fake_database;
    return 0;
}

/* Present only so the symbols exist; the test never calls them. */
#define FAKE_STUB(name)                                                                            \
    void name(void)                                                                                \
    {                                                                                              \
    }
FAKE_STUB(fdb_database_destroy)
FAKE_STUB(fdb_database_set_option)
FAKE_STUB(fdb_database_create_transaction)
FAKE_STUB(fdb_transaction_destroy)
FAKE_STUB(fdb_transaction_cancel)
FAKE_STUB(fdb_transaction_reset)
FAKE_STUB(fdb_transaction_set_option)
FAKE_STUB(fdb_transaction_set_read_version)
FAKE_STUB(fdb_transaction_get_read_version)
FAKE_STUB(fdb_transaction_get)
FAKE_STUB(fdb_transaction_get_key)
FAKE_STUB(fdb_transaction_get_range)
FAKE_STUB(fdb_transaction_set)
FAKE_STUB(fdb_transaction_clear)
FAKE_STUB(fdb_transaction_clear_range)
FAKE_STUB(fdb_transaction_atomic_op)
FAKE_STUB(fdb_transaction_add_conflict_range)
FAKE_STUB(fdb_transaction_commit)
FAKE_STUB(fdb_transaction_get_committed_version)
FAKE_STUB(fdb_transaction_get_versionstamp)
FAKE_STUB(fdb_transaction_watch)
FAKE_STUB(fdb_transaction_on_error)
FAKE_STUB(fdb_future_cancel)
FAKE_STUB(fdb_future_destroy)
FAKE_STUB(fdb_future_block_until_ready)
FAKE_STUB(fdb_future_is_ready)
FAKE_STUB(fdb_future_set_callback)
FAKE_STUB(fdb_future_get_error)
FAKE_STUB(fdb_future_get_int64)
FAKE_STUB(fdb_future_get_key)
FAKE_STUB(fdb_future_get_value)
FAKE_STUB(fdb_future_get_keyvalue_array)

#endif

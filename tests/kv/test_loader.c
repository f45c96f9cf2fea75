/* test_loader.c -- kv/fdb_loader.c against fake client libraries, without FoundationDB.
 *
 * The fakes (tests/kv/fake_fdb_c.c) come as FAKE_FDB_PARTIAL_PATH / FAKE_FDB_FULL_PATH compile
 * definitions from tests/kv/loader.cmake, or as argv[1] / argv[2] when built by hand. */
#include <check.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/fdb_loader.h"

#ifndef FAKE_FDB_PARTIAL_PATH
#define FAKE_FDB_PARTIAL_PATH NULL
#endif
#ifndef FAKE_FDB_FULL_PATH
#define FAKE_FDB_FULL_PATH NULL
#endif

static const char *partial_path = FAKE_FDB_PARTIAL_PATH;
static const char *full_path = FAKE_FDB_FULL_PATH;

/* Fails with file:line, the loader's error string and its message. Needs `errbuf` in scope. */
#define CHECK_OK(expr)                                                                             \
    do {                                                                                           \
        int check_rc = (expr);                                                                     \
        ck_assert_msg(check_rc == FDB_LOADER_OK, "%s:%d: %s: %s (%s)", __FILE__, __LINE__, #expr,  \
                      fdb_loader_strerror(check_rc), errbuf);                                      \
    } while (0)

#define CHECK_MESSAGE_HAS(text)                                                                    \
    ck_assert_msg(strstr(errbuf, (text)) != NULL, "message lacks \"%s\": %s", (text), errbuf)

/* The fake's test hooks, reached through the test's own reference to the full fake. */
struct fake_hooks {
    void *handle;
    void (*last_select)(int *runtime_version, int *header_version);
    void (*set_max_api_version)(int version);
};

static void fake_hooks_open(struct fake_hooks *hooks)
{
    hooks->handle = dlopen(full_path, RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(hooks->handle != NULL, "dlopen %s: %s", full_path, dlerror());
    void *last_select = dlsym(hooks->handle, "fake_fdb_last_select");
    void *set_max = dlsym(hooks->handle, "fake_fdb_set_max_api_version");
    ck_assert(last_select != NULL && set_max != NULL);
    memcpy(&hooks->last_select, &last_select, sizeof last_select);
    memcpy(&hooks->set_max_api_version, &set_max, sizeof set_max);
}

START_TEST(test_missing_library_names_package)
{
    char errbuf[1024];
    struct kv_api api;
    memset(&api, 0, sizeof api);
    const char *path = "/nonexistent/etcd-fdb-test/libfdb_c.so";
    int rc = fdb_loader_open(path, &api, errbuf, sizeof errbuf);
    ck_assert_int_eq(rc, FDB_LOADER_ERR_LIBRARY_NOT_FOUND);
    CHECK_MESSAGE_HAS("foundationdb-clients");
    CHECK_MESSAGE_HAS("libfdb_c.so");
    CHECK_MESSAGE_HAS(path);
    ck_assert_ptr_null(api.name); /* *out untouched on failure */
    ck_assert_ptr_null(api.get_error);
}
END_TEST

START_TEST(test_environment_variable_is_honoured)
{
    char errbuf[1024];
    struct kv_api api;
    memset(&api, 0, sizeof api);
    ck_assert_int_eq(setenv(FDB_LOADER_ENV_LIBRARY, "/nonexistent/env/libfdb_c.so", 1), 0);
    int rc = fdb_loader_open(NULL, &api, errbuf, sizeof errbuf);
    ck_assert_int_eq(rc, FDB_LOADER_ERR_LIBRARY_NOT_FOUND);
    CHECK_MESSAGE_HAS(FDB_LOADER_ENV_LIBRARY);
    CHECK_MESSAGE_HAS("/nonexistent/env/libfdb_c.so");
    CHECK_MESSAGE_HAS("foundationdb-clients");

    ck_assert_int_eq(setenv(FDB_LOADER_ENV_LIBRARY, full_path, 1), 0);
    CHECK_OK(fdb_loader_open(NULL, &api, errbuf, sizeof errbuf));
    ck_assert_str_eq(api.name, "fdb");
    unsetenv(FDB_LOADER_ENV_LIBRARY);
}
END_TEST

START_TEST(test_partial_library_names_missing_symbols)
{
    char errbuf[1024];
    struct kv_api api;
    memset(&api, 0, sizeof api);
    int rc = fdb_loader_open(partial_path, &api, errbuf, sizeof errbuf);
    ck_assert_int_eq(rc, FDB_LOADER_ERR_SYMBOL_MISSING);
    CHECK_MESSAGE_HAS("fdb_create_database");
    CHECK_MESSAGE_HAS("fdb_database_destroy");
    CHECK_MESSAGE_HAS("foundationdb-clients");
    CHECK_MESSAGE_HAS(partial_path);
    ck_assert_msg(strstr(errbuf, "fdb_setup_network") == NULL, "names a present symbol: %s",
                  errbuf);
    ck_assert_ptr_null(api.name);
}
END_TEST

START_TEST(test_full_library_reaches_fake)
{
    char errbuf[1024];
    struct kv_api api;
    memset(&api, 0, sizeof api);
    CHECK_OK(fdb_loader_open(full_path, &api, errbuf, sizeof errbuf));
    ck_assert_str_eq(errbuf, "");
    ck_assert_str_eq(api.name, "fdb");
    ck_assert_ptr_nonnull(api.transaction_get_range);
    ck_assert_ptr_nonnull(api.future_get_keyvalue_array);

    ck_assert_str_eq(api.get_error(1020), "fake libfdb_c error");

    struct fake_hooks hooks;
    fake_hooks_open(&hooks);
    ck_assert_int_eq(api.select_api_version(KV_API_VERSION), 0);
    int runtime_version, header_version;
    hooks.last_select(&runtime_version, &header_version);
    ck_assert_int_eq(runtime_version, KV_API_VERSION);
    ck_assert_int_eq(header_version, 710);

    FDBDatabase *database = NULL;
    ck_assert_int_eq(api.create_database(NULL, &database), 0);
    ck_assert_ptr_nonnull(database);
    dlclose(hooks.handle);
}
END_TEST

START_TEST(test_old_library_is_refused)
{
    char errbuf[1024];
    struct kv_api api;
    memset(&api, 0, sizeof api);
    struct fake_hooks hooks;
    fake_hooks_open(&hooks);
    hooks.set_max_api_version(630);
    int rc = fdb_loader_open(full_path, &api, errbuf, sizeof errbuf);
    ck_assert_int_eq(rc, FDB_LOADER_ERR_VERSION_TOO_OLD);
    CHECK_MESSAGE_HAS("630");
    CHECK_MESSAGE_HAS("foundationdb-clients");
    ck_assert_ptr_null(api.name);

    hooks.set_max_api_version(KV_API_VERSION);
    CHECK_OK(fdb_loader_open(full_path, &api, errbuf, sizeof errbuf));
    dlclose(hooks.handle);
}
END_TEST

START_TEST(test_second_library_is_refused)
{
    char errbuf[1024];
    struct kv_api api;
    memset(&api, 0, sizeof api);
    CHECK_OK(fdb_loader_open(full_path, &api, errbuf, sizeof errbuf));

    struct kv_api other;
    memset(&other, 0, sizeof other);
    int rc = fdb_loader_open(partial_path, &other, errbuf, sizeof errbuf);
    ck_assert_int_eq(rc, FDB_LOADER_ERR_ALREADY_LOADED);
    CHECK_MESSAGE_HAS(partial_path);
    ck_assert_ptr_null(other.name);

    /* The same library again just refills the table. */
    CHECK_OK(fdb_loader_open(full_path, &other, errbuf, sizeof errbuf));
    ck_assert_ptr_eq(other.get_error, api.get_error);
}
END_TEST

START_TEST(test_small_error_buffer_is_terminated)
{
    char errbuf[16];
    memset(errbuf, 'x', sizeof errbuf);
    struct kv_api api;
    int rc = fdb_loader_open(partial_path, &api, errbuf, sizeof errbuf);
    ck_assert_int_eq(rc, FDB_LOADER_ERR_SYMBOL_MISSING);
    ck_assert_uint_eq(strlen(errbuf), sizeof errbuf - 1);
    ck_assert_int_eq(fdb_loader_open("/nonexistent/libfdb_c.so", &api, NULL, 0),
                     FDB_LOADER_ERR_LIBRARY_NOT_FOUND);
}
END_TEST

static Suite *loader_suite(void)
{
    Suite *suite = suite_create("fdb_loader");
    TCase *tc = tcase_create("load");
    tcase_add_test(tc, test_missing_library_names_package);
    tcase_add_test(tc, test_environment_variable_is_honoured);
    tcase_add_test(tc, test_partial_library_names_missing_symbols);
    tcase_add_test(tc, test_full_library_reaches_fake);
    tcase_add_test(tc, test_old_library_is_refused);
    tcase_add_test(tc, test_second_library_is_refused);
    tcase_add_test(tc, test_small_error_buffer_is_terminated);
    suite_add_tcase(suite, tc);
    return suite;
}

int main(int argc, char **argv)
{
    if (argc >= 3) {
        partial_path = argv[1];
        full_path = argv[2];
    }
    if (partial_path == NULL || full_path == NULL) {
        fprintf(stderr, "usage: %s PARTIAL_FAKE_LIBFDB_C FULL_FAKE_LIBFDB_C\n", argv[0]);
        return EXIT_FAILURE;
    }
    SRunner *runner = srunner_create(loader_suite());
    /* Each test needs a fresh process: the loaded library is process-wide state. */
    srunner_set_fork_status(runner, CK_FORK);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* fdb_loader.c -- fills struct kv_api from libfdb_c.so, loaded with dlopen().
 *
 * Invariants (checked at compile time below):
 *  (1) every function member of struct kv_api is resolved here, so a member added to the seam
 *      without a line in LOADER_FUNCTIONS breaks the build instead of leaving a NULL pointer;
 *  (2) FDBKeyValue has libfdb_c's layout (packed on 4 bytes), because the arrays callers read
 *      come straight from the library. */
#include "kv/fdb_loader.h"

#include <assert.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every function member of struct kv_api except select_api_version, whose exported symbol has
 * another name and signature; each is resolved as "fdb_" followed by the member's name. */
#define LOADER_FUNCTIONS(X)                                                                        \
    X(network_set_option)                                                                          \
    X(setup_network)                                                                               \
    X(run_network)                                                                                 \
    X(stop_network)                                                                                \
    X(get_error)                                                                                   \
    X(error_predicate)                                                                             \
    X(create_database)                                                                             \
    X(database_destroy)                                                                            \
    X(database_set_option)                                                                         \
    X(database_create_transaction)                                                                 \
    X(transaction_destroy)                                                                         \
    X(transaction_cancel)                                                                          \
    X(transaction_reset)                                                                           \
    X(transaction_set_option)                                                                      \
    X(transaction_set_read_version)                                                                \
    X(transaction_get_read_version)                                                                \
    X(transaction_get)                                                                             \
    X(transaction_get_key)                                                                         \
    X(transaction_get_range)                                                                       \
    X(transaction_set)                                                                             \
    X(transaction_clear)                                                                           \
    X(transaction_clear_range)                                                                     \
    X(transaction_atomic_op)                                                                       \
    X(transaction_add_conflict_range)                                                              \
    X(transaction_commit)                                                                          \
    X(transaction_get_committed_version)                                                           \
    X(transaction_get_versionstamp)                                                                \
    X(transaction_watch)                                                                           \
    X(transaction_on_error)                                                                        \
    X(future_cancel)                                                                               \
    X(future_destroy)                                                                              \
    X(future_block_until_ready)                                                                    \
    X(future_is_ready)                                                                             \
    X(future_set_callback)                                                                         \
    X(future_get_error)                                                                            \
    X(future_get_int64)                                                                            \
    X(future_get_key)                                                                              \
    X(future_get_value)                                                                            \
    X(future_get_keyvalue_array)

#define LOADER_COUNT_ONE(member) +1
enum { LOADER_FUNCTION_COUNT = 0 LOADER_FUNCTIONS(LOADER_COUNT_ONE) };

/* Symbols needed beyond the table: the real select entry point and the version probe. */
#define LOADER_SELECT_SYMBOL "fdb_select_api_version_impl"
#define LOADER_MAX_VERSION_SYMBOL "fdb_get_max_api_version"
#define LOADER_SYMBOL_TOTAL (LOADER_FUNCTION_COUNT + 2)

/* (1): `name`, select_api_version, and the LOADER_FUNCTIONS members, nothing else. */
_Static_assert(sizeof(struct kv_api) ==
                   sizeof(const char *) + (LOADER_FUNCTION_COUNT + 1) * sizeof(void (*)(void)),
               "struct kv_api has a member fdb_loader.c does not resolve");

/* (2): pointer, int, pointer, int with 4-byte packing: 24 bytes on LP64, 16 on ILP32. */
_Static_assert(offsetof(FDBKeyValue, key_length) == sizeof(void *), "FDBKeyValue layout");
_Static_assert(offsetof(FDBKeyValue, value) == sizeof(void *) + sizeof(int), "FDBKeyValue layout");
_Static_assert(offsetof(FDBKeyValue, value_length) == 2 * sizeof(void *) + sizeof(int),
               "FDBKeyValue layout");
_Static_assert(sizeof(FDBKeyValue) == 2 * sizeof(void *) + 2 * sizeof(int), "FDBKeyValue layout");

/* dlsym() results are copied byte for byte into function pointers (POSIX dlsym rationale). */
_Static_assert(sizeof(void (*)(void)) == sizeof(void *), "function pointers differ from void *");

/* The loaded library. libfdb_c is process-wide (one network thread and one API version per
 * process, and it is built not to unload), so this module keeps its one handle, and the one
 * entry point the select wrapper needs, as statics: set by the first successful
 * fdb_loader_open() and never cleared. This is the only state the module has. */
typedef fdb_error_t (*loader_select_impl_fn)(int runtime_version, int header_version);
typedef int (*loader_max_api_version_fn)(void);
static void *loader_handle;
static loader_select_impl_fn loader_select_api_version_impl;

/* The library exports fdb_select_api_version_impl(runtime, header) rather than
 * fdb_select_api_version; the header version is the one fdb_api.h was written against. */
static fdb_error_t loader_select_api_version(int version)
{
    return loader_select_api_version_impl(version, KV_API_VERSION);
}

/* A bounded text buffer that truncates instead of overflowing and remembers that it did. */
struct loader_text {
    char *buf;
    size_t size;
    size_t used;
    int truncated;
};

static void loader_text_init(struct loader_text *text, char *buf, size_t size)
{
    text->buf = buf;
    text->size = size;
    text->used = 0;
    text->truncated = 0;
    if (size > 0)
        buf[0] = '\0';
}

static void loader_text_append(struct loader_text *text, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static void loader_text_append(struct loader_text *text, const char *format, ...)
{
    if (text->size == 0 || text->used + 1 >= text->size) {
        text->truncated = 1;
        return;
    }
    size_t room = text->size - text->used;
    va_list args;
    va_start(args, format);
    int written = vsnprintf(text->buf + text->used, room, format, args);
    va_end(args);
    if (written < 0) { /* NEVER: only on an invalid format */
        text->buf[text->used] = '\0';
        text->truncated = 1;
    } else if ((size_t)written >= room) {
        text->used = text->size - 1;
        text->truncated = 1;
    } else {
        text->used += (size_t)written;
    }
}

/* Writes a one-line message into errbuf (if any), truncating to fit. */
static void loader_message(char *errbuf, size_t errlen, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void loader_message(char *errbuf, size_t errlen, const char *format, ...)
{
    if (errlen == 0)
        return;
    va_list args;
    va_start(args, format);
    if (vsnprintf(errbuf, errlen, format, args) < 0) /* NEVER: only on an invalid format */
        errbuf[0] = '\0';
    va_end(args);
}

/* dlopen()s the library to use: library_path if given, else $ETCD_FDB_LIBRARY if set, else the
 * usual names. Returns the handle, or NULL with the message in errbuf. *opened_name receives the
 * name that was opened (borrowed from library_path, the environment or a literal). */
static void *loader_dlopen(const char *library_path, const char **opened_name, char *errbuf,
                           size_t errlen)
{
    const char *env = getenv(FDB_LOADER_ENV_LIBRARY);
    /* Only when nothing was asked for are the usual names tried, in this order. */
    const char *names[2] = {"libfdb_c.so", "libfdb_c.so.7"};
    size_t count = 2;
    const char *source = "";
    if (library_path != NULL) {
        names[0] = library_path;
        count = 1;
    } else if (env != NULL && env[0] != '\0') {
        names[0] = env;
        count = 1;
        source = " (from " FDB_LOADER_ENV_LIBRARY ")";
    }

    char reasons_buf[512];
    struct loader_text reasons;
    loader_text_init(&reasons, reasons_buf, sizeof reasons_buf);
    for (size_t i = 0; i < count; i++) {
        /* RTLD_NOW: a library with unresolvable dependencies fails here, not mid-transaction. */
        void *handle = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (handle != NULL) {
            *opened_name = names[i];
            return handle;
        }
        const char *why = dlerror();
        loader_text_append(&reasons, "%s%s", i > 0 ? "; " : "", why != NULL ? why : names[i]);
    }

    loader_message(errbuf, errlen, "cannot load the FoundationDB client library%s: %s; %s%s",
                   source, reasons_buf, FDB_LOADER_PACKAGE_HINT,
                   library_path == NULL ? ", or point " FDB_LOADER_ENV_LIBRARY " at it" : "");
    return NULL;
}

/* dlsym() that records a missing name in *missing instead of failing at once, so one message
 * can list everything the library lacks. */
static void *loader_symbol(void *handle, const char *name, struct loader_text *missing,
                           int *missing_count)
{
    void *symbol = dlsym(handle, name);
    if (symbol == NULL) {
        (void)dlerror(); /* clear the pending error so later dlerror() callers are not misled */
        loader_text_append(missing, "%s%s", *missing_count > 0 ? ", " : "", name);
        (*missing_count)++;
    }
    return symbol;
}

/* Resolves every symbol from handle into *table (select_api_version excepted), *select_impl
 * and *max_version. Returns FDB_LOADER_OK, or FDB_LOADER_ERR_SYMBOL_MISSING with the message;
 * name is the library's name for that message. */
static int loader_resolve(void *handle, const char *name, struct kv_api *table,
                          loader_select_impl_fn *select_impl,
                          loader_max_api_version_fn *max_version, char *errbuf, size_t errlen)
{
    char missing_buf[320];
    struct loader_text missing;
    loader_text_init(&missing, missing_buf, sizeof missing_buf);
    int missing_count = 0;

    /* dlsym() returns void *; POSIX guarantees it can hold a function pointer, and copying
     * the bytes (rather than casting) keeps ISO C's object/function pointer rule intact. */
#define LOADER_STORE(destination, symbol_name)                                                     \
    do {                                                                                           \
        void *symbol = loader_symbol(handle, symbol_name, &missing, &missing_count);               \
        memcpy(&(destination), &symbol, sizeof symbol);                                            \
    } while (0)
#define LOADER_RESOLVE(member) LOADER_STORE(table->member, "fdb_" #member);
    LOADER_FUNCTIONS(LOADER_RESOLVE)
    LOADER_STORE(*select_impl, LOADER_SELECT_SYMBOL);
    LOADER_STORE(*max_version, LOADER_MAX_VERSION_SYMBOL);
#undef LOADER_RESOLVE
#undef LOADER_STORE
    if (missing_count == 0)
        return FDB_LOADER_OK;

    loader_message(errbuf, errlen,
                   "%s is not a usable FoundationDB client library: %s; it lacks %d of %d "
                   "functions: %s%s",
                   name, FDB_LOADER_PACKAGE_HINT, missing_count, LOADER_SYMBOL_TOTAL, missing_buf,
                   missing.truncated ? "..." : "");
    return FDB_LOADER_ERR_SYMBOL_MISSING;
}

int fdb_loader_open(const char *library_path, struct kv_api *out, char *errbuf, size_t errlen)
{
    assert(out != NULL);
    assert(errbuf != NULL || errlen == 0);
    if (errlen > 0)
        errbuf[0] = '\0';

    const char *name = NULL;
    void *handle = loader_dlopen(library_path, &name, errbuf, errlen);
    if (handle == NULL)
        return FDB_LOADER_ERR_LIBRARY_NOT_FOUND;

    /* dlopen() of an already loaded library returns the same handle with one more reference. */
    if (loader_handle != NULL && handle != loader_handle) {
        dlclose(handle);
        loader_message(errbuf, errlen,
                       "%s was not loaded: another FoundationDB client library is already in use "
                       "by this process",
                       name);
        return FDB_LOADER_ERR_ALREADY_LOADED;
    }

    struct kv_api table;
    memset(&table, 0, sizeof table);
    loader_select_impl_fn select_impl = NULL;
    loader_max_api_version_fn max_version = NULL;
    int rc = loader_resolve(handle, name, &table, &select_impl, &max_version, errbuf, errlen);
    if (rc == FDB_LOADER_OK) {
        int supported = max_version();
        if (supported < KV_API_VERSION) {
            loader_message(errbuf, errlen,
                           "%s supports FoundationDB API version %d at most, %d is needed: %s",
                           name, supported, KV_API_VERSION, FDB_LOADER_PACKAGE_HINT);
            rc = FDB_LOADER_ERR_VERSION_TOO_OLD;
        }
    }
    if (rc != FDB_LOADER_OK) {
        dlclose(handle);
        return rc;
    }

    if (loader_handle == NULL) {
        loader_handle = handle;
        loader_select_api_version_impl = select_impl;
    } else {
        dlclose(handle); /* drop the extra reference; loader_handle keeps the library */
    }
    table.name = "fdb";
    table.select_api_version = loader_select_api_version;
    *out = table;
    return FDB_LOADER_OK;
}

const char *fdb_loader_strerror(int error)
{
    switch (error) {
    case FDB_LOADER_OK:
        return "success";
    case FDB_LOADER_ERR_LIBRARY_NOT_FOUND:
        return "FoundationDB client library not found";
    case FDB_LOADER_ERR_SYMBOL_MISSING:
        return "FoundationDB client library lacks required functions";
    case FDB_LOADER_ERR_VERSION_TOO_OLD:
        return "FoundationDB client library too old for API version 710";
    case FDB_LOADER_ERR_ALREADY_LOADED:
        return "another FoundationDB client library is already loaded";
    }
    return "unknown fdb_loader error";
}

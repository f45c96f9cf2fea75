/* fdb_loader.h -- fills the store seam from FoundationDB's client library, loaded at run time.
 *
 * libfdb_c.so is dlopen()ed, never linked, so nothing in the build needs FoundationDB; only a
 * process that asks for the "fdb" store does, and it gets a message naming the package to install
 * when the library is missing. */
#ifndef KV_FDB_LOADER_H
#define KV_FDB_LOADER_H

#include <stddef.h>

#include "kv/fdb_api.h"

/* Environment variable naming the client library to load when no path is given. */
#define FDB_LOADER_ENV_LIBRARY "ETCD_FDB_LIBRARY"

/* What to install when the library is missing or too old. */
#define FDB_LOADER_PACKAGE_HINT                                                                    \
    "install the FoundationDB client package (foundationdb-clients 7.1 or newer), which provides " \
    "libfdb_c.so"

enum fdb_loader_error {
    FDB_LOADER_OK = 0,
    FDB_LOADER_ERR_LIBRARY_NOT_FOUND = -1, /* dlopen() failed for every candidate */
    FDB_LOADER_ERR_SYMBOL_MISSING = -2,    /* the library lacks some fdb_* function */
    FDB_LOADER_ERR_VERSION_TOO_OLD = -3,   /* the library cannot serve API version 710 */
    FDB_LOADER_ERR_ALREADY_LOADED = -4,    /* a different libfdb_c is already in use */
};

/* Loads libfdb_c and fills *out with its functions; out->name becomes "fdb".
 *
 * library_path: the library to load; NULL means $ETCD_FDB_LIBRARY if set and non-empty, else
 * "libfdb_c.so", then "libfdb_c.so.7", through the dynamic linker's search path.
 * errbuf/errlen: receives a one-line message on failure ("" on success); may be NULL/0.
 *
 * Returns FDB_LOADER_OK or a negative enum fdb_loader_error; *out is written only on success.
 * The library stays loaded for the life of the process (it owns the process-wide network
 * thread). Calling again with the same library refills the table; with another one fails.
 * Not thread-safe: call from the main thread at start-up, before any other store call. */
int fdb_loader_open(const char *library_path, struct kv_api *out, char *errbuf, size_t errlen)
    __attribute__((warn_unused_result));

/* Static description of an fdb_loader_error; errbuf carries the specifics. */
const char *fdb_loader_strerror(int error);

#endif

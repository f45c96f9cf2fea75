/* store_harness.h -- what the store tests share: the provider chosen by the environment, the
 * network thread, a database, and assertion helpers.
 *
 * Without FDB_CLUSTER_FILE the tests run on the embedded engine in a fresh temporary data
 * directory; with it they load libfdb_c and run against that cluster, inside a key prefix
 * unique to the run, and tests marked embedded-only say they are skipped. */
#ifndef TESTS_KV_STORE_HARNESS_H
#define TESTS_KV_STORE_HARNESS_H

#include <check.h>
#include <stdio.h>
#include <stdint.h>

#include "kv/fdb_api.h"

struct harness {
    const struct kv_api *api;
    FDBDatabase *db;
    int embedded;     /* 1 on the embedded engine */
    char data_dir[256];
    uint8_t prefix[16]; /* every key a test writes starts with it */
    int prefix_len;
};

extern struct harness H;

/* Selects the provider, starts the network thread (once per process) and opens the
 * database. Returns 0 or exits the process with a message. */
void harness_start(void);
/* Closes and opens the database again (embedded only), as a restart does. */
void harness_reopen(void);
void harness_stop(void);

/* A key inside the run's prefix: prefix + name. Returns a static buffer of the harness
 * (one of 8 rotating), valid for a few calls. */
const uint8_t *hkey(const char *name, int *len);

/* Fails the test with file:line and the store's error text when expr is not 0. */
#define CHECK_OK(expr)                                                                         \
    do {                                                                                       \
        fdb_error_t check_ok_err_ = (expr);                                                    \
        ck_assert_msg(check_ok_err_ == 0, "%s:%d: %s failed: %d (%s)", __FILE__, __LINE__,     \
                      #expr, check_ok_err_, H.api->get_error(check_ok_err_));                  \
    } while (0)

#define CHECK_ERR(expr, code)                                                                  \
    do {                                                                                       \
        fdb_error_t check_err_ = (expr);                                                       \
        ck_assert_msg(check_err_ == (code), "%s:%d: %s returned %d (%s), expected %d",         \
                      __FILE__, __LINE__, #expr, check_err_, H.api->get_error(check_err_),     \
                      (code));                                                                 \
    } while (0)

/* Ends the test early, saying so, unless it runs on the embedded engine. */
#define SKIP_IF_NOT_EMBEDDED()                                                                 \
    do {                                                                                       \
        if (!H.embedded) {                                                                     \
            printf("%s: skipped on backend %s\n", __func__, H.api->name);                     \
            return;                                                                            \
        }                                                                                      \
    } while (0)

/* Waits for f, returns its error and destroys it. */
fdb_error_t wait_destroy(FDBFuture *f);
FDBTransaction *new_tr(void);
/* Commits tr and waits; returns the commit's error. */
fdb_error_t commit_tr(FDBTransaction *tr);
/* Reads key in tr: returns error; *present and value (copied into buf, up to cap). */
fdb_error_t get_tr(FDBTransaction *tr, const uint8_t *key, int key_len, int snapshot,
                   int *present, uint8_t *buf, int cap, int *len);
/* One transaction that sets key to value and commits (retrying). */
void put_one(const uint8_t *key, int key_len, const char *value);

#endif

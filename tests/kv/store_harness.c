/* store_harness.c -- see store_harness.h. */
#include "tests/kv/store_harness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kv/embedded.h"
#include "kv/fdb_loader.h"
#include "kv/retry.h"

struct harness H;
static pthread_t network_thread;
static int network_started;
static struct kv_api loaded_api;

static void *network_main(void *arg)
{
    fdb_error_t err = H.api->run_network();
    if (err)
        fprintf(stderr, "run_network: %s\n", H.api->get_error(err));
    return NULL;
}

static void open_db(void)
{
    const char *cluster = getenv("FDB_CLUSTER_FILE");
    fdb_error_t err = H.api->create_database(H.embedded ? H.data_dir : cluster, &H.db);
    if (err) {
        fprintf(stderr, "create_database: %s\n", H.api->get_error(err));
        exit(2);
    }
}

void harness_start(void)
{
    if (network_started)
        return;
    const char *cluster = getenv("FDB_CLUSTER_FILE");
    if (cluster && *cluster) {
        char msg[512];
        if (fdb_loader_open(NULL, &loaded_api, msg, sizeof(msg)) != 0) {
            fprintf(stderr, "%s\n", msg);
            exit(2);
        }
        H.api = &loaded_api;
        H.embedded = 0;
    } else {
        H.api = embedded_api();
        H.embedded = 1;
        const char *tmp = getenv("TMPDIR");
        snprintf(H.data_dir, sizeof(H.data_dir), "%s/etcd-fdb-test-XXXXXX", tmp ? tmp : "/tmp");
        if (!mkdtemp(H.data_dir)) {
            perror("mkdtemp");
            exit(2);
        }
    }
    fdb_error_t err = H.api->select_api_version(KV_API_VERSION);
    if (!err)
        err = H.api->setup_network();
    if (err) {
        fprintf(stderr, "network: %s\n", H.api->get_error(err));
        exit(2);
    }
    pthread_create(&network_thread, NULL, network_main, NULL);
    network_started = 1;
    open_db();
    /* A prefix unique to this run, so runs against a shared cluster never collide. */
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    H.prefix[0] = 't';
    for (int i = 1; i < 9; i++)
        H.prefix[i] = (uint8_t)('a' + rand() % 26);
    H.prefix[9] = '/';
    H.prefix_len = 10;
}

void harness_reopen(void)
{
    H.api->database_destroy(H.db);
    open_db();
}

void harness_stop(void)
{
    H.api->database_destroy(H.db);
    H.api->stop_network();
    pthread_join(network_thread, NULL);
    if (H.embedded) {
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", H.data_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", H.data_dir);
    }
}

const uint8_t *hkey(const char *name, int *len)
{
    static uint8_t bufs[8][512];
    static int next;
    uint8_t *b = bufs[next++ % 8];
    size_t n = strlen(name);
    if (n > sizeof(bufs[0]) - (size_t)H.prefix_len)
        n = sizeof(bufs[0]) - (size_t)H.prefix_len;
    memcpy(b, H.prefix, (size_t)H.prefix_len);
    memcpy(b + H.prefix_len, name, n);
    *len = H.prefix_len + (int)n;
    return b;
}

fdb_error_t wait_destroy(FDBFuture *f)
{
    fdb_error_t err = kv_wait(H.api, f);
    H.api->future_destroy(f);
    return err;
}

FDBTransaction *new_tr(void)
{
    FDBTransaction *tr;
    fdb_error_t err = H.api->database_create_transaction(H.db, &tr);
    ck_assert_msg(err == 0, "create_transaction: %d", err);
    return tr;
}

fdb_error_t commit_tr(FDBTransaction *tr)
{
    return wait_destroy(H.api->transaction_commit(tr));
}

fdb_error_t get_tr(FDBTransaction *tr, const uint8_t *key, int key_len, int snapshot,
                   int *present, uint8_t *buf, int cap, int *len)
{
    FDBFuture *f = H.api->transaction_get(tr, key, key_len, snapshot);
    fdb_error_t err = kv_wait(H.api, f);
    if (!err) {
        const uint8_t *v;
        int vl;
        err = H.api->future_get_value(f, present, &v, &vl);
        if (!err && *present) {
            *len = vl;
            if (buf)
                memcpy(buf, v, (size_t)(vl < cap ? vl : cap));
        }
    }
    H.api->future_destroy(f);
    return err;
}

struct put_ctx {
    const uint8_t *key;
    int key_len;
    const char *value;
};

static fdb_error_t put_body(const struct kv_api *api, FDBTransaction *tr, void *arg)
{
    struct put_ctx *c = arg;
    api->transaction_set(tr, c->key, c->key_len, (const uint8_t *)c->value,
                         (int)strlen(c->value));
    return 0;
}

void put_one(const uint8_t *key, int key_len, const char *value)
{
    struct put_ctx c = {key, key_len, value};
    CHECK_OK(kv_transact(H.api, H.db, put_body, &c, NULL));
}
